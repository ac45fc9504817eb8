//! Running the real `archiver serve` binary in tests, and a minimal HTTP client.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// Every `.pb` file under `dir` (none if it does not exist).
pub fn pb_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pb") {
                out.push(p);
            }
        }
    }
    out
}

/// `archiver pb --check` of `files`: `Err` with its error output if any is unreadable.
pub fn pb_check(files: &[PathBuf]) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .arg("pb")
        .arg("--check")
        .args(files)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A running `archiver serve`.
pub struct Archiver {
    pub child: Option<Child>,
    /// The address the binary reported it listens on.
    pub addr: SocketAddr,
    /// `addr.port()`.
    pub port: u16,
    pub data_dir: PathBuf,
    pub ioc_port: u16,
    pub beacon_port: u16,
}

/// How long `archiver serve` may take to print its address (restoring PVs included).
const START_TIMEOUT: Duration = Duration::from_secs(20);

impl Archiver {
    /// Starts `archiver serve` with its data in `data_dir`, searching the IOC at `ioc_port`,
    /// writing buffers every `write_period` seconds.
    ///
    /// The binary binds `127.0.0.1:0` and the test reads the address it prints on stdout
    /// (`archiver X listening on http://ADDR (...)`): no port is picked beforehand, so no
    /// other process can take it in between.
    pub fn start(data_dir: &Path, ioc_port: u16, beacon_port: u16, write_period: f64) -> Archiver {
        Archiver::start_with(
            data_dir,
            ioc_port,
            beacon_port,
            &format!("[engine]\nwrite_period_secs = {write_period}\n"),
        )
    }

    /// [`Archiver::start`] with `config` as the whole configuration file.
    pub fn start_with(data_dir: &Path, ioc_port: u16, beacon_port: u16, config: &str) -> Archiver {
        Archiver::launch("serve", data_dir, ioc_port, beacon_port, config)
    }

    /// `archiver demo` (its own simulated IOC, its PVs archived) with `config` as the whole
    /// configuration file.
    pub fn start_demo(data_dir: &Path, config: &str) -> Archiver {
        Archiver::launch("demo", data_dir, 0, 0, config)
    }

    /// `archiver serve` listening on `listen` (`0.0.0.0:0` for a wide one) with `config`
    /// and the environment `env`, searching no IOC.
    pub fn start_on(data_dir: &Path, config: &str, listen: &str, env: &[(&str, &str)]) -> Archiver {
        Archiver::launch_on("serve", data_dir, (1, 0), config, listen, env)
    }

    /// [`Archiver::start_demo`] with the binary's log (stderr, `RUST_LOG=warn`) written to
    /// the file `log` instead of the test's stderr.
    pub fn start_demo_logging(data_dir: &Path, config: &str, log: &Path) -> Archiver {
        Archiver::spawn(
            "demo",
            data_dir,
            (0, 0),
            config,
            "127.0.0.1:0",
            &[],
            Some(log),
        )
    }

    /// `archiver <subcommand>` (`serve` or `demo`); see [`Archiver::start_with`].
    fn launch(
        subcommand: &str,
        data_dir: &Path,
        ioc_port: u16,
        beacon_port: u16,
        config: &str,
    ) -> Archiver {
        Archiver::launch_on(
            subcommand,
            data_dir,
            (ioc_port, beacon_port),
            config,
            "127.0.0.1:0",
            &[],
        )
    }

    /// [`Archiver::launch`] listening on `listen`, with `env` added to its environment.
    fn launch_on(
        subcommand: &str,
        data_dir: &Path,
        ports: (u16, u16),
        config: &str,
        listen: &str,
        env: &[(&str, &str)],
    ) -> Archiver {
        Archiver::spawn(subcommand, data_dir, ports, config, listen, env, None)
    }

    /// [`Archiver::launch_on`] with stderr into the file `log` if given.
    fn spawn(
        subcommand: &str,
        data_dir: &Path,
        (ioc_port, beacon_port): (u16, u16),
        config: &str,
        listen: &str,
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Archiver {
        let config_text = config;
        let config = data_dir.join("archiver.toml");
        std::fs::create_dir_all(data_dir).unwrap();
        std::fs::write(&config, config_text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_archiver"))
            .args([subcommand, "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", listen])
            .envs(env.iter().copied())
            .env("EPICS_CA_ADDR_LIST", format!("127.0.0.1:{ioc_port}"))
            .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
            .env("EPICS_CA_REPEATER_PORT", beacon_port.to_string())
            .env("EPICS_CA_CONN_TMO", "3")
            .env("EPICS_CA_MAX_ARRAY_BYTES", "4000000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(match log {
                Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("spawn archiver");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keeps draining stdout after the address is read, so the binary never blocks
            // on (or dies of) a full or closed pipe.
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        break addr;
                    }
                    seen.push(line);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child.wait();
                    panic!(
                        "archiver serve exited ({status:?}) before printing its address; stdout:\n{}",
                        seen.join("\n")
                    );
                }
                Err(RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "archiver serve did not print 'listening on http://ADDR' within {START_TIMEOUT:?}; stdout:\n{}",
                        seen.join("\n")
                    );
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        };
        Archiver {
            child: Some(child),
            addr,
            port: addr.port(),
            data_dir: data_dir.to_path_buf(),
            ioc_port,
            beacon_port,
        }
    }

    /// GET `path_and_query`; returns (status, body).
    pub fn get(&self, path_and_query: &str) -> (u16, String) {
        http(self.port, "GET", path_and_query, None)
    }

    /// GET the body as bytes.
    pub fn get_bytes(&self, path_and_query: &str) -> (u16, Vec<u8>) {
        http_bytes(self.port, "GET", path_and_query, None)
    }

    /// POST `body` to `path_and_query`; returns (status, body).
    pub fn post(&self, path_and_query: &str, body: &str) -> (u16, String) {
        http(self.port, "POST", path_and_query, Some(body))
    }

    /// GET and parse JSON, asserting 200.
    pub fn json(&self, path_and_query: &str) -> serde_json::Value {
        let (status, body) = self.get(path_and_query);
        assert_eq!(status, 200, "GET {path_and_query}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path_and_query}: {e}: {body}"))
    }

    /// Kills the process with SIGKILL (nothing flushed) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("archiver did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `f` every 100 ms until it returns true; panics naming `what` when `secs`
    /// pass first.
    pub fn wait_until(&self, secs: f64, what: &str, mut f: impl FnMut(&Archiver) -> bool) {
        wait_until(secs, what, || f(self));
    }

    /// The status object of one PV.
    pub fn status(&self, pv: &str) -> serde_json::Value {
        let v = self.json(&format!("/mgmt/bpl/getPVStatus?pv={}", enc(pv)));
        v[0].clone()
    }

    /// getData.json samples of `pv` from `from` to `to` (ISO strings).
    pub fn data(&self, pv: &str, from: &str, to: &str) -> Vec<serde_json::Value> {
        let v = self.json(&format!(
            "/retrieval/data/getData.json?pv={}&from={}&to={}",
            enc(pv),
            enc(from),
            enc(to)
        ));
        v.get(0)
            .and_then(|o| o["data"].as_array())
            .cloned()
            .unwrap_or_default()
    }

    /// [`Archiver::data`] for a PV that may not have connected yet: no samples (instead of
    /// a failed assertion) while getData answers anything but 200 (a PV whose type is not
    /// known yet is a 404), for polling.
    pub fn data_so_far(&self, pv: &str, from: &str, to: &str) -> Vec<serde_json::Value> {
        let (status, body) = self.get(&format!(
            "/retrieval/data/getData.json?pv={}&from={}&to={}",
            enc(pv),
            enc(from),
            enc(to)
        ));
        if status != 200 {
            return Vec::new();
        }
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get(0).and_then(|o| o["data"].as_array()).cloned())
            .unwrap_or_default()
    }
}

impl Drop for Archiver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A one-shot HTTP/1.1 request with `Connection: close`.
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let (status, bytes) = http_bytes(port, method, path, body);
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Like [`http`], with the body as bytes (HTTP/1.0, so never chunked).
pub fn http_bytes(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>) {
    http_with(port, method, path, &[], body)
}

/// Like [`http_bytes`], with the extra request headers `headers` (`("Authorization",
/// "Bearer k")`).
pub fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, raw[split + 4..].to_vec())
}

/// Polls `f` every 100 ms until it returns true; panics naming `what` when `secs` pass
/// first. The condition is checked once more at the deadline, so a slow last poll counts.
pub fn wait_until(secs: f64, what: &str, f: impl FnMut() -> bool) {
    wait_until_every(Duration::from_millis(100), secs, what, f);
}

/// [`wait_until`] polling every `every` (for conditions that cost the server work).
pub fn wait_until_every(every: Duration, secs: f64, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    loop {
        if f() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {:.1} s waiting for {what}",
                start.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(every);
    }
}

/// The address in `archiver X listening on http://ADDR (...)`, the line `archiver serve`
/// prints once its socket is bound.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split_once(" listening on ")?.1;
    let rest = rest
        .strip_prefix("http://")
        .or_else(|| rest.strip_prefix("https://"))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// ISO-8601 of a Unix time in seconds (`2024-01-01T00:00:00Z`).
pub fn iso(secs: i64) -> String {
    archiver_time::Timestamp::new(secs, 0)
        .iso(archiver_time::Precision::Seconds)
        .to_string()
}

/// Now, Unix seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Runs `archiver pb --check` on every `.pb` file under `root`, which must pass; returns
/// how many files were checked (at least one).
pub fn check_pb_files(root: &Path) -> usize {
    let files = pb_files(root);
    assert!(!files.is_empty(), "no .pb files under {}", root.display());
    if let Err(e) = pb_check(&files) {
        panic!("archiver pb --check failed: {e}");
    }
    files.len()
}
