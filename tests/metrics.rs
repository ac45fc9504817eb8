//! `/metrics`, `/health` and `/ready` of the real binary (`archiver demo`): the metrics
//! parse as Prometheus text format, every family of docs/metrics.md is there with its
//! type, and the event counters move while the demo archives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use prometheus_parse::{Scrape, Value};
use support::Archiver;

/// Parses one `/metrics` answer.
fn scrape(a: &Archiver) -> Scrape {
    let (status, body) = a.get("/metrics");
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The value of the sample `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

/// `(name, type)` of every metric listed in docs/metrics.md's table.
fn documented() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md"),
    )
    .unwrap();
    doc.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells
                .get(1)?
                .strip_prefix("`archiver_")?
                .strip_suffix('`')?;
            Some((format!("archiver_{name}"), cells.get(2)?.to_string()))
        })
        .collect()
}

/// The type `prometheus-parse` gave the samples of `name`.
fn kind(s: &Scrape, name: &str) -> Option<&'static str> {
    s.samples
        .iter()
        .find(|x| x.metric == name)
        .map(|x| match x.value {
            Value::Counter(_) => "counter",
            Value::Gauge(_) => "gauge",
            Value::Histogram(_) => "histogram",
            Value::Summary(_) => "summary",
            Value::Untyped(_) => "untyped",
        })
}

#[test]
fn metrics_health_and_ready_of_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Archiver::start_demo(dir.path(), "[engine]\nwrite_period_secs = 1\n");

    let (status, body) = a.get("/health");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    a.wait_until(20.0, "/ready answers 200", |a| a.get("/ready").0 == 200);
    let ready: serde_json::Value = serde_json::from_str(&a.get("/ready").1).unwrap();
    assert_eq!(ready["status"], "ready");

    let first = scrape(&a);
    let (status, _) = a.get("/retrieval/data/getData.json?pv=DEMO:AI");
    assert_eq!(status, 200);
    // The demo's PVs update every second or faster, the writer writes every second.
    let mut second = scrape(&a);
    a.wait_until(20.0, "events received, written and timed", |a| {
        second = scrape(a);
        let moved = |n: &str| value(&second, n, &[]) > value(&first, n, &[]);
        moved("archiver_events_received_total")
            && moved("archiver_events_written_total")
            && moved("archiver_write_seconds")
    });

    // Every documented family is served, with its type, and nothing undocumented is.
    let docs = documented();
    assert!(
        docs.len() >= 25,
        "docs/metrics.md lists {} metrics",
        docs.len()
    );
    let served: Vec<&String> = second.docs.keys().collect();
    for name in &served {
        assert!(
            docs.contains_key(*name),
            "{name} is served but not in docs/metrics.md"
        );
    }
    for (name, ty) in &docs {
        assert!(
            second.docs.contains_key(name),
            "{name} is documented but not served"
        );
        if let Some(k) = kind(&second, name) {
            assert_eq!(k, ty, "type of {name}");
        }
    }

    // The labelled families carry the documented labels and sensible values.
    let connected = value(&second, "archiver_pvs", &[("state", "connected")]).unwrap();
    assert!(connected >= 1.0, "connected PVs: {connected}");
    assert_eq!(
        value(
            &second,
            "archiver_events_dropped_total",
            &[("reason", "type_change")]
        ),
        Some(0.0)
    );
    assert!(
        value(
            &second,
            "archiver_store_available_bytes",
            &[("store", "STS")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(kind(&second, "archiver_write_seconds"), Some("histogram"));
    let json = |s: &Scrape| {
        value(
            s,
            "archiver_retrieval_requests_total",
            &[("format", "json")],
        )
        .unwrap()
    };
    assert_eq!(json(&second) - json(&first), 1.0);
    let json_bytes = |s: &Scrape| {
        value(
            s,
            "archiver_retrieval_response_bytes_total",
            &[("format", "json")],
        )
        .unwrap()
    };
    assert!(json_bytes(&second) > json_bytes(&first));
    assert!(value(&second, "archiver_ca_circuits", &[]).unwrap() >= 1.0);
    assert!(value(&second, "archiver_ca_search_datagrams_total", &[]).unwrap() >= 1.0);
    // exported (its value depends on the other CA clients of the host, on port 5065)
    assert!(value(&second, "archiver_ca_repeater_takeovers_total", &[]).is_some());
    let buffered = value(&second, "archiver_buffered_samples", &[]).unwrap();
    let capacity = value(&second, "archiver_buffer_capacity_samples", &[]).unwrap();
    assert!(
        capacity > 0.0 && buffered <= capacity,
        "{buffered} of {capacity}"
    );

    assert!(a.terminate(), "clean exit");
}
