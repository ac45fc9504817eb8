//! The storage family: `consolidateDataForPV` (Java's BPL: move everything of a PV down to
//! a named store now) and `deletePVData` (this appliance's own: delete a PV's samples in a
//! time range from every store; the Java appliance cannot).
//!
//! Both read their PVs as the other management calls do ([`super::named_pvs`]: `pv` comma
//! lists and globs, `pv=A&pv=B`, a JSON, text or form body) and act on each: one PV named
//! without a glob is answered with one object, several with a list of one object per PV
//! in request order, the reply of a PV done or `{pvName, validation}` for one refused or
//! unknown (Java's list shape, as pauseArchivingPV's).

use archiver_appliance::{SharedAppliance, StorageOpsError};
use archiver_time::parse_iso8601;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;

use super::catalogue::validation_json;
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

pub(super) fn storage_error(e: StorageOpsError) -> ApiError {
    if e.is_bad_request() {
        ApiError::bad(e.to_string())
    } else if e.is_not_found() {
        ApiError::not_found(e.to_string())
    } else {
        ApiError::internal(e)
    }
}

/// What the call did for one PV: its reply, or Java's validation text of a refusal.
type Outcome<T> = ApiResult<Result<T, String>>;

/// Runs `one` for every PV the request names ([`super::named_pvs`]) and answers as the
/// module documentation says. A 400 or 404 of one PV of a list is that PV's
/// `validation`; any other error ends the request.
async fn for_each_pv<T, F, Fut>(
    app: &SharedAppliance,
    req: &BplRequest,
    one: F,
) -> ApiResult<Response>
where
    T: Serialize,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Outcome<T>>,
{
    let (names, single) = super::named_pvs(app, req).await?;
    if single {
        return Ok(match one(normalize(&names[0])?).await? {
            Ok(reply) => Json(reply).into_response(),
            Err(refused) => validation_json(refused),
        });
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let r = match normalize(&name) {
            Ok(pv) => one(pv).await,
            Err(e) => Err(e),
        };
        out.push(match r {
            Ok(Ok(reply)) => serde_json::to_value(reply).map_err(ApiError::internal)?,
            Ok(Err(m)) | Err(ApiError::NotFound(m) | ApiError::BadRequest(m)) => {
                json!({ "pvName": name, "validation": m })
            }
            Err(e) => return Err(e),
        });
    }
    Ok(Json(out).into_response())
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

/// `consolidateDataForPV` (GET, POST): `pv` (one or several, see the module
/// documentation), `storage` (the name of a store after the first, e.g. `LTS`). Every file
/// of each PV, the current partitions too, moves down into that store now. Unknown store:
/// 400 naming the accepted ones; unknown PV: 404 (in a list: that PV's `validation`).
pub async fn consolidate_data_for_pv(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let storage = req.required("storage")?.trim().to_string();
    for_each_pv(&app, &req, |pv| {
        let (app, storage) = (&app, storage.clone());
        async move {
            // Java (`ConsolidatePBFilesForOnePV`) moves only a paused PV's files: the
            // engine writes the current partition of an archiving one.
            if app
                .status(&pv)
                .is_some_and(|s| s.state != archiver_appliance::PvState::Paused)
            {
                return Ok(Err(format!("Cannot consolidate unless PV {pv} is paused.")));
            }
            let c = app
                .consolidate(&pv, &storage)
                .await
                .map_err(storage_error)?;
            Ok(Ok(ConsolidateReply {
                status: "ok",
                pv_name: pv,
                storage,
                files_moved: c.files_moved,
                samples_moved: c.samples_moved,
                bytes_moved: c.bytes_moved,
            }))
        }
    })
    .await
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
    /// Samples deleted, counted in each store they were in (a sample that ETL had copied
    /// to the next store and not yet deleted from the first counts twice).
    #[serde(rename = "samplesDeleted")]
    samples_deleted: u64,
}

/// `deletePVData` (GET, POST): `pv` (one or several, see the module documentation),
/// `from`, `to` (ISO 8601, as getData's). Deletes each PV's samples with
/// `from ≤ time < to` from every store, crash-safe (a partition is rewritten to a new
/// file and renamed into place; one the range covers is removed). Missing or bad times,
/// or `from` not before `to`: 400; a PV neither archived nor with data: 404 (in a list:
/// that PV's `validation`).
pub async fn delete_pv_data(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let time = |key: &str| -> ApiResult<archiver_time::Timestamp> {
        let v = req.required(key)?;
        parse_iso8601(v.trim()).map_err(|e| {
            ApiError::bad(format!(
                "parameter '{key}' is not an ISO 8601 time such as 2024-01-31T12:00:00Z: {e}"
            ))
        })
    };
    let (from, to) = (time("from")?, time("to")?);
    for_each_pv(&app, &req, |pv| {
        let app = &app;
        async move {
            let c = app
                .delete_data_range(&pv, from, to)
                .await
                .map_err(storage_error)?;
            Ok(Ok(DeleteDataReply {
                status: "ok",
                pv_name: pv,
                files_removed: c.files_removed,
                files_rewritten: c.files_rewritten,
                samples_deleted: c.samples_deleted,
            }))
        }
    })
    .await
}
