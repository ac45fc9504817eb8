//! PVA monitor load benchmark: this crate's client vs pvxs's C++ client (the library
//! under p4p) and p4p's Python client, same IOC, same run.
//!
//! Starts `benches/pva_load_ioc.py` (a real EPICS IOC whose N soft ai records pvxs's
//! QSRV serves as NTScalar double, updated R times a second with the tick number k), then
//! for S seconds, after every PV has a value:
//! 1. `archiver_pva` (N channels on one shared queue drained in batches, request
//!    `field(value,alarm,timeStamp)`) and, at the same time in another process,
//!    `benches/pvxs_monitor_count.cpp` built with g++ against pvxslibs/epicscorelibs
//!    (the same request; a `pop()` per update on pvxs's worker thread): events/s, CPU %,
//!    RSS, gaps (a jump of k). Side by side, because the IOC's rate varies with the
//!    machine's load (2 cores: the IOC takes 1-1.5 of them);
//! 2. then `benches/p4p_monitor_count.py` (p4p: pvxs plus a Python callback per update).
//!
//! Run: `cargo bench -p archiver-pva --bench monitor_load` (env: BENCH_PVS=2000,
//! BENCH_RATE=50, BENCH_SECS=20, ARCHIVER_TEST_VENV, default /tmp/archiver-test-venv).
//! CPU is the client process's user+system time over the window (one core = 100 %).

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use archiver_pva::value::lookup;
use archiver_pva::{ChannelEvent, Client, ClientConfig, Overflow, PvRequest, event_queue};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn venv() -> String {
    std::env::var("ARCHIVER_TEST_VENV").unwrap_or_else(|_| "/tmp/archiver-test-venv".into())
}

fn free_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

// what the benches read of /proc: one copy for every bench
#[path = "../../../benches/common/procfs.rs"]
mod procfs;

/// CPU seconds (user + system) of this process.
fn cpu_secs() -> f64 {
    procfs::cpu_secs(std::process::id(), procfs::clk_tck())
}

/// Resident memory of this process, kB.
fn rss_kb() -> u64 {
    procfs::status_kb(std::process::id(), "VmRSS")
}

struct Ioc(Child);

impl Drop for Ioc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_ioc(manifest: &Path, pvs: u64, rate: u64, tcp: u16, udp: u16) -> Ioc {
    let mut child = Command::new(format!("{}/bin/python", venv()))
        .arg(manifest.join("benches/pva_load_ioc.py"))
        .args(["BENCH:", &pvs.to_string(), &rate.to_string()])
        .args([tcp.to_string(), udp.to_string(), free_port().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pva_load_ioc.py (run scripts/setup.sh)");
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

/// Per-PV last tick, and the counts.
struct Counts {
    last: Vec<f64>,
    have: usize,
    events: u64,
    gaps: u64,
}

impl Counts {
    fn take(&mut self, buf: &mut Vec<archiver_pva::Event>) {
        for ev in buf.drain(..) {
            if let ChannelEvent::Update { data, .. } = ev.kind {
                let i = ev.key as usize;
                let Some(k) = lookup(&data.desc, &data.value, "value").and_then(|v| v.1.as_f64())
                else {
                    continue;
                };
                if self.last[i] < 0.0 {
                    self.have += 1;
                } else if k > self.last[i] + 1.0 {
                    self.gaps += (k - self.last[i] - 1.0) as u64;
                }
                self.last[i] = k;
                self.events += 1;
            }
        }
    }
}

struct Row {
    events: u64,
    gaps: u64,
    cpu_s: f64,
    rss_kb: u64,
    secs: f64,
    dropped: u64,
}

async fn run_ours(udp: u16, names: &[String], secs: u64) -> Row {
    let cfg = ClientConfig {
        addr_list: vec![format!("127.0.0.1:{udp}").parse().unwrap()],
        auto_addr_list: false,
        broadcast_port: udp,
        ..ClientConfig::default()
    };
    let client = Client::new(cfg).await.unwrap();
    let (q, rx) = event_queue(1 << 20, Overflow::DropNewest);
    let req = PvRequest::parse("field(value,alarm,timeStamp)").unwrap();
    let chans: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let c = client.create_channel(n, i as u64, &q).unwrap();
            c.subscribe(req.clone());
            c
        })
        .collect();
    let mut c = Counts {
        last: vec![-1.0f64; names.len()],
        have: 0,
        events: 0,
        gaps: 0,
    };
    let mut buf = Vec::with_capacity(4096);
    let warm = Instant::now() + Duration::from_secs(20);
    while c.have < names.len() && Instant::now() < warm {
        let _ =
            tokio::time::timeout(Duration::from_millis(100), rx.recv_many(&mut buf, 4096)).await;
        c.take(&mut buf);
    }
    let have = c.have;
    let (e0, g0) = (c.events, c.gaps);
    let c0 = cpu_secs();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    while Instant::now() < end {
        let _ = tokio::time::timeout_at(end.into(), rx.recv_many(&mut buf, 4096)).await;
        c.take(&mut buf);
    }
    let (events, gaps) = (c.events - e0, c.gaps - g0);
    let row = Row {
        events,
        gaps,
        cpu_s: cpu_secs() - c0,
        rss_kb: rss_kb(),
        secs: t0.elapsed().as_secs_f64(),
        dropped: chans.iter().map(|c| c.dropped()).sum(),
    };
    eprintln!(
        "  archiver-pva: {have}/{} PVs had values before the window",
        names.len()
    );
    row
}

fn parse_row(line: &str) -> Option<Row> {
    let get = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some(Row {
        events: get("events")? as u64,
        gaps: get("gaps")? as u64,
        cpu_s: get("cpu_s")?,
        rss_kb: get("rss_kb")? as u64,
        secs: get("secs")?,
        dropped: 0,
    })
}

/// Runs a client process to its end (killed, by its PID, past `limit`); parses its line.
fn run_child(cmd: &mut Command, udp: u16, limit: Duration) -> Option<Row> {
    let mut child = cmd
        .stdin(Stdio::null())
        .env("EPICS_PVA_ADDR_LIST", format!("127.0.0.1:{udp}"))
        .env("EPICS_PVA_AUTO_ADDR_LIST", "NO")
        .env("EPICS_PVA_BROADCAST_PORT", udp.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let out = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                eprintln!("  {l}");
                parse_row(&l)
            })
    });
    let deadline = Instant::now() + limit;
    while child.try_wait().ok()?.is_none() {
        if Instant::now() > deadline {
            eprintln!("  client did not exit in {limit:?}: killed");
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().ok().flatten()
}

fn build_pvxs_client(manifest: &Path) -> Option<PathBuf> {
    let sp = Command::new(format!("{}/bin/python", venv()))
        .args(["-c", "import pvxslibs, epicscorelibs, os; print(os.path.dirname(pvxslibs.__file__)); print(os.path.dirname(epicscorelibs.__file__))"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&sp.stdout).to_string();
    let mut lines = text.lines();
    let (pvxs, epics) = (lines.next()?.to_string(), lines.next()?.to_string());
    let exe = std::env::temp_dir().join(format!("pvxs_monitor_count_{}", std::process::id()));
    let ok = Command::new("g++")
        .args(["-O2", "-std=c++11", "-D_GLIBCXX_USE_CXX11_ABI=0"])
        .arg(format!("-I{pvxs}/include"))
        .arg(format!("-I{epics}/include"))
        .arg(manifest.join("benches/pvxs_monitor_count.cpp"))
        .arg(format!("-L{pvxs}/lib"))
        .arg(format!("-L{epics}/lib"))
        .args(["-lpvxs", "-lCom"])
        .arg(format!("-Wl,-rpath,{pvxs}/lib:{epics}/lib"))
        .arg("-o")
        .arg(&exe)
        .status()
        .ok()?
        .success();
    ok.then_some(exe)
}

fn print_row(name: &str, r: &Row, offered: f64) {
    let rate = r.events as f64 / r.secs;
    println!(
        "| {name} | {rate:.0} | {:.1} % | {:.1} | {:.1} | {} | {} |",
        100.0 * rate / offered,
        100.0 * r.cpu_s / r.secs,
        r.rss_kb as f64 / 1024.0,
        r.gaps,
        r.dropped
    );
}

fn main() {
    let pvs = env_num("BENCH_PVS", 2000);
    let rate = env_num("BENCH_RATE", 50);
    let secs = env_num("BENCH_SECS", 20);
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let (tcp, udp) = (free_port(), free_port());
    eprintln!(
        "monitor_load (PVA): {pvs} NTScalar double PVs x {rate} Hz = {} updates/s offered, {secs} s per client",
        pvs * rate
    );
    let _ioc = start_ioc(&manifest, pvs, rate, tcp, udp);
    let names: Vec<String> = (0..pvs).map(|i| format!("BENCH:LOAD:{i}")).collect();
    let names_file = std::env::temp_dir().join(format!("pva_bench_names_{}", std::process::id()));
    std::fs::write(&names_file, names.join("\n")).unwrap();
    let offered = (pvs * rate) as f64;

    // archiver-pva and pvxs side by side in the same window (the IOC's rate varies with
    // the machine's load, so sequential windows would not see the same offer); p4p after
    let pvxs_exe = build_pvxs_client(&manifest);
    let pvxs_thread = pvxs_exe.clone().map(|exe| {
        let (names_file, secs) = (names_file.clone(), secs);
        std::thread::spawn(move || {
            let limit = Duration::from_secs(secs + 40);
            run_child(
                Command::new(&exe).arg(&names_file).arg(secs.to_string()),
                udp,
                limit,
            )
        })
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ours = rt.block_on(run_ours(udp, &names, secs));
    rt.shutdown_timeout(Duration::from_secs(1));
    eprintln!("  archiver-pva done");
    let pvxs = pvxs_thread.and_then(|t| t.join().ok().flatten());
    eprintln!("  pvxs done");
    if let Some(exe) = pvxs_exe {
        let _ = std::fs::remove_file(exe);
    }
    let p4p = run_child(
        Command::new(format!("{}/bin/python", venv()))
            .arg(manifest.join("benches/p4p_monitor_count.py"))
            .arg(&names_file)
            .arg(secs.to_string()),
        udp,
        Duration::from_secs(secs + 40),
    );
    let _ = std::fs::remove_file(&names_file);

    println!(
        "| client | events/s | of offered | CPU % (one core = 100) | RSS MiB | gaps | dropped |"
    );
    println!("|---|---|---|---|---|---|---|");
    print_row("archiver-pva", &ours, offered);
    match &pvxs {
        Some(r) => print_row("pvxs (C++, pvxs_monitor_count.cpp)", r, offered),
        None => println!("| pvxs | not built: g++ or pvxslibs missing | | | | | |"),
    }
    match &p4p {
        Some(r) => print_row(
            "p4p (Python callback per update; its own window)",
            r,
            offered,
        ),
        None => println!("| p4p | did not run | | | | | |"),
    }
    if let Some(r) = &pvxs {
        println!(
            "\nCPU ratio archiver-pva / pvxs: {:.2}",
            (ours.cpu_s / ours.secs) / (r.cpu_s / r.secs)
        );
    }
    if let Some(r) = &p4p {
        println!(
            "CPU ratio archiver-pva / p4p: {:.2}",
            (ours.cpu_s / ours.secs) / (r.cpu_s / r.secs)
        );
    }
}
