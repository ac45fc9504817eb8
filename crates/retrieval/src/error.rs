//! The one error type of a retrieval, and how bad it is for the client.

use archiver_pb::Timestamp;
use archiver_registry::RegistryError;
use archiver_storage::StorageError;

/// Why a retrieval failed or stopped. [`RetrievalError::class`] tells a server what to
/// answer: 400, 404, 500, or nothing (the client left).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetrievalError {
    /// A time parameter (`from`, `to`) is not an ISO-8601 instant.
    #[error("parameter '{param}': {message}")]
    BadTime {
        /// The parameter.
        param: &'static str,
        /// What the parser said.
        message: String,
    },
    /// The range is reversed (Java: 400 "end ... is before start ...").
    #[error("'to' ({to}) is before 'from' ({from})")]
    ToBeforeFrom {
        /// Start of the range.
        from: Timestamp,
        /// End of the range.
        to: Timestamp,
    },
    /// Kept for source compatibility; no longer produced (post-processors are served).
    #[error("post-processor {name:?} is not supported yet; request the PV name alone for raw data")]
    PostProcessorUnsupported {
        /// The operator as requested (`mean_600`).
        name: String,
    },
    /// No post-processor of the registry is a prefix of the spec. The Java appliance
    /// silently answers the raw data instead; we refuse, naming it.
    #[error("unknown post-processor {spec:?}; known: {known}")]
    UnknownPostProcessor {
        /// The spec as sent (`rms_600`).
        spec: String,
        /// The registry's names, comma-separated (for the message).
        known: &'static str,
    },
    /// A post-processor argument does not parse or is out of range (Java: 404 or 500).
    #[error("post-processor {spec:?}: {message}")]
    BadPostProcessorArgument {
        /// The spec as sent (`mean_abc`).
        spec: String,
        /// What is wrong.
        message: String,
    },
    /// A binning post-processor would produce more bins than the server allows
    /// (`postprocess::spec::MAX_BINS`, `MAX_OPTIMIZED_POINTS`).
    #[error(
        "post-processor {spec:?} would produce {bins} bins over this range, more than the \
         {max} allowed; use a larger interval (or fewer points) or a shorter range"
    )]
    TooManyBins {
        /// The spec as sent.
        spec: String,
        /// The bins it would produce.
        bins: u64,
        /// The limit.
        max: u64,
    },
    /// A `.mat` answer (which must be built whole before it is sent) would hold more
    /// samples than allowed.
    #[error(
        "a .mat answer holds at most {max} samples and this one has more; use a shorter range, \
         a post-processor, or a streamed format (json, csv, raw)"
    )]
    TooLargeForMat {
        /// The limit.
        max: u64,
    },
    /// The `timeranges` parameter is not a comma list of an even number of ISO-8601
    /// instants, each pair ordered, the pairs ascending without overlap (Java: 400).
    #[error("parameter 'timeranges': {0}")]
    BadTimeRanges(String),
    /// `op(PV` without `)` (Java: 400 "Unbalanced paran").
    #[error("unbalanced parenthesis in parameter 'pv': {0:?}")]
    UnbalancedParenthesis(String),
    /// `op1(op2(PV))`: one post-processor per PV (Java reads the inner call as a PV name
    /// and answers 404; the nesting is the mistake, so it is a 400 naming it).
    #[error(
        "nested post-processors are not supported in parameter 'pv': {0:?} (use one, e.g. mean_600(PV))"
    )]
    NestedPostProcessor(String),
    /// A post-processor that computes with values asked of a PV whose values are not
    /// numbers (strings, pvAccess structures). The Java appliance fails with a server
    /// error; `nth`, `ncount`, `firstSample`, `lastSample`, `firstFill` and `lastFill`
    /// work on any type.
    #[error("post-processor {spec:?} needs numeric values; PV {pv} is {payload_type:?}")]
    NotNumeric {
        /// The spec as sent.
        spec: String,
        /// The PV (as requested).
        pv: String,
        /// Its type.
        payload_type: archiver_pb::PayloadType,
    },
    /// The `pv` parameter is empty once `ca://`, `pva://` and `.VAL` are removed.
    #[error("parameter 'pv' names no PV: {0:?}")]
    EmptyName(String),
    /// Neither the catalogue nor the live source knows the PV (Java's message).
    #[error("Unable to find typeinfo for pv {pv}")]
    NotFound {
        /// The name as requested (normalized).
        pv: String,
    },
    /// A PV the archiver does not know, requested with a `retiredPVTemplate` that names no
    /// PV of the catalogue either (Java: 404 "Unable to find typeinfo for pv", the
    /// template being unknown; we name the template too).
    #[error(
        "Unable to find typeinfo for pv {pv}: the retiredPVTemplate {template} is not a PV \
         of this archiver"
    )]
    UnknownRetiredTemplate {
        /// The name as requested (normalized).
        pv: String,
        /// The template as requested.
        template: String,
    },
    /// Only the live source knows the PV, and it has never connected: no type, no data.
    #[error("PV {pv} has never connected: its type is not known yet and it has no data")]
    NeverConnected {
        /// The name as requested (normalized).
        pv: String,
    },
    /// The catalogue could not be read.
    #[error("catalogue lookup of {pv}: {source}")]
    Catalogue {
        /// The PV looked up.
        pv: String,
        /// Why.
        source: RegistryError,
    },
    /// The files could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The client went away: the response was dropped, nothing is left to answer.
    #[error("the client went away")]
    ClientGone,
}

/// What a failed retrieval means for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is wrong (HTTP 400).
    BadRequest,
    /// The PV is not known (HTTP 404).
    NotFound,
    /// Our side failed (HTTP 500; logged).
    Internal,
    /// Nobody is listening any more; nothing to answer.
    ClientGone,
}

impl RetrievalError {
    /// How bad the error is for the client.
    pub fn class(&self) -> ErrorClass {
        match self {
            RetrievalError::BadTime { .. }
            | RetrievalError::ToBeforeFrom { .. }
            | RetrievalError::PostProcessorUnsupported { .. }
            | RetrievalError::UnknownPostProcessor { .. }
            | RetrievalError::BadPostProcessorArgument { .. }
            | RetrievalError::TooManyBins { .. }
            | RetrievalError::TooLargeForMat { .. }
            | RetrievalError::UnbalancedParenthesis(_)
            | RetrievalError::NestedPostProcessor(_)
            | RetrievalError::BadTimeRanges(_)
            | RetrievalError::NotNumeric { .. }
            | RetrievalError::EmptyName(_) => ErrorClass::BadRequest,
            RetrievalError::NotFound { .. }
            | RetrievalError::NeverConnected { .. }
            | RetrievalError::UnknownRetiredTemplate { .. } => ErrorClass::NotFound,
            RetrievalError::Catalogue { .. } | RetrievalError::Storage(_) => ErrorClass::Internal,
            RetrievalError::ClientGone => ErrorClass::ClientGone,
        }
    }
}
