//! The state of the retrieval endpoints: the engine (its live buffer), the catalogue and
//! the clock. The management endpoints have their own state, the appliance behind
//! [`archiver_appliance::ApplianceApi`].

use std::sync::Arc;

use archiver_engine::{Clock, Engine};
use archiver_registry::Registry;

/// Shared state of the retrieval endpoints (`/retrieval/...`). Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The archiving engine: its short-term store and its unflushed buffers.
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
