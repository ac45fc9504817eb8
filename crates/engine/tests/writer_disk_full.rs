//! The engine's writer against a disk that fills up in the middle of a write (the
//! storage crate's simulated filesystem): the failed batch leaves no torn line and no
//! sample in the file, stays in memory, and is written exactly once when space returns.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use archiver_ca::server::{PvSpec, Server, ServerConfig};
use archiver_ca::{Client, Timestamp, Value};
use archiver_engine::{Engine, EngineConfig};
use archiver_pb::{Granularity, PbReader};
use archiver_storage::testing::SimBackend;
use archiver_storage::{Backend, Tier};
use archiver_time::SystemClock;

use support::{every_event, wait_for};

/// The values stored for `pv`, and whether any file has a torn tail or a bad line.
fn stored(sim: &SimBackend, tier: &Tier, pv: &str) -> (Vec<f64>, bool) {
    let mut values = Vec::new();
    let mut damaged = false;
    for p in tier.partitions(pv).unwrap() {
        let mut r = PbReader::new(Cursor::new(sim.read_file(&p.path).unwrap())).unwrap();
        while let Some(s) = r.next_sample().unwrap() {
            if let archiver_pb::Value::ScalarDouble(v) = s.value {
                values.push(v);
            }
        }
        damaged |= r.torn_tail() || r.skipped_lines() > 0;
    }
    (values, damaged)
}

/// An engine writing to a simulated disk every 200 ms, archiving `T:FULL` of an in-process
/// CA server at every event.
async fn engine_on_sim() -> (
    Server,
    Engine,
    SimBackend,
    Tier,
    Arc<archiver_ca::server::Pv>,
) {
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    let client = Client::new(server.client_config().build().unwrap())
        .await
        .unwrap();
    let sim = SimBackend::new();
    let tier = Tier::with_backend(
        "STS",
        "/arch/sts",
        Granularity::Hour,
        Backend::new(sim.clone()),
    );
    let cfg = EngineConfig {
        write_period: Duration::from_millis(200),
        ..EngineConfig::default()
    };
    let engine = Engine::start(client, tier.clone(), cfg, Arc::new(SystemClock));
    let pv = server.add_pv(PvSpec::new("T:FULL", Value::Double(0.0)));
    engine.archive("T:FULL", every_event()).unwrap();
    (server, engine, sim, tier, pv)
}

/// A disk still full at shutdown: the engine retries, then says what it could not write
/// (so the binary reports the loss instead of claiming success).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_that_cannot_write_reports_what_is_lost() {
    let (_server, engine, sim, _tier, pv) = engine_on_sim().await;
    assert!(
        wait_for(10, || engine
            .status("T:FULL")
            .is_some_and(|s| s.counters.events_written == 1))
        .await
    );
    sim.set_capacity(Some(sim.used_bytes()));
    let t0 = Timestamp::now().secs + 1;
    for k in 1..=20u32 {
        let stamp = Timestamp {
            secs: t0,
            nanos: k * 1000,
        };
        pv.post(Value::Double(f64::from(k)), stamp, 0, 0).unwrap();
    }
    assert!(wait_for(10, || engine.status("T:FULL").unwrap().buffered >= 20).await);
    let left = engine.shutdown().await;
    assert_eq!(left.pvs, 1, "{left:?}");
    assert_eq!(left.samples, 20, "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_full_in_the_middle_of_a_write_keeps_the_batch_and_writes_it_once() {
    let (_server, engine, sim, tier, pv) = engine_on_sim().await;
    // The initial value is written: the file exists.
    assert!(
        wait_for(10, || engine
            .status("T:FULL")
            .is_some_and(|s| s.counters.events_written == 1))
        .await
    );
    let used = sim.used_bytes();
    // Room for a few lines: the disk fills in the middle of the next write.
    sim.set_capacity(Some(used + 101));
    let t0 = Timestamp::now().secs + 1;
    for k in 1..=50u32 {
        let stamp = Timestamp {
            secs: t0,
            nanos: k * 1000,
        };
        pv.post(Value::Double(f64::from(k)), stamp, 0, 0).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        wait_for(10, || engine
            .status("T:FULL")
            .is_some_and(|s| s.counters.write_errors >= 2))
        .await,
        "write errors are counted"
    );
    let st = engine.status("T:FULL").unwrap();
    assert_eq!(st.counters.events_written, 1);
    assert!(st.buffered >= 50, "the batch is kept: {}", st.buffered);
    assert_eq!(st.counters.dropped_buffer_overflow, 0);
    // Nothing of the failed writes stays on disk: no torn line, no partial batch.
    assert_eq!(sim.used_bytes(), used, "partial writes were rolled back");
    assert_eq!(stored(&sim, &tier, "T:FULL"), (vec![0.0], false));
    assert!(
        sim.op_log().iter().filter(|l| l.contains("append")).count() >= 3,
        "the writer tried"
    );

    // Space returns: everything is written, in order, once.
    sim.set_capacity(None);
    assert!(wait_for(10, || engine.status("T:FULL").unwrap().buffered == 0).await);
    assert_eq!(engine.shutdown().await.samples, 0, "nothing left unwritten");
    let (values, damaged) = stored(&sim, &tier, "T:FULL");
    let mut want = vec![0.0];
    want.extend((1..=50).map(f64::from));
    assert_eq!(values, want);
    assert!(!damaged);
    let c = engine.status("T:FULL").unwrap().counters;
    assert_eq!(c.events_written, 51, "{c:?}");
    assert_eq!(c.refused_by_writer, 0, "{c:?}");
}
