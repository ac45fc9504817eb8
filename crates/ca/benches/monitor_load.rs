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
//! BENCH_RATE=50, BENCH_SECS=20, ARCHIVER_TEST_PYTHON=/tmp/simioc-venv/bin/python).

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use archiver_ca::{
    ChannelEvent, Client, ClientConfig, Overflow, Subscription, Value, event_queue, mask,
};

fn env_num(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// (user+system CPU seconds, RSS kB) of this process.
fn usage() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // fields 14 and 15 of /proc/pid/stat (1-based), i.e. 11 and 12 after the command
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

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

struct Result_ {
    events: u64,
    secs: f64,
    cpu_pct: f64,
    rss_kb: u64,
    gaps: u64,
    dropped: u64,
}

async fn run_ours(port: u16, beacon: u16, pvs: u64, secs: u64) -> Result_ {
    let cfg = ClientConfig::builder()
        .addr_list(&format!("127.0.0.1:{port}"))
        .auto_addr_list(false)
        .repeater_port(beacon)
        .build()
        .unwrap();
    let client = Client::new(cfg).await.unwrap();
    let (q, rx) = event_queue(1_000_000, Overflow::DropNewest);
    let mut chans = Vec::new();
    for i in 0..pvs {
        let ch = client
            .create_channel(&format!("BENCH:LOAD:{i}"), &q, i)
            .unwrap();
        ch.subscribe(Subscription::time(mask::DBE_VALUE | mask::DBE_ALARM))
            .unwrap();
        chans.push(ch);
    }
    let mut last = vec![f64::NAN; pvs as usize];
    let mut buf = Vec::with_capacity(8192);
    let mut connected = 0;
    let t_conn = Instant::now();
    while connected < pvs && t_conn.elapsed() < Duration::from_secs(30) {
        buf.clear();
        let _ =
            tokio::time::timeout(Duration::from_millis(100), rx.recv_many(&mut buf, 8192)).await;
        connected += buf
            .iter()
            .filter(|e| matches!(e.kind, ChannelEvent::Connected { .. }))
            .count() as u64;
    }
    eprintln!(
        "  ours: {connected}/{pvs} connected in {:.2} s",
        t_conn.elapsed().as_secs_f64()
    );
    let mut events = 0u64;
    let mut gaps = 0u64;
    let mut counting = false;
    let warm = Instant::now() + Duration::from_secs(2);
    let mut t0 = Instant::now();
    let mut c0 = 0.0;
    let mut end = warm + Duration::from_secs(secs);
    loop {
        let now = Instant::now();
        if !counting && now >= warm {
            counting = true;
            t0 = now;
            c0 = usage().0;
            end = t0 + Duration::from_secs(secs);
        }
        if now >= end {
            break;
        }
        buf.clear();
        let _ =
            tokio::time::timeout(Duration::from_millis(100), rx.recv_many(&mut buf, 8192)).await;
        for ev in &buf {
            if let ChannelEvent::Value { data, .. } = &ev.kind {
                let Value::Double(v) = data.value else {
                    continue;
                };
                let l = &mut last[ev.key as usize];
                if counting {
                    events += 1;
                    if !l.is_nan() && v > *l + 1.0 {
                        gaps += (v - *l - 1.0) as u64;
                    }
                }
                *l = v;
            }
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    let (c1, rss) = usage();
    let dropped = chans.iter().map(|c| c.dropped()).sum();
    Result_ {
        events,
        secs: dt,
        cpu_pct: 100.0 * (c1 - c0) / dt,
        rss_kb: rss,
        gaps,
        dropped,
    }
}

fn build_libca_client(py: &str, manifest: &Path) -> Option<PathBuf> {
    let out = Command::new(py)
        .args(["-c", "import epicscorelibs.path as p; print(p.base_path)"])
        .output()
        .ok()?;
    let base = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let exe = std::env::temp_dir().join("archiver_ca_monitor_count");
    let st = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(manifest.join("benches/ca_monitor_count.c"))
        .arg(format!("-I{base}/include"))
        .arg(format!("-I{base}/include/os/Linux"))
        .arg(format!("-I{base}/include/compiler/gcc"))
        .arg(format!("-L{base}/lib"))
        .args(["-lca", "-lCom"])
        .arg(format!("-Wl,-rpath,{base}/lib"))
        .status()
        .ok()?;
    st.success().then_some(exe)
}

fn main() {
    let pvs = env_num("BENCH_PVS", 2000);
    let rate = env_num("BENCH_RATE", 50);
    let secs = env_num("BENCH_SECS", 20);
    let py = std::env::var("ARCHIVER_TEST_PYTHON")
        .unwrap_or_else(|_| "/tmp/simioc-venv/bin/python".into());
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let port = free_port();
    let beacon = free_port();
    eprintln!(
        "monitor_load: {pvs} PVs x {rate} Hz = {} updates/s offered, {secs} s per client",
        pvs * rate
    );
    let _ioc = start_ioc(&py, &manifest, port, beacon, pvs, rate);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ours = rt.block_on(run_ours(port, beacon, pvs, secs));
    drop(rt);
    let offered = (pvs * rate) as f64;
    println!(
        "| client | events/s | of offered | CPU % (one core = 100) | RSS MiB | gaps | dropped |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| archiver-ca | {:.0} | {:.1} % | {:.1} | {:.1} | {} | {} |",
        ours.events as f64 / ours.secs,
        100.0 * ours.events as f64 / ours.secs / offered,
        ours.cpu_pct,
        ours.rss_kb as f64 / 1024.0,
        ours.gaps,
        ours.dropped
    );

    let Some(exe) = build_libca_client(&py, &manifest) else {
        println!(
            "| libca (ca_monitor_count.c) | not built: gcc or epicscorelibs missing | | | | | |"
        );
        return;
    };
    let names = std::env::temp_dir().join("archiver_ca_bench_names.txt");
    std::fs::write(
        &names,
        (0..pvs)
            .map(|i| format!("BENCH:LOAD:{i}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let out = Command::new(exe)
        .arg(&names)
        .arg(secs.to_string())
        .env("EPICS_CA_ADDR_LIST", format!("127.0.0.1:{port}"))
        .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
        .env("EPICS_CA_REPEATER_PORT", beacon.to_string())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| -> f64 {
        text.split_whitespace()
            .find_map(|w| {
                w.strip_prefix(k)
                    .and_then(|v| v.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(f64::NAN)
    };
    let eps = field("events_per_s");
    let cpu = field("cpu_pct");
    println!(
        "| libca (ca_monitor_count.c) | {:.0} | {:.1} % | {:.1} | {:.1} | {} | - |",
        eps,
        100.0 * eps / offered,
        cpu,
        field("rss_kb") / 1024.0,
        field("gaps")
    );
    println!("\nCPU ratio archiver-ca / libca: {:.2}", ours.cpu_pct / cpu);
}
