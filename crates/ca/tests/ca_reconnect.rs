//! Disconnect detection, reconnect and resubscription against a real IOC that is killed
//! and restarted, or frozen (SIGSTOP) so that only the echo watchdog can notice.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use archiver_ca::{ChannelEvent, Client, EventReceiver, Subscription, mask};
use common::{Ioc, expected, tick_of};

const CONN_TMO: Duration = Duration::from_secs(3);

/// The two tests measure timing against a real IOC: run them one at a time so that one's
/// IOC restart does not load the machine while the other measures.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for the first event matching `pred`, checking every value on the way.
async fn wait_for(
    rx: &EventReceiver,
    name: &str,
    within: Duration,
    pred: impl Fn(&ChannelEvent) -> bool,
) -> ChannelEvent {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no matching event for {name} within {within:?}"))
            .unwrap();
        if let ChannelEvent::Value { data, .. } = &ev.kind {
            let stamp = data.stamp.unwrap();
            // A client that connects while a restarted IOC starts up can see a record
            // before its first processing: value 0 at the EPICS epoch. The harness has
            // not published anything then, so there is nothing to compare.
            if stamp == archiver_ca::Timestamp::from_epics(0, 0) {
                if pred(&ev.kind) {
                    return ev.kind;
                }
                continue;
            }
            let k = tick_of(stamp);
            assert_eq!(data.value, expected(name, k));
        }
        if pred(&ev.kind) {
            return ev.kind;
        }
    }
}

fn is_value(e: &ChannelEvent) -> bool {
    matches!(e, ChannelEvent::Value { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ioc_kill_and_restart_disconnects_reconnects_and_resubscribes() {
    let _serial = SERIAL.lock().await;
    let mut ioc = Ioc::start("R");
    let c = Client::new(ioc.config().conn_tmo(CONN_TMO).build().unwrap())
        .await
        .unwrap();
    let (ai, rx) = c.channel(&ioc.pv("AI")).unwrap();
    let (wf, rxw) = c.channel(&ioc.pv("WF")).unwrap();
    ai.subscribe(Subscription::time(mask::DBE_VALUE | mask::DBE_ALARM))
        .unwrap();
    wf.subscribe(Subscription::time(mask::DBE_VALUE)).unwrap();
    wait_for(&rx, "AI", Duration::from_secs(10), is_value).await;
    wait_for(&rxw, "WF", Duration::from_secs(10), is_value).await;

    for round in 0..2 {
        let killed = Instant::now();
        ioc.kill();
        let ChannelEvent::Disconnected { at } = wait_for(&rx, "AI", CONN_TMO, |e| {
            matches!(e, ChannelEvent::Disconnected { .. })
        })
        .await
        else {
            unreachable!()
        };
        assert!(
            killed.elapsed() <= CONN_TMO,
            "round {round}: disconnect after {:?}",
            killed.elapsed()
        );
        assert!((at.as_f64() - archiver_ca::Timestamp::now().as_f64()).abs() < 5.0);
        wait_for(&rxw, "WF", CONN_TMO, |e| {
            matches!(e, ChannelEvent::Disconnected { .. })
        })
        .await;
        assert!(ai.info().is_none());
        // let the client's search back-off grow a bit, as in a real outage
        tokio::time::sleep(Duration::from_secs(2)).await;

        let up = ioc.restart();
        let ev = wait_for(&rx, "AI", Duration::from_secs(2), |e| {
            matches!(e, ChannelEvent::Connected { .. })
        })
        .await;
        assert!(matches!(ev, ChannelEvent::Connected { count: 1, .. }));
        wait_for(&rx, "AI", Duration::from_secs(2), is_value).await;
        wait_for(&rxw, "WF", Duration::from_secs(2), is_value).await;
        assert!(
            up.elapsed() <= Duration::from_secs(2) + Duration::from_millis(500),
            "round {round}: {:?}",
            up.elapsed()
        );
        assert!(ai.info().is_some());
        // reads work on the new circuit
        let d = ai.get().await.unwrap();
        assert_eq!(d.value, expected("AI", tick_of(d.stamp.unwrap())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_ioc_is_detected_within_conn_tmo_and_recovers() {
    let _serial = SERIAL.lock().await;
    let ioc = Ioc::start("F");
    let c = Client::new(ioc.config().conn_tmo(CONN_TMO).build().unwrap())
        .await
        .unwrap();
    let (li, rx) = c.channel(&ioc.pv("LI")).unwrap();
    li.subscribe(Subscription::time(mask::DBE_VALUE)).unwrap();
    wait_for(&rx, "LI", Duration::from_secs(10), is_value).await;

    let stopped = Instant::now();
    ioc.signal("STOP");
    wait_for(&rx, "LI", CONN_TMO + Duration::from_millis(300), |e| {
        matches!(e, ChannelEvent::Disconnected { .. })
    })
    .await;
    let took = stopped.elapsed();
    assert!(took >= CONN_TMO / 2, "too early: {took:?}");
    assert!(
        took <= CONN_TMO + Duration::from_millis(200),
        "too late: {took:?}"
    );

    let resumed = Instant::now();
    ioc.signal("CONT");
    wait_for(&rx, "LI", Duration::from_secs(5), |e| {
        matches!(e, ChannelEvent::Connected { .. })
    })
    .await;
    wait_for(&rx, "LI", Duration::from_secs(2), is_value).await;
    assert!(resumed.elapsed() < Duration::from_secs(5));
}
