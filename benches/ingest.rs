//! Ingest benchmark (issue 4): the real `archiver serve` binary archiving a real IOC.
//!
//! Every scenario starts a fresh archiver (its own data folder under /tmp, a free HTTP
//! port, `EPICS_CA_ADDR_LIST=127.0.0.1:<source port>`), archives every PV of the source
//! with one bulk `POST /mgmt/bpl/archivePV` (MONITOR, sampling period 0 = every event),
//! waits until `getPVStatus` reports every PV connected with `eventsStored > 0`, lets it
//! settle, then measures a steady window: the archiver's CPU (utime+stime of
//! `/proc/<pid>/stat`, % of one core), its RSS (`VmRSS`, max over the window), and the
//! `getPVStatus` counters at both ends. Then the archiver is stopped with SIGTERM (it
//! writes every buffer) and the `.pb` files are read back: each source PV's value is its
//! tick number k, so a jump of k by more than one between two stored samples whose span
//! touches the window is a lost update. Stored events/s and loss come from the files.
//!
//! * a) `harness_ioc.py --load 1000 --rate 10` (real EPICS IOC, RSRV): 10k events/s.
//! * b) `harness_ioc.py --load 2000 --rate 50`: 100k events/s.
//! * a) and b): in the same run, right after the archiver has stopped, the bare libca
//!   client (`crates/ca/benches/ca_monitor_count.c`, built as `monitor_load.rs` builds it)
//!   monitors the same PVs of the same IOC for the same duration. (Both at once would
//!   need 200k updates/s from the IOC, more than it sustains on this 2-core machine.)
//! * c) time from the bulk archivePV of a) (1000 PVs) to every PV connected and storing.
//! * r) a) while 4 clients pull 1 M-sample responses (`getData.raw` and `getData.json`
//!   of generated history) in a loop for the whole window: ingest loss under retrieval.
//! * e) a) while the ETL catch-up run at start moves the closed hours of 10,000 PVs × 3 h
//!   of 1 Hz history (`BENCH_E_PVS`, `BENCH_E_HOURS`; written and registered by
//!   `archiver pb generate`) from the STS to the MTS: ingest loss during ETL. The STS files
//!   of that history are counted at the window's start and end to show the ETL ran in it.
//! * m) many PVs, restart: this project's CA server serving `BENCH_M_PVS` (100,000) PVs at
//!   `BENCH_M_RATE` (1) Hz, no archive fields unless `BENCH_M_FIELDS=1`; bulk archivePV in
//!   batches of 10,000, wait until every PV stores, SIGTERM, start again on the same data
//!   folder: the time until HTTP answers, until every PV is restored (in getPVStatus), and
//!   until every PV is connected and storing again; RSS and CPU of both runs.
//! * j) b) with `[engine] journal = false`: run `BENCH_SCENARIOS=jb` to compare the
//!   write-ahead journal's CPU cost at 100k events/s (same IOC, same window).
//! * l) load/soak: b) while 4 retrieval clients pull 1 M-sample responses and a management
//!   script loops (status, reports, details, archive/abort), for `BENCH_L_SECS` (600); RSS
//!   printed each minute. Longer soaks: raise `BENCH_L_SECS`.
//! * d) this project's CA server (`archiver_ca::server`) in a child process (this binary
//!   re-executed with `INGEST_ROLE=source`) serving N PVs at rising rates, until loss.
//!
//! Run: `cargo bench --bench ingest` (env: `ARCHIVER_TEST_PYTHON`, `BENCH_SCENARIOS=abd` (also `r`),
//! `BENCH_SECS=30`, `BENCH_FIELDS=HIHI,LOLO` (archive fields instead of the defaults), `BENCH_D_SECS=10`, `BENCH_D_PVS=2000`, `BENCH_D_RATES=50,100,200,400`
//! (Hz per PV), `BENCH_WRITE_PERIOD=10`, `BENCH_WARM_SECS` = write period + 2,
//! `BENCH_CONNECT_TIMEOUT=20`, `BENCH_KEEP=1` keeps the data folders, `BENCH_MAX_BUFFER=N`
//! sets engine.max_buffer_samples to check the loss count against the engine's own).

#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../crates/ca/benches/common/mod.rs"]
mod ca_common;

#[path = "common/procfs.rs"]
mod procfs;
use procfs::{clk_tck, cpu_secs, loadavg, status_kb};

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use archiver_pb::{PbReader, Value};

const ARCHIVE_FIELDS: [&str; 7] = ["HIHI", "HIGH", "LOW", "LOLO", "LOPR", "HOPR", "DESC"];

fn env_num<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(d)
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

// ---------------------------------------------------------------------------------------
// /proc

// clk_tck, cpu_secs, status_kb and loadavg: common/procfs.rs

// ---------------------------------------------------------------------------------------
// child processes: killed (by PID) when dropped, whatever happened

struct Proc {
    name: &'static str,
    child: Child,
    /// Lines of the child's stdout (kept by a reader thread).
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Spawns `cmd` with stdout piped and waits (at most `timeout`) for a line containing
    /// `ready`.
    fn spawn(name: &'static str, mut cmd: Command, ready: &str, timeout: Duration) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l = lines.clone();
        let ready = ready.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains(&ready) {
                    let _ = tx.send(line.clone());
                }
                l.lock().unwrap().push(line);
            }
        });
        let mut p = Proc { name, child, lines };
        match rx.recv_timeout(timeout) {
            Ok(_) => p,
            Err(_) => {
                let _ = p.child.kill();
                panic!(
                    "{name} did not print {:?} within {timeout:?}",
                    p.lines.lock().unwrap()
                );
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines containing `pat` so far.
    fn grep(&self, pat: &str) -> Vec<String> {
        let l = self.lines.lock().unwrap();
        l.iter().filter(|x| x.contains(pat)).cloned().collect()
    }

    /// SIGTERM, then waits up to `timeout`; SIGKILL if it is still running. Returns the
    /// time it took to exit on its own, if it did.
    fn terminate(&mut self, timeout: Duration) -> Option<Duration> {
        if self.child.try_wait().ok().flatten().is_some() {
            return Some(Duration::ZERO);
        }
        let t = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        while t.elapsed() < timeout {
            if let Ok(Some(st)) = self.child.try_wait() {
                if !st.success() {
                    eprintln!("  {} exited with {st}", self.name);
                }
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "  {} did not exit within {timeout:?} of SIGTERM: killed",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// minimal HTTP/1.1 client

fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response without header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut rest = &raw[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return (code, rest.to_vec());
    }
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_txt = String::from_utf8_lossy(&rest[..eol]);
        let size =
            usize::from_str_radix(size_txt.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[(eol + 4 + size).min(rest.len())..];
    }
    (code, out)
}

/// The `getPVStatus` counters of every PV matching `glob`, summed.
#[derive(Debug, Default, Clone)]
struct Counters {
    pvs: u64,
    connected: u64,
    storing: u64,
    received: u64,
    stored: u64,
    written: u64,
    dropped_buffer: u64,
    dropped_client: u64,
    dropped_timestamp: u64,
    repeated: u64,
    refused: u64,
    disconnects: u64,
    in_memory: u64,
    /// PVs receiving values without ever having connected (their Connected event was lost).
    orphans: u64,
}

fn pv_status(port: u16, glob: &str) -> Counters {
    let (code, body) = http(
        port,
        "GET",
        &format!("/mgmt/bpl/getPVStatus?pv={glob}"),
        None,
    );
    assert_eq!(code, 200, "getPVStatus: {}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut c = Counters::default();
    for pv in v.as_array().unwrap() {
        let n = |k: &str| -> u64 {
            pv.get(k)
                .and_then(|x| x.as_str())
                .and_then(|x| x.parse().ok())
                .unwrap_or(0)
        };
        c.pvs += 1;
        let connected = pv.get("connectionState").and_then(|x| x.as_str()) == Some("true");
        c.connected += u64::from(connected);
        c.storing += u64::from(connected && n("eventsStored") > 0);
        c.received += n("eventsReceived");
        c.stored += n("eventsStored");
        c.written += n("eventsWritten");
        c.dropped_buffer += n("droppedEventsBuffer");
        c.dropped_client += n("droppedEventsClient");
        c.dropped_timestamp += n("droppedEventsTimestamp");
        c.repeated += n("repeatedTimestamps");
        c.refused += n("refusedByWriter");
        c.disconnects += n("disconnects");
        c.in_memory += n("samplesInMemory");
        let never = pv
            .get("connectionFirstEstablished")
            .and_then(|x| x.as_str())
            == Some("Never");
        c.orphans += u64::from(never && n("eventsReceived") > 0);
    }
    c
}

// ---------------------------------------------------------------------------------------
// sources

struct Source {
    proc_: Proc,
    port: u16,
    beacon: u16,
    prefix: &'static str,
    pvs: u64,
    rate: u64,
}

use ca_common::python;

fn start_ioc(pvs: u64, rate: u64) -> Source {
    let port = free_udp_port();
    let beacon = free_udp_port();
    let mut cmd = Command::new(python());
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/ca/tests/ioc/harness_ioc.py"))
        .args(["--prefix", "BENCH:", "--port", &port.to_string()])
        .args(["--beacon-port", &beacon.to_string()])
        .args(["--load", &pvs.to_string(), "--rate", &rate.to_string()])
        .arg("--stats")
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let proc_ = Proc::spawn("IOC", cmd, "HARNESS READY", Duration::from_secs(60));
    Source {
        proc_,
        port,
        beacon,
        prefix: "BENCH:",
        pvs,
        rate,
    }
}

fn start_sim(pvs: u64, rate: u64) -> Source {
    let port = free_udp_port();
    let beacon = free_udp_port();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("INGEST_ROLE", "source")
        .env("INGEST_PVS", pvs.to_string())
        .env("INGEST_RATE", rate.to_string())
        .env("INGEST_PORT", port.to_string())
        .env("INGEST_BEACON", beacon.to_string())
        // the source exits when this pipe closes (i.e. when the bench goes away)
        .stdin(Stdio::piped())
        .stderr(Stdio::inherit());
    let proc_ = Proc::spawn("CA source", cmd, "SOURCE READY", Duration::from_secs(60));
    Source {
        proc_,
        port,
        beacon,
        prefix: "SIM:",
        pvs,
        rate,
    }
}

/// `INGEST_ROLE=source`: this project's CA server serving `INGEST_PVS` double PVs
/// `SIM:LOAD:i` (plus the fields the archiver monitors), each posted `INGEST_RATE` times
/// per second with value = tick k and time stamp = now; a late tick runs late, k never
/// skips. Prints `SOURCE STATS` every 5 s.
fn run_source() {
    use archiver_ca::server::{PvSpec, Server, ServerConfig, sim};
    use archiver_ca::{Timestamp, Value as CaValue};
    use std::net::{Ipv4Addr, SocketAddr};

    let pvs: usize = env_num("INGEST_PVS", 1000);
    let rate: u64 = env_num("INGEST_RATE", 10);
    let port: u16 = env_num("INGEST_PORT", 0);
    let beacon: u16 = env_num("INGEST_BEACON", 5065);
    // Exit with the parent.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(Server::start(ServerConfig {
            port,
            beacon_addrs: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, beacon))],
            ..ServerConfig::default()
        }))
        .unwrap();
    let handles: Vec<_> = sim::load_pvs("SIM:", pvs)
        .into_iter()
        .map(|s| server.add_pv(s))
        .collect();
    for h in &handles {
        for f in ARCHIVE_FIELDS {
            let v = if f == "DESC" {
                CaValue::String(archiver_ca::CaString::new("bench"))
            } else {
                CaValue::Double(0.0)
            };
            server.add_pv(PvSpec::new(&format!("{}.{f}", h.name()), v));
        }
    }
    let server = Arc::new(server);
    let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = ticks.clone();
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut k: u64 = 0;
        loop {
            let due = t0 + Duration::from_nanos(k * 1_000_000_000 / rate.max(1));
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let stamp = Timestamp::now();
            for h in &handles {
                let _ = h.post(CaValue::Double(k as f64), stamp, 0, 0);
            }
            k += 1;
            t.store(k, std::sync::atomic::Ordering::Relaxed);
        }
    });
    println!(
        "SOURCE READY port={} pvs={pvs} rate={rate} pid={}",
        server.port(),
        std::process::id()
    );
    let tck = clk_tck();
    let pid = std::process::id();
    let (mut lt, mut lk, mut lc) = (Instant::now(), 0u64, cpu_secs(pid, tck));
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let (now, k, c) = (
            Instant::now(),
            ticks.load(std::sync::atomic::Ordering::Relaxed),
            cpu_secs(pid, tck),
        );
        let dt = (now - lt).as_secs_f64();
        println!(
            "SOURCE STATS ticks/s={:.1} cpu%={:.0} dropped={}",
            (k - lk) as f64 / dt,
            100.0 * (c - lc) / dt,
            server.dropped_updates()
        );
        (lt, lk, lc) = (now, k, c);
    }
}

// ---------------------------------------------------------------------------------------
// libca baseline (built by the CA benches' shared code)

struct Libca {
    events_per_s: f64,
    cpu_pct: f64,
    rss_kb: f64,
    gaps: f64,
}

// ---------------------------------------------------------------------------------------
// the archiver

struct Archiver {
    proc_: Proc,
    port: u16,
}

/// What a scenario adds to a plain run: retrieval clients (r), history for ETL to move (e),
/// configuration lines (m: no archive fields).
#[derive(Debug, Default, Clone)]
struct Extra {
    /// Retrieval clients pulling 1 M-sample responses during the window (scenario r).
    readers: usize,
    /// PVs of generated history in the STS, registered archiving (ETL leaves a paused
    /// PV's data alone; no IOC serves them) with the STS → MTS → LTS chain, `etl_hours` hours each at 1 Hz ending now: the ETL catch-up run at start
    /// moves the closed hours to the MTS during the window (scenario e).
    etl_pvs: u64,
    /// See `etl_pvs`.
    etl_hours: u64,
    /// Lines added to the `[engine]` table of the configuration.
    engine_toml: String,
    /// A management script looping over status, reports, details and an archive/abort
    /// of a PV that never connects, for the whole window (scenario l).
    mgmt_loop: bool,
}

/// The prefix of the history PVs of scenario e.
const ETL_PREFIX: &str = "ETL:";

/// The stores of scenario e, with root folders under the data folder, listed in the
/// configuration and in the history PVs' `dataStores` alike.
const ETL_STORES: [&str; 3] = [
    "pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_HOUR",
    "pb://localhost?name=MTS&rootFolder=mts&partitionGranularity=PARTITION_DAY&hold=2&gather=1",
    "pb://localhost?name=LTS&rootFolder=lts&partitionGranularity=PARTITION_YEAR",
];

fn start_archiver_with(dir: &Path, src: &Source, write_period: f64, extra: &Extra) -> Archiver {
    start_archiver_on(free_tcp_port(), dir, src, write_period, extra)
}

fn start_archiver_on(
    port: u16,
    dir: &Path,
    src: &Source,
    write_period: f64,
    extra: &Extra,
) -> Archiver {
    let config = dir.join("archiver.toml");
    let mut toml = format!(
        "[engine]\nwrite_period_secs = {write_period}\n{}",
        extra.engine_toml
    );
    // A small buffer bound makes the engine drop (and count) samples: a check that the
    // loss counted from the files matches the engine's droppedEventsBuffer.
    if let Ok(n) = std::env::var("BENCH_MAX_BUFFER") {
        toml.push_str(&format!("max_buffer_samples = {n}\n"));
    }
    if extra.etl_pvs > 0 {
        let list: Vec<String> = ETL_STORES.iter().map(|u| format!("{u:?}")).collect();
        toml.push_str(&format!("[storage]\ndata_stores = [{}]\n", list.join(", ")));
    }
    std::fs::write(&config, toml).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("archiver.log"))
        .unwrap();
    // Scenario e logs each ETL run (`info`) to place it against the window.
    let filter = if extra.etl_pvs > 0 {
        "warn,archiver_appliance=info"
    } else {
        "warn"
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_archiver"));
    cmd.args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("EPICS_CA_ADDR_LIST", format!("127.0.0.1:{}", src.port))
        .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
        .env("EPICS_CA_REPEATER_PORT", src.beacon.to_string())
        .env("RUST_LOG", filter)
        .stdin(Stdio::null())
        .stderr(log);
    let proc_ = Proc::spawn("archiver", cmd, "listening on", Duration::from_secs(30));
    Archiver { proc_, port }
}

// ---------------------------------------------------------------------------------------
// loss from the files

#[derive(Debug, Default)]
struct FileStats {
    pvs: u64,
    pvs_in_window: u64,
    stored: u64,
    lost: u64,
    out_of_order: u64,
    files: u64,
    skipped_lines: u64,
}

fn pb_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.map_while(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            pb_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "pb") {
            out.push(p);
        }
    }
}

/// Reads every `.pb` file under `sts` (a store or the whole data folder): samples with time in `[t0, t1]`
/// (nanoseconds since the epoch) are counted as stored; a jump of the value (tick k) by
/// more than one between consecutive samples of a PV whose span touches the window
/// counts the skipped ticks as lost.
fn file_stats(sts: &Path, prefix: &str, t0: i128, t1: i128) -> FileStats {
    let mut paths = Vec::new();
    pb_files(sts, &mut paths);
    let mut by_pv: HashMap<String, Vec<PathBuf>> = HashMap::new();
    let mut fs = FileStats::default();
    for p in paths {
        let Ok(r) = PbReader::open(&p) else {
            eprintln!("  cannot read {}", p.display());
            continue;
        };
        by_pv.entry(r.header().pv_name.clone()).or_default().push(p);
    }
    for (pv, mut files) in by_pv {
        if !pv.starts_with(prefix) {
            continue;
        }
        fs.pvs += 1;
        files.sort(); // partition names sort by time
        let mut prev: Option<(i128, f64)> = None;
        let mut in_window = 0u64;
        for f in files {
            fs.files += 1;
            let mut r = PbReader::open(&f).unwrap();
            while let Some(s) = r.next_sample().unwrap() {
                let t = i128::from(s.time.secs) * 1_000_000_000 + i128::from(s.time.nanos);
                let Value::ScalarDouble(v) = s.value else {
                    continue;
                };
                if t >= t0 && t <= t1 {
                    in_window += 1;
                }
                if let Some((pt, pv_)) = prev
                    && t >= t0
                    && pt <= t1
                {
                    if v > pv_ + 1.0 {
                        fs.lost += (v - pv_ - 1.0) as u64;
                    } else if v <= pv_ {
                        fs.out_of_order += 1;
                    }
                }
                prev = Some((t, v));
            }
            fs.skipped_lines += r.skipped_lines();
        }
        fs.stored += in_window;
        fs.pvs_in_window += u64::from(in_window > 0);
    }
    fs
}

// ---------------------------------------------------------------------------------------
// one scenario

struct Row {
    label: String,
    source: &'static str,
    pvs: u64,
    offered: f64,
    source_ticks: String,
    source_cpu: f64,
    secs: f64,
    stored_per_s: f64,
    lost: u64,
    loss_pct: f64,
    cpu_pct: f64,
    rss_mib: f64,
    hwm_mib: f64,
    /// (PVs connected and storing, seconds from the bulk archivePV until that many were)
    writing: (u64, f64),
    archive_post_ms: f64,
    counters: Counters,
    files: FileStats,
    shutdown_s: f64,
    source_dropped: String,
    libca: Option<Libca>,
}

/// What the retrieval clients of scenario r) did during the window.
#[derive(Debug, Default)]
struct ReaderStats {
    responses: u64,
    samples: u64,
    bytes: u64,
    failures: u64,
}

/// PVs of generated history the retrieval clients of scenario r) read: one per client,
/// each [`READ_SAMPLES`] samples (100 Hz from 2024-01-01), written and registered (paused)
/// by `archiver pb generate` before the archiver starts.
const READ_PREFIX: &str = "RET:";
const READ_SAMPLES: u64 = 1_000_000;

fn generate_history(dir: &Path, pvs: usize) {
    let out = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(["pb", "generate", "--pvs", &pvs.to_string(), "--rate", "100"])
        .args(["--duration", &format!("{}s", READ_SAMPLES / 100)])
        .args([
            "--start",
            "2024-01-01T00:00:00Z",
            "--prefix",
            READ_PREFIX,
            "--register",
        ])
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The history of scenario e (see [`Extra::etl_pvs`]), written by `archiver pb generate`
/// before the archiver starts.
fn generate_etl_history(dir: &Path, pvs: u64, hours: u64) {
    let t = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_archiver"));
    cmd.args(["pb", "generate", "--pvs", &pvs.to_string(), "--rate", "1"])
        .args(["--duration", &format!("{hours}h"), "--prefix", ETL_PREFIX])
        .args([
            "--store-url",
            ETL_STORES[0],
            "--register",
            "--register-archiving",
        ]);
    for url in ETL_STORES {
        cmd.args(["--register-store", url]);
    }
    let out = cmd.arg("--data-dir").arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "  ETL history: {} ({:.0} s)",
        String::from_utf8_lossy(&out.stdout).trim(),
        t.elapsed().as_secs_f64()
    );
}

/// The `.pb` files and their bytes under `dir`.
fn pb_usage(dir: &Path) -> (u64, u64) {
    let mut paths = Vec::new();
    pb_files(dir, &mut paths);
    let bytes = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    (paths.len() as u64, bytes)
}

/// One retrieval client: until `stop`, GETs the whole history of its PV (raw for even
/// `i`, json for odd), reading and dropping the body in 256 KiB reads.
fn read_loop(port: u16, i: usize, stop: &std::sync::atomic::AtomicBool) -> ReaderStats {
    use std::sync::atomic::Ordering;
    let ext = if i.is_multiple_of(2) { "raw" } else { "json" };
    let path = format!(
        "/retrieval/data/getData.{ext}?pv={READ_PREFIX}{i}&from=2023-12-31T00:00:00Z&to=2024-01-02T00:00:00Z"
    );
    let mut st = ReaderStats::default();
    let mut buf = vec![0u8; 256 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            st.failures += 1;
            continue;
        };
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        if s.write_all(req.as_bytes()).is_err() {
            st.failures += 1;
            continue;
        }
        let mut n = 0u64;
        let mut ok200 = None;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    if ok200.is_none() {
                        ok200 = Some(buf[..k.min(12)].ends_with(b" 200"));
                    }
                    n += k as u64;
                }
                Err(_) => {
                    st.failures += 1;
                    break;
                }
            }
        }
        if ok200 == Some(true) {
            st.responses += 1;
            st.samples += READ_SAMPLES;
            st.bytes += n;
        } else {
            st.failures += 1;
        }
    }
    st
}

/// What the management loop did.
#[derive(Debug, Default)]
struct MgmtStats {
    calls: u64,
    failures: u64,
    slowest_ms: f64,
}

/// The management script of scenario l: until `stop`, the calls an operator's script makes,
/// in turn (a non-2xx answer or a broken connection is a failure).
fn mgmt_loop(port: u16, glob: &str, stop: &std::sync::atomic::AtomicBool) -> MgmtStats {
    use std::sync::atomic::Ordering;
    let mut st = MgmtStats::default();
    let calls = [
        format!("/mgmt/bpl/getPVStatus?pv={}", glob.replace('*', "%2A")),
        "/mgmt/bpl/getAllPVs?limit=-1".to_string(),
        "/mgmt/bpl/getApplianceMetrics".to_string(),
        "/mgmt/bpl/getStorageRateReport?limit=100".to_string(),
        format!("/mgmt/bpl/getPVDetails?pv={}", glob.replace('*', "0")),
        "/mgmt/bpl/getCurrentlyDisconnectedPVs".to_string(),
        "/mgmt/bpl/archivePV?pv=SOAK:NEVER:CONNECTS".to_string(),
        "/mgmt/bpl/abortArchivingPV?pv=SOAK:NEVER:CONNECTS".to_string(),
    ];
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let ok = std::panic::catch_unwind(|| http(port, "GET", &calls[k % calls.len()], None))
            .is_ok_and(|(code, _)| (200..300).contains(&code));
        st.slowest_ms = st.slowest_ms.max(t.elapsed().as_secs_f64() * 1e3);
        st.calls += 1;
        st.failures += u64::from(!ok);
        k += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    st
}

fn run_scenario(label: &str, src: Source, secs: f64, libca_exe: Option<&Path>, work: &Path) -> Row {
    run_scenario_with(label, src, secs, libca_exe, work, &Extra::default())
}

fn run_scenario_with(
    label: &str,
    src: Source,
    secs: f64,
    libca_exe: Option<&Path>,
    work: &Path,
    extra: &Extra,
) -> Row {
    let readers = extra.readers;
    let write_period: f64 = env_num("BENCH_WRITE_PERIOD", 10.0);
    // Warm-up: past the first write, which creates every PV's partition file (once per
    // PV and partition, i.e. hourly, not steady-state work).
    let warm: f64 = env_num("BENCH_WARM_SECS", write_period + 2.0);
    let tck = clk_tck();
    let dir = work.join(label.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let offered = (src.pvs * src.rate) as f64;
    eprintln!(
        "{label}: {} PVs x {} Hz = {offered} events/s from {}, load avg {}",
        src.pvs,
        src.rate,
        src.proc_.name,
        loadavg()
    );
    if readers > 0 {
        generate_history(&dir, readers);
    }
    let etl_dir = dir.join("sts").join(ETL_PREFIX.trim_end_matches(':'));
    if extra.etl_pvs > 0 {
        generate_etl_history(&dir, extra.etl_pvs, extra.etl_hours);
    }
    let etl_start = pb_usage(&etl_dir);
    let mut arch = start_archiver_with(&dir, &src, write_period, extra);
    let apid = arch.proc_.pid();
    let names: Vec<String> = (0..src.pvs)
        .map(|i| format!("{}LOAD:{i}", src.prefix))
        .collect();
    // BENCH_FIELDS: archive fields per PV (comma list) instead of the defaults.
    let fields = std::env::var("BENCH_FIELDS").ok();
    let body = serde_json::to_string(
        &names
            .iter()
            .map(|n| {
                let mut item = serde_json::json!({"pv": n, "samplingperiod": "0", "samplingmethod": "MONITOR"});
                if let Some(f) = &fields {
                    item["archiveFields"] = serde_json::json!(f);
                }
                item
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let glob = format!("{}LOAD:*", src.prefix);

    // c) bulk archivePV -> every PV connected and storing
    let t_req = Instant::now();
    let (code, resp) = http(arch.port, "POST", "/mgmt/bpl/archivePV", Some(&body));
    let post_ms = t_req.elapsed().as_secs_f64() * 1e3;
    assert_eq!(code, 200, "archivePV: {}", String::from_utf8_lossy(&resp));
    // (PVs storing, seconds after the request when that many first were)
    let mut writing = (0, f64::NAN);
    let connect_timeout: f64 = env_num("BENCH_CONNECT_TIMEOUT", 20.0);
    while t_req.elapsed().as_secs_f64() < connect_timeout {
        let c = pv_status(arch.port, &glob);
        if c.storing > writing.0 {
            writing = (c.storing, t_req.elapsed().as_secs_f64());
        }
        if c.pvs == src.pvs && c.storing == src.pvs {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "  bulk archivePV ({post_ms:.0} ms) -> {}/{} PVs writing after {:.3} s \
         (RSS then {} kB)",
        writing.0,
        src.pvs,
        writing.1,
        status_kb(apid, "VmRSS:")
    );

    std::thread::sleep(Duration::from_secs_f64(warm));

    // steady window
    let etl_w0 = pb_usage(&etl_dir);
    let c0 = pv_status(arch.port, &glob);
    let src_pid = src.proc_.pid();
    let stats0 = src.proc_.grep("STATS").len();
    let (w0, i0, cpu0, scpu0) = (
        wall_ns(),
        Instant::now(),
        cpu_secs(apid, tck),
        cpu_secs(src_pid, tck),
    );
    let mut rss_max = 0u64;
    let mut rss_min = u64::MAX;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..readers)
        .map(|i| {
            let stop = stop.clone();
            let port = arch.port;
            std::thread::spawn(move || read_loop(port, i, &stop))
        })
        .collect();
    let mgmt = extra.mgmt_loop.then(|| {
        let (stop, port, glob) = (stop.clone(), arch.port, glob.clone());
        std::thread::spawn(move || mgmt_loop(port, &glob, &stop))
    });
    // RSS once a minute for long windows (is it stable?).
    let mut rss_series = Vec::new();
    while i0.elapsed().as_secs_f64() < secs {
        let rss = status_kb(apid, "VmRSS:");
        rss_max = rss_max.max(rss);
        rss_min = rss_min.min(rss);
        if i0.elapsed().as_secs_f64() >= 60.0 * rss_series.len() as f64 {
            rss_series.push(rss / 1024);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(m) = mgmt {
        let m = m.join().unwrap();
        eprintln!(
            "  management loop during the window: {} calls, {} failed, slowest {:.0} ms",
            m.calls, m.failures, m.slowest_ms
        );
    }
    if rss_series.len() > 2 {
        eprintln!("  RSS each minute (MiB): {rss_series:?}");
    }
    let mut read = ReaderStats::default();
    for c in clients {
        let r = c.join().unwrap();
        read.responses += r.responses;
        read.samples += r.samples;
        read.bytes += r.bytes;
        read.failures += r.failures;
    }
    if readers > 0 {
        let t = i0.elapsed().as_secs_f64();
        eprintln!(
            "  retrieval during the window: {readers} clients, {} responses of {READ_SAMPLES} \
             samples, {:.1} M samples/s, {:.0} MB/s, {} failed",
            read.responses,
            read.samples as f64 / t / 1e6,
            read.bytes as f64 / t / 1e6,
            read.failures
        );
    }
    eprintln!("  RSS over the window: min {rss_min} kB, max {rss_max} kB");
    if extra.etl_pvs > 0 {
        let etl_w1 = pb_usage(&etl_dir);
        eprintln!(
            "  ETL history in the STS: {} files / {:.0} MB at start, {} / {:.0} MB at the \
             window's start, {} / {:.0} MB at its end",
            etl_start.0,
            etl_start.1 as f64 / 1e6,
            etl_w0.0,
            etl_w0.1 as f64 / 1e6,
            etl_w1.0,
            etl_w1.1 as f64 / 1e6
        );
    }
    let (w1, dt, cpu1, scpu1) = (
        wall_ns(),
        i0.elapsed().as_secs_f64(),
        cpu_secs(apid, tck),
        cpu_secs(src_pid, tck),
    );
    rss_max = rss_max.max(status_kb(apid, "VmRSS:"));
    let hwm = status_kb(apid, "VmHWM:");
    let c1 = pv_status(arch.port, &glob);
    let stats = src.proc_.grep("STATS");
    let stats = &stats[stats0.min(stats.len())..];
    let shutdown = arch.proc_.terminate(Duration::from_secs(60));

    // the libca baseline, right after, on the same source: it counts for `secs` after its
    // own connect + 2 s warm-up
    let libca = libca_exe.and_then(|exe| {
        let names_file = dir.join("names.txt");
        std::fs::write(&names_file, names.join("\n") + "\n").unwrap();
        let child = Command::new(exe)
            .arg(&names_file)
            .arg(format!("{secs}"))
            .env("EPICS_CA_ADDR_LIST", format!("127.0.0.1:{}", src.port))
            .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
            .env("EPICS_CA_REPEATER_PORT", src.beacon.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut p = Proc {
            name: "libca client",
            child,
            lines: Arc::default(),
        };
        let mut text = String::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs_f64(secs + 30.0) {
            if let Ok(Some(_)) = p.child.try_wait() {
                if let Some(mut o) = p.child.stdout.take() {
                    let _ = o.read_to_string(&mut text);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let field = |k: &str| -> f64 {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
                .unwrap_or(f64::NAN)
        };
        (!text.is_empty()).then(|| Libca {
            events_per_s: field("events_per_s"),
            cpu_pct: field("cpu_pct"),
            rss_kb: field("rss_kb"),
            gaps: field("gaps"),
        })
    });

    let source_ticks: Vec<String> = stats
        .iter()
        .map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("ticks/s="))
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    let source_dropped = stats
        .last()
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("dropped="))
                .map(String::from)
        })
        .unwrap_or_else(|| "-".into());
    drop(src.proc_); // stop the source
    drop(arch);
    // Every store: an ETL run in the window may have moved a closed hour of the source's
    // PVs to the MTS.
    let files = file_stats(&dir, src.prefix, w0, w1);
    if extra.etl_pvs > 0
        && let Ok(log) = std::fs::read_to_string(dir.join("archiver.log"))
    {
        for l in log.lines().filter(|l| l.contains("ETL run")) {
            eprintln!("  {l}");
        }
    }
    let secs_w = (w1 - w0) as f64 / 1e9;
    let row = Row {
        label: label.to_string(),
        source: if src.prefix == "BENCH:" {
            "IOC (RSRV)"
        } else {
            "archiver-ca server"
        },
        pvs: src.pvs,
        offered,
        source_ticks: source_ticks.join("/"),
        source_cpu: 100.0 * (scpu1 - scpu0) / dt,
        secs: dt,
        stored_per_s: files.stored as f64 / secs_w,
        lost: files.lost,
        loss_pct: 100.0 * files.lost as f64 / (files.lost + files.stored).max(1) as f64,
        cpu_pct: 100.0 * (cpu1 - cpu0) / dt,
        rss_mib: rss_max as f64 / 1024.0,
        hwm_mib: hwm as f64 / 1024.0,
        writing,
        archive_post_ms: post_ms,
        counters: Counters {
            pvs: c1.pvs,
            connected: c1.connected,
            storing: c1.storing,
            received: c1.received - c0.received,
            stored: c1.stored - c0.stored,
            written: c1.written - c0.written,
            dropped_buffer: c1.dropped_buffer - c0.dropped_buffer,
            dropped_client: c1.dropped_client - c0.dropped_client,
            dropped_timestamp: c1.dropped_timestamp - c0.dropped_timestamp,
            repeated: c1.repeated - c0.repeated,
            refused: c1.refused - c0.refused,
            disconnects: c1.disconnects - c0.disconnects,
            in_memory: c1.in_memory,
            orphans: c1.orphans,
        },
        files,
        shutdown_s: shutdown.map_or(f64::NAN, |d| d.as_secs_f64()),
        source_dropped,
        libca,
    };
    eprintln!(
        "  stored {:.0}/s, lost {}, CPU {:.1} %, RSS {:.1} MiB, counters {:?}, files {:?}",
        row.stored_per_s, row.lost, row.cpu_pct, row.rss_mib, row.counters, row.files
    );
    if let Ok(log) = std::fs::read_to_string(dir.join("archiver.log"))
        && !log.trim().is_empty()
    {
        let n = log.lines().count();
        eprintln!("  archiver log ({n} lines), first lines:");
        for l in log.lines().take(5) {
            eprintln!("    {l}");
        }
    }
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    row
}

/// `getApplianceMetrics`: (PVs in the engine, PVs connected).
fn appliance_counts(port: u16) -> Option<(u64, u64)> {
    let (code, body) = http(port, "GET", "/mgmt/bpl/getApplianceMetrics", None);
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let n = |k: &str| -> Option<u64> { v.get(0)?.get(k)?.as_str()?.parse().ok() };
    Some((n("pvCount")?, n("connectedPVCount")?))
}

/// Polls until every one of `pvs` PVs matching `glob` is connected and has stored since
/// the archiver started, or `timeout` after `t0`; the seconds after `t0` when they were.
fn wait_storing(port: u16, glob: &str, pvs: u64, t0: Instant, timeout: f64) -> Option<f64> {
    while t0.elapsed().as_secs_f64() < timeout {
        let c = pv_status(port, glob);
        if c.storing >= pvs {
            return Some(t0.elapsed().as_secs_f64());
        }
        eprintln!(
            "    {:.1} s: {}/{pvs} PVs listed, {} connected, {} storing",
            t0.elapsed().as_secs_f64(),
            c.pvs,
            c.connected,
            c.storing
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    None
}

/// Scenario m (see the module documentation). Prints its own lines.
fn run_restart(pvs: u64, rate: u64, work: &Path) {
    let write_period: f64 = env_num("BENCH_WRITE_PERIOD", 10.0);
    let timeout: f64 = env_num("BENCH_M_TIMEOUT", 300.0);
    let fields = std::env::var_os("BENCH_M_FIELDS").is_some();
    let tck = clk_tck();
    let dir = work.join(format!("m_{pvs}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = start_sim(pvs, rate);
    let extra = Extra {
        engine_toml: if fields {
            String::new()
        } else {
            "default_archive_fields = []\n".into()
        },
        ..Extra::default()
    };
    eprintln!(
        "m) {pvs} PVs x {rate} Hz from the archiver-ca server, archive fields: {}, load avg {}",
        if fields { "the defaults" } else { "none" },
        loadavg()
    );
    let glob = format!("{}LOAD:*", src.prefix);
    let names: Vec<String> = (0..pvs)
        .map(|i| format!("{}LOAD:{i}", src.prefix))
        .collect();

    // First run: archive every PV.
    let mut arch = start_archiver_with(&dir, &src, write_period, &extra);
    let t = Instant::now();
    for chunk in names.chunks(10_000) {
        let body = serde_json::to_string(
            &chunk
                .iter()
                .map(|n| serde_json::json!({"pv": n, "samplingperiod": "0", "samplingmethod": "MONITOR"}))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let (code, resp) = http(arch.port, "POST", "/mgmt/bpl/archivePV", Some(&body));
        assert_eq!(code, 200, "archivePV: {}", String::from_utf8_lossy(&resp));
    }
    let post_s = t.elapsed().as_secs_f64();
    let first = wait_storing(arch.port, &glob, pvs, t, timeout);
    let apid = arch.proc_.pid();
    let (c0, i0) = (cpu_secs(apid, tck), Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let cpu = 100.0 * (cpu_secs(apid, tck) - c0) / i0.elapsed().as_secs_f64();
    eprintln!(
        "  first run: archivePV of {pvs} PVs in batches of 10,000: {post_s:.2} s; all storing \
         after {} s; then CPU {cpu:.1} % of a core, RSS {} kB (HWM {} kB)",
        first.map_or_else(|| "(not within the timeout)".into(), |x| format!("{x:.1}")),
        status_kb(apid, "VmRSS:"),
        status_kb(apid, "VmHWM:")
    );
    let stop = arch.proc_.terminate(Duration::from_secs(120));
    eprintln!("  SIGTERM -> exit in {stop:?}");
    drop(arch);

    // Second run: the same data folder. A thread asks for the HTTP answer from the start
    // (the ready line comes only after the restore has been started).
    let port = free_tcp_port();
    let t0 = Instant::now();
    let first_answer = std::thread::spawn(move || {
        while t0.elapsed() < Duration::from_secs(120) {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let (code, _) = http(port, "GET", "/mgmt/bpl/getVersions", None);
                if code == 200 {
                    return Some(t0.elapsed().as_secs_f64());
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    });
    let arch = start_archiver_on(port, &dir, &src, write_period, &extra);
    let listening = t0.elapsed().as_secs_f64();
    let apid = arch.proc_.pid();
    let (mut restored_s, mut connected_s) = (None, None);
    let http_s = first_answer.join().unwrap();
    while t0.elapsed().as_secs_f64() < timeout && connected_s.is_none() {
        if let Some((listed, connected)) = appliance_counts(arch.port) {
            let now = t0.elapsed().as_secs_f64();
            if listed >= pvs {
                restored_s.get_or_insert(now);
            }
            if connected >= pvs {
                connected_s = Some(now);
            }
        }
        // Each poll reads every PV's summary (100,000 of them): twice a second, as a
        // dashboard would, not ten times (which took a tenth of a core from the restart).
        std::thread::sleep(Duration::from_millis(500));
    }
    let storing_s = wait_storing(arch.port, &glob, pvs, t0, timeout);
    let (c0, i0) = (cpu_secs(apid, tck), Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let cpu = 100.0 * (cpu_secs(apid, tck) - c0) / i0.elapsed().as_secs_f64();
    let round = |x: Option<f64>| {
        x.map_or_else(
            || "not within the timeout".to_string(),
            |x| format!("{x:.2}"),
        )
    };
    eprintln!(
        "  restart: ready line after {listening:.2} s, first HTTP answer {} s, every PV \
         restored {} s, connected {} s, storing {} s; then CPU {cpu:.1} % of a core, \
         RSS {} kB (HWM {} kB)",
        round(http_s),
        round(restored_s),
        round(connected_s),
        round(storing_s),
        status_kb(apid, "VmRSS:"),
        status_kb(apid, "VmHWM:")
    );
    println!(
        "| m) {pvs} PVs x {rate} Hz, fields {} | {listening:.2} | {} | {} | {} | {} | {:.1} | {:.0} |",
        if fields { "default" } else { "none" },
        round(http_s),
        round(restored_s),
        round(connected_s),
        round(storing_s),
        cpu,
        status_kb(apid, "VmHWM:") as f64 / 1024.0
    );
    drop(arch);
    drop(src);
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn print_table(rows: &[Row], write_period: f64) {
    println!(
        "\n| scenario | source | PVs | offered ev/s | source ticks/s (per 5 s) | window s | \
         stored ev/s (files) | of offered | lost (files) | archiver CPU % of a core | \
         RSS max MiB (HWM) | source CPU % |"
    );
    println!("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {} | {:.1} | {:.0} | {:.1} % | {} ({:.3} %) | {:.1} | {:.1} ({:.1}) | {:.0} |",
            r.label,
            r.source,
            r.pvs,
            r.offered,
            r.source_ticks,
            r.secs,
            r.stored_per_s,
            100.0 * r.stored_per_s / r.offered,
            r.lost,
            r.loss_pct,
            r.cpu_pct,
            r.rss_mib,
            r.hwm_mib,
            r.source_cpu
        );
    }
    println!("\nArchiver counters over the window (getPVStatus, summed over PVs):\n");
    println!(
        "| scenario | received/s | stored/s | written | dropped (buffer/client/timestamp/refused) | \
         disconnects | source-side drops | PVs with samples in window | out of order | \
         PVs never connected but receiving | bulk archivePV → PVs connected and storing | \
         SIGTERM → exit |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let c = &r.counters;
        println!(
            "| {} | {:.0} | {:.0} | {} | {}/{}/{}/{} | {} | {} | {}/{} | {} | {} | {}/{} after {:.3} s (POST {:.0} ms) | {:.2} s |",
            r.label,
            c.received as f64 / r.secs,
            c.stored as f64 / r.secs,
            c.written,
            c.dropped_buffer,
            c.dropped_client,
            c.dropped_timestamp,
            c.refused,
            c.disconnects,
            r.source_dropped,
            r.files.pvs_in_window,
            r.pvs,
            r.files.out_of_order,
            c.orphans,
            r.writing.0,
            r.pvs,
            r.writing.1,
            r.archive_post_ms,
            r.shutdown_s
        );
    }
    let with_libca: Vec<&Row> = rows.iter().filter(|r| r.libca.is_some()).collect();
    if !with_libca.is_empty() {
        println!(
            "\nThe bare libca client (ca_monitor_count.c), same run and IOC, same PVs and duration, \
             right after the archiver stopped:\n"
        );
        println!(
            "| scenario | libca events/s | libca CPU % | libca RSS MiB | libca gaps | \
             archiver CPU % | CPU ratio archiver / libca |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for r in with_libca {
            let l = r.libca.as_ref().unwrap();
            println!(
                "| {} | {:.0} | {:.1} | {:.1} | {} | {:.1} | {:.2} |",
                r.label,
                l.events_per_s,
                l.cpu_pct,
                l.rss_kb / 1024.0,
                l.gaps,
                r.cpu_pct,
                r.cpu_pct / l.cpu_pct
            );
        }
    }
    println!(
        "\nwrite period {write_period} s; every PV also monitors {} (archive fields)",
        ARCHIVE_FIELDS.join(", ")
    );
}

fn main() {
    if std::env::var("INGEST_ROLE").as_deref() == Ok("source") {
        run_source();
        return;
    }
    let scenarios = std::env::var("BENCH_SCENARIOS").unwrap_or_else(|_| "abd".into());
    let secs: f64 = env_num("BENCH_SECS", 30.0);
    let d_secs: f64 = env_num("BENCH_D_SECS", 10.0);
    let d_pvs: u64 = env_num("BENCH_D_PVS", 2000);
    let d_rates: Vec<u64> = std::env::var("BENCH_D_RATES")
        .unwrap_or_else(|_| "50,100,200,400".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let write_period: f64 = env_num("BENCH_WRITE_PERIOD", 10.0);
    let work = std::env::temp_dir().join(format!("archiver-ingest-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    eprintln!(
        "ingest bench: archiver {}, work dir {}, load avg {}",
        env!("CARGO_BIN_EXE_archiver"),
        work.display(),
        loadavg()
    );
    let libca = ca_common::build_libca_client(
        &python(),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/ca"),
    );
    if libca.is_none() {
        eprintln!("  libca baseline not built (gcc or epicscorelibs missing)");
    }
    let t_all = Instant::now();
    let mut rows = Vec::new();
    if scenarios.contains('a') {
        rows.push(run_scenario(
            "a) 1000 x 10 Hz",
            start_ioc(1000, 10),
            secs,
            libca.as_deref(),
            &work,
        ));
    }
    if scenarios.contains('r') {
        rows.push(run_scenario_with(
            "r) 1000 x 10 Hz + 4 readers",
            start_ioc(1000, 10),
            secs,
            None,
            &work,
            &Extra {
                readers: 4,
                ..Extra::default()
            },
        ));
    }
    if scenarios.contains('e') {
        let pvs: u64 = env_num("BENCH_E_PVS", 10_000);
        let hours: u64 = env_num("BENCH_E_HOURS", 3);
        rows.push(run_scenario_with(
            &format!("e) 1000 x 10 Hz + ETL of {pvs} PVs x {hours} h"),
            start_ioc(1000, 10),
            secs,
            None,
            &work,
            &Extra {
                etl_pvs: pvs,
                etl_hours: hours,
                ..Extra::default()
            },
        ));
    }
    if scenarios.contains('j') {
        rows.push(run_scenario_with(
            "b) 2000 x 50 Hz, journal off",
            start_ioc(2000, 50),
            secs,
            None,
            &work,
            &Extra {
                engine_toml: "journal = false\n".into(),
                ..Extra::default()
            },
        ));
    }
    if scenarios.contains('l') {
        rows.push(run_scenario_with(
            "l) 2000 x 50 Hz + 4 readers + mgmt loop",
            start_ioc(2000, 50),
            env_num("BENCH_L_SECS", 600.0),
            None,
            &work,
            &Extra {
                readers: 4,
                mgmt_loop: true,
                ..Extra::default()
            },
        ));
    }
    if scenarios.contains('b') {
        rows.push(run_scenario(
            "b) 2000 x 50 Hz",
            start_ioc(2000, 50),
            secs,
            libca.as_deref(),
            &work,
        ));
    }
    if scenarios.contains('d') {
        for rate in d_rates {
            let label = format!("d) {d_pvs} x {rate} Hz");
            let row = run_scenario(&label, start_sim(d_pvs, rate), d_secs, None, &work);
            let lossy = row.lost > 0;
            rows.push(row);
            if lossy {
                break; // the next rates would only lose more
            }
        }
    }
    if scenarios.contains('m') {
        println!(
            "\n| scenario | ready line s | first HTTP answer s | all restored s | all connected s \
             | all storing s | CPU % after | RSS HWM MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        let rate: u64 = env_num("BENCH_M_RATE", 1);
        for pvs in std::env::var("BENCH_M_PVS")
            .unwrap_or_else(|_| "100000".into())
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
        {
            run_restart(pvs, rate, &work);
        }
    }
    print_table(&rows, write_period);
    println!("\ntotal bench time {:.0} s", t_all.elapsed().as_secs_f64());
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
}
