//! The catalogue family: `getPVTypeInfo`, `putPVTypeInfo`, `getTypeInfoKeys`,
//! `addAlias`, `removeAlias`, `getAllAliases`, `getStoresForPV`, the named flags,
//! `archivedPVs`, `unarchivedPVs`, `archivedPVsNotInList`, `getAllExpandedPVNames`,
//! `exportConfig` and `importConfig`, with the Java response shapes (Java
//! `GetPVTypeInfo`, `PutPVTypeInfo`, `AddAliasAction`, `NamedFlags*`, `ArchivedPVsAction`,
//! `UnarchivedPVsAction`, `ArchivedPVsNotInListAction`, `ExportConfig`, `ImportConfig`).

use std::collections::{HashMap, HashSet};

use archiver_appliance::{ApplianceApi, PvStatus, SharedAppliance};
use archiver_registry::{PvTypeInfo, RegistryError};
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{api_error, catalogue_call as catalogue, normalize, validation};
use crate::error::{ApiError, ApiResult};
use crate::extract::{BplRequest, RawBody};
use crate::params::Params;

/// The real name of `name` (an alias resolved), `.VAL` and `ca://` stripped.
pub(super) async fn real_name(app: &SharedAppliance, name: &str) -> ApiResult<String> {
    let pv = normalize(name)?;
    catalogue(app, move |r| r.resolve_name(&pv)).await
}

/// The name the engine archives `name` under: `name` itself when the engine holds it, else
/// the PV it is an alias of (Java resolves aliases in every call, `getRealNameForAlias`),
/// else `name` (for the caller's "not archived" answer).
pub(super) async fn archived_name(app: &SharedAppliance, name: &str) -> String {
    if app.status(name).is_some() {
        return name.to_string();
    }
    match real_name(app, name).await {
        Ok(real) if real != name && app.status(&real).is_some() => real,
        _ => name.to_string(),
    }
}

/// The statuses getPVStatus answers for `names` (in order), as Java's
/// `PVNames.determineAppropriatePVTypeInfo` finds each: the PV `name` itself; else, for
/// `PV.FIELD`, PV's status when FIELD is one of its archive fields (PV may be an alias);
/// else, for an alias, its PV's status. `None`: not archived under any of them.
///
/// One pass, for 100 000 names well under a second: the engine's statuses of all names in
/// one read of its PV table, then, only if some name is not archived under itself, the
/// catalogue's aliases in one query and the statuses of what the misses may stand for in
/// a second read. Blocks (the catalogue): call it on a blocking thread.
pub(super) fn statuses_for_names(
    app: &dyn ApplianceApi,
    names: &[String],
) -> Result<Vec<Option<PvStatus>>, RegistryError> {
    let mut found = app.statuses(names);
    let misses: Vec<usize> = (0..names.len()).filter(|&i| found[i].is_none()).collect();
    if misses.is_empty() {
        return Ok(found);
    }
    let aliases: HashMap<String, String> = app
        .catalogue()
        .all_aliases()?
        .into_iter()
        .map(|a| (a.alias, a.real_name))
        .collect();
    let real = |n: &str| aliases.get(n).map_or(n, String::as_str).to_string();
    // For each miss: the PV of `PV.FIELD` (with its field), and the PV it aliases.
    let mut wanted: Vec<String> = Vec::with_capacity(misses.len() * 2);
    for &i in &misses {
        let name = names[i].as_str();
        wanted.push(
            name.split_once('.')
                .map_or_else(String::new, |(b, _)| real(b)),
        );
        wanted.push(aliases.get(name).cloned().unwrap_or_default());
    }
    let mut second = app.statuses(&wanted).into_iter();
    for &i in &misses {
        let (of_field, of_alias) = (second.next().flatten(), second.next().flatten());
        let field = names[i].split_once('.').map(|(_, f)| f);
        found[i] = of_field
            .filter(|s| field.is_some_and(|f| s.config.archive_fields.iter().any(|a| a == f)))
            .or(of_alias);
    }
    Ok(found)
}

/// The type info of `pv` (or of the PV it aliases), or a 404 naming it.
async fn type_info(app: &SharedAppliance, pv: &str) -> ApiResult<PvTypeInfo> {
    let name = normalize(pv)?;
    let shown = pv.to_string();
    catalogue(app, move |r| r.get_type_info_for_name(&name))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Unable to find typeinfo for pv {shown}")))
}

/// `getPVTypeInfo` (GET, POST): `pv` (an alias is resolved); the Java `PVTypeInfo` JSON.
pub async fn get_pv_type_info(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<Value>> {
    let info = type_info(&app, req.required("pv")?).await?;
    Ok(Json(info.to_json_value()))
}

/// The body of `importConfig`: a JSON list of `PVTypeInfo` objects (as `exportConfig`
/// writes it). 400 naming the problem (and the position of a bad type info).
pub fn import_config_body(body: &[u8]) -> ApiResult<Vec<PvTypeInfo>> {
    let list: Vec<Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the body is not a JSON list of PVTypeInfo: {e}")))?;
    list.into_iter()
        .enumerate()
        .map(|(i, v)| {
            PvTypeInfo::from_json_value(v)
                .map_err(|e| ApiError::bad(format!("PVTypeInfo number {i}: {e}")))
        })
        .collect()
}

/// The body of `putPVTypeInfo`: one `PVTypeInfo` as JSON text. 400 naming the problem.
pub fn type_info_body(body: &[u8]) -> ApiResult<PvTypeInfo> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad(format!("request body is not UTF-8: {e}")))?;
    PvTypeInfo::from_json_str(text)
        .map_err(|e| ApiError::bad(format!("the body is not a PVTypeInfo: {e}")))
}

/// `putPVTypeInfo` (POST): `pv`, `override`, `createnew` as parameters, the `PVTypeInfo`
/// JSON as the body. A new PV needs `createnew=true` and is forced paused; an existing one
/// needs `override=true`. Answers the stored type info.
pub async fn put_pv_type_info(
    State(app): State<SharedAppliance>,
    RawQuery(query): RawQuery,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref());
    let pv = normalize(params.required("pv")?)?;
    let override_existing = params.flag("override", false)?;
    let create_new = params.flag("createnew", false)?;
    let info = type_info_body(&body)?;
    match app
        .put_type_info(&pv, info, override_existing, create_new)
        .await
    {
        Ok(info) => Ok(Json(info.to_json_value()).into_response()),
        Err(e) => validation(e),
    }
}

/// `getTypeInfoKeys`: every PV name with a type info, sorted.
pub async fn get_type_info_keys(
    State(app): State<SharedAppliance>,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(catalogue(&app, |r| r.all_pv_names()).await?))
}

/// `addAlias` (GET, POST): `pv` (the real name), `aliasname`.
/// `{"status":"ok","desc":"Added an alias <alias> for PV <pv>"}`.
pub async fn add_alias(State(app): State<SharedAppliance>, req: BplRequest) -> ApiResult<Response> {
    let pv = normalize(req.required("pv")?)?;
    let alias = normalize(req.required("aliasname")?)?;
    let p = pv.clone();
    let known = catalogue(&app, move |r| {
        Ok(r.get_type_info(&p)?.is_some() || r.get_archive_request(&p)?.is_some())
    })
    .await?;
    if !known && app.status(&pv).is_none() {
        return Ok(validation_json(format!(
            "We do not seem to have a PVTypeInfo for pv {pv}"
        )));
    }
    let (p, a) = (pv.clone(), alias.clone());
    match catalogue(&app, move |r| r.add_alias(&a, &p)).await {
        Ok(()) => Ok(Json(json!({
            "status": "ok",
            "desc": format!("Added an alias {alias} for PV {pv}"),
        }))
        .into_response()),
        Err(ApiError::BadRequest(m)) => Ok(validation_json(m)),
        Err(e) => Err(e),
    }
}

/// `removeAlias` (GET, POST): `pv` (the real name), `aliasname`.
pub async fn remove_alias(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let pv = normalize(req.required("pv")?)?;
    let alias = normalize(req.required("aliasname")?)?;
    let a = alias.clone();
    let target = catalogue(&app, move |r| r.resolve_alias(&a)).await?;
    if target.as_deref() != Some(pv.as_str()) {
        return Ok(validation_json(format!("{alias} is not an alias of {pv}")));
    }
    let a = alias.clone();
    catalogue(&app, move |r| r.remove_alias(&a)).await?;
    Ok(Json(json!({
        "status": "ok",
        "desc": format!("Removed an alias {alias} for PV {pv}"),
    }))
    .into_response())
}

/// `getAllAliases`: `[{"aliasName": …, "srcName": …}]`, sorted by alias.
pub async fn get_all_aliases(State(app): State<SharedAppliance>) -> ApiResult<Json<Vec<Value>>> {
    let all = catalogue(&app, |r| r.all_aliases()).await?;
    Ok(Json(
        all.into_iter()
            .map(|a| json!({"aliasName": a.alias, "srcName": a.real_name}))
            .collect(),
    ))
}

/// The `name` parameter of a data store URL (`pb://localhost?name=STS&…`).
fn store_name(url: &str) -> Option<&str> {
    url.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix("name="))
}

/// `getStoresForPV`: `{"STS": "<url>", "MTS": …}` from the PV's `dataStores`, in order.
pub async fn get_stores_for_pv(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<serde_json::Map<String, Value>>> {
    let info = type_info(&app, req.required("pv")?).await?;
    let mut out = serde_json::Map::new();
    for (i, url) in info.data_stores.iter().enumerate() {
        let name = store_name(url).map_or_else(|| format!("store{i}"), str::to_string);
        out.insert(name, Value::String(url.clone()));
    }
    Ok(Json(out))
}

/// `getNamedFlag`: `name`; answers `true` or `false` (a flag never set is false).
pub async fn get_named_flag(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<bool>> {
    let name = req.required("name")?.to_string();
    Ok(Json(
        catalogue(&app, move |r| r.get_named_flag(&name)).await?,
    ))
}

/// `setNamedFlag`: `name`, `value` (`true`/`false`); `{"status":"ok"}`.
pub async fn set_named_flag(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<Value>> {
    let name = req.required("name")?.to_string();
    req.required("value")?;
    let value = req.flag("value", false)?;
    catalogue(&app, move |r| r.set_named_flag(&name, value)).await?;
    Ok(Json(json!({"status": "ok"})))
}

/// `getAllNamedFlags`: `{"<name>": true|false, …}`, JSON booleans as Java's
/// `NamedFlagsAll` writes them.
pub async fn get_all_named_flags(
    State(app): State<SharedAppliance>,
) -> ApiResult<Json<serde_json::Map<String, Value>>> {
    let flags = catalogue(&app, |r| r.all_named_flags()).await?;
    Ok(Json(
        flags
            .into_iter()
            .map(|(k, v)| (k, Value::Bool(v)))
            .collect(),
    ))
}

/// Whether each name of the request is archived here (a type info, an alias of one, or a
/// request in the workflow), in request order.
async fn archived_flags(
    app: &SharedAppliance,
    names: Vec<String>,
) -> ApiResult<Vec<(String, bool)>> {
    let engine: HashSet<String> = app.names().into_iter().collect();
    catalogue(app, move |r| {
        names
            .into_iter()
            .map(|n| {
                let real = r.resolve_name(&n)?;
                let yes = engine.contains(&real) || r.get_type_info(&real)?.is_some();
                Ok((n, yes))
            })
            .collect::<Result<Vec<_>, RegistryError>>()
    })
    .await
}

fn request_names(req: &BplRequest) -> ApiResult<Vec<String>> {
    req.names()?.into_iter().map(|e| normalize(&e.pv)).collect()
}

/// `archivedPVs` (POST; GET with `pv`): the names of the list that are archived here.
pub async fn archived_pvs(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<Vec<String>>> {
    let flags = archived_flags(&app, request_names(&req)?).await?;
    Ok(Json(
        flags.into_iter().filter(|f| f.1).map(|f| f.0).collect(),
    ))
}

/// `unarchivedPVs` (POST; GET with `pv`): the names of the list that are not archived.
pub async fn unarchived_pvs(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<Vec<String>>> {
    let flags = archived_flags(&app, request_names(&req)?).await?;
    Ok(Json(
        flags.into_iter().filter(|f| !f.1).map(|f| f.0).collect(),
    ))
}

/// `archivedPVsNotInList` (POST): the PVs archived here that the list does not name
/// (a listed alias covers its PV), sorted.
pub async fn archived_pvs_not_in_list(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<Vec<String>>> {
    let listed = request_names(&req)?;
    let engine = app.names();
    let out = catalogue(&app, move |r| {
        let mut named = HashSet::new();
        for n in listed {
            named.insert(r.resolve_name(&n)?);
        }
        let mut all: Vec<String> = r.all_pv_names()?;
        all.extend(engine);
        all.sort_unstable();
        all.dedup();
        Ok(all.into_iter().filter(|n| !named.contains(n)).collect())
    })
    .await?;
    Ok(Json(out))
}

/// `getAllExpandedPVNames`: every name a client may ask for, in Java's order
/// (`DefaultConfigService.getAllExpandedNames` behind `GetAllExpandedPVNames`): Java's
/// placeholder `EPICS:Archiver:Appliance` first; then each archived PV (sorted) with, if
/// its name is not itself a field (`PV.FIELD`), `PV.VAL` and `PV.F` for each archive
/// field `F`; then each alias (sorted) and, if not a field, `ALIAS.VAL`; then each PV in
/// its archive request (sorted) and, if not a field, `PV.VAL`.
pub async fn get_all_expanded_pv_names(
    State(app): State<SharedAppliance>,
) -> ApiResult<Json<Vec<String>>> {
    let fields: std::collections::HashMap<String, Vec<String>> = app
        .all_status()
        .into_iter()
        .map(|s| (s.name, s.config.archive_fields))
        .collect();
    let (pvs, aliases, requests) = catalogue(&app, |r| {
        Ok((r.all_pv_names()?, r.all_aliases()?, r.archive_requests()?))
    })
    .await?;
    // Java's isFieldOrFieldModifier: a field other than VAL, or a modifier (`.{...}`).
    let is_field = |n: &str| n.contains('.');
    let mut out = Vec::with_capacity(1 + pvs.len() * 8 + aliases.len() * 2 + requests.len() * 2);
    out.push("EPICS:Archiver:Appliance".to_string());
    for pv in pvs {
        if is_field(&pv) {
            out.push(pv);
            continue;
        }
        let val = format!("{pv}.VAL");
        let archive_fields = fields.get(&pv).map(Vec::as_slice).unwrap_or_default();
        let expanded: Vec<String> = archive_fields.iter().map(|f| format!("{pv}.{f}")).collect();
        out.push(pv);
        out.push(val);
        out.extend(expanded);
    }
    for name in aliases
        .into_iter()
        .map(|a| a.alias)
        .chain(requests.into_iter().map(|q| q.pv_name))
    {
        let val = (!is_field(&name)).then(|| format!("{name}.VAL"));
        out.push(name);
        out.extend(val);
    }
    Ok(Json(out))
}

/// `exportConfig`: every type info of this appliance, a JSON list (Java's export, read
/// back by `importConfig`).
pub async fn export_config(State(app): State<SharedAppliance>) -> ApiResult<Json<Vec<Value>>> {
    let infos = catalogue(&app, |r| r.all_type_infos()).await?;
    Ok(Json(infos.iter().map(PvTypeInfo::to_json_value).collect()))
}

/// `getPVsForThisAppliance` (Java's `GetPVsForThisAppliance`): the names of every PV
/// with a type info on this appliance, a JSON list (no limit).
pub async fn pvs_for_this_appliance(
    State(app): State<SharedAppliance>,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(catalogue(&app, |r| r.all_pv_names()).await?))
}

/// `getPausedPVsForThisAppliance` (Java's `GetPausedPVsForThisAppliance`): the names of
/// the paused PVs of this appliance, a JSON list.
pub async fn paused_pvs_for_this_appliance(
    State(app): State<SharedAppliance>,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(catalogue(&app, |r| r.paused_pv_names()).await?))
}

/// `importConfig` and `importConfigForAppliance` (POST): a JSON list of type infos (as
/// `exportConfig` writes them). As Java's `ImportConfigForAppliance`: a PV that already
/// has a type info, or whose type info names another appliance, is skipped and listed in
/// `errorPVs`; every other PV starts archiving in the state of its type info (paused only
/// if it says so). Answers `{"appliance": "<identity>", "errorPVs": [...]}`; nothing is
/// imported if one of the type infos is not valid (400).
pub async fn import_config(
    State(app): State<SharedAppliance>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let infos = import_config_body(&body)?;
    let me = app.identity().to_string();
    let mut error_pvs = Vec::new();
    for info in infos {
        let pv = info.pv_name.clone();
        let foreign = info.appliance_identity.as_deref().is_some_and(|a| a != me);
        let name = pv.clone();
        if foreign
            || catalogue(&app, move |r| r.get_type_info(&name))
                .await?
                .is_some()
        {
            tracing::warn!(
                pv,
                foreign,
                "importConfig: skipped (another appliance's, or already archived)"
            );
            error_pvs.push(pv);
            continue;
        }
        let paused = info.paused;
        // putPVTypeInfo's creation (forced paused, as Java's), then the type info's state.
        app.put_type_info(&pv, info, false, true)
            .await
            .map_err(api_error)?;
        if !paused {
            app.resume(&pv).await.map_err(api_error)?;
        }
    }
    Ok(Json(json!({"appliance": me, "errorPVs": error_pvs})).into_response())
}

/// `{"validation": msg}`, as Java answers a refusal (status 200).
pub(super) fn validation_json(msg: String) -> Response {
    Json(json!({ "validation": msg })).into_response()
}
