//! What every handler shares: the engine, the catalogue, the clock.

use std::sync::Arc;

use archiver_engine::{Clock, Engine};
use archiver_registry::Registry;

/// Shared state of the HTTP API. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The archiving engine.
    pub engine: Engine,
    /// The PV catalogue.
    pub registry: Arc<dyn Registry>,
    /// The server clock.
    pub clock: Arc<dyn Clock>,
    /// This appliance's identity (`appliance0` by default).
    pub identity: Arc<str>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}
