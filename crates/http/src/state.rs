//! The state of the retrieval endpoints: the retrieval pipeline, built once at start-up,
//! and the clock that gives a request without `to` its end. The management endpoints have
//! their own state, the appliance behind [`archiver_appliance::ApplianceApi`].

use std::sync::Arc;

use archiver_retrieval::Retrieval;
use archiver_time::Clock;

/// Shared state of the retrieval endpoints (`/retrieval/...`). Cheap to clone (a few
/// `Arc`s).
#[derive(Clone)]
pub struct RetrievalState {
    /// The pipeline: catalogue, data stores, live source.
    pub retrieval: Retrieval,
    /// The server clock (`to` of a request that gives none is now).
    pub clock: Arc<dyn Clock>,
}

impl RetrievalState {
    /// The state over `retrieval` and `clock`.
    pub fn new(retrieval: Retrieval, clock: Arc<dyn Clock>) -> Self {
        RetrievalState { retrieval, clock }
    }
}

impl std::fmt::Debug for RetrievalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetrievalState")
            .field("retrieval", &self.retrieval)
            .finish_non_exhaustive()
    }
}
