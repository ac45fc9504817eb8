//! The open-file limit against HTTP connections (found by a fresh-user test: with the usual
//! soft limit of 1024 and the default `max_connections = 1024`, idle clients took every
//! file descriptor; journal segments, partition files and `/health` failed with EMFILE and
//! samples were dropped). The real binary under `ulimit -n`: the soft limit is raised to
//! the hard one, `max_connections` is lowered to what the limit leaves with a warning, and
//! hundreds of idle clients no longer starve archiving.

#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A started archiver, stopped with SIGTERM when dropped (also when a check fails).
struct Running(Child);

impl Running {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// `archiver demo` (its simulated PVs archived, buffers written every second) started by
/// `sh -c "<limits> && exec archiver ..."`, stderr into `log`; returns it and its address.
fn demo_under(limits: &str, dir: &Path, log: &Path) -> (Running, SocketAddr) {
    let config = dir.join("archiver.toml");
    std::fs::write(&config, "[engine]\nwrite_period_secs = 1\n").unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("{limits} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_archiver"))
        .args(["demo", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the archiver printed its address")
            .unwrap();
        if let Some(a) = support::listening_addr(&line) {
            break a;
        }
    };
    // Keep reading stdout so that the demo's prints never block it.
    std::thread::spawn(move || lines.for_each(drop));
    (Running(child), addr)
}

/// `(soft, hard)` "Max open files" of process `pid`.
fn open_file_limits(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut n = line["Max open files".len()..].split_whitespace();
    (
        n.next().unwrap().parse().unwrap(),
        n.next().unwrap().parse().unwrap(),
    )
}

/// The status line of `GET path` on a new connection.
fn status_of(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    got.lines().next().unwrap_or_default().to_string()
}

#[test]
fn idle_clients_took_every_file_descriptor_and_archiving_failed() {
    // This process opens hundreds of sockets itself.
    rlimit::increase_nofile_limit(4096).unwrap();

    // A low soft limit under a higher hard one: raised, nothing lowered.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("raised.log");
    let (child, _) = demo_under("ulimit -Sn 300 && ulimit -Hn 4096", dir.path(), &log);
    assert_eq!(open_file_limits(child.id()), (4096, 4096));
    drop(child);
    assert!(
        !std::fs::read_to_string(&log).unwrap().contains("lowered"),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    // A hard limit of 700: max_connections lowered to (700 - 512) / 2.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("low.log");
    let (child, addr) = demo_under("ulimit -n 700", dir.path(), &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("max_connections = 1024 lowered to 94"),
        "{text}"
    );
    // 650 clients that never finish a request, held over three write periods.
    let mut idle = Vec::new();
    for _ in 0..650 {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.write_all(b"GET /mgmt/bpl/getAllPVs HTTP/1.1\r\n");
            idle.push(s);
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status_of(addr, "/health"), "HTTP/1.1 200 OK");
    drop(idle);
    // Once they are gone, the server answers everything again.
    support::wait_until(10.0, "getAllPVs answered again", || {
        status_of(addr, "/mgmt/bpl/getAllPVs") == "HTTP/1.1 200 OK"
    });
    drop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("Too many open files"), "{text}");
}
