/*!
The HTTP API of the archiver, as the Java EPICS Archiver Appliance serves it, so that
existing clients work unchanged: `/mgmt/bpl/...` for management and
`/retrieval/data/getData.{json,raw}` for data, on one listener.

# Brief overview

* [`router`] builds the axum [`Router`] over an [`AppState`] (engine, catalogue, clock);
  tests drive it without a socket.
* [`mgmt`] — `archivePV`, `getPVStatus`, `getAllPVs`, `pauseArchivingPV`,
  `resumeArchivingPV`, `deletePV`, `getNeverConnectedPVs`.
* [`retrieval`] — `getData.json` and `getData.raw` over the short-term store and the
  engine's unflushed buffer.
* [`appliance`] — the operations that keep engine and catalogue in step, the start-up
  restore and the catalogue sync.
* [`ApiError`] — every error: 400 and 404 name the problem; 500 is logged.
*/
#![deny(missing_docs)]

pub mod appliance;
mod error;
pub mod mgmt;
mod params;
pub mod retrieval;
mod state;

use axum::Router;
use axum::routing::{any, get};

pub use crate::error::{ApiError, ApiResult};
pub use crate::state::AppState;

/// The router of every endpoint.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mgmt/bpl/archivePV", any(mgmt::archive_pv))
        .route("/mgmt/bpl/getPVStatus", any(mgmt::get_pv_status))
        .route("/mgmt/bpl/getAllPVs", get(mgmt::get_all_pvs))
        .route("/mgmt/bpl/pauseArchivingPV", any(mgmt::pause_pv))
        .route("/mgmt/bpl/resumeArchivingPV", any(mgmt::resume_pv))
        .route("/mgmt/bpl/deletePV", any(mgmt::delete_pv))
        .route(
            "/mgmt/bpl/getNeverConnectedPVs",
            get(mgmt::get_never_connected),
        )
        .route(
            "/retrieval/data/getData.json",
            get(retrieval::get_data_json),
        )
        .route("/retrieval/data/getData.raw", get(retrieval::get_data_raw))
        .route(
            "/retrieval/bpl/getVersion",
            get(|| async { env!("CARGO_PKG_VERSION") }),
        )
        .with_state(state)
}
