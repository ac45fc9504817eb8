//! The optional stage between the merge and the encoder: a [`PostProcessor`] reads the
//! merged samples of one PV in time order and emits samples, possibly of another type
//! (Java `PostProcessor`: `mean_600`, `firstSample_3600`, ...).
//!
//! * [`spec`] — the spec of a request (`pv=mean_600(PV)`, `pv=mean(PV,600)`, `pp=mean_600`)
//!   and the Java registry with its prefix lookup: [`PostProcessorSpec`], [`Op`].
//! * [`stats`] — the numeric definitions of commons-math that the Java operators use.
//! * [`runs`] — the binning the decoding threads do for the operators of the moments
//!   ([`PostProcessor::binning`], [`PostProcessor::runs`]): exact, joined in order.
//! * `summary` — the summarizing operators over epoch-aligned bins (`mean`, `min`, ...,
//!   `stats`, `errorbar`, `optimized`, `optimLastSample`).
//! * `select` — the operators that pick or count samples (`firstSample`, `lastSample`,
//!   `firstFill`, `lastFill`, `nth`, `ncount`, `deadBand`, `ignoreflyers`, `flyers`,
//!   `caplotbinning`).
//!
//! [`build`] turns a spec into a boxed post-processor; [`Raw`] is the identity (Java
//! `DefaultRawPostProcessor`). Everything streams: a binning operator holds one bin and
//! emits it when the next begins; nothing holds the whole series (except where Java's
//! definition needs more, documented on the operator: the values of one bin for
//! `median`, `kurtosis`, `skewness`, `linear`, `loess`, `ignoreflyers`, `flyers`; up to N
//! samples and N bins for `optimized_N` until it knows which answer it gives).

use archiver_pb::{PayloadType, Sample};

use crate::error::RetrievalError;
use crate::plan::StreamDesc;

pub mod runs;
pub mod spec;
pub mod stats;

mod select;
mod summary;

pub use runs::{Binning, Run, Runs};
pub use spec::{Op, PostProcessorSpec, Stat};

/// Where a post-processor sends the samples it emits: the rest of the pipeline (encoder,
/// then pieces). An error means "stop" (the client went away) and must be passed on.
///
/// Any `FnMut(&Sample) -> Result<(), RetrievalError>` is an `Output` (tests, tools).
pub trait Output {
    /// Emits one sample of the response.
    fn sample(&mut self, s: &Sample) -> Result<(), RetrievalError>;

    /// Before the first sample of a PV only: the samples that follow are of this type and
    /// element count rather than what [`PostProcessor::begin_pv`] said (`optimized_N`
    /// answers the raw samples when there are at most N, else `DBR_WAVEFORM_DOUBLE`
    /// bins, and knows which only after reading). Ignored once a sample was emitted.
    fn retype(&mut self, payload_type: PayloadType, element_count: u32) {
        let _ = (payload_type, element_count);
    }
}

impl<F> Output for F
where
    F: FnMut(&Sample) -> Result<(), RetrievalError>,
{
    fn sample(&mut self, s: &Sample) -> Result<(), RetrievalError> {
        self(s)
    }
}

/// The output a post-processor writes to (see [`Output`]).
pub type Emit<'a> = dyn Output + 'a;

/// Turns the merged samples of one PV into the samples of the response.
///
/// For each PV: [`PostProcessor::begin_pv`] (which may change the type, element count or
/// headers of the response: a binning operator emits `DBR_SCALAR_DOUBLE`, and may refuse
/// the PV: a numeric operator on strings), then [`PostProcessor::sample`] for every sample
/// the merge lets through (at most one at or before `from`, then those in `(from, to]`,
/// strictly increasing), then [`PostProcessor::end_pv`], which emits what is still held
/// (the last bin). A binning operator keeps its bin state in the struct and emits one
/// sample per bin as the next bin starts; nothing needs the whole series in memory.
pub trait PostProcessor: Send {
    /// Starts a PV; may change what `desc` says about the samples it will emit. The range
    /// (`desc.from`, `desc.to`) is the request's and must be left as it is. An error
    /// (400 material) comes before any byte of the response.
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        let _ = desc;
        Ok(())
    }

    /// Offers one sample; emits each sample of the response it completes.
    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError>;

    /// Ends the PV: emits what is still held.
    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let _ = emit;
        Ok(())
    }

    /// The binning the decoding threads may do for this PV ([`runs`]), asked after
    /// [`PostProcessor::begin_pv`]: `Some` for the operators whose bins hold the moments
    /// only (`mean`, `min`, `max`, `count`, `std`, `variance`, `popvariance`, `jitter`,
    /// `errorbar`, `stats`, `optimized`, `optimLastSample`); `None` (the default) for
    /// the others, which get every sample.
    fn binning(&self) -> Option<Binning> {
        None
    }

    /// Takes the samples of a part of stored lines binned ([`Runs`]: all of them inside
    /// `(from, to]` per [`Runs::inside`], in order, after the samples given before) and
    /// emits what they complete, exactly as [`PostProcessor::sample`] would for each;
    /// returns false, having changed nothing, when it wants them one by one instead.
    /// The default: false.
    fn runs(&mut self, runs: &Runs, emit: &mut Emit<'_>) -> Result<bool, RetrievalError> {
        let _ = (runs, emit);
        Ok(false)
    }

    /// True for the identity ([`Raw`]): the producer then hands the merged samples to
    /// the encoder with their origin (source stream, stored line), so that pbraw frames
    /// the sources and copies the stored lines verbatim. False by default.
    fn is_identity(&self) -> bool {
        false
    }
}

/// The raw data, unchanged (Java `DefaultRawPostProcessor`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl PostProcessor for Raw {
    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        emit.sample(s)
    }

    fn is_identity(&self) -> bool {
        true
    }
}

/// The post-processor of `spec` for one PV: it keeps the PV's state (bins, counters,
/// the before-start sample) and is not reset by a second `begin_pv`, so a response of
/// several PVs builds one per PV, as Java does. Whether the PV's type suits it is checked by its
/// [`PostProcessor::begin_pv`] ([`RetrievalError::NotNumeric`]).
pub fn build(spec: &PostProcessorSpec) -> Box<dyn PostProcessor> {
    let inner: Box<dyn PostProcessor> = match spec.op {
        Op::Summary {
            stat,
            interval,
            fill,
        } => Box::new(summary::Summary::new(stat, interval, fill)),
        Op::Optimized { points, last, fill } => {
            if last {
                Box::new(summary::OptimLastSample::new(points, fill))
            } else {
                Box::new(summary::Optimized::new(points, fill))
            }
        }
        Op::FirstSample { interval } => Box::new(select::FirstSample::new(interval)),
        Op::TwoWeek { cutoff } => Box::new(select::TwoWeek::new(cutoff)),
        Op::LastSample { interval } => Box::new(select::PerBin::new(interval, true, false)),
        Op::FirstFill { interval } => Box::new(select::PerBin::new(interval, false, true)),
        Op::LastFill { interval } => Box::new(select::PerBin::new(interval, true, true)),
        Op::NCount => Box::new(select::NCount::default()),
        Op::Nth { n } => Box::new(select::Nth::new(n)),
        Op::DeadBand { adel } => Box::new(select::DeadBand::new(adel)),
        Op::Flyers {
            interval,
            deviations,
            keep_flyers,
        } => Box::new(select::Flyers::new(interval, deviations, keep_flyers)),
        Op::CaPlotBinning { interval } => Box::new(select::CaPlot::new(interval)),
    };
    if spec.needs_numbers() {
        Box::new(Numeric {
            spec: spec.text.clone(),
            inner,
        })
    } else {
        inner
    }
}

/// Refuses a PV whose values are not numbers before an operator computes with them.
struct Numeric {
    spec: String,
    inner: Box<dyn PostProcessor>,
}

impl PostProcessor for Numeric {
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        if matches!(
            desc.payload_type,
            PayloadType::ScalarString | PayloadType::WaveformString | PayloadType::V4GenericBytes
        ) {
            return Err(RetrievalError::NotNumeric {
                spec: self.spec.clone(),
                pv: desc.name.clone(),
                payload_type: desc.payload_type,
            });
        }
        self.inner.begin_pv(desc)
    }

    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        self.inner.sample(s, emit)
    }

    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        self.inner.end_pv(emit)
    }

    fn binning(&self) -> Option<Binning> {
        self.inner.binning()
    }

    fn runs(&mut self, runs: &Runs, emit: &mut Emit<'_>) -> Result<bool, RetrievalError> {
        self.inner.runs(runs, emit)
    }
}

/// The value of a sample as a number, as Java's `SampleValue.getValue().doubleValue()`:
/// scalars as they are, a waveform its first element (NaN when empty), the bytes of a
/// `DBR_WAVEFORM_BYTE` signed; strings and pvAccess structures (refused before, see
/// [`build`]) NaN.
#[inline]
pub(crate) fn number(v: &archiver_pb::Value) -> f64 {
    use archiver_pb::Value;
    match v {
        Value::ScalarShort(x) | Value::ScalarEnum(x) => f64::from(*x),
        Value::ScalarFloat(x) => f64::from(*x),
        Value::ScalarByte(x) => f64::from(*x),
        Value::ScalarInt(x) => f64::from(*x),
        Value::ScalarDouble(x) => *x,
        Value::VectorShort(v) | Value::VectorEnum(v) => {
            v.first().map_or(f64::NAN, |x| f64::from(*x))
        }
        Value::VectorFloat(v) => v.first().map_or(f64::NAN, |x| f64::from(*x)),
        Value::VectorChar(v) => v.first().map_or(f64::NAN, |x| f64::from(*x as i8)),
        Value::VectorInt(v) => v.first().map_or(f64::NAN, |x| f64::from(*x)),
        Value::VectorDouble(v) => v.first().copied().unwrap_or(f64::NAN),
        Value::ScalarString(_) | Value::VectorString(_) | Value::V4GenericBytes(_) => f64::NAN,
    }
}

/// Java `epochSeconds / intervalSecs` (truncating division).
#[inline]
pub(crate) fn bin_of(t: archiver_pb::Timestamp, interval: i64) -> i64 {
    t.secs / interval
}

/// The bin centre of the summarizing operators: `bin·I + I/2` seconds, and half a second
/// more when `I` is odd (Java `SummaryStatsCollectorEventStream`).
#[inline]
pub(crate) fn bin_centre(bin: i64, interval: i64) -> archiver_pb::Timestamp {
    let nanos = if interval % 2 == 0 { 0 } else { 500_000_000 };
    archiver_pb::Timestamp::new(bin * interval + interval / 2, nanos)
}

/// True when the sample carries `cnxregainedepsecs` (the bin gets `connectionChange`).
#[inline]
pub(crate) fn reconnected(s: &Sample) -> bool {
    !s.field_values.is_empty() && s.field_value("cnxregainedepsecs").is_some()
}

#[cfg(test)]
mod tests;
