//! A client that stops reading a large response cannot hold up a shutdown: SIGTERM
//! cuts requests still under way after the drain deadline, then every buffer is written
//! and the process exits cleanly (found by a user test: the shutdown waited for the
//! client for ever).

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use support::Archiver;

#[test]
fn a_client_that_stops_reading_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    // 360 000 samples: a JSON answer of tens of MB, far beyond the socket buffers.
    let out = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args([
            "pb",
            "generate",
            "--rate",
            "100",
            "--duration",
            "1h",
            "--start",
            "2024-03-01T00:00:00Z",
            "--prefix",
            "DRAIN:",
            "--register",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // No IOC: the catalogue's PV is paused and nothing is searched for.
    let mut archiver = Archiver::start(dir.path(), 1, 1, 1.0);
    let mut stuck = TcpStream::connect(archiver.addr).unwrap();
    write!(
        stuck,
        "GET /retrieval/data/getData.json?pv=DRAIN:0&from=2024-03-01T00:00:00Z&to=2024-03-01T02:00:00Z HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    // The server is producing into a connection nobody reads.
    std::thread::sleep(Duration::from_millis(500));
    // `terminate` fails the test if the process is not gone 30 s after SIGTERM.
    assert!(archiver.terminate(), "archiver exited with an error");
    drop(stuck);
}
