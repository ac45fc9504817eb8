//! `/mgmt/bpl/*`: the management endpoints scripts and clients use, with the Java response
//! shapes (values are JSON strings, as the Java appliance writes them).

use archiver_engine::{ArchiveOutcome, EngineError, PvConfig, PvState, PvStatus, SamplingMethod};
use archiver_pb::Timestamp;
use archiver_registry::names::{glob_to_regex, is_glob, normalize_channel_name, validate_pv_name};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use serde_json::{Value, json};

use crate::appliance::{DEFAULT_PERIOD, MgmtError};
use crate::error::{ApiError, ApiResult};
use crate::params::{NameEntry, Params, parse_name_body, split_names};
use crate::state::AppState;

/// Java's `MMM/dd/yyyy HH:mm:ss z`, in UTC; `Never` for 0.
pub fn java_time(secs: i64) -> String {
    if secs == 0 {
        return "Never".to_string();
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let d = Timestamp::new(secs, 0).to_utc();
    format!(
        "{}/{:02}/{:04} {:02}:{:02}:{:02} UTC",
        MONTHS[(d.month as usize).saturating_sub(1) % 12],
        d.day,
        d.year,
        d.hour,
        d.minute,
        d.second
    )
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

/// The `getPVStatus` object of one PV.
pub fn status_json(s: &PvStatus, identity: &str) -> Value {
    let status = match s.state {
        PvState::Paused => "Paused",
        PvState::NeverConnected => "Initial sampling",
        PvState::Archiving => "Being archived",
    };
    let c = &s.counters;
    json!({
        "pvName": s.name,
        "status": status,
        "isMonitored": (s.config.method == SamplingMethod::Monitor).to_string(),
        "samplingPeriod": format!("{:?}", s.config.period),
        "connectionState": s.conn.connected.to_string(),
        "lastEvent": java_time(c.last_event_secs),
        "lastRotateLogs": "Never",
        "connectionFirstEstablished": java_time(s.conn.first_established_secs),
        "connectionLastRestablished": java_time(s.conn.last_reestablished_secs),
        "connectionLossRegainCount": s.conn.loss_regain_count.to_string(),
        "appliance": identity,
        "pvNameOnly": s.name,
        "samplingMethod": s.config.method.as_str(),
        "dbrType": s.archived_type.map(|t| format!("DBR_{t}")).unwrap_or_default(),
        "elementCount": s.conn.element_count.to_string(),
        "server": s.conn.server.map(|a| a.to_string()).unwrap_or_default(),
        "eventsReceived": c.events_received.to_string(),
        "eventsStored": c.events_stored.to_string(),
        "eventsWritten": c.events_written.to_string(),
        "samplesInMemory": s.buffered.to_string(),
        "droppedEventsTimestamp": c.dropped_timestamp.to_string(),
        "repeatedTimestamps": c.repeated_timestamp.to_string(),
        "droppedEventsTypeChange": c.dropped_type_change.to_string(),
        "droppedEventsBuffer": c.dropped_buffer_overflow.to_string(),
        "droppedEventsNoType": c.dropped_no_type.to_string(),
        "droppedEventsClient": c.dropped_by_client.to_string(),
        "refusedByWriter": c.refused_by_writer.to_string(),
        "disconnects": c.disconnects.to_string(),
        "lastDisconnect": java_time(c.last_disconnect_secs),
        "transientErrors": c.transient_errors.to_string(),
        "writeErrors": c.write_errors.to_string(),
        "firstEvent": java_time(c.first_event_secs),
        "archiveFields": s.config.archive_fields.join(","),
    })
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
pub async fn get_pv_status(
    State(app): State<AppState>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let p = Params::parse(q.as_deref());
    let names = expand(&app, &names_of(&p, &method, &body)?)?;
    Ok(Json(Value::Array(
        names
            .iter()
            .map(|n| match app.engine.status(n) {
                Some(s) => status_json(&s, &app.identity),
                None => json!({ "pvName": n, "status": "Not being archived" }),
            })
            .collect(),
    )))
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
}
