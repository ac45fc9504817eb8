//! The real `archiver serve` killed (SIGKILL) in the middle of ETL: 600 PVs × 6 closed
//! hours in the STS (written by `archiver pb generate --register`), which the ETL run at
//! start moves into the MTS; the process is killed once some files have moved and others
//! have not; after a restart ETL finishes, and every PV holds every sample once, in order,
//! across the stores: 0 lost, 0 duplicated.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;

use archiver_pb::{Granularity, PbReader, Value};
use archiver_registry::{Registry, SqliteRegistry};
use archiver_storage::Tier;
use support::{Archiver, iso, now_secs, wait_until_every};

/// More than one ETL batch (`archiver_storage::etl::BATCH_PVS`, 512 PVs: copied, synced,
/// then their sources deleted together), so that the kill falls between the first
/// batch's deletions and the end of the second, a window of a whole batch's copy, not
/// only the few milliseconds of one batch's deletions (with 200 PVs, a loaded machine
/// sometimes saw the whole move finish between two looks).
const PVS: u32 = 600;
const STORES: [&str; 3] = [
    "pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_HOUR",
    "pb://localhost?name=MTS&rootFolder=mts&partitionGranularity=PARTITION_DAY",
    "pb://localhost?name=LTS&rootFolder=lts&partitionGranularity=PARTITION_YEAR",
];
/// One sample every 10 s for 6 hours.
const PER_PV: usize = 6 * 360;

fn count_pb(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pb") {
                n += 1;
            }
        }
    }
    n
}

/// The counters `k` of every sample of `pv`, LTS, then MTS, then STS (oldest data
/// first). LTS counts: between midnight and 08:00 UTC the six generated hours lie in the
/// previous day, whose closed MTS partition the ETL at start moves on to LTS.
fn counters(data: &Path, pv: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for (store, g) in [
        ("lts", Granularity::Year),
        ("mts", Granularity::Day),
        ("sts", Granularity::Hour),
    ] {
        let tier = Tier::new(store, data.join(store), g);
        for p in tier.partitions(pv).unwrap() {
            let Ok(mut r) = PbReader::open(&p.path) else {
                continue;
            };
            while let Some(s) = r.next_sample().unwrap() {
                match s.value {
                    Value::ScalarDouble(v) => out.push(v as i64),
                    ref other => panic!("{other:?}"),
                }
            }
        }
    }
    out
}

#[test]
fn sigkill_during_etl_loses_and_duplicates_nothing_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // Six whole hours ending at least an hour ago: all closed, all due.
    let start = (now_secs() / 3600 - 8) * 3600;
    let out = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(["pb", "generate", "--pvs", &PVS.to_string(), "--rate", "0.1"])
        .args([
            "--duration",
            "6h",
            "--start",
            &iso(start),
            "--prefix",
            "KILL:",
        ])
        .args(["--register", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The PVs' dataStores list the three stores (ETL follows each PV's dataStores), and
    // they are archiving: ETL leaves a paused PV's data where it is (no IOC serves them).
    let urls: Vec<String> = STORES.iter().map(|u| u.to_string()).collect();
    {
        let reg = SqliteRegistry::open(&data.join("registry.sqlite")).unwrap();
        let mut infos = reg.all_type_infos().unwrap();
        for i in &mut infos {
            i.data_stores = urls.clone();
            i.paused = false;
        }
        reg.put_type_infos(&infos).unwrap();
    }
    let (sts, mts) = (data.join("sts"), data.join("mts"));
    let files = count_pb(&sts);
    assert_eq!(files, PVS as usize * 6);
    let config = format!("[storage]\ndata_stores = {urls:?}\n");
    let config = config.as_str();
    let mut first = Archiver::start_with(data, 9, 0, config);
    // Kill it while the move is under way: some STS files gone, some left.
    wait_until_every(
        std::time::Duration::from_millis(2),
        60.0,
        "ETL under way",
        || count_pb(&sts) < files - 20,
    );
    let mut child = first.child.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let left = count_pb(&sts);
    assert!(
        left > 0,
        "ETL finished before the kill; make the data larger"
    );
    assert!(count_pb(&mts) > 0);
    // Restart: the run at start finishes the move.
    let mut second = Archiver::start_with(data, 9, 0, config);
    second.wait_until(120.0, "ETL done", |_| count_pb(&sts) == 0);
    assert!(second.terminate());
    for i in 0..PVS {
        let pv = format!("KILL:{i}");
        let got = counters(data, &pv);
        let expect: Vec<i64> = (0..PER_PV as i64).collect();
        assert_eq!(got, expect, "{pv}: 0 lost, 0 duplicated, in order");
    }
}
