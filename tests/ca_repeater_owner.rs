//! The repeater-owner fault: the first process on a host that uses our CA client binds the
//! repeater (beacon) port and forwards beacons to the others. When that process exits
//! (here a real `archiver ca monitor`, as an operator's short diagnostic that was running
//! when the service started), every other client must keep receiving beacons, so that an
//! IOC back after a long outage is reconnected at its first beacon, not when the search
//! back-off happens to try again (63–64 s after a 200 s outage, measured before the fix).
//!
//! The outage here (≈ 18 s from the disconnect to the IOC's restart) lands between two
//! searches of the back-off (which doubles from 32 ms: searches at ≈ 16.4 s and ≈ 32.7 s
//! after the disconnect), so search alone would reconnect ≈ 13 s after the IOC is up.

#![allow(clippy::unwrap_used)]

#[path = "../crates/ca/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use archiver_ca::{ChannelEvent, Client, EventReceiver, Subscription, mask};
use common::Ioc;

/// From the disconnect to the IOC's restart: after the back-off's search at ≈ 16.4 s.
const OUTAGE: Duration = Duration::from_millis(17_500);
/// The beacon path reconnects within a round trip of the first beacon; this leaves room
/// for a loaded machine and is far below the ≈ 13 s of the search back-off.
const AFTER_BEACON: Duration = Duration::from_secs(5);

async fn wait_for(
    rx: &EventReceiver,
    within: Duration,
    what: &str,
    pred: impl Fn(&ChannelEvent) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {within:?}"))
            .unwrap();
        if pred(&ev.kind) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_keeps_beacons_after_the_repeater_owner_exits() {
    let mut ioc = Ioc::start("RO");

    // Process A: holds the repeater port for as long as it runs.
    let mut a = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(["ca", "monitor", &ioc.pv("AI")])
        .env("EPICS_CA_ADDR_LIST", format!("127.0.0.1:{}", ioc.port))
        .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
        .env("EPICS_CA_REPEATER_PORT", ioc.beacon_port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = a.stdout.take().unwrap();
    let (tx, connected) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.contains("*** connected") {
                let _ = tx.send(());
            }
        }
    });
    connected
        .recv_timeout(Duration::from_secs(20))
        .expect("archiver ca monitor did not connect");
    assert!(
        std::net::UdpSocket::bind(("0.0.0.0", ioc.beacon_port)).is_err(),
        "process A does not hold the repeater port"
    );

    // Process B (this one): registers with A's repeater.
    let b = Client::new(ioc.config().build().unwrap()).await.unwrap();
    let (li, rx) = b.channel(&ioc.pv("LI")).unwrap();
    li.subscribe(Subscription::time(mask::DBE_VALUE)).unwrap();
    wait_for(&rx, Duration::from_secs(10), "first value", |e| {
        matches!(e, ChannelEvent::Value { .. })
    })
    .await;
    assert_eq!(b.stats().repeater_takeovers.load(Ordering::Relaxed), 0);

    // A exits, then the IOC goes away for long.
    a.kill().unwrap();
    a.wait().unwrap();
    ioc.kill();
    wait_for(&rx, Duration::from_secs(5), "disconnect", |e| {
        matches!(e, ChannelEvent::Disconnected { .. })
    })
    .await;
    let down = Instant::now();
    // B notices that nobody answers its registration and runs the repeater itself.
    while b.stats().repeater_takeovers.load(Ordering::Relaxed) == 0 {
        assert!(
            down.elapsed() < OUTAGE,
            "B did not take the free repeater port during the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;

    let up = ioc.restart();
    wait_for(
        &rx,
        AFTER_BEACON,
        "reconnect after the IOC's restart",
        |e| matches!(e, ChannelEvent::Connected { .. }),
    )
    .await;
    eprintln!(
        "outage {:?}; reconnected {:?} after the IOC was ready",
        up - down,
        up.elapsed()
    );
    wait_for(&rx, Duration::from_secs(2), "value after reconnect", |e| {
        matches!(e, ChannelEvent::Value { .. })
    })
    .await;
}
