//! Beacons and the shared UDP port, against p4p's pvxs server: a restarted server's
//! channels reconnect at its first beacon however far the search back-off has grown (side
//! by side with a client that hears no beacons and waits for its back-off), and a client
//! bound last to a server's UDP port forwards the unicast searches the kernel now gives it
//! to the server (pvxs's local multicast forwarding).
#![allow(clippy::unwrap_used)]

mod pva_support;

use std::time::{Duration, Instant};

use archiver_pva::{ChannelEvent, Client, ClientConfig, EventReceiver, PvRequest};
use pva_support::{Server, free_port};

/// Waits for an event matching `pred`; returns when it arrived.
async fn wait_for(
    rx: &EventReceiver,
    timeout: Duration,
    pred: impl Fn(&ChannelEvent) -> bool,
) -> Option<Instant> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) if pred(&ev.kind) => return Some(Instant::now()),
            Ok(Some(_)) => {}
            _ => return None,
        }
    }
}

fn connected(e: &ChannelEvent) -> bool {
    matches!(e, ChannelEvent::Connected { .. })
}

fn update(e: &ChannelEvent) -> bool {
    matches!(e, ChannelEvent::Update { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_found_at_its_first_beacon_not_at_the_next_back_off() {
    let (tcp, udp, beacon_port) = (free_port(), free_port(), free_port());
    let mut srv = Server::start_on("p4p_server.py", "PB", tcp, udp, beacon_port);
    let base = ClientConfig {
        max_search_period: Duration::from_secs(30),
        ..srv.client_config()
    };
    // A hears the server's beacons; B listens on a port nobody beacons to: back-off only
    let a = Client::new(ClientConfig {
        broadcast_port: beacon_port,
        ..base.clone()
    })
    .await
    .unwrap();
    let b = Client::new(ClientConfig {
        broadcast_port: free_port(),
        ..base
    })
    .await
    .unwrap();
    let (cha, rxa) = a.channel("PB:STRUCT").unwrap();
    let (chb, rxb) = b.channel("PB:STRUCT").unwrap();
    for (ch, rx) in [(&cha, &rxa), (&chb, &rxb)] {
        ch.subscribe(PvRequest::parse("field(value)").unwrap());
        assert!(
            wait_for(rx, Duration::from_secs(10), update)
                .await
                .is_some()
        );
    }

    srv.kill();
    let disconnected = |e: &ChannelEvent| matches!(e, ChannelEvent::Disconnected { .. });
    let down_a = wait_for(&rxa, Duration::from_secs(5), disconnected).await;
    let down_b = wait_for(&rxb, Duration::from_secs(5), disconnected).await;
    let down = down_a.unwrap().min(down_b.unwrap());
    // both search at 32 ms, 64 ms, ... doubling: after 9 s the next search of a name is
    // due about 16.4 s after the disconnect
    tokio::time::sleep_until((down + Duration::from_secs(9)).into()).await;
    let srv2 = Server::start_on("p4p_server.py", "PB", tcp, udp, beacon_port);
    let up = Instant::now();

    // values resumed (the monitor re-created), not only the channel connected
    assert!(
        wait_for(&rxa, Duration::from_secs(10), connected)
            .await
            .is_some()
    );
    let a_back = wait_for(&rxa, Duration::from_secs(10), update)
        .await
        .expect("A's monitor re-created");
    let a_took = a_back.saturating_duration_since(up);
    let b_back = wait_for(&rxb, Duration::from_secs(30), connected)
        .await
        .expect("B reconnected on its back-off");
    let b_took = b_back.saturating_duration_since(up);
    eprintln!(
        "server back {:.1} s after the disconnect; after it: values again with beacons {:.3} s, reconnected on the back-off alone {:.3} s",
        up.duration_since(down).as_secs_f64(),
        a_took.as_secs_f64(),
        b_took.as_secs_f64()
    );
    // the figure: values again within 2 s of the server being back
    assert!(a_took < Duration::from_secs(2), "with beacons: {a_took:?}");
    // the same schedule without beacons waits for its next search (deterministic: due
    // ~16.4 s after the disconnect, the server was back ~10 s after it)
    assert!(
        b_took > a_took && b_took > Duration::from_secs(2),
        "back-off alone: {b_took:?} (beacons: {a_took:?})"
    );
    drop(srv2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_bound_last_to_a_servers_port_forwards_unicast_searches_to_it() {
    let srv = Server::start("p4p_server.py", "PF");
    // A listens for beacons on the server's own UDP port, bound after the server: the
    // kernel hands unicast datagrams to that port to one of the two sockets, often A's
    let a = Client::new(srv.client_config()).await.unwrap();
    let (cha, _rxa) = a.channel("PF:STRUCT").unwrap();
    cha.wait_connected(Duration::from_secs(10)).await.unwrap();
    // clients that do not listen there, each from its own source port (the kernel's choice
    // hashes it): every unicast search reaches the server, directly or forwarded by A
    for i in 0..8 {
        let b = Client::new(ClientConfig {
            broadcast_port: free_port(),
            ..srv.client_config()
        })
        .await
        .unwrap();
        let (ch, _rx) = b.channel("PF:STRUCT").unwrap();
        ch.wait_connected(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
    }
}
