//! The appliance against the project's own CA server, in process: archive requests
//! become type infos once the PV connects, restore survives bad stored periods (it
//! logs, corrects the catalogue and restores), the sync stops through its cancellation
//! token, and the shutdown order leaves samples on disk and the catalogue current.

#![allow(clippy::unwrap_used)]

#[path = "../../engine/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use archiver_appliance::{
    Appliance, ApplianceApi, ApplianceParts, ArchiveSpec, CancellationToken, Policy, SamplingPeriod,
};
use archiver_ca::server::{PvSpec, Server, ServerConfig};
use archiver_ca::{Client, Timestamp, Value};
use archiver_engine::{ArchiveOutcome, Engine, EngineConfig, PvState, SamplingMethod};
use archiver_pb::{Granularity, PayloadType};
use archiver_registry::{ArchiveRequest, PvTypeInfo, Registry, SqliteRegistry};
use archiver_storage::{Backend, DataStores, Tier};
use archiver_time::SystemClock;

use support::wait_for;

struct Setup {
    server: Server,
    appliance: Appliance,
    registry: Arc<SqliteRegistry>,
    sts_root: std::path::PathBuf,
}

async fn setup(dir: &std::path::Path, registry: Arc<SqliteRegistry>) -> Setup {
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    let client = Client::new(server.client_config().build().unwrap())
        .await
        .unwrap();
    let sts_root = dir.join("sts");
    // Three stores, as configured: the engine writes to the first.
    let mut stores = DataStores::new(Backend::fs());
    for (name, root, g) in [
        ("STS", sts_root.clone(), Granularity::Hour),
        ("MTS", dir.join("mts"), Granularity::Day),
        ("LTS", dir.join("lts"), Granularity::Year),
    ] {
        stores.add(Tier::new(name, root, g)).unwrap();
    }
    let policy = Policy::for_stores(&stores);
    let sts = stores.tiers()[0].clone();
    let mut cfg = EngineConfig {
        write_period: Duration::from_millis(200),
        ..EngineConfig::default()
    };
    policy.apply_to(&mut cfg);
    let engine = Engine::start(client, sts, cfg, Arc::new(SystemClock));
    let appliance = Appliance::new(ApplianceParts {
        engine,
        registry: registry.clone(),
        clock: Arc::new(SystemClock),
        identity: Arc::from("appliance7"),
        policy,
        stores,
    });
    Setup {
        server,
        appliance,
        registry,
        sts_root,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_becomes_a_type_info_with_the_policy_stores_once_connected() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(
        dir.path(),
        Arc::new(SqliteRegistry::open_in_memory().unwrap()),
    )
    .await;
    s.server.add_pv(PvSpec::new("T:A", Value::Double(1.0)));
    let spec = ArchiveSpec {
        method: Some(SamplingMethod::Scan),
        period: Some(SamplingPeriod::new(2.0).unwrap()),
        ..ArchiveSpec::new("T:A")
    };
    let out = s.appliance.archive(vec![spec.clone()]).await.unwrap();
    assert_eq!(out[0].outcome, ArchiveOutcome::Submitted);
    let again = s.appliance.archive(vec![spec]).await.unwrap();
    assert_eq!(again[0].outcome, ArchiveOutcome::AlreadySubmitted);
    let req = s.registry.get_archive_request("T:A").unwrap().unwrap();
    assert_eq!(req.user_params["samplingperiod"], 2.0);
    assert_eq!(req.user_params["samplingmethod"], "SCAN");

    let sync = s
        .appliance
        .spawn_catalogue_sync(Duration::from_millis(100), CancellationToken::new());
    let reg = s.registry.clone();
    assert!(
        wait_for(10, || reg.get_type_info("T:A").unwrap().is_some()
            && reg.get_archive_request("T:A").unwrap().is_none())
        .await,
        "the sync writes a type info once the PV has connected, then drops the request"
    );
    let info = s.registry.get_type_info("T:A").unwrap().unwrap();
    assert_eq!(info.data_stores, s.appliance.policy().data_stores);
    // Every configured store, newest data first, as Java lists them.
    let names: Vec<String> = info
        .data_stores
        .iter()
        .map(|u| archiver_storage::StoreUrl::parse(u).unwrap().name)
        .collect();
    assert_eq!(names, ["STS", "MTS", "LTS"]);
    assert_eq!(info.sampling_period, 2.0);
    assert_eq!(info.appliance_identity.as_deref(), Some("appliance7"));
    assert_eq!(
        info.archive_fields,
        archiver_appliance::policy::DEFAULT_ARCHIVE_FIELDS
    );
    assert!(s.registry.get_archive_request("T:A").unwrap().is_none());

    // The sync stops through its token, promptly.
    let token = sync.token().clone();
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), sync.stop())
        .await
        .expect("the sync task ends once its token is cancelled");
    s.appliance.engine().shutdown().await;
}

fn info(pv: &str, period: f32) -> PvTypeInfo {
    PvTypeInfo::new_for_archiving(
        pv,
        PayloadType::ScalarDouble,
        1,
        archiver_registry::SamplingMethod::Monitor,
        period,
        Vec::new(),
        archiver_pb::Timestamp::new(1_700_000_000, 0),
    )
    .unwrap()
}

/// Found by a fresh-user test: a restart reset the request time of a PV that never
/// connected (getNeverConnectedPVs `requestTime`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_request_time_of_a_never_connected_pv() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(SqliteRegistry::open(&dir.path().join("r.sqlite")).unwrap());
    registry
        .add_archive_request(&ArchiveRequest {
            pv_name: "T:NOBODY".into(),
            user_params: serde_json::json!({"samplingperiod": "1.0"}),
        })
        .unwrap();
    let requested = registry.archive_request_times().unwrap()["T:NOBODY"].secs;
    // the restart comes later (whole seconds apart)
    while archiver_time::Clock::now(&SystemClock).secs <= requested {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = setup(dir.path(), registry.clone()).await;
    assert_eq!(s.appliance.restore().await.unwrap(), 1);
    let st = s.appliance.status("T:NOBODY").unwrap();
    assert_eq!(st.state, PvState::NeverConnected);
    assert!(st.counters.added_secs > requested, "{:?}", st.counters);
    assert_eq!(st.counters.request_secs(), requested, "{:?}", st.counters);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_replaces_a_bad_stored_period_by_the_default_and_corrects_the_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(SqliteRegistry::open(&dir.path().join("r.sqlite")).unwrap());
    let mut good = info("T:GOOD", 0.5);
    good.paused = true;
    let mut infos = vec![good];
    for (pv, period) in [
        ("T:INF", f32::INFINITY),
        ("T:NAN", f32::NAN),
        ("T:TINY", 1e-30),
        ("T:NEG", -1.0),
    ] {
        let mut i = info(pv, period);
        i.paused = true;
        infos.push(i);
    }
    registry.put_type_infos(&infos).unwrap();
    registry
        .add_archive_requests(&[
            ArchiveRequest {
                pv_name: "T:REQ_BIG".into(),
                user_params: serde_json::json!({"samplingperiod": 1e300, "paused": true}),
            },
            ArchiveRequest {
                pv_name: "T:REQ_TEXT".into(),
                user_params: serde_json::json!({
                    "samplingperiod": "abc", "samplingmethod": "SOMETIMES", "paused": true
                }),
            },
            ArchiveRequest {
                pv_name: "T:REQ_OK".into(),
                user_params: serde_json::json!({
                    "samplingperiod": "0.25", "samplingmethod": "SCAN", "paused": true
                }),
            },
        ])
        .unwrap();
    let s = setup(dir.path(), registry.clone()).await;
    let n = s.appliance.restore().await.unwrap();
    assert_eq!(n, 8, "every PV restored, none skipped");
    let period = |pv: &str| s.appliance.status(pv).unwrap().config.period;
    assert_eq!(period("T:GOOD"), 0.5);
    for pv in [
        "T:INF",
        "T:NAN",
        "T:TINY",
        "T:NEG",
        "T:REQ_BIG",
        "T:REQ_TEXT",
    ] {
        assert_eq!(period(pv), 1.0, "{pv}");
        assert_eq!(
            s.appliance.status(pv).unwrap().state,
            PvState::Paused,
            "{pv}"
        );
    }
    assert_eq!(period("T:REQ_OK"), 0.25);
    assert_eq!(
        s.appliance.status("T:REQ_OK").unwrap().config.method,
        SamplingMethod::Scan
    );
    assert_eq!(
        s.appliance.status("T:REQ_TEXT").unwrap().config.method,
        SamplingMethod::Monitor
    );
    // The catalogue holds the corrected values, so the next start is quiet.
    for pv in ["T:INF", "T:NAN", "T:TINY", "T:NEG"] {
        assert_eq!(
            registry.get_type_info(pv).unwrap().unwrap().sampling_period,
            1.0
        );
    }
    let req = registry.get_archive_request("T:REQ_BIG").unwrap().unwrap();
    assert_eq!(req.user_params["samplingperiod"], 1.0);
    assert_eq!(req.user_params["paused"], true);
    assert_eq!(
        registry
            .get_type_info("T:GOOD")
            .unwrap()
            .unwrap()
            .sampling_period,
        0.5
    );
    s.appliance.engine().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_every_buffer_then_records_the_final_state() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    let s = setup(dir.path(), registry).await;
    let pv = s.server.add_pv(PvSpec::new("T:SHUT", Value::Double(0.0)));
    s.appliance
        .archive(vec![ArchiveSpec {
            period: Some(SamplingPeriod::EVERY_UPDATE),
            ..ArchiveSpec::new("T:SHUT")
        }])
        .await
        .unwrap();
    // A sync whose rounds are an hour apart: only the final one can record the PV.
    let sync = s
        .appliance
        .spawn_catalogue_sync(Duration::from_secs(3600), CancellationToken::new());
    let app = s.appliance.clone();
    assert!(
        wait_for(10, || app
            .status("T:SHUT")
            .is_some_and(|st| st.conn.connected && st.meta.known))
        .await
    );
    let t0 = Timestamp::now().secs + 1;
    for k in 1..=20u32 {
        pv.post(
            Value::Double(f64::from(k)),
            Timestamp {
                secs: t0,
                nanos: k * 1000,
            },
            0,
            0,
        )
        .unwrap();
    }
    assert!(
        wait_for(10, || app.status("T:SHUT").unwrap().counters.events_stored
            >= 20)
        .await
    );
    assert!(s.registry.get_type_info("T:SHUT").unwrap().is_none());
    let written = tokio::time::timeout(Duration::from_secs(20), s.appliance.shutdown(sync))
        .await
        .expect("shutdown ends")
        .unwrap();
    assert_eq!(written.catalogued, 1);
    assert_eq!(written.unwritten.samples, 0);
    assert!(s.registry.get_type_info("T:SHUT").unwrap().is_some());
    assert!(s.registry.get_archive_request("T:SHUT").unwrap().is_none());
    let tier = Tier::new("STS", s.sts_root.clone(), Granularity::Hour);
    let mut values = Vec::new();
    for p in tier.partitions("T:SHUT").unwrap() {
        let mut r = archiver_pb::PbReader::open(&p.path).unwrap();
        while let Some(x) = r.next_sample().unwrap() {
            if let archiver_pb::Value::ScalarDouble(v) = x.value {
                values.push(v);
            }
        }
    }
    assert!(
        (1..=20).all(|k| values.contains(&f64::from(k))),
        "every posted sample is on disk: {values:?}"
    );
}

/// The samples of `pv` in `tier`, as seconds.
fn stored_secs(tier: &Tier, pv: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for p in tier.partitions(pv).unwrap() {
        let mut r = archiver_pb::PbReader::open(&p.path).unwrap();
        while let Some(x) = r.next_sample().unwrap() {
            out.push(x.time.secs);
        }
    }
    out
}

/// Restore starts a PV after the newest sample of any store (here the MTS, newer than the
/// STS), so an event older than that is not stored again; deleting it with its data
/// removes its files from every store, under the PV's storage lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_takes_the_newest_sample_of_every_store_and_delete_removes_every_stores_files() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    let pv_name = "T:TIERS";
    let now = Timestamp::now().secs;
    let mut ti = info(pv_name, 0.0);
    ti.data_stores = Vec::new();
    registry.put_type_info(&ti).unwrap();
    let s = setup(dir.path(), registry.clone()).await;
    let stores = s.appliance.stores().clone();
    let (sts, mts, lts) = (
        stores.get("STS").unwrap().clone(),
        stores.get("MTS").unwrap().clone(),
        stores.get("LTS").unwrap().clone(),
    );
    let at = |secs: i64| {
        archiver_pb::Sample::new(
            archiver_pb::Timestamp::new(secs, 0),
            archiver_pb::Value::ScalarDouble(secs as f64),
        )
    };
    lts.append(pv_name, PayloadType::ScalarDouble, &[at(now - 7200)])
        .unwrap();
    mts.append(pv_name, PayloadType::ScalarDouble, &[at(now + 60)])
        .unwrap();
    sts.append(pv_name, PayloadType::ScalarDouble, &[at(now - 600)])
        .unwrap();
    let pv = s.server.add_pv(PvSpec::new(pv_name, Value::Double(0.0)));
    assert_eq!(s.appliance.restore().await.unwrap(), 1);
    let app = s.appliance.clone();
    assert!(
        wait_for(10, || app
            .status(pv_name)
            .is_some_and(|st| st.conn.connected))
        .await
    );
    // Older than the MTS's newest sample: refused. Newer: stored.
    for secs in [now + 30, now + 90] {
        pv.post(
            Value::Double(secs as f64),
            Timestamp { secs, nanos: 0 },
            0,
            0,
        )
        .unwrap();
    }
    assert!(
        wait_for(10, || app.status(pv_name).unwrap().counters.events_stored
            >= 1)
        .await
    );
    s.appliance.pause(pv_name).await.unwrap();
    // Several statuses in one read of the PV table, in the order asked, None for a name
    // the engine lacks.
    let both = app.engine().statuses(&["NOPE", pv_name]);
    assert!(both[0].is_none());
    assert_eq!(both[1].as_ref().map(|s| s.name.as_str()), Some(pv_name));
    let written_at = app.status(pv_name).unwrap().counters.last_written_secs;
    assert!(
        written_at >= now - 5,
        "the writer records its last write to the STS (getPVStatus lastRotateLogs): {written_at}"
    );
    assert_eq!(
        stored_secs(&sts, pv_name),
        [now - 600, now + 90],
        "the event older than the newest stored sample (in the MTS) is not stored"
    );

    // Delete waits for the PV's storage lock, then removes the files of every store.
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (holding, held) = std::sync::mpsc::channel();
    let release = {
        let (released, stores) = (released.clone(), stores.clone());
        std::thread::spawn(move || {
            let lock = stores.lock_pv(pv_name).unwrap();
            holding.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            released.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(lock);
        })
    };
    held.recv().unwrap();
    registry.add_alias("T:TIERS_ALIAS", pv_name).unwrap();
    // One file in each store, two in the STS when its samples straddle an hour.
    let files: usize = stores
        .tiers()
        .iter()
        .map(|t| t.partitions(pv_name).unwrap().len())
        .sum();
    assert!((3..=4).contains(&files), "{files} files");
    let removed = s.appliance.delete(pv_name, true).await.unwrap();
    assert!(
        released.load(std::sync::atomic::Ordering::SeqCst),
        "the files were removed while another writer held the PV's lock"
    );
    release.join().unwrap();
    assert_eq!(removed, files, "every file of every store");
    for tier in stores.tiers() {
        assert!(
            tier.partitions(pv_name).unwrap().is_empty(),
            "{}",
            tier.name()
        );
    }
    assert!(registry.get_type_info(pv_name).unwrap().is_none());
    assert_eq!(
        registry.resolve_alias("T:TIERS_ALIAS").unwrap(),
        None,
        "the PV's alias goes with it (Java DeletePV)"
    );
    s.appliance.engine().shutdown().await;
}

/// Found by a fresh-user test: during the background restore, archivePV of a catalogued
/// PV (MONITOR 0) with SCAN 7 s was "Archive request submitted" and the engine archived
/// SCAN 7 s while the type info said MONITOR 0. Java: "Already submitted", nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_a_catalogued_pv_not_restored_yet_is_already_submitted_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    registry.put_type_info(&info("T:CAT", 0.0)).unwrap();
    registry
        .add_archive_request(&ArchiveRequest {
            pv_name: "T:PENDING".into(),
            user_params: serde_json::json!({"samplingperiod": "1.0"}),
        })
        .unwrap();
    let s = setup(dir.path(), registry.clone()).await;
    // Not restored yet: the engine does not hold them.
    let asked = ["T:CAT", "T:PENDING"].map(|pv| ArchiveSpec {
        method: Some(SamplingMethod::Scan),
        period: Some(SamplingPeriod::new(7.0).unwrap()),
        ..ArchiveSpec::new(pv)
    });
    let out = s.appliance.archive(asked.to_vec()).await.unwrap();
    assert_eq!(
        out.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        vec![ArchiveOutcome::AlreadySubmitted; 2]
    );
    assert!(s.appliance.status("T:CAT").is_none());
    assert!(s.appliance.status("T:PENDING").is_none());
    let ti = registry.get_type_info("T:CAT").unwrap().unwrap();
    assert_eq!(ti.sampling_period, 0.0);
    assert_eq!(
        ti.sampling_method,
        archiver_registry::SamplingMethod::Monitor
    );
    assert_eq!(
        registry
            .get_archive_request("T:PENDING")
            .unwrap()
            .unwrap()
            .user_params,
        serde_json::json!({"samplingperiod": "1.0"})
    );
    assert!(registry.get_archive_request("T:CAT").unwrap().is_none());
    // A field of it: refused, saying why, rather than "unknown PV".
    let e = s
        .appliance
        .archive(vec![ArchiveSpec::new("T:CAT.HIHI")])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("T:CAT is being restored"), "{e}");
    assert!(s.appliance.status("T:CAT").is_none());
    s.appliance.engine().shutdown().await;
}

/// Found by a fresh-user test: every shutdown (its final catalogue sync) rewrote the
/// modificationTime of every PV, so getRecentlyModifiedPVs listed them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_sync_bumps_modification_time_only_of_a_changed_type_info() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    let s = setup(dir.path(), registry.clone()).await;
    let _pv = s.server.add_pv(PvSpec::new("T:MOD", Value::Double(1.0)));
    s.appliance
        .archive(vec![ArchiveSpec::new("T:MOD")])
        .await
        .unwrap();
    let app = s.appliance.clone();
    assert!(
        wait_for(10, || app
            .status("T:MOD")
            .is_some_and(|st| st.conn.connected && st.meta.known))
        .await
    );
    assert_eq!(s.appliance.sync_catalogue(true).await.unwrap(), 1);
    let first = registry.get_type_info("T:MOD").unwrap().unwrap();
    // The final sync of a shutdown, nothing changed: the type info is left as it is.
    assert_eq!(s.appliance.sync_catalogue(true).await.unwrap(), 1);
    let again = registry.get_type_info("T:MOD").unwrap().unwrap();
    assert_eq!(again.modification_time, first.modification_time);
    // A stored type info that differs from what the engine knows is rewritten, and bumped.
    let mut stale = again.clone();
    stale.paused = true;
    registry.put_type_info(&stale).unwrap();
    s.appliance.sync_catalogue(true).await.unwrap();
    let fixed = registry.get_type_info("T:MOD").unwrap().unwrap();
    assert!(!fixed.paused);
    assert!(fixed.modification_time > first.modification_time);
    s.appliance.engine().shutdown().await;
}
