//! The input faults of issue 8 through the real router ([`archiver_http::router`]: the
//! real appliance over a real engine whose CA client searches nowhere, see `support`), and compression
//! of the real `getData` responses: `getData.json` gzipped and still streamed,
//! `getData.raw` never compressed.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Read;
use std::sync::Arc;

use archiver_appliance::Appliance;
use archiver_pb::time::start_of_year;
use archiver_pb::{Granularity, PayloadType};
use archiver_registry::{Registry, SqliteRegistry};
use archiver_storage::Tier;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};

/// Samples in the file of `T:FILE`: 10 Hz for 100 minutes, ≈ 4 MB of JSON.
const N: i64 = 60_000;

async fn state(dir: &std::path::Path) -> (Appliance, Arc<SqliteRegistry>, i64) {
    let t0 = start_of_year(2025) + 3600;
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    let samples = support::steady(t0, N, 10);
    let app = support::holding_file(dir, "T:FILE", &samples, registry.clone()).await;
    (app, registry, t0)
}

/// A catalogued scalar double PV, `paused` or not, with no stores.
fn type_info(pv: &str, paused: bool) -> archiver_registry::PvTypeInfo {
    let mut i = archiver_registry::PvTypeInfo::new_for_archiving(
        pv,
        archiver_pb::PayloadType::ScalarDouble,
        1,
        archiver_registry::SamplingMethod::Monitor,
        1.0,
        Vec::new(),
        archiver_pb::Timestamp::new(1_700_000_000, 0),
    )
    .unwrap();
    i.paused = paused;
    i
}

async fn send(
    state: &Appliance,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, usize, Vec<u8>) {
    let r = support::send(state, req).await;
    (r.status, r.headers, r.frames, r.body)
}

/// Found by a fresh-user test: a near-miss of `pva://` was archived as a CA name, and a
/// bad field path needs a message that says what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistyped_pva_prefixes_and_field_paths_are_a_400_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (state, registry, _) = state(dir.path()).await;
    for (pv, says) in [
        ("pva:/T:X", "is not a protocol prefix: write pva://"),
        ("pva//T:X", "is not a protocol prefix"),
        ("PVA://T:X", "protocol prefix"),
        ("pva://T:X%23", "no field path after '#'"),
        ("pva://T:X%23value//x", "an empty member"),
        ("pva://T:X%23value.x", "separated by '/'"),
        ("pva://T:X%23value.a.b", "separated by '/' (#value/a/b)"),
        ("pva://%23value", "no channel name"),
    ] {
        let (status, _, _, body) = send(
            &state,
            Request::get(format!("/mgmt/bpl/archivePV?pv={pv}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        let msg = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{pv}: {msg}");
        assert!(msg.contains(says), "{pv}: {msg}");
    }
    // A list with one bad name is refused whole: the good names before it are not
    // archived either (they were, while the answer said 400).
    for list in [
        "/mgmt/bpl/archivePV?pv=pva://T:GOOD1,pva:/T:Y".to_string(),
        "/mgmt/bpl/archivePV?pv=T:GOOD1,pva://T:X%23value//x".to_string(),
    ] {
        let (status, _, _, body) =
            send(&state, Request::get(&list).body(Body::empty()).unwrap()).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{list}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    for stored in [
        "pva:/T:X",
        "pva//T:X",
        "T:X#",
        "T:X#value//x",
        "T:X",
        "T:GOOD1",
    ] {
        assert!(state.engine().status(stored).is_none(), "{stored}");
        assert!(
            registry.get_archive_request(stored).unwrap().is_none(),
            "{stored}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sampling_periods_are_refused_and_a_form_body_names_each_pv() {
    let dir = tempfile::tempdir().unwrap();
    let (state, registry, _) = state(dir.path()).await;
    for p in ["1e-30", "1e300", "NaN", "-1", "inf"] {
        let (status, _, _, body) = send(
            &state,
            Request::get(format!("/mgmt/bpl/archivePV?pv=T:BAD&samplingperiod={p}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
        let msg = String::from_utf8_lossy(&body);
        assert!(
            msg.contains("is out of range") && msg.contains("365 days"),
            "{p}: {msg}"
        );
    }
    assert!(state.engine().status("T:BAD").is_none());
    assert!(registry.get_archive_request("T:BAD").unwrap().is_none());

    let (status, _, _, _) = send(
        &state,
        Request::post("/mgmt/bpl/archivePV")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("pv=T:NEW&samplingperiod=0.5"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state.engine().status("T:NEW").unwrap().config.period, 0.5);
    let req = registry.get_archive_request("T:NEW").unwrap().unwrap();
    assert_eq!(req.user_params["samplingperiod"], 0.5);

    let (status, _, _, body) = send(
        &state,
        Request::post("/mgmt/bpl/getPVStatus")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("pv=T:NEW,T:FILE,T:NONE"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let got: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["pvName"].as_str().unwrap(), o["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("T:NEW", "Initial sampling"),
            ("T:FILE", "Paused"),
            ("T:NONE", "Not being archived")
        ]
    );
    state.engine().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_data_json_is_gzipped_and_still_streamed_and_raw_is_never_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _, t0) = state(dir.path()).await;
    let range = format!(
        "from={}&to={}",
        support::iso(t0 - 1),
        support::iso(t0 + N / 10 + 1)
    );
    let get = |path: &str| {
        Request::get(format!("{path}?pv=T:FILE&{range}"))
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .unwrap()
    };
    let (status, headers, frames, body) = send(&state, get("/retrieval/data/getData.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    assert!(headers.get(header::CONTENT_LENGTH).is_none());
    assert!(frames > 1, "{frames} frames");
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut json)
        .unwrap();
    support::assert_json_ramp(&json, N);

    let (status, headers, _, body) = send(&state, get("/retrieval/data/getData.raw")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get(header::CONTENT_ENCODING).is_none());
    let mut r = archiver_pb::PbReader::new(std::io::Cursor::new(&body[..])).unwrap();
    let mut k = 0i64;
    while r.next_sample().unwrap().is_some() {
        k += 1;
    }
    assert_eq!(k, N);
    state.engine().shutdown().await;
}

/// A path no route serves (a Java endpoint not served yet, a typo) is a JSON 404 naming
/// it, like every other error, instead of an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_endpoint_is_a_json_404_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _, _) = state(dir.path()).await;
    for path in [
        "/mgmt/bpl/noSuchCall",
        "/retrieval/nothing/here",
        "/nothing",
    ] {
        let r = support::get(&app, path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("no such endpoint") && msg.contains(path),
            "{msg}"
        );
    }
    // `/` is the web UI (a redirect to Java's /mgmt/ui/index.html), not a 404.
    let r = support::get(&app, "/").await;
    assert!(r.status.is_redirection(), "{}", r.status);
    assert_eq!(r.headers[header::LOCATION], "/mgmt/ui/index.html");
}

/// Found by a fresh-user test: during the background restore, getPVStatus of a
/// catalogued PV not restored yet answered "Not being archived". Java: "Appliance
/// assigned" (a type info, no channel yet), "Paused", or "Initial sampling" (a request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalogued_pv_not_restored_yet_has_the_catalogues_status() {
    let dir = tempfile::tempdir().unwrap();
    let (state, registry, _) = state(dir.path()).await;
    registry
        .put_type_infos(&[type_info("T:CAT", false), type_info("T:CATP", true)])
        .unwrap();
    registry.add_alias("T:CATALIAS", "T:CAT").unwrap();
    registry
        .add_archive_request(&archiver_registry::ArchiveRequest {
            pv_name: "T:REQ".into(),
            user_params: serde_json::json!({}),
        })
        .unwrap();
    let r = support::get(
        &state,
        "/mgmt/bpl/getPVStatus?pv=T:CAT,T:CATP,T:CATALIAS,T:REQ,T:NONE",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let got: Vec<(&str, &str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["pvName"].as_str().unwrap(),
                o["status"].as_str().unwrap(),
                o["pvNameOnly"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("T:CAT", "Appliance assigned", "T:CAT"),
            ("T:CATP", "Paused", "T:CATP"),
            ("T:CATALIAS", "Appliance assigned", "T:CAT"),
            ("T:REQ", "Initial sampling", "T:REQ"),
            ("T:NONE", "Not being archived", ""),
        ]
    );
    assert!(v[0]["appliance"].is_string());
    state.engine().shutdown().await;
}

/// The files under `root` (relative paths) with their bytes, but those under `skip`.
fn files_under(root: &std::path::Path, skip: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.starts_with(skip) {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// PV names that try to leave the store's folder (`..` components, made of the `:` and
/// `-` separators too, absolute, NUL, backslash, percent-encoded dots) through archivePV,
/// getData, and deletePVData (query and JSON body): each is a 4xx with a message, and no
/// file outside the store — a victim PV's partitions next to it among them — is changed,
/// removed or created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pv_names_that_try_to_escape_the_store_are_refused_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _, t0) = state(dir.path()).await;
    // a victim's partitions beside the store's folder (dir/sts): "..:victim" maps there
    let beside = Tier::new("X", dir.path().to_path_buf(), Granularity::Hour);
    beside
        .append(
            "victim",
            PayloadType::ScalarDouble,
            &support::steady(t0, 100, 10),
        )
        .unwrap();
    let outside = files_under(dir.path(), &dir.path().join("sts"));
    assert!(!outside.is_empty());
    let (from, to) = (support::iso(t0 - 3600), support::iso(t0 + 7200));
    let names = [
        "..:victim",
        "../victim",
        "..-victim",
        "T:..:..:victim",
        "T:FILE/../../victim",
        "/victim",
        "//victim",
        "..",
        "ca://..:victim",
        "pva://..:victim",
        "T:X\0",
        "..\\victim",
        "T\\..\\..\\victim",
        "%2e%2e:victim",
        "%2E%2E%2Fvictim",
    ];
    let mut asked = 0;
    for name in names {
        let enc: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
        // the name percent-encoded, and (for the %-names) as written: decoded by the server
        let mut forms = vec![enc];
        if name.contains('%') {
            forms.push(name.to_string());
        }
        for pv in forms {
            let uris = [
                format!("/mgmt/bpl/archivePV?pv={pv}"),
                format!("/retrieval/data/getData.json?pv={pv}&from={from}&to={to}"),
                format!("/retrieval/data/getData.raw?pv={pv}&from={from}&to={to}"),
                format!("/mgmt/bpl/deletePVData?pv={pv}&from={from}&to={to}"),
            ];
            for uri in uris {
                let (status, _, _, body) =
                    send(&state, Request::get(&uri).body(Body::empty()).unwrap()).await;
                let msg = String::from_utf8_lossy(&body);
                assert!(status.is_client_error(), "{uri}: {status} {msg}");
                assert!(msg.contains("\"message\""), "{uri}: {msg}");
                asked += 1;
            }
        }
        for call in ["/mgmt/bpl/archivePV", "/mgmt/bpl/deletePVData"] {
            let uri = format!("{call}?from={from}&to={to}");
            let body = serde_json::to_string(&[name]).unwrap();
            let (status, _, _, answer) = send(
                &state,
                Request::post(&uri)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
            let msg = String::from_utf8_lossy(&answer);
            // a list answers per PV: a 4xx, or 200 with the PV's refusal in it
            assert!(
                status.is_client_error() || (status == StatusCode::OK && msg.contains("alidation")),
                "POST {call} {name:?}: {status} {msg}"
            );
            asked += 1;
        }
    }
    assert!(asked > 60);
    assert_eq!(files_under(dir.path(), &dir.path().join("sts")), outside);
}

/// Found by the test above: `deletePVData?pv=/victim` (a name Java's characters allow,
/// whose file would be an absolute path) reached the store, whose refusal answered 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_pv_data_of_a_name_mapping_outside_the_store_was_a_500() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _, t0) = state(dir.path()).await;
    let (from, to) = (support::iso(t0), support::iso(t0 + 60));
    for pv in ["%2Fvictim", "T:%2F%2Fvictim"] {
        let uri = format!("/mgmt/bpl/deletePVData?pv={pv}&from={from}&to={to}");
        let (status, _, _, body) =
            send(&state, Request::get(&uri).body(Body::empty()).unwrap()).await;
        let msg = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {msg}");
        assert!(msg.contains("victim"), "{msg}");
    }
}

/// Found by the `names_patterns` fuzz target: a 580-byte regex (nested stars and a counted
/// repetition `{61252}`) that compiled and then took 0.36 s per PV name, so one listing of
/// a 100,000-PV catalogue held a thread for hours. Every call that matches a user pattern
/// against the names now answers 400 saying the pattern is too costly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regex_whose_match_walks_a_huge_program_is_a_400_on_every_listing() {
    let dir = tempfile::tempdir().unwrap();
    let (state, registry, _) = state(dir.path()).await;
    registry.put_type_info(&type_info("T:CAT", false)).unwrap();
    let input = include_bytes!(
        "../../../fuzz/regressions/names_patterns/slow-regex-match-ef1076534f332fee0a21bc429aaf0532f25e0360"
    );
    let text = String::from_utf8_lossy(input);
    let (regex, _) = text.split_once('\n').unwrap_or((&text, ""));
    let encoded: String = regex
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    for call in [
        "/mgmt/bpl/getAllPVs?regex=",
        "/mgmt/bpl/getTimeSpanReport?regex=",
        "/retrieval/bpl/getMatchingPVs?regex=",
        "/retrieval/bpl/searchForPVsRegex?regex=",
        // Java's getMatchingPVs takes its glob as a regex (`*` → `.*`).
        "/retrieval/bpl/getMatchingPVs?pv=",
    ] {
        let uri = format!("{call}{encoded}");
        let (status, _, _, body) =
            send(&state, Request::get(&uri).body(Body::empty()).unwrap()).await;
        let msg = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{call}: {msg}");
        assert!(msg.contains("too costly"), "{call}: {msg}");
    }
    // An ordinary pattern still lists.
    for call in [
        "/mgmt/bpl/getAllPVs?regex=T:C.*",
        "/retrieval/bpl/getMatchingPVs?regex=T:C.*",
        "/retrieval/bpl/getMatchingPVs?pv=T:C*",
    ] {
        let (status, _, _, body) =
            send(&state, Request::get(call).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{call}");
        assert_eq!(
            String::from_utf8_lossy(&body).trim(),
            r#"["T:CAT"]"#,
            "{call}"
        );
    }
}

/// Found by a fresh-user test of the fix above: each glob of a `pv=` list had a 5 s budget
/// of its own, so a 400 kB body of 20,000 cheap globs (`*7?Q*`) matched for 382 s over
/// 30,000 names. The globs of one request now share one budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_globs_of_one_request_share_one_time_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (state, registry, _) = state(dir.path()).await;
    let infos: Vec<_> = (0..5000)
        .map(|i| type_info(&format!("T:MANY:{i:05}"), false))
        .collect();
    registry.put_type_infos(&infos).unwrap();
    let globs: Vec<String> = (0..20_000).map(|i| format!("*{i}?Q*")).collect();
    let body = format!("limit=-1&pv={}", globs.join(","));
    let (status, _, _, body) = send(
        &state,
        Request::post("/mgmt/bpl/getAllPVs")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap(),
    )
    .await;
    let msg = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
    assert!(
        msg.contains("too costly") && msg.contains("took longer than 5s"),
        "{msg}"
    );
}
