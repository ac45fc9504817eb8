//! Binning on the decoding threads (the module `block`): each part of stored lines is
//! cut into runs — the samples of one bin in a row — and each run's statistics are
//! computed by the thread that decoded the part; the post-processor
//! ([`super::PostProcessor::runs`]) then only joins the runs, in order, on the calling
//! thread (`join`).
//!
//! Exact, not approximate: the statistics are commons-math's incremental moments
//! ([`Moments`]), whose last bits depend on the order the values were added, so runs are
//! never merged by formula. A run is computed from an empty state, as the sequential path
//! computes a bin from its first sample; the first run of a part may continue the bin of
//! the part before it, so its values are kept too, and then added one by one, in order,
//! by the post-processor. The parts are cut where a bin ends when the bins are not too
//! long (the module `block`), so that this is rare. The result is bit for bit what the
//! samples one by one give (the tests compare the two paths).

use archiver_pb::{Sample, Timestamp};

use super::stats::Moments;
use super::{Emit, bin_of, number, reconnected};
use crate::error::RetrievalError;

/// The binning a post-processor lets the decoding threads do (from
/// [`super::PostProcessor::binning`], asked after `begin_pv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binning {
    /// Bin width in seconds: a sample's bin is `epochSeconds / interval` (Java's truncating division).
    pub interval: i64,
    /// Start of the request's range: a part with a sample at or before it goes sample by
    /// sample (the post-processor's rules for the before-start sample apply).
    pub from: Timestamp,
    /// End of the request's range: a part with a sample after it goes sample by sample.
    pub to: Timestamp,
}

/// The samples of one bin in a row, within one part.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// The bin: `epochSeconds / interval` of its samples.
    pub bin: i64,
    /// The run's non-NaN values, added in order to an empty state (for the first run of
    /// a part: what it is if the run starts its bin, see [`Runs::head`]).
    pub moments: Moments,
    /// Samples in the run, NaN values included.
    pub added: u64,
    /// The highest severity of the run's samples (0 when none is higher).
    pub severity: i32,
    /// A sample of the run carried `cnxregainedepsecs`.
    pub connection_change: bool,
    /// The run's last non-NaN value; NaN when it has none (`optimLastSample`).
    pub last: f64,
}

/// The samples of one part, binned: see the module's text. Reused from part to part
/// (nothing is allocated per sample).
#[derive(Debug, Default)]
pub struct Runs {
    /// A sample was outside `(from, to]`.
    outside: bool,
    head: Vec<f64>,
    runs: Vec<Run>,
    /// The last bin and its seconds `[lo, hi)` (non-negative times), to spare divisions.
    cached: (i64, i64, i64),
}

impl Runs {
    /// Empties it for the next part.
    pub(crate) fn clear(&mut self) {
        self.outside = false;
        self.head.clear();
        self.runs.clear();
        self.cached = (0, -1, 0);
    }

    /// Adds the next decoded sample of the part.
    #[inline]
    pub(crate) fn push(&mut self, s: &Sample, b: &Binning) {
        if self.outside {
            return;
        }
        if s.time <= b.from || s.time > b.to {
            self.outside = true;
            return;
        }
        let (lo, hi, cached) = self.cached;
        let bin = if s.time.secs >= lo && s.time.secs < hi {
            cached
        } else {
            let bin = bin_of(s.time, b.interval);
            if s.time.secs >= 0 {
                let lo = bin.saturating_mul(b.interval);
                self.cached = (lo, lo.saturating_add(b.interval), bin);
            }
            bin
        };
        let v = number(&s.value);
        if self.runs.last().is_none_or(|r| r.bin != bin) {
            self.runs.push(Run {
                bin,
                moments: Moments::default(),
                added: 0,
                severity: 0,
                connection_change: false,
                last: f64::NAN,
            });
        }
        let n = self.runs.len();
        let run = &mut self.runs[n - 1];
        if n == 1 {
            self.head.push(v);
        }
        run.moments.add_number(v);
        if !v.is_nan() {
            run.last = v;
        }
        run.added += 1;
        run.severity = run.severity.max(s.severity);
        run.connection_change |= reconnected(s);
    }

    /// True when every sample of the part was inside `(from, to]`: only then are the
    /// runs given to the post-processor.
    pub fn inside(&self) -> bool {
        !self.outside
    }

    /// The values of the first run, in order, NaN included: when it continues the bin of
    /// the part before, they are added by the post-processor.
    pub fn head(&self) -> &[f64] {
        &self.head
    }

    /// The runs, in order; consecutive runs are of different bins.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }
}

/// The bins of a binning post-processor, as [`join`] fills them.
pub(super) trait Bins {
    /// The bin being filled, if any.
    fn current(&self) -> Option<i64>;
    /// Emits the current bin (and what it completes) and starts `bin`, empty.
    fn next_bin(&mut self, bin: i64, emit: &mut Emit<'_>) -> Result<(), RetrievalError>;
    /// The moments of the current bin.
    fn moments(&mut self) -> &mut Moments;
    /// Counts the samples of `run`, now in the current bin (how many, the highest
    /// severity, a connection change, the last value).
    fn count(&mut self, run: &Run);
}

/// Fills `bins` with the runs of a part, in order, as the samples one by one would: a
/// run that starts a bin brings its moments; the first run, when it continues the
/// current bin, its values, added one by one.
pub(super) fn join(
    r: &Runs,
    bins: &mut impl Bins,
    emit: &mut Emit<'_>,
) -> Result<(), RetrievalError> {
    for (k, run) in r.runs().iter().enumerate() {
        if k == 0 && bins.current() == Some(run.bin) {
            let m = bins.moments();
            for &v in r.head() {
                m.add_number(v);
            }
        } else {
            bins.next_bin(run.bin, emit)?;
            *bins.moments() = run.moments;
        }
        bins.count(run);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::Value;

    fn s(secs: i64, v: f64, severity: i32) -> Sample {
        let mut x = Sample::new(Timestamp::new(secs, 0), Value::ScalarDouble(v));
        x.severity = severity;
        x
    }

    #[test]
    fn runs_of_one_bin_each_the_first_kept_as_values() {
        let b = Binning {
            interval: 10,
            from: Timestamp::new(100, 0),
            to: Timestamp::new(200, 0),
        };
        let mut r = Runs::default();
        for (secs, v, sev) in [
            (105, 1.0, 0),
            (109, f64::NAN, 2),
            (110, 3.0, 1),
            (111, 5.0, 0),
        ] {
            r.push(&s(secs, v, sev), &b);
        }
        r.push(&s(125, f64::NAN, 0), &b);
        assert!(r.inside());
        assert_eq!(r.head().len(), 2);
        assert!(r.head()[0] == 1.0 && r.head()[1].is_nan());
        let runs: Vec<(i64, u64, u64, i32)> = r
            .runs()
            .iter()
            .map(|x| (x.bin, x.added, x.moments.n(), x.severity))
            .collect();
        // NaN counted as added, not in the moments.
        assert_eq!(runs, vec![(10, 2, 1, 2), (11, 2, 2, 1), (12, 1, 0, 0)]);
        assert_eq!(r.runs()[1].moments.mean(), 4.0);
        let last: Vec<f64> = r.runs().iter().map(|x| x.last).collect();
        assert!(last[0] == 1.0 && last[1] == 5.0 && last[2].is_nan());
        // A sample at `from` or after `to`: the part goes sample by sample.
        r.push(&s(201, 1.0, 0), &b);
        assert!(!r.inside());
        r.clear();
        assert!(r.inside() && r.runs().is_empty() && r.head().is_empty());
        r.push(&s(100, 1.0, 0), &b);
        assert!(!r.inside());
    }
}
