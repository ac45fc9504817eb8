//! `/mgmt/bpl/*`: the management endpoints scripts and clients use, with the Java
//! response shapes, split by family:
//!
//! * [`archive`] — `archivePV`;
//! * [`status`] — `getPVStatus`, `getAllPVs`, `getNeverConnectedPVs`;
//! * [`lifecycle`] — `pauseArchivingPV`, `resumeArchivingPV`, `deletePV`.
//!
//! Every handler reads its request through [`BplRequest`](crate::extract::BplRequest)
//! (query, form, JSON or text body; GET and POST, as Java's `BPLServlet`) and talks to
//! the appliance through [`SharedAppliance`] (`Arc<dyn ApplianceApi>`), so tests can
//! drive the router with a fake.

pub mod archive;
mod javafmt;
pub mod lifecycle;
pub mod status;
pub mod storage;

use archiver_appliance::{ApplianceApi, ApplianceError, EngineError, SharedAppliance};
use archiver_registry::names::{glob_to_regex, is_glob, normalize_channel_name, validate_pv_name};
use axum::Router;
use axum::routing::get;

pub use self::archive::archive_pv;
pub use self::javafmt::{JavaTime, java_time};
pub use self::lifecycle::{delete_pv, pause_pv, resume_pv};
pub use self::status::{StatusJson, get_all_pvs, get_never_connected, get_pv_status, status_json};
use crate::error::{ApiError, ApiResult};
use crate::extract::NameEntry;

/// The management routes over `appliance`, GET and POST each (Java's `BPLServlet`
/// answers both).
pub fn router(appliance: SharedAppliance) -> Router {
    Router::new()
        .route("/mgmt/bpl/archivePV", get(archive_pv).post(archive_pv))
        .route(
            "/mgmt/bpl/getPVStatus",
            get(get_pv_status).post(get_pv_status),
        )
        .route("/mgmt/bpl/getAllPVs", get(get_all_pvs).post(get_all_pvs))
        .route("/mgmt/bpl/pauseArchivingPV", get(pause_pv).post(pause_pv))
        .route(
            "/mgmt/bpl/resumeArchivingPV",
            get(resume_pv).post(resume_pv),
        )
        .route("/mgmt/bpl/deletePV", get(delete_pv).post(delete_pv))
        .route(
            "/mgmt/bpl/getNeverConnectedPVs",
            get(get_never_connected).post(get_never_connected),
        )
        .merge(storage::routes())
        .with_state(appliance)
}

/// A PV name as stored: `.VAL` and `ca://` stripped, checked against Java's characters.
fn normalize(name: &str) -> ApiResult<String> {
    let n = normalize_channel_name(name.trim());
    let pv = n.name.to_string();
    validate_pv_name(&pv).map_err(|e| ApiError::bad(format!("invalid PV name {name:?}: {e}")))?;
    Ok(pv)
}

/// The HTTP answer to an appliance error: 404 for an unknown PV, 400 for a request the
/// engine or the policy refuses, 500 (logged) otherwise.
fn api_error(e: ApplianceError) -> ApiError {
    match e {
        ApplianceError::Engine(EngineError::NotFound(m)) => {
            ApiError::not_found(format!("PV {m} is not being archived"))
        }
        ApplianceError::Engine(
            e @ (EngineError::BadName(_)
            | EngineError::BadPeriod(_)
            | EngineError::TooManyFields(_)
            | EngineError::AlreadyPaused(_)
            | EngineError::NotPaused(_)),
        ) => ApiError::bad(e.to_string()),
        ApplianceError::Period(e) => ApiError::bad(e.to_string()),
        other => ApiError::internal(other),
    }
}

/// The names of `entries`, globs expanded against the archived names (in request order).
fn expand(app: &dyn ApplianceApi, entries: &[NameEntry]) -> ApiResult<Vec<String>> {
    let mut all: Option<Vec<String>> = None;
    let mut out = Vec::new();
    for e in entries {
        if is_glob(&e.pv) {
            let re = regex::Regex::new(&format!("^(?:{})$", glob_to_regex(&e.pv)))
                .map_err(|err| ApiError::bad(format!("bad pattern {:?}: {err}", e.pv)))?;
            let all = all.get_or_insert_with(|| app.names());
            out.extend(all.iter().filter(|n| re.is_match(n)).cloned());
        } else {
            out.push(normalize_channel_name(e.pv.trim()).name.to_string());
        }
    }
    Ok(out)
}
