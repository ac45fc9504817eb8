//! The status family: `getPVStatus`, `getAllPVs`, with the Java
//! response shapes (values are JSON strings, as the Java appliance writes them).

use archiver_appliance::{
    ApplianceApi, ControlStatus, PvState, PvStatus, SamplingMethod, SharedAppliance,
};
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use archiver_registry::names::is_glob;
use archiver_registry::{Limit, MatchBudget, NamePattern};

use super::expand;
use super::javafmt::{DbrName, JavaTime, Joined, OrEmpty, Period, Str};
use crate::error::{ApiError, ApiResult};
use crate::extract::BplRequest;

/// The `getPVStatus` object of one PV, in the Java key order (values are strings, as
/// Java writes them). Serialized straight into the response: a status of thousands of
/// PVs builds no JSON tree.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusJson<'a> {
    pv_name: &'a str,
    status: &'static str,
    is_monitored: Str<bool>,
    sampling_period: Str<Period>,
    connection_state: Str<bool>,
    last_event: Str<JavaTime>,
    last_rotate_logs: Str<JavaTime>,
    connection_first_established: Str<JavaTime>,
    connection_last_restablished: Str<JavaTime>,
    connection_loss_regain_count: Str<u64>,
    appliance: &'a str,
    pv_name_only: &'a str,
    sampling_method: &'static str,
    dbr_type: Str<OrEmpty<DbrName>>,
    element_count: Str<u32>,
    server: Str<OrEmpty<std::net::SocketAddr>>,
    events_received: Str<u64>,
    events_stored: Str<u64>,
    events_written: Str<u64>,
    samples_in_memory: Str<usize>,
    dropped_events_timestamp: Str<u64>,
    repeated_timestamps: Str<u64>,
    dropped_events_type_change: Str<u64>,
    dropped_events_buffer: Str<u64>,
    dropped_events_no_type: Str<u64>,
    dropped_events_client: Str<u64>,
    /// Samples dropped by the storage-rate guard (`[storage] max_bytes_per_hour`).
    dropped_events_rate_limit: Str<u64>,
    refused_by_writer: Str<u64>,
    disconnects: Str<u64>,
    last_disconnect: Str<JavaTime>,
    transient_errors: Str<u64>,
    write_errors: Str<u64>,
    /// The PV's last write error while its writes fail (beyond Java's keys; absent once
    /// a write succeeded again).
    #[serde(rename = "lastWriteError", skip_serializing_if = "Option::is_none")]
    last_write_error: Option<String>,
    first_event: Str<JavaTime>,
    archive_fields: Str<Joined<'a>>,
    /// Conditional archiving (beyond Java's keys, only for a PV with a controlling PV).
    #[serde(rename = "controllingPV", skip_serializing_if = "Option::is_none")]
    controlling_pv: Option<String>,
    /// `enabled` (its value is not 0), `disabled` (0: the PV is paused by it) or `unknown`
    /// (no value yet).
    #[serde(rename = "controllingPVState", skip_serializing_if = "Option::is_none")]
    controlling_pv_state: Option<&'static str>,
    /// Changes of the controlling PV between 0 and non-zero since start.
    #[serde(
        rename = "controllingPVTransitions",
        skip_serializing_if = "Option::is_none"
    )]
    controlling_pv_transitions: Option<Str<u64>>,
    /// When it last changed.
    #[serde(
        rename = "controllingPVLastTransition",
        skip_serializing_if = "Option::is_none"
    )]
    controlling_pv_last_transition: Option<Str<JavaTime>>,
}

impl<'a> StatusJson<'a> {
    /// The status answered for the name `asked` (an alias of the PV, or `PV.FIELD`):
    /// `pvName` is `asked`, `pvNameOnly` stays the PV's name (Java `GetPVStatusAction`).
    pub fn asked_as(mut self, asked: &'a str) -> Self {
        self.pv_name = asked;
        self
    }

    /// With `lastWriteError` (see `ApplianceApi::last_write_error`).
    pub fn with_last_write_error(mut self, error: Option<String>) -> Self {
        self.last_write_error = error;
        self
    }
}

/// The words of a controlling PV's verdict in `getPVStatus` and `getPVDetails`.
pub(super) fn control_state(c: &ControlStatus) -> &'static str {
    match c.enabled {
        Some(true) => "enabled",
        Some(false) => "disabled",
        None => "unknown",
    }
}

/// The `getPVStatus` object of a PV this appliance does not archive.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NotArchived<'a> {
    pv_name: &'a str,
    status: &'static str,
}

/// The `getPVStatus` object of a PV of the catalogue that the engine does not hold yet
/// (the background restore has not reached it): Java's `"Appliance assigned"` (a type
/// info, no channel yet), `"Paused"`, or `"Initial sampling"` (a pending request).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NotRestored<'a> {
    pv_name: &'a str,
    status: &'static str,
    appliance: &'a str,
    pv_name_only: String,
}

/// What the catalogue says of `name` (or the PV it aliases) when the engine does not
/// hold it: its real name and status word, `None` if it knows nothing of it.
fn catalogued_status(
    app: &dyn ApplianceApi,
    name: &str,
) -> Result<Option<(String, &'static str)>, archiver_registry::RegistryError> {
    let reg = app.catalogue();
    let real = reg.resolve_name(name)?;
    if let Some(info) = reg.get_type_info(&real)? {
        let status = if info.paused {
            "Paused"
        } else {
            "Appliance assigned"
        };
        return Ok(Some((real, status)));
    }
    Ok(reg
        .get_archive_request(&real)?
        .map(|_| (real, "Initial sampling")))
}

/// The `getPVStatus` object of one PV; `control` is its controlling PV's status, if it has
/// one.
pub fn status_json<'a>(
    s: &'a PvStatus,
    identity: &'a str,
    control: Option<ControlStatus>,
) -> StatusJson<'a> {
    let status = match s.state {
        PvState::Paused => "Paused",
        PvState::NeverConnected => "Initial sampling",
        PvState::Archiving => "Being archived",
    };
    let c = &s.counters;
    StatusJson {
        pv_name: &s.name,
        status,
        is_monitored: Str(s.config.method == SamplingMethod::Monitor),
        sampling_period: Str(Period(s.config.period)),
        connection_state: Str(s.conn.connected),
        last_event: Str(JavaTime(c.last_event_secs)),
        last_rotate_logs: Str(JavaTime(c.last_written_secs)),
        connection_first_established: Str(JavaTime(s.conn.first_established_secs)),
        connection_last_restablished: Str(JavaTime(s.conn.last_reestablished_secs)),
        connection_loss_regain_count: Str(s.conn.loss_regain_count),
        appliance: identity,
        pv_name_only: &s.name,
        sampling_method: s.config.method.as_str(),
        dbr_type: Str(OrEmpty(s.archived_type.map(DbrName))),
        element_count: Str(s.conn.element_count),
        server: Str(OrEmpty(s.conn.server)),
        events_received: Str(c.events_received),
        events_stored: Str(c.events_stored),
        events_written: Str(c.events_written),
        samples_in_memory: Str(s.buffered),
        dropped_events_timestamp: Str(c.dropped_timestamp),
        repeated_timestamps: Str(c.repeated_timestamp),
        dropped_events_type_change: Str(c.dropped_type_change),
        dropped_events_buffer: Str(c.dropped_buffer_overflow),
        dropped_events_no_type: Str(c.dropped_no_type),
        dropped_events_client: Str(c.dropped_by_client),
        dropped_events_rate_limit: Str(c.dropped_rate_limit),
        refused_by_writer: Str(c.refused_by_writer),
        disconnects: Str(c.disconnects),
        last_disconnect: Str(JavaTime(c.last_disconnect_secs)),
        transient_errors: Str(c.transient_errors),
        write_errors: Str(c.write_errors),
        last_write_error: None,
        first_event: Str(JavaTime(c.first_event_secs)),
        archive_fields: Str(Joined(&s.config.archive_fields)),
        controlling_pv_state: control.as_ref().map(control_state),
        controlling_pv_transitions: control.as_ref().map(|c| Str(c.transitions)),
        controlling_pv_last_transition: control
            .as_ref()
            .map(|c| Str(JavaTime(c.last_transition_secs))),
        controlling_pv: control.map(|c| c.controlling_pv),
    }
}

/// `getPVStatus` (GET, POST): `pv` (comma lists, globs) and/or a list in the body; an
/// array in request order. The statuses are found in one pass
/// ([`statuses_for_names`](super::catalogue::statuses_for_names)) and written in turn
/// into one buffer, without a JSON tree, on a blocking thread (100 000 names are a
/// fraction of a second of CPU that must not hold an async worker).
///
/// Beyond Java: `limit` (an integer, -1 or absent = all) keeps the first `limit` names
/// of the expanded list, so a UI can show the first matches of a glob over 100 000 PVs;
/// unlike `getAllPVs`, a glob here also matches the PVs still waiting to connect (their
/// archive request pending).
pub async fn get_pv_status(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let at_most = match limit_param(&req, Limit::All)? {
        Limit::All => usize::MAX,
        Limit::AtMost(n) => n,
    };
    // Stops matching once `limit` names are found, as Java's `PVsMatchingParameter`.
    let names = expand(app.as_ref(), &req.names()?, at_most)?;
    let out = tokio::task::spawn_blocking(move || status_body(app.as_ref(), &names))
        .await
        .map_err(ApiError::internal)??;
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// The `getPVStatus` array of `names`.
fn status_body(app: &dyn ApplianceApi, names: &[String]) -> ApiResult<Vec<u8>> {
    let found = super::catalogue::statuses_for_names(app, names).map_err(super::registry_error)?;
    // ≈ 900 bytes a PV (bounded: a long list of unknown names needs ≈ 50 each).
    let mut out = Vec::with_capacity(names.len().min(4096) * 1024 + 2);
    out.push(b'[');
    for (i, (n, s)) in names.iter().zip(&found).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // An alias, or PV.FIELD for one of PV's archive fields, answers its PV's status
        // under the name asked for, `pvNameOnly` naming the PV (Java `GetPVStatusAction`).
        let written = match s {
            Some(s) => serde_json::to_writer(
                &mut out,
                &status_json(s, app.identity(), app.control_status(&s.name))
                    .asked_as(n)
                    .with_last_write_error(app.last_write_error(&s.name)),
            ),
            None => match catalogued_status(app, n).map_err(super::registry_error)? {
                Some((real, status)) => serde_json::to_writer(
                    &mut out,
                    &NotRestored {
                        pv_name: n,
                        status,
                        appliance: app.identity(),
                        pv_name_only: real,
                    },
                ),
                None => serde_json::to_writer(
                    &mut out,
                    &NotArchived {
                        pv_name: n,
                        status: "Not being archived",
                    },
                ),
            },
        };
        written.map_err(|e| ApiError::internal(format!("status of {n}: {e}")))?;
    }
    out.push(b']');
    Ok(out)
}

/// `getAllPVs` (GET, POST), as Java's `GetAllPVs` (`PVsMatchingParameter`): the PVs
/// with a `PVTypeInfo` (sorted), then the aliases (sorted); PVs still in their archive
/// request are not listed. `pv` is a comma list: a glob (`*`, `?`) adds the matching PVs
/// then the matching aliases, a plain name adds itself if it is an archived PV; else
/// `regex` (matching the whole name) or every name. `limit` (default 500, -1 = all)
/// bounds the whole list.
pub async fn get_all_pvs(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<Vec<String>>> {
    let limit = limit_param(&req, Limit::JAVA_DEFAULT)?;
    let pv = req.get("pv").map(str::to_string);
    let regex = req.get("regex").map(str::to_string);
    let names = super::catalogue_call(&app, move |r| {
        let Some(list) = pv else {
            let pattern = regex.map_or(NamePattern::All, NamePattern::Regex);
            return r.get_all_pvs(&pattern, limit);
        };
        // One budget for every glob of the list: 20,000 cheap globs are as costly as one
        // slow pattern.
        let budget = MatchBudget::start();
        let mut names = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if limit.reached(names.len()) {
                break;
            }
            if is_glob(entry) {
                let left = limit.minus(names.len());
                let glob = NamePattern::Glob(entry.to_string());
                names.extend(r.get_all_pvs_within(&glob, left, budget)?);
            } else if r.get_type_info(entry)?.is_some() {
                names.push(entry.to_string());
            }
        }
        Ok(names)
    })
    .await?;
    Ok(Json(names))
}

/// The `limit` parameter (Java's: an integer, negative = all); absent or empty gives
/// `default`. 400 naming the text when it is not an integer.
fn limit_param(req: &BplRequest, default: Limit) -> ApiResult<Limit> {
    match req.get("limit") {
        None | Some("") => Ok(default),
        Some(l) => Ok(Limit::from_java(l.trim().parse().map_err(|_| {
            ApiError::bad(format!("limit must be an integer, not {l:?}"))
        })?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_appliance::PvConfig;
    use serde_json::Value;

    fn sample_status() -> PvStatus {
        use archiver_appliance::{ConnState, CountersSnapshot, PvMeta};
        PvStatus {
            name: "A:B\"C".into(),
            state: PvState::Archiving,
            config: PvConfig {
                method: SamplingMethod::Scan,
                period: 0.5,
                archive_fields: vec!["HIHI".into(), "LOLO".into()],
            },
            archived_type: Some(archiver_pb::PayloadType::ScalarDouble),
            conn: ConnState {
                connected: true,
                server: Some("127.0.0.1:5064".parse().unwrap()),
                first_established_secs: 1_418_019_667,
                element_count: 1,
                ..ConnState::default()
            },
            meta: PvMeta::default(),
            buffered: 7,
            counters: CountersSnapshot {
                events_received: 12,
                events_stored: 11,
                dropped_timestamp: 1,
                last_written_secs: 1_418_019_670,
                ..CountersSnapshot::default()
            },
        }
    }

    #[test]
    fn status_object_has_the_java_keys_in_order_and_string_values() {
        let s = sample_status();
        let text = serde_json::to_string(&status_json(&s, "appliance0", None)).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let obj = v.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "pvName",
                "status",
                "isMonitored",
                "samplingPeriod",
                "connectionState",
                "lastEvent",
                "lastRotateLogs",
                "connectionFirstEstablished",
                "connectionLastRestablished",
                "connectionLossRegainCount",
                "appliance",
                "pvNameOnly",
                "samplingMethod",
                "dbrType",
                "elementCount",
                "server",
                "eventsReceived",
                "eventsStored",
                "eventsWritten",
                "samplesInMemory",
                "droppedEventsTimestamp",
                "repeatedTimestamps",
                "droppedEventsTypeChange",
                "droppedEventsBuffer",
                "droppedEventsNoType",
                "droppedEventsClient",
                "droppedEventsRateLimit",
                "refusedByWriter",
                "disconnects",
                "lastDisconnect",
                "transientErrors",
                "writeErrors",
                "firstEvent",
                "archiveFields",
            ]
        );
        // Every value is a string, as Java writes them.
        assert!(obj.values().all(Value::is_string), "{text}");
        assert_eq!(v["pvName"], "A:B\"C");
        assert_eq!(v["status"], "Being archived");
        assert_eq!(v["isMonitored"], "false");
        assert_eq!(v["samplingPeriod"], "0.5");
        assert_eq!(v["samplingMethod"], "SCAN");
        assert_eq!(v["connectionState"], "true");
        assert_eq!(v["lastEvent"], "Never");
        assert_eq!(v["connectionFirstEstablished"], "Dec/08/2014 06:21:07 UTC");
        // The writer's last write to the short-term store (Java `lastRotateLogs`).
        assert_eq!(v["lastRotateLogs"], "Dec/08/2014 06:21:10 UTC");
        assert_eq!(v["dbrType"], "DBR_SCALAR_DOUBLE");
        assert_eq!(v["server"], "127.0.0.1:5064");
        assert_eq!(v["eventsReceived"], "12");
        assert_eq!(v["eventsStored"], "11");
        assert_eq!(v["samplesInMemory"], "7");
        assert_eq!(v["droppedEventsTimestamp"], "1");
        assert_eq!(v["archiveFields"], "HIHI,LOLO");
        assert_eq!(v["appliance"], "appliance0");
    }

    #[test]
    fn status_of_a_pv_without_type_or_server_has_empty_strings() {
        let mut s = sample_status();
        s.state = PvState::NeverConnected;
        s.archived_type = None;
        s.conn.server = None;
        s.config.method = SamplingMethod::Monitor;
        s.config.period = 1.0;
        s.config.archive_fields.clear();
        let v = serde_json::to_value(status_json(&s, "x", None)).unwrap();
        assert_eq!(v["status"], "Initial sampling");
        assert_eq!(v["dbrType"], "");
        assert_eq!(v["server"], "");
        assert_eq!(v["archiveFields"], "");
        assert_eq!(v["isMonitored"], "true");
        assert_eq!(v["samplingPeriod"], "1.0");
    }
}
