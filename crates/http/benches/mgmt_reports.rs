//! Times every management report, `getPVStatus` of every PV (a glob; a POST list of every
//! name and one unknown name in ten), a `/metrics` scrape and a bulk `archivePV`
//! through the real router over a real appliance holding many PVs (default 100 000; `N`
//! in the environment). The PVs are restored from a catalogue of as many type infos,
//! with counters set as a live engine's would be; the engine's CA client searches a
//! closed port, so every PV is "Being archived" and disconnected, as after a restart
//! whose IOCs are not back (its counters are zero: the reports still copy, filter and
//! sort every PV's status). Prints one line per call: milliseconds and response bytes.
//!
//! Two passes: one call each right after the restore, during the engine's start-up (a
//! channel and a search per PV); then, `SETTLE` seconds (default 30) after the start,
//! the steady state, best of three, preceded by the per-PV read the reports share timed
//! against the full status copy (the baseline in the same run).
//!
//! `cargo bench -p archiver-http --bench mgmt_reports` (release profile).

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use archiver_pb::{Granularity, PayloadType, Timestamp};
use archiver_registry::{PvTypeInfo, Registry, SamplingMethod, SqliteRegistry};
use archiver_storage::{DataStores, Tier};
use axum::body::Body;
use axum::http::{Request, header};

const REPORTS: [&str; 20] = [
    "getNeverConnectedPVs",
    "getCurrentlyDisconnectedPVs",
    "getEventRateReport?limit=1000",
    "getStorageRateReport?limit=1000",
    "getRecentlyAddedPVs?limit=1000",
    "getRecentlyModifiedPVs?limit=1000",
    "getLostConnectionsReport?limit=1000",
    "getSilentPVsReport?limit=1000",
    "getPVsByDroppedEventsTimestamp?limit=1000",
    "getPVsByDroppedEventsBuffer?limit=1000",
    "getPVsByDroppedEventsTypeChange?limit=1000",
    "getSlowChangingPVsWithDroppedEvents?limit=1000",
    "getPausedPVsReport",
    "getArchivedWaveforms",
    "getTimeSpanReport",
    "getPVsByStorageConsumed?limit=1000",
    "getApplianceMetrics",
    "getAllPVs?limit=-1",
    "getTypeInfoKeys",
    "getPVStatus?pv=BENCH:*",
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    let sts = Tier::new("STS", dir.path().join("sts"), Granularity::Hour);
    let stores = DataStores::from_tiers([sts.clone()]).unwrap();
    let t0 = Instant::now();
    let now = Timestamp::new(1_760_000_000, 0);
    let infos: Vec<PvTypeInfo> = (0..n)
        .map(|i| {
            let ty = if i % 100 == 0 {
                PayloadType::WaveformDouble
            } else {
                PayloadType::ScalarDouble
            };
            let mut info = PvTypeInfo::new_for_archiving(
                &format!("BENCH:{i:07}"),
                ty,
                if i % 100 == 0 { 1024 } else { 1 },
                SamplingMethod::Monitor,
                1.0,
                vec![sts.url()],
                Timestamp::new(now.secs - i as i64, 0),
            )
            .unwrap();
            info.paused = i % 50 == 0;
            info
        })
        .collect();
    registry.put_type_infos(&infos).unwrap();
    let app = support::appliance(stores, registry.clone()).await;
    app.restore().await.unwrap();
    println!("setup: {n} PVs in {:.1} s", t0.elapsed().as_secs_f64());
    // With the operations endpoints, to time a /metrics scrape beside the reports.
    let source = app.clone();
    let ops = archiver_http::ops::OpsState {
        figures: Arc::new(move || source.figures(None)),
        retrieval: Arc::default(),
        ready: archiver_http::ops::Readiness::default(),
    };
    let router = archiver_http::router(app.clone()).merge(archiver_http::ops::router(ops));
    let call = |uri: String, body: Option<String>| {
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            let req = match body {
                None => Request::get(&uri).body(Body::empty()).unwrap(),
                Some(b) => Request::post(&uri)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(b))
                    .unwrap(),
            };
            let t = Instant::now();
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (t.elapsed().as_secs_f64() * 1e3, status, bytes.len())
        }
    };
    // POST getPVStatus of every PV by name (ChannelFinder's form: a JSON list), plus one
    // name in ten that is archived under no name (each one looked up as an alias or a
    // PV.FIELD).
    let names: Vec<String> = (0..n)
        .map(|i| format!("BENCH:{i:07}"))
        .chain((0..n / 10).map(|i| format!("UNKNOWN:{i:07}")))
        .collect();
    let status_body = serde_json::to_string(&names).unwrap();
    let status_label = format!("POST getPVStatus ({} names, JSON body)", names.len());
    // Every report, then the POST status; `tries` calls each, the best printed.
    let pass = |tries: usize| {
        let (call, status_body, status_label) = (&call, &status_body, &status_label);
        async move {
            let calls = REPORTS
                .iter()
                .map(|r| (r.to_string(), format!("/mgmt/bpl/{r}"), None))
                .chain(std::iter::once((
                    status_label.clone(),
                    "/mgmt/bpl/getPVStatus".to_string(),
                    Some(status_body.clone()),
                )))
                .chain(std::iter::once((
                    "GET /metrics (Prometheus scrape)".to_string(),
                    "/metrics".to_string(),
                    None,
                )));
            for (label, uri, body) in calls {
                let mut best = f64::MAX;
                let mut size = 0;
                for _ in 0..tries {
                    let (ms, status, len) = call(uri.clone(), body.clone()).await;
                    assert!(status.is_success(), "{label}: {status}");
                    best = best.min(ms);
                    size = len;
                }
                println!("{label:<48} {best:>9.1} ms {size:>12} bytes");
            }
        }
    };
    // During start-up: the engine starts a channel for every restored PV after `restore`
    // returns, and the CA client's first search rounds for every name follow (one call
    // each, in that storm).
    println!("-- during start-up (one call each, right after the restore)");
    pass(1).await;
    // Then the steady state, `SETTLE` seconds (default 30) after the restore.
    let settle: u64 = std::env::var("SETTLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let since = t0.elapsed();
    let left = std::time::Duration::from_secs(settle).saturating_sub(since);
    tokio::time::sleep(left).await;
    println!("-- steady state ({settle} s after the start; best of three)");

    // The baseline in the same run: the reports' per-PV read, as round one had it (a full
    // status copy of every PV, with its names, archive fields and metadata), and as now.
    for (what, f) in [
        (
            "baseline: all_status() (full copy of every PV)",
            &(|| archiver_appliance::ApplianceApi::all_status(&app).len()) as &dyn Fn() -> usize,
        ),
        ("summaries() (the reports' read)", &|| {
            app.engine().summaries().len()
        }),
    ] {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            assert_eq!(f(), n);
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
        println!("{what:<48} {best:>9.1} ms");
    }
    pass(3).await;
    // Bulk archivePV of 10 000 new PVs as one JSON body (ChannelFinder's form).
    let body: Vec<serde_json::Value> = (0..10_000)
        .map(|i| serde_json::json!({"pv": format!("BULK:{i:05}"), "samplingPeriod": "1.0"}))
        .collect();
    let body = serde_json::to_string(&body).unwrap();
    let (ms, status, len) = call("/mgmt/bpl/archivePV".into(), Some(body)).await;
    assert!(status.is_success());
    println!(
        "{:<48} {ms:>9.1} ms {len:>12} bytes",
        "archivePV (10 000 PVs, JSON body)"
    );
}
