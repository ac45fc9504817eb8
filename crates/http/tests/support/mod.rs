//! What the real-router tests share: an appliance over a real engine whose CA client
//! searches nowhere, over real stores and a catalogue, and a GET through the router.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use archiver_appliance::{Appliance, ApplianceParts, Policy};
use archiver_ca::{Client, ClientConfig};
use archiver_engine::{Engine, EngineConfig, PvConfig, SamplingMethod};
use archiver_pb::{Granularity, PayloadType, Sample, Timestamp, Value};
use archiver_registry::Registry;
use archiver_storage::{DataStores, Tier};
use archiver_time::SystemClock;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// The appliance over `stores` (the engine writes to the first) and `registry`, with the
/// Java default policy; its CA client searches only a closed port, so no PV connects.
pub async fn appliance(stores: DataStores, registry: Arc<dyn Registry>) -> Appliance {
    let client = Client::new(
        ClientConfig::builder()
            .addr_list("127.0.0.1:9")
            .auto_addr_list(false)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let policy = Policy::for_stores(&stores);
    let mut cfg = EngineConfig::default();
    policy.apply_to(&mut cfg);
    let clock = Arc::new(SystemClock);
    let engine = Engine::start(client, stores.tiers()[0].clone(), cfg, clock.clone());
    Appliance::new(ApplianceParts {
        engine,
        registry,
        clock,
        identity: Arc::from("appliance0"),
        policy,
        stores,
    })
}

/// `n` scalar-double samples from `t0`, `per_sec` a second, the `k`-th with value `k`.
pub fn steady(t0: i64, n: i64, per_sec: i64) -> Vec<Sample> {
    let step = 1_000_000_000 / per_sec;
    (0..n)
        .map(|k| {
            Sample::new(
                Timestamp::new(t0 + k / per_sec, ((k % per_sec) * step) as u32),
                Value::ScalarDouble(k as f64),
            )
        })
        .collect()
}

/// The appliance over one STS in `dir/sts` holding `samples` of `pv`, which the engine
/// holds paused (not in `registry`: its type comes from the engine, its data from its
/// file).
pub async fn holding_file(
    dir: &Path,
    pv: &str,
    samples: &[Sample],
    registry: Arc<dyn Registry>,
) -> Appliance {
    let sts = Tier::new("STS", dir.join("sts"), Granularity::Hour);
    sts.append(pv, PayloadType::ScalarDouble, samples).unwrap();
    let app = appliance(DataStores::from_tiers([sts]).unwrap(), registry).await;
    hold_paused(&app, pv);
    app
}

/// Puts `pv` (a scalar double archived at every update) into the engine, paused: the
/// engine holds it but never connects it, so its data come from its files.
pub fn hold_paused(appliance: &Appliance, pv: &str) {
    appliance
        .engine()
        .restore(
            pv,
            PvConfig {
                method: SamplingMethod::Monitor,
                period: 0.0,
                archive_fields: Vec::new(),
            },
            Some(PayloadType::ScalarDouble),
            true,
            None,
        )
        .unwrap();
}

/// A response read whole: status, headers, the number of body frames, the body.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub frames: usize,
    pub body: Vec<u8>,
}

/// Sends `req` through the whole router of `appliance` ([`archiver_http::router`]).
pub async fn send(appliance: &Appliance, req: Request<Body>) -> Reply {
    let resp = archiver_http::router(appliance.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let (mut frames, mut bytes) = (0, Vec::new());
    while let Some(f) = body.frame().await {
        if let Ok(d) = f.unwrap().into_data() {
            frames += 1;
            bytes.extend_from_slice(&d);
        }
    }
    Reply {
        status,
        headers,
        frames,
        body: bytes,
    }
}

/// GET `uri` through the router.
pub async fn get(appliance: &Appliance, uri: &str) -> Reply {
    send(appliance, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// ISO-8601 of a Unix time in seconds (`2025-01-01T01:00:00Z`), by the project's one
/// formatter.
pub fn iso(secs: i64) -> String {
    archiver_time::Timestamp::new(secs, 0)
        .iso(archiver_time::Precision::Seconds)
        .to_string()
}

/// Asserts that a `getData.json` body holds one PV whose `n` samples have the values
/// `0, 1, ..., n - 1` in order.
#[allow(dead_code)] // not every test file that includes this module checks a ramp
pub fn assert_json_ramp(json: &[u8], n: i64) {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let data = v[0]["data"].as_array().unwrap();
    assert_eq!(data.len() as i64, n);
    assert!(
        data.iter()
            .enumerate()
            .all(|(k, s)| s["val"].as_f64() == Some(k as f64))
    );
}
