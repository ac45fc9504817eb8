//! The engine against the project's own CA server, in process: write failures keep the
//! samples (nothing lost, counted), buffers are bounded with overflow counted, and
//! timestamp and type problems are counted per PV.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use archiver_ca::server::{PvSpec, Server, ServerConfig};
use archiver_ca::{Client, Timestamp, Value};
use archiver_engine::{Engine, EngineConfig};
use archiver_pb::{Granularity, PbReader};
use archiver_storage::Tier;
use archiver_time::SystemClock;

use support::{every_event, monitor, post_values, wait_for};

async fn setup(sts_root: std::path::PathBuf, cfg: EngineConfig) -> (Server, Engine) {
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    let client = Client::new(server.client_config().build().unwrap())
        .await
        .unwrap();
    let engine = Engine::start(
        client,
        Tier::new("STS", sts_root, Granularity::Hour),
        cfg,
        Arc::new(SystemClock),
    );
    (server, engine)
}

fn now() -> Timestamp {
    Timestamp::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_disk_keeps_every_sample_until_it_can_write() {
    let dir = tempfile::tempdir().unwrap();
    // The tier root is under a regular file: every write fails until it is removed.
    let blocker = dir.path().join("blocked");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let cfg = EngineConfig {
        write_period: Duration::from_millis(200),
        ..EngineConfig::default()
    };
    let (server, engine) = setup(blocker.join("sts"), cfg).await;
    let pv = server.add_pv(PvSpec::new("T:DISK", Value::Double(0.0)));
    engine.archive("T:DISK", every_event()).unwrap();
    assert!(
        wait_for(10, || engine
            .status("T:DISK")
            .is_some_and(|s| s.conn.connected))
        .await
    );
    post_values(&pv, 1, 50, Duration::from_millis(10)).await;
    assert!(
        wait_for(10, || engine
            .status("T:DISK")
            .unwrap()
            .counters
            .write_errors
            >= 2)
        .await,
        "write errors are counted"
    );
    let st = engine.status("T:DISK").unwrap();
    assert_eq!(st.counters.events_written, 0);
    assert!(st.buffered >= 50, "samples kept in memory: {}", st.buffered);
    assert_eq!(st.counters.dropped_buffer_overflow, 0);

    // The disk comes back: everything is written, in order, once.
    std::fs::remove_file(&blocker).unwrap();
    assert!(wait_for(10, || engine.status("T:DISK").unwrap().buffered == 0).await);
    engine.shutdown().await;
    let tier = Tier::new("STS", blocker.join("sts"), Granularity::Hour);
    let mut values = Vec::new();
    for p in tier.partitions("T:DISK").unwrap() {
        let mut r = PbReader::open(&p.path).unwrap();
        while let Some(s) = r.next_sample().unwrap() {
            if let archiver_pb::Value::ScalarDouble(v) = s.value {
                values.push(v);
            }
        }
    }
    let tail: Vec<f64> = values.iter().copied().filter(|v| *v >= 1.0).collect();
    assert_eq!(tail, (1..=50).map(f64::from).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_timestamps_and_decimation_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        // Never writes during the test: the buffer bound is what limits memory.
        write_period: Duration::from_secs(3600),
        max_buffer_samples: 20,
        ..EngineConfig::default()
    };
    let (server, engine) = setup(dir.path().join("sts"), cfg).await;
    let pv = server.add_pv(PvSpec::new("T:FAST", Value::Double(0.0)));
    engine.archive("T:FAST", every_event()).unwrap();
    let slow = server.add_pv(PvSpec::new("T:SLOW", Value::Double(0.0)));
    engine.archive("T:SLOW", monitor(1.0)).unwrap();
    assert!(
        wait_for(10, || ["T:FAST", "T:SLOW"]
            .iter()
            .all(|p| engine.status(p).is_some_and(|s| s.conn.connected)))
        .await
    );
    let t0 = now().secs + 1;
    for k in 1..=100u32 {
        let stamp = Timestamp {
            secs: t0,
            nanos: k * 1000,
        };
        pv.post(Value::Double(f64::from(k)), stamp, 0, 0).unwrap();
        slow.post(Value::Double(f64::from(k)), stamp, 0, 0).unwrap();
    }
    // Problem timestamps: in the future, before 1991, older than the last.
    pv.post(
        Value::Double(-1.0),
        Timestamp {
            secs: t0 + 7200,
            nanos: 0,
        },
        0,
        0,
    )
    .unwrap();
    pv.post(
        Value::Double(-2.0),
        Timestamp {
            secs: 600_000_000,
            nanos: 0,
        },
        0,
        0,
    )
    .unwrap();
    pv.post(Value::Double(-3.0), Timestamp { secs: t0, nanos: 5 }, 0, 0)
        .unwrap();
    assert!(
        wait_for(10, || engine
            .status("T:FAST")
            .unwrap()
            .counters
            .events_received
            >= 104)
        .await
    );
    let st = engine.status("T:FAST").unwrap();
    let c = st.counters;
    assert_eq!(c.dropped_timestamp, 3, "{c:?}");
    // 101 accepted (the initial value and 100 updates) into a buffer of 20.
    assert_eq!(c.events_stored, 101, "{c:?}");
    assert_eq!(st.buffered, 20);
    assert_eq!(c.dropped_buffer_overflow, 81, "{c:?}");
    // The buffer kept the newest samples.
    let snap = engine.buffered("T:FAST").unwrap();
    assert_eq!(
        snap.samples.last().map(|s| s.value.clone()),
        Some(archiver_pb::Value::ScalarDouble(100.0))
    );
    // Decimated to one sample per period: all 100 updates fall into one 1-s bin.
    let slow_st = engine.status("T:SLOW").unwrap();
    assert!(
        slow_st.counters.events_stored <= 2,
        "{:?}",
        slow_st.counters
    );
    engine.shutdown().await;
}

static WRITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn count_write() {
    WRITES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_write_hook_runs_and_catalogue_candidates_skip_recorded_pvs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        write_period: Duration::from_millis(200),
        after_write: Some(count_write),
        ..EngineConfig::default()
    };
    let (server, engine) = setup(dir.path().join("sts"), cfg).await;
    let pv = server.add_pv(PvSpec::new("T:KNOWN", Value::Double(1.0)));
    engine.archive("T:KNOWN", every_event()).unwrap();
    engine.archive("T:NOWHERE", every_event()).unwrap();
    assert!(
        wait_for(10, || engine
            .status("T:KNOWN")
            .is_some_and(|s| s.meta.known && s.archived_type.is_some()))
        .await,
        "type and metadata of T:KNOWN"
    );
    pv.post(Value::Double(2.0), now(), 0, 0).unwrap();
    let todo: Vec<String> = engine
        .uncatalogued_status(false)
        .into_iter()
        .map(|s| s.name)
        .collect();
    // T:NOWHERE never connected: no type yet, nothing to record.
    assert_eq!(todo, ["T:KNOWN"]);
    engine.mark_catalogued(["T:KNOWN", "T:NOT-HELD"]);
    assert!(engine.uncatalogued_status(false).is_empty());
    // ...but every known PV when all are asked for (the final sync at shutdown).
    assert_eq!(engine.uncatalogued_status(true).len(), 1);

    let before = WRITES.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        wait_for(10, || WRITES.load(std::sync::atomic::Ordering::SeqCst)
            >= before + 2)
        .await,
        "the hook runs after every write period"
    );
    assert!(
        wait_for(10, || engine
            .status("T:KNOWN")
            .is_some_and(|s| s.counters.events_written >= 2))
        .await
    );
    engine.shutdown().await;
}

/// A PV that never connects is one name searched for, not one per archive field: the
/// fields' channels open once the PV's own channel has connected (an IOC serving PV serves
/// PV.FIELD). 3000 such PVs with 6 archive fields each searched 21 000 names a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pv_that_never_connects_searches_one_name_and_its_fields_open_once_it_connects() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    let client = Client::new(server.client_config().build().unwrap())
        .await
        .unwrap();
    let engine = Engine::start(
        client.clone(),
        Tier::new("STS", dir.path().join("sts"), Granularity::Hour),
        EngineConfig::default(),
        Arc::new(SystemClock),
    );
    let cfg = archiver_engine::PvConfig {
        archive_fields: ["HIHI", "HIGH", "LOW", "LOLO"].map(String::from).to_vec(),
        ..monitor(0.0)
    };
    engine.archive("T:NOBODY", cfg).unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let stats = client.stats();
    let names = stats
        .search_names
        .load(std::sync::atomic::Ordering::Relaxed);
    let datagrams = stats
        .search_datagrams
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(datagrams >= 3, "{datagrams} search datagrams in 0.7 s");
    assert_eq!(
        names, datagrams,
        "one name a pass: {names} names in {datagrams} datagrams"
    );

    // Once the PV exists and connects, its fields are monitored: their values arrive.
    server.add_pv(PvSpec::new("T:NOBODY", Value::Double(1.0)));
    for f in ["HIHI", "HIGH", "LOW", "LOLO"] {
        server.add_pv(PvSpec::new(&format!("T:NOBODY.{f}"), Value::Double(5.0)));
    }
    assert!(
        wait_for(20, || engine
            .status("T:NOBODY")
            .is_some_and(|s| s.conn.connected))
        .await
    );
    let searched_fields = wait_for(10, || {
        stats
            .search_replies
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 5
    })
    .await;
    assert!(
        searched_fields,
        "the four fields' channels were never searched and found"
    );
    engine.shutdown().await;
}
