//! The appliance's storage operations: the ETL service driven by a `ManualClock` (a
//! catch-up run at start, then nothing before hh:05, the closed hour after it, stop ends
//! it), consolidation into a
//! named store, consolidation on shutdown, and deleting a PV's data in a range.

#![allow(clippy::unwrap_used)]

#[path = "../../engine/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use archiver_appliance::{
    Appliance, ApplianceParts, CancellationToken, EtlCounts, Policy, StorageOpsError,
};
use archiver_ca::Client;
use archiver_ca::server::{Server, ServerConfig};
use archiver_engine::{Engine, EngineConfig};
use archiver_pb::time::start_of_year;
use archiver_pb::{PayloadType, Sample, Timestamp, Value};
use archiver_registry::{PvTypeInfo, Registry, SqliteRegistry};
use archiver_storage::{Backend, DataStores, Etl, OutOfSpacePolicy, Tier};
use archiver_time::ManualClock;

use support::wait_for;

const PV: &str = "ETL:SVC:AI";
const H: i64 = 3600;

struct Setup {
    _server: Server,
    appliance: Appliance,
    clock: Arc<ManualClock>,
}

fn t0() -> i64 {
    start_of_year(2024) + 77 * 86400 + 10 * H // 10:00
}

async fn setup(dir: &std::path::Path, sts_extra: &str) -> Setup {
    setup_with(dir, sts_extra, None).await
}

/// [`setup`] with one more store URL after the LTS (a blackhole).
async fn setup_with(dir: &std::path::Path, sts_extra: &str, after_lts: Option<&str>) -> Setup {
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    let client = Client::new(server.client_config().build().unwrap())
        .await
        .unwrap();
    let d = dir.display();
    let stores = DataStores::from_urls(
        [
            format!("pb://localhost?name=STS&rootFolder={d}/sts&partitionGranularity=PARTITION_HOUR{sts_extra}"),
            format!("pb://localhost?name=MTS&rootFolder={d}/mts&partitionGranularity=PARTITION_DAY"),
            format!("pb://localhost?name=LTS&rootFolder={d}/lts&partitionGranularity=PARTITION_YEAR"),
        ]
        .into_iter()
        .chain(after_lts.map(str::to_string)),
        Backend::fs(),
    )
    .unwrap();
    let policy = Policy::for_stores(&stores);
    let clock = Arc::new(ManualClock::new(Timestamp::new(t0() + 1800, 0)));
    let mut cfg = EngineConfig {
        write_period: Duration::from_millis(200),
        ..EngineConfig::default()
    };
    policy.apply_to(&mut cfg);
    let engine = Engine::start(client, stores.tiers()[0].clone(), cfg, clock.clone());
    let registry = Arc::new(SqliteRegistry::open(&dir.join("reg.sqlite")).unwrap());
    let mut info = PvTypeInfo::new_for_archiving(
        PV,
        PayloadType::ScalarDouble,
        1,
        archiver_registry::SamplingMethod::Monitor,
        1.0,
        Vec::new(),
        Timestamp::new(1_700_000_000, 0),
    )
    .unwrap();
    info.data_stores = stores.urls();
    registry.put_type_info(&info).unwrap();
    let appliance = Appliance::new(ApplianceParts {
        engine,
        registry,
        clock: clock.clone(),
        identity: Arc::from("appliance0"),
        policy,
        stores,
    });
    Setup {
        _server: server,
        appliance,
        clock,
    }
}

/// Samples every minute from 07:00 to `t0 + 30 min`, in the STS.
fn fill(sts: &Tier) -> Vec<Sample> {
    let v: Vec<Sample> = (t0() - 3 * H..t0() + 1800)
        .step_by(60)
        .map(|s| Sample::new(Timestamp::new(s, 0), Value::ScalarDouble(s as f64)))
        .collect();
    sts.append(PV, PayloadType::ScalarDouble, &v).unwrap();
    v
}

fn count(tier: &Tier) -> usize {
    tier.partitions(PV).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etl_service_runs_at_five_past_the_hour_by_the_clock_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "").await;
    let stores = s.appliance.stores().clone();
    let (sts, mts) = (&stores.tiers()[0], &stores.tiers()[1]);
    fill(sts);
    assert_eq!(count(sts), 4);
    let service = s.appliance.spawn_etl(
        Etl::new(stores.clone(), OutOfSpacePolicy::default()),
        CancellationToken::new(),
    );
    // At start (10:30), the catch-up run moves the closed hours 07:00, 08:00 and 09:00.
    assert!(wait_for(10, || count(sts) == 1 && count(mts) == 1).await);
    // 10:30 → 11:04: not due.
    s.clock.set(Timestamp::new(t0() + H + 240, 0));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count(sts), 1, "nothing moves before hh:05");
    // 11:06: the run of 11:05 moves 10:00 (closed since 11:00).
    s.clock.set(Timestamp::new(t0() + H + 360, 0));
    assert!(wait_for(10, || count(mts) == 1 && count(sts) == 0).await);
    let moved = service
        .etl()
        .totals()
        .files_moved
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(moved, 4);
    tokio::time::timeout(Duration::from_secs(5), service.stop())
        .await
        .expect("the service stops at once");
    s.appliance.engine().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consolidation_and_range_deletion_through_the_appliance() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "&consolidateOnShutdown=true").await;
    let stores = s.appliance.stores().clone();
    let (sts, mts, lts) = (&stores.tiers()[0], &stores.tiers()[1], &stores.tiers()[2]);
    let written = fill(sts);
    // Delete 08:30..09:30 (half of two hours) across the stores.
    let c = s
        .appliance
        .delete_data_range(
            PV,
            Timestamp::new(t0() - 90 * 60, 0),
            Timestamp::new(t0() - 30 * 60, 0),
        )
        .await
        .unwrap();
    assert_eq!((c.samples_deleted, c.files_rewritten), (60, 2));
    let err = s
        .appliance
        .delete_data_range(PV, Timestamp::new(t0(), 0), Timestamp::new(t0(), 0))
        .await
        .unwrap_err();
    assert!(err.is_bad_request(), "{err}");
    let err = s
        .appliance
        .delete_data_range("NO:SUCH:PV", Timestamp::new(0, 0), Timestamp::new(t0(), 0))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    // Consolidate into the MTS: everything, the current hour too.
    let c: EtlCounts = s.appliance.consolidate(PV, "MTS").await.unwrap();
    assert_eq!((c.files_moved, count(sts)), (4, 0));
    assert_eq!(c.samples_moved as usize, written.len() - 60);
    let err = s.appliance.consolidate(PV, "STS").await.unwrap_err();
    assert!(
        matches!(&err, StorageOpsError::UnknownStore { known, .. } if known == "MTS, LTS"),
        "{err}"
    );
    assert!(matches!(
        s.appliance.consolidate("NO:SUCH:PV", "LTS").await,
        Err(StorageOpsError::UnknownPv(_))
    ));
    // Consolidation on shutdown: the STS says consolidateOnShutdown, so new STS data moves
    // into the MTS; the MTS does not ask, so nothing reaches the LTS.
    fill(sts);
    let etl = Etl::new(stores.clone(), OutOfSpacePolicy::default());
    s.appliance.engine().shutdown().await;
    let c = s.appliance.consolidate_on_shutdown(&etl).await.unwrap();
    assert_eq!(c.files_moved, 4);
    assert_eq!((count(sts), count(mts), count(lts)), (0, 1, 0));
}

/// consolidateDataForPV through two hops (STS→MTS→LTS) reports what ended in the LTS, each
/// sample once, and the LTS holds every sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consolidation_through_two_hops_counts_each_sample_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "").await;
    let stores = s.appliance.stores().clone();
    let (sts, mts, lts) = (&stores.tiers()[0], &stores.tiers()[1], &stores.tiers()[2]);
    let written = fill(sts);
    let c: EtlCounts = s.appliance.consolidate(PV, "LTS").await.unwrap();
    assert_eq!((count(sts), count(mts), count(lts)), (0, 0, 1));
    assert_eq!(c.samples_moved as usize, written.len(), "{c:?}");
    assert_eq!(
        c.files_moved, 1,
        "the MTS's one file moved into the LTS: {c:?}"
    );
    assert_eq!(c.errors, 0);
    s.appliance.engine().shutdown().await;
}

/// consolidateDataForPV into the appliance's blackhole would delete the PV's data in every
/// store (a fresh user lost 72 files that way, answered "0 files moved"): a 400 that says
/// so and names the stores data can be consolidated into; nothing is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consolidation_into_the_blackhole_is_refused_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup_with(dir.path(), "", Some("blackhole://localhost?name=Trash")).await;
    let stores = s.appliance.stores().clone();
    let sts = &stores.tiers()[0];
    fill(sts);
    let before = count(sts);
    let err = s.appliance.consolidate(PV, "Trash").await.unwrap_err();
    assert!(err.is_bad_request(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("blackhole") && msg.contains("deletePVData"),
        "{msg}"
    );
    assert!(
        msg.contains("MTS, LTS") && !msg.contains("LTS, Trash"),
        "{msg}"
    );
    assert_eq!(count(sts), before);
    // An unknown store's message does not offer the blackhole either.
    let err = s.appliance.consolidate(PV, "XTS").await.unwrap_err();
    assert!(!err.to_string().contains("Trash"), "{err}");
    s.appliance.engine().shutdown().await;
}

/// A paused PV gets no ETL (Java: no `ETLStages` for a paused PV): a scheduled run well
/// past the hold leaves its files where they are; once resumed, the same run moves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_pvs_data_stays_put_until_it_is_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), "").await;
    let stores = s.appliance.stores().clone();
    let (sts, mts) = (&stores.tiers()[0], &stores.tiers()[1]);
    fill(sts);
    assert_eq!(s.appliance.restore().await.unwrap(), 1);
    s.appliance.pause(PV).await.unwrap();
    let files = |t: &Tier| -> Vec<(std::path::PathBuf, u64)> {
        t.partitions(PV)
            .unwrap()
            .into_iter()
            .map(|p| {
                let len = std::fs::metadata(&p.path).unwrap().len();
                (p.path, len)
            })
            .collect()
    };
    let before = files(sts);
    assert_eq!(before.len(), 4);
    let etl = s.appliance.new_etl(OutOfSpacePolicy::default());
    let never = CancellationToken::new();
    let all: Vec<usize> = (0..etl.stages()).collect();
    // Two days later every STS hour and the MTS day are past their hold.
    let later = Timestamp::new(t0() + 2 * 86_400, 0);
    let c = s
        .appliance
        .run_etl(
            &etl,
            all.clone(),
            later,
            archiver_storage::EtlMode::Scheduled,
            &never,
        )
        .await
        .unwrap();
    assert_eq!(c, EtlCounts::default(), "nothing moved while paused");
    assert_eq!(files(sts), before, "the paused PV's files untouched");
    assert_eq!(count(mts), 0);
    s.appliance.resume(PV).await.unwrap();
    let c = s
        .appliance
        .run_etl(
            &etl,
            all,
            later,
            archiver_storage::EtlMode::Scheduled,
            &never,
        )
        .await
        .unwrap();
    // The four STS hours into the MTS day, and that day (past its hold) into the LTS.
    assert_eq!((c.files_moved, c.samples_moved), (5, 2 * 210), "{c:?}");
    assert_eq!((count(sts), count(mts)), (0, 0));
    assert_eq!(count(&stores.tiers()[2]), 1);
    s.appliance.engine().shutdown().await;
}
