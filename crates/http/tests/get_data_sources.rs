//! `getData.{json,raw}` through the router takes a PV's type and headers from the
//! catalogue and its data from the files: a PV that the engine does not hold (files placed
//! in the STS folder with a catalogue entry), or holds paused, returns its data; an alias
//! returns the data of its PV under the requested name; an unknown PV is a 404 naming it.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use archiver_appliance::Appliance;
use archiver_pb::time::start_of_year;
use archiver_pb::{Granularity, PayloadType, PbReader, Sample, Timestamp, Value};
use archiver_registry::{PvTypeInfo, Registry, SqliteRegistry};
use archiver_storage::{DataStores, Tier};
use axum::http::StatusCode;

const T0: i64 = start_of_year(2025) + 3600;

fn samples(n: i64) -> Vec<Sample> {
    (0..n)
        .map(|k| {
            Sample::new(
                Timestamp::new(T0 + k, 0),
                Value::ScalarDouble(k as f64 / 4.0),
            )
        })
        .collect()
}

fn type_info(pv: &str, sts: &Tier, paused: bool) -> PvTypeInfo {
    let mut info = PvTypeInfo::new_for_archiving(
        pv,
        PayloadType::ScalarDouble,
        1,
        archiver_registry::SamplingMethod::Monitor,
        1.0,
        vec![sts.url()],
        Timestamp::new(T0, 0),
    )
    .unwrap();
    info.set_units("mA");
    info.set_precision(2.0);
    info.paused = paused;
    info
}

/// An appliance whose CA client searches nowhere, over `dir/sts`, with a catalogue holding
/// `FILES:ONLY` (not in the engine), `PAUSED:PV` (in the engine, paused) and the alias
/// `OLD:NAME` of `FILES:ONLY`; both PVs have 100 samples in the STS.
async fn app(dir: &std::path::Path) -> Appliance {
    let sts = Tier::new("STS", dir.join("sts"), Granularity::Hour);
    let registry = SqliteRegistry::open_in_memory().unwrap();
    for (pv, paused) in [("FILES:ONLY", false), ("PAUSED:PV", true)] {
        sts.append(pv, PayloadType::ScalarDouble, &samples(100))
            .unwrap();
        registry
            .put_type_info(&type_info(pv, &sts, paused))
            .unwrap();
    }
    registry.add_alias("OLD:NAME", "FILES:ONLY").unwrap();
    let stores = DataStores::from_tiers([sts]).unwrap();
    let app = support::appliance(stores, Arc::new(registry)).await;
    support::hold_paused(&app, "PAUSED:PV");
    assert!(app.engine().status("FILES:ONLY").is_none());
    app
}

async fn get(app: &Appliance, uri: &str) -> (StatusCode, Vec<u8>) {
    let r = support::get(app, uri).await;
    (r.status, r.body)
}

const RANGE: &str = "from=2025-01-01T00:00:00Z&to=2025-01-01T02:00:00Z";

async fn json(state: &Appliance, pv: &str) -> serde_json::Value {
    let (status, body) = get(
        state,
        &format!("/retrieval/data/getData.json?pv={pv}&{RANGE}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

async fn raw(state: &Appliance, pv: &str) -> (String, Vec<Value>) {
    let (status, body) = get(
        state,
        &format!("/retrieval/data/getData.raw?pv={pv}&{RANGE}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let mut r = PbReader::new(std::io::Cursor::new(&body[..])).unwrap();
    assert_eq!(r.header().payload_type, PayloadType::ScalarDouble);
    assert_eq!(r.header().header("EGU"), Some("mA"));
    assert_eq!(r.header().header("PREC"), Some("2"));
    let name = r.header().pv_name.clone();
    let mut values = Vec::new();
    while let Some(s) = r.next_sample().unwrap() {
        values.push(s.value.clone());
    }
    (name, values)
}

fn expected_values() -> Vec<Value> {
    samples(100).into_iter().map(|s| s.value).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pv_the_engine_does_not_hold_is_served_from_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let state = app(dir.path()).await;
    let v = json(&state, "FILES:ONLY").await;
    assert_eq!(v[0]["meta"]["name"], "FILES:ONLY");
    assert_eq!(v[0]["meta"]["EGU"], "mA");
    assert_eq!(v[0]["meta"]["PREC"], "2");
    let data = v[0]["data"].as_array().unwrap();
    assert_eq!(data.len(), 100);
    assert_eq!(data[99]["val"], 99.0 / 4.0);
    assert_eq!(data[0]["secs"], T0);
    let (name, values) = raw(&state, "FILES:ONLY").await;
    assert_eq!(name, "FILES:ONLY");
    assert_eq!(values, expected_values());
    state.engine().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_pv_is_served_from_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let state = app(dir.path()).await;
    let v = json(&state, "PAUSED:PV").await;
    assert_eq!(v[0]["meta"]["EGU"], "mA");
    assert_eq!(v[0]["data"].as_array().unwrap().len(), 100);
    let (_, values) = raw(&state, "ca://PAUSED:PV.VAL").await;
    assert_eq!(values, expected_values());
    state.engine().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_is_served_under_the_requested_name() {
    let dir = tempfile::tempdir().unwrap();
    let state = app(dir.path()).await;
    let v = json(&state, "OLD:NAME").await;
    assert_eq!(v[0]["meta"]["name"], "OLD:NAME");
    assert_eq!(v[0]["data"].as_array().unwrap().len(), 100);
    let (name, values) = raw(&state, "OLD:NAME").await;
    assert_eq!(name, "OLD:NAME");
    assert_eq!(values, expected_values());
    state.engine().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_before_the_first_byte_are_proper_responses() {
    let dir = tempfile::tempdir().unwrap();
    let state = app(dir.path()).await;
    let message = |body: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["message"].as_str().unwrap().to_string()
    };
    for ext in ["json", "raw"] {
        let (status, body) = get(
            &state,
            &format!("/retrieval/data/getData.{ext}?pv=NOPE:NOPE"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(message(&body), "Unable to find typeinfo for pv NOPE:NOPE");
    }
    let (status, body) = get(
        &state,
        "/retrieval/data/getData.json?pv=FILES:ONLY&from=yesterday",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("'from'"), "{}", message(&body));
    let (status, body) = get(&state, "/retrieval/data/getData.raw?pv=rms_600(FILES:ONLY)").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("rms_600"), "{}", message(&body));
    let (status, _) = get(&state, "/retrieval/data/getData.json?pv=ca://").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    state.engine().shutdown().await;
}

/// A PV whose data lie in two configured stores (older in the LTS, newer in the STS) is
/// read from both, oldest first; a PV whose `dataStores` name a store this appliance does
/// not have (a data folder taken over from another host) is read from the default stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_stores_merge_and_foreign_store_names_fall_back_to_the_configured_ones() {
    let dir = tempfile::tempdir().unwrap();
    let stores = DataStores::from_tiers([
        Tier::new("STS", dir.path().join("sts"), Granularity::Hour),
        Tier::new("LTS", dir.path().join("lts"), Granularity::Year),
    ])
    .unwrap();
    let (sts, lts) = (stores.tiers()[0].clone(), stores.tiers()[1].clone());
    let all = samples(100);
    lts.append("TIERS:PV", PayloadType::ScalarDouble, &all[..50])
        .unwrap();
    sts.append("TIERS:PV", PayloadType::ScalarDouble, &all[50..])
        .unwrap();
    sts.append("FOREIGN:PV", PayloadType::ScalarDouble, &all)
        .unwrap();
    let registry = SqliteRegistry::open_in_memory().unwrap();
    let mut tiers = type_info("TIERS:PV", &sts, false);
    tiers.data_stores = vec![sts.url(), lts.url()];
    let mut foreign = type_info("FOREIGN:PV", &sts, false);
    foreign.data_stores = vec![
        "pb://localhost?name=STS_OTHER_HOST&rootFolder=/gone/sts&partitionGranularity=PARTITION_HOUR"
            .to_string(),
    ];
    registry.put_type_infos(&[tiers, foreign]).unwrap();
    let app = support::appliance(stores, Arc::new(registry)).await;
    for pv in ["TIERS:PV", "FOREIGN:PV"] {
        let (name, values) = raw(&app, pv).await;
        assert_eq!(name, pv);
        assert_eq!(values, expected_values(), "{pv}");
    }
    app.engine().shutdown().await;
}

/// `getData` reads its parameters through the one extractor: a POST with a form body is
/// answered as the GET with the same query; bad input (a body of an unsupported type, no
/// `pv`, a bad time) is refused with the same 400 by either method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_data_takes_a_form_body_and_refuses_bad_input_as_every_endpoint() {
    use axum::body::Body;
    use axum::http::{Request, header};
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let post = |uri: &str, ct: &str, body: &str| {
        Request::post(uri)
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let form = "application/x-www-form-urlencoded";
    for ext in ["json", "raw"] {
        let by_get = get(
            &app,
            &format!("/retrieval/data/getData.{ext}?pv=FILES:ONLY&{RANGE}"),
        )
        .await;
        assert_eq!(by_get.0, StatusCode::OK);
        let by_post = support::send(
            &app,
            post(
                &format!("/retrieval/data/getData.{ext}"),
                form,
                &format!("pv=FILES%3AONLY&{RANGE}"),
            ),
        )
        .await;
        assert_eq!(by_post.status, StatusCode::OK);
        assert_eq!(by_post.body, by_get.1, "{ext}: POST answers as GET");
        // The query string's parameters come first, the form's after them.
        let mixed = support::send(
            &app,
            post(
                &format!("/retrieval/data/getData.{ext}?pv=FILES:ONLY"),
                form,
                &format!("pv=PAUSED:PV&{RANGE}"),
            ),
        )
        .await;
        assert_eq!(mixed.body, by_get.1, "{ext}: the query's pv wins");
    }
    let message = |body: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["message"].as_str().unwrap().to_string()
    };
    let r = support::send(
        &app,
        post(
            "/retrieval/data/getData.json?pv=FILES:ONLY",
            "application/octet-stream",
            "\u{1}\u{2}",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        message(&r.body).contains("application/octet-stream"),
        "{}",
        message(&r.body)
    );
    let by_get = get(&app, "/retrieval/data/getData.raw").await;
    let by_post = support::send(&app, post("/retrieval/data/getData.raw", form, "from=x")).await;
    for (status, body) in [(by_get.0, by_get.1), (by_post.status, by_post.body)] {
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(message(&body), "missing required parameter 'pv'");
    }
    let r = support::send(
        &app,
        post(
            "/retrieval/data/getData.json",
            form,
            "pv=FILES:ONLY&to=2014-12-08T06:21:07%2B1%C3%A92",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(message(&r.body).contains("'to'"), "{}", message(&r.body));
    app.engine().shutdown().await;
}
