//! Retrieval benchmark (issue 10): the real `archiver serve` binary answering
//! `/retrieval/data/getData.*` over generated PlainPB data.
//!
//! Data (made once by `archiver pb generate`, cached under
//! `target/bench-data/retrieval-v1/`, reused by later runs; delete the folder to regenerate):
//! * `BENCH:DAY:0`: 1 day at 10 Hz from 2023-06-01T00:00:00Z (864,000 samples), in the
//!   STS store (`PARTITION_HOUR`, 24 files);
//! * `BENCH:YEAR:0`: 1 year at 1 Hz from 2023-01-01T00:00:00Z (31,536,000 samples), in the
//!   LTS store (`PARTITION_YEAR`, one file of ~600 MB).
//!
//! Both are scalar doubles whose value is the sample number. The archiver runs with both
//! stores configured and no IOC (the PVs are in its catalogue, paused). Each request is a
//! plain HTTP/1.0 GET read to the end in 1 MiB reads and thrown away after counting the
//! samples in it (one byte scan: newlines for raw and csv, `{` for json and qw); the time
//! is from sending the request to the last byte. Samples/s = samples in the response / that
//! time. While a request runs, a thread reads the server's `VmRSS` every 5 ms (the maximum
//! is reported, and the RSS before the request).
//!
//! Baselines in the same run, on the same files: reading the files' bytes (`cat`, as
//! samples/s at the files' bytes per sample: the speed of the disk cache and the memory,
//! the ceiling of any server), and decoding them with `archiver_pb::PbReader` (the
//! decoder of `archiver pb`) without any HTTP or encoding.
//! With `BENCH_PREDECESSOR=/path/to/epics-archiver` (the predecessor, `cargo install
//! epics-archiver --version 0.4.2 --locked`), the same requests also go to it, serving
//! hard-linked copies of the same files, and each row says how many times faster ours is.
//!
//! Run: `cargo bench --bench retrieval` (env: `BENCH_REPEAT=2` best of N for each
//! measurement, `BENCH_ONLY=day` or `year` for one data set, `BENCH_DATA=DIR` to keep the
//! data elsewhere).

#![allow(clippy::unwrap_used, missing_docs)]

#[path = "common/procfs.rs"]
mod procfs;
use procfs::{loadavg, status_kb};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use archiver_pb::{Granularity, PbReader};
use archiver_storage::Tier;

const STS: &str = "pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_HOUR";
const LTS: &str = "pb://localhost?name=LTS&rootFolder=lts&partitionGranularity=PARTITION_YEAR";

struct DataSet {
    key: &'static str,
    pv: &'static str,
    rate: &'static str,
    duration: &'static str,
    start: &'static str,
    end: &'static str,
    store_url: &'static str,
    store: &'static str,
    granularity: Granularity,
    samples: u64,
}

const DAY: DataSet = DataSet {
    key: "day",
    pv: "BENCH:DAY:0",
    rate: "10",
    duration: "1d",
    start: "2023-06-01T00:00:00Z",
    end: "2023-06-02T00:00:00Z",
    store_url: STS,
    store: "sts",
    granularity: Granularity::Hour,
    samples: 864_000,
};

const YEAR: DataSet = DataSet {
    key: "year",
    pv: "BENCH:YEAR:0",
    rate: "1",
    duration: "1y",
    start: "2023-01-01T00:00:00Z",
    end: "2024-01-01T00:00:00Z",
    store_url: LTS,
    store: "lts",
    granularity: Granularity::Year,
    samples: 31_536_000,
};

fn env_num<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(d)
}

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_archiver")
}

fn data_dir() -> PathBuf {
    if let Ok(d) = std::env::var("BENCH_DATA") {
        return PathBuf::from(d);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench-data").join("retrieval-v1")
}

/// Generates `set` into `dir` unless a previous run did (a marker file per data set).
fn ensure(dir: &Path, set: &DataSet) {
    let marker = dir.join(format!("{}.done", set.key));
    if marker.exists() {
        println!("data {}: cached in {}", set.pv, dir.display());
        return;
    }
    let t = Instant::now();
    let out = Command::new(exe())
        .args(["pb", "generate", "--pvs", "1", "--rate", set.rate])
        .args(["--duration", set.duration, "--start", set.start])
        .args(["--prefix", set.pv.trim_end_matches('0')])
        .args(["--store-url", set.store_url, "--register", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "generate {}: {}",
        set.pv,
        String::from_utf8_lossy(&out.stderr)
    );
    print!("data {}: {}", set.pv, String::from_utf8_lossy(&out.stdout));
    println!("  ({:.1} s)", t.elapsed().as_secs_f64());
    std::fs::write(marker, b"").unwrap();
}

fn files(dir: &Path, set: &DataSet) -> Vec<PathBuf> {
    Tier::new("X", dir.join(set.store), set.granularity)
        .partitions(set.pv)
        .unwrap()
        .into_iter()
        .map(|p| p.path)
        .collect()
}

// ---------------------------------------------------------------------------------------
// the server

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let config = dir.join("archiver.toml");
        std::fs::write(
            &config,
            format!("[storage]\ndata_stores = [\"{STS}\", \"{LTS}\"]\n"),
        )
        .unwrap();
        let mut child = Command::new(exe())
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .env("EPICS_CA_ADDR_LIST", "127.0.0.1:9")
            .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(rest) = line.split_once(" listening on http://") {
                    let addr: std::net::SocketAddr =
                        rest.1.split_whitespace().next().unwrap().parse().unwrap();
                    let _ = tx.send(addr.port());
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("archiver serve did not start");
        Server { child, port }
    }

    /// The predecessor `epics-archiver` (path `exe`) serving hard-linked copies of the
    /// same files (so that its ETL, held off by a huge `hold` anyway, cannot touch ours),
    /// its tiers configured like ours; ready when `/health` answers 200.
    fn predecessor(exe: &Path, dir: &Path) -> Server {
        let pred = dir.join("predecessor");
        let _ = std::fs::remove_dir_all(&pred);
        std::fs::create_dir_all(&pred).unwrap();
        for tier in ["sts", "lts"] {
            let st = Command::new("cp")
                .arg("-al")
                .arg(dir.join(tier))
                .arg(pred.join(tier))
                .status()
                .unwrap();
            assert!(st.success(), "cp -al {tier}");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tier = |name: &str, g: &str| {
            format!(
                "[storage.{name}]\nroot_folder = \"{}\"\npartition_granularity = \"{g}\"\nhold = 1000000\ngather = 1\n",
                pred.join(name).display()
            )
        };
        std::fs::write(
            pred.join("archiver.toml"),
            format!(
                "listen_addr = \"127.0.0.1\"\nlisten_port = {port}\n[storage]\n{}{}{}[engine]\nwrite_period_secs = 10\n",
                tier("sts", "hour"),
                tier("mts", "day"),
                tier("lts", "year")
            ),
        )
        .unwrap();
        let child = Command::new(exe)
            .current_dir(&pred)
            .env("EPICS_CA_ADDR_LIST", "127.0.0.1:9")
            .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while status_of(&server, "/health") != Some(200) {
            assert!(
                Instant::now() < deadline,
                "epics-archiver did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The status code of a GET of `path`, `None` when the server does not answer.
fn status_of(server: &Server, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// one request

#[derive(Clone, Copy, PartialEq)]
enum Count {
    /// pbraw: newlines, minus the first header and each (empty line + header) pair.
    Raw,
    /// csv: newlines, minus the final empty line.
    Csv,
    /// json, qw: `{`, minus the PV object and its `meta`.
    Braces,
}

struct Got {
    secs: f64,
    bytes: u64,
    samples: u64,
    rss_before_kb: u64,
    rss_max_kb: u64,
}

fn get(server: &Server, path: &str, count: Count) -> Got {
    let pid = server.pid();
    let rss_before_kb = status_kb(pid, "VmRSS");
    let stop = Arc::new(AtomicBool::new(false));
    let max = Arc::new(AtomicU64::new(rss_before_kb));
    let sampler = {
        let (stop, max) = (stop.clone(), max.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                max.fetch_max(status_kb(pid, "VmRSS"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut head: Vec<u8> = Vec::new();
    let mut in_body = false;
    let (mut bytes, mut newlines, mut blank, mut braces) = (0u64, 0u64, 0u64, 0u64);
    let mut last = 0u8;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        if !in_body {
            head.extend_from_slice(chunk);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let status = String::from_utf8_lossy(&head[..end]).into_owned();
            assert!(status.contains(" 200 "), "GET {path}: {status}");
            let body_start = end + 4 - (head.len() - n);
            chunk = &buf[body_start..n];
            in_body = true;
        }
        bytes += chunk.len() as u64;
        match count {
            Count::Braces => braces += chunk.iter().filter(|&&b| b == b'{').count() as u64,
            Count::Raw | Count::Csv => {
                newlines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                if count == Count::Raw {
                    if last == b'\n' && chunk.first() == Some(&b'\n') {
                        blank += 1;
                    }
                    blank += memchr::memmem::find_iter(chunk, b"\n\n").count() as u64;
                }
            }
        }
        if let Some(&b) = chunk.last() {
            last = b;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let samples = match count {
        Count::Raw => newlines.saturating_sub(1 + 2 * blank),
        Count::Csv => newlines.saturating_sub(1),
        Count::Braces => braces.saturating_sub(2),
    };
    Got {
        secs,
        bytes,
        samples,
        rss_before_kb,
        rss_max_kb: max.load(Ordering::Relaxed),
    }
}

/// The same request to the predecessor, as a row with our rate / its rate; "not served"
/// when it answers something else than 200 (an endpoint or operator it lacks) or a
/// different number of samples than ours (`expected`).
fn predecessor_row(
    p: &Server,
    set: &DataSet,
    what: &str,
    path: &str,
    count: Count,
    our_rate: f64,
    expected: u64,
) -> String {
    let repeat: usize = env_num("BENCH_REPEAT", 2);
    let code = status_of(p, path);
    if code != Some(200) {
        return format!(
            "| {} | predecessor `epics-archiver`: {what} | | | | | | | not served ({}) |",
            set.pv,
            code.map_or("no answer".to_string(), |c| format!("HTTP {c}"))
        );
    }
    let g = best_of(repeat, || get(p, path, count));
    let rate = set.samples as f64 / g.secs;
    let note = if g.samples == expected {
        format!("ours {:.2}× faster", our_rate / rate)
    } else {
        format!("{} samples (ours {expected}): not comparable", g.samples)
    };
    format!(
        "| {} | predecessor `epics-archiver`: {what} | {} | {:.3} | {:.1} M | {:.0} MB/s | {:.0} → {:.0} | | {note} |",
        set.pv,
        g.samples,
        g.secs,
        rate / 1e6,
        g.bytes as f64 / g.secs / 1e6,
        g.rss_before_kb as f64 / 1024.0,
        g.rss_max_kb as f64 / 1024.0,
    )
}

/// The fastest of `n` runs of `f` (at least one), by `secs`; `merge` folds what the
/// other runs saw into it (the highest RSS).
fn fastest<T>(
    n: usize,
    mut f: impl FnMut() -> T,
    secs: impl Fn(&T) -> f64,
    merge: impl Fn(&mut T, &T),
) -> T {
    let mut best = f();
    for _ in 1..n.max(1) {
        let mut g = f();
        if secs(&g) < secs(&best) {
            merge(&mut g, &best);
            best = g;
        } else {
            merge(&mut best, &g);
        }
    }
    best
}

/// The fastest of `n` requests, with the highest RSS any of them saw.
fn best_of(n: usize, f: impl FnMut() -> Got) -> Got {
    fastest(
        n,
        f,
        |g| g.secs,
        |b, g| b.rss_max_kb = b.rss_max_kb.max(g.rss_max_kb),
    )
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// baselines

/// Reads every file's bytes (a `cat` to nowhere); returns (secs, bytes).
fn cat(files: &[PathBuf]) -> (f64, u64) {
    let t = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    for f in files {
        let mut file = std::fs::File::open(f).unwrap();
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
    }
    (t.elapsed().as_secs_f64(), bytes)
}

/// Decodes every sample of every file with `PbReader`; returns (secs, samples).
fn decode(files: &[PathBuf]) -> (f64, u64) {
    let t = Instant::now();
    let mut n = 0u64;
    for f in files {
        let mut r = PbReader::open(f).unwrap();
        while r.next_sample().unwrap().is_some() {
            n += 1;
        }
    }
    (t.elapsed().as_secs_f64(), n)
}

// ---------------------------------------------------------------------------------------

enum Target {
    /// At least this many samples per second.
    Rate(f64),
    /// At most this many seconds.
    Secs(f64),
    None,
}

/// One row of the table: a request and what its answer must hold.
struct Request {
    what: String,
    path: String,
    count: Count,
    /// Samples (or a post-processor's events) the answer holds, lowest and highest.
    events: (u64, u64),
    target: Target,
}

/// The requests over `set`: getData in every benched format, and over the year
/// `mean_3600` and `optimized_1000` (json).
fn requests(set: &DataSet, from: &str, to: &str) -> Vec<Request> {
    let mut out = Vec::new();
    for (ext, count, min_rate) in [
        ("raw", Count::Raw, 20e6),
        ("json", Count::Braces, 8e6),
        ("csv", Count::Csv, 8e6),
        ("qw", Count::Braces, 8e6),
    ] {
        out.push(Request {
            what: format!("getData.{ext}"),
            path: format!(
                "/retrieval/data/getData.{ext}?pv={}&from={from}&to={to}",
                enc(set.pv)
            ),
            count,
            events: (set.samples, set.samples),
            target: Target::Rate(min_rate),
        });
    }
    if set.key == "year" {
        for (op, bins, target) in [
            ("mean_3600", 8760, Target::None),
            ("optimized_1000", 1000, Target::Secs(1.0)),
        ] {
            out.push(Request {
                what: format!("getData.json `{op}`"),
                path: format!(
                    "/retrieval/data/getData.json?pv={}&from={from}&to={to}",
                    enc(&format!("{op}({})", set.pv))
                ),
                count: Count::Braces,
                events: (bins, bins + 2),
                target,
            });
        }
    }
    out
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let repeat: usize = env_num("BENCH_REPEAT", 2);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let sets: Vec<&DataSet> = [&DAY, &YEAR]
        .into_iter()
        .filter(|s| only.is_empty() || only == s.key)
        .collect();
    let started = Instant::now();
    println!(
        "retrieval bench: nproc {}, load average {} at start",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    for set in &sets {
        ensure(&dir, set);
    }
    let server = Server::start(&dir);
    println!(
        "server pid {}, RSS {} kB idle",
        server.pid(),
        status_kb(server.pid(), "VmRSS")
    );
    let predecessor =
        std::env::var_os("BENCH_PREDECESSOR").map(|exe| Server::predecessor(Path::new(&exe), &dir));
    let mut rows: Vec<String> = Vec::new();
    for set in &sets {
        let files = files(&dir, set);
        let (from, to) = (enc(set.start), enc(set.end));
        // Warm the page cache, so that every reader below starts from the same state.
        let (_, file_bytes) = cat(&files);
        let per_sample = file_bytes as f64 / set.samples as f64;
        let (cat_secs, _) = fastest(repeat, || cat(&files), |r| r.0, |_, _| {});
        let cat_rate = set.samples as f64 / cat_secs;
        let (dec_secs, dec_n) = fastest(repeat, || decode(&files), |r| r.0, |_, _| {});
        assert_eq!(dec_n, set.samples, "{}: samples in the files", set.pv);
        let dec_rate = set.samples as f64 / dec_secs;
        rows.push(format!(
            "| {} | baseline: read the files (`cat`) | {} | {:.3} | {:.1} M | {:.0} MB/s | | |",
            set.pv,
            set.samples,
            cat_secs,
            cat_rate / 1e6,
            file_bytes as f64 / cat_secs / 1e6
        ));
        rows.push(format!(
            "| {} | baseline: decode the files (`PbReader`) | {} | {:.3} | {:.1} M | | | |",
            set.pv,
            dec_n,
            dec_secs,
            dec_rate / 1e6
        ));
        println!(
            "{}: {} files, {:.1} MB, {per_sample:.2} bytes/sample; cat {:.1} M samples/s, decode {:.1} M samples/s",
            set.pv,
            files.len(),
            file_bytes as f64 / 1e6,
            cat_rate / 1e6,
            dec_rate / 1e6
        );
        for r in requests(set, &from, &to) {
            let g = best_of(repeat, || get(&server, &r.path, r.count));
            let (lo, hi) = r.events;
            assert!(
                g.samples >= lo && g.samples <= hi,
                "{} {}: {} samples or events in the response, expected {lo}..={hi}",
                set.pv,
                r.what,
                g.samples
            );
            // Samples read per second (for a post-processor: the samples it read).
            let rate = set.samples as f64 / g.secs;
            let verdict = match r.target {
                Target::Rate(min) if rate >= min => "met",
                Target::Secs(max) if g.secs <= max => "met (≤ 1 s)",
                Target::Rate(_) => "missed",
                Target::Secs(_) => "missed (≤ 1 s)",
                Target::None => "",
            };
            let row = format!(
                "| {} | {} | {} | {:.3} | {:.1} M | {} | {:.0} → {:.0} | {:.2}× / {:.2}× | {verdict} | {} |",
                set.pv,
                r.what,
                if r.events.0 == set.samples {
                    g.samples.to_string()
                } else {
                    format!("{} in, {} out", set.samples, g.samples)
                },
                g.secs,
                rate / 1e6,
                if r.events.0 == set.samples {
                    format!("{:.0} MB/s", g.bytes as f64 / g.secs / 1e6)
                } else {
                    String::new()
                },
                g.rss_before_kb as f64 / 1024.0,
                g.rss_max_kb as f64 / 1024.0,
                rate / cat_rate,
                rate / dec_rate,
                loadavg(),
            );
            println!("{row}");
            rows.push(row);
            if let Some(p) = &predecessor {
                let row = predecessor_row(p, set, &r.what, &r.path, r.count, rate, g.samples);
                println!("{row}");
                rows.push(row);
            }
        }
    }
    println!(
        "\nserver VmHWM {:.0} MiB; load average {} at end; {:.0} s in all\n",
        status_kb(server.pid(), "VmHWM") as f64 / 1024.0,
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "| PV | request | samples | seconds (best of {repeat}) | samples/s | body MB/s | server RSS MiB before → max | vs cat / vs decode | target | load average after |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|---|");
    for r in rows {
        println!("{r}");
    }
}
