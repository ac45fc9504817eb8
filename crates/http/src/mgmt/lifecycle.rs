//! The lifecycle family: `pauseArchivingPV`, `resumeArchivingPV`, `deletePV`, with the
//! Java response shapes.

use archiver_appliance::{ApplianceApi, ApplianceError, EngineError, SharedAppliance};
use archiver_registry::names::is_glob;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::archive::{parse_method, parse_period};
use super::catalogue::real_name;
use super::{api_error, expand, normalize, validation};
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
        Err(ApplianceError::Validation(validation)) => Ok(PauseReply::Validation { validation }),
        Err(e) => Err(api_error(e)),
    }
}

async fn pause_resume(
    app: SharedAppliance,
    req: BplRequest,
    pause: bool,
) -> ApiResult<Json<PauseReplies>> {
    let (names, one) = super::named_pvs(&app, &req).await?;
    if one {
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

/// `deletePV` (GET, POST): `pv` (an alias is resolved), `deleteData` (default false).
/// The PV must be paused: otherwise Java's `{"validation": "We will not stop archiving PV
/// X if it is not paused. Please pause recording first."}` (status 200). The PV's aliases
/// are removed with it (Java `DeletePV`).
///
/// Several PVs, as Java's `DeletePV.deleteMultiplePVs` takes them: a `pv` comma list or
/// glob, or a POST body list (JSON list of names or of `{"pv": …}` objects, text one name
/// a line, form `pv=a,b`). The answer is Java's one object: `validation` holds one line
/// per PV (empty for a PV deleted), `status` is `ok` when every line is empty.
pub async fn delete_pv(State(app): State<SharedAppliance>, req: BplRequest) -> ApiResult<Response> {
    let delete_data = req.flag("deleteData", false)?;
    let entries = req.names()?;
    if entries.len() == 1 && !is_glob(&entries[0].pv) {
        let pv = real_name(&app, &entries[0].pv).await?;
        return match delete_one(&app, &pv, delete_data).await? {
            Ok(files) => Ok(Json(DeleteReply {
                desc: if delete_data {
                    format!("Deleted PV {pv} and {files} data files")
                } else {
                    format!("Deleted PV {pv}")
                },
                pv_name: pv,
                status: "ok",
            })
            .into_response()),
            Err(refused) => Ok(Json(json!({ "validation": refused })).into_response()),
        };
    }
    let mut lines = String::new();
    for name in expand(app.as_ref(), &entries, usize::MAX)? {
        let pv = super::catalogue::archived_name(&app, &name).await;
        match delete_one(&app, &pv, delete_data).await {
            Ok(Ok(_)) => {}
            Ok(Err(refused)) => lines.push_str(&refused),
            Err(ApiError::NotFound(m) | ApiError::BadRequest(m)) => lines.push_str(&m),
            Err(e) => return Err(e),
        }
        lines.push('\n');
    }
    let mut reply = serde_json::Map::new();
    if lines.trim().is_empty() {
        reply.insert("status".into(), json!("ok"));
    }
    reply.insert("validation".into(), json!(lines));
    Ok(Json(reply).into_response())
}

/// Deletes one PV: the number of files removed, or Java's refusal of a PV not paused.
async fn delete_one(
    app: &SharedAppliance,
    pv: &str,
    delete_data: bool,
) -> ApiResult<Result<usize, String>> {
    match app.delete(pv, delete_data).await {
        Ok(files) => Ok(Ok(files)),
        Err(ApplianceError::Engine(EngineError::NotPaused(_))) => Ok(Err(format!(
            "We will not stop archiving PV {pv} if it is not paused. Please pause recording first."
        ))),
        Err(e) => Err(api_error(e)),
    }
}

/// The answer to an appliance call: `ok` as JSON, a refusal Java answers with
/// `{"validation": …}` (status 200) as that, any other error as [`api_error`].
fn answer<T: Serialize>(r: Result<T, ApplianceError>) -> ApiResult<Response> {
    match r {
        Ok(v) => Ok(Json(v).into_response()),
        Err(e) => validation(e),
    }
}

fn status_desc(desc: String) -> serde_json::Value {
    json!({"status": "ok", "desc": desc})
}

/// `changeArchivalParameters` (GET, POST): `pv`, `samplingperiod` (required, checked as
/// `archivePV`'s), `samplingmethod` (`MONITOR`/`SCAN`, optional). `{"status":"ok",
/// "desc": …}`; the engine channel is recreated with the new parameters (as Java's
/// engine does), a paused PV stays paused.
pub async fn change_archival_parameters(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let pv = real_name(&app, req.required("pv")?).await?;
    let period = parse_period(req.required("samplingperiod")?)?;
    let method = req.get("samplingmethod").map(parse_method).transpose()?;
    answer(
        app.change_parameters(&pv, method, period)
            .await
            .map(status_desc),
    )
}

/// `abortArchivingPV` (GET, POST): `pv`. `{"status": "ok"|"no", "desc": "Aborted request
/// for archiving PV X"}`: `ok` when the PV was still waiting to connect and its request
/// is gone, `no` when there was nothing to abort (Java).
///
/// Beyond Java (whose action takes one `pv`), several PVs as `pauseArchivingPV` takes them:
/// a `pv` comma list or glob, or a POST body list (JSON list of names or `{"pv": …}`
/// objects, text one name a line). The answer is then a list with one such object per PV,
/// each with its `pvName`, in request order; a name refused as a PV name answers
/// `{"pvName": …, "validation": …}`. This is how the web UI removes PVs that never
/// connected (they cannot be paused, hence not deleted).
pub async fn abort_archiving_pv(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let (names, one) = super::named_pvs(&app, &req).await?;
    if one {
        let pv = normalize(&req.names()?[0].pv)?;
        let aborted = app.abort(&pv).await.map_err(api_error)?;
        return Ok(Json(abort_reply(&pv, aborted, false)).into_response());
    }
    let mut out = Vec::with_capacity(names.len());
    for n in &names {
        out.push(match normalize(n) {
            Ok(pv) => match app.abort(&pv).await {
                Ok(aborted) => abort_reply(&pv, aborted, true),
                Err(e) => match api_error(e) {
                    ApiError::NotFound(m) | ApiError::BadRequest(m) => {
                        json!({"pvName": n, "validation": m})
                    }
                    e => return Err(e),
                },
            },
            Err(ApiError::BadRequest(m)) => json!({"pvName": n, "validation": m}),
            Err(e) => return Err(e),
        });
    }
    Ok(Json(out).into_response())
}

/// Java's `abortArchivingPV` object; `named` adds the `pvName` (in a list answer).
fn abort_reply(pv: &str, aborted: bool, named: bool) -> serde_json::Value {
    let mut reply = serde_json::Map::new();
    if named {
        reply.insert("pvName".into(), json!(pv));
    }
    reply.insert("status".into(), json!(if aborted { "ok" } else { "no" }));
    reply.insert(
        "desc".into(),
        json!(format!("Aborted request for archiving PV {pv}")),
    );
    serde_json::Value::Object(reply)
}

/// `renamePV` (GET, POST): `pv` (paused), `newname`. Copies the PV's type info and data
/// to the new name (Java); `{"status":"ok","desc":"Successfully renamed PV X to Y"}` or
/// Java's `{"validation": …}`.
pub async fn rename_pv(State(app): State<SharedAppliance>, req: BplRequest) -> ApiResult<Response> {
    let pv = real_name(&app, req.required("pv")?).await?;
    let new_name = normalize(req.required("newname")?)?;
    answer(app.rename(&pv, &new_name).await.map(status_desc))
}

/// `appendAndAliasPV` (GET, POST): `olderpv` (paused), `newerpv`, `storage` (accepted;
/// every store is appended). The older PV's samples are appended to the newer one's, the
/// older PV deleted and made an alias of the newer.
pub async fn append_and_alias_pv(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let older = normalize(req.required("olderpv")?)?;
    let newer = real_name(&app, req.required("newerpv")?).await?;
    answer(app.append_and_alias(&older, &newer).await.map(status_desc))
}

/// `modifyMetaFields` (GET, POST): `pv` (paused), `command` (`add,ADEL,MDEL`,
/// `remove,ADEL`, `clear`), any number of them, applied in order (Java's
/// `ModifyMetaFieldsAction`; `clear` leaves no field). `{"pvName": …, "fields": "<the
/// archive fields, comma separated>"}`.
pub async fn modify_meta_fields(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let pv = real_name(&app, req.required("pv")?).await?;
    req.required("command")?;
    let commands: Vec<String> = req.params().all("command").to_vec();
    answer(
        app.modify_archive_fields(&pv, &commands)
            .await
            .map(|f| json!({"pvName": pv, "fields": f.join(",")})),
    )
}

/// `changeTypeForPV` (GET, POST): `pv` (an alias is resolved), `newtype` (an ArchDBRTypes
/// name, `DBR_SCALAR_INT`...). The PV must be paused (else Java's `{"validation": "Need to
/// pause PV before changing type for X"}`); every stored sample is rewritten to the new
/// type, then the type info changed. Answers Java's `{"status": "ok"}`, plus (beyond Java)
/// `files`, `samples` converted and `dropped` (not convertible).
pub async fn change_type_for_pv(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let pv = real_name(&app, req.required("pv")?).await?;
    let text = req.required("newtype")?;
    let to: archiver_pb::PayloadType = text.trim().parse().map_err(|_| {
        ApiError::bad(format!(
            "newtype {text:?} is not an ArchDBRTypes name such as DBR_SCALAR_DOUBLE"
        ))
    })?;
    match app.change_type(&pv, to).await {
        Ok(c) => Ok(Json(json!({
            "status": "ok",
            "files": c.files.to_string(),
            "samples": c.samples.to_string(),
            "dropped": c.dropped.to_string(),
        }))
        .into_response()),
        Err(e) => validation(e),
    }
}
