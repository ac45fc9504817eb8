//! The summarizing operators: one value (or vector) per epoch-aligned bin (Java
//! `SummaryStatsPostProcessor`, `SummaryStatsCollectorEventStream`, `Optimized`,
//! `OptimizedWithLastSample`).
//!
//! Rules (reference section 2.8):
//! * `bin = epochSeconds / I`; `firstBin = from/I`, `lastBin = to/I`;
//! * the latest sample before `from` is placed alone in bin `firstBin − 1` (severity 0),
//!   unless a sample lies exactly at `from`;
//! * one sample per bin at the bin centre ([`super::bin_centre`]), `DBR_SCALAR_DOUBLE`
//!   (`stats`, `optimized`: `DBR_WAVEFORM_DOUBLE`), status 0, the bin's highest severity,
//!   `connectionChange=true` when a sample of the bin carried `cnxregainedepsecs`;
//! * fill: an empty bin after the first bin with data repeats the previous bin (value,
//!   severity, fields; `count`: 0); the `…Sample` variants omit empty bins; bins are
//!   filled up to `lastBin`;
//! * NaN values are not counted (except by `linear` and `loess`, which Java feeds
//!   everything).

use archiver_pb::{FieldValue, PayloadType, Sample, Timestamp, Value};
use archiver_registry::javanum::format_f64;

use super::runs::{Binning, Bins, Run, Runs, join};
use super::spec::Stat;
use super::stats::{Moments, kurtosis, linear_at, loess_at, percentile_legacy, skewness};
use super::{Emit, PostProcessor, bin_centre, bin_of, number, reconnected};
use crate::error::RetrievalError;
use crate::plan::StreamDesc;

/// The result of one bin.
#[derive(Debug, Clone, Copy)]
struct BinOut {
    /// The value (`[0]`) or the vector.
    vals: [f64; 6],
    /// `errorbar`'s `stdz`.
    stdz: Option<f64>,
    severity: i32,
    connection_change: bool,
}

impl BinOut {
    fn zero() -> Self {
        BinOut {
            vals: [0.0; 6],
            stdz: None,
            severity: 0,
            connection_change: false,
        }
    }
}

/// Builds the sample of one bin; `width` 0 is a scalar.
fn bin_sample(time: Timestamp, out: &BinOut, width: usize) -> Sample {
    let value = if width == 0 {
        Value::ScalarDouble(out.vals[0])
    } else {
        Value::VectorDouble(out.vals[..width].to_vec())
    };
    let mut s = Sample::new(time, value);
    s.severity = out.severity;
    if out.connection_change {
        s.field_values
            .push(FieldValue::new("connectionChange", "true"));
    }
    if let Some(stdz) = out.stdz {
        s.field_values
            .push(FieldValue::new("stdz", format_f64(stdz)));
    }
    s
}

/// The values of one bin, as the Java collector of `stat` keeps them: the moments for
/// everything, and the values themselves (reused from bin to bin) where the statistic
/// needs them all.
#[derive(Debug)]
struct Collector {
    stat: Stat,
    moments: Moments,
    values: Vec<f64>,
    times: Vec<f64>,
}

impl Collector {
    fn new(stat: Stat) -> Self {
        Collector {
            stat,
            moments: Moments::default(),
            values: Vec::new(),
            times: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.moments = Moments::default();
        self.values.clear();
        self.times.clear();
    }

    #[inline]
    fn add(&mut self, t: Timestamp, v: f64) {
        match self.stat {
            Stat::Linear | Stat::Loess => {
                // Java: epochSeconds + nanos / 1e9, every value, NaN included.
                self.times
                    .push(t.secs as f64 + f64::from(t.nanos) / 1_000_000_000.0);
                self.values.push(v);
            }
            Stat::Median | Stat::Kurtosis | Stat::Skewness => {
                if !v.is_nan() {
                    self.moments.add(v);
                    self.values.push(v);
                }
            }
            _ => self.moments.add_number(v),
        }
    }

    /// True when the statistic reads the moments only: the decoding threads may then bin
    /// ([`super::runs`]).
    fn moments_only(&self) -> bool {
        matches!(
            self.stat,
            Stat::Mean
                | Stat::Min
                | Stat::Max
                | Stat::Count
                | Stat::Std
                | Stat::Variance
                | Stat::PopVariance
                | Stat::Jitter
                | Stat::ErrorBar
                | Stat::Stats
        )
    }

    /// The statistic of the bin `bin` of width `interval`.
    fn result(&mut self, bin: i64, interval: i64) -> ([f64; 6], Option<f64>) {
        let m = &self.moments;
        let mut vals = [0.0; 6];
        let mut stdz = None;
        vals[0] = match self.stat {
            Stat::Mean => m.mean(),
            Stat::Min => m.min(),
            Stat::Max => m.max(),
            Stat::Count => m.n() as f64,
            Stat::Std => m.std(),
            Stat::Variance => m.variance(),
            Stat::PopVariance => m.population_variance(),
            Stat::Jitter => m.std() / m.mean(),
            Stat::Median => percentile_legacy(&mut self.values, 50.0),
            Stat::Kurtosis => kurtosis(&self.values),
            Stat::Skewness => skewness(&self.values),
            Stat::Linear | Stat::Loess => {
                // Java: `binNum*intervalSecs + intervalSecs/2` in integers.
                let centre = (bin * interval + interval / 2) as f64;
                let at = if self.stat == Stat::Linear {
                    linear_at(&self.times, &self.values, centre)
                } else {
                    loess_at(&self.times, &self.values, centre)
                };
                at.unwrap_or_else(|| self.values.first().copied().unwrap_or(f64::NAN))
            }
            Stat::ErrorBar => {
                stdz = Some(m.std());
                m.mean()
            }
            Stat::Stats => {
                vals[1] = m.std();
                vals[2] = m.min();
                vals[3] = m.max();
                vals[4] = m.n() as f64;
                m.mean()
            }
        };
        (vals, stdz)
    }
}

/// Java `SummaryStatsPostProcessor` for one statistic (and, with [`Summary::optimized`],
/// the `stats` binning of `optimized`).
#[derive(Debug)]
pub(super) struct Summary {
    /// Bin width; for `optimized`, computed from the range at [`PostProcessor::begin_pv`].
    interval: i64,
    /// `optimized_N`: the interval is `max(1, (to − from)/N)` seconds.
    points: Option<u32>,
    fill: bool,
    width: usize,
    from: Timestamp,
    to: Timestamp,
    first_bin: i64,
    last_bin: i64,
    before: Option<(Timestamp, f64)>,
    before_suppressed: bool,
    before_added: bool,
    current: Option<i64>,
    collector: Collector,
    severity: i32,
    connection_change: bool,
    previous: Option<(i64, BinOut)>,
    /// Samples given to the bins (the before-start sample included): `optimized` counts
    /// them.
    added: u64,
    /// The bin of the last sample and its seconds `[lo, hi)`, so that most samples need no
    /// division ([`bin_of`]); empty (`lo > hi`) until a bin of non-negative times is known.
    cached_bin: (i64, i64, i64),
}

impl Summary {
    /// A summary of `stat` over bins of `interval` seconds.
    pub(super) fn new(stat: Stat, interval: u32, fill: bool) -> Self {
        Summary {
            interval: i64::from(interval.max(1)),
            points: None,
            fill,
            width: if stat == Stat::Stats { 5 } else { 0 },
            from: Timestamp::new(0, 0),
            to: Timestamp::new(0, 0),
            first_bin: 0,
            last_bin: 0,
            before: None,
            before_suppressed: false,
            before_added: false,
            current: None,
            collector: Collector::new(stat),
            severity: 0,
            connection_change: false,
            previous: None,
            added: 0,
            cached_bin: (0, -1, 0),
        }
    }

    /// The `stats` binning of `optimized_N`.
    fn optimized(points: u32, fill: bool) -> Self {
        let mut s = Summary::new(Stat::Stats, 1, fill);
        s.points = Some(points.max(1));
        s
    }

    /// [`bin_of`], remembering the last bin's seconds (for non-negative times, where the
    /// bin of `secs` is `[bin·I, bin·I + I)`).
    #[inline]
    fn bin_of(&mut self, t: Timestamp) -> i64 {
        let (lo, hi, bin) = self.cached_bin;
        if t.secs >= lo && t.secs < hi {
            return bin;
        }
        let bin = bin_of(t, self.interval);
        if t.secs >= 0 {
            let lo = bin.saturating_mul(self.interval);
            self.cached_bin = (lo, lo.saturating_add(self.interval), bin);
        }
        bin
    }

    /// Puts the latest sample before `from` alone in bin `firstBin − 1`, at the first
    /// sample after it (or at the end), unless a sample lies at `from`.
    fn add_before(&mut self) {
        if let Some((t, v)) = self.before
            && !self.before_suppressed
            && !self.before_added
        {
            self.switch(self.first_bin - 1);
            self.collector.add(t, v);
            self.added += 1;
            self.before_added = true;
        }
    }

    fn switch(&mut self, bin: i64) {
        self.current = Some(bin);
        self.collector.reset();
        self.severity = 0;
        self.connection_change = false;
    }

    /// Emits the current bin (and the filled bins before it).
    fn commit(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let Some(bin) = self.current.take() else {
            return Ok(());
        };
        let (vals, stdz) = self.collector.result(bin, self.interval);
        let out = BinOut {
            vals,
            stdz,
            severity: self.severity,
            connection_change: self.connection_change,
        };
        self.fill_until(bin, emit)?;
        emit.sample(&bin_sample(
            bin_centre(bin, self.interval),
            &out,
            self.width,
        ))?;
        self.previous = Some((bin, out));
        Ok(())
    }

    /// Emits the filled bins after the last one emitted and before `bin`.
    fn fill_until(&mut self, bin: i64, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        if !self.fill {
            return Ok(());
        }
        let Some((last, mut out)) = self.previous else {
            return Ok(());
        };
        if self.collector.stat == Stat::Count {
            out = BinOut::zero();
        }
        for k in last + 1..bin {
            emit.sample(&bin_sample(bin_centre(k, self.interval), &out, self.width))?;
            self.previous = Some((k, out));
        }
        Ok(())
    }
}

impl PostProcessor for Summary {
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        self.from = desc.from;
        self.to = desc.to;
        if let Some(points) = self.points {
            let span = (desc.to.secs - desc.from.secs) / i64::from(points);
            self.interval = span.clamp(1, i64::from(i32::MAX));
        }
        self.first_bin = bin_of(desc.from, self.interval);
        self.last_bin = bin_of(desc.to, self.interval);
        self.cached_bin = (0, -1, 0);
        if self.width == 0 {
            desc.payload_type = PayloadType::ScalarDouble;
            desc.element_count = 1;
        } else {
            desc.payload_type = PayloadType::WaveformDouble;
            desc.element_count = self.width as u32;
        }
        Ok(())
    }

    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        if s.time < self.from {
            self.before = Some((s.time, number(&s.value)));
            return Ok(());
        }
        if s.time > self.to {
            return Ok(());
        }
        if s.time == self.from {
            self.before_suppressed = true;
        }
        self.add_before();
        let bin = self.bin_of(s.time);
        if self.current != Some(bin) {
            self.commit(emit)?;
            self.switch(bin);
        }
        self.collector.add(s.time, number(&s.value));
        self.added += 1;
        self.severity = self.severity.max(s.severity);
        self.connection_change |= reconnected(s);
        Ok(())
    }

    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        self.add_before();
        self.commit(emit)?;
        self.fill_until(self.last_bin + 1, emit)
    }

    fn binning(&self) -> Option<Binning> {
        self.collector.moments_only().then_some(Binning {
            interval: self.interval,
            from: self.from,
            to: self.to,
        })
    }

    /// What [`Summary::sample`] does with samples inside `(from, to]`, a run at a time
    /// ([`join`]: a run that starts a bin brings its moments, computed from an empty
    /// state as [`Summary::switch`] leaves it).
    fn runs(&mut self, r: &Runs, emit: &mut Emit<'_>) -> Result<bool, RetrievalError> {
        if !r.inside() || !self.collector.moments_only() {
            return Ok(false);
        }
        if r.runs().is_empty() {
            return Ok(true);
        }
        self.add_before();
        join(r, self, emit)?;
        Ok(true)
    }
}

impl Bins for Summary {
    fn current(&self) -> Option<i64> {
        self.current
    }

    fn next_bin(&mut self, bin: i64, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        self.commit(emit)?;
        self.switch(bin);
        Ok(())
    }

    fn moments(&mut self) -> &mut Moments {
        &mut self.collector.moments
    }

    fn count(&mut self, run: &Run) {
        self.added += run.added;
        self.severity = self.severity.max(run.severity);
        self.connection_change |= run.connection_change;
    }
}

/// Java `Optimized`: with at most N samples in the range (the before-start sample
/// counted), those samples as they are (their own type); else the `stats` binning over
/// bins of `max(1, (to − from)/N)` seconds. Holds at most N samples and the bins emitted
/// before it knows (about N + 2) — Java holds the same.
#[derive(Debug)]
pub(super) struct Optimized {
    summary: Summary,
    points: u64,
    raw: Vec<Sample>,
    pending: Vec<Sample>,
    binned: bool,
    before: Option<Sample>,
    input: Option<(PayloadType, u32)>,
}

impl Optimized {
    pub(super) fn new(points: u32, fill: bool) -> Self {
        Optimized {
            summary: Summary::optimized(points, fill),
            points: u64::from(points.max(1)),
            raw: Vec::new(),
            pending: Vec::new(),
            binned: false,
            before: None,
            input: None,
        }
    }

    /// Passes the summary's bins on once binned, holds them before.
    fn run(
        &mut self,
        emit: &mut Emit<'_>,
        f: impl FnOnce(&mut Summary, &mut Emit<'_>) -> Result<(), RetrievalError>,
    ) -> Result<(), RetrievalError> {
        if self.binned {
            return f(&mut self.summary, emit);
        }
        let pending = &mut self.pending;
        let mut hold = |s: &Sample| -> Result<(), RetrievalError> {
            pending.push(s.clone());
            Ok(())
        };
        f(&mut self.summary, &mut hold)
    }

    fn keep_raw(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        if self.binned {
            return Ok(());
        }
        if (self.raw.len() as u64) < self.points {
            self.raw.push(s.clone());
        }
        if self.summary.added > self.points {
            self.binned = true;
            self.raw = Vec::new();
            for b in std::mem::take(&mut self.pending) {
                emit.sample(&b)?;
            }
        }
        Ok(())
    }
}

impl PostProcessor for Optimized {
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        self.input = Some((desc.payload_type, desc.element_count));
        self.summary.begin_pv(desc)
    }

    fn binning(&self) -> Option<Binning> {
        self.summary.binning()
    }

    /// Runs once binned (more than N samples read: the raw samples are no longer kept);
    /// before, sample by sample.
    fn runs(&mut self, r: &Runs, emit: &mut Emit<'_>) -> Result<bool, RetrievalError> {
        if !self.binned {
            return Ok(false);
        }
        self.summary.runs(r, emit)
    }

    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let added = self.summary.added;
        self.run(emit, |sum, out| sum.sample(s, out))?;
        match self.summary.added - added {
            2 => {
                if let Some(b) = self.before.take() {
                    self.keep_raw(&b, emit)?;
                }
                self.keep_raw(s, emit)?;
            }
            1 => self.keep_raw(s, emit)?,
            _ => {
                if s.time < self.summary.from {
                    self.before = Some(s.clone());
                }
            }
        }
        Ok(())
    }

    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let added = self.summary.added;
        self.run(emit, |sum, out| sum.end_pv(out))?;
        if self.summary.added > added
            && let Some(b) = self.before.take()
        {
            self.keep_raw(&b, emit)?;
        }
        if self.binned {
            return Ok(());
        }
        if let Some((t, n)) = self.input {
            emit.retype(t, n);
        }
        for s in std::mem::take(&mut self.raw) {
            emit.sample(&s)?;
        }
        Ok(())
    }
}

/// Java `OptimizedWithLastSample` (`optimLastSample_N`): the vector
/// `[mean, std, min, max, count, last]` per bin of `(to − from)/N` seconds (at least 1),
/// `last` being the last non-NaN value read so far; a bin without samples between two
/// with samples, or after the last up to `lastBin`, is `[last, 0, last, last, 0, last]`
/// with the severity and `connectionChange` of the bin after the gap (of the last bin
/// for the trailing ones) — in the `…Sample` variant too, as Java; the before-start
/// sample is the latest in a bin before `firstBin`. With at most N samples: the samples
/// as they are.
#[derive(Debug)]
pub(super) struct OptimLastSample {
    points: u64,
    fill: bool,
    interval: i64,
    from: Timestamp,
    to: Timestamp,
    first_bin: i64,
    last_bin: i64,
    before: Option<Sample>,
    before_added: bool,
    current: Option<i64>,
    moments: Moments,
    last_value: f64,
    severity: i32,
    connection_change: bool,
    /// The last bin emitted (or held) and its vector.
    saved: Option<(i64, [f64; 6])>,
    previous_out: Option<(i64, BinOut)>,
    added: u64,
    raw: Vec<Sample>,
    pending: Vec<Sample>,
    binned: bool,
    input: Option<(PayloadType, u32)>,
}

impl OptimLastSample {
    pub(super) fn new(points: u32, fill: bool) -> Self {
        OptimLastSample {
            points: u64::from(points.max(1)),
            fill,
            interval: 1,
            from: Timestamp::new(0, 0),
            to: Timestamp::new(0, 0),
            first_bin: 0,
            last_bin: 0,
            before: None,
            before_added: false,
            current: None,
            moments: Moments::default(),
            last_value: 0.0,
            severity: 0,
            connection_change: false,
            saved: None,
            previous_out: None,
            added: 0,
            raw: Vec::new(),
            pending: Vec::new(),
            binned: false,
            input: None,
        }
    }

    fn out(&mut self, s: Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        if self.binned {
            emit.sample(&s)
        } else {
            self.pending.push(s);
            Ok(())
        }
    }

    fn put(&mut self, bin: i64, out: BinOut, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        // The no-fill variant still gets the explicit gap bins; a bin Java never put in
        // its map is filled only by the fill variant.
        if self.fill
            && let Some((last, prev)) = self.previous_out
        {
            for k in last + 1..bin {
                self.out(bin_sample(bin_centre(k, self.interval), &prev, 6), emit)?;
            }
        }
        self.out(bin_sample(bin_centre(bin, self.interval), &out, 6), emit)?;
        self.previous_out = Some((bin, out));
        Ok(())
    }

    /// Java `populateSkippedBins`: bins after the saved one and before `until`.
    fn skipped(&mut self, until: i64, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let Some((saved, vals)) = self.saved else {
            return Ok(());
        };
        let last = vals[5];
        let out = BinOut {
            vals: [last, 0.0, last, last, 0.0, last],
            stdz: None,
            severity: self.severity,
            connection_change: self.connection_change,
        };
        for k in saved + 1..until {
            self.put(k, out, emit)?;
        }
        Ok(())
    }

    fn commit(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let Some(bin) = self.current else {
            return Ok(());
        };
        self.skipped(bin, emit)?;
        let m = &self.moments;
        let vals = [
            m.mean(),
            m.std(),
            m.min(),
            m.max(),
            m.n() as f64,
            self.last_value,
        ];
        let out = BinOut {
            vals,
            stdz: None,
            severity: self.severity,
            connection_change: self.connection_change,
        };
        self.put(bin, out, emit)?;
        self.saved = Some((bin, vals));
        Ok(())
    }

    fn switch(&mut self, bin: i64) {
        self.current = Some(bin);
        self.moments = Moments::default();
        self.severity = 0;
        self.connection_change = false;
    }

    fn add(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let v = number(&s.value);
        if !v.is_nan() {
            self.last_value = v;
            self.moments.add(v);
        }
        self.added += 1;
        if !self.binned {
            if (self.raw.len() as u64) < self.points {
                self.raw.push(s.clone());
            }
            if self.added > self.points {
                self.binned = true;
                self.raw = Vec::new();
                for b in std::mem::take(&mut self.pending) {
                    emit.sample(&b)?;
                }
            }
        }
        Ok(())
    }
}

impl Bins for OptimLastSample {
    fn current(&self) -> Option<i64> {
        self.current
    }

    fn next_bin(&mut self, bin: i64, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        self.commit(emit)?;
        self.switch(bin);
        Ok(())
    }

    fn moments(&mut self) -> &mut Moments {
        &mut self.moments
    }

    fn count(&mut self, run: &Run) {
        if !run.last.is_nan() {
            self.last_value = run.last;
        }
        self.added += run.added;
        self.severity = self.severity.max(run.severity);
        self.connection_change |= run.connection_change;
    }
}

impl PostProcessor for OptimLastSample {
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        self.input = Some((desc.payload_type, desc.element_count));
        // Java: (to − from in ms) / (1000·N), as an int; 0 would divide by zero there.
        let ms = (desc.to.secs - desc.from.secs) * 1000
            + (i64::from(desc.to.nanos) - i64::from(desc.from.nanos)) / 1_000_000;
        self.interval = (ms / (1000 * self.points as i64)).clamp(1, i64::from(i32::MAX));
        self.from = desc.from;
        self.to = desc.to;
        self.first_bin = bin_of(desc.from, self.interval);
        self.last_bin = bin_of(desc.to, self.interval);
        desc.payload_type = PayloadType::WaveformDouble;
        desc.element_count = 6;
        Ok(())
    }

    fn binning(&self) -> Option<Binning> {
        Some(Binning {
            interval: self.interval,
            from: self.from,
            to: self.to,
        })
    }

    /// What [`OptimLastSample::sample`] does with samples inside `(from, to]` once
    /// binned (more than N samples read), a run at a time ([`join`]; a run's `last` is
    /// its last non-NaN value). Before, and while the before-start sample waits, sample
    /// by sample.
    fn runs(&mut self, r: &Runs, emit: &mut Emit<'_>) -> Result<bool, RetrievalError> {
        if !self.binned || !r.inside() || (!self.before_added && self.before.is_some()) {
            return Ok(false);
        }
        join(r, self, emit)?;
        Ok(true)
    }

    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let bin = bin_of(s.time, self.interval);
        if bin < self.first_bin {
            if !self.before_added {
                self.before = Some(s.clone());
            }
            return Ok(());
        }
        if bin > self.last_bin {
            return Ok(());
        }
        if !self.before_added
            && let Some(b) = self.before.take()
        {
            self.switch(self.first_bin - 1);
            self.add(&b, emit)?;
            self.before_added = true;
        }
        if self.current != Some(bin) {
            self.commit(emit)?;
            self.switch(bin);
        }
        self.severity = self.severity.max(s.severity);
        self.connection_change |= reconnected(s);
        self.add(s, emit)
    }

    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        if !self.before_added
            && let Some(b) = self.before.take()
        {
            self.switch(self.first_bin - 1);
            self.add(&b, emit)?;
            self.before_added = true;
        }
        self.commit(emit)?;
        if self.saved.is_some() {
            self.skipped(self.last_bin + 1, emit)?;
        }
        if self.binned {
            return Ok(());
        }
        if let Some((t, n)) = self.input {
            emit.retype(t, n);
        }
        for s in std::mem::take(&mut self.raw) {
            emit.sample(&s)?;
        }
        Ok(())
    }
}
