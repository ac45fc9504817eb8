//! `getData.raw` through the router as the Java appliance frames it: a `PayloadInfo` first
//! line with the requested name, a chunk per partition file, store and live buffer (an
//! empty line before each later header), the stored lines verbatim, a newline at the end;
//! `timeranges`; `PV.FIELD` from the archive fields carried on the PV's samples;
//! `fetchLatestMetadata`; and a disconnected PV's last chunk carrying `cnxlostepsecs`.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use archiver_appliance::{Appliance, ApplianceParts, Policy};
use archiver_ca::server::{PvSpec, Server, ServerConfig};
use archiver_ca::{Client, Limits, Meta};
use archiver_engine::{Engine, EngineConfig, PvConfig, SamplingMethod};
use archiver_pb::codec::encode_header_line;
use archiver_pb::time::start_of_year;
use archiver_pb::{
    FieldValue, Granularity, PayloadInfo, PayloadType, PbReader, Sample, Timestamp, Value,
};
use archiver_registry::{PvTypeInfo, Registry, SqliteRegistry};
use archiver_storage::{DataStores, Tier};
use archiver_time::SystemClock;
use axum::http::StatusCode;

const Y: i64 = start_of_year(2025);
const PV: &str = "RAW:PV";

fn sample(k: i64) -> Sample {
    let mut s = Sample::new(
        Timestamp::new(Y + k, 601_158_377),
        Value::ScalarDouble(if k % 2 == 0 { -0.09 } else { k as f64 }),
    );
    if k % 10 == 0 {
        s.field_values
            .push(FieldValue::new("HIHI", format!("{}.5", k / 10)));
    }
    s
}

fn type_info(pv: &str, stores: &[&Tier]) -> PvTypeInfo {
    let mut i = PvTypeInfo::new_for_archiving(
        pv,
        PayloadType::ScalarDouble,
        1,
        archiver_registry::SamplingMethod::Monitor,
        1.0,
        // Java lists the stores newest first.
        stores.iter().map(|t| t.url()).collect(),
        Timestamp::new(Y, 0),
    )
    .unwrap();
    i.set_units("mm");
    i.set_precision(3.0);
    i.archive_fields = vec!["HIHI".into()];
    i
}

/// STS (hourly) and MTS (daily) holding `RAW:PV` as ETL leaves them: the MTS with 2024's
/// last day and 2025's first, the STS with 2025's hours 0 and 1, overlapping the MTS.
async fn app(dir: &std::path::Path) -> (Appliance, Tier, Tier) {
    let sts = Tier::new("STS", dir.join("sts"), Granularity::Hour);
    let mts = Tier::new("MTS", dir.join("mts"), Granularity::Day);
    let ty = PayloadType::ScalarDouble;
    mts.append(PV, ty, &[-20, -10, 10, 20].map(sample)).unwrap();
    sts.append(PV, ty, &[20, 30, 3610, 3620].map(sample))
        .unwrap();
    sts.append("OTHER:PV", ty, &[40, 50].map(sample)).unwrap();
    let registry = SqliteRegistry::open_in_memory().unwrap();
    registry
        .put_type_info(&type_info(PV, &[&sts, &mts]))
        .unwrap();
    registry
        .put_type_info(&type_info("OTHER:PV", &[&sts]))
        .unwrap();
    registry.add_alias("RAW:ALIAS", PV).unwrap();
    let stores = DataStores::from_tiers([sts.clone(), mts.clone()]).unwrap();
    let app = support::appliance(stores, Arc::new(registry)).await;
    (app, sts, mts)
}

fn header(pv: &str, year: i32, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut headers = vec![FieldValue::new("EGU", "mm"), FieldValue::new("PREC", "3")];
    headers.extend(extra.iter().map(|(n, v)| FieldValue::new(*n, *v)));
    let info = PayloadInfo {
        payload_type: PayloadType::ScalarDouble,
        pv_name: pv.to_string(),
        year,
        element_count: Some(1),
        headers,
    };
    let mut out = Vec::new();
    encode_header_line(&info, &mut out);
    out
}

/// The stored sample lines (escaped, each with its newline) of the file of `pv` in
/// `tier` that holds `k`.
fn stored(tier: &Tier, pv: &str, k: i64) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(tier.file_for(pv, Y + k).unwrap()).unwrap();
    bytes
        .split_inclusive(|b| *b == b'\n')
        .skip(1)
        .map(<[u8]>::to_vec)
        .collect()
}

/// The chunks of a pbraw body read back: header and samples of each.
fn chunks(body: &[u8]) -> Vec<(PayloadInfo, Vec<Sample>)> {
    assert_eq!(body.last(), Some(&b'\n'));
    let text = body[..body.len() - 1].to_vec();
    text.split(|b| *b == b'\n')
        .collect::<Vec<_>>()
        .split(|line| line.is_empty())
        .map(|lines| {
            let mut chunk: Vec<u8> = lines.join(&b'\n');
            chunk.push(b'\n');
            let mut r = PbReader::new(std::io::Cursor::new(chunk)).unwrap();
            let mut samples = Vec::new();
            while let Some(s) = r.next_sample().unwrap() {
                samples.push(s.clone());
            }
            assert_eq!(r.skipped_lines(), 0);
            (r.header().clone(), samples)
        })
        .collect()
}

fn times(chunks: &[(PayloadInfo, Vec<Sample>)]) -> Vec<Vec<i64>> {
    chunks
        .iter()
        .map(|(_, v)| v.iter().map(|s| s.time.secs - Y).collect())
        .collect()
}

fn range(from: i64, to: i64) -> String {
    format!(
        "from={}&to={}",
        support::iso(Y + from),
        support::iso(Y + to)
    )
}

#[tokio::test]
async fn pbraw_frames_partitions_and_stores_and_copies_the_stored_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (app, sts, mts) = app(dir.path()).await;
    let r = support::get(
        &app,
        &format!("/retrieval/data/getData.raw?pv={PV}&{}", range(-15, 4000)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/x-protobuf");
    let mut want = Vec::new();
    // MTS 2024-12-31: -20 (before from), -10.
    want.extend(header(PV, 2024, &[]));
    want.extend(stored(&mts, PV, -20).concat());
    // MTS 2025-01-01: 10, 20.
    want.push(b'\n');
    want.extend(header(PV, 2025, &[]));
    want.extend(stored(&mts, PV, 10).concat());
    // STS hour 0: 20 again (dropped at the store boundary), 30.
    want.push(b'\n');
    want.extend(header(PV, 2025, &[]));
    want.extend(stored(&sts, PV, 30)[1].clone());
    // STS hour 1.
    want.push(b'\n');
    want.extend(header(PV, 2025, &[]));
    want.extend(stored(&sts, PV, 3610).concat());
    assert_eq!(r.body, want);
    let got = chunks(&r.body);
    assert_eq!(
        times(&got),
        vec![vec![-20, -10], vec![10, 20], vec![30], vec![3610, 3620]]
    );
    assert_eq!(got[0].1[0], sample(-20));

    // An alias: the same bytes under the requested name; the `.VAL` and `ca://` go.
    let r = support::get(
        &app,
        &format!(
            "/retrieval/data/getData.raw?pv=ca://RAW:ALIAS.VAL&{}",
            range(-15, 4000)
        ),
    )
    .await;
    let got = chunks(&r.body);
    assert!(got.iter().all(|(h, _)| h.pv_name == "RAW:ALIAS"));
    assert_eq!(times(&got).concat(), vec![-20, -10, 10, 20, 30, 3610, 3620]);

    // Two PVs: the second's header after an empty line; a range without data gives the
    // PV's header alone (for the year of `from`).
    let r = support::get(
        &app,
        &format!(
            "/retrieval/data/getDataForPVs.raw?pv={PV}&pv=OTHER:PV&{}",
            range(35, 45)
        ),
    )
    .await;
    let mut want = header(PV, 2025, &[]);
    want.extend(stored(&sts, PV, 30)[1].clone());
    want.push(b'\n');
    want.extend(header("OTHER:PV", 2025, &[]));
    want.extend(stored(&sts, "OTHER:PV", 40)[0].clone());
    assert_eq!(r.body, want);
    let r = support::get(
        &app,
        &format!(
            "/retrieval/data/getData.raw?pv={PV}&{}",
            range(-9000, -8000)
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, header(PV, 2024, &[]));
}

#[tokio::test]
async fn timeranges_select_spans_and_bad_lists_are_400s() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _, _) = app(dir.path()).await;
    let spans = [
        support::iso(Y - 15),
        support::iso(Y - 12),
        support::iso(Y + 25),
        support::iso(Y + 3615),
    ]
    .join(",");
    // `from`/`to` are overridden by the spans.
    let r = support::get(
        &app,
        &format!(
            "/retrieval/data/getData.json?pv={PV}&timeranges={spans}&{}",
            range(-9000, -8000)
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let secs: Vec<i64> = v[0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["secs"].as_i64().unwrap() - Y)
        .collect();
    // [-15, -12]: -20 in effect at its start; nothing in it. [25, 3615]: 20 in effect,
    // 30, 3610. Not -10 nor 10 (in the gap), nor 3620 (after).
    assert_eq!(secs, vec![-20, 20, 30, 3610]);
    let r = support::get(
        &app,
        &format!("/retrieval/data/getData.raw?pv={PV}&timeranges={spans}"),
    )
    .await;
    assert_eq!(times(&chunks(&r.body)).concat(), vec![-20, 20, 30, 3610]);

    for (bad, says) in [
        (support::iso(Y), "even number"),
        (format!("{},later", support::iso(Y)), "later"),
        (
            format!("{},{}", support::iso(Y + 10), support::iso(Y)),
            "before start",
        ),
        (
            [Y, Y + 20, Y + 10, Y + 30].map(support::iso).join(","),
            "previous end",
        ),
    ] {
        let r = support::get(
            &app,
            &format!("/retrieval/data/getData.raw?pv={PV}&timeranges={bad}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert!(
            text.contains("timeranges") && text.contains(says),
            "{bad}: {text}"
        );
    }
}

#[tokio::test]
async fn a_field_is_served_from_the_archive_fields_on_the_pvs_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _, _) = app(dir.path()).await;
    let r = support::get(
        &app,
        &format!(
            "/retrieval/data/getData.json?pv={PV}.HIHI&{}",
            range(-100, 5000)
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v[0]["meta"]["name"], format!("{PV}.HIHI"));
    let data: Vec<(i64, f64)> = v[0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["secs"].as_i64().unwrap() - Y, s["val"].as_f64().unwrap()))
        .collect();
    // The samples carrying HIHI: every tenth second, from every store, once each.
    assert_eq!(
        data,
        vec![
            (-20, -2.5),
            (-10, -1.5),
            (10, 1.5),
            (20, 2.5),
            (30, 3.5),
            (3610, 361.5),
            (3620, 362.5)
        ]
    );
    // pbraw: a DBR_SCALAR_DOUBLE stream named as requested.
    let r = support::get(
        &app,
        &format!(
            "/retrieval/data/getData.raw?pv={PV}.HIHI&{}",
            range(25, 5000)
        ),
    )
    .await;
    let got = chunks(&r.body);
    assert!(got.iter().all(|(h, _)| h.pv_name == "RAW:PV.HIHI"));
    let vals: Vec<Value> = got
        .iter()
        .flat_map(|(_, v)| v.iter().map(|s| s.value.clone()))
        .collect();
    assert_eq!(
        vals,
        [2.5, 3.5, 361.5, 362.5].map(Value::ScalarDouble).to_vec()
    );
    // With a post-processor on the field values.
    let r = support::get(
        &app,
        &format!(
            "/retrieval/data/getData.json?pv=max_86400({PV}.HIHI)&{}",
            range(1, 5000)
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        v[0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["val"] == 362.5),
        "{v}"
    );
    // A field the PV does not archive is unknown.
    let r = support::get(&app, &format!("/retrieval/data/getData.json?pv={PV}.LOLO")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// An appliance whose CA client talks to `server`, over an STS in `dir`.
async fn appliance_on(server: &Server, dir: &std::path::Path) -> Appliance {
    let client = Client::new(server.client_config().build().unwrap())
        .await
        .unwrap();
    let stores =
        DataStores::from_tiers([Tier::new("STS", dir.join("sts"), Granularity::Hour)]).unwrap();
    let policy = Policy::for_stores(&stores);
    let mut cfg = EngineConfig::default();
    policy.apply_to(&mut cfg);
    let clock = Arc::new(SystemClock);
    let engine = Engine::start(client, stores.tiers()[0].clone(), cfg, clock.clone());
    Appliance::new(ApplianceParts {
        engine,
        registry: Arc::new(SqliteRegistry::open_in_memory().unwrap()),
        clock,
        identity: Arc::from("appliance0"),
        policy,
        stores,
    })
}

async fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 20 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_metadata_then_a_disconnection_through_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    let meta = Meta {
        units: "mA".into(),
        precision: 4,
        limits: Limits {
            upper_disp: 10.0,
            lower_disp: -10.0,
            upper_alarm: 9.0,
            ..Limits::default()
        },
        enum_strs: Vec::new(),
    };
    server.add_pv(PvSpec::new("CNX:PV", archiver_ca::Value::Double(2.5)).meta(meta));
    let app = appliance_on(&server, dir.path()).await;
    app.engine()
        .archive(
            "CNX:PV",
            PvConfig {
                method: SamplingMethod::Monitor,
                period: 0.0,
                archive_fields: Vec::new(),
            },
        )
        .unwrap();
    let engine = app.engine().clone();
    assert!(
        wait_for(10, || engine.status("CNX:PV").is_some_and(|s| s
            .conn
            .connected
            && s.meta.known
            && s.buffered > 0))
        .await,
        "{:?}",
        engine.status("CNX:PV")
    );

    // Connected: no cnxlostepsecs; with fetchLatestMetadata the engine's limits show.
    let r = support::get(&app, "/retrieval/data/getData.raw?pv=CNX:PV").await;
    assert_eq!(r.status, StatusCode::OK);
    let got = chunks(&r.body);
    assert_eq!(got.len(), 1);
    assert!(got[0].0.header("cnxlostepsecs").is_none());
    assert_eq!(got[0].0.header("HOPR"), None);
    let r = support::get(
        &app,
        "/retrieval/data/getData.raw?pv=CNX:PV&fetchLatestMetadata=true",
    )
    .await;
    let h = &chunks(&r.body)[0].0;
    assert_eq!(h.header("EGU"), Some("mA"));
    assert_eq!(h.header("PREC"), Some("4"));
    assert_eq!(h.header("HOPR"), Some("10.0"));
    assert_eq!(h.header("LOPR"), Some("-10.0"));
    assert_eq!(h.header("HIHI"), Some("9.0"));
    let r = support::get(
        &app,
        "/retrieval/data/getData.json?pv=CNX:PV&fetchLatestMetadata=true",
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v[0]["meta"]["HOPR"], "10.0");

    // The IOC goes away: the response ends with a chunk, without samples, whose header
    // says since when the PV is disconnected.
    drop(server);
    assert!(
        wait_for(10, || engine
            .status("CNX:PV")
            .is_some_and(|s| !s.conn.connected && s.conn.lost_at_secs != 0))
        .await
    );
    let lost = engine.status("CNX:PV").unwrap().conn.lost_at_secs;
    let r = support::get(&app, "/retrieval/data/getData.raw?pv=CNX:PV").await;
    assert_eq!(r.status, StatusCode::OK);
    let got = chunks(&r.body);
    assert_eq!(got.len(), 2, "the data, then the disconnection");
    assert_eq!(got[0].1.len(), 1);
    assert_eq!(got[0].1[0].value, Value::ScalarDouble(2.5));
    let (last, none) = &got[1];
    assert!(none.is_empty());
    assert_eq!(last.pv_name, "CNX:PV");
    assert_eq!(last.payload_type, PayloadType::ScalarDouble);
    assert_eq!(
        last.header("cnxlostepsecs"),
        Some(lost.to_string().as_str())
    );
    // A range that ends before the loss says nothing of it.
    let r = support::get(
        &app,
        &format!(
            "/retrieval/data/getData.raw?pv=CNX:PV&to={}",
            support::iso(lost - 1)
        ),
    )
    .await;
    assert!(
        chunks(&r.body)
            .iter()
            .all(|(h, _)| h.header("cnxlostepsecs").is_none())
    );
    app.engine().shutdown().await;
}
