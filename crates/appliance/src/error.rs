//! The one error type of the appliance's operations.

use archiver_engine::EngineError;
use archiver_registry::RegistryError;

use crate::policy::PeriodError;

/// Why an appliance operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplianceError {
    /// The engine refused (unknown PV, not paused, already paused, bad name...).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The catalogue failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A sampling period is out of range.
    #[error(transparent)]
    Period(#[from] PeriodError),
    /// A request names a policy the site does not define.
    #[error(transparent)]
    Policy(#[from] crate::site_policy::PolicyError),
    /// The PV is neither archived nor requested here.
    #[error("PV {0} is not being archived")]
    UnknownPv(String),
    /// Refused because of the PV's state, with the Java appliance's message (answered as
    /// `{"validation": "..."}`, as Java does).
    #[error("{0}")]
    Validation(String),
    /// The request itself is wrong (a bad command, a type info of another PV...).
    #[error("{0}")]
    BadRequest(String),
    /// Reading or writing a data store failed.
    #[error("storage: {0}")]
    Storage(String),
    /// A blocking task (catalogue or file work) panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

/// Runs `f` on a blocking thread (catalogue and file work never runs on the async
/// threads).
pub(crate) async fn blocking<T: Send + 'static, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApplianceError>
where
    E: Into<ApplianceError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(ApplianceError::Task(e.to_string())),
    }
}
