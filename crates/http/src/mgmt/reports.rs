//! The reports (spec §3, Java `engine/bpl/reports/*`, `mgmt/bpl/reports/*`): lists of
//! `{pvName, <metric>: "<string>"}` with Java's field names, sorted as Java sorts them,
//! cut at `limit` (absent: all, as Java's engine reports; `getRecentlyAddedPVs` and
//! `getRecentlyModifiedPVs`: 100, as Java).
//!
//! Each report reads the engine's per-PV status once (counters are atomics; one copy per
//! PV) and, for the catalogue's times, one query that reads three keys of every type info
//! ([`archiver_registry::Registry::all_pv_times`]); sorting is `O(n log n)` over
//! the selected PVs only. `benches/mgmt_reports.rs` times every report over 100 000 PVs.
//!
//! Rates are over the time since the engine got the PV (its archive request or the
//! restore at start), as Java's `PVMetrics` computes them since its channel was created.

use archiver_appliance::{PvState, PvSummary, SharedAppliance};
use archiver_registry::PvTimes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::catalogue_call as catalogue;
use super::javafmt::{JavaTime, Str};
use crate::error::{ApiError, ApiResult};
use crate::extract::BplRequest;

/// The `limit` parameter: `None` (all) when absent, empty or negative.
fn limit(req: &BplRequest, default: Option<usize>) -> ApiResult<Option<usize>> {
    match req.get("limit").map(str::trim).filter(|l| !l.is_empty()) {
        None => Ok(default),
        Some(l) => {
            let n: i64 = l.parse().map_err(|_| {
                ApiError::bad(format!("parameter 'limit' must be an integer, not {l:?}"))
            })?;
            Ok(usize::try_from(n).ok())
        }
    }
}

/// Every PV's summary, read on a blocking thread: the copy of 100 000 PVs takes a
/// fraction of a second of CPU, which during the engine's start-up (every PV searching)
/// must neither hold an async worker the CA client's tasks need nor wait behind them.
pub(super) async fn summaries(app: &SharedAppliance) -> ApiResult<Vec<PvSummary>> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || app.summaries())
        .await
        .map_err(ApiError::internal)
}

/// Serializes `rows` into one JSON buffer.
fn json_rows<T: Serialize>(rows: &[T]) -> ApiResult<Response> {
    let body = serde_json::to_vec(rows).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The PVs of `all` that `keep` selects, sorted by `key` descending (ties by name), at
/// most `limit`, each turned into a row by `row`.
///
/// Only the kept PVs are keyed and sorted, and with a `limit` below their number only
/// the first `limit` are fully sorted (`select_nth_unstable_by`, then a sort of those).
fn top<K: PartialOrd + Copy, R>(
    all: Vec<PvSummary>,
    keep: impl Fn(&PvSummary) -> bool,
    key: impl Fn(&PvSummary) -> K,
    descending: bool,
    limit: Option<usize>,
    row: impl Fn(&PvSummary) -> R,
) -> Vec<R> {
    let mut keyed: Vec<(K, usize)> = all
        .iter()
        .enumerate()
        .filter(|(_, s)| keep(s))
        .map(|(i, s)| (key(s), i))
        .collect();
    let order = |a: &(K, usize), b: &(K, usize)| {
        let o = a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal);
        let o = if descending { o.reverse() } else { o };
        o.then_with(|| all[a.1].name.cmp(&all[b.1].name))
    };
    let n = limit.unwrap_or(usize::MAX).min(keyed.len());
    if n < keyed.len() {
        if n == 0 {
            return Vec::new();
        }
        keyed.select_nth_unstable_by(n - 1, order);
        keyed.truncate(n);
    }
    keyed.sort_unstable_by(order);
    keyed.into_iter().map(|(_, i)| row(&all[i])).collect()
}

/// A row of the dropped-events reports.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Dropped {
    pv_name: String,
    events_dropped: Str<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_events: Option<Str<u64>>,
}

async fn dropped_report(
    app: SharedAppliance,
    req: BplRequest,
    count: fn(&PvSummary) -> u64,
) -> ApiResult<Response> {
    let rows = top(
        summaries(&app).await?,
        |s| count(s) > 0,
        count,
        true,
        limit(&req, None)?,
        |s| Dropped {
            pv_name: s.name.to_string(),
            events_dropped: Str(count(s)),
            total_events: None,
        },
    );
    json_rows(&rows)
}

/// `getPVsByDroppedEventsTimestamp`: `[{pvName, eventsDropped}]`, PVs that dropped events
/// for their time stamps (before 1991, too far in the future or past, going back), most
/// first.
pub async fn dropped_timestamp(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    dropped_report(app, req, |s| s.counters.dropped_timestamp).await
}

/// `getPVsByDroppedEventsBuffer`: `[{pvName, eventsDropped}]`, buffer overflows, most
/// first.
pub async fn dropped_buffer(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    dropped_report(app, req, |s| s.counters.dropped_buffer_overflow).await
}

/// `getPVsByDroppedEventsTypeChange`: `[{pvName, eventsDropped}]`, values of another type
/// than the archived one, most first.
pub async fn dropped_type_change(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    dropped_report(app, req, |s| s.counters.dropped_type_change).await
}

/// `getPVsByDroppedEventsRateLimit` (no Java counterpart: Java's storage rates are a
/// report only): `[{pvName, eventsDropped}]` in the shape of Java's dropped-events
/// reports, the samples the storage-rate guard dropped because the PV had written its
/// bytes of the hour (`[storage] rate_limit_*`), most first; PVs without such drops are
/// left out, as Java's reports leave them out.
pub async fn dropped_rate_limit(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    dropped_report(app, req, |s| s.counters.dropped_rate_limit).await
}

/// `getSlowChangingPVsWithDroppedEvents`: `[{pvName, eventsDropped, totalEvents}]`, PVs
/// that dropped more events for their time stamps than they stored (Java: "dropped more
/// events than actual events", restricted to time stamps), most dropped first.
pub async fn slow_changing_dropped(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let rows = top(
        summaries(&app).await?,
        |s| s.counters.dropped_timestamp > s.counters.events_stored,
        |s| s.counters.dropped_timestamp,
        true,
        limit(&req, None)?,
        |s| Dropped {
            pv_name: s.name.to_string(),
            events_dropped: Str(s.counters.dropped_timestamp),
            total_events: Some(Str(s.counters.events_stored)),
        },
    );
    json_rows(&rows)
}

/// `getEventRateReport`: `[{pvName, eventRate}]` (events/s as Java's `Double.toString`),
/// fastest first.
pub async fn event_rate(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Row {
        pv_name: String,
        event_rate: String,
    }
    let now = app.now_secs();
    let rate = move |s: &PvSummary| s.counters.event_rate(now - s.counters.added_secs);
    let rows = top(
        summaries(&app).await?,
        |_| true,
        rate,
        true,
        limit(&req, None)?,
        |s| Row {
            pv_name: s.name.to_string(),
            event_rate: format!("{:?}", rate(s)),
        },
    );
    json_rows(&rows)
}

/// `getStorageRateReport`: `[{pvName, storageRate_KBperHour, storageRate_MBperDay,
/// storageRate_GBperYear}]`, from the bytes each PV put into its buffer, largest first.
/// A PV whose samples the storage-rate guard dropped also has `droppedEventsRateLimit`
/// (the count, as in getPVStatus; absent when 0, so Java's rows keep Java's fields): its
/// rate is what it produced, more than what was stored.
pub async fn storage_rate(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    #[derive(Serialize)]
    struct Row {
        #[serde(rename = "pvName")]
        pv_name: String,
        #[serde(rename = "storageRate_KBperHour")]
        kb_per_hour: String,
        #[serde(rename = "storageRate_MBperDay")]
        mb_per_day: String,
        #[serde(rename = "storageRate_GBperYear")]
        gb_per_year: String,
        #[serde(
            rename = "droppedEventsRateLimit",
            skip_serializing_if = "Option::is_none"
        )]
        dropped_rate_limit: Option<Str<u64>>,
    }
    let now = app.now_secs();
    let rate = move |s: &PvSummary| s.counters.storage_rate(now - s.counters.added_secs);
    let rows = top(
        summaries(&app).await?,
        |_| true,
        rate,
        true,
        limit(&req, None)?,
        |s| {
            let r = rate(s);
            Row {
                pv_name: s.name.to_string(),
                kb_per_hour: format!("{:?}", r * 3600.0 / 1024.0),
                mb_per_day: format!("{:?}", r * 86_400.0 / 1_048_576.0),
                gb_per_year: format!("{:?}", r * 86_400.0 * 365.0 / 1_073_741_824.0),
                dropped_rate_limit: Some(s.counters.dropped_rate_limit)
                    .filter(|&n| n > 0)
                    .map(Str),
            }
        },
    );
    json_rows(&rows)
}

/// `getPVsByStorageConsumed`: `[{pvName, instance, storageConsumed, storageConsumedInMB}]`,
/// the bytes of each PV's files in every store (Java `PVsByStorageConsumed` over
/// `StorageWithLifetime.getPVSByStorageConsumed`: `storageConsumed` in bytes,
/// `storageConsumedInMB` as Java's `###,###.##`), largest first, at most `limit` (Java's
/// default 100; `-1` all).
pub async fn storage_consumed(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Row {
        pv_name: String,
        instance: String,
        storage_consumed: String,
        storage_consumed_in_m_b: String,
    }
    let limit = limit(&req, Some(100))?;
    let names: Vec<String> = summaries(&app)
        .await?
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    let bytes = app
        .disk_bytes(names.clone())
        .await
        .map_err(super::storage::storage_error)?;
    let identity = app.identity();
    let mut consumed: Vec<(String, u64)> = names.into_iter().zip(bytes).collect();
    consumed.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    consumed.truncate(limit.unwrap_or(usize::MAX));
    let rows: Vec<Row> = consumed
        .into_iter()
        .map(|(name, b)| Row {
            pv_name: name,
            instance: identity.to_string(),
            storage_consumed: b.to_string(),
            storage_consumed_in_m_b: super::admin::two_digits(b as f64 / 1_048_576.0),
        })
        .collect();
    json_rows(&rows)
}

/// `getLostConnectionsReport`: `[{pvName, currentlyConnected ("Yes"/"No"), instance,
/// lostConnections}]`, most lost first.
pub async fn lost_connections(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Row<'a> {
        pv_name: String,
        currently_connected: &'static str,
        instance: &'a str,
        lost_connections: Str<u64>,
    }
    let id = app.identity().to_string();
    let rows = top(
        summaries(&app).await?,
        |s| s.state != PvState::Paused,
        |s| s.counters.disconnects,
        true,
        limit(&req, None)?,
        |s| Row {
            pv_name: s.name.to_string(),
            currently_connected: if s.connected { "Yes" } else { "No" },
            instance: &id,
            lost_connections: Str(s.counters.disconnects),
        },
    );
    json_rows(&rows)
}

/// `getSilentPVsReport`: `[{pvName, instance, lastKnownEvent}]`, archived (not paused)
/// PVs by the time of their last event, the longest silent first (`Never` first of all).
pub async fn silent_pvs(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Row<'a> {
        pv_name: String,
        instance: &'a str,
        last_known_event: Str<JavaTime>,
    }
    let id = app.identity().to_string();
    let rows = top(
        summaries(&app).await?,
        |s| s.state == PvState::Archiving,
        |s| s.counters.last_event_secs,
        false,
        limit(&req, None)?,
        |s| Row {
            pv_name: s.name.to_string(),
            instance: &id,
            last_known_event: Str(JavaTime(s.counters.last_event_secs)),
        },
    );
    json_rows(&rows)
}

/// `getCurrentlyDisconnectedPVs`: `[{pvName, instance, connectionLostAt,
/// noConnectionAsOfEpochSecs, hostName, commandThreadID, lastKnownEvent}]`: archived PVs
/// (not paused, connected once) whose connection is down, sorted by name.
pub async fn currently_disconnected(State(app): State<SharedAppliance>) -> ApiResult<Response> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Row<'a> {
        pv_name: String,
        instance: &'a str,
        connection_lost_at: Str<JavaTime>,
        no_connection_as_of_epoch_secs: Str<i64>,
        host_name: String,
        #[serde(rename = "commandThreadID")]
        command_thread_id: &'static str,
        last_known_event: Str<JavaTime>,
    }
    let id = app.identity().to_string();
    let rows = top(
        summaries(&app).await?,
        |s| s.state == PvState::Archiving && !s.connected,
        |_| 0u8,
        false,
        None,
        |s| Row {
            pv_name: s.name.to_string(),
            instance: &id,
            connection_lost_at: Str(JavaTime(s.lost_at_secs)),
            no_connection_as_of_epoch_secs: Str(s.lost_at_secs),
            host_name: s
                .server
                .map_or_else(|| "N/A".to_string(), |a| a.ip().to_string()),
            command_thread_id: "0",
            last_known_event: Str(JavaTime(s.counters.last_event_secs)),
        },
    );
    json_rows(&rows)
}

/// `getNeverConnectedPVs`: `[{pvName, requestTime, startOfWorkflow, currentState,
/// appliance}]`: PVs requested but never connected (searched for with back-off), sorted by
/// name. `currentState` is Java's workflow state of a PV waiting for its metadata. Beyond
/// Java: `regex` keeps the names it matches whole (the web UI's regex search, matched here
/// within the pattern limits rather than by the browser's backtracking `RegExp`).
pub async fn never_connected(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Row<'a> {
        pv_name: String,
        request_time: Str<JavaTime>,
        start_of_workflow: Str<JavaTime>,
        current_state: &'static str,
        appliance: &'a str,
    }
    let pattern = archiver_registry::NamePattern::from_java_params(None, req.get("regex"));
    // Read and matched on one blocking thread, the error mapped there too (a refused
    // pattern is counted even when the client has left), as `catalogue_call` does.
    let from = app.clone();
    let never = tokio::task::spawn_blocking(move || {
        let never = from
            .summaries()
            .into_iter()
            .filter(|s| s.state == PvState::NeverConnected);
        pattern
            .compile()
            .and_then(|m| m.filter(never, |s| &s.name, usize::MAX))
            .map_err(super::registry_error)
    })
    .await
    .map_err(ApiError::internal)??;
    let id = app.identity().to_string();
    let rows = top(
        never,
        |_| true,
        |_| 0u8,
        false,
        None,
        |s| Row {
            pv_name: s.name.to_string(),
            request_time: Str(JavaTime(s.counters.request_secs())),
            start_of_workflow: Str(JavaTime(s.counters.added_secs)),
            current_state: "METAINFO_REQUESTED",
            appliance: &id,
        },
    );
    json_rows(&rows)
}

/// `getMetaGets` (Java `MetaGetsAction`, the engine's `MetaGet.getPendingMetaDetails`):
/// `[{pvName, appliance, isScheduled, scheduleStart, usePVAccess}]`, the PVs whose archive
/// request waits for their metadata (Java's `METAINFO_REQUESTED`; here: never connected,
/// searched for with back-off), sorted by name. Java's `eventsSoFar`/`storageSoFar`/
/// `lowLevel` describe a metadata read under way; a PV here has not connected, so they
/// are left out, as Java leaves them out before its channel connects.
pub async fn meta_gets(State(app): State<SharedAppliance>) -> ApiResult<Response> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Row<'a> {
        pv_name: &'a str,
        appliance: &'a str,
        is_scheduled: &'static str,
        schedule_start: Str<JavaTime>,
        #[serde(rename = "usePVAccess")]
        use_pv_access: Str<bool>,
    }
    let id = app.identity().to_string();
    let all = summaries(&app).await?;
    let mut rows: Vec<Row<'_>> = all
        .iter()
        .filter(|s| s.state == PvState::NeverConnected)
        .map(|s| {
            let pva = s.name.strip_prefix("pva://");
            Row {
                pv_name: pva.unwrap_or(&s.name),
                appliance: &id,
                is_scheduled: "true",
                schedule_start: Str(JavaTime(s.counters.added_secs)),
                use_pv_access: Str(pva.is_some()),
            }
        })
        .collect();
    rows.sort_unstable_by(|a, b| a.pv_name.cmp(b.pv_name));
    json_rows(&rows)
}

/// `getArchivedWaveforms`: `[{pvName, elementCount, samplingmethod, samplingperiod,
/// dbrtype}]` of the PVs with more than one element, sorted by name, at most `limit`.
pub async fn archived_waveforms(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let at_most = limit(&req, None)?;
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Row {
        pv_name: String,
        element_count: Str<u32>,
        samplingmethod: &'static str,
        samplingperiod: String,
        dbrtype: String,
    }
    let rows = top(
        summaries(&app).await?,
        |s| s.element_count > 1 || s.archived_type.is_some_and(|t| t.is_waveform()),
        |_| 0u8,
        false,
        at_most,
        |s| Row {
            pv_name: s.name.to_string(),
            element_count: Str(s.element_count),
            samplingmethod: s.method.as_str(),
            samplingperiod: format!("{:?}", s.period),
            dbrtype: s
                .archived_type
                .map_or_else(String::new, |t| format!("DBR_{t}")),
        },
    );
    json_rows(&rows)
}

/// The catalogue's times, newest first by `key`, at most `limit`, as `{pvName, instance,
/// <field>}` rows.
async fn by_catalogue_time(
    app: SharedAppliance,
    limit: Option<usize>,
    keep: fn(&PvTimes) -> bool,
    key: fn(&PvTimes) -> i64,
    newest_first: bool,
    field: &'static str,
) -> ApiResult<Response> {
    let mut times = catalogue(&app, |r| r.all_pv_times()).await?;
    times.retain(keep);
    if newest_first {
        times.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.pv_name.cmp(&b.pv_name)));
    }
    times.truncate(limit.unwrap_or(usize::MAX));
    let id = app.identity();
    let rows: Vec<serde_json::Value> = times
        .iter()
        .map(|t| {
            let mut m = serde_json::Map::new();
            m.insert("pvName".into(), t.pv_name.clone().into());
            m.insert("instance".into(), id.into());
            m.insert(field.into(), JavaTime(key(t)).to_string().into());
            serde_json::Value::Object(m)
        })
        .collect();
    json_rows(&rows)
}

fn created(t: &PvTimes) -> i64 {
    t.creation_time.map_or(0, |t| t.secs)
}

fn modified(t: &PvTimes) -> i64 {
    t.modification_time.map_or(0, |t| t.secs)
}

/// `getRecentlyAddedPVs`: `[{pvName, instance, creationTime}]`, newest first, `limit`
/// (default 100).
pub async fn recently_added(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let l = limit(&req, Some(100))?;
    by_catalogue_time(app, l, |_| true, created, true, "creationTime").await
}

/// `getRecentlyModifiedPVs`: `[{pvName, instance, modificationTime}]`, newest first,
/// `limit` (default 100).
pub async fn recently_modified(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let l = limit(&req, Some(100))?;
    by_catalogue_time(app, l, |_| true, modified, true, "modificationTime").await
}

/// `getPausedPVsReport`: `[{pvName, instance, modificationTime}]` of the paused PVs,
/// sorted by name.
pub async fn paused_pvs(
    State(app): State<SharedAppliance>,
    req: BplRequest,
) -> ApiResult<Response> {
    let l = limit(&req, None)?;
    by_catalogue_time(app, l, |t| t.paused, modified, false, "modificationTime").await
}

/// `getTimeSpanReport` (Java `TimeSpanReport`): what is archived of each PV, as an object
/// keyed by PV name, sorted by name: `{"<pv>": {pvName, creationTS, paused, lastEvent}}`,
/// epoch seconds as strings (`creationTS` from the type info, Java's approximation of the
/// earliest sample; `lastEvent` the IOC time of the last event the engine received, `0`
/// if none, absent for a PV the engine does not hold). `regex` keeps the names it matches
/// whole; `limit` keeps the first names. PVs without a type info yet are not listed (as in
/// Java).
pub async fn time_span(State(app): State<SharedAppliance>, req: BplRequest) -> ApiResult<Response> {
    let at_most = limit(&req, None)?.unwrap_or(usize::MAX);
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Row<'a> {
        pv_name: &'a str,
        #[serde(rename = "creationTS")]
        creation_ts: Str<i64>,
        paused: Str<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_event: Option<Str<i64>>,
    }
    struct ByName<'a>(Vec<Row<'a>>);
    impl Serialize for ByName<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|r| (r.pv_name, r)))
        }
    }
    let pattern = archiver_registry::NamePattern::from_java_params(None, req.get("regex"));
    // Matched on the blocking thread, within the pattern's time limit.
    let times = catalogue(&app, move |r| {
        let matcher = pattern.compile()?;
        matcher.filter(r.all_pv_times()?, |t| &t.pv_name, at_most)
    })
    .await?;
    let summaries = summaries(&app).await?;
    let last: std::collections::HashMap<&str, i64> = summaries
        .iter()
        .map(|s| (&*s.name, s.counters.last_event_secs))
        .collect();
    let rows = times
        .iter()
        .map(|t| Row {
            pv_name: &t.pv_name,
            creation_ts: Str(created(t)),
            paused: Str(t.paused),
            last_event: last.get(t.pv_name.as_str()).map(|&l| Str(l)),
        })
        .collect();
    let body = serde_json::to_vec(&ByName(rows)).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
