//! The optional stage between the merge and the encoder: a [`PostProcessor`] reads the
//! merged samples of one PV in time order and emits samples, possibly of another type
//! (Java `PostProcessor`: `mean_600`, `firstSample_3600`, ...). Only the identity,
//! [`Raw`] (Java `DefaultRawPostProcessor`), exists today; the spec parser of `pp=` and
//! `op(PV)` comes with the post-processors themselves.

use archiver_pb::Sample;

use crate::error::RetrievalError;
use crate::plan::StreamDesc;

/// Where a post-processor sends the samples it emits: the rest of the pipeline (encoder,
/// then pieces). An error means "stop" (the client went away) and must be passed on.
pub type Emit<'a> = dyn FnMut(&Sample) -> Result<(), RetrievalError> + 'a;

/// Turns the merged samples of one PV into the samples of the response.
///
/// For each PV: [`PostProcessor::begin_pv`] (which may change the type, element count or
/// headers of the response: a binning operator emits `DBR_SCALAR_DOUBLE`), then
/// [`PostProcessor::sample`] for every sample the merge lets through (at most one at or
/// before `from`, then those in `(from, to]`, strictly increasing), then
/// [`PostProcessor::end_pv`], which emits what is still held (the last bin). A binning
/// operator keeps its bin state in the struct and emits one sample per bin as the next
/// bin starts; nothing needs the whole series in memory.
pub trait PostProcessor: Send {
    /// Starts a PV; may change what `desc` says about the samples it will emit. The range
    /// (`desc.from`, `desc.to`) is the request's and must be left as it is.
    fn begin_pv(&mut self, desc: &mut StreamDesc) {
        let _ = desc;
    }

    /// Offers one sample; calls `emit` for each sample of the response it completes.
    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError>;

    /// Ends the PV: emits what is still held.
    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let _ = emit;
        Ok(())
    }
}

/// The raw data, unchanged (Java `DefaultRawPostProcessor`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl PostProcessor for Raw {
    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        emit(s)
    }
}
