//! Post-processors through the router: `getData.json?pv=mean_600(PV)` (and
//! `op(PV,a)`, `pp=`) answer the bins of the files' samples; `optimized_N` answers the raw
//! samples when there are few; a numeric operator on a string PV and an unknown operator
//! are 400s naming them.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use archiver_appliance::Appliance;
use archiver_pb::time::start_of_year;
use archiver_pb::{Granularity, PayloadType, PbReader, Sample, Timestamp, Value};
use archiver_registry::{PvTypeInfo, Registry, SqliteRegistry};
use archiver_storage::{DataStores, Tier};
use axum::http::StatusCode;

/// An hour into 2025: a multiple of 60.
const T0: i64 = start_of_year(2025) + 3600;

fn type_info(pv: &str, t: PayloadType, sts: &Tier) -> PvTypeInfo {
    PvTypeInfo::new_for_archiving(
        pv,
        t,
        1,
        archiver_registry::SamplingMethod::Monitor,
        1.0,
        vec![sts.url()],
        Timestamp::new(T0, 0),
    )
    .unwrap()
}

/// `NUM:PV`: 100 doubles `k/4` at `T0 + k` s; `STR:PV`: 3 strings.
async fn app(dir: &std::path::Path) -> Appliance {
    let sts = Tier::new("STS", dir.join("sts"), Granularity::Hour);
    let num: Vec<Sample> = (0..100)
        .map(|k| {
            Sample::new(
                Timestamp::new(T0 + k, 0),
                Value::ScalarDouble(k as f64 / 4.0),
            )
        })
        .collect();
    let strings: Vec<Sample> = (0..3)
        .map(|k| {
            Sample::new(
                Timestamp::new(T0 + k, 0),
                Value::ScalarString(format!("s{k}")),
            )
        })
        .collect();
    sts.append("NUM:PV", PayloadType::ScalarDouble, &num)
        .unwrap();
    sts.append("STR:PV", PayloadType::ScalarString, &strings)
        .unwrap();
    let registry = SqliteRegistry::open_in_memory().unwrap();
    registry
        .put_type_info(&type_info("NUM:PV", PayloadType::ScalarDouble, &sts))
        .unwrap();
    registry
        .put_type_info(&type_info("STR:PV", PayloadType::ScalarString, &sts))
        .unwrap();
    support::appliance(DataStores::from_tiers([sts]).unwrap(), Arc::new(registry)).await
}

fn range() -> String {
    format!("from={}&to={}", support::iso(T0), support::iso(T0 + 99))
}

async fn get(app: &Appliance, uri: &str) -> (StatusCode, Vec<u8>) {
    let r = support::get(app, uri).await;
    (r.status, r.body)
}

async fn json_ok(app: &Appliance, query: &str) -> serde_json::Value {
    let (status, body) = get(app, &format!("/retrieval/data/getData.json?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mean_600_and_friends_through_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    // Bins of 60 s from T0: k = 0..59 (mean 29.5/4) and 60..99 (mean 79.5/4), at the
    // bin centres.
    for query in [
        format!("pv=mean_60(NUM:PV)&{}", range()),
        format!("pv=mean(NUM:PV,60)&{}", range()),
        format!("pv=NUM:PV&pp=mean_60&{}", range()),
        format!("pv=mean_60(ca://NUM:PV.VAL)&pp=max_60&{}", range()),
    ] {
        let v = json_ok(&app, &query).await;
        assert_eq!(v[0]["meta"]["name"], "NUM:PV", "{query}");
        let data = v[0]["data"].as_array().unwrap();
        let got: Vec<(i64, f64)> = data
            .iter()
            .map(|d| (d["secs"].as_i64().unwrap(), d["val"].as_f64().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![(T0 + 30, 29.5 / 4.0), (T0 + 90, 79.5 / 4.0)],
            "{query}"
        );
        assert_eq!(data[0]["nanos"], 0);
    }
    // The default interval (900 s): one bin.
    let v = json_ok(&app, &format!("pv=meanSample(NUM:PV)&{}", range())).await;
    assert_eq!(v[0]["data"].as_array().unwrap().len(), 1);
    assert_eq!(v[0]["data"][0]["secs"], T0 + 450);

    // pbraw: the type of the bins is DBR_SCALAR_DOUBLE, `stats` a 5-element waveform.
    let (status, body) = get(
        &app,
        &format!(
            "/retrieval/data/getData.raw?pv=stats_60(NUM:PV)&{}",
            range()
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut r = PbReader::new(std::io::Cursor::new(&body[..])).unwrap();
    assert_eq!(r.header().payload_type, PayloadType::WaveformDouble);
    assert_eq!(r.header().element_count, Some(5));
    let s = r.next_sample().unwrap().unwrap().clone();
    let Value::VectorDouble(v) = &s.value else {
        panic!("{:?}", s.value)
    };
    let expected = [29.5 / 4.0, s_std(60) / 4.0, 0.0, 59.0 / 4.0, 60.0];
    assert_eq!(v.len(), 5);
    for (got, want) in v.iter().zip(expected) {
        assert!((got - want).abs() < 1e-9, "{v:?}");
    }

    // optimized_1000 over 100 samples: the samples themselves, their own type.
    let (status, body) = get(
        &app,
        &format!(
            "/retrieval/data/getData.raw?pv=optimized_1000(NUM:PV)&{}",
            range()
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut r = PbReader::new(std::io::Cursor::new(&body[..])).unwrap();
    assert_eq!(r.header().payload_type, PayloadType::ScalarDouble);
    let mut n = 0;
    while r.next_sample().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 100);
    // optimized_10: the bins.
    let v = json_ok(&app, &format!("pv=optimized_10(NUM:PV)&{}", range())).await;
    assert!(v[0]["data"][0]["val"].is_array(), "{}", v[0]["data"][0]);

    // ncount: one count; nth works on strings.
    let v = json_ok(&app, &format!("pv=ncount(NUM:PV)&{}", range())).await;
    assert_eq!(v[0]["data"][0]["val"], 100);
    let v = json_ok(&app, &format!("pv=nth_2(STR:PV)&{}", range())).await;
    let vals: Vec<&str> = v[0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["val"].as_str().unwrap())
        .collect();
    assert_eq!(vals, ["s0", "s2"]);
    app.engine().shutdown().await;
}

/// The sample standard deviation of 0..n−1.
fn s_std(n: i64) -> f64 {
    let n = n as f64;
    (n * (n + 1.0) / 12.0).sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_post_processors_are_400s_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let message = |body: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["message"].as_str().unwrap().to_string()
    };
    for (query, needle) in [
        ("pv=rms_60(NUM:PV)", "rms_60"),
        ("pv=NUM:PV&pp=bogus", "bogus"),
        ("pv=mean_0(NUM:PV)", "mean_0"),
        ("pv=mean_60(NUM:PV", "unbalanced"),
        ("pv=mean_60(STR:PV)", "mean_60"),
    ] {
        for ext in ["json", "raw"] {
            let (status, body) = get(
                &app,
                &format!("/retrieval/data/getData.{ext}?{query}&{}", range()),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert!(
                message(&body).contains(needle),
                "{query}: {}",
                message(&body)
            );
        }
    }
    // Bins beyond the limits: refused before any work, naming the spec and the limit
    // (mean_1 over millennia; optimized with two billion points; .mat of those).
    let huge = "from=0001-01-01T00:00:00Z&to=9999-12-31T00:00:00Z";
    for (query, needle) in [
        (format!("pv=mean_1(NUM:PV)&{huge}"), "mean_1"),
        (
            format!("pv=optimized_2147483647(NUM:PV)&{huge}"),
            "optimized_2147483647",
        ),
        (format!("pv=firstFill_1(NUM:PV)&{huge}"), "firstFill_1"),
    ] {
        for ext in ["json", "raw", "mat"] {
            let (status, body) = get(&app, &format!("/retrieval/data/getData.{ext}?{query}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{ext} {query}");
            let m = message(&body);
            assert!(m.contains(needle) && m.contains("bins"), "{query}: {m}");
        }
    }
    // Operators that leave empty bins out answer whatever the range: their output is
    // bounded by the data.
    for op in ["meanSample_1", "firstSample_1", "lastSample_1"] {
        let (status, body) = get(
            &app,
            &format!("/retrieval/data/getData.json?pv={op}(NUM:PV)&{huge}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{op}: {body:?}");
    }
    // Within the limits the same operators answer.
    let (status, _) = get(
        &app,
        &format!("/retrieval/data/getData.json?pv=optimized_1000000(NUM:PV)&{huge}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // An unknown PV inside the function syntax is still a 404.
    let (status, _) = get(&app, "/retrieval/data/getData.json?pv=mean_60(NO:PV)").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.engine().shutdown().await;
}
