//! The storage family: `consolidateDataForPV` (Java's BPL: move everything of a PV down to
//! a named store now) and `deletePVData` (this appliance's own: delete a PV's samples in a
//! time range from every store; the Java appliance cannot).

use archiver_appliance::{SharedAppliance, StorageOpsError};
use archiver_time::parse_iso8601;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::normalize;
use crate::error::{ApiError, ApiResult};
use crate::extract::BplRequest;

/// The storage routes, GET and POST each.
pub fn routes() -> Router<SharedAppliance> {
    Router::new()
        .route(
            "/mgmt/bpl/consolidateDataForPV",
            get(consolidate_data_for_pv).post(consolidate_data_for_pv),
        )
        .route(
            "/mgmt/bpl/deletePVData",
            get(delete_pv_data).post(delete_pv_data),
        )
}

fn storage_error(e: StorageOpsError) -> ApiError {
    if e.is_bad_request() {
        ApiError::bad(e.to_string())
    } else if e.is_not_found() {
        ApiError::not_found(e.to_string())
    } else {
        ApiError::internal(e)
    }
}

/// The answer of `consolidateDataForPV`.
#[derive(Debug, Serialize)]
pub struct ConsolidateReply {
    /// `ok`.
    status: &'static str,
    /// The PV.
    #[serde(rename = "pvName")]
    pv_name: String,
    /// The store consolidated into.
    storage: String,
    /// Files moved into the store (the last hop's; see `Appliance::consolidate`).
    #[serde(rename = "filesMoved")]
    files_moved: u64,
    /// Samples that ended in the store, each once.
    #[serde(rename = "samplesMoved")]
    samples_moved: u64,
    /// Bytes of the files moved.
    #[serde(rename = "bytesMoved")]
    bytes_moved: u64,
}

/// `consolidateDataForPV` (GET, POST): `pv`, `storage` (the name of a store after the
/// first, e.g. `LTS`). Every file of the PV, the current partitions too, moves down into
/// that store now. Unknown store: 400 naming the accepted ones; unknown PV: 404.
pub async fn consolidate_data_for_pv(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let pv = normalize(req.required("pv")?)?;
    let storage = req.required("storage")?.trim().to_string();
    // Java (`ConsolidatePBFilesForOnePV`) moves only a paused PV's files: the engine
    // writes the current partition of an archiving one.
    if app
        .status(&pv)
        .is_some_and(|s| s.state != archiver_appliance::PvState::Paused)
    {
        return Ok(super::catalogue::validation_json(format!(
            "Cannot consolidate unless PV {pv} is paused."
        )));
    }
    let c = app
        .consolidate(&pv, &storage)
        .await
        .map_err(storage_error)?;
    Ok(Json(ConsolidateReply {
        status: "ok",
        pv_name: pv,
        storage,
        files_moved: c.files_moved,
        samples_moved: c.samples_moved,
        bytes_moved: c.bytes_moved,
    })
    .into_response())
}

/// The answer of `deletePVData`.
#[derive(Debug, Serialize)]
pub struct DeleteDataReply {
    /// `ok`.
    status: &'static str,
    /// The PV.
    #[serde(rename = "pvName")]
    pv_name: String,
    /// Partition files removed whole.
    #[serde(rename = "filesRemoved")]
    files_removed: u64,
    /// Partition files rewritten without the range.
    #[serde(rename = "filesRewritten")]
    files_rewritten: u64,
    /// Samples deleted.
    #[serde(rename = "samplesDeleted")]
    samples_deleted: u64,
}

/// `deletePVData` (GET, POST): `pv`, `from`, `to` (ISO 8601, as getData's). Deletes the
/// PV's samples with `from ≤ time < to` from every store, crash-safe (a partition is
/// rewritten to a new file and renamed into place; one the range covers is removed).
/// Missing or bad times, or `from` not before `to`: 400; a PV neither archived nor with
/// data: 404.
pub async fn delete_pv_data(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<DeleteDataReply>> {
    let pv = normalize(req.required("pv")?)?;
    let time = |key: &str| -> ApiResult<archiver_time::Timestamp> {
        let v = req.required(key)?;
        parse_iso8601(v.trim()).map_err(|e| {
            ApiError::bad(format!(
                "parameter '{key}' is not an ISO 8601 time such as 2024-01-31T12:00:00Z: {e}"
            ))
        })
    };
    let (from, to) = (time("from")?, time("to")?);
    let c = app
        .delete_data_range(&pv, from, to)
        .await
        .map_err(storage_error)?;
    Ok(Json(DeleteDataReply {
        status: "ok",
        pv_name: pv,
        files_removed: c.files_removed,
        files_rewritten: c.files_rewritten,
        samples_deleted: c.samples_deleted,
    }))
}
