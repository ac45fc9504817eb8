//! `/mgmt/bpl/*`: the management endpoints scripts and clients use, with the Java
//! response shapes, split by family:
//!
//! * [`archive`] — `archivePV`;
//! * [`status`] — `getPVStatus`, `getAllPVs`, `getNeverConnectedPVs`;
//! * [`lifecycle`] — `pauseArchivingPV`, `resumeArchivingPV`, `deletePV`,
//!   `changeArchivalParameters`, `abortArchivingPV`, `renamePV`, `appendAndAliasPV`,
//!   `modifyMetaFields`;
//! * [`catalogue`] — `getPVTypeInfo`, `putPVTypeInfo`, `getTypeInfoKeys`, aliases,
//!   `getStoresForPV`, named flags, `archivedPVs`/`unarchivedPVs`/`archivedPVsNotInList`,
//!   `getAllExpandedPVNames`, `exportConfig`/`importConfig`;
//! * [`admin`] — `getApplianceInfo`, `getAppliancesInCluster`, `getVersions`,
//!   `getPolicyList`, `getPolicyText`, `getApplianceMetrics` (and `getStorageMetrics`,
//!   Java's same list), `getApplianceProperties`, `getPVDetails`;
//! * [`reports`] — the reports (`getEventRateReport`, `getSilentPVsReport`,
//!   `getMetaGets`...).
//! * the calls Java's appliances make of each other (`...ForAppliance`,
//!   `...ForThisAppliance`, `webAppReady`): on one appliance the cluster call each names,
//!   an `appliance` naming another appliance a 404.
//!
//! A refusal Java answers with `{"validation": "..."}` (a PV that must be paused first, a
//! name that exists) is answered so, with status 200, as Java does; an unknown PV is a
//! 404, bad input a 400 naming it.
//!
//! Every handler reads its request through [`BplRequest`](crate::extract::BplRequest)
//! (query, form, JSON or text body; GET and POST, as Java's `BPLServlet`) and talks to
//! the appliance through [`SharedAppliance`] (`Arc<dyn ApplianceApi>`), so tests can
//! drive the router with a fake.

pub mod admin;
pub mod archive;
pub mod catalogue;
mod javafmt;
pub mod lifecycle;
pub mod reports;
pub mod status;
pub mod storage;

use archiver_appliance::{ApplianceApi, ApplianceError, EngineError, SharedAppliance};
use archiver_registry::names::{is_glob, normalize_channel_name, quoted_excerpt, validate_pv_name};
use archiver_registry::{MatchBudget, NamePattern, Registry, RegistryError};
use axum::Router;
use axum::response::Response;
use axum::routing::{get, post};

pub use self::archive::archive_pv;
pub use self::javafmt::{JavaTime, java_time};
pub use self::lifecycle::{delete_pv, pause_pv, resume_pv};
pub use self::status::{StatusJson, get_all_pvs, get_pv_status, status_json};
use crate::error::{ApiError, ApiResult};
use crate::extract::NameEntry;

/// The management routes over `appliance`, GET and POST each (Java's `BPLServlet`
/// answers both).
pub fn router(appliance: SharedAppliance) -> Router {
    admin::note_process_start();
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
            "/mgmt/bpl/changeArchivalParameters",
            get(lifecycle::change_archival_parameters).post(lifecycle::change_archival_parameters),
        )
        .route(
            "/mgmt/bpl/changeTypeForPV",
            get(lifecycle::change_type_for_pv).post(lifecycle::change_type_for_pv),
        )
        .route(
            "/mgmt/bpl/abortArchivingPV",
            get(lifecycle::abort_archiving_pv).post(lifecycle::abort_archiving_pv),
        )
        .route(
            "/mgmt/bpl/renamePV",
            get(lifecycle::rename_pv).post(lifecycle::rename_pv),
        )
        .route(
            "/mgmt/bpl/appendAndAliasPV",
            get(lifecycle::append_and_alias_pv).post(lifecycle::append_and_alias_pv),
        )
        .route(
            "/mgmt/bpl/modifyMetaFields",
            get(lifecycle::modify_meta_fields).post(lifecycle::modify_meta_fields),
        )
        .route(
            "/mgmt/bpl/getPVTypeInfo",
            get(catalogue::get_pv_type_info).post(catalogue::get_pv_type_info),
        )
        .route("/mgmt/bpl/putPVTypeInfo", post(catalogue::put_pv_type_info))
        .route(
            "/mgmt/bpl/getTypeInfoKeys",
            get(catalogue::get_type_info_keys).post(catalogue::get_type_info_keys),
        )
        .route(
            "/mgmt/bpl/addAlias",
            get(catalogue::add_alias).post(catalogue::add_alias),
        )
        .route(
            "/mgmt/bpl/removeAlias",
            get(catalogue::remove_alias).post(catalogue::remove_alias),
        )
        .route(
            "/mgmt/bpl/getAllAliases",
            get(catalogue::get_all_aliases).post(catalogue::get_all_aliases),
        )
        .route(
            "/mgmt/bpl/getStoresForPV",
            get(catalogue::get_stores_for_pv).post(catalogue::get_stores_for_pv),
        )
        .route(
            "/mgmt/bpl/getNamedFlag",
            get(catalogue::get_named_flag).post(catalogue::get_named_flag),
        )
        .route(
            "/mgmt/bpl/setNamedFlag",
            get(catalogue::set_named_flag).post(catalogue::set_named_flag),
        )
        .route(
            "/mgmt/bpl/getAllNamedFlags",
            get(catalogue::get_all_named_flags).post(catalogue::get_all_named_flags),
        )
        .route(
            "/mgmt/bpl/archivedPVs",
            get(catalogue::archived_pvs).post(catalogue::archived_pvs),
        )
        .route(
            "/mgmt/bpl/unarchivedPVs",
            get(catalogue::unarchived_pvs).post(catalogue::unarchived_pvs),
        )
        .route(
            "/mgmt/bpl/archivedPVsNotInList",
            get(catalogue::archived_pvs_not_in_list).post(catalogue::archived_pvs_not_in_list),
        )
        .route(
            "/mgmt/bpl/getAllExpandedPVNames",
            get(catalogue::get_all_expanded_pv_names).post(catalogue::get_all_expanded_pv_names),
        )
        .route(
            "/mgmt/bpl/exportConfig",
            get(catalogue::export_config).post(catalogue::export_config),
        )
        .route("/mgmt/bpl/importConfig", post(catalogue::import_config))
        .route(
            "/mgmt/bpl/getApplianceInfo",
            get(admin::get_appliance_info).post(admin::get_appliance_info),
        )
        .route(
            "/mgmt/bpl/getAppliancesInCluster",
            get(admin::get_appliances_in_cluster).post(admin::get_appliances_in_cluster),
        )
        .route(
            "/mgmt/bpl/getVersions",
            get(admin::get_versions).post(admin::get_versions),
        )
        .route(
            "/mgmt/bpl/getPolicyList",
            get(admin::get_policy_list).post(admin::get_policy_list),
        )
        .route(
            "/mgmt/bpl/getPolicyText",
            get(admin::get_policy_text).post(admin::get_policy_text),
        )
        .route(
            "/mgmt/bpl/reapplyPolicies",
            get(admin::reapply_policies).post(admin::reapply_policies),
        )
        .route(
            "/mgmt/bpl/getApplianceMetrics",
            get(admin::get_appliance_metrics).post(admin::get_appliance_metrics),
        )
        .route(
            "/mgmt/bpl/getInstanceMetrics",
            get(admin::get_appliance_metrics).post(admin::get_appliance_metrics),
        )
        .route(
            "/mgmt/bpl/getStorageMetrics",
            get(admin::get_appliance_metrics).post(admin::get_appliance_metrics),
        )
        .route(
            "/mgmt/bpl/getApplianceProperties",
            get(admin::get_appliance_properties).post(admin::get_appliance_properties),
        )
        .route(
            "/mgmt/bpl/getMetaGets",
            get(reports::meta_gets).post(reports::meta_gets),
        )
        .route(
            "/mgmt/bpl/getPVDetails",
            get(admin::get_pv_details).post(admin::get_pv_details),
        )
        .route(
            "/mgmt/bpl/getNeverConnectedPVs",
            get(reports::never_connected).post(reports::never_connected),
        )
        .route(
            "/mgmt/bpl/getCurrentlyDisconnectedPVs",
            get(reports::currently_disconnected).post(reports::currently_disconnected),
        )
        .route(
            "/mgmt/bpl/getEventRateReport",
            get(reports::event_rate).post(reports::event_rate),
        )
        .route(
            "/mgmt/bpl/getStorageRateReport",
            get(reports::storage_rate).post(reports::storage_rate),
        )
        .route(
            "/mgmt/bpl/getPVsByStorageConsumed",
            get(reports::storage_consumed).post(reports::storage_consumed),
        )
        .route(
            "/mgmt/bpl/getRecentlyAddedPVs",
            get(reports::recently_added).post(reports::recently_added),
        )
        .route(
            "/mgmt/bpl/getRecentlyModifiedPVs",
            get(reports::recently_modified).post(reports::recently_modified),
        )
        .route(
            "/mgmt/bpl/getLostConnectionsReport",
            get(reports::lost_connections).post(reports::lost_connections),
        )
        .route(
            "/mgmt/bpl/getSilentPVsReport",
            get(reports::silent_pvs).post(reports::silent_pvs),
        )
        .route(
            "/mgmt/bpl/getPVsByDroppedEventsTimestamp",
            get(reports::dropped_timestamp).post(reports::dropped_timestamp),
        )
        .route(
            "/mgmt/bpl/getPVsByDroppedEventsBuffer",
            get(reports::dropped_buffer).post(reports::dropped_buffer),
        )
        .route(
            "/mgmt/bpl/getPVsByDroppedEventsTypeChange",
            get(reports::dropped_type_change).post(reports::dropped_type_change),
        )
        .route(
            "/mgmt/bpl/getPVsByDroppedEventsRateLimit",
            get(reports::dropped_rate_limit).post(reports::dropped_rate_limit),
        )
        .route(
            "/mgmt/bpl/getSlowChangingPVsWithDroppedEvents",
            get(reports::slow_changing_dropped).post(reports::slow_changing_dropped),
        )
        .route(
            "/mgmt/bpl/getPausedPVsReport",
            get(reports::paused_pvs).post(reports::paused_pvs),
        )
        .route(
            "/mgmt/bpl/getTimeSpanReport",
            get(reports::time_span).post(reports::time_span),
        )
        .route(
            "/mgmt/bpl/getArchivedWaveforms",
            get(reports::archived_waveforms).post(reports::archived_waveforms),
        )
        .merge(storage::routes())
        .merge(for_appliance_routes(appliance.clone()))
        .with_state(appliance)
}

/// The calls Java's appliances make of each other (`...ForAppliance`,
/// `...ForThisAppliance`, `webAppReady`): on a single appliance, the same as the cluster
/// call each names (the Java answer shapes). An `appliance` parameter naming another
/// appliance is a 404 `Cannot find appliance info for X`, as `getApplianceInfo` answers.
fn for_appliance_routes(appliance: SharedAppliance) -> Router<SharedAppliance> {
    let metrics = || get(admin::get_appliance_metrics).post(admin::get_appliance_metrics);
    Router::new()
        .route("/mgmt/bpl/getApplianceMetricsForAppliance", metrics())
        .route(
            "/mgmt/bpl/getStorageMetricsForAppliance",
            get(admin::get_storage_details).post(admin::get_storage_details),
        )
        .route("/mgmt/bpl/getInstanceMetricsForAppliance", metrics())
        .route(
            "/mgmt/bpl/exportConfigForAppliance",
            get(catalogue::export_config).post(catalogue::export_config),
        )
        .route(
            "/mgmt/bpl/importConfigForAppliance",
            post(catalogue::import_config),
        )
        .route(
            "/mgmt/bpl/getPVsForThisAppliance",
            get(catalogue::pvs_for_this_appliance).post(catalogue::pvs_for_this_appliance),
        )
        .route(
            "/mgmt/bpl/getPausedPVsForThisAppliance",
            get(catalogue::paused_pvs_for_this_appliance)
                .post(catalogue::paused_pvs_for_this_appliance),
        )
        .route(
            "/mgmt/bpl/getNeverConnectedPVsForThisAppliance",
            get(reports::never_connected).post(reports::never_connected),
        )
        .route(
            "/mgmt/bpl/getMatchingPVsForThisAppliance",
            get(get_all_pvs).post(get_all_pvs),
        )
        .route(
            "/mgmt/bpl/abortArchivingPVForThisAppliance",
            get(lifecycle::abort_archiving_pv).post(lifecycle::abort_archiving_pv),
        )
        .route(
            "/mgmt/bpl/webAppReady",
            get(admin::web_app_ready).post(admin::web_app_ready),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            appliance,
            only_this_appliance,
        ))
}

/// Refuses a request whose `appliance` query parameter names another appliance (404,
/// Java's `Cannot find appliance info for X`).
async fn only_this_appliance(
    axum::extract::State(app): axum::extract::State<SharedAppliance>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let params = crate::params::Params::parse(req.uri().query());
    if let Some(other) = params
        .get("appliance")
        .filter(|a| !a.is_empty() && *a != app.identity())
    {
        return axum::response::IntoResponse::into_response(ApiError::not_found(format!(
            "Cannot find appliance info for {other}"
        )));
    }
    next.run(req).await
}

/// Runs `f` over the appliance's catalogue on a blocking thread; a refusal of the
/// catalogue (a bad name or pattern, an alias rule) is a 400 naming it, anything else a
/// 500.
pub(crate) async fn catalogue_call<T: Send + 'static>(
    app: &SharedAppliance,
    f: impl FnOnce(&dyn Registry) -> Result<T, RegistryError> + Send + 'static,
) -> ApiResult<T> {
    let reg = app.catalogue();
    // Mapped (and a refused pattern counted and logged) on the blocking thread, which
    // finishes even when the client has left and the handler is dropped.
    tokio::task::spawn_blocking(move || f(reg.as_ref()).map_err(registry_error))
        .await
        .map_err(ApiError::internal)?
}

/// A refusal of the catalogue (a bad name or pattern, an alias rule) is a 400 naming it;
/// a failure of the catalogue itself a 500.
fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::Backend { .. }
        | RegistryError::CorruptTypeInfo { .. }
        | RegistryError::CorruptArchiveRequest { .. }
        | RegistryError::SchemaTooNew { .. }
        | RegistryError::Migration { .. }
        | RegistryError::Corrupt { .. }
        | RegistryError::ForeignSchema { .. }
        | RegistryError::Locked { .. }
        | RegistryError::Io { .. } => ApiError::internal(e),
        RegistryError::PatternTooCostly { .. } => crate::error::pattern_too_costly(e.to_string()),
        client => ApiError::bad(client.to_string()),
    }
}

/// An appliance error as Java answers it: a refusal because of the PV's state is
/// `{"validation": "<message>"}` with status 200; anything else as [`api_error`].
fn validation(e: ApplianceError) -> ApiResult<Response> {
    match e {
        ApplianceError::Validation(m) => Ok(catalogue::validation_json(m)),
        other => Err(api_error(other)),
    }
}

/// A PV name as stored: `.VAL` and `ca://` stripped, checked against Java's characters
/// (`archiver_registry::names::validate_pv_name`); the 400 names the name and the problem.
/// Every management call reads its PV names through here.
pub fn normalize(name: &str) -> ApiResult<String> {
    let n = normalize_channel_name(name.trim());
    let pv = n.name.to_string();
    if pv.contains("://") {
        // `ca://pva://X`, `PVA://X`, `pvx://X`: one lower-case prefix at most (the rest
        // would be stored as a name that maps to no file path).
        return Err(ApiError::bad(format!(
            "invalid PV name {}: a name takes at most one protocol prefix, ca:// or \
             pva:// (lower case)",
            quoted_excerpt(name)
        )));
    }
    validate_pv_name(&pv)
        .map_err(|e| ApiError::bad(format!("invalid PV name {}: {e}", quoted_excerpt(name))))?;
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
        ApplianceError::Policy(e) => ApiError::bad(e.to_string()),
        ApplianceError::Registry(e) => registry_error(e),
        ApplianceError::UnknownPv(pv) => {
            ApiError::not_found(format!("PV {pv} is not being archived"))
        }
        e @ (ApplianceError::BadRequest(_) | ApplianceError::Validation(_)) => {
            ApiError::bad(e.to_string())
        }
        other => ApiError::internal(other),
    }
}

/// The PVs a call acting on several PVs names (pauseArchivingPV, resumeArchivingPV,
/// consolidateDataForPV, deletePVData): every `pv` parameter (comma lists split, `pv=A&pv=B`
/// each, globs expanded over the PVs archived here) and the names of a JSON, text or form
/// body, in request order, each under the name the engine archives it (an alias resolved,
/// [`catalogue::archived_name`]). The flag is true for one PV named without a glob: Java
/// then answers with one object, else with a list of one object per PV.
///
/// # Errors
///
/// 400: no PV named, or a bad glob.
async fn named_pvs(
    app: &SharedAppliance,
    req: &crate::extract::BplRequest,
) -> ApiResult<(Vec<String>, bool)> {
    let entries = req.names()?;
    let mut names = expand(app.as_ref(), &entries, usize::MAX)?;
    for n in names.iter_mut() {
        *n = catalogue::archived_name(app, n).await;
    }
    let one = entries.len() == 1 && !is_glob(&entries[0].pv) && names.len() == 1;
    Ok((names, one))
}

/// The names of `entries`, globs expanded against the archived names (in request order),
/// all globs within one [`MatchBudget`], at most `at_most` names (the rest of the
/// entries are not looked at).
fn expand(app: &dyn ApplianceApi, entries: &[NameEntry], at_most: usize) -> ApiResult<Vec<String>> {
    let mut all: Option<Vec<String>> = None;
    let budget = MatchBudget::start();
    let mut out = Vec::new();
    for e in entries {
        if out.len() >= at_most {
            break;
        }
        if is_glob(&e.pv) {
            let matcher = NamePattern::Glob(e.pv.clone())
                .compile_within(budget)
                .map_err(registry_error)?;
            let all = all.get_or_insert_with(|| app.names());
            let found = matcher.filter(all.iter(), |n| n.as_str(), at_most - out.len());
            out.extend(found.map_err(registry_error)?.into_iter().cloned());
        } else {
            out.push(normalize_channel_name(e.pv.trim()).name.to_string());
        }
    }
    Ok(out)
}
