//! ETL throughput, STS → MTS: `PVS` PVs (default 10,000) × one hour at 1 Hz of scalar
//! doubles in hourly STS files, moved by one run of stage 0 into daily MTS files (bulk line
//! copy, the destination fsynced before each source file is deleted, as in production).
//! Baseline in the same run: copying the same files byte for byte with an `fdatasync`
//! each (read, write, sync: the I/O floor of a move), so the ratio shows what ETL's
//! checks, locking and line scanning add.
//!
//! Run: `cargo bench -p archiver-storage --bench etl` (`PVS=1000` to shrink it;
//! `BENCH_DIR=/some/disk` to choose the disk, default `target/`).

use std::io::Write;
use std::time::Instant;

use archiver_pb::time::start_of_year;
use archiver_pb::{PayloadType, Sample, Timestamp, Value};
use archiver_storage::{Backend, DataStores, Etl, EtlMode, EtlPv, OutOfSpacePolicy};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn main() {
    let pvs = env("PVS", 10_000);
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "target".to_string());
    std::fs::create_dir_all(&base).expect("bench dir");
    let dir = tempfile::tempdir_in(&base).expect("tmp");
    let root = dir.path().display();
    let stores = DataStores::from_urls(
        [
            format!(
                "pb://localhost?name=STS&rootFolder={root}/sts&partitionGranularity=PARTITION_HOUR"
            ),
            format!(
                "pb://localhost?name=MTS&rootFolder={root}/mts&partitionGranularity=PARTITION_DAY"
            ),
        ],
        Backend::fs(),
    )
    .expect("stores");
    let hour = start_of_year(2024) + 60 * 86400 + 10 * 3600;
    let names: Vec<String> = (0..pvs).map(|i| format!("BENCH:ETL:{i}")).collect();
    let t = Instant::now();
    let samples: Vec<Sample> = (0..3600)
        .map(|k| Sample::new(Timestamp::new(hour + k, 0), Value::ScalarDouble(k as f64)))
        .collect();
    for pv in &names {
        stores.tiers()[0]
            .append(pv, PayloadType::ScalarDouble, &samples)
            .expect("append");
    }
    let files = files_under(&dir.path().join("sts"));
    let bytes: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).expect("len").len())
        .sum();
    println!(
        "wrote {pvs} PVs × 3600 samples ({:.1} MB in {} files) in {:.1} s",
        bytes as f64 / 1e6,
        files.len(),
        t.elapsed().as_secs_f64()
    );
    // Baseline: copy each file, fdatasync each copy.
    let copy_root = dir.path().join("copy");
    std::fs::create_dir_all(&copy_root).expect("copy dir");
    let t = Instant::now();
    for (i, f) in files.iter().enumerate() {
        let data = std::fs::read(f).expect("read");
        let mut out = std::fs::File::create(copy_root.join(i.to_string())).expect("create");
        out.write_all(&data).expect("write");
        out.sync_data().expect("sync");
    }
    let copy_secs = t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&copy_root).expect("rm copy");
    // ETL.
    let etl = Etl::new(stores.clone(), OutOfSpacePolicy::default());
    let all: Vec<EtlPv> = names
        .iter()
        .map(|pv| EtlPv {
            pv: pv.clone(),
            chain: None,
        })
        .collect();
    let t = Instant::now();
    let c = etl.run_stage(
        0,
        &all,
        Timestamp::new(hour + 7200, 0),
        EtlMode::Scheduled,
        &|| false,
    );
    let etl_secs = t.elapsed().as_secs_f64();
    assert_eq!(c.files_moved as usize, files.len(), "{c:?}");
    assert_eq!(c.samples_moved as usize, pvs * 3600);
    let mb = bytes as f64 / 1e6;
    println!(
        "baseline copy+fdatasync: {copy_secs:.2} s ({:.1} MB/s)",
        mb / copy_secs
    );
    println!(
        "ETL STS→MTS: {etl_secs:.2} s, {:.1} MB/s, {:.2} M samples/s, {:.2}× the baseline's time",
        mb / etl_secs,
        (pvs * 3600) as f64 / etl_secs / 1e6,
        etl_secs / copy_secs
    );
}
