//! Operations endpoints: `/metrics` (Prometheus text exposition format, version 0.0.4),
//! `/health` (liveness) and `/ready` (readiness); and [`count_retrieval`], the layer that
//! counts retrieval requests and response bytes by format.
//!
//! The metrics are read at scrape time from counters the engine, ETL, CA client and this
//! layer keep anyway ([`archiver_appliance::Figures`], [`RetrievalCounters`]): a scrape
//! costs one pass over the PVs' counters, the hot paths count nothing more. Every name,
//! type and label is listed in `docs/metrics.md` (a test checks that the list and the
//! output agree). Encoding is `prometheus-client`'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use archiver_appliance::Figures;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::BodyExt;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde_json::json;

use crate::error::ApiError;

/// The `Content-Type` of `/metrics`: Prometheus text format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The formats retrieval requests are counted by (label `format`): the extensions of
/// `getData.<ext>` and `getDataForPVs.<ext>`, `getDataAtTime`, the retrieval BPL (`bpl`),
/// and `other` for the rest (a fixed set, so a client cannot grow the label values).
pub const RETRIEVAL_FORMATS: [&str; 10] = [
    "json",
    "raw",
    "csv",
    "txt",
    "qw",
    "jplot",
    "mat",
    "dataAtTime",
    "bpl",
    "other",
];

/// Retrieval requests and response bytes by format ([`RETRIEVAL_FORMATS`]), counted by
/// [`count_retrieval`]: two relaxed atomic adds per request and one per body piece.
#[derive(Debug, Default)]
pub struct RetrievalCounters {
    requests: [AtomicU64; RETRIEVAL_FORMATS.len()],
    bytes: [AtomicU64; RETRIEVAL_FORMATS.len()],
}

impl RetrievalCounters {
    /// `(format, requests, response bytes)` of every format.
    pub fn snapshot(&self) -> Vec<(&'static str, u64, u64)> {
        RETRIEVAL_FORMATS
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    *f,
                    self.requests[i].load(Relaxed),
                    self.bytes[i].load(Relaxed),
                )
            })
            .collect()
    }
}

/// The index in [`RETRIEVAL_FORMATS`] of a request for `path`; `None`: not retrieval.
fn retrieval_format(path: &str) -> Option<usize> {
    let index = |name: &str| RETRIEVAL_FORMATS.iter().position(|f| *f == name);
    if let Some(call) = path.strip_prefix("/retrieval/data/") {
        if call == "getDataAtTime" {
            return index("dataAtTime");
        }
        let ext = call
            .strip_prefix("getData.")
            .or_else(|| call.strip_prefix("getDataForPVs."));
        return ext.and_then(index).or_else(|| index("other"));
    }
    if path.starts_with("/retrieval/bpl/") {
        return index("bpl");
    }
    path.starts_with("/retrieval/")
        .then(|| index("other"))
        .flatten()
}

/// Counts a retrieval request by format and the bytes of its response body as they are
/// sent (after compression): a middleware for [`axum::middleware::from_fn_with_state`].
async fn count(
    State(counters): State<Arc<RetrievalCounters>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(i) = retrieval_format(req.uri().path()) else {
        return next.run(req).await;
    };
    counters.requests[i].fetch_add(1, Relaxed);
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    let body = body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            counters.bytes[i].fetch_add(data.len() as u64, Relaxed);
        }
        frame
    });
    Response::from_parts(parts, axum::body::Body::new(body))
}

/// `router` with its retrieval requests and response bytes counted into `counters`.
pub fn count_retrieval(router: Router, counters: Arc<RetrievalCounters>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(counters, count))
}

/// Whether the appliance is ready for requests that need its PVs: set by the server once
/// the registry is open and the engine started and the restore of the catalogue's PVs has
/// begun ([`Readiness::set_restoring`]), and again when the restore is over
/// ([`Readiness::set_restored`]). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<(AtomicBool, AtomicBool)>);

impl Readiness {
    /// Registry open, engine started, restore begun: ready.
    pub fn set_restoring(&self) {
        self.0.0.store(true, Relaxed);
    }

    /// Every PV of the catalogue restored (also ready).
    pub fn set_restored(&self) {
        self.0.0.store(true, Relaxed);
        self.0.1.store(true, Relaxed);
    }

    /// Ready now.
    pub fn is_ready(&self) -> bool {
        self.0.0.load(Relaxed)
    }
}

/// Reads the figures: a closure over the running appliance and its ETL (blocking; run
/// off the async workers).
pub type FiguresSource = Arc<dyn Fn() -> Figures + Send + Sync>;

/// The state of the operations endpoints.
#[derive(Clone)]
pub struct OpsState {
    /// The appliance's figures.
    pub figures: FiguresSource,
    /// Retrieval requests and bytes (the counters [`count_retrieval`] fills).
    pub retrieval: Arc<RetrievalCounters>,
    /// Readiness.
    pub ready: Readiness,
}

impl std::fmt::Debug for OpsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsState")
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

/// `/metrics`, `/health` and `/ready` over `state`.
pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state)
}

/// `/health`: 200 `{"status":"ok"}` while the process serves HTTP (liveness).
async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// `/ready`: 200 `{"status":"ready","restoring":<bool>}` once the registry is open, the
/// engine started and the restore of the catalogue's PVs has begun; before, 503
/// `{"status":"starting","notReady":[...]}` naming what is not ready yet.
async fn ready(State(state): State<OpsState>) -> Response {
    if state.ready.is_ready() {
        let restoring = !state.ready.0.1.load(Relaxed);
        return axum::Json(json!({"status": "ready", "restoring": restoring})).into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({
            "status": "starting",
            "notReady": ["the restore of the catalogue's PVs has not begun (registry, engine)"],
        })),
    )
        .into_response()
}

/// `/metrics`: every metric of `docs/metrics.md`, Prometheus text format 0.0.4.
async fn metrics(State(state): State<OpsState>) -> Result<Response, ApiError> {
    let source = state.figures.clone();
    let figures = tokio::task::spawn_blocking(move || source())
        .await
        .map_err(ApiError::internal)?;
    let collector = Collector {
        figures,
        retrieval: state.retrieval.snapshot(),
    };
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(collector));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response())
}

/// One scrape's values, encoded by `prometheus-client`.
#[derive(Debug)]
struct Collector {
    figures: Figures,
    retrieval: Vec<(&'static str, u64, u64)>,
}

/// Writes a family of `kind` with one sample per `(labels, value)`.
fn family<L: prometheus_client::encoding::EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &[(L, f64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        let fam = m.encode_family(labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(*v).encode(fam)?,
            _ => ConstGauge::new(*v).encode(fam)?,
        }
    }
    Ok(())
}

/// Writes one unlabelled metric.
fn single(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, kind)?;
    match kind {
        MetricType::Counter => ConstCounter::new(v).encode(m),
        _ => ConstGauge::new(v).encode(m),
    }
}

type Labels1 = [(&'static str, String); 1];

fn l1(key: &'static str, value: impl Into<String>) -> Labels1 {
    [(key, value.into())]
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let f = &self.figures;
        let p = &f.pvs;
        family(
            &mut enc,
            "archiver_pvs",
            "PVs the engine holds, by state.",
            Gauge,
            &[
                (l1("state", "connected"), p.connected as f64),
                (l1("state", "disconnected"), p.disconnected as f64),
                (l1("state", "paused"), p.paused as f64),
                (l1("state", "never_connected"), p.never_connected as f64),
            ],
        )?;
        let e = &f.events;
        single(
            &mut enc,
            "archiver_events_received",
            "Monitor updates received from the IOCs, summed over the PVs held now.",
            Counter,
            e.events_received as f64,
        )?;
        single(
            &mut enc,
            "archiver_events_stored",
            "Samples put into the buffers to be written.",
            Counter,
            e.events_stored as f64,
        )?;
        single(
            &mut enc,
            "archiver_events_written",
            "Samples written to the short-term store.",
            Counter,
            e.events_written as f64,
        )?;
        family(
            &mut enc,
            "archiver_events_dropped",
            "Events not archived, by reason.",
            Counter,
            &[
                (l1("reason", "timestamp"), e.dropped_timestamp as f64),
                (l1("reason", "type_change"), e.dropped_type_change as f64),
                (
                    l1("reason", "buffer_overflow"),
                    e.dropped_buffer_overflow as f64,
                ),
                (l1("reason", "no_type"), e.dropped_no_type as f64),
                (l1("reason", "client"), e.dropped_by_client as f64),
                (l1("reason", "rate_guard"), e.dropped_rate_limit as f64),
                (l1("reason", "not_newer"), e.refused_by_writer as f64),
            ],
        )?;
        single(
            &mut enc,
            "archiver_events_repeated_timestamp",
            "Events not stored because they repeat the last timestamp (not an error).",
            Counter,
            e.repeated_timestamp as f64,
        )?;
        single(
            &mut enc,
            "archiver_stored_bytes",
            "Bytes of PlainPB lines put into the buffers (what the stores will hold).",
            Counter,
            e.bytes_stored as f64,
        )?;
        single(
            &mut enc,
            "archiver_disconnects",
            "PV disconnects seen.",
            Counter,
            e.disconnects as f64,
        )?;
        single(
            &mut enc,
            "archiver_write_errors",
            "Failed writes to the short-term store (the samples are kept and retried).",
            Counter,
            e.write_errors as f64,
        )?;
        let w = &f.write;
        let m = enc.encode_descriptor(
            "archiver_write_seconds",
            "Time the writer took to append one PV's buffer to the short-term store.",
            None,
            MetricType::Histogram,
        )?;
        encode_histogram(m, w.sum_secs, w.count, &w.buckets)?;
        if let Some(j) = &f.journal {
            for (name, help, kind, v) in [
                (
                    "archiver_journal_written_bytes",
                    "Bytes appended to the write-ahead journal.",
                    Counter,
                    j.bytes_written,
                ),
                (
                    "archiver_journal_syncs",
                    "Syncs (fdatasync) of the journal's current segment.",
                    Counter,
                    j.syncs,
                ),
                (
                    "archiver_journal_write_errors",
                    "Journal frames that could not be written (their samples were in memory \
                     only, unprotected against a crash).",
                    Counter,
                    j.write_errors,
                ),
                (
                    "archiver_journal_samples_not_journaled",
                    "Samples not journaled because the journal writer fell 64 MiB behind.",
                    Counter,
                    j.samples_not_journaled,
                ),
                (
                    "archiver_journal_segments_removed",
                    "Journal segments removed once every sample in them was written.",
                    Counter,
                    j.segments_removed,
                ),
                (
                    "archiver_journal_segments_forced_out",
                    "Journal segments removed over journal_max_bytes while still needed.",
                    Counter,
                    j.segments_forced_out,
                ),
                (
                    "archiver_journal_bytes",
                    "Bytes of journal segments on disk.",
                    Gauge,
                    j.bytes_on_disk,
                ),
            ] {
                single(&mut enc, name, help, kind, v as f64)?;
            }
        }
        single(
            &mut enc,
            "archiver_buffered_samples",
            "Samples in memory, not written yet (buffered and being written).",
            Gauge,
            f.buffered_samples as f64,
        )?;
        single(
            &mut enc,
            "archiver_buffer_capacity_samples",
            "The most samples the buffers may hold, summed over the PVs.",
            Gauge,
            f.buffer_capacity as f64,
        )?;
        let free: Vec<(Labels1, f64)> = f
            .stores
            .iter()
            .filter_map(|s| Some((l1("store", s.name.clone()), s.available_bytes? as f64)))
            .collect();
        family(
            &mut enc,
            "archiver_store_available_bytes",
            "Bytes available on the file system of each data store's folder.",
            Gauge,
            &free,
        )?;
        let failed: Vec<([(&'static str, String); 2], f64)> = f
            .stores
            .iter()
            .flat_map(|s| {
                s.write_failures.iter().map(|(reason, n)| {
                    (
                        [
                            ("store", s.name.clone()),
                            ("reason", reason.label().to_string()),
                        ],
                        n as f64,
                    )
                })
            })
            .collect();
        family(
            &mut enc,
            "archiver_store_write_errors",
            "Failed writes into each data store (the engine's and ETL's), by reason.",
            Counter,
            &failed,
        )?;
        let failing: Vec<(Labels1, f64)> = f
            .stores
            .iter()
            .map(|s| (l1("store", s.name.clone()), s.failing_pvs as f64))
            .collect();
        family(
            &mut enc,
            "archiver_store_failing_pvs",
            "PVs whose last write into each data store failed.",
            Gauge,
            &failing,
        )?;
        let stage =
            |s: &archiver_appliance::StageFigures| [("from", s.from.clone()), ("to", s.to.clone())];
        let etl = |v: &dyn Fn(&archiver_appliance::StageFigures) -> f64| {
            f.etl.iter().map(|s| (stage(s), v(s))).collect::<Vec<_>>()
        };
        family(
            &mut enc,
            "archiver_etl_runs",
            "Runs of each ETL stage (a move from one store into the next).",
            Counter,
            &etl(&|s| s.runs as f64),
        )?;
        family(
            &mut enc,
            "archiver_etl_moved_bytes",
            "Bytes of the files each ETL stage moved.",
            Counter,
            &etl(&|s| s.bytes_moved as f64),
        )?;
        family(
            &mut enc,
            "archiver_etl_moved_files",
            "Files each ETL stage moved.",
            Counter,
            &etl(&|s| s.files_moved as f64),
        )?;
        family(
            &mut enc,
            "archiver_etl_seconds",
            "Seconds each ETL stage spent in runs.",
            Counter,
            &etl(&|s| s.busy_secs),
        )?;
        family(
            &mut enc,
            "archiver_etl_errors",
            "PVs whose ETL move failed (retried at the next run).",
            Counter,
            &etl(&|s| s.errors as f64),
        )?;
        family(
            &mut enc,
            "archiver_etl_dropped_out_of_space_files",
            "Files dropped because the destination store was out of space.",
            Counter,
            &etl(&|s| s.files_dropped_out_of_space as f64),
        )?;
        let by_format = |bytes: bool| {
            self.retrieval
                .iter()
                .map(|(fmt, n, b)| (l1("format", *fmt), if bytes { *b } else { *n } as f64))
                .collect::<Vec<_>>()
        };
        family(
            &mut enc,
            "archiver_retrieval_requests",
            "Retrieval requests, by format.",
            Counter,
            &by_format(false),
        )?;
        family(
            &mut enc,
            "archiver_retrieval_response_bytes",
            "Bytes of retrieval response bodies as sent (after compression), by format.",
            Counter,
            &by_format(true),
        )?;
        let ca = &f.ca;
        single(
            &mut enc,
            "archiver_ca_search_datagrams",
            "Channel Access search datagrams sent.",
            Counter,
            ca.search_datagrams as f64,
        )?;
        single(
            &mut enc,
            "archiver_ca_searched_names",
            "PV names searched for over Channel Access (once per search pass).",
            Counter,
            ca.search_names as f64,
        )?;
        single(
            &mut enc,
            "archiver_ca_search_replies",
            "Channel Access search replies that found a PV's server.",
            Counter,
            ca.search_replies as f64,
        )?;
        single(
            &mut enc,
            "archiver_ca_circuits_opened",
            "Channel Access virtual circuits (TCP connections to IOCs) started.",
            Counter,
            ca.circuits_opened as f64,
        )?;
        single(
            &mut enc,
            "archiver_ca_circuits",
            "Channel Access virtual circuits open now.",
            Gauge,
            ca.circuits_open as f64,
        )?;
        single(
            &mut enc,
            "archiver_ca_repeater_takeovers",
            "Times the CA client bound the host's beacon repeater port after the process \
             holding it had gone (it runs the repeater since).",
            Counter,
            ca.repeater_takeovers as f64,
        )?;
        Ok(())
    }
}

/// Writes a histogram from cumulative `(upper bound, count)` buckets ending with `+Inf`
/// (the engine's fixed atomic buckets; `prometheus-client`'s own histogram takes a lock
/// per observation). Its encoder takes the count of each bucket alone.
fn encode_histogram(
    mut m: prometheus_client::encoding::MetricEncoder<'_>,
    sum: f64,
    count: u64,
    cumulative: &[(f64, u64)],
) -> Result<(), std::fmt::Error> {
    let mut before = 0;
    let each: Vec<(f64, u64)> = cumulative
        .iter()
        .map(|&(bound, n)| {
            let alone = n.saturating_sub(before);
            before = n;
            (bound, alone)
        })
        .collect();
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &each, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn get(router: &Router, path: &str) -> (StatusCode, serde_json::Value) {
        let req = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// `/ready` is 503 naming what is missing until the restore begins, then 200; `/health`
    /// is 200 throughout.
    #[tokio::test]
    async fn ready_follows_the_restore_and_health_is_always_ok() {
        let ready = Readiness::default();
        let router = router(OpsState {
            figures: Arc::new(|| panic!("not scraped in this test")),
            retrieval: Arc::default(),
            ready: ready.clone(),
        });
        let (status, body) = get(&router, "/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "starting");
        assert!(
            body["notReady"][0].as_str().unwrap().contains("restore"),
            "{body}"
        );
        assert_eq!(get(&router, "/health").await.0, StatusCode::OK);

        ready.set_restoring();
        let (status, body) = get(&router, "/ready").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"status": "ready", "restoring": true}));
        ready.set_restored();
        assert_eq!(get(&router, "/ready").await.1["restoring"], false);
    }

    #[test]
    fn retrieval_paths_map_to_their_format() {
        let f = |p| retrieval_format(p).map(|i| RETRIEVAL_FORMATS[i]);
        assert_eq!(f("/retrieval/data/getData.json"), Some("json"));
        assert_eq!(f("/retrieval/data/getDataForPVs.raw"), Some("raw"));
        assert_eq!(f("/retrieval/data/getDataAtTime"), Some("dataAtTime"));
        assert_eq!(f("/retrieval/data/getData.xyz"), Some("other"));
        assert_eq!(f("/retrieval/bpl/getMatchingPVs"), Some("bpl"));
        assert_eq!(f("/retrieval/ping"), Some("other"));
        assert_eq!(f("/mgmt/bpl/getAllPVs"), None);
        assert_eq!(f("/metrics"), None);
    }
}
