//! Shared helpers of the PVA integration tests: a real pvAccess server (an EPICS IOC from
//! pythonSoftIOC, whose records pvxs's QSRV serves, or a p4p server script) on free
//! loopback ports, driven over stdin.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use archiver_pva::ClientConfig;

/// The venv with softioc and p4p (scripts/setup.sh).
pub fn python() -> String {
    let venv =
        std::env::var("ARCHIVER_TEST_VENV").unwrap_or_else(|_| "/tmp/archiver-test-venv".into());
    format!("{venv}/bin/python")
}

/// A free loopback port (TCP and UDP both free at the time of the call).
pub fn free_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A PVA server process.
pub struct Server {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// TCP port.
    pub tcp: u16,
    /// UDP search port.
    pub udp: u16,
    /// CA port (IOC); the port beacons are sent to (p4p server).
    pub ca: u16,
    script: String,
    prefix: String,
}

impl Server {
    /// Starts `script` (in tests/pva_support) with the prefix and ports; waits for READY.
    pub fn start(script: &str, prefix: &str) -> Server {
        Self::start_on(script, prefix, free_port(), free_port(), free_port())
    }

    /// As [`Server::start`] on given ports (a restart reuses them).
    pub fn start_on(script: &str, prefix: &str, tcp: u16, udp: u16, ca: u16) -> Server {
        let path = format!("{}/tests/pva_support/{script}", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(python())
            .arg(&path)
            .args([prefix, &tcp.to_string(), &udp.to_string(), &ca.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python with softioc/p4p: run scripts/setup.sh");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut s = Server {
            child,
            stdin,
            lines,
            tcp,
            udp,
            ca,
            script: script.into(),
            prefix: prefix.into(),
        };
        s.expect_line("READY", Duration::from_secs(30));
        s
    }

    /// Waits for a stdout line starting with `prefix`.
    pub fn expect_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(e) => panic!("{}: no {prefix:?} line: {e}", self.script),
            }
        }
    }

    /// Sends a command line and waits for its DONE.
    pub fn cmd(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        self.expect_line("DONE", Duration::from_secs(10));
    }

    /// A client configuration that searches only this server.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            addr_list: vec![format!("127.0.0.1:{}", self.udp).parse().unwrap()],
            auto_addr_list: false,
            broadcast_port: self.udp,
            ..ClientConfig::default()
        }
    }

    /// Kills the process (by its PID) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills and starts again on the same ports.
    pub fn restart(&mut self) {
        self.kill();
        let s = Server::start_on(&self.script, &self.prefix, self.tcp, self.udp, self.ca);
        *self = s;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
