//! The appliance family: `getApplianceInfo`, `getAppliancesInCluster`, `getVersions`,
//! `getPolicyList`, `getPolicyText`, `getApplianceMetrics`, `getPVDetails`, with the
//! Java shapes (Java `GetApplianceInfo`, `GetVersions`, `ApplianceMetrics`, the mgmt and
//! engine `PVDetails` with their labels, literally).
//!
//! The URLs of `getApplianceInfo` are built from the request's `Host` (one listener
//! serves every Java webapp's path here), so they are the ones the client can reach.

use archiver_appliance::{PvCounts, PvState, SharedAppliance};
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::catalogue::real_name;
use super::catalogue_call as catalogue;
use super::javafmt::java_time;
use crate::error::{ApiError, ApiResult};
use crate::extract::BplRequest;

/// This server's version in the form the Java appliance writes it (`version.txt`:
/// `Archiver Appliance Version <v>`); ChannelFinder splits `mgmt_version` on that prefix.
pub fn mgmt_version() -> String {
    format!("Archiver Appliance Version {}", env!("CARGO_PKG_VERSION"))
}

/// The appliance info object (Java `ApplianceInfo`), URLs on `host`.
fn appliance_info(identity: &str, host: &str) -> Value {
    let base = format!("http://{host}");
    json!({
        "identity": identity,
        "mgmtURL": format!("{base}/mgmt/bpl"),
        "engineURL": format!("{base}/engine/bpl"),
        "etlURL": format!("{base}/etl/bpl"),
        "retrievalURL": format!("{base}/retrieval/bpl"),
        "dataRetrievalURL": format!("{base}/retrieval"),
        "clusterInetPort": host,
        "version": mgmt_version(),
    })
}

fn host(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost:17665")
        .to_string()
}

/// `getApplianceInfo`: `id` (optional; only this appliance's is known: another is a 404).
pub async fn get_appliance_info(
    State(app): State<SharedAppliance>,
    headers: HeaderMap,
    req: BplRequest,
) -> ApiResult<Json<Value>> {
    if let Some(id) = req
        .get("id")
        .filter(|i| !i.is_empty() && *i != app.identity())
    {
        return Err(ApiError::not_found(format!(
            "Cannot find appliance info for {id}"
        )));
    }
    Ok(Json(appliance_info(app.identity(), &host(&headers))))
}

/// `webAppReady` (Java's `WebappReady`): another web app of the appliance (`webapp` =
/// `RETRIEVAL`, `ETL`, `ENGINE` or `MGMT`) says it has started. Every component runs in
/// this process, started with it: an empty 200, as Java answers once started; no or
/// another `webapp` is a 404, as Java's.
pub async fn web_app_ready(req: BplRequest) -> ApiResult<Response> {
    match req.get("webapp") {
        Some("RETRIEVAL" | "ETL" | "ENGINE" | "MGMT") => Ok(().into_response()),
        Some(other) if !other.is_empty() => Err(ApiError::not_found(format!(
            "webapp {other:?} is not one of RETRIEVAL, ETL, ENGINE, MGMT"
        ))),
        _ => Err(ApiError::not_found(
            "webAppReady needs the parameter 'webapp' naming the web app",
        )),
    }
}

/// `getAppliancesInCluster`: a list holding this appliance's info.
pub async fn get_appliances_in_cluster(
    State(app): State<SharedAppliance>,
    headers: HeaderMap,
) -> Json<Vec<Value>> {
    Json(vec![appliance_info(app.identity(), &host(&headers))])
}

/// `getVersions`: `{"mgmt_version": "Archiver Appliance Version <v>", "engine_version",
/// "etl_version", "retrieval_version"}` (one binary: every component has the same
/// version, so `components_with_different_versions` never appears).
pub async fn get_versions() -> Json<Value> {
    let v = mgmt_version();
    Json(json!({
        "mgmt_version": v,
        "engine_version": v,
        "etl_version": v,
        "retrieval_version": v,
    }))
}

/// `getPolicyList`: `{"<policy name>": "<description>"}` (ChannelFinder reads the keys)
/// of the policies in force (the policy file is re-read when it changed). When the file
/// was changed but does not read, the answer is still the policies in force (clients
/// keep working) with a `Warning: 199` header naming the file and the problem (also
/// logged, and the first lines of getPolicyText).
pub async fn get_policy_list(State(app): State<SharedAppliance>) -> Response {
    let list: Map<String, Value> = app
        .policy_list()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let mut resp = Json(list).into_response();
    if let Some(e) = app.policy_file_error() {
        // One line of visible ASCII (the TOML parser's message spans lines).
        let one_line: String = e
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .map(|c| match c {
                '"' | '\\' => '\'',
                c if c.is_ascii_graphic() || c == ' ' => c,
                _ => '?',
            })
            .collect();
        let text = format!("199 archiver \"{one_line}\"");
        if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
            resp.headers_mut().insert(axum::http::header::WARNING, v);
        }
    }
    resp
}

/// `reapplyPolicies` (GET, POST; the Java appliance has none): re-applies the site policy
/// file to archived PVs, keeping their data (`archiver_appliance::Appliance::
/// reapply_policies`). `pv`: names, comma lists, globs (`*` for every PV) or a body
/// list; `dryrun=true` only reports. One object per PV, in order: `pvName`, `status`
/// (`changed`, `unchanged`, `would change` with `dryrun`, `skipped`), `policy`,
/// `previousPolicy`, `changes` (`"samplingPeriod: 1 -> 0.1"`…, or why it was skipped).
pub async fn reapply_policies(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<Vec<Value>>> {
    let names = super::expand(app.as_ref(), &req.names()?, usize::MAX)?;
    // A value other than true/false is a 400: a mistyped dry run must not apply.
    let dry_run = if req.get("dryRun").is_some() && req.get("dryrun").is_none() {
        req.flag("dryRun", false)?
    } else {
        req.flag("dryrun", false)?
    };
    let done = app
        .reapply_policies(&names, dry_run)
        .await
        .map_err(super::api_error)?;
    Ok(Json(
        done.into_iter()
            .map(|r| {
                let status = match (r.applied, r.changes.is_empty(), dry_run) {
                    (false, _, _) => "skipped",
                    (true, true, _) => "unchanged",
                    (true, false, true) => "would change",
                    (true, false, false) => "changed",
                };
                json!({
                    "pvName": r.pv,
                    "status": status,
                    "policy": r.policy.unwrap_or_default(),
                    "previousPolicy": r.previous_policy.unwrap_or_default(),
                    "changes": r.changes,
                })
            })
            .collect(),
    ))
}

/// `getPolicyText`: the policy configuration, `text/plain`.
pub async fn get_policy_text(State(app): State<SharedAppliance>) -> String {
    app.policy_text()
}

/// When the management routes were first built in this process (the server's start), as
/// epoch seconds, and the seconds since.
fn process_start() -> (i64, u64) {
    static START: std::sync::OnceLock<std::time::SystemTime> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::SystemTime::now);
    let epoch = start
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    (epoch, start.elapsed().map_or(0, |d| d.as_secs()))
}

/// Notes the process's start (see [`process_start`]); called when the routes are built.
pub(crate) fn note_process_start() {
    process_start();
}

/// `getApplianceMetrics`: one object with this appliance's figures, values as strings
/// (Java `ApplianceMetrics`: `instance`, `status`, `pvCount`, `connectedPVCount`,
/// `disconnectedPVCount`, `pausedPVCount`, `eventRate`, `dataRateGBPerDay`...,
/// `capacityUtilized` `N/A` as Java's `combineMetrics`; beyond Java `startTime` and
/// `uptimeSeconds` of this process). Also `getStorageMetrics`, the
/// report's list of appliances: Java's `StorageReport` answers the same objects ("the
/// getApplianceMetrics here is not a typo", its source says).
pub async fn get_appliance_metrics(
    State(app): State<SharedAppliance>,
) -> ApiResult<Json<Vec<Value>>> {
    let now = app.now_secs();
    let started = process_start();
    let (mut rate, mut bytes_rate) = (0.0f64, 0.0f64);
    let summaries = super::reports::summaries(&app).await?;
    for s in &summaries {
        let since = now - s.counters.added_secs;
        rate += s.counters.event_rate(since);
        bytes_rate += s.counters.storage_rate(since);
    }
    let PvCounts {
        total,
        connected,
        disconnected,
        paused,
        never_connected: never,
    } = PvCounts::of(&summaries);
    Ok(Json(vec![json!({
        "instance": app.identity(),
        "status": "Working",
        "pvCount": total.to_string(),
        "connectedPVCount": connected.to_string(),
        "disconnectedPVCount": disconnected.to_string(),
        "neverConnectedPVCount": never.to_string(),
        "pausedPVCount": paused.to_string(),
        "eventRate": format!("{rate:.2}"),
        "dataRate": format!("{bytes_rate:.2}"),
        "dataRateGBPerDay": format!("{:.2}", bytes_rate * 86_400.0 / f64::from(1u32 << 30)),
        "dataRateGBPerYear": format!("{:.2}", bytes_rate * 86_400.0 * 365.0 / f64::from(1u32 << 30)),
        "capacityUtilized": "N/A",
        // Beyond Java: when this process started serving, and for how long (the UI's
        // overview shows them).
        "startTime": java_time(started.0),
        "uptimeSeconds": started.1.to_string(),
    })]))
}

/// `getApplianceProperties` (Java `GetApplianceProps`): `{"minimum_sampling_period":
/// "<seconds>"}`, the shortest sampling period `archivePV` takes (Java's
/// `ArchivePVAction.minimumSamplingPeriod` property; here
/// [`archiver_appliance::policy::MIN_SAMPLING_PERIOD_SECS`]), a string as Java writes it.
pub async fn get_appliance_properties() -> Json<Value> {
    Json(json!({
        "minimum_sampling_period": archiver_appliance::policy::MIN_SAMPLING_PERIOD_SECS.to_string(),
    }))
}

fn detail(out: &mut Vec<Value>, source: &str, name: &str, value: impl Into<String>) {
    out.push(json!({"name": name, "value": value.into(), "source": source}));
}

fn yes_no(b: bool, yes: &str, no: &str) -> String {
    if b { yes } else { no }.to_string()
}

/// Java's two-digit grouping (`###,###.##`).
pub(super) fn two_digits(x: f64) -> String {
    let s = format!("{x:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        grouped
    } else {
        format!("{grouped}.{frac}")
    }
}

/// `getStorageMetricsForAppliance`: one object per configured store, Java's
/// `StorageReportDetails` (the ETL's `getStorageDetailsForAppliance`): `name`,
/// `total_space` and `available_space` in GB and `available_space_percent` (Java's
/// `###,###.##`), left out when the filesystem cannot be read; and, beyond Java, the store's
/// `files` and `used_space` (GB) and `used_bytes` (its `.pb` files, one walk of its folder).
/// Java's `time_copy_data_into_store` figures are in `/metrics` (`archiver_etl_*`) instead.
pub async fn get_storage_details(
    State(app): State<SharedAppliance>,
) -> ApiResult<Json<Vec<Value>>> {
    let stores = app
        .store_report()
        .await
        .map_err(super::storage::storage_error)?;
    const GB: f64 = 1024.0 * 1024.0 * 1024.0;
    let rows = stores
        .into_iter()
        .map(|s| {
            let mut o = serde_json::Map::new();
            o.insert("name".into(), Value::String(s.name));
            if let (Some(total), Some(free)) = (s.total_bytes, s.available_bytes) {
                o.insert(
                    "total_space".into(),
                    Value::String(two_digits(total as f64 / GB)),
                );
                o.insert(
                    "available_space".into(),
                    Value::String(two_digits(free as f64 / GB)),
                );
                if total > 0 {
                    o.insert(
                        "available_space_percent".into(),
                        Value::String(two_digits(free as f64 * 100.0 / total as f64)),
                    );
                }
            }
            o.insert("files".into(), Value::String(s.files.to_string()));
            o.insert(
                "used_space".into(),
                Value::String(two_digits(s.used_bytes as f64 / GB)),
            );
            o.insert("used_bytes".into(), Value::String(s.used_bytes.to_string()));
            Value::Object(o)
        })
        .collect();
    Ok(Json(rows))
}

/// `getPVDetails`: `pv`; a list of `{"name", "value", "source"}` with the Java labels,
/// literally: the catalogue's part (`source` `mgmt`), the disk use in each store (`etl`:
/// bytes and partition files per store, the total, bytes per sample on each store's newest
/// file), then the engine's (`pv`).
pub async fn get_pv_details(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Json<Vec<Value>>> {
    let asked = req.required("pv")?.to_string();
    let pv = real_name(&app, &asked).await?;
    let name = pv.clone();
    let (info, aliases) = catalogue(&app, move |r| {
        Ok((r.get_type_info(&name)?, r.aliases_of(&name)?))
    })
    .await?;
    let status = app.status(&pv);
    if info.is_none() && status.is_none() {
        return Err(ApiError::not_found(format!(
            "PV {asked} is not being archived"
        )));
    }
    let mut out = Vec::new();
    let m = "mgmt";
    detail(&mut out, m, "PV Name", asked.clone());
    if pv != asked {
        detail(&mut out, m, "Alias for ", pv.clone());
    }
    if !aliases.is_empty() {
        detail(&mut out, m, "Aliases mapped to this PV ", aliases.join(","));
    }
    detail(&mut out, m, "Instance archiving PV", app.identity());
    if let Some(t) = &info {
        let secs = |t: Option<archiver_pb::Timestamp>| t.map_or(0, |t| t.secs);
        detail(
            &mut out,
            m,
            "Archival params creation time:",
            java_time(secs(t.creation_time)),
        );
        detail(
            &mut out,
            m,
            "Archival params modification time:",
            java_time(secs(t.modification_time)),
        );
        detail(
            &mut out,
            m,
            "Archiver DBR type (from typeinfo):",
            format!("DBR_{}", t.dbr_type),
        );
        detail(
            &mut out,
            m,
            "Is this a scalar:",
            yes_no(t.scalar, "Yes", "No"),
        );
        detail(
            &mut out,
            m,
            "Number of elements:",
            t.element_count.to_string(),
        );
        detail(&mut out, m, "Precision:", format!("{:?}", t.precision));
        detail(&mut out, m, "Units:", t.units.clone().unwrap_or_default());
        detail(
            &mut out,
            m,
            "Is this PV paused:",
            yes_no(t.paused, "Yes", "No"),
        );
        detail(
            &mut out,
            m,
            "Sampling method:",
            t.sampling_method.to_string(),
        );
        detail(
            &mut out,
            m,
            "Sampling period:",
            format!("{:?}", t.sampling_period),
        );
        detail(
            &mut out,
            m,
            "Are we using PVAccess?",
            yes_no(t.uses_pv_access(), "Yes", "No"),
        );
        for (k, v) in &t.extra_fields {
            detail(&mut out, m, &format!("Extra info - {k}:"), v.clone());
        }
        if !t.archive_fields.is_empty() {
            detail(&mut out, m, "Archive Fields", t.archive_fields.join(","));
        }
        if let Some(p) = &t.policy_name {
            detail(&mut out, m, "Policy name:", p.clone());
        }
        if let Some(c) = &t.controlling_pv {
            detail(&mut out, m, "Controlling PV:", c.clone());
        }
    }
    // Disk use per store (Java's ETL part of the details, source `etl`): a store that
    // cannot be listed just leaves its lines out of this page.
    if let Ok(usage) = app.disk_usage(&pv).await {
        let e = "etl";
        let total: u64 = usage.iter().map(|(_, u)| u.bytes).sum();
        for (store, u) in &usage {
            detail(
                &mut out,
                e,
                &format!("Space consumed in {store} (bytes)"),
                u.bytes.to_string(),
            );
            detail(
                &mut out,
                e,
                &format!("Partition files in {store}"),
                u.files.to_string(),
            );
        }
        if !usage.is_empty() {
            detail(
                &mut out,
                e,
                "Total space consumed by this PV (bytes)",
                total.to_string(),
            );
        }
        for (store, bps) in app.bytes_per_sample(&pv).await.unwrap_or_default() {
            if let Some(bps) = bps {
                detail(
                    &mut out,
                    e,
                    &format!("Bytes per sample in {store}"),
                    two_digits(bps),
                );
            }
        }
    }
    let Some(s) = status else {
        return Ok(Json(out));
    };
    let p = "pv";
    let c = &s.counters;
    let now = app.now_secs();
    detail(&mut out, p, "Channel Name", s.name.clone());
    detail(
        &mut out,
        p,
        "Host name",
        s.conn
            .server
            .map(|a| a.ip().to_string())
            .unwrap_or_default(),
    );
    let control = app.control_status(&s.name);
    detail(
        &mut out,
        p,
        "Controlling PV",
        control
            .as_ref()
            .map(|c| c.controlling_pv.clone())
            .unwrap_or_default(),
    );
    if let Some(c) = &control {
        detail(
            &mut out,
            p,
            "Is the controlling PV connected?",
            yes_no(c.connected, "yes", "no"),
        );
        detail(
            &mut out,
            p,
            "Does the controlling PV enable archiving?",
            super::status::control_state(c),
        );
        detail(
            &mut out,
            p,
            "Controlling PV transitions",
            c.transitions.to_string(),
        );
        detail(
            &mut out,
            p,
            "Last controlling PV transition",
            java_time(c.last_transition_secs),
        );
    }
    detail(
        &mut out,
        p,
        "Write errors (short-term store)",
        c.write_errors.to_string(),
    );
    detail(
        &mut out,
        p,
        "Last write error",
        app.last_write_error(&s.name)
            .unwrap_or_else(|| "none".to_string()),
    );
    detail(
        &mut out,
        p,
        "Is engine currently archiving this?",
        yes_no(s.state != PvState::Paused, "yes", "no"),
    );
    let ty = s
        .archived_type
        .map_or_else(|| "Unkown".to_string(), |t| format!("DBR_{t}"));
    detail(&mut out, p, "Archiver DBR type (initial)", ty.clone());
    detail(&mut out, p, "Archiver DBR type (from CA)", ty);
    detail(
        &mut out,
        p,
        "Number of elements per event (from CA)",
        s.conn.element_count.to_string(),
    );
    detail(
        &mut out,
        p,
        "Is engine using monitors?",
        yes_no(
            s.config.method == archiver_appliance::SamplingMethod::Monitor,
            "yes",
            "no",
        ),
    );
    detail(
        &mut out,
        p,
        "What's the engine's sampling period?",
        format!("{:?}", s.config.period as f32),
    );
    detail(
        &mut out,
        p,
        "The SCAN period (ms) after applying the jitter factor",
        ((s.config.period * 0.95 * 1000.0) as i64).to_string(),
    );
    detail(
        &mut out,
        p,
        "Is this PV currently connected?",
        yes_no(s.conn.connected, "yes", "no"),
    );
    detail(
        &mut out,
        p,
        "Connection state at last connection changed event",
        s.conn.connected.to_string(),
    );
    detail(
        &mut out,
        p,
        "When did we receive the last event?",
        java_time(c.last_event_secs),
    );
    detail(
        &mut out,
        p,
        "What did we last push the data to the short term store?",
        java_time(c.last_written_secs),
    );
    detail(
        &mut out,
        p,
        "When did we request CA to make a connection to this PV?",
        java_time(c.added_secs),
    );
    detail(
        &mut out,
        p,
        "When did we first establish a connection to this PV?",
        java_time(s.conn.first_established_secs),
    );
    detail(
        &mut out,
        p,
        "When did we last lose and reestablish a connection to this PV?",
        java_time(s.conn.last_reestablished_secs),
    );
    detail(
        &mut out,
        p,
        "When did we last lose a connection to this PV?",
        java_time(s.conn.lost_at_secs),
    );
    detail(
        &mut out,
        p,
        "How many times have we lost and regained the connection to this PV?",
        s.conn.loss_regain_count.to_string(),
    );
    detail(
        &mut out,
        p,
        "How many events so far?",
        c.events_received.to_string(),
    );
    detail(&mut out, p, "How many raw scan events so far?", "0");
    detail(
        &mut out,
        p,
        "How many events lost because the timestamp is in the far future or past so far?",
        c.dropped_timestamp.to_string(),
    );
    detail(
        &mut out,
        p,
        "Instant of last event from the IOC - correct or not.",
        if c.last_event_secs == 0 {
            "N/A".to_string()
        } else {
            java_time(c.last_event_secs)
        },
    );
    detail(
        &mut out,
        p,
        "How many events lost because the sample buffer is full so far?",
        c.dropped_buffer_overflow.to_string(),
    );
    detail(
        &mut out,
        p,
        "How many events lost because the DBR_Type of the PV has changed from what it used to be?",
        c.dropped_type_change.to_string(),
    );
    detail(
        &mut out,
        p,
        "How many events lost because of the storage-rate guard so far?",
        c.dropped_rate_limit.to_string(),
    );
    // Java's three causes and ours (the client's drops, events before the type was
    // known, the storage-rate guard: a fresh-user test found its drops missing here).
    detail(
        &mut out,
        p,
        "How many events lost totally so far?",
        c.events_lost().to_string(),
    );
    if c.bytes_stored > 0 && c.events_stored > 0 {
        detail(
            &mut out,
            p,
            "Average bytes per event",
            two_digits(c.bytes_stored as f64 / c.events_stored as f64),
        );
    }
    let since = now - c.added_secs;
    let rate = c.event_rate(since);
    let bytes = c.storage_rate(since);
    let or_not_enough = |x: f64, scaled: f64| {
        if x <= 0.0 {
            "Not enough info".to_string()
        } else {
            two_digits(scaled)
        }
    };
    detail(
        &mut out,
        p,
        "Estimated event rate (events/sec)",
        or_not_enough(rate, rate),
    );
    detail(
        &mut out,
        p,
        "Estimated storage rate (KB/hour)",
        or_not_enough(bytes, bytes * 3600.0 / 1024.0),
    );
    detail(
        &mut out,
        p,
        "Estimated storage rate (MB/day)",
        or_not_enough(bytes, bytes * 86_400.0 / (1024.0 * 1024.0)),
    );
    detail(
        &mut out,
        p,
        "Estimated storage rate (GB/year)",
        or_not_enough(bytes, bytes * 86_400.0 * 365.0 / (1024.0 * 1024.0 * 1024.0)),
    );
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_two_digit_format() {
        assert_eq!(two_digits(1234567.891), "1,234,567.89");
        assert_eq!(two_digits(12.5), "12.5");
        assert_eq!(two_digits(100.0), "100");
        assert_eq!(two_digits(0.004), "0");
    }

    #[test]
    fn channelfinder_reads_the_version_after_the_prefix() {
        let v = mgmt_version();
        let parts: Vec<&str> = v.split("Archiver Appliance Version ").collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], env!("CARGO_PKG_VERSION"));
    }
}
