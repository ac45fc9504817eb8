//! The operators that pick, move or count samples rather than summarize them (Java
//! `FirstSamplePP`, `LastSample`, `FirstFill`, `LastFill`, `NCount`, `Nth`, `DeadBand`,
//! `IgnoreFliers`, `Fliers`, `CAPlotBinning`).
//!
//! Unlike the summarizing operators, these place "the last sample before start" by bin
//! number: the latest sample in a bin before `firstBin = from/I` (so a sample between
//! the start of `firstBin` and `from` counts as in the first bin), as Java does.

use archiver_pb::{FieldValue, PayloadType, Sample, Timestamp, Value};

use super::stats::Moments;
use super::{Emit, PostProcessor, bin_centre, bin_of, number, reconnected};
use crate::error::RetrievalError;
use crate::plan::StreamDesc;

/// A copy of a sample as Java's `POJOEvent` makes it: time, value, status and severity;
/// no field values.
fn pojo(time: Timestamp, s: &Sample) -> Sample {
    let mut out = Sample::new(time, s.value.clone());
    out.status = s.status;
    out.severity = s.severity;
    out
}

/// `firstSample_I`: the first sample of each bin, as it is (timestamp, type, alarm and
/// field values), preceded by the latest sample of the bins before `firstBin`; bins
/// after `to`'s bin dropped. Nothing is held but that one sample.
#[derive(Debug)]
pub(super) struct FirstSample {
    interval: i64,
    first_bin: i64,
    last_bin: i64,
    previous_bin: Option<i64>,
    before: Option<Sample>,
    before_added: bool,
}

impl FirstSample {
    pub(super) fn new(interval: u32) -> Self {
        FirstSample {
            interval: i64::from(interval.max(1)),
            first_bin: 0,
            last_bin: 0,
            previous_bin: None,
            before: None,
            before_added: false,
        }
    }
}

impl PostProcessor for FirstSample {
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        self.first_bin = bin_of(desc.from, self.interval);
        self.last_bin = bin_of(desc.to, self.interval);
        Ok(())
    }

    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let bin = bin_of(s.time, self.interval);
        if bin < self.first_bin {
            if !self.before_added {
                self.before = Some(s.clone());
            }
        } else if bin <= self.last_bin && self.previous_bin != Some(bin) {
            if let Some(b) = self.before.take() {
                self.before_added = true;
                emit.sample(&b)?;
            }
            emit.sample(s)?;
            self.previous_bin = Some(bin);
        }
        Ok(())
    }

    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        if let Some(b) = self.before.take() {
            self.before_added = true;
            emit.sample(&b)?;
        }
        Ok(())
    }
}

/// Java `TwoWeekRaw` (identity `twoweek`), what `usereduced=true` applies when no
/// post-processor is asked for: `firstSample` with the default interval for the part of
/// the range before `cutoff` (two weeks before the request), the raw samples from
/// `cutoff` on. Java splits the range into two spans with a processor each; here one
/// processor switches at the first sample at or after `cutoff`.
#[derive(Debug)]
pub(super) struct TwoWeek {
    cutoff: Timestamp,
    sparse: FirstSample,
    /// The raw part has begun: the sparse part was ended.
    raw: bool,
}

impl TwoWeek {
    pub(super) fn new(cutoff: Timestamp) -> Self {
        TwoWeek {
            cutoff,
            sparse: FirstSample::new(super::spec::DEFAULT_INTERVAL),
            raw: false,
        }
    }
}

impl PostProcessor for TwoWeek {
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        // The sparse span ends at the cutoff; the request's range is left as it is.
        let mut sparse_span = desc.clone();
        sparse_span.to = sparse_span.to.min(self.cutoff);
        self.sparse.begin_pv(&mut sparse_span)
    }

    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        if s.time < self.cutoff {
            return self.sparse.sample(s, emit);
        }
        if !self.raw {
            self.raw = true;
            self.sparse.end_pv(emit)?;
        }
        emit.sample(s)
    }

    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        if self.raw {
            Ok(())
        } else {
            self.sparse.end_pv(emit)
        }
    }
}

/// `lastSample_I` (the last sample of each bin with its own timestamp, empty bins
/// omitted), `firstFill_I` and `lastFill_I` (the first or last sample of each bin at the
/// bin centre with 0 nanoseconds, empty bins after the first repeating the previous one up
/// to `to`'s bin). The type is the PV's; the values keep status and severity, not field
/// values (Java `FillsCollectorEventStream`). The latest sample before `firstBin` is the
/// bin `firstBin − 1`.
#[derive(Debug)]
pub(super) struct PerBin {
    interval: i64,
    last: bool,
    fill: bool,
    first_bin: i64,
    last_bin: i64,
    before: Option<Sample>,
    before_added: bool,
    current: Option<(i64, Sample)>,
    previous: Option<(i64, Sample)>,
}

impl PerBin {
    pub(super) fn new(interval: u32, last: bool, fill: bool) -> Self {
        PerBin {
            interval: i64::from(interval.max(1)),
            last,
            fill,
            first_bin: 0,
            last_bin: 0,
            before: None,
            before_added: false,
            current: None,
            previous: None,
        }
    }

    fn out(&self, bin: i64, s: &Sample) -> Sample {
        if self.fill {
            pojo(Timestamp::new(bin_centre(bin, self.interval).secs, 0), s)
        } else {
            pojo(s.time, s)
        }
    }

    /// Emits the bin held (and the filled ones before it).
    fn commit(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let Some((bin, s)) = self.current.take() else {
            return Ok(());
        };
        self.fill_until(bin, emit)?;
        emit.sample(&self.out(bin, &s))?;
        self.previous = Some((bin, s));
        Ok(())
    }

    fn fill_until(&mut self, bin: i64, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        if !self.fill {
            return Ok(());
        }
        if let Some((last, s)) = &self.previous {
            for k in last + 1..bin {
                emit.sample(&self.out(k, s))?;
            }
        }
        Ok(())
    }
}

impl PostProcessor for PerBin {
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        self.first_bin = bin_of(desc.from, self.interval);
        self.last_bin = bin_of(desc.to, self.interval);
        Ok(())
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
        if let Some(b) = self.before.take() {
            self.before_added = true;
            self.current = Some((self.first_bin - 1, b));
        }
        match &mut self.current {
            Some((b, held)) if *b == bin => {
                if self.last {
                    *held = s.clone();
                }
            }
            _ => {
                self.commit(emit)?;
                self.current = Some((bin, s.clone()));
            }
        }
        Ok(())
    }

    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        if let Some(b) = self.before.take() {
            self.before_added = true;
            self.commit(emit)?;
            self.current = Some((self.first_bin - 1, b));
        }
        self.commit(emit)?;
        self.fill_until(self.last_bin + 1, emit)
    }
}

/// Milliseconds since the epoch, as Java's `Instant.toEpochMilli` (floor).
fn millis(t: Timestamp) -> i64 {
    t.secs * 1000 + i64::from(t.nanos / 1_000_000)
}

/// `ncount`: one `DBR_SCALAR_INT` sample at `from` (cut to milliseconds), the number of
/// samples with `from ≤ t ≤ to` in milliseconds; also when there are none (0).
#[derive(Debug, Default)]
pub(super) struct NCount {
    from: i64,
    to: i64,
    count: i32,
}

impl PostProcessor for NCount {
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        self.from = millis(desc.from);
        self.to = millis(desc.to);
        desc.payload_type = PayloadType::ScalarInt;
        desc.element_count = 1;
        Ok(())
    }

    fn sample(&mut self, s: &Sample, _emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let t = millis(s.time);
        if t >= self.from && t <= self.to {
            self.count = self.count.saturating_add(1);
        }
        Ok(())
    }

    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let at = Timestamp::new(
            self.from.div_euclid(1000),
            (self.from.rem_euclid(1000) * 1_000_000) as u32,
        );
        emit.sample(&Sample::new(at, Value::ScalarInt(self.count)))
    }
}

/// `nth_n`: every n-th sample with `from ≤ t ≤ to` (milliseconds), counting from the
/// first, with its time, value, status and severity (no field values); any type. Java's
/// `Nth` stops silently after `Integer.MAX_VALUE / 1000` (2 147 483) samples, a bound of
/// the memory it collects them in; this one streams them, so it answers every n-th
/// sample of the range, however many (no silent cap).
#[derive(Debug)]
pub(super) struct Nth {
    n: u64,
    from: i64,
    to: i64,
    seen: u64,
}

impl Nth {
    pub(super) fn new(n: u32) -> Self {
        Nth {
            n: u64::from(n.max(1)),
            from: 0,
            to: 0,
            seen: 0,
        }
    }
}

impl PostProcessor for Nth {
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        self.from = millis(desc.from);
        self.to = millis(desc.to);
        Ok(())
    }

    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let t = millis(s.time);
        if t < self.from || t > self.to {
            return Ok(());
        }
        let keep = self.seen.is_multiple_of(self.n);
        self.seen += 1;
        if keep {
            let plain = s.field_values.is_empty()
                && s.field_actual_change.is_none()
                && s.repeat_count.is_none()
                && s.user_tag.is_none();
            if plain {
                emit.sample(s)?;
            } else {
                emit.sample(&pojo(s.time, s))?;
            }
        }
        Ok(())
    }
}

/// `deadBand_ADEL`: the first sample, then each sample whose value or the last emitted
/// value is NaN or infinite, whose severity differs from the last emitted, whose
/// carrying `cnxlostepsecs` differs from the last emitted, or whose value differs from
/// the last emitted by strictly more than ADEL (Java uses `>`; its documentation says
/// `≥`). Samples are passed as they are; nothing is allocated.
#[derive(Debug)]
pub(super) struct DeadBand {
    adel: f64,
    last: Option<(f64, i32, bool)>,
}

impl DeadBand {
    pub(super) fn new(adel: f64) -> Self {
        DeadBand { adel, last: None }
    }
}

impl PostProcessor for DeadBand {
    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let v = number(&s.value);
        let lost = !s.field_values.is_empty() && s.field_value("cnxlostepsecs").is_some();
        let pass = match self.last {
            None => true,
            Some((last, severity, last_lost)) => {
                !v.is_finite()
                    || !last.is_finite()
                    || s.severity != severity
                    || lost != last_lost
                    || (v - last).abs() > self.adel
            }
        };
        if pass {
            self.last = Some((v, s.severity, lost));
            emit.sample(s)?;
        }
        Ok(())
    }
}

/// `ignoreflyers_I_S` / `flyers_I_S`: per bin of `I` seconds (of the merged stream; Java
/// computes them per source stream), the mean and standard deviation of the non-NaN
/// values; keeps the samples within `S` standard deviations of the mean (`ignoreflyers`)
/// or the others (`flyers`); a bin with no number is dropped by both. Holds the samples
/// of one bin (reused buffer; a sample is cloned into it).
#[derive(Debug)]
pub(super) struct Flyers {
    interval: i64,
    deviations: f32,
    keep_flyers: bool,
    bin: Option<i64>,
    held: Vec<Sample>,
    moments: Moments,
}

impl Flyers {
    pub(super) fn new(interval: u32, deviations: f32, keep_flyers: bool) -> Self {
        Flyers {
            interval: i64::from(interval.max(1)),
            deviations,
            keep_flyers,
            bin: None,
            held: Vec::new(),
            moments: Moments::default(),
        }
    }

    fn flush(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        if self.moments.n() > 0 {
            let mean = self.moments.mean();
            let cutoff = f64::from(self.deviations) * self.moments.std();
            for s in &self.held {
                let within = (number(&s.value) - mean).abs() <= cutoff;
                if within != self.keep_flyers {
                    emit.sample(s)?;
                }
            }
        }
        self.held.clear();
        self.moments = Moments::default();
        Ok(())
    }
}

impl PostProcessor for Flyers {
    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let bin = bin_of(s.time, self.interval);
        if self.bin != Some(bin) {
            self.flush(emit)?;
            self.bin = Some(bin);
        }
        self.held.push(s.clone());
        let v = number(&s.value);
        if !v.is_nan() {
            self.moments.add(v);
        }
        Ok(())
    }

    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        self.flush(emit)
    }
}

/// One bin of `caplotbinning`.
#[derive(Debug, Clone, Copy)]
struct PlotBin {
    bin: i64,
    first: (i64, f64),
    last: Option<(i64, f64)>,
    moments: Moments,
    severity: i32,
    connection_change: bool,
}

/// `caplotbinning_I` (Channel Archiver plot binning): per bin, one sample → that sample
/// (time cut to the second); two → both; more → four samples at the bin start (first
/// value), +⌊I/4⌋ (min), +⌊I/2⌋ (max), +⌊3I/4⌋ (last); `DBR_SCALAR_DOUBLE`, status 0,
/// the bin's highest severity, `connectionChange`. The latest sample before `firstBin` is
/// the bin `firstBin − 1` (severity 0).
#[derive(Debug)]
pub(super) struct CaPlot {
    interval: i64,
    first_bin: i64,
    last_bin: i64,
    before: Option<(i64, f64)>,
    before_added: bool,
    current: Option<PlotBin>,
}

impl CaPlot {
    pub(super) fn new(interval: u32) -> Self {
        CaPlot {
            interval: i64::from(interval.max(1)),
            first_bin: 0,
            last_bin: 0,
            before: None,
            before_added: false,
            current: None,
        }
    }

    fn switch(
        &mut self,
        bin: i64,
        secs: i64,
        v: f64,
        emit: &mut Emit<'_>,
    ) -> Result<(), RetrievalError> {
        self.flush(emit)?;
        let mut moments = Moments::default();
        moments.add(v);
        self.current = Some(PlotBin {
            bin,
            first: (secs, v),
            last: None,
            moments,
            severity: 0,
            connection_change: false,
        });
        Ok(())
    }

    fn flush(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let Some(b) = self.current.take() else {
            return Ok(());
        };
        let make = |secs: i64, v: f64| {
            let mut s = Sample::new(Timestamp::new(secs, 0), Value::ScalarDouble(v));
            s.severity = b.severity;
            if b.connection_change {
                s.field_values
                    .push(FieldValue::new("connectionChange", "true"));
            }
            s
        };
        match b.last {
            None => emit.sample(&make(b.first.0, b.first.1)),
            Some(last) if b.moments.n() == 2 => {
                emit.sample(&make(b.first.0, b.first.1))?;
                emit.sample(&make(last.0, last.1))
            }
            Some(last) => {
                let start = b.bin * self.interval;
                let i = self.interval as f64;
                emit.sample(&make(start, b.first.1))?;
                emit.sample(&make(start + (0.25 * i) as i64, b.moments.min()))?;
                emit.sample(&make(start + (0.50 * i) as i64, b.moments.max()))?;
                emit.sample(&make(start + (0.75 * i) as i64, last.1))
            }
        }
    }
}

impl PostProcessor for CaPlot {
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        self.first_bin = bin_of(desc.from, self.interval);
        self.last_bin = bin_of(desc.to, self.interval);
        desc.payload_type = PayloadType::ScalarDouble;
        desc.element_count = 1;
        Ok(())
    }

    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let bin = bin_of(s.time, self.interval);
        let v = number(&s.value);
        if bin < self.first_bin {
            if !self.before_added {
                self.before = Some((s.time.secs, v));
            }
            return Ok(());
        }
        if bin > self.last_bin {
            return Ok(());
        }
        if let Some((secs, bv)) = self.before.take() {
            self.before_added = true;
            self.switch(self.first_bin - 1, secs, bv, emit)?;
        }
        match &mut self.current {
            Some(b) if b.bin == bin => {
                b.last = Some((s.time.secs, v));
                b.moments.add(v);
            }
            _ => self.switch(bin, s.time.secs, v, emit)?,
        }
        if let Some(b) = &mut self.current {
            b.severity = b.severity.max(s.severity);
            b.connection_change |= reconnected(s);
        }
        Ok(())
    }

    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        if let Some((secs, bv)) = self.before.take() {
            self.before_added = true;
            self.switch(self.first_bin - 1, secs, bv, emit)?;
        }
        self.flush(emit)
    }
}
