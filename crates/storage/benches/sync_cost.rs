//! What syncing costs on the ingest path: `Tier::append_lines` of a few scalar samples to
//! each of a few thousand PVs (one write period of the engine's writer), with
//! `SyncPolicy::OsWriteback` and `SyncPolicy::EachWrite`, in a temporary folder on the
//! real disk; and, for reference, the same appends straight through `PbWriter::open` (the
//! code path before the storage backend existed).
//!
//! Run: `cargo bench -p archiver-storage --bench sync_cost` (`PVS=5000 ROUNDS=5 LINES=10`
//! to change the sizes; `BENCH_DIR=/some/disk` to choose the disk, default `target/`).

use std::time::{Duration, Instant};

use archiver_pb::codec::encode_line;
use archiver_pb::time::start_of_year;
use archiver_pb::{Granularity, PayloadType, PbWriter, Sample, Timestamp, Value};
use archiver_storage::{SyncPolicy, Tier};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` encoded lines of round `round`, one second apart, in hour 0 of 2024.
fn lines(round: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    for k in 0..n {
        let t = Timestamp::new(start_of_year(2024) + (round * n + k) as i64, 0);
        encode_line(
            &Sample::new(t, Value::ScalarDouble(k as f64)),
            2024,
            &mut out,
            &mut scratch,
        )
        .expect("encode");
    }
    out
}

fn pv(k: usize) -> String {
    format!("BENCH:SECTOR{}:PV-{k}", k % 20)
}

fn main() {
    let pvs = env("PVS", 2000);
    let rounds = env("ROUNDS", 5);
    let n = env("LINES", 10);
    let base = std::env::var("BENCH_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").to_string());
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    println!(
        "{pvs} PVs, {n} scalar lines per PV per round, {rounds} rounds, in {}",
        dir.path().display()
    );
    let batches: Vec<Vec<u8>> = (0..=rounds).map(|r| lines(r, n)).collect();

    for (label, policy) in [
        ("OsWriteback", SyncPolicy::OsWriteback),
        ("EachWrite", SyncPolicy::EachWrite),
    ] {
        let tier =
            Tier::new("STS", dir.path().join(label), Granularity::Hour).with_sync_policy(policy);
        // Round 0 creates every file (and folder).
        let start = Instant::now();
        for k in 0..pvs {
            tier.append_lines(&pv(k), PayloadType::ScalarDouble, 2024, &batches[0])
                .expect("append");
        }
        let create = start.elapsed();
        let mut times = Vec::new();
        for batch in &batches[1..] {
            let start = Instant::now();
            for k in 0..pvs {
                tier.append_lines(&pv(k), PayloadType::ScalarDouble, 2024, batch)
                    .expect("append");
            }
            times.push(start.elapsed());
        }
        report(label, pvs, create, &times);
    }

    // The pre-backend code path: PbWriter::open on a path, append_lines, no sync.
    let root = dir.path().join("direct");
    let tier = Tier::new("STS", &root, Granularity::Hour);
    let paths: Vec<_> = (0..pvs)
        .map(|k| tier.file_for(&pv(k), start_of_year(2024)).expect("path"))
        .collect();
    let start = Instant::now();
    for (k, p) in paths.iter().enumerate() {
        PbWriter::open(p, &pv(k), PayloadType::ScalarDouble, 2024)
            .and_then(|mut w| w.append_lines(2024, &batches[0]))
            .expect("append");
    }
    let create = start.elapsed();
    let mut times = Vec::new();
    for batch in &batches[1..] {
        let start = Instant::now();
        for (k, p) in paths.iter().enumerate() {
            PbWriter::open(p, &pv(k), PayloadType::ScalarDouble, 2024)
                .and_then(|mut w| w.append_lines(2024, batch))
                .expect("append");
        }
        times.push(start.elapsed());
    }
    report("PbWriter::open (before)", pvs, create, &times);
}

fn report(label: &str, pvs: usize, create: Duration, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let per = |d: Duration| d.as_secs_f64() * 1e6 / pvs as f64;
    println!(
        "{label:>24}: first round (creates files) {:>8.1} ms = {:>7.1} µs/PV; later rounds median {:>8.1} ms = {:>7.1} µs/PV (min {:.1} ms, max {:.1} ms)",
        create.as_secs_f64() * 1e3,
        per(create),
        median.as_secs_f64() * 1e3,
        per(median),
        sorted[0].as_secs_f64() * 1e3,
        sorted[sorted.len() - 1].as_secs_f64() * 1e3,
    );
}
