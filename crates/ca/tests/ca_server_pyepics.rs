//! Interop: pyepics (the real libca) reads and monitors every native type served by this
//! crate's server and gets the same values, time stamps, alarms and metadata.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use archiver_ca::Value;
use archiver_ca::server::{Server, ServerConfig, sim};
use serde_json::Value as Json;

const RATE: u32 = 10;

fn tick(secs: i64, nsec: u32) -> i64 {
    let step = 1_000_000_000 / RATE;
    assert_eq!(
        nsec % step,
        0,
        "time stamp {secs}.{nsec:09} is not on a tick"
    );
    secs * i64::from(RATE) + i64::from(nsec / step)
}

/// Whether pyepics' JSON rendering of a value equals ours.
fn same(v: &Value, j: &Json) -> bool {
    let num = |j: &Json| j.as_f64();
    match v {
        Value::String(s) => j.as_str() == Some(&*s.to_str_lossy()),
        Value::Float(f) => num(j).map(|x| x as f32) == Some(*f),
        Value::StringArray(a) => j.as_array().is_some_and(|x| {
            x.len() == a.len()
                && x.iter()
                    .zip(a)
                    .all(|(j, s)| j.as_str() == Some(&*s.to_str_lossy()))
        }),
        Value::FloatArray(a) => j.as_array().is_some_and(|x| {
            x.len() == a.len()
                && x.iter()
                    .zip(a)
                    .all(|(j, f)| num(j).map(|x| x as f32) == Some(*f))
        }),
        _ if v.is_array() => j.as_array().is_some_and(|x| {
            x.len() == v.len() && x.iter().enumerate().all(|(i, j)| num(j) == v.get_f64(i))
        }),
        _ => num(j) == v.get_f64(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyepics_reads_and_monitors_every_type_from_our_server() {
    let py = common::python();
    let server = Server::start(ServerConfig {
        port: 0,
        beacon_addrs: vec![],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let _updates = sim::spawn_updates(&server, sim::every_type("PYI:"), RATE);
    let names: Vec<String> = sim::KINDS.iter().map(|k| format!("PYI:{k}")).collect();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ioc/pyepics_client.py");
    let child = tokio::process::Command::new(&py)
        .arg(script)
        .arg("3")
        .args(&names)
        .env("EPICS_CA_ADDR_LIST", format!("127.0.0.1:{}", server.port()))
        .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
        .env("EPICS_CA_MAX_ARRAY_BYTES", "1000000")
        .env("EPICS_CA_REPEATER_PORT", common::free_port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Json> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        lines.iter().any(|l| l["kind"] == "done"),
        "pyepics client did not finish:\n{text}"
    );

    let types: HashMap<&str, (&str, u64)> = [
        ("AI", ("time_double", 1)),
        ("LI", ("time_long", 1)),
        ("SHORT", ("time_short", 1)),
        ("FLOAT", ("time_float", 1)),
        ("CHAR", ("time_char", 1)),
        ("SI", ("time_string", 1)),
        ("MBBI", ("time_enum", 1)),
        ("WF", ("time_double", 16)),
        ("WFC", ("time_char", 64)),
        ("WFS", ("time_short", 10)),
        ("WFL", ("time_long", 8)),
        ("WFF", ("time_float", 8)),
        ("WFSTR", ("time_string", 3)),
    ]
    .into_iter()
    .collect();

    let mut gets = 0;
    let mut mons: HashMap<String, Vec<i64>> = HashMap::new();
    for l in &lines {
        let kind_tag = l["kind"].as_str().unwrap_or("");
        if kind_tag == "error" {
            panic!("pyepics: {l}");
        }
        if kind_tag != "get" && kind_tag != "mon" {
            continue;
        }
        let name = l["name"].as_str().unwrap();
        let kind = sim::kind_of(name);
        let (Some(secs), Some(nsec)) = (l["secs"].as_f64(), l["nsec"].as_u64()) else {
            panic!("no time stamp: {l}")
        };
        let k = tick(secs as i64, nsec as u32);
        let want = sim::value_at(kind, k).unwrap();
        assert!(
            same(&want, &l["value"]),
            "{name} at tick {k}: pyepics {} vs ours {want:?}",
            l["value"]
        );
        if kind == "AI" {
            let (status, severity) = sim::ai_alarm(want.get_f64(0).unwrap());
            assert_eq!(
                (l["status"].as_u64(), l["severity"].as_u64()),
                (Some(u64::from(status)), Some(u64::from(severity)))
            );
        }
        if kind_tag == "mon" {
            mons.entry(name.to_string()).or_default().push(k);
            continue;
        }
        gets += 1;
        let (ty, count) = types[kind];
        assert_eq!(
            (l["type"].as_str(), l["count"].as_u64()),
            (Some(ty), Some(count)),
            "{name}"
        );
        let ctrl = &l["ctrl"];
        let meta = sim::meta_of(kind);
        match kind {
            "AI" | "LI" => {
                assert_eq!(ctrl["units"].as_str(), Some(meta.units.as_str()));
                assert_eq!(
                    ctrl["upper_disp_limit"].as_f64(),
                    Some(meta.limits.upper_disp)
                );
                assert_eq!(
                    ctrl["lower_alarm_limit"].as_f64(),
                    Some(meta.limits.lower_alarm)
                );
                assert_eq!(
                    ctrl["upper_warning_limit"].as_f64(),
                    Some(meta.limits.upper_warning)
                );
                assert_eq!(
                    ctrl["upper_ctrl_limit"].as_f64(),
                    Some(meta.limits.upper_ctrl)
                );
                if kind == "AI" {
                    assert_eq!(ctrl["precision"].as_i64(), Some(3));
                }
            }
            "WF" | "FLOAT" => {
                assert_eq!(ctrl["units"].as_str(), Some(meta.units.as_str()));
                assert_eq!(ctrl["precision"].as_i64(), Some(i64::from(meta.precision)));
            }
            "MBBI" => {
                let labels: Vec<&str> = ctrl["enum_strs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Json::as_str)
                    .collect();
                assert_eq!(labels, ["OK", "WARN", "FAULT", "OFF"]);
            }
            _ => {}
        }
    }
    assert_eq!(gets, names.len());
    for n in &names {
        let ks = mons
            .get(n)
            .unwrap_or_else(|| panic!("no monitor updates for {n}"));
        assert!(ks.len() >= 20, "{n}: {} updates in 3 s at 10 Hz", ks.len());
        for w in ks.windows(2) {
            assert_eq!(w[1], w[0] + 1, "{n}: gap in monitor ticks");
        }
    }
}
