//! Crash safety of ETL and of appends, proved over the fault-injecting backend: a fault
//! (an I/O error, ENOSPC, a short write, a crash) is armed at EVERY operation of an ETL
//! move (STS → MTS) and of an append in turn; after the restart (a crash image for a
//! crash, the same filesystem with the fault gone otherwise) every sample written is in
//! one of the stores, the destination holds none twice, and once ETL runs again the data
//! read back equals the data written: 0 lost, 0 duplicated, for every injection point.

use std::io::{Cursor, ErrorKind};

use archiver_pb::time::start_of_year;
use archiver_pb::{PayloadType, PbReader, Sample, Timestamp, Value};
use archiver_storage::testing::{CrashImage, Fault, SimBackend};
use archiver_storage::{Backend, DataStores, Etl, EtlMode, OutOfSpacePolicy, SyncPolicy, Tier};

const TY: PayloadType = PayloadType::ScalarDouble;
const PV: &str = "FAULT:AI-1";
const H: i64 = 3600;

fn day() -> i64 {
    start_of_year(2024) + 60 * 86400
}

fn sample(secs: i64) -> Sample {
    Sample::new(Timestamp::new(secs, 7), Value::ScalarDouble(secs as f64))
}

fn stores(sim: &SimBackend) -> DataStores {
    DataStores::from_urls(
        [
            "pb://localhost?name=STS&rootFolder=/a/sts&partitionGranularity=PARTITION_HOUR",
            "pb://localhost?name=MTS&rootFolder=/a/mts&partitionGranularity=PARTITION_DAY",
        ],
        Backend::new(sim.clone()),
    )
    .expect("stores")
}

/// Every sample in the files of `tier`, partition by partition, each file read as a
/// restarted reader would (a torn tail is not returned).
fn stored(sim: &SimBackend, tier: &Tier) -> Vec<Sample> {
    let mut out = Vec::new();
    for p in tier.partitions(PV).expect("list") {
        let bytes = sim.read_file(&p.path).expect("file");
        let Ok(mut r) = PbReader::new(Cursor::new(bytes)) else {
            continue;
        };
        while let Some(x) = r.next_sample().expect("read") {
            out.push(x.clone());
        }
        assert_eq!(
            r.skipped_lines(),
            0,
            "{}: every line decodes",
            p.path.display()
        );
    }
    out
}

/// Three closed hours (one with a line per minute) and the current one, durable.
fn setup() -> (SimBackend, Vec<Sample>) {
    let sim = SimBackend::new();
    let mut ds = stores(&sim);
    ds.set_sync_policy("STS", SyncPolicy::EachWrite);
    let written: Vec<Sample> = (day()..day() + 3 * H + 1800)
        .step_by(60)
        .map(sample)
        .collect();
    ds.tiers()[0].append(PV, TY, &written).expect("setup");
    (sim, written)
}

fn now() -> Timestamp {
    Timestamp::new(day() + 3 * H + 1800, 0)
}

/// After a fault and a restart on `after`: nothing lost, nothing twice in the MTS; then a
/// new run completes the move exactly.
fn check_after(after: &SimBackend, written: &[Sample], ctx: &str) {
    let ds = stores(after);
    let (sts, mts) = (&ds.tiers()[0], &ds.tiers()[1]);
    let in_mts = stored(after, mts);
    assert!(
        in_mts.windows(2).all(|w| w[0].time < w[1].time),
        "{ctx}: the MTS holds no sample twice"
    );
    let in_sts = stored(after, sts);
    for s in written {
        assert!(
            in_mts.contains(s) || in_sts.contains(s),
            "{ctx}: sample at {} lost",
            s.time.secs
        );
    }
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::Skip);
    etl.run_pv(0, PV, now(), EtlMode::Scheduled)
        .unwrap_or_else(|e| panic!("{ctx}: the re-run fails: {e}"));
    let closed = written
        .iter()
        .filter(|s| s.time.secs < day() + 3 * H)
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(
        stored(after, mts),
        closed,
        "{ctx}: the MTS after the re-run"
    );
    let mut all = stored(after, mts);
    all.extend(stored(after, sts));
    assert_eq!(all, written, "{ctx}: 0 lost, 0 duplicated");
    assert_eq!(
        sts.partitions(PV).expect("l").len(),
        1,
        "{ctx}: only the current hour"
    );
}

#[test]
fn a_fault_at_every_operation_of_an_etl_move_loses_and_duplicates_nothing() {
    let faults = [
        Fault::Error(ErrorKind::Other),
        Fault::NoSpace,
        Fault::ShortWrite,
        Fault::Crash,
    ];
    let mut points = 0;
    // The source's policy decides whether its deletion is durable at once (EachWrite) or
    // may come back after a power loss (OsWriteback, then moved again by the re-run).
    for (fault, policy) in faults
        .into_iter()
        .flat_map(|f| [SyncPolicy::OsWriteback, SyncPolicy::EachWrite].map(move |p| (f, p)))
    {
        let mut reached_end = false;
        for n in 0..500 {
            let (sim, written) = setup();
            let base = sim.ops();
            sim.fail_at(base + n, fault);
            let mut ds = stores(&sim);
            ds.set_sync_policy("STS", policy);
            let etl = Etl::new(ds, OutOfSpacePolicy::Skip);
            let r = etl.run_pv(0, PV, now(), EtlMode::Scheduled);
            if sim.faults_fired() == 0 {
                sim.clear_faults();
                let c = r.expect("no fault");
                assert_eq!(c.files_moved, 3);
                check_after(&sim, &written, &format!("{fault:?} never reached"));
                reached_end = true;
                break;
            }
            points += 1;
            if fault == Fault::Crash {
                for image in [
                    CrashImage::PowerLoss,
                    CrashImage::PowerLossTorn,
                    CrashImage::ProcessCrash,
                ] {
                    let ctx = format!(
                        "{policy:?}: crash at ETL op {n} ({image:?})\n{:?}",
                        sim.op_log()
                    );
                    check_after(&sim.crash_image(image), &written, &ctx);
                }
            } else {
                sim.clear_faults();
                check_after(
                    &sim,
                    &written,
                    &format!("{policy:?}: {fault:?} at ETL op {n}"),
                );
            }
        }
        assert!(reached_end, "{fault:?}: more than 500 operations?");
    }
    assert!(points > 40, "only {points} injection points");
}

#[test]
fn a_fault_at_every_operation_of_an_append_keeps_the_batch_all_or_nothing() {
    // Errors and crashes at every operation of an append are in faults.rs; here ENOSPC and
    // short writes at every operation, for both sync policies: the failed batch is not in
    // the files at all, and its retry writes it exactly once.
    let before: Vec<Sample> = (0..30).map(|k| sample(day() + k * 100)).collect();
    let batch: Vec<Sample> = (30..90).map(|k| sample(day() + k * 100)).collect();
    for policy in [SyncPolicy::OsWriteback, SyncPolicy::EachWrite] {
        for fault in [Fault::NoSpace, Fault::ShortWrite] {
            let mut reached_end = false;
            for n in 0..200 {
                let sim = SimBackend::new();
                let mut ds = stores(&sim);
                ds.set_sync_policy("STS", policy);
                let sts = &ds.tiers()[0];
                sts.append(PV, TY, &before).expect("before");
                sim.fail_at(sim.ops() + n, fault);
                let r = sts.append(PV, TY, &batch);
                let ctx = format!("{policy:?} {fault:?} at append op {n}");
                if sim.faults_fired() == 0 {
                    assert_eq!(r.expect("no fault").written, 60, "{ctx}");
                    reached_end = true;
                    break;
                }
                assert!(r.is_err(), "{ctx}: the fault is reported");
                assert_eq!(
                    stored(&sim, sts),
                    before,
                    "{ctx}: nothing of the batch stays"
                );
                sim.clear_faults();
                assert_eq!(sts.append(PV, TY, &batch).expect("retry").written, 60);
                let mut all = before.clone();
                all.extend(batch.iter().cloned());
                assert_eq!(stored(&sim, sts), all, "{ctx}: written once");
            }
            assert!(reached_end, "{policy:?} {fault:?}");
        }
    }
}
