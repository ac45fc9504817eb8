//! Monitor load with this crate's CA server as the source: our client vs a bare libca
//! client, same server process, same run.
//!
//! This binary re-executes itself as the server (env `ARCHIVER_CA_BENCH_SERVE`), so the
//! server's CPU is a process of its own and the client's CPU is measured separately:
//! `archiver_ca::server::Server` serving N double PVs (`server::sim::load_pvs`, named
//! `BENCH:LOAD:i`), and one posting thread that at each tick k (R ticks per second, on an
//! absolute schedule; a late tick runs late, none is skipped) posts the value k to every
//! PV. Then, one after the other,
//! 1. our client monitors all N PVs (DBR_TIME native, DBE_VALUE|DBE_ALARM, one shared
//!    queue drained in batches) on a 2-worker tokio runtime, 2 s warm-up then S seconds
//!    of counting;
//! 2. the same on a current-thread runtime (diagnostic: no cross-thread hand-off);
//! 3. `benches/ca_monitor_count.c`, built with gcc against epicscorelibs' libca, does the
//!    same as 1.
//!
//! For each client: events/s, % of offered (N × R), its CPU (% of one core) and RSS,
//! gaps (a PV's value jumping by more than one), its queue drops; and over the same
//! window the server's CPU, the updates it actually posted per second, and the updates
//! it dropped because the client did not read them fast enough.
//!
//! Run: `cargo bench -p archiver-ca --bench server_load` (env: BENCH_PVS=10000,
//! BENCH_RATE=50 or a list such as 50,40,30 to run each rate in turn, BENCH_SECS=15,
//! BENCH_SERVER_THREADS=1 (tokio workers of the server; the posting thread is extra),
//! BENCH_CLIENT_THREADS=2 (tokio workers of our client in the `ours` run),
//! BENCH_CLIENTS=ours,ours-ct,libca (`ours-ct`: our client again on a current-thread
//! runtime, so the circuit task and the consumer share one thread, as libca's callbacks
//! run in its receive thread), ARCHIVER_TEST_PYTHON for epicscorelibs).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use archiver_ca::server::{Server, ServerConfig, sim};
use archiver_ca::{Timestamp, Value};
use common::{
    Measured, Window, build_libca_client, env_num, free_port, python, run_libca, run_ours, usage,
};

const SERVE_ENV: &str = "ARCHIVER_CA_BENCH_SERVE";

fn main() {
    if let Ok(port) = std::env::var(SERVE_ENV) {
        serve(port.parse().unwrap());
        return;
    }
    let pvs = env_num("BENCH_PVS", 10_000);
    let secs = env_num("BENCH_SECS", 15);
    let rates: Vec<u64> = std::env::var("BENCH_RATE")
        .unwrap_or_else(|_| "50".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let client_threads = env_num("BENCH_CLIENT_THREADS", 2);
    let clients = std::env::var("BENCH_CLIENTS").unwrap_or_else(|_| "ours,ours-ct,libca".into());
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let libca = clients
        .contains("libca")
        .then(|| build_libca_client(&python(), &manifest))
        .flatten();
    if clients.contains("libca") && libca.is_none() {
        eprintln!("libca client not built: gcc or epicscorelibs missing (ARCHIVER_TEST_PYTHON)");
    }
    let names: Vec<String> = (0..pvs).map(|i| format!("BENCH:LOAD:{i}")).collect();
    let mut rows = Vec::new();
    for &rate in &rates {
        eprintln!(
            "server_load: {pvs} PVs x {rate} Hz = {} updates/s offered by our server, {secs} s per client",
            pvs * rate
        );
        let port = free_port();
        let repeater = free_port();
        let mut srv = ServerProc::start(port, repeater, pvs, rate);
        let offered = (pvs * rate) as f64;
        let mut ours_row = None;
        for (key, label, threads) in [
            ("ours", "archiver-ca", client_threads),
            ("ours-ct", "archiver-ca current-thread", 0),
        ] {
            if !clients.split(',').any(|c| c.trim() == key) {
                continue;
            }
            let rt = match threads {
                0 => tokio::runtime::Builder::new_current_thread(),
                n => {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(n as usize);
                    b
                }
            }
            .enable_all()
            .build()
            .unwrap();
            // let the server see the previous client go
            std::thread::sleep(Duration::from_millis(500));
            let mut w = ServerWindow::new(&mut srv);
            let m = rt.block_on(run_ours(port, repeater, &names, secs, &mut w));
            drop(rt);
            let row = Row::new(label, rate, offered, m, &w);
            eprintln!("  {}", row.line());
            if key == "ours" {
                ours_row = Some(rows.len());
            }
            rows.push(row);
        }
        if let Some(exe) = &libca {
            std::thread::sleep(Duration::from_millis(500));
            let mut w = ServerWindow::new(&mut srv);
            let m = run_libca(exe, port, repeater, &names, secs, &mut w);
            let row = Row::new("libca (ca_monitor_count.c)", rate, offered, m, &w);
            eprintln!("  {}", row.line());
            if let Some(i) = ours_row {
                let (o, l) = (&rows[i].m, &row.m);
                eprintln!(
                    "  ratio archiver-ca / libca: events/s {:.2}, client CPU {:.2}",
                    o.rate() / l.rate(),
                    o.cpu_pct / l.cpu_pct
                );
            }
            rows.push(row);
        }
        drop(srv);
    }
    if let Some(exe) = &libca {
        let _ = std::fs::remove_file(exe);
    }
    println!();
    println!("{}", Row::HEADER);
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!("{}", r.line());
    }
    println!();
    for r in rows.iter().filter(|r| r.client.starts_with("archiver-ca")) {
        if let Some(l) = rows
            .iter()
            .find(|l| l.client.starts_with("libca") && l.rate == r.rate)
        {
            println!(
                "{} Hz: {} / libca ratio: events/s {:.2}, client CPU {:.2}, RSS {:.2}",
                r.rate,
                r.client,
                r.m.rate() / l.m.rate(),
                r.m.cpu_pct / l.m.cpu_pct,
                r.m.rss_kb as f64 / l.m.rss_kb as f64
            );
        }
    }
}

struct Row {
    client: &'static str,
    rate: u64,
    offered: f64,
    m: Measured,
    posted_per_s: f64,
    server_cpu_pct: f64,
    server_dropped: u64,
}

impl Row {
    const HEADER: &str = "| client | rate Hz | offered/s | server posted/s | events/s | of offered | client CPU % | client RSS MiB | gaps | server CPU % | dropped (server / client queue) |";

    fn new(client: &'static str, rate: u64, offered: f64, m: Measured, w: &ServerWindow) -> Row {
        let (a, b) = (
            w.start.clone().unwrap_or_default(),
            w.end.clone().unwrap_or_default(),
        );
        let dt = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
        Row {
            client,
            rate,
            offered,
            m,
            posted_per_s: (b.posted - a.posted) as f64 / dt,
            server_cpu_pct: 100.0 * (b.cpu_s - a.cpu_s) / dt,
            server_dropped: b.dropped - a.dropped,
        }
    }

    fn line(&self) -> String {
        let m = &self.m;
        format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.1} % | {:.1} | {:.1} | {} | {:.1} | {} / {} |",
            self.client,
            self.rate,
            self.offered,
            self.posted_per_s,
            m.rate(),
            100.0 * m.rate() / self.offered,
            m.cpu_pct,
            m.rss_kb as f64 / 1024.0,
            m.gaps,
            self.server_cpu_pct,
            self.server_dropped,
            m.dropped.map_or("-".into(), |d| d.to_string())
        )
    }
}

/// The server process, spoken to over its stdin/stdout.
struct ServerProc {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

#[derive(Clone, Debug)]
struct ServerStats {
    at: Instant,
    posted: u64,
    cpu_s: f64,
    dropped: u64,
}

impl Default for ServerStats {
    fn default() -> Self {
        ServerStats {
            at: Instant::now(),
            posted: 0,
            cpu_s: 0.0,
            dropped: 0,
        }
    }
}

impl ServerProc {
    fn start(port: u16, repeater: u16, pvs: u64, rate: u64) -> ServerProc {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(SERVE_ENV, port.to_string())
            .env("ARCHIVER_CA_BENCH_REPEATER", repeater.to_string())
            .env("BENCH_PVS", pvs.to_string())
            .env("BENCH_RATE", rate.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut p = ServerProc { child, stdin, out };
        let line = p.line();
        assert!(line.starts_with("READY"), "server said {line:?}");
        p
    }

    fn line(&mut self) -> String {
        let mut s = String::new();
        self.out.read_line(&mut s).unwrap();
        s
    }

    fn stats(&mut self) -> ServerStats {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(b"stats\n").unwrap();
        stdin.flush().unwrap();
        let line = self.line();
        let at = Instant::now();
        let field = |k: &str| -> f64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
                .unwrap_or(f64::NAN)
        };
        ServerStats {
            at,
            posted: field("posted") as u64,
            cpu_s: field("cpu_s"),
            dropped: field("dropped") as u64,
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        // EOF on its stdin ends the server; kill it if it does not go
        drop(self.stdin.take());
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct ServerWindow<'a> {
    srv: &'a mut ServerProc,
    start: Option<ServerStats>,
    end: Option<ServerStats>,
}

impl<'a> ServerWindow<'a> {
    fn new(srv: &'a mut ServerProc) -> Self {
        ServerWindow {
            srv,
            start: None,
            end: None,
        }
    }
}

impl Window for ServerWindow<'_> {
    fn start(&mut self) {
        self.start = Some(self.srv.stats());
    }
    fn end(&mut self) {
        self.end = Some(self.srv.stats());
    }
}

/// The server process: serves `BENCH_PVS` PVs, posts tick k to each `BENCH_RATE` times a
/// second; answers "stats" lines on stdin; exits at EOF.
fn serve(port: u16) {
    let pvs = env_num("BENCH_PVS", 10_000) as usize;
    let rate = env_num("BENCH_RATE", 50).max(1);
    let repeater = env_num("ARCHIVER_CA_BENCH_REPEATER", 0) as u16;
    let threads = env_num("BENCH_SERVER_THREADS", 1).max(1) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(Server::start(ServerConfig {
            port,
            beacon_addrs: vec![([127, 0, 0, 1], repeater).into()],
            ..ServerConfig::default()
        }))
        .unwrap();
    let handles: Vec<_> = sim::load_pvs("BENCH:", pvs)
        .into_iter()
        .map(|s| server.add_pv(s))
        .collect();
    let posted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let poster = {
        let (posted, stop) = (posted.clone(), stop.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut k: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let due = t0 + Duration::from_nanos(k * 1_000_000_000 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let stamp = Timestamp::now();
                for pv in &handles {
                    let _ = pv.post(Value::Double(k as f64), stamp, 0, 0);
                }
                posted.fetch_add(handles.len() as u64, Ordering::Relaxed);
            }
        })
    };
    println!("READY port={port}");
    let _ = std::io::stdout().flush();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines().map_while(Result::ok) {
        if line.trim() == "stats" {
            let (cpu, rss) = usage(None);
            println!(
                "STATS posted={} cpu_s={cpu:.2} rss_kb={rss} dropped={}",
                posted.load(Ordering::Relaxed),
                server.dropped_updates()
            );
            let _ = std::io::stdout().flush();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = poster.join();
    drop(server);
    drop(rt);
}
