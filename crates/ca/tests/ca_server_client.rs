//! This crate's client against this crate's server (no Python needed): every native
//! type, every DBR class, monitors, writes, clear and cancel, and a vanished server.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use archiver_ca::server::{Server, ServerConfig, sim};
use archiver_ca::{
    ChannelEvent, Client, ClientConfig, DbfType, DbrClass, DbrRequest, DbrType, Subscription,
    Value, mask,
};

const T: Duration = Duration::from_secs(5);
const RATE: u32 = 20;

async fn setup(prefix: &str) -> (Server, tokio::task::JoinHandle<()>, Client) {
    let server = Server::start(ServerConfig {
        port: 0,
        beacon_addrs: vec![],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let upd = sim::spawn_updates(&server, sim::every_type(prefix), RATE);
    let cfg = ClientConfig::builder()
        .addr_list(&format!("127.0.0.1:{}", server.port()))
        .auto_addr_list(false)
        .repeater_port(0)
        .conn_tmo(Duration::from_secs(2))
        .build()
        .unwrap();
    (server, upd, Client::new(cfg).await.unwrap())
}

fn tick(stamp: archiver_ca::Timestamp) -> i64 {
    let step = 1_000_000_000 / RATE;
    assert_eq!(stamp.nanos % step, 0);
    stamp.secs * i64::from(RATE) + i64::from(stamp.nanos / step)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_class_round_trips() {
    let (_s, _u, c) = setup("OWN:").await;
    for kind in sim::KINDS {
        let (ch, _rx) = c.channel(&format!("OWN:{kind}")).unwrap();
        let info = ch.wait_connected(T).await.unwrap();
        let d = ch.get().await.unwrap();
        let k = tick(d.stamp.unwrap());
        assert_eq!(d.value, sim::value_at(kind, k).unwrap(), "{kind}");
        assert_eq!(d.value.field_type(), info.native);
        for class in [DbrClass::Plain, DbrClass::Sts, DbrClass::Gr, DbrClass::Ctrl] {
            let d = ch.read(DbrRequest::Native(class), None).await.unwrap();
            assert_eq!(d.value.len(), info.count as usize, "{kind} {class:?}");
            if matches!(class, DbrClass::Gr | DbrClass::Ctrl) && info.native != DbfType::String {
                let m = d.meta.unwrap();
                let want = sim::meta_of(kind);
                assert_eq!(
                    (m.units, m.precision, m.enum_strs),
                    (want.units, want.precision, want.enum_strs),
                    "{kind}"
                );
            }
        }
    }
    // conversions by the server
    let (ch, _rx) = c.channel("OWN:LI").unwrap();
    ch.wait_connected(T).await.unwrap();
    let d = ch
        .read(DbrRequest::Exact(DbrType::time(DbfType::String)), None)
        .await
        .unwrap();
    let k = tick(d.stamp.unwrap());
    assert_eq!(d.value.to_string(), (k % 1000).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_are_gap_free_and_writes_post() {
    let (_s, _u, c) = setup("MON:").await;
    let (ch, rx) = c.channel("MON:WFSTR").unwrap();
    ch.subscribe(Subscription::time(mask::DBE_VALUE)).unwrap();
    let mut last = None;
    let mut n = 0;
    while n < 20 {
        let ev = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        if let ChannelEvent::Value { data, .. } = ev.kind {
            let k = tick(data.stamp.unwrap());
            assert_eq!(data.value, sim::value_at("WFSTR", k).unwrap());
            if let Some(p) = last {
                assert_eq!(k, p + 1);
            }
            last = Some(k);
            n += 1;
        }
    }
    let (ao, arx) = c.channel("MON:AO").unwrap();
    ao.subscribe(Subscription::time(mask::DBE_VALUE)).unwrap();
    ao.wait_connected(T).await.unwrap();
    ao.write(Value::Long(7)).await.unwrap();
    loop {
        let ev = tokio::time::timeout(T, arx.recv()).await.unwrap().unwrap();
        if let ChannelEvent::Value { data, .. } = ev.kind
            && data.value == Value::Double(7.0)
        {
            break;
        }
    }
    let (ro, _r) = c.channel("MON:AI").unwrap();
    ro.wait_connected(T).await.unwrap();
    let e = ro.write(Value::Double(1.0)).await.unwrap_err();
    assert!(e.to_string().contains("ECA_NOWTACCESS"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_gone_gives_disconnect_and_failed_reads() {
    let (s, u, c) = setup("GONE:").await;
    let (ch, rx) = c.channel("GONE:AI").unwrap();
    ch.subscribe(Subscription::time(mask::DBE_VALUE)).unwrap();
    ch.wait_connected(T).await.unwrap();
    u.abort();
    drop(s);
    // dropping the server closes its connections, as a server process exiting would
    let t0 = std::time::Instant::now();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(4), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if matches!(ev.kind, ChannelEvent::Disconnected { .. }) {
            break;
        }
    }
    assert!(
        t0.elapsed() <= Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    assert!(ch.get().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacon_anomaly_resets_search_backoff() {
    let beacon_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let beacon = vec![format!("127.0.0.1:{beacon_port}").parse().unwrap()];
    let cfg = ServerConfig {
        port: 0,
        beacon_addrs: beacon.clone(),
        ..ServerConfig::default()
    };
    let server = Server::start(cfg).await.unwrap();
    let port = server.port();
    server.add_pv(archiver_ca::server::PvSpec::new(
        "BCN:X",
        Value::Double(1.0),
    ));
    // the client binds the repeater port itself (no caRepeater here) and so hears beacons
    let cfg = ClientConfig::builder()
        .addr_list(&format!("127.0.0.1:{port}"))
        .auto_addr_list(false)
        .repeater_port(beacon_port)
        .build()
        .unwrap();
    let c = Client::new(cfg).await.unwrap();
    let (ch, rx) = c.channel("BCN:X").unwrap();
    ch.wait_connected(T).await.unwrap();
    drop(server);
    loop {
        let ev = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        if matches!(ev.kind, ChannelEvent::Disconnected { .. }) {
            break;
        }
    }
    // after 6 s of unanswered searches the back-off is 4 s (next search ≈ 8.2 s)
    tokio::time::sleep(Duration::from_secs(6)).await;
    let cfg = ServerConfig {
        port,
        beacon_addrs: beacon,
        ..ServerConfig::default()
    };
    let server = Server::start(cfg).await.unwrap();
    server.add_pv(archiver_ca::server::PvSpec::new(
        "BCN:X",
        Value::Double(2.0),
    ));
    let up = std::time::Instant::now();
    loop {
        let ev = tokio::time::timeout(T, rx.recv()).await.unwrap().unwrap();
        if matches!(ev.kind, ChannelEvent::Connected { .. }) {
            break;
        }
    }
    assert!(
        up.elapsed() < Duration::from_millis(1000),
        "reconnect took {:?}: beacon anomaly ignored?",
        up.elapsed()
    );
}

/// A consumer that stops draining its back-pressure queue for longer than
/// `EPICS_CA_CONN_TMO` stalls the circuit (the server's updates wait in the socket), but the
/// circuit stays up: the time is the consumer's, not the server's silence. (Six stalls:
/// before the fix, each one closed the circuit about every other time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_is_no_server_silence() {
    use archiver_ca::{Overflow, event_queue};
    let (server, _u, _c) = setup("STALL:").await;
    let cfg = ClientConfig::builder()
        .addr_list(&format!("127.0.0.1:{}", server.port()))
        .auto_addr_list(false)
        .repeater_port(0)
        .conn_tmo(Duration::from_millis(500))
        .build()
        .unwrap();
    let c = Client::new(cfg).await.unwrap();
    let (q, rx) = event_queue(4, Overflow::Backpressure);
    let ch = c.create_channel("STALL:AI", &q, 1).unwrap();
    ch.subscribe(Subscription::time(mask::DBE_VALUE)).unwrap();
    ch.wait_connected(T).await.unwrap();
    let mut last = None;
    for _ in 0..6 {
        // Stall with the queue full, well past conn_tmo.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let mut values = 0;
        let deadline = tokio::time::Instant::now() + T;
        while values < 10 {
            let ev = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("events keep coming")
                .unwrap();
            match ev.kind {
                ChannelEvent::Value { data, .. } => {
                    let k = tick(data.stamp.unwrap());
                    assert!(last.is_none_or(|p| k > p), "in order");
                    last = Some(k);
                    values += 1;
                }
                ChannelEvent::Disconnected { .. } => {
                    panic!("the circuit was closed by a stall of the consumer")
                }
                _ => {}
            }
        }
    }
    assert!(ch.info().is_some(), "still connected");
}
