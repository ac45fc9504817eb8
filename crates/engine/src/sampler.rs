//! Sampling: which accepted events become archived samples.
//!
//! * **MONITOR, period 0** — every accepted event is archived.
//! * **MONITOR, period P > 0** — true decimation (the Java appliance instead drops bursts
//!   when its buffer is full): time is cut into bins of P seconds aligned to the Unix epoch,
//!   by IOC timestamp; of the events in one bin only the **last** is archived. It is
//!   committed when an event of a later bin arrives, or when the bin has ended by the
//!   server clock plus a short grace (a quarter period, at most 250 ms, for events still
//!   in flight; checked on every [`Sampler::tick`], so a quiet PV's last value is not held
//!   back). An event for a bin already committed (one that arrived later than the grace)
//!   is not stored. So at most one sample per period is stored, and it is the freshest
//!   value of that period that arrived in time.
//! * **SCAN, period P** — Java's semantics: an event is archived at once if its IOC
//!   timestamp is at least 0.95·P after the last archived one; otherwise it is kept as the
//!   latest value and archived by [`Sampler::tick`] once P plus the same grace has passed
//!   since the last archived sample by the server clock (the straggler flush; the grace
//!   lets the event that ends the period arrive first). An unchanged timestamp stores nothing (the
//!   timestamp filter drops repeats before they reach the sampler).
//!
//! Any `f64` period is safe (defence in depth; the appliance validates periods first): the
//! period is rounded to whole nanoseconds and capped at [`MAX_PERIOD_SECS`], and the bin
//! and deadline arithmetic saturates, so no input overflows or panics. See [`Sampler::new`].

use archiver_pb::{Sample, Timestamp};

/// The Java sampling methods the engine implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplingMethod {
    /// Archive monitor updates (decimated to one per period when the period is > 0).
    Monitor,
    /// Archive about one value per period.
    Scan,
}

impl SamplingMethod {
    /// The Java name (`MONITOR`, `SCAN`).
    pub fn as_str(self) -> &'static str {
        match self {
            SamplingMethod::Monitor => "MONITOR",
            SamplingMethod::Scan => "SCAN",
        }
    }

    /// Parses the Java name, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("MONITOR") {
            Some(SamplingMethod::Monitor)
        } else if s.eq_ignore_ascii_case("SCAN") {
            Some(SamplingMethod::Scan)
        } else {
            None
        }
    }
}

/// Java's `scanJitterFactor`.
pub const SCAN_JITTER_FACTOR: f64 = 0.95;

fn nanos(t: Timestamp) -> i128 {
    i128::from(t.secs) * 1_000_000_000 + i128::from(t.nanos)
}

/// The sampling state of one PV.
#[derive(Debug, Clone)]
pub struct Sampler {
    method: SamplingMethod,
    period_ns: i128,
    pending: Option<Sample>,
    last_archived: Option<Timestamp>,
    /// MONITOR with a period: the last bin a sample was committed for.
    committed_bin: Option<i128>,
}

/// The longest wait after the end of a decimation period for events still in flight.
const MAX_GRACE_NS: i128 = 250_000_000;

/// The longest sampling period the sampler honours: 10¹² s (about 31,700 years, beyond
/// any timestamp a PlainPB file holds); a longer one, infinity included, is this one.
pub const MAX_PERIOD_SECS: f64 = 1e12;

/// [`MAX_PERIOD_SECS`] in nanoseconds.
const MAX_PERIOD_NS: i128 = 1_000_000_000_000_000_000_000;

impl Sampler {
    /// A sampler for `method` with a period of `period_secs`, rounded to whole
    /// nanoseconds. Any value is safe:
    /// * 0, negative or NaN: 0 (MONITOR: every event; SCAN: every event with a new
    ///   timestamp), as is a positive period under half a nanosecond (`1e-30`);
    /// * above [`MAX_PERIOD_SECS`] (`1e300`, infinity): [`MAX_PERIOD_SECS`], a period that
    ///   never ends: MONITOR keeps the last value until a flush (pause, disconnect,
    ///   shutdown), SCAN archives the first value only, then one per flush.
    pub fn new(method: SamplingMethod, period_secs: f64) -> Self {
        let period_ns = if period_secs.is_nan() || period_secs <= 0.0 {
            0
        } else if period_secs >= MAX_PERIOD_SECS {
            MAX_PERIOD_NS
        } else {
            // In range: at most 1e21, which an i128 holds exactly enough.
            (period_secs * 1e9).round() as i128
        };
        Sampler {
            method,
            period_ns,
            pending: None,
            last_archived: None,
            committed_bin: None,
        }
    }

    /// The decimation bin of `t` (0 for period 0, where there are no bins).
    fn bin(&self, t: Timestamp) -> i128 {
        nanos(t).checked_div_euclid(self.period_ns).unwrap_or(0)
    }

    /// The method.
    pub fn method(&self) -> SamplingMethod {
        self.method
    }

    /// The period in seconds.
    pub fn period_secs(&self) -> f64 {
        self.period_ns as f64 / 1e9
    }

    /// True when a sample is held back waiting for its period to end.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The sample held back, if any (visible to retrieval, not yet archived).
    pub fn pending(&self) -> Option<&Sample> {
        self.pending.as_ref()
    }

    fn archive(&mut self, s: Sample, out: &mut impl FnMut(Sample)) {
        self.last_archived = Some(s.time);
        if self.method == SamplingMethod::Monitor && self.period_ns > 0 {
            self.committed_bin = Some(self.bin(s.time));
        }
        out(s);
    }

    /// Offers an accepted event; archived samples are passed to `out`, in order.
    pub fn offer(&mut self, s: Sample, out: &mut impl FnMut(Sample)) {
        match self.method {
            SamplingMethod::Monitor if self.period_ns == 0 => self.archive(s, out),
            SamplingMethod::Monitor => {
                let bin = self.bin(s.time);
                if self.committed_bin.is_some_and(|c| bin <= c) {
                    return; // its period was already committed: too late
                }
                let period = self.period_ns;
                if let Some(p) = self
                    .pending
                    .take_if(|p| nanos(p.time).div_euclid(period) < bin)
                {
                    self.archive(p, out);
                }
                self.pending = Some(s);
            }
            SamplingMethod::Scan => {
                let due = match self.last_archived {
                    None => true,
                    Some(last) => {
                        (nanos(s.time) - nanos(last)) as f64
                            >= SCAN_JITTER_FACTOR * self.period_ns as f64
                    }
                };
                if due {
                    self.pending = None;
                    self.archive(s, out);
                } else {
                    self.pending = Some(s);
                }
            }
        }
    }

    /// Commits a held-back sample whose period has ended by the server clock `now`.
    pub fn tick(&mut self, now: Timestamp, out: &mut impl FnMut(Sample)) {
        let Some(p) = &self.pending else { return };
        let ready = match self.method {
            SamplingMethod::Monitor => {
                let bin_end = self
                    .bin(p.time)
                    .saturating_add(1)
                    .saturating_mul(self.period_ns);
                let grace = (self.period_ns / 4).min(MAX_GRACE_NS);
                nanos(now) >= bin_end.saturating_add(grace)
            }
            // The same grace as for decimation: the event that ends the period (stamped
            // P after the last archived one) may still be in flight when the server clock
            // reaches that instant; flushing the straggler then would archive a value
            // from inside the period and shift every later sample.
            SamplingMethod::Scan => match self.last_archived {
                Some(last) => {
                    let grace = (self.period_ns / 4).min(MAX_GRACE_NS);
                    nanos(now)
                        >= nanos(last)
                            .saturating_add(self.period_ns)
                            .saturating_add(grace)
                }
                None => true,
            },
        };
        if ready && let Some(p) = self.pending.take() {
            self.archive(p, out);
        }
    }

    /// Commits a held-back sample now (pause, shutdown, method change).
    pub fn flush(&mut self, out: &mut impl FnMut(Sample)) {
        if let Some(p) = self.pending.take() {
            self.archive(p, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::Value;

    fn ev(ms: i64) -> Sample {
        Sample::new(
            Timestamp::new(
                1_700_000_000 + ms.div_euclid(1000),
                (ms.rem_euclid(1000) * 1_000_000) as u32,
            ),
            Value::ScalarDouble(ms as f64),
        )
    }

    fn run(s: &mut Sampler, events: &[i64]) -> Vec<i64> {
        let mut out = Vec::new();
        for &ms in events {
            s.offer(ev(ms), &mut |x| out.push(x));
        }
        out.into_iter()
            .map(|x| match x.value {
                Value::ScalarDouble(v) => v as i64,
                _ => -1,
            })
            .collect()
    }

    #[test]
    fn monitor_period_zero_keeps_everything() {
        let mut s = Sampler::new(SamplingMethod::Monitor, 0.0);
        assert_eq!(run(&mut s, &[0, 1, 2, 500]), vec![0, 1, 2, 500]);
        assert!(!s.has_pending());
    }

    #[test]
    fn monitor_with_period_keeps_the_last_value_of_each_period() {
        let mut s = Sampler::new(SamplingMethod::Monitor, 1.0);
        // 10 Hz for 3.5 s: bins [0,1000) [1000,2000) [2000,3000) [3000,...)
        let events: Vec<i64> = (0..35).map(|k| k * 100).collect();
        assert_eq!(run(&mut s, &events), vec![900, 1900, 2900]);
        assert!(s.has_pending());
        let mut out = Vec::new();
        s.tick(ev(3999).time, &mut |x| out.push(x.time));
        assert!(out.is_empty(), "bin not over yet");
        s.tick(ev(4100).time, &mut |x| out.push(x.time));
        assert!(out.is_empty(), "grace for events in flight");
        s.tick(ev(4250).time, &mut |x| out.push(x.time));
        assert_eq!(out, vec![ev(3400).time]);
        // An event of the committed period arriving late is not stored twice.
        assert_eq!(run(&mut s, &[3500, 4100]), Vec::<i64>::new());
        let mut out = Vec::new();
        s.flush(&mut |x| out.push(x.time));
        assert_eq!(out, vec![ev(4100).time]);
        // A burst of 1000 events in one period stores one sample.
        let mut s = Sampler::new(SamplingMethod::Monitor, 2.0);
        let burst: Vec<i64> = (0..1000).map(|k| 10_000 + k).collect();
        assert_eq!(run(&mut s, &burst), Vec::<i64>::new());
        let mut out = Vec::new();
        s.flush(&mut |x| out.push(x.time));
        assert_eq!(out, vec![ev(10_999).time]);
    }

    #[test]
    fn scan_archives_about_one_value_per_period() {
        let mut s = Sampler::new(SamplingMethod::Scan, 1.0);
        // 10 Hz: archived at 0, then the first event >= 950 ms later, and so on.
        let events: Vec<i64> = (0..25).map(|k| k * 100).collect();
        assert_eq!(run(&mut s, &events), vec![0, 1000, 2000]);
        // Slower than the period: every event is archived.
        let mut s = Sampler::new(SamplingMethod::Scan, 1.0);
        assert_eq!(run(&mut s, &[0, 2000, 4500]), vec![0, 2000, 4500]);
        // A straggler is flushed at the end of the period.
        let mut s = Sampler::new(SamplingMethod::Scan, 1.0);
        assert_eq!(run(&mut s, &[0, 300]), vec![0]);
        let mut out = Vec::new();
        s.tick(ev(999).time, &mut |x| out.push(x.time));
        assert!(out.is_empty());
        // Not before the grace for events in flight (a quarter period, at most 250 ms).
        s.tick(ev(1249).time, &mut |x| out.push(x.time));
        assert!(out.is_empty());
        s.tick(ev(1250).time, &mut |x| out.push(x.time));
        assert_eq!(out, vec![ev(300).time]);
        // The event that ends the period arrives late (server clock already past P):
        // it, not the straggler before it, is the next archived sample.
        let mut s = Sampler::new(SamplingMethod::Scan, 1.0);
        assert_eq!(run(&mut s, &[0, 900]), vec![0]);
        let mut out = Vec::new();
        s.tick(ev(1100).time, &mut |x| out.push(x.time));
        assert!(out.is_empty());
        assert_eq!(run(&mut s, &[1000]), vec![1000]);
        // Jitter: 960 ms later counts as the next period.
        let mut s = Sampler::new(SamplingMethod::Scan, 1.0);
        assert_eq!(run(&mut s, &[0, 960, 1900, 1910]), vec![0, 960, 1910]);
    }

    #[test]
    fn any_period_is_safe_and_defined() {
        let every = [0, 1, 2, 3];
        // Not a period, or too short to count: every event.
        for p in [
            1e-30,
            f64::MIN_POSITIVE,
            4e-10,
            0.0,
            -0.0,
            -1.0,
            f64::NEG_INFINITY,
            f64::NAN,
        ] {
            let mut s = Sampler::new(SamplingMethod::Monitor, p);
            assert_eq!(s.period_secs(), 0.0, "{p}");
            assert_eq!(run(&mut s, &every), every, "MONITOR {p}");
            let mut s = Sampler::new(SamplingMethod::Scan, p);
            assert_eq!(run(&mut s, &every), every, "SCAN {p}");
        }
        // Beyond the longest period: capped, a period that never ends, no overflow in
        // the bin or deadline arithmetic whatever the clock says.
        for p in [1e300, f64::MAX, f64::INFINITY, MAX_PERIOD_SECS, 2e12] {
            let mut s = Sampler::new(SamplingMethod::Monitor, p);
            assert_eq!(s.period_secs(), MAX_PERIOD_SECS, "{p}");
            assert_eq!(run(&mut s, &every), Vec::<i64>::new(), "MONITOR {p}");
            let mut out = Vec::new();
            for now in [ev(5000).time, Timestamp::new(i64::MAX, 999_999_999)] {
                s.tick(now, &mut |x| out.push(x.time));
            }
            // i64::MAX seconds is past the end of the first bin (1e12 s).
            assert_eq!(out, vec![ev(3).time], "MONITOR {p}");
            let far = Timestamp::new(i64::MAX - 1, 0);
            s.offer(Sample::new(far, Value::ScalarDouble(9.0)), &mut |x| {
                out.push(x.time)
            });
            s.tick(Timestamp::new(i64::MAX, 999_999_999), &mut |x| {
                out.push(x.time)
            });
            s.flush(&mut |x| out.push(x.time));
            assert_eq!(out, vec![ev(3).time, far], "MONITOR {p}");

            let mut s = Sampler::new(SamplingMethod::Scan, p);
            assert_eq!(run(&mut s, &every), vec![0], "SCAN {p}");
            let mut out = Vec::new();
            s.tick(ev(5000).time, &mut |x| out.push(x.time));
            assert!(out.is_empty(), "SCAN {p}");
            s.tick(Timestamp::new(i64::MAX, 999_999_999), &mut |x| {
                out.push(x.time)
            });
            s.tick(Timestamp::new(i64::MIN, 0), &mut |x| out.push(x.time));
            s.flush(&mut |x| out.push(x.time));
            assert_eq!(out, vec![ev(3).time], "SCAN {p}");
        }
        // Just below the cap: still a (huge) decimation period, computed exactly.
        let s = Sampler::new(SamplingMethod::Monitor, 31_536_000.0);
        assert_eq!(s.period_secs(), 31_536_000.0);
        let s = Sampler::new(SamplingMethod::Monitor, 0.001);
        assert_eq!(s.period_secs(), 0.001);
    }

    #[test]
    fn extreme_timestamps_do_not_overflow_with_a_short_period() {
        let mut s = Sampler::new(SamplingMethod::Monitor, 1e-9);
        let mut out = Vec::new();
        for t in [
            Timestamp::new(i64::MIN, 0),
            Timestamp::new(0, 0),
            Timestamp::new(i64::MAX, 999_999_999),
        ] {
            s.offer(Sample::new(t, Value::ScalarDouble(0.0)), &mut |x| {
                out.push(x.time)
            });
            s.tick(Timestamp::new(i64::MAX, 999_999_999), &mut |x| {
                out.push(x.time)
            });
        }
        s.flush(&mut |x| out.push(x.time));
        assert_eq!(out.len(), 3);
        let mut s = Sampler::new(SamplingMethod::Scan, 1e-9);
        s.offer(
            Sample::new(Timestamp::new(i64::MIN, 0), Value::ScalarDouble(0.0)),
            &mut |_| {},
        );
        s.offer(
            Sample::new(
                Timestamp::new(i64::MAX, 999_999_999),
                Value::ScalarDouble(0.0),
            ),
            &mut |_| {},
        );
        s.tick(Timestamp::new(i64::MIN, 0), &mut |_| {});
    }

    #[test]
    fn names() {
        assert_eq!(SamplingMethod::parse("scan"), Some(SamplingMethod::Scan));
        assert_eq!(
            SamplingMethod::parse("MONITOR"),
            Some(SamplingMethod::Monitor)
        );
        assert_eq!(SamplingMethod::parse("DONT_ARCHIVE"), None);
    }
}
