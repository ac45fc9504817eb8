//! Engine errors.

/// Why an engine operation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The PV is not archived.
    #[error("PV {0} is not being archived")]
    NotFound(String),
    /// The PV is already paused.
    #[error("PV {0} is already paused")]
    AlreadyPaused(String),
    /// The PV is not paused.
    #[error("PV {0} is not paused")]
    NotPaused(String),
    /// The PV name cannot be archived.
    #[error("invalid PV name: {0}")]
    BadName(String),
    /// The sampling period is negative or not a number.
    #[error("invalid sampling period {0}")]
    BadPeriod(f64),
    /// More archive fields than a PV can have.
    #[error("{0} archive fields requested; at most {max} are allowed", max = crate::engine::MAX_ARCHIVE_FIELDS)]
    TooManyFields(usize),
    /// The engine has shut down.
    #[error("the engine has shut down")]
    ShutDown,
}
