//! The write-ahead journal in the engine, against the project's own CA server: a segment
//! stays while a sample journaled in it is unwritten (the disk fails) and its contents
//! replay to exactly the samples received; it goes once they are written; beyond its
//! byte bound the oldest segment goes (counted) even while needed.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use archiver_ca::server::{PvSpec, Server, ServerConfig};
use archiver_ca::{Client, Value};
use archiver_engine::{Engine, EngineConfig, JournalConfig};
use archiver_pb::{Granularity, PbReader};
use archiver_storage::Tier;
use archiver_storage::journal::{replay, segments};
use archiver_time::SystemClock;

use support::{every_event, post_values, wait_for};

/// An engine writing to an STS at `sts`, journaling as `journal` says, with a CA server.
async fn setup(sts: &Path, journal: JournalConfig) -> (Server, Engine) {
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    let client = Client::new(server.client_config().build().unwrap())
        .await
        .unwrap();
    let cfg = EngineConfig {
        write_period: Duration::from_millis(200),
        journal: Some(journal),
        ..EngineConfig::default()
    };
    let engine = Engine::start(
        client,
        Tier::new("STS", sts, Granularity::Hour),
        cfg,
        Arc::new(SystemClock),
    );
    (server, engine)
}

/// A PV `name` served by `server`, archived at every event, once connected.
async fn archived(server: &Server, engine: &Engine, name: &str) -> Arc<archiver_ca::server::Pv> {
    let pv = server.add_pv(PvSpec::new(name, Value::Double(0.0)));
    engine.archive(name, every_event()).unwrap();
    assert!(wait_for(10, || engine.status(name).is_some_and(|s| s.conn.connected)).await);
    pv
}

fn values(tier: &Tier, pv: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for p in tier.partitions(pv).unwrap() {
        let mut r = PbReader::open(&p.path).unwrap();
        while let Some(s) = r.next_sample().unwrap() {
            if let archiver_pb::Value::ScalarDouble(v) = s.value {
                out.push(v);
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Posts values `from..from + n` to `pv`, 5 ms apart.
async fn post(pv: &archiver_ca::server::Pv, from: u32, n: u32) {
    post_values(pv, from, n, Duration::from_millis(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_stays_while_its_samples_are_unwritten_and_replays_them_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let jdir: PathBuf = dir.path().join("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    // The STS root is under a regular file: every write fails until it is removed.
    let blocker = dir.path().join("blocked");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let (server, engine) = setup(&blocker.join("sts"), JournalConfig::new(&jdir, 1)).await;
    let pv = archived(&server, &engine, "T:JRNL").await;
    post(&pv, 1, 50).await;
    assert!(
        wait_for(10, || engine.status("T:JRNL").unwrap().buffered >= 50).await,
        "received"
    );
    // Past two rotations (at least 1 s each) and two trims: the first segment is kept.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let segs = segments(&jdir).unwrap();
    assert_eq!(segs.first().map(|s| s.0), Some(1), "{segs:?}");
    assert_eq!(engine.status("T:JRNL").unwrap().counters.events_written, 0);

    // What a crash now would leave: the journal replays to exactly the samples received.
    let copy = dir.path().join("copy");
    copy_dir(&jdir, &copy);
    let other = Tier::new("STS", dir.path().join("other"), Granularity::Hour);
    let (report, next) = replay(&copy, &other, &|_| Some(None)).unwrap();
    let got: Vec<f64> = values(&other, "T:JRNL")
        .into_iter()
        .filter(|v| *v >= 1.0)
        .collect();
    assert_eq!(
        got,
        (1..=50).map(f64::from).collect::<Vec<_>>(),
        "{report:?}"
    );
    assert_eq!(report.already_stored, 0);
    assert!(next > segs.last().unwrap().0, "{next} after {segs:?}");
    assert!(
        segments(&copy).unwrap().is_empty(),
        "replayed segments removed"
    );

    // The disk comes back: the samples are written and their segments go.
    std::fs::remove_file(&blocker).unwrap();
    assert!(wait_for(10, || engine.status("T:JRNL").unwrap().buffered == 0).await);
    // The trimmer counts a removal just after the file goes: wait for both, or a
    // preempted trimmer leaves the count at 0 when the file is already gone.
    assert!(
        wait_for(10, || segments(&jdir)
            .unwrap()
            .first()
            .is_none_or(|s| s.0 > 1)
            && engine.journal_stats().unwrap().segments_removed >= 1)
        .await,
        "the first segment is removed once its samples are written: {:?} {:?}",
        segments(&jdir).unwrap(),
        engine.journal_stats()
    );
    let stats = engine.journal_stats().unwrap();
    assert!(
        stats.segments_removed >= 1 && stats.frames >= 1,
        "{stats:?}"
    );
    assert_eq!(stats.write_errors, 0, "{stats:?}");
    // A clean stop with everything written leaves no segment.
    engine.shutdown().await;
    assert!(segments(&jdir).unwrap().is_empty(), "{:?}", segments(&jdir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_its_bound_the_oldest_segment_goes_even_while_needed() {
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    let blocker = dir.path().join("blocked");
    let mut cfg = JournalConfig::new(&jdir, 1);
    cfg.max_bytes = 1;
    std::fs::write(&blocker, b"not a folder").unwrap();
    let (server, engine) = setup(&blocker.join("sts"), cfg).await;
    let pv = archived(&server, &engine, "T:BOUND").await;
    // Samples over more than two rotations: the first segment is over the bound.
    for round in 0..6 {
        post(&pv, 1 + round * 10, 10).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        wait_for(10, || engine.journal_stats().unwrap().segments_forced_out
            >= 1)
        .await,
        "{:?}",
        engine.journal_stats()
    );
    assert!(
        segments(&jdir).unwrap().first().is_none_or(|s| s.0 > 1),
        "{:?}",
        segments(&jdir)
    );
    // Nothing is lost from memory: the disk comes back and every sample is written.
    std::fs::remove_file(&blocker).unwrap();
    assert!(wait_for(10, || engine.status("T:BOUND").unwrap().buffered == 0).await);
    engine.shutdown().await;
    let tier = Tier::new("STS", blocker.join("sts"), Granularity::Hour);
    let got: Vec<f64> = values(&tier, "T:BOUND")
        .into_iter()
        .filter(|v| *v >= 1.0)
        .collect();
    assert_eq!(got, (1..=60).map(f64::from).collect::<Vec<_>>());
}

/// A journal that cannot be written (its folder gone: a full or failed disk alike) never
/// stops ingest: the failures are counted, the samples still reach the store, and the
/// journal resumes, in a new segment, once it can write again. It syncs about once per
/// `fsync_interval` while samples come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_be_written_never_stops_ingest_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let jdir = dir.path().join("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    let mut journal = JournalConfig::new(&jdir, 1);
    journal.fsync_interval = Duration::from_millis(200);
    let sts = dir.path().join("sts");
    let (server, engine) = setup(&sts, journal).await;
    let pv = archived(&server, &engine, "T:JFAIL").await;
    post(&pv, 1, 20).await;
    assert!(wait_for(10, || engine.journal_stats().unwrap().syncs >= 1).await);
    // The journal's folder becomes a file: no segment can be created or written.
    std::fs::rename(&jdir, dir.path().join("journal.away")).unwrap();
    std::fs::write(&jdir, b"not a folder").unwrap();
    // Past the segment's age (1 s at least), so a new segment is needed.
    for round in 0..4 {
        post(&pv, 21 + round * 10, 10).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        wait_for(10, || engine.journal_stats().unwrap().write_errors >= 1).await,
        "{:?}",
        engine.journal_stats()
    );
    assert!(wait_for(10, || engine.status("T:JFAIL").unwrap().buffered == 0).await);
    // Back: frames are written again, into a new segment.
    std::fs::remove_file(&jdir).unwrap();
    std::fs::create_dir_all(&jdir).unwrap();
    let frames = engine.journal_stats().unwrap().frames;
    post(&pv, 61, 10).await;
    assert!(
        wait_for(10, || engine.journal_stats().unwrap().frames > frames).await,
        "{:?}",
        engine.journal_stats()
    );
    engine.shutdown().await;
    let tier = Tier::new("STS", &sts, Granularity::Hour);
    let got: Vec<f64> = values(&tier, "T:JFAIL")
        .into_iter()
        .filter(|v| *v >= 1.0)
        .collect();
    assert_eq!(got, (1..=70).map(f64::from).collect::<Vec<_>>());
}
