//! The retrieval endpoints through the router (`tower::ServiceExt::oneshot`), over a real
//! catalogue and store and a fixed live source (no engine): every `getData` format with
//! Java's content type and layout and its empty answer, enum labels, `getDataForPVs`,
//! `getDataAtTime`, the ping PV, the `/retrieval/bpl/*` calls and `/retrieval/ping`, and
//! the 400/404 of bad input.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use archiver_http::{RetrievalState, retrieval_router, with_layers};
use archiver_pb::time::start_of_year;
use archiver_pb::{FieldValue, Granularity, PayloadType, PbReader, Sample, Timestamp, Value};
use archiver_registry::{PvTypeInfo, Registry, SamplingMethod, SqliteRegistry};
use archiver_retrieval::{FixedLive, LiveDesc, Retrieval};
use archiver_storage::{DataStores, Tier};
use archiver_time::ManualClock;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

const T0: i64 = start_of_year(2025) + 3600;
const RANGE: &str = "from=2025-01-01T00:00:00Z&to=2025-01-01T02:00:00Z";

fn info(pv: &str, ty: PayloadType, count: u32, sts: &Tier) -> PvTypeInfo {
    let mut i = PvTypeInfo::new_for_archiving(
        pv,
        ty,
        count,
        SamplingMethod::Monitor,
        1.0,
        vec![sts.url()],
        Timestamp::new(T0, 0),
    )
    .unwrap();
    i.set_units("mA");
    i.set_precision(2.0);
    i
}

/// The router over a catalogue with `A:DBL` (100 doubles `k/4` at `T0 + k`), `B:DBL` (the
/// same), `E:ENUM` (10 enum samples, labels Off/On from the live source), `W:WAVE` (3
/// waveforms of 3 doubles), the alias `OLD:NAME` of `A:DBL`, and `A:DBL` archiving `HIHI`;
/// and `N:BIG` (30 000 doubles, for the streaming and `donotchunk` tests).
fn app(dir: &std::path::Path) -> axum::Router {
    app_with_buffers(dir, HashMap::new())
}

/// [`app`] whose live source also holds these unwritten samples (the engine's buffer).
fn app_with_buffers(dir: &std::path::Path, buffers: HashMap<String, Vec<Sample>>) -> axum::Router {
    let sts = Tier::new("STS", dir.join("sts"), Granularity::Hour);
    let reg = SqliteRegistry::open_in_memory().unwrap();
    let doubles = |n: i64| -> Vec<Sample> {
        (0..n)
            .map(|k| {
                Sample::new(
                    Timestamp::new(T0 + k, 0),
                    Value::ScalarDouble(k as f64 / 4.0),
                )
            })
            .collect()
    };
    for pv in ["A:DBL", "B:DBL"] {
        sts.append(pv, PayloadType::ScalarDouble, &doubles(100))
            .unwrap();
        let mut i = info(pv, PayloadType::ScalarDouble, 1, &sts);
        if pv == "A:DBL" {
            i.add_archive_field("HIHI");
        }
        reg.put_type_info(&i).unwrap();
    }
    let big: Vec<Sample> = (0..30_000)
        .map(|k| {
            Sample::new(
                Timestamp::new(T0 + k / 10, (k % 10) as u32 * 100_000_000),
                Value::ScalarDouble(k as f64),
            )
        })
        .collect();
    sts.append("N:BIG", PayloadType::ScalarDouble, &big)
        .unwrap();
    reg.put_type_info(&info("N:BIG", PayloadType::ScalarDouble, 1, &sts))
        .unwrap();
    let enums: Vec<Sample> = (0..10)
        .map(|k| Sample::new(Timestamp::new(T0 + k, 0), Value::ScalarEnum((k % 2) as i16)))
        .collect();
    sts.append("E:ENUM", PayloadType::ScalarEnum, &enums)
        .unwrap();
    reg.put_type_info(&info("E:ENUM", PayloadType::ScalarEnum, 1, &sts))
        .unwrap();
    let waves: Vec<Sample> = (0..3)
        .map(|k| {
            Sample::new(
                Timestamp::new(T0 + k, 0),
                Value::VectorDouble(vec![k as f64, 0.5, f64::NAN]),
            )
        })
        .collect();
    sts.append("W:WAVE", PayloadType::WaveformDouble, &waves)
        .unwrap();
    reg.put_type_info(&info("W:WAVE", PayloadType::WaveformDouble, 3, &sts))
        .unwrap();
    reg.add_alias("OLD:NAME", "A:DBL").unwrap();
    let mut live = FixedLive {
        buffers,
        ..FixedLive::default()
    };
    live.held.insert(
        "E:ENUM".into(),
        LiveDesc {
            payload_type: Some(PayloadType::ScalarEnum),
            element_count: 1,
            headers: vec![
                FieldValue::new("PREC", "0"),
                FieldValue::new("ENUM_0", "Off"),
                FieldValue::new("ENUM_1", "On"),
            ],
        },
    );
    let stores = DataStores::from_tiers([sts]).unwrap();
    let retrieval = Retrieval::new(Arc::new(reg), Arc::new(stores), Arc::new(live));
    let clock = Arc::new(ManualClock::new(Timestamp::new(T0 + 7200, 0)));
    with_layers(retrieval_router(RetrievalState::new(retrieval, clock)))
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", self.text()))
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .unwrap()
            .to_str()
            .unwrap()
    }
}

async fn send(app: &axum::Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &axum::Router, uri: &str) -> Reply {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post_json(app: &axum::Router, uri: &str, body: &str) -> Reply {
    send(
        app,
        Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

fn assert_error(r: &Reply, status: StatusCode, needle: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(msg.contains(needle), "{msg:?} should name {needle:?}");
}

#[tokio::test]
async fn every_format_has_javas_content_type_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    for (ext, ct) in [
        ("json", "application/json"),
        ("raw", "application/x-protobuf"),
        ("qw", "application/json"),
        ("jplot", "application/json"),
        ("csv", "text/csv"),
        ("txt", "text/plain"),
        ("mat", "application/matlab"),
    ] {
        // With gzip allowed: the compression layer must not append anything either.
        let r = send(
            &app,
            Request::get(format!("/retrieval/data/getData.{ext}?pv=A:DBL&{RANGE}"))
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{ext}");
        assert_eq!(r.content_type(), ct, "{ext}");
        let gzipped = r
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v == "gzip");
        assert_eq!(
            gzipped,
            ct == "application/json",
            "{ext}: only JSON is compressed"
        );
    }
    let r = get(&app, "/retrieval/bpl/getMatchingPVs?pv=*").await;
    assert_eq!(r.content_type(), "application/json");
}

#[tokio::test]
async fn csv_and_txt_are_javas_lines() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let r = get(
        &app,
        &format!("/retrieval/data/getData.csv?pv=A:DBL&{RANGE}"),
    )
    .await;
    let text = r.text();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines[0], format!("{T0},0.0,0,0,0"));
    assert_eq!(lines[1], format!("{},0.25,0,0,0", T0 + 1));
    assert_eq!(lines[99], format!("{},24.75,0,0,0", T0 + 99));
    // Java's PrintWriter.println() after the last line: an empty last line.
    assert!(text.ends_with("24.75,0,0,0\n\n"), "{text:?}");

    let r = get(
        &app,
        &format!("/retrieval/data/getData.txt?pv=A:DBL&{RANGE}"),
    )
    .await;
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Beginning data for A:DBL");
    assert_eq!(lines[1], "Jan/01/2025 01:00:00 UTC\t0.0\t0\t0\t0");
    assert_eq!(lines[2], "Jan/01/2025 01:00:01 UTC\t0.25\t0\t0\t0");
    assert_eq!(lines.len(), 101);

    // A waveform prints as Java's VectorValue.toString.
    let r = get(
        &app,
        &format!("/retrieval/data/getData.csv?pv=W:WAVE&{RANGE}"),
    )
    .await;
    assert!(
        r.text().starts_with(&format!("{T0},[0.0,0.5,NaN],0,0,0\n")),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn qw_and_jplot_are_valid_json_in_javas_shape() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let r = get(
        &app,
        &format!("/retrieval/data/getData.qw?pv=A:DBL&{RANGE}"),
    )
    .await;
    let v = r.json();
    assert_eq!(v[0]["meta"]["name"], "A:DBL");
    assert_eq!(v[0]["meta"]["waveform"], false);
    assert_eq!(v[0]["meta"]["EGU"], "mA");
    assert_eq!(v[0]["meta"]["PREC"], "2");
    let data = v[0]["data"].as_array().unwrap();
    assert_eq!(data.len(), 100);
    assert_eq!(data[1]["millis"], (T0 + 1) * 1000);
    assert_eq!(data[1]["val"], 0.25);
    assert!(
        r.text()
            .starts_with("[ \n{ \"meta\": { \"name\": \"A:DBL\" , \"waveform\": false ")
    );

    let r = get(
        &app,
        &format!("/retrieval/data/getData.qw?pv=W:WAVE&{RANGE}"),
    )
    .await;
    let v = r.json();
    assert_eq!(v[0]["meta"]["waveform"], true);
    assert_eq!(v[0]["data"][2]["val"], serde_json::json!([2.0, 0.5, null]));

    let r = get(
        &app,
        &format!("/retrieval/data/getData.jplot?pv=A:DBL&{RANGE}"),
    )
    .await;
    let v = r.json();
    assert_eq!(v[0]["label"], "A:DBL");
    assert_eq!(v[0]["data"][3], serde_json::json!([(T0 + 3) * 1000, 0.75]));
    assert_eq!(v[0]["data"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn no_data_gives_javas_empty_answer_in_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let before = "from=2024-06-01T00:00:00Z&to=2024-06-02T00:00:00Z";
    for ext in ["json", "qw", "jplot"] {
        let r = get(
            &app,
            &format!("/retrieval/data/getData.{ext}?pv=A:DBL&{before}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.text(), "[ \n ]\n", "{ext}: Java's empty answer");
        assert_eq!(r.json(), serde_json::json!([]), "{ext}");
    }
    let r = get(
        &app,
        &format!("/retrieval/data/getData.csv?pv=A:DBL&{before}"),
    )
    .await;
    assert_eq!(r.text(), "\n");
    let r = get(
        &app,
        &format!("/retrieval/data/getData.txt?pv=A:DBL&{before}"),
    )
    .await;
    assert_eq!(r.text(), "");
    // pbraw: the header alone (the year of `from`), so the client learns the type.
    let r = get(
        &app,
        &format!("/retrieval/data/getData.raw?pv=A:DBL&{before}"),
    )
    .await;
    let mut reader = PbReader::new(std::io::Cursor::new(&r.body[..])).unwrap();
    assert_eq!(reader.header().pv_name, "A:DBL");
    assert_eq!(reader.header().year, 2024);
    assert!(reader.next_sample().unwrap().is_none());
}

#[tokio::test]
async fn enum_labels_are_enum_n_headers_in_raw_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let r = get(
        &app,
        &format!("/retrieval/data/getData.raw?pv=E:ENUM&{RANGE}"),
    )
    .await;
    let mut reader = PbReader::new(std::io::Cursor::new(&r.body[..])).unwrap();
    assert_eq!(reader.header().payload_type, PayloadType::ScalarEnum);
    assert_eq!(reader.header().header("ENUM_0"), Some("Off"));
    assert_eq!(reader.header().header("ENUM_1"), Some("On"));
    assert_eq!(reader.header().header("EGU"), Some("mA"));
    assert_eq!(
        reader.next_sample().unwrap().unwrap().value,
        Value::ScalarEnum(0)
    );
    let r = get(
        &app,
        &format!("/retrieval/data/getData.json?pv=E:ENUM&{RANGE}"),
    )
    .await;
    let v = r.json();
    assert_eq!(v[0]["meta"]["ENUM_0"], "Off");
    assert_eq!(v[0]["meta"]["ENUM_1"], "On");
    assert_eq!(v[0]["data"][1]["val"], 1);
    // A PV of another type gets no labels.
    let r = get(
        &app,
        &format!("/retrieval/data/getData.json?pv=A:DBL&{RANGE}"),
    )
    .await;
    assert!(r.json()[0]["meta"].get("ENUM_0").is_none());
}

#[tokio::test]
async fn get_data_for_pvs_streams_each_pv_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let r = get(
        &app,
        &format!("/retrieval/data/getDataForPVs.json?pv=A:DBL&pv=OLD:NAME&pv=E:ENUM&{RANGE}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["meta"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["A:DBL", "OLD:NAME", "E:ENUM"]);
    assert_eq!(v[1]["data"].as_array().unwrap().len(), 100);

    // A form body `pv=A,B`, as the other calls take it.
    let r = send(
        &app,
        Request::post(format!("/retrieval/data/getDataForPVs.json?{RANGE}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("pv=A:DBL,B:DBL"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json().as_array().unwrap().len(), 2);

    // POST with a JSON list, in raw: one header per PV after an empty line.
    let r = post_json(
        &app,
        &format!("/retrieval/data/getDataForPVs.raw?{RANGE}"),
        r#"["A:DBL", "B:DBL"]"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/x-protobuf");
    let chunks: Vec<&[u8]> = r
        .body
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == b"\n\n")
        .map(|(i, _)| &r.body[i + 2..])
        .collect();
    assert_eq!(chunks.len(), 1);
    let second = PbReader::new(std::io::Cursor::new(chunks[0])).unwrap();
    assert_eq!(second.header().pv_name, "B:DBL");

    for ext in ["qw", "jplot"] {
        let r = get(
            &app,
            &format!("/retrieval/data/getDataForPVs.{ext}?pv=A:DBL&pv=B:DBL&{RANGE}"),
        )
        .await;
        assert_eq!(r.json().as_array().unwrap().len(), 2, "{ext}");
    }

    let r = get(
        &app,
        &format!("/retrieval/data/getDataForPVs.json?pv=A:DBL&pv=NO:SUCH&{RANGE}"),
    )
    .await;
    assert_error(&r, StatusCode::NOT_FOUND, "NO:SUCH");
    let r = get(
        &app,
        &format!("/retrieval/data/getDataForPVs.csv?pv=A:DBL&{RANGE}"),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'csv'");
    let r = get(&app, &format!("/retrieval/data/getDataForPVs.json?{RANGE}")).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'pv'");
}

#[tokio::test]
async fn bad_calls_and_parameters_are_400_and_unknown_pvs_404() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let r = get(&app, "/retrieval/data/getData.svg?pv=A:DBL").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'svg'");
    let r = get(&app, "/retrieval/data/getData?pv=A:DBL").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "extension");
    let r = get(&app, "/retrieval/data/getSomething.json?pv=A:DBL").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "getSomething");
    let r = get(&app, "/retrieval/data/getData.csv?pv=NO:SUCH").await;
    assert_error(&r, StatusCode::NOT_FOUND, "NO:SUCH");
    let r = get(&app, "/retrieval/data/getData.qw?pv=A:DBL&from=yesterday").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'from'");
    let r = get(&app, "/retrieval/data/getData.txt").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'pv'");
}

#[tokio::test]
async fn the_ping_pv_answers_ten_samples_in_any_format() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let r = get(&app, "/retrieval/data/getData.raw?pv=ArchApplPingPV").await;
    assert_eq!(r.status, StatusCode::OK);
    let mut reader = PbReader::new(std::io::Cursor::new(&r.body[..])).unwrap();
    assert_eq!(reader.header().pv_name, "ArchApplPingPV");
    assert_eq!(reader.header().payload_type, PayloadType::ScalarDouble);
    let mut vals = Vec::new();
    while let Some(s) = reader.next_sample().unwrap() {
        vals.push(s.value.clone());
    }
    assert_eq!(vals.len(), 10);
    assert_eq!(vals[3], Value::ScalarDouble(0.1 * 3.0));
    let r = get(&app, "/retrieval/data/getData.json?pv=ArchApplPingPV").await;
    assert_eq!(r.json()[0]["data"].as_array().unwrap().len(), 10);
    // Among other PVs, the check is one PV of the answer: the others are still served.
    let r = get(
        &app,
        &format!("/retrieval/data/getDataForPVs.json?pv=A:DBL&pv=ArchApplPingPV&{RANGE}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let all = r.json();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|pv| pv["meta"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["A:DBL", "ArchApplPingPV"]);
    assert!(!all[0]["data"].as_array().unwrap().is_empty());
    assert_eq!(all[1]["data"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn nested_post_processors_are_a_400_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let r = get(
        &app,
        &format!("/retrieval/data/getData.json?pv=mean_600(max_60(A:DBL))&{RANGE}"),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "nested post-processors");
}

#[tokio::test]
async fn donotchunk_sends_the_body_whole_with_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let uri = format!("/retrieval/data/getData.json?pv=N:BIG&{RANGE}");
    let r = get(&app, &uri).await;
    assert!(r.headers.get(header::CONTENT_LENGTH).is_none(), "streamed");
    let streamed = r.body;
    let r = get(&app, &format!("{uri}&donotchunk=true")).await;
    let len: usize = r.headers[header::CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, r.body.len());
    assert_eq!(r.body, streamed);
    assert_eq!(r.json()[0]["data"].as_array().unwrap().len(), 30_000);
    // Also for a client that accepts gzip (Python requests does): whole, not compressed.
    let r = send(
        &app,
        Request::get(format!("{uri}&donotchunk=true"))
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(r.headers.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(r.body, streamed);
    let r = send(
        &app,
        Request::get(uri.clone())
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        r.headers[header::CONTENT_ENCODING],
        "gzip",
        "streamed: compressed"
    );
}

#[tokio::test]
async fn get_data_at_time_answers_by_requested_name() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let at = archiver_time::Timestamp::new(T0 + 10, 500_000_000).to_string();
    let r = post_json(
        &app,
        &format!("/retrieval/data/getDataAtTime?at={at}&includeProxies=false"),
        r#"["A:DBL", "NO:SUCH", "OLD:NAME", "W:WAVE", "E:ENUM"]"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.content_type(), "application/json");
    let v = r.json();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["A:DBL", "OLD:NAME", "W:WAVE", "E:ENUM"]);
    assert_eq!(v["A:DBL"]["secs"], T0 + 10);
    assert_eq!(v["A:DBL"]["nanos"], 0);
    assert_eq!(v["A:DBL"]["val"], 2.5);
    assert_eq!(v["A:DBL"]["severity"], 0);
    assert_eq!(v["A:DBL"]["meta"]["DBRType"], "DBR_SCALAR_DOUBLE");
    assert_eq!(v["OLD:NAME"]["val"], 2.5);
    assert_eq!(v["W:WAVE"]["val"], serde_json::json!([2.0, 0.5, null]));
    assert_eq!(v["E:ENUM"]["meta"]["ENUM_1"], "On");
    // From a store: no `source`.
    assert!(v["A:DBL"]["meta"].get("source").is_none());

    // A value still in the engine's buffer says so, as Java's.
    let dir2 = tempfile::tempdir().unwrap();
    let buffered = Sample::new(Timestamp::new(T0 + 500, 0), Value::ScalarDouble(99.5));
    let app2 = app_with_buffers(
        dir2.path(),
        HashMap::from([("A:DBL".to_string(), vec![buffered])]),
    );
    let at = Timestamp::new(T0 + 600, 0).to_string();
    let r = post_json(
        &app2,
        &format!("/retrieval/data/getDataAtTime?at={at}"),
        r#"["A:DBL", "B:DBL"]"#,
    )
    .await;
    let v = r.json();
    assert_eq!(v["A:DBL"]["val"], 99.5);
    assert_eq!(v["A:DBL"]["meta"]["source"], "engine");
    assert!(v["B:DBL"]["meta"].get("source").is_none());

    // Long after the last sample, beyond searchPeriod + 31 days: nothing.
    let late = archiver_time::Timestamp::new(T0 + 40 * 86_400, 0).to_string();
    let r = post_json(
        &app,
        &format!("/retrieval/data/getDataAtTime?at={late}&searchPeriod=P1D"),
        r#"["A:DBL"]"#,
    )
    .await;
    assert_eq!(r.json(), serde_json::json!({}));
    let r = post_json(
        &app,
        &format!("/retrieval/data/getDataAtTime.json?at={late}&searchPeriod=P2W"),
        r#"["A:DBL"]"#,
    )
    .await;
    assert_eq!(r.json()["A:DBL"]["val"], 24.75);

    let r = post_json(
        &app,
        "/retrieval/data/getDataAtTime?at=noon",
        r#"["A:DBL"]"#,
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'at'");
    let r = post_json(
        &app,
        "/retrieval/data/getDataAtTime?searchPeriod=1day",
        r#"["A:DBL"]"#,
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'searchPeriod'");
    // An empty list: Java's empty answer; no list at all: a 400 naming `pv`.
    let r = post_json(&app, "/retrieval/data/getDataAtTime", "[]").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({}));
    let r = get(&app, "/retrieval/data/getDataAtTime").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'pv'");
}

#[tokio::test]
async fn matching_and_search_list_names_and_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let r = get(&app, "/retrieval/bpl/getMatchingPVs?pv=*:DBL").await;
    assert_eq!(r.json(), serde_json::json!(["A:DBL", "B:DBL"]));
    // Names and aliases sorted together.
    let r = get(&app, "/retrieval/bpl/getMatchingPVs?regex=.*A.*").await;
    assert_eq!(r.json(), serde_json::json!(["A:DBL", "OLD:NAME", "W:WAVE"]));
    let r = get(&app, "/retrieval/bpl/getMatchingPVs?regex=.*A.*&limit=2").await;
    assert_eq!(r.json(), serde_json::json!(["A:DBL", "OLD:NAME"]));
    let r = get(&app, "/retrieval/bpl/getMatchingPVs?pv=*&limit=2").await;
    assert_eq!(r.json(), serde_json::json!(["A:DBL", "B:DBL"]));
    let r = get(&app, "/retrieval/bpl/getMatchingPVs?pv=*&limit=-1").await;
    assert_eq!(r.json().as_array().unwrap().len(), 6);
    let r = get(&app, "/retrieval/bpl/getMatchingPVs?pv=?:DBL").await;
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    // Java turns only `*` and `?` of the glob into regex; the rest is regex as it is.
    let r = get(&app, "/retrieval/bpl/getMatchingPVs?pv=%5BB-Z%5D:DBL").await;
    assert_eq!(r.json(), serde_json::json!(["B:DBL"]));
    let r = get(&app, "/retrieval/bpl/getMatchingPVs?pv=*&limit=many").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'limit'");
    // Neither `pv` nor `regex`: Java's empty list.
    let r = get(&app, "/retrieval/bpl/getMatchingPVs").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!([]));
    // A glob that is no regex (NSLS-II braces): its characters taken literally.
    let r = get(&app, "/retrieval/bpl/getMatchingPVs?pv=LN-AM%7BRad*").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!([]));
    let r = get(&app, "/retrieval/bpl/getMatchingPVs?pv=A:DB%7B*").await;
    assert_eq!(r.json(), serde_json::json!([]));
    let r = get(&app, "/retrieval/bpl/getMatchingPVs?regex=(unclosed").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "(unclosed");

    let r = get(&app, "/retrieval/bpl/searchForPVsRegex?regex=.*:DBL").await;
    assert_eq!(r.content_type(), "text/plain");
    assert_eq!(r.text(), "A:DBL\nB:DBL\n");
    let r = get(&app, "/retrieval/bpl/searchForPVsRegex").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'regex'");
}

#[tokio::test]
async fn archiving_metadata_version_filter_and_ping() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    for (pv, yes) in [
        ("A:DBL", true),
        ("OLD:NAME", true),
        ("A:DBL.HIHI", true),
        // A field the PV does not archive: nothing to serve for it.
        ("A:DBL.DESC", false),
        ("ca://A:DBL.VAL", true),
        ("NO:SUCH", false),
    ] {
        let r = get(&app, &format!("/retrieval/bpl/areWeArchivingPV?pv={pv}")).await;
        assert_eq!(
            r.json()["status"],
            if yes { "true" } else { "false" },
            "{pv}"
        );
    }
    let r = get(&app, "/retrieval/bpl/areWeArchivingPV").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'pv'");

    let r = get(&app, "/retrieval/bpl/getMetadata?pv=E:ENUM").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["pvName"], "E:ENUM");
    assert_eq!(v["DBRType"], "DBR_SCALAR_ENUM");
    assert_eq!(v["ENUM_1"], "On");
    assert!(v.as_object().unwrap().values().all(|x| x.is_string()));
    let r = get(&app, "/retrieval/bpl/getMetadata?pv=OLD:NAME").await;
    assert_eq!(r.json()["pvName"], "A:DBL");
    let r = get(&app, "/retrieval/bpl/getMetadata?pv=NO:SUCH").await;
    assert_error(&r, StatusCode::NOT_FOUND, "NO:SUCH");
    // An archive field: the PV's type info (Java's determineAppropriatePVTypeInfo).
    let r = get(&app, "/retrieval/bpl/getMetadata?pv=A:DBL.HIHI").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["pvName"], "A:DBL");
    let r = get(&app, "/retrieval/bpl/getMetadata?pv=A:DBL.DESC").await;
    assert_error(&r, StatusCode::NOT_FOUND, "A:DBL.DESC");

    let r = get(&app, "/retrieval/bpl/getVersion").await;
    assert_eq!(r.content_type(), "application/json");
    assert_eq!(r.json()["version"], env!("CARGO_PKG_VERSION"));

    let r = post_json(
        &app,
        "/retrieval/bpl/filterArchivedPVs",
        r#"["NO:SUCH", "B:DBL", "OLD:NAME", "A:DBL.HIHI", "A:DBL.LOLO"]"#,
    )
    .await;
    assert_eq!(
        r.json(),
        serde_json::json!(["B:DBL", "OLD:NAME", "A:DBL.HIHI"])
    );

    let r = post_json(&app, "/retrieval/bpl/filterArchivedPVs", "[]").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!([]));
    let r = get(&app, "/retrieval/bpl/filterArchivedPVs").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "'pv'");

    let r = get(&app, "/retrieval/ping").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "Pong\n");
}

#[tokio::test]
async fn a_retired_pv_is_served_from_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    // Files of a PV the catalogue does not have (deleted without its data, or taken over).
    let sts = Tier::new("STS", dir.path().join("sts"), Granularity::Hour);
    let samples: Vec<Sample> = (0..5)
        .map(|k| Sample::new(Timestamp::new(T0 + k, 0), Value::ScalarInt(k as i32)))
        .collect();
    sts.append("GONE:PV", PayloadType::ScalarInt, &samples)
        .unwrap();
    for uri in [
        format!("/retrieval/data/getData.json?pv=GONE:PV&{RANGE}"),
        format!("/retrieval/data/getData.json?pv=GONE:PV&retiredPVTemplate=A:DBL&{RANGE}"),
    ] {
        let r = get(&app, &uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
        let v = r.json();
        assert_eq!(v[0]["data"].as_array().unwrap().len(), 5, "{uri}");
        assert_eq!(v[0]["data"][4]["val"], 4, "{uri}");
    }
    let r = get(
        &app,
        &format!("/retrieval/data/getData.json?pv=NEVER:THERE&{RANGE}"),
    )
    .await;
    assert_error(&r, StatusCode::NOT_FOUND, "NEVER:THERE");
}

/// Browsers (web viewers, Grafana in browser-access mode) read retrieval answers from
/// another origin: Java's servlets send `Access-Control-Allow-Origin: *`; a preflight
/// `OPTIONS` is answered; a method no call takes is a 405 naming what they take.
#[tokio::test]
async fn retrieval_answers_allow_any_origin() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    for uri in [
        format!("/retrieval/data/getData.json?pv=A:DBL&{RANGE}"),
        "/retrieval/bpl/getMatchingPVs?pv=*".to_string(),
    ] {
        let r = send(
            &app,
            Request::get(uri.as_str())
                .header(header::ORIGIN, "http://viewer.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*", "{uri}");
        let r = send(
            &app,
            Request::options(uri.as_str())
                .header(header::ORIGIN, "http://viewer.example")
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "preflight {uri}");
        assert_eq!(r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*", "{uri}");
    }
    let r = send(
        &app,
        Request::delete(format!("/retrieval/data/getData.json?pv=A:DBL&{RANGE}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "GET");
}
