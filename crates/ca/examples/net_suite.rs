//! Network suite (RELIABILITY.md, "Network"): how this crate's client rides out IOC
//! restarts and long outages of a real EPICS IOC (the tests' `harness_ioc.py`, softioc =
//! EPICS base RSRV, beaconing to the client's repeater port).
//!
//! ```text
//! cargo run -p archiver-ca --example net_suite -- restarts [ROUNDS=10] [DOWN_SECS=5]
//! cargo run -p archiver-ca --example net_suite -- outage [SECS=180] [kill|stop] [owner-exits]
//! ```
//!
//! - `restarts`: the IOC is killed (SIGKILL), left down DOWN_SECS, and started again,
//!   ROUNDS times; each round prints the reconnect time from the restarted IOC's READY
//!   line (`softioc` prints it right after `iocInit`) to the client's `Connected` event,
//!   then min / median / max.
//! - `outage`: the IOC is killed (`kill`: the circuit ends at once) or frozen (`stop`:
//!   SIGSTOP, found dead by the echo watchdog after EPICS_CA_CONN_TMO) for SECS, while the
//!   client's own counters ([`archiver_ca::ClientStats`]) give the search datagrams sent
//!   in each 10 s window; then it is restarted (or SIGCONT) and the reconnect time printed.
//!   With `owner-exits`, another process (this example, `hold-repeater`) holds the repeater
//!   port when the client starts and exits when the outage begins: the repeater-owner
//!   fault, which made a 200 s outage end in a 63–64 s reconnect by search back-off alone.
//!
//! Uses `ARCHIVER_TEST_PYTHON` (default the venv of `scripts/setup.sh`). Not run in CI:
//! the outage takes minutes; the repeater hand-over has its own test
//! (`tests/ca_repeater_owner.rs` of the workspace root).

#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use archiver_ca::{ChannelEvent, Client, ClientStats, EventReceiver, Subscription, mask};
use common::Ioc;

/// Waits for the first event matching `pred`; false after `within`.
async fn seen(rx: &EventReceiver, within: Duration, pred: impl Fn(&ChannelEvent) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) if pred(&ev.kind) => return true,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
}

/// [`seen`], or a panic naming `what`.
async fn wait_for(
    rx: &EventReceiver,
    within: Duration,
    what: &str,
    pred: impl Fn(&ChannelEvent) -> bool,
) {
    assert!(seen(rx, within, pred).await, "no {what} within {within:?}");
}

fn connected(e: &ChannelEvent) -> bool {
    matches!(e, ChannelEvent::Connected { .. })
}

fn disconnected(e: &ChannelEvent) -> bool {
    matches!(e, ChannelEvent::Disconnected { .. })
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn searches(s: &ClientStats) -> u64 {
    s.search_datagrams.load(Ordering::Relaxed)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// A child process, killed when dropped (also when the run panics).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A client holding repeater port `port` (it runs the repeater) until killed.
async fn hold_repeater(port: u16) {
    let cfg = archiver_ca::ClientConfig::builder()
        .addr_list("127.0.0.1:1")
        .auto_addr_list(false)
        .repeater_port(port)
        .build()
        .unwrap();
    let _client = Client::new(cfg).await.unwrap();
    println!("HOLDING {port}");
    std::future::pending::<()>().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("hold-repeater") {
        return hold_repeater(arg(&args, 1, 0)).await;
    }
    let mut ioc = Ioc::start("NET");
    let mut owner = args.iter().any(|a| a == "owner-exits").then(|| {
        let child = Child(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["hold-repeater", &ioc.beacon_port.to_string()])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let t = Instant::now();
        while std::net::UdpSocket::bind(("0.0.0.0", ioc.beacon_port)).is_ok() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "hold-repeater did not bind"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "repeater port {} held by pid {}",
            ioc.beacon_port,
            child.0.id()
        );
        child
    });
    let client = Client::new(ioc.config().build().unwrap()).await.unwrap();
    let (li, rx) = client.channel(&ioc.pv("LI")).unwrap();
    li.subscribe(Subscription::time(mask::DBE_VALUE)).unwrap();
    wait_for(&rx, Duration::from_secs(20), "first connect", connected).await;
    println!(
        "IOC {} (pid {}), EPICS_CA_CONN_TMO {:?}",
        ioc.port,
        ioc.pid(),
        client.config().conn_tmo
    );
    match args.first().map(String::as_str) {
        Some("restarts") | None => {
            let rounds: usize = arg(&args, 1, 10);
            let down = Duration::from_secs_f64(arg(&args, 2, 5.0));
            let mut times = Vec::new();
            for round in 1..=rounds {
                ioc.kill();
                wait_for(&rx, Duration::from_secs(60), "disconnect", disconnected).await;
                tokio::time::sleep(down).await;
                let up = ioc.restart();
                wait_for(&rx, Duration::from_secs(600), "reconnect", connected).await;
                let took = up.elapsed();
                println!("round {round}: reconnected {} after READY", ms(took));
                times.push(took);
            }
            times.sort();
            println!(
                "restarts: {rounds}, down {down:?} each; reconnect after READY: min {} median {} max {}",
                ms(times[0]),
                ms(times[times.len() / 2]),
                ms(times[times.len() - 1])
            );
        }
        Some("outage") => {
            let secs: u64 = arg(&args, 1, 180);
            let stop = args.get(2).is_some_and(|m| m == "stop");
            let t0 = Instant::now();
            if let Some(o) = owner.take() {
                drop(o);
                println!("the repeater's owner exited");
            }
            if stop {
                ioc.signal("STOP");
            } else {
                ioc.kill();
            }
            let mut last = searches(client.stats());
            let mut window = 0;
            let mut seen_down = false;
            while t0.elapsed() < Duration::from_secs(secs) {
                let end =
                    t0 + Duration::from_secs(10 * (window + 1)).min(Duration::from_secs(secs));
                let left = end.saturating_duration_since(Instant::now());
                if !seen_down && seen(&rx, left, disconnected).await {
                    seen_down = true;
                    println!("disconnected {} after the outage began", ms(t0.elapsed()));
                }
                tokio::time::sleep_until(end.into()).await;
                let now = searches(client.stats());
                println!(
                    "t={:>4} s: {} search datagrams in this window ({:.2}/s)",
                    t0.elapsed().as_secs(),
                    now - last,
                    (now - last) as f64 / 10.0
                );
                last = now;
                window += 1;
            }
            let up = if stop {
                ioc.signal("CONT");
                Instant::now()
            } else {
                ioc.restart()
            };
            wait_for(&rx, Duration::from_secs(600), "reconnect", connected).await;
            println!(
                "outage ({}) {secs} s: reconnected {} after the IOC was back; {} search datagrams in all; repeater takeovers {}",
                if stop { "SIGSTOP" } else { "killed" },
                ms(up.elapsed()),
                searches(client.stats()),
                client.stats().repeater_takeovers.load(Ordering::Relaxed)
            );
        }
        Some(other) => panic!("unknown scenario {other:?}: restarts or outage"),
    }
}
