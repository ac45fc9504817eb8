//! A real client from PyPI against the real binary: aapy (`aa.pb.PbFetcher` reading
//! `getData.raw`, `aa.js.JsonFetcher` reading `getData.json`, with protobuf 3.20.3, as
//! `scripts/setup.sh` installs them) run by `tests/clients/aapy_fetch.py`.
//!
//! * Generated data (`archiver pb generate`) across a year boundary: aapy splits pbraw into
//!   year chunks at empty lines and reads each chunk's PayloadInfo, so a framing mistake
//!   loses, repeats or misdates samples; every sample is checked against the generator's
//!   rule (value k at start + k/rate).
//! * A live IOC (softioc): an ai and an mbbi archived by the engine; aapy's raw and json
//!   agree with each other and with the IOC's values, and the mbbi's state labels
//!   (`ENUM_n` headers) reach aapy's `enum_options` / `enum_strings`.

#![allow(clippy::unwrap_used)]

#[path = "../crates/ca/tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use archiver_ca::{Timestamp, Value};
use common::{Ioc, expected, tick_of};
use serde_json::{Value as Json, json};
use support::Archiver;

/// The Python of the test venv, with aapy importable (a failure says how to get it).
fn python() -> String {
    let py = common::python();
    let ok = Command::new(&py)
        .args(["-c", "import aa.pb, aa.js, google.protobuf"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this test needs aapy in {py}: run scripts/setup.sh (pip install aapy==0.12 protobuf==3.20.3)"
    );
    py
}

/// Runs aapy against `a` for `pv` over `[t0, t1]` (Unix seconds); returns its JSON.
fn aapy(a: &Archiver, pv: &str, t0: f64, t1: f64) -> Json {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/aapy_fetch.py");
    let out = Command::new(python())
        .arg(script)
        .args(["127.0.0.1", &a.port.to_string(), pv])
        .args([t0.to_string(), t1.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aapy on {pv}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn floats(v: &Json) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn aapy_reads_generated_data_across_a_year_boundary() {
    let dir = tempfile::tempdir().unwrap();
    // 2 h at 10 Hz from 2023-12-31T23:00:00Z: 72,000 samples in hourly files of two years.
    let start = 1_704_063_600i64;
    let out = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args([
            "pb",
            "generate",
            "--pvs",
            "2",
            "--rate",
            "10",
            "--duration",
            "2h",
        ])
        .args(["--start", "2023-12-31T23:00:00Z", "--prefix", "AAPY:GEN:"])
        .args(["--register", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = Archiver::start(dir.path(), 9, 0, 1.0);
    // From 23:30 to 00:30: samples 18,000 (at `from`, the sample at or before it) to 54,000.
    let (t0, t1) = (start + 1800, start + 5400);
    let got = aapy(&a, "AAPY:GEN:1", t0 as f64, t1 as f64);
    for key in ["raw", "json"] {
        let d = &got[key];
        let values = floats(&d["values"]);
        let times = floats(&d["timestamps"]);
        let want: Vec<f64> = (18_000..=54_000).map(|k| k as f64).collect();
        assert_eq!(values.len(), want.len(), "{key}: samples");
        assert!(
            values == want,
            "{key}: values are not 18000..=54000 in order"
        );
        for (k, t) in (18_000..=54_000i64).zip(&times) {
            let exact = start as f64 + k as f64 / 10.0;
            assert!(
                (t - exact).abs() < 1e-5,
                "{key}: sample {k} at {t}, not {exact}"
            );
        }
        assert!(d["severities"].as_array().unwrap().iter().all(|s| s == 0));
    }
}

fn ts(s: &Json) -> Timestamp {
    Timestamp {
        secs: s["secs"].as_i64().unwrap(),
        nanos: s["nanos"].as_u64().unwrap() as u32,
    }
}

#[test]
fn aapy_reads_a_live_ioc_pv_raw_and_json_with_enum_labels() {
    let ioc = Ioc::start("AAPY");
    let dir = tempfile::tempdir().unwrap();
    let a = Archiver::start(dir.path(), ioc.port, ioc.beacon_port, 1.0);
    let (ai, mbbi) = (ioc.pv("AI"), ioc.pv("MBBI"));
    let items = json!([{"pv": ai, "samplingperiod": "0"}, {"pv": mbbi, "samplingperiod": "0"}]);
    let (status, body) = a.post("/mgmt/bpl/archivePV", &items.to_string());
    assert_eq!(status, 200, "{body}");
    let now = || support::now_secs();
    // At least 3 s of 10 Hz updates of both PVs, part written to files, part in the buffer.
    a.wait_until(30.0, "30 samples of each PV", |a| {
        [&ai, &mbbi].iter().all(|pv| {
            let path = format!(
                "/retrieval/data/getData.json?pv={}&from={}&to={}",
                support::enc(pv),
                support::enc(&support::iso(now() - 600)),
                support::enc(&support::iso(now() + 60))
            );
            // 404 until the PV has connected.
            let (status, body) = a.get(&path);
            status == 200
                && serde_json::from_str::<Json>(&body).unwrap()[0]["data"]
                    .as_array()
                    .is_some_and(|d| d.len() >= 30)
        })
    });
    // A closed window (ending 2 s ago): everything in it has arrived, so every read sees
    // the same samples.
    std::thread::sleep(Duration::from_millis(1500));
    let t1 = now() - 2;
    let t0 = t1 - 3;
    let labels = ["OK", "WARN", "FAULT", "OFF"];
    for (name, pv) in [("AI", &ai), ("MBBI", &mbbi)] {
        let ours = a.data(pv, &support::iso(t0), &support::iso(t1));
        // 10 Hz for 3 s; fewer only if the IOC fell far behind on a loaded machine.
        assert!(ours.len() >= 10, "{pv}: {} samples in 3 s", ours.len());
        let got = aapy(&a, pv, t0 as f64, t1 as f64);
        for key in ["raw", "json"] {
            let d = &got[key];
            let values = floats(&d["values"]);
            let times = floats(&d["timestamps"]);
            // aapy keeps the samples of [t0, t1] and the one before t0, as the server sends.
            assert_eq!(values.len(), ours.len(), "{pv} {key}: samples");
            for ((v, t), s) in values.iter().zip(&times).zip(&ours) {
                let at = ts(s);
                let exact = at.secs as f64 + f64::from(at.nanos) * 1e-9;
                assert!(
                    (t - exact).abs() < 1e-5,
                    "{pv} {key}: time {t}, ours {exact}"
                );
                let want = match expected(name, tick_of(at)) {
                    Value::Double(x) => x,
                    Value::Enum(x) => f64::from(x),
                    other => panic!("{other:?}"),
                };
                assert_eq!(*v, want, "{pv} {key}: value at tick {}", tick_of(at));
            }
            if name == "MBBI" {
                let options = &d["enum_options"];
                let want: serde_json::Map<String, Json> = labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (i.to_string(), json!(l)))
                    .collect();
                assert_eq!(options, &Json::Object(want), "{pv} {key}: enum labels");
                let strings = d["enum_strings"].as_array().unwrap();
                for (s, v) in strings.iter().zip(&values) {
                    assert_eq!(s, labels[*v as usize], "{pv} {key}: label of {v}");
                }
            } else {
                assert_eq!(d["enum_options"], json!({}), "{pv} {key}");
            }
        }
    }
}
