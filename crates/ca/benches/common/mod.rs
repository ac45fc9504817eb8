//! Shared by the monitor benchmarks (`monitor_load`, `server_load`): our client's counting
//! loop, the libca baseline (`ca_monitor_count.c`), CPU/RSS from /proc, the table rows.
//!
//! Every served PV's value is its tick number k, so a jump of more than one between two
//! updates of the same PV is a lost update (a gap).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use archiver_ca::{
    ChannelEvent, Client, ClientConfig, Overflow, Subscription, Value, event_queue, mask,
};

pub fn env_num(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

pub fn free_port() -> u16 {
    loop {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// (user+system CPU seconds, RSS kB) of a process (`None`: this one).
pub fn usage(pid: Option<u32>) -> (f64, u64) {
    let dir = pid.map_or_else(|| "/proc/self".to_string(), |p| format!("/proc/{p}"));
    let stat = std::fs::read_to_string(format!("{dir}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // fields 14 and 15 of /proc/pid/stat (1-based), i.e. 11 and 12 after the command;
    // USER_HZ is 100 on Linux
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

/// One client's measurement over its counting window.
#[derive(Debug, Default, Clone)]
pub struct Measured {
    pub events: u64,
    pub secs: f64,
    pub cpu_pct: f64,
    pub rss_kb: u64,
    pub gaps: u64,
    /// Values dropped by the client's own queue (`None` for libca).
    pub dropped: Option<u64>,
    pub connected: u64,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.secs.max(1e-9)
    }
}

/// Called at the start and at the end of a counting window (to sample the server).
pub trait Window {
    fn start(&mut self) {}
    fn end(&mut self) {}
}

impl Window for () {}

/// Monitors `names` with `archiver_ca` (DBR_TIME native, DBE_VALUE|DBE_ALARM, one shared
/// queue drained in batches): 2 s of warm-up, then `secs` s of counting.
pub async fn run_ours(
    port: u16,
    repeater: u16,
    names: &[String],
    secs: u64,
    window: &mut dyn Window,
) -> Measured {
    let pvs = names.len() as u64;
    let cfg = ClientConfig::builder()
        .addr_list(&format!("127.0.0.1:{port}"))
        .auto_addr_list(false)
        .repeater_port(repeater)
        .build()
        .unwrap();
    let client = Client::new(cfg).await.unwrap();
    let (q, rx) = event_queue(1_000_000, Overflow::DropNewest);
    let mut chans = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let ch = client.create_channel(name, &q, i as u64).unwrap();
        ch.subscribe(Subscription::time(mask::DBE_VALUE | mask::DBE_ALARM))
            .unwrap();
        chans.push(ch);
    }
    let mut last = vec![f64::NAN; names.len()];
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
            window.start();
            t0 = Instant::now();
            c0 = usage(None).0;
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
    let (c1, rss) = usage(None);
    window.end();
    let dropped = chans.iter().map(|c| c.dropped()).sum();
    Measured {
        events,
        secs: dt,
        cpu_pct: 100.0 * (c1 - c0) / dt,
        rss_kb: rss,
        gaps,
        dropped: Some(dropped),
        connected,
    }
}

/// Builds `benches/ca_monitor_count.c` against epicscorelibs' libca (`None`: gcc or
/// epicscorelibs missing).
pub fn build_libca_client(py: &str, manifest: &Path) -> Option<PathBuf> {
    let out = Command::new(py)
        .args(["-c", "import epicscorelibs.path as p; print(p.base_path)"])
        .output()
        .ok()?;
    let base = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let exe =
        std::env::temp_dir().join(format!("archiver_ca_monitor_count_{}", std::process::id()));
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

/// Runs the libca baseline on `names` for `secs` s of counting (after its 2 s warm-up).
pub fn run_libca(
    exe: &Path,
    port: u16,
    repeater: u16,
    names: &[String],
    secs: u64,
    window: &mut dyn Window,
) -> Measured {
    let file = std::env::temp_dir().join(format!(
        "archiver_ca_bench_names_{}.txt",
        std::process::id()
    ));
    std::fs::write(
        &file,
        names.iter().map(|n| format!("{n}\n")).collect::<String>(),
    )
    .unwrap();
    let mut child = Command::new(exe)
        .arg(&file)
        .arg(secs.to_string())
        .env("EPICS_CA_ADDR_LIST", format!("127.0.0.1:{port}"))
        .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
        .env("EPICS_CA_REPEATER_PORT", repeater.to_string())
        .env("EPICS_CA_MAX_ARRAY_BYTES", "1000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut text = String::new();
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        if line.starts_with("COUNTING") {
            window.start();
        } else if line.starts_with("LIBCA") {
            window.end();
            text = line;
        }
    }
    let _ = child.wait();
    let _ = std::fs::remove_file(&file);
    let field = |k: &str| -> f64 {
        text.split_whitespace()
            .find_map(|w| {
                w.strip_prefix(k)
                    .and_then(|v| v.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(f64::NAN)
    };
    let secs = field("secs");
    eprintln!("  libca: {}", text);
    Measured {
        events: field("events") as u64,
        secs: if secs.is_finite() { secs } else { f64::NAN },
        cpu_pct: field("cpu_pct"),
        rss_kb: field("rss_kb") as u64,
        gaps: field("gaps") as u64,
        dropped: None,
        connected: field("connected") as u64,
    }
}

/// The Python with epicscorelibs/softioc: `ARCHIVER_TEST_PYTHON`, else the venv made by
/// `scripts/setup.sh`.
pub fn python() -> String {
    std::env::var("ARCHIVER_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = "/tmp/archiver-test-venv/bin/python";
        if Path::new(venv).exists() {
            venv.into()
        } else {
            "/tmp/simioc-venv/bin/python".into()
        }
    })
}
