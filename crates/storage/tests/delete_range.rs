//! Deleting a PV's samples in a time range across every store: whole partitions removed,
//! overlapped ones rewritten (new file, sync, rename), other PVs untouched, and a crash at
//! any operation leaves each file old or new, so that running the deletion again gives
//! exactly the expected data.

use archiver_pb::time::start_of_year;
use archiver_pb::{PayloadType, Sample, Timestamp, Value};
use archiver_storage::testing::{CrashImage, Fault, SimBackend};
use archiver_storage::{Backend, DataStores, DeleteCounts, SyncPolicy, Tier};

const TY: PayloadType = PayloadType::ScalarDouble;
const PV: &str = "DEL:AI-1";
const H: i64 = 3600;
const D: i64 = 86400;

fn sample(secs: i64) -> Sample {
    Sample::new(Timestamp::new(secs, 5), Value::ScalarDouble(secs as f64))
}

fn stores(sim: &SimBackend) -> DataStores {
    DataStores::from_urls(
        [
            "pb://localhost?name=STS&rootFolder=/d/sts&partitionGranularity=PARTITION_HOUR",
            "pb://localhost?name=MTS&rootFolder=/d/mts&partitionGranularity=PARTITION_DAY",
        ],
        Backend::new(sim.clone()),
    )
    .expect("stores")
}

fn read(tier: &Tier, pv: &str) -> Vec<Sample> {
    let mut q = tier
        .query(
            pv,
            Timestamp::new(0, 0),
            Timestamp::new(i64::from(i32::MAX), 0),
        )
        .expect("query");
    let mut out = Vec::new();
    while let Some(s) = q.next_sample().expect("read") {
        out.push(s.clone());
    }
    out
}

fn everything(ds: &DataStores, pv: &str) -> Vec<Sample> {
    let mut all = Vec::new();
    for t in ds.tiers().iter().rev() {
        all.extend(read(t, pv));
    }
    all
}

/// Two days in the MTS, then four hours in the STS; a sample every 15 minutes.
fn setup(sim: &SimBackend) -> (DataStores, Vec<Sample>, i64) {
    let mut ds = stores(sim);
    // Durable, so that a power loss keeps what the test starts from.
    for name in ["STS", "MTS"] {
        ds.set_sync_policy(name, SyncPolicy::EachWrite);
    }
    let d0 = start_of_year(2024) + 30 * D;
    let old: Vec<Sample> = (d0..d0 + 2 * D).step_by(900).map(sample).collect();
    let new: Vec<Sample> = (d0 + 2 * D..d0 + 2 * D + 4 * H)
        .step_by(900)
        .map(sample)
        .collect();
    ds.tiers()[1].append(PV, TY, &old).expect("mts");
    ds.tiers()[0].append(PV, TY, &new).expect("sts");
    ds.tiers()[0].append("OTHER:PV", TY, &new).expect("other");
    let mut all = old;
    all.extend(new);
    (ds, all, d0)
}

#[test]
fn a_range_is_deleted_across_stores_whole_partitions_removed_others_rewritten() {
    let sim = SimBackend::new();
    let (ds, all, d0) = setup(&sim);
    // From the middle of the second day to the middle of the STS's third hour.
    let (from, to) = (
        Timestamp::new(d0 + D + 12 * H, 0),
        Timestamp::new(d0 + 2 * D + 2 * H + 1800, 0),
    );
    let c = ds.delete_range(PV, from, to).expect("delete");
    let expect: Vec<Sample> = all
        .iter()
        .filter(|s| s.time < from || s.time >= to)
        .cloned()
        .collect();
    assert_eq!(everything(&ds, PV), expect);
    assert_eq!(c.samples_deleted as usize, all.len() - expect.len());
    // The MTS's second day and the STS's third hour are rewritten; the STS's first two
    // hours are removed whole.
    assert_eq!(
        c,
        DeleteCounts {
            files_removed: 2,
            files_rewritten: 2,
            samples_deleted: c.samples_deleted
        }
    );
    assert_eq!(ds.tiers()[0].partitions(PV).expect("l").len(), 2);
    // Another PV is untouched; a reversed or empty range deletes nothing.
    assert_eq!(read(&ds.tiers()[0], "OTHER:PV").len(), 16);
    assert_eq!(
        ds.delete_range(PV, to, from).expect("d"),
        DeleteCounts::default()
    );
}

#[test]
fn a_crash_at_any_operation_of_a_deletion_leaves_old_or_new_files_and_a_rerun_finishes() {
    let mut reached_end = false;
    for n in 0..300 {
        let sim = SimBackend::new();
        let (ds, all, d0) = setup(&sim);
        let (from, to) = (
            Timestamp::new(d0 + 6 * H, 0),
            Timestamp::new(d0 + 2 * D + 1800, 0),
        );
        let expect: Vec<Sample> = all
            .iter()
            .filter(|s| s.time < from || s.time >= to)
            .cloned()
            .collect();
        sim.fail_at(sim.ops() + n, Fault::Crash);
        let r = ds.delete_range(PV, from, to);
        if !sim.is_crashed() {
            sim.clear_faults();
            r.expect("no crash");
            assert_eq!(everything(&ds, PV), expect);
            reached_end = true;
            break;
        }
        for image in [CrashImage::PowerLossTorn, CrashImage::ProcessCrash] {
            let after = sim.crash_image(image);
            let ds = stores(&after);
            // Every sample is either kept or one the deletion asked for: none other lost,
            // none twice.
            let got = everything(&ds, PV);
            assert!(
                got.windows(2).all(|w| w[0].time < w[1].time),
                "crash at {n}"
            );
            for s in &expect {
                assert!(
                    got.contains(s),
                    "crash at {n} {image:?}: {} lost",
                    s.time.secs
                );
            }
            ds.delete_range(PV, from, to).expect("rerun");
            assert_eq!(everything(&ds, PV), expect, "crash at {n} {image:?}");
        }
    }
    assert!(reached_end);
}

#[test]
fn disk_use_per_pv_and_store_and_bytes_per_sample() {
    let sim = SimBackend::new();
    let (ds, _, _) = setup(&sim);
    let per_pv = ds.disk_usage(PV).expect("usage");
    assert_eq!(per_pv[0].0, "STS");
    assert_eq!((per_pv[0].1.files, per_pv[1].1.files), (4, 2));
    let stores = ds.store_usage().expect("stores");
    // The other PV's four hourly files count in the STS too.
    assert_eq!(stores[0].1.files, 8);
    let bytes: u64 = sim
        .files()
        .iter()
        .map(|p| sim.read_file(p).map_or(0, |b| b.len() as u64))
        .sum();
    assert_eq!(stores.iter().map(|s| s.1.bytes).sum::<u64>(), bytes);
    let bps = ds.tiers()[0]
        .bytes_per_sample(PV)
        .expect("bps")
        .expect("some");
    assert!((10.0..30.0).contains(&bps), "{bps}");
    assert_eq!(
        ds.tiers()[0].bytes_per_sample("NONE:PV").expect("bps"),
        None
    );
}
