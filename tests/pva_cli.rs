//! `archiver pva get|info|monitor` run as an operator runs them: the real binary against a
//! real IOC serving pvAccess, with only `EPICS_PVA_*` variables saying where to search.

#![allow(clippy::unwrap_used)]

mod pva_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pva_support::Server;

fn archiver(ioc: &Server) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_archiver"));
    c.env("EPICS_PVA_ADDR_LIST", format!("127.0.0.1:{}", ioc.udp))
        .env("EPICS_PVA_AUTO_ADDR_LIST", "NO")
        .env("EPICS_PVA_BROADCAST_PORT", ioc.udp.to_string())
        .env_remove("RUST_LOG");
    c
}

#[test]
fn get_info_and_monitor() {
    let mut ioc = Server::start("pva_ioc.py", "PC");
    ioc.cmd("set AI 95.5 1704067200.5 2");
    ioc.cmd("set MBBI 1 1704067201.25 1");
    ioc.cmd("set WF 1,2 1704067202.0");

    let out = archiver(&ioc)
        .args(["pva", "get", "PC:AI", "PC:MBBI", "PC:WF"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // PREC 3 and EGU mm from the record's display, as pvget prints them
    assert!(
        text.contains("PC:AI") && text.contains("2024-01-01T00:00:00.500000000Z 95.500 mm MAJOR"),
        "{text}"
    );
    assert!(
        text.contains("2024-01-01T00:00:01.250000000Z WARN MINOR"),
        "{text}"
    );
    // the waveform's PREC is 0: no decimals
    assert!(text.contains("[1, 2] (2 elements)"), "{text}");

    // only what was asked for: no time stamp sent, no time (never 1970), the units
    // (found by a fresh-user test)
    let out = archiver(&ioc)
        .args(["pva", "get", "-r", "field(value,display.units)", "PC:AI"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = text.lines().find(|l| l.starts_with("PC:AI")).unwrap_or("");
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        ["PC:AI", "95.5", "mm"],
        "{text}"
    );

    // verbose: the whole structure
    let out = archiver(&ioc)
        .args(["pva", "get", "-v", "PC:AI"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("string units \"mm\""), "{text}");

    // a PV nobody serves: exit code 1 and a message naming it
    let out = archiver(&ioc)
        .args(["pva", "get", "-w", "0.3", "PC:NOPE"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PC:NOPE"), "{err}");

    let out = archiver(&ioc)
        .args(["pva", "info", "PC:AI", "pva://PC:MBBI"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains(&format!("server: 127.0.0.1:{}", ioc.tcp))
            && text.contains("epics:nt/NTScalar:1.0")
            && text.contains("    double value"),
        "{text}"
    );
    // several names, as pvinfo takes them (found by a fresh-user test)
    assert!(
        text.contains("name:   PC:MBBI") && text.contains("epics:nt/NTEnum:1.0"),
        "{text}"
    );

    // monitor: connect line, current value, then a new one
    let mut child = archiver(&ioc)
        .args(["pva", "monitor", "PC:AI"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let wait_line = |pat: &str| loop {
        let l = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no line with {pat:?}"));
        if l.contains(pat) {
            return l;
        }
    };
    wait_line("*** connected to");
    wait_line("95.500 mm MAJOR");
    ioc.cmd("set AI 1.25 1704067300.0");
    let l = wait_line("1.250 mm");
    assert!(l.contains("2024-01-01T00:01:40.000000000Z"), "{l}");
    let _ = child.kill();
    let _ = child.wait();
}
