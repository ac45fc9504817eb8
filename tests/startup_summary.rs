//! The start-up summary in the log of the real binary: config file, data folders, PVs
//! restored, listening address; 10 s later, PVs connected.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_log_summarizes_the_start_and_the_connections_after_10_s() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("archiver.toml");
    std::fs::write(&config, "[engine]\nwrite_period_secs = 1\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(["demo", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut started, mut connected) = (None, None);
    while connected.is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains("started: listening on") {
                started = Some(line);
            } else if line.contains("s after start:") {
                connected = Some(line);
            }
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let started = started.expect("a start-up summary line");
    let data = dir.path().display().to_string();
    for w in [
        format!("config={}", config.display()),
        format!("data_dir={data}"),
        format!("STS={data}/sts"),
        "restored=0".to_string(),
        "listen=127.0.0.1:".to_string(),
    ] {
        assert!(started.contains(&w), "{started:?} lacks {w:?}");
    }
    let connected = connected.expect("the connections line 10 s after start");
    assert!(connected.contains("10 s after start"), "{connected}");
    // The demo's IOC is in the process: every PV connects.
    assert!(connected.contains("not_connected=0"), "{connected}");
}
