//! The lifecycle family: `pauseArchivingPV`, `resumeArchivingPV`, `deletePV`, with the
//! Java response shapes.

use archiver_appliance::{ApplianceApi, ApplianceError, EngineError, SharedAppliance};
use archiver_registry::names::{is_glob, normalize_channel_name};
use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{api_error, expand};
use crate::error::{ApiError, ApiResult};
use crate::extract::BplRequest;

/// The answer about one PV of `pauseArchivingPV` / `resumeArchivingPV`.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PauseReply {
    /// Done: `{"pvName": …, "status": "ok"}`.
    Done {
        /// The PV.
        #[serde(rename = "pvName")]
        pv_name: String,
        /// `ok`.
        status: &'static str,
    },
    /// Refused because of the PV's state: `{"validation": "PV X is already paused"}`.
    Validation {
        /// Why.
        validation: String,
    },
    /// In a list, a PV that is not archived: `{"pvName": …, "validation": …}`.
    Unknown {
        /// The PV.
        #[serde(rename = "pvName")]
        pv_name: String,
        /// Why.
        validation: String,
    },
}

/// A single answer (one PV named, no glob) or a list.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PauseReplies {
    /// One PV.
    One(PauseReply),
    /// A list or a pattern.
    Many(Vec<PauseReply>),
}

async fn pause_or_resume(app: &dyn ApplianceApi, pv: &str, pause: bool) -> ApiResult<PauseReply> {
    let r = if pause {
        app.pause(pv).await
    } else {
        app.resume(pv).await
    };
    match r {
        Ok(()) => Ok(PauseReply::Done {
            pv_name: pv.to_string(),
            status: "ok",
        }),
        Err(ApplianceError::Engine(
            e @ (EngineError::AlreadyPaused(_) | EngineError::NotPaused(_)),
        )) => Ok(PauseReply::Validation {
            validation: e.to_string(),
        }),
        Err(e) => Err(api_error(e)),
    }
}

async fn pause_resume(
    app: SharedAppliance,
    req: BplRequest,
    pause: bool,
) -> ApiResult<Json<PauseReplies>> {
    let entries = req.names()?;
    let names = expand(app.as_ref(), &entries)?;
    if entries.len() == 1 && !is_glob(&entries[0].pv) && names.len() == 1 {
        return Ok(Json(PauseReplies::One(
            pause_or_resume(app.as_ref(), &names[0], pause).await?,
        )));
    }
    let mut out = Vec::with_capacity(names.len());
    for n in &names {
        out.push(match pause_or_resume(app.as_ref(), n, pause).await {
            Ok(v) => v,
            Err(ApiError::NotFound(m)) => PauseReply::Unknown {
                pv_name: n.clone(),
                validation: m,
            },
            Err(e) => return Err(e),
        });
    }
    Ok(Json(PauseReplies::Many(out)))
}

/// `pauseArchivingPV` (GET, POST): `pv` (comma list, globs) and/or a list in the body.
pub async fn pause_pv(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<PauseReplies>> {
    pause_resume(app, req, true).await
}

/// `resumeArchivingPV` (GET, POST): `pv` (comma list, globs) and/or a list in the body.
pub async fn resume_pv(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<PauseReplies>> {
    pause_resume(app, req, false).await
}

/// The `deletePV` answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteReply {
    pv_name: String,
    status: &'static str,
    desc: String,
}

/// `deletePV` (GET, POST): `pv`, `deleteData` (default false). The PV must be paused.
pub async fn delete_pv(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<DeleteReply>> {
    let pv = normalize_channel_name(req.required("pv")?.trim())
        .name
        .to_string();
    let delete_data = req.flag("deleteData", false)?;
    match app.delete(&pv, delete_data).await {
        Ok(files) => Ok(Json(DeleteReply {
            desc: if delete_data {
                format!("Deleted PV {pv} and {files} data files")
            } else {
                format!("Deleted PV {pv}")
            },
            pv_name: pv,
            status: "ok",
        })),
        Err(ApplianceError::Engine(EngineError::NotPaused(_))) => Err(ApiError::bad(format!(
            "PV {pv} must be paused before it is deleted (call pauseArchivingPV first)"
        ))),
        Err(e) => Err(api_error(e)),
    }
}
