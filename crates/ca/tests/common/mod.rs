//! Test harness: runs `tests/ioc/harness_ioc.py` (a real EPICS IOC through the `softioc`
//! package) on free loopback ports, and mirrors its value functions.
//!
//! The Python comes from `ARCHIVER_TEST_PYTHON` (default `/tmp/archiver-test-venv/bin/python`);
//! a missing interpreter or package is a test failure with instructions, never a skip.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use archiver_ca::{CaString, ClientConfig, Timestamp, Value};

/// IOC update rate used by the tests (Hz).
pub const RATE: i64 = 10;
/// Length of the BIG waveform.
pub const BIG_LEN: usize = 100_000;

pub fn python() -> String {
    let py = std::env::var("ARCHIVER_TEST_PYTHON")
        .unwrap_or_else(|_| "/tmp/archiver-test-venv/bin/python".into());
    let ok = Command::new(&py)
        .args(["-c", "import softioc, epicscorelibs, numpy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the CA integration tests need a Python with softioc: set ARCHIVER_TEST_PYTHON (now {py:?}) \
         to a venv made with `python3 -m venv V && V/bin/pip install softioc==4.7.2 \
         epicscorelibs==7.0.10.99.0.2 pyepics==3.5.10 numpy`"
    );
    py
}

fn script(name: &str) -> PathBuf {
    // Used by this crate's tests and, through `#[path]`, by the workspace root's tests.
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let own = here.join("tests").join("ioc").join(name);
    if own.exists() {
        own
    } else {
        here.join("crates/ca/tests/ioc").join(name)
    }
}

static USED_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port free for both TCP and UDP on loopback, never handed out twice per process.
pub fn free_port() -> u16 {
    let mut used = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if used.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        used.push(port);
        return port;
    }
}

/// A running harness IOC.
pub struct Ioc {
    pub prefix: String,
    pub port: u16,
    pub beacon_port: u16,
    child: Option<Child>,
    py: String,
    args: Vec<String>,
}

impl Ioc {
    /// Starts `harness_ioc.py` with a unique prefix on fresh ports and waits until READY.
    pub fn start(tag: &str) -> Ioc {
        let py = python();
        let port = free_port();
        let beacon_port = free_port();
        let prefix = format!("{tag}{port}:");
        Self::start_with(&py, "harness_ioc.py", prefix, port, beacon_port, vec![])
    }

    pub fn start_with(
        py: &str,
        script_name: &str,
        prefix: String,
        port: u16,
        beacon_port: u16,
        extra: Vec<String>,
    ) -> Ioc {
        let mut args = vec![
            script(script_name).display().to_string(),
            "--prefix".into(),
            prefix.clone(),
            "--port".into(),
            port.to_string(),
            "--beacon-port".into(),
            beacon_port.to_string(),
        ];
        args.extend(extra);
        let mut ioc = Ioc {
            prefix,
            port,
            beacon_port,
            child: None,
            py: py.to_string(),
            args,
        };
        ioc.spawn();
        ioc
    }

    fn spawn(&mut self) {
        let mut child = Command::new(&self.py)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn harness IOC");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ready_sent = false;
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if !ready_sent && line.contains("READY") {
                    let _ = tx.send(());
                    ready_sent = true;
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            panic!(
                "harness IOC did not become READY within 30 s ({:?})",
                self.args
            );
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn pv(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    /// SIGKILL (like a crashed IOC); the kernel closes its sockets.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the IOC again on the same ports; returns when READY.
    pub fn restart(&mut self) -> Instant {
        self.kill();
        self.spawn();
        Instant::now()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Client configuration for this IOC (loopback only).
    pub fn config(&self) -> archiver_ca::ClientConfigBuilder {
        ClientConfig::builder()
            .addr_list(&format!("127.0.0.1:{}", self.port))
            .auto_addr_list(false)
            .repeater_port(self.beacon_port)
            .max_array_bytes(4 * 1024 * 1024)
    }
}

impl Drop for Ioc {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The tick of a time stamp (ts = k / RATE exactly), or panic if off-tick.
pub fn tick_of(ts: Timestamp) -> i64 {
    let step = 1_000_000_000 / RATE as u32;
    assert_eq!(ts.nanos % step, 0, "time stamp {ts:?} is not on a tick");
    ts.secs * RATE + i64::from(ts.nanos / step)
}

/// What the harness IOC publishes for `name` at tick `k` (mirror of harness_ioc.py).
pub fn expected(name: &str, k: i64) -> Value {
    let j = |n: i64| 0..n;
    match name {
        "AI" => Value::Double(((k % 800) - 400) as f64 * 0.25),
        "LI" => Value::Long((k % 1000) as i32),
        "SHORT" => Value::Short(((k % 30000) - 15000) as i16),
        "FLOAT" => Value::Float((k % 1000) as f32 * 0.5),
        "CHAR" => Value::Char((k % 256) as u8),
        "SI" => Value::String(CaString::new(&format!("k={k}"))),
        "MBBI" => Value::Enum((k % 4) as u16),
        "WF" => Value::DoubleArray(j(16).map(|j| k as f64 * 0.5 + j as f64).collect()),
        "WFC" => Value::CharArray(j(64).map(|j| ((k + j) % 256) as u8).collect()),
        "WFS" => Value::ShortArray(j(10).map(|j| ((k + j) % 30000) as i16).collect()),
        "WFL" => Value::LongArray(j(8).map(|j| (k * 10 + j) as i32).collect()),
        "WFF" => Value::FloatArray(j(8).map(|j| (k % 1000) as f32 * 0.25 + j as f32).collect()),
        "BIG" => Value::DoubleArray(j(BIG_LEN as i64).map(|j| (k + j) as f64).collect()),
        other => panic!("no expected value for {other}"),
    }
}

/// Alarm severity the IOC's AI record computes for a value (limits ±90 MAJOR, ±70 MINOR).
pub fn ai_severity(v: f64) -> u16 {
    if v >= 90.0 || v <= -90.0 {
        2
    } else if v >= 70.0 || v <= -70.0 {
        1
    } else {
        0
    }
}
