//! Monitor load benchmark: this crate's client vs a bare libca client, same IOC, same run.
//!
//! Starts `tests/ioc/harness_ioc.py --load N --rate R` (a real EPICS IOC, RSRV), then
//! 1. monitors all N PVs with `archiver_ca` (DBR_TIME native, DBE_VALUE|DBE_ALARM, one
//!    shared queue drained in batches) for S seconds: events/s, CPU %, RSS, gaps;
//! 2. builds `benches/ca_monitor_count.c` against epicscorelibs' libca with gcc and runs it
//!    on the same IOC for S seconds.
//!
//! Each PV's value is its tick number, so a jump of more than one is a lost update (gap).
//! Run: `cargo bench -p archiver-ca --bench monitor_load` (env: BENCH_PVS=2000,
//! BENCH_RATE=50, BENCH_SECS=20, ARCHIVER_TEST_PYTHON, default the venv of
//! `scripts/setup.sh`).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{build_libca_client, env_num, free_port, python, run_libca, run_ours};

struct Ioc(std::process::Child);

impl Drop for Ioc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_ioc(py: &str, manifest: &Path, port: u16, beacon: u16, pvs: u64, rate: u64) -> Ioc {
    let mut child = Command::new(py)
        .arg(manifest.join("tests/ioc/harness_ioc.py"))
        .args([
            "--prefix",
            "BENCH:",
            "--port",
            &port.to_string(),
            "--beacon-port",
            &beacon.to_string(),
        ])
        .args([
            "--load",
            &pvs.to_string(),
            "--rate",
            &rate.to_string(),
            "--stats",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start harness_ioc.py (set ARCHIVER_TEST_PYTHON to a Python with softioc)");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("READY") {
                let _ = tx.send(());
            }
            if line.contains("STATS") {
                eprintln!("  ioc: {line}");
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("IOC did not become ready");
    Ioc(child)
}

fn main() {
    let pvs = env_num("BENCH_PVS", 2000);
    let rate = env_num("BENCH_RATE", 50);
    let secs = env_num("BENCH_SECS", 20);
    let py = python();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let port = free_port();
    let beacon = free_port();
    eprintln!(
        "monitor_load: {pvs} PVs x {rate} Hz = {} updates/s offered, {secs} s per client",
        pvs * rate
    );
    let _ioc = start_ioc(&py, &manifest, port, beacon, pvs, rate);

    let names: Vec<String> = (0..pvs).map(|i| format!("BENCH:LOAD:{i}")).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ours = rt.block_on(run_ours(port, beacon, &names, secs, &mut ()));
    drop(rt);
    let offered = (pvs * rate) as f64;
    println!(
        "| client | events/s | of offered | CPU % (one core = 100) | RSS MiB | gaps | dropped |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| archiver-ca | {:.0} | {:.1} % | {:.1} | {:.1} | {} | {} |",
        ours.rate(),
        100.0 * ours.rate() / offered,
        ours.cpu_pct,
        ours.rss_kb as f64 / 1024.0,
        ours.gaps,
        ours.dropped.unwrap_or(0)
    );

    let Some(exe) = build_libca_client(&py, &manifest) else {
        println!(
            "| libca (ca_monitor_count.c) | not built: gcc or epicscorelibs missing | | | | | |"
        );
        return;
    };
    let lib = run_libca(&exe, port, beacon, &names, secs, &mut ());
    let _ = std::fs::remove_file(&exe);
    println!(
        "| libca (ca_monitor_count.c) | {:.0} | {:.1} % | {:.1} | {:.1} | {} | - |",
        lib.rate(),
        100.0 * lib.rate() / offered,
        lib.cpu_pct,
        lib.rss_kb as f64 / 1024.0,
        lib.gaps
    );
    println!(
        "\nCPU ratio archiver-ca / libca: {:.2}",
        ours.cpu_pct / lib.cpu_pct
    );
}
