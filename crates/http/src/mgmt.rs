//! `/mgmt/bpl/*`: the management endpoints scripts and clients use, with the Java response
//! shapes (values are JSON strings, as the Java appliance writes them).

use archiver_engine::{ArchiveOutcome, EngineError, PvConfig, PvState, PvStatus, SamplingMethod};
use archiver_pb::Timestamp;
use archiver_registry::names::{glob_to_regex, is_glob, normalize_channel_name, validate_pv_name};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::appliance::{DEFAULT_PERIOD, MgmtError};
use crate::error::{ApiError, ApiResult};
use crate::params::{NameEntry, Params, parse_name_body, split_names};
use crate::state::AppState;

/// Java's `MMM/dd/yyyy HH:mm:ss z`, in UTC; `Never` for 0.
pub fn java_time(secs: i64) -> String {
    JavaTime(secs).to_string()
}

/// [`java_time`] as a `Display` (written into a response without a `String` of its own).
#[derive(Clone, Copy, Debug)]
pub struct JavaTime(pub i64);

impl std::fmt::Display for JavaTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 0 {
            return f.write_str("Never");
        }
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let d = Timestamp::new(self.0, 0).to_utc();
        write!(
            f,
            "{}/{:02}/{:04} {:02}:{:02}:{:02} UTC",
            MONTHS[(d.month as usize).saturating_sub(1) % 12],
            d.day,
            d.year,
            d.hour,
            d.minute,
            d.second
        )
    }
}

/// Serializes a `Display` value as a JSON string, written in place (Java's status values
/// are strings, numbers included).
struct Str<T>(T);

impl<T: std::fmt::Display> serde::Serialize for Str<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A PV's `dbrType` (`DBR_SCALAR_DOUBLE`…).
struct DbrName(archiver_pb::PayloadType);

impl std::fmt::Display for DbrName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DBR_{}", self.0)
    }
}

/// An optional `Display`, empty when absent.
struct OrEmpty<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrEmpty<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => Ok(()),
        }
    }
}

/// Items joined by commas.
struct Joined<'a>(&'a [String]);

impl std::fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, x) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(x)?;
        }
        Ok(())
    }
}

fn normalize(name: &str) -> ApiResult<String> {
    let n = normalize_channel_name(name.trim());
    let pv = n.name.to_string();
    validate_pv_name(&pv).map_err(|e| ApiError::bad(format!("invalid PV name {name:?}: {e}")))?;
    Ok(pv)
}

fn mgmt_error(e: MgmtError) -> ApiError {
    match e {
        MgmtError::Engine(EngineError::NotFound(m)) => {
            ApiError::not_found(format!("PV {m} is not being archived"))
        }
        MgmtError::Engine(
            e @ (EngineError::BadName(_)
            | EngineError::BadPeriod(_)
            | EngineError::TooManyFields(_)),
        ) => ApiError::bad(e.to_string()),
        other => ApiError::internal(other),
    }
}

/// The names of a request: `pv` in the query (comma lists, repeated) and, for POST, the body.
fn names_of(p: &Params, method: &Method, body: &[u8]) -> ApiResult<Vec<NameEntry>> {
    let mut out: Vec<NameEntry> = split_names(p.all("pv"))
        .into_iter()
        .map(|pv| NameEntry {
            pv,
            fields: Default::default(),
        })
        .collect();
    if *method == Method::POST && !body.iter().all(u8::is_ascii_whitespace) {
        out.extend(parse_name_body(body)?);
    }
    if out.is_empty() {
        return Err(ApiError::bad(
            "missing required parameter 'pv' (or a list of PVs in the body)",
        ));
    }
    Ok(out)
}

fn parse_period(text: &str) -> ApiResult<f64> {
    match text.trim().parse::<f64>() {
        Ok(p) if p.is_finite() && p >= 0.0 => Ok(p),
        _ => Err(ApiError::bad(format!(
            "samplingperiod must be a number of seconds >= 0, not {text:?}"
        ))),
    }
}

fn parse_method(text: &str) -> ApiResult<SamplingMethod> {
    SamplingMethod::parse(text.trim()).ok_or_else(|| {
        ApiError::bad(format!(
            "samplingmethod must be MONITOR or SCAN, not {text:?}"
        ))
    })
}

/// Archive field names: a comma list or a JSON array of names like `HIHI`.
fn parse_fields(text: &str) -> ApiResult<Vec<String>> {
    let names: Vec<String> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
            .map_err(|e| ApiError::bad(format!("archiveFields is not a JSON list of names: {e}")))?
    } else {
        text.split(',')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect()
    };
    for n in &names {
        let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok || n == "VAL" {
            return Err(ApiError::bad(format!("invalid archive field name {n:?}")));
        }
    }
    Ok(names)
}

/// `archivePV`: GET with `pv` (comma list), `samplingperiod`, `samplingmethod`; or POST
/// with a JSON list (`[{"pv": …, "samplingperiod": …, "samplingmethod": …}]` or names) or
/// a newline/comma list.
pub async fn archive_pv(
    State(app): State<AppState>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let p = Params::parse(q.as_deref());
    let entries = names_of(&p, &method, &body)?;
    let default_period = p.get("samplingperiod").map(parse_period).transpose()?;
    let default_method = p.get("samplingmethod").map(parse_method).transpose()?;
    // Validate everything before archiving anything.
    let mut plan = Vec::with_capacity(entries.len());
    for e in &entries {
        let pv = normalize(&e.pv)?;
        let period = match e.fields.get("samplingperiod") {
            Some(t) => parse_period(t)?,
            None => default_period.unwrap_or(DEFAULT_PERIOD),
        };
        let method = match e.fields.get("samplingmethod") {
            Some(t) => parse_method(t)?,
            None => default_method.unwrap_or(SamplingMethod::Monitor),
        };
        // Beyond Java: archive fields per PV (`archiveFields=HIHI,LOLO` or a JSON list).
        let fields_text = e
            .fields
            .get("archivefields")
            .map(String::as_str)
            .or(p.get("archiveFields"));
        let archive_fields = match fields_text {
            None => Vec::new(),
            Some(t) => parse_fields(t)?,
        };
        plan.push((
            pv,
            PvConfig {
                method,
                period,
                archive_fields,
            },
        ));
    }
    let outcomes = app.archive_many(plan).await.map_err(mgmt_error)?;
    Ok(Json(Value::Array(
        outcomes
            .into_iter()
            .map(|(pv, o)| {
                json!({
                    "pvName": pv,
                    "status": match o {
                        ArchiveOutcome::Submitted => "Archive request submitted",
                        ArchiveOutcome::AlreadySubmitted => "Already submitted",
                    }
                })
            })
            .collect(),
    )))
}

/// The `getPVStatus` object of one PV, in the Java key order (values are strings, as
/// Java writes them). Serialized straight into the response: a status of thousands of
/// PVs builds no JSON tree.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusJson<'a> {
    pv_name: &'a str,
    status: &'static str,
    is_monitored: Str<bool>,
    sampling_period: Str<Period>,
    connection_state: Str<bool>,
    last_event: Str<JavaTime>,
    last_rotate_logs: &'static str,
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
    refused_by_writer: Str<u64>,
    disconnects: Str<u64>,
    last_disconnect: Str<JavaTime>,
    transient_errors: Str<u64>,
    write_errors: Str<u64>,
    first_event: Str<JavaTime>,
    archive_fields: Str<Joined<'a>>,
}

/// A sampling period as Java prints a double (`1.0`, `0.5`).
struct Period(f64);

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The `getPVStatus` object of one PV.
pub fn status_json<'a>(s: &'a PvStatus, identity: &'a str) -> StatusJson<'a> {
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
        last_rotate_logs: "Never",
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
        refused_by_writer: Str(c.refused_by_writer),
        disconnects: Str(c.disconnects),
        last_disconnect: Str(JavaTime(c.last_disconnect_secs)),
        transient_errors: Str(c.transient_errors),
        write_errors: Str(c.write_errors),
        first_event: Str(JavaTime(c.first_event_secs)),
        archive_fields: Str(Joined(&s.config.archive_fields)),
    }
}

/// `getNeverConnectedPVs`: PVs requested but never connected (they keep being searched
/// for, with back-off).
pub async fn get_never_connected(State(app): State<AppState>) -> Json<Value> {
    let mut v: Vec<PvStatus> = app
        .engine
        .all_status()
        .into_iter()
        .filter(|s| s.state == PvState::NeverConnected)
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Json(Value::Array(
        v.iter()
            .map(|s| {
                json!({
                    "pvName": s.name,
                    "currentState": "Initial sampling",
                    "appliance": app.identity.as_ref(),
                })
            })
            .collect(),
    ))
}

fn expand(app: &AppState, names: &[NameEntry]) -> ApiResult<Vec<String>> {
    let all = app.engine.names();
    let mut out = Vec::new();
    for e in names {
        if is_glob(&e.pv) {
            let re = regex::Regex::new(&format!("^(?:{})$", glob_to_regex(&e.pv)))
                .map_err(|err| ApiError::bad(format!("bad pattern {:?}: {err}", e.pv)))?;
            out.extend(all.iter().filter(|n| re.is_match(n)).cloned());
        } else {
            out.push(normalize_channel_name(e.pv.trim()).name.to_string());
        }
    }
    Ok(out)
}

/// `getPVStatus`: `pv` (comma list, globs) or a POST body; an array in request order.
/// Each PV's status is taken and written in turn, so the whole answer for thousands of
/// PVs is one buffer, not a copy of every status plus a JSON tree.
pub async fn get_pv_status(
    State(app): State<AppState>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let names = expand(&app, &names_of(&p, &method, &body)?)?;
    // ≈ 900 bytes a PV (bounded: a long list of unknown names needs ≈ 50 each).
    let mut out = Vec::with_capacity(names.len().min(4096) * 1024 + 2);
    out.push(b'[');
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let written = match app.engine.status(n) {
            Some(s) => serde_json::to_writer(&mut out, &status_json(&s, &app.identity)),
            None => serde_json::to_writer(
                &mut out,
                &json!({ "pvName": n, "status": "Not being archived" }),
            ),
        };
        written.map_err(|e| ApiError::internal(format!("status of {n}: {e}")))?;
    }
    out.push(b']');
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// `getAllPVs`: `pv` (glob) or `regex`, `limit` (default 500, -1 = all); sorted names.
pub async fn get_all_pvs(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let p = Params::parse(q.as_deref());
    let limit: i64 = match p.get("limit") {
        None | Some("") => 500,
        Some(l) => l
            .trim()
            .parse()
            .map_err(|_| ApiError::bad(format!("limit must be an integer, not {l:?}")))?,
    };
    let re = match (p.get("pv"), p.get("regex")) {
        (Some(glob), _) => Some(format!("^(?:{})$", glob_to_regex(glob))),
        (None, Some(r)) => Some(format!("^(?:{r})$")),
        (None, None) => None,
    }
    .map(|r| regex::Regex::new(&r).map_err(|e| ApiError::bad(format!("bad pattern: {e}"))))
    .transpose()?;
    let mut names: Vec<String> = app
        .engine
        .names()
        .into_iter()
        .filter(|n| re.as_ref().is_none_or(|re| re.is_match(n)))
        .collect();
    if limit >= 0 {
        names.truncate(limit as usize);
    }
    Ok(Json(json!(names)))
}

async fn pause_or_resume(app: &AppState, pv: &str, pause: bool) -> Result<Value, ApiError> {
    let r = if pause {
        app.pause(pv).await
    } else {
        app.resume(pv).await
    };
    match r {
        Ok(()) => Ok(json!({ "pvName": pv, "status": "ok" })),
        Err(MgmtError::Engine(e @ (EngineError::AlreadyPaused(_) | EngineError::NotPaused(_)))) => {
            Ok(json!({ "validation": e.to_string() }))
        }
        Err(e) => Err(mgmt_error(e)),
    }
}

async fn pause_resume(
    app: AppState,
    method: Method,
    q: Option<String>,
    body: Bytes,
    pause: bool,
) -> ApiResult<Json<Value>> {
    let p = Params::parse(q.as_deref());
    let entries = names_of(&p, &method, &body)?;
    let names = expand(&app, &entries)?;
    if entries.len() == 1 && !is_glob(&entries[0].pv) && names.len() == 1 {
        return Ok(Json(pause_or_resume(&app, &names[0], pause).await?));
    }
    let mut out = Vec::with_capacity(names.len());
    for n in &names {
        out.push(match pause_or_resume(&app, n, pause).await {
            Ok(v) => v,
            Err(ApiError::NotFound(m)) => json!({ "pvName": n, "validation": m }),
            Err(e) => return Err(e),
        });
    }
    Ok(Json(Value::Array(out)))
}

/// `pauseArchivingPV`: `pv` (comma list, globs) or a POST body.
pub async fn pause_pv(
    State(app): State<AppState>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    pause_resume(app, method, q, body, true).await
}

/// `resumeArchivingPV`: `pv` (comma list, globs) or a POST body.
pub async fn resume_pv(
    State(app): State<AppState>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    pause_resume(app, method, q, body, false).await
}

/// `deletePV`: `pv`, `deleteData` (default false). The PV must be paused.
pub async fn delete_pv(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let p = Params::parse(q.as_deref());
    let pv = normalize_channel_name(p.required("pv")?.trim())
        .name
        .to_string();
    let delete_data = p.flag("deleteData", false)?;
    match app.delete(&pv, delete_data).await {
        Ok(files) => Ok(Json(json!({
            "pvName": pv,
            "status": "ok",
            "desc": format!(
                "Deleted PV {pv}{}",
                if delete_data { format!(" and {files} data files") } else { String::new() }
            ),
        }))),
        Err(MgmtError::Engine(EngineError::NotPaused(_))) => Err(ApiError::bad(format!(
            "PV {pv} must be paused before it is deleted (call pauseArchivingPV first)"
        ))),
        Err(e) => Err(mgmt_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_time_format() {
        assert_eq!(java_time(0), "Never");
        assert_eq!(java_time(1_418_019_667), "Dec/08/2014 06:21:07 UTC");
    }

    fn sample_status() -> PvStatus {
        use archiver_engine::{ConnState, CountersSnapshot, PvMeta};
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
                ..CountersSnapshot::default()
            },
        }
    }

    #[test]
    fn status_object_has_the_java_keys_in_order_and_string_values() {
        let s = sample_status();
        let text = serde_json::to_string(&status_json(&s, "appliance0")).unwrap();
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
        let v = serde_json::to_value(status_json(&s, "x")).unwrap();
        assert_eq!(v["status"], "Initial sampling");
        assert_eq!(v["dbrType"], "");
        assert_eq!(v["server"], "");
        assert_eq!(v["archiveFields"], "");
        assert_eq!(v["isMonitored"], "true");
        assert_eq!(v["samplingPeriod"], "1.0");
    }
}
