//! Names nobody serves are searched with exponential back-off: a thousand unresolved
//! channels (a bulk archive request of PVs whose IOC is down) must not flood the network.
//! A plain UDP socket stands where a server would be and counts the SEARCH messages.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use archiver_ca::{Client, ClientConfig, Overflow, event_queue};
use tokio::net::UdpSocket;

const NAMES: usize = 1000;
const SEARCH: u16 = 6;

/// SEARCH messages in one datagram.
fn searches(datagram: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = datagram;
    while rest.len() >= 16 {
        let cmd = u16::from_be_bytes([rest[0], rest[1]]);
        let size = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if cmd == SEARCH {
            n += 1;
        }
        rest = rest.get(16 + size..).unwrap_or(&[]);
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolved_names_back_off() {
    let listener = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = ClientConfig::builder()
        .addr_list(&format!("127.0.0.1:{port}"))
        .auto_addr_list(false)
        .repeater_port(port)
        .build()
        .unwrap();
    let client = Client::new(cfg).await.unwrap();
    let (queue, _events) = event_queue(1024, Overflow::DropNewest);
    let channels: Vec<_> = (0..NAMES)
        .map(|i| {
            client
                .create_channel(&format!("NOBODY:{i}"), &queue, i as u64)
                .unwrap()
        })
        .collect();

    let start = Instant::now();
    let mut per_second = vec![0usize; 12];
    let mut buf = vec![0u8; 65536];
    while start.elapsed() < Duration::from_secs(12) {
        let left = Duration::from_secs(12).saturating_sub(start.elapsed());
        if let Ok(Ok((n, _))) = tokio::time::timeout(left, listener.recv_from(&mut buf)).await {
            let sec = (start.elapsed().as_secs() as usize).min(11);
            per_second[sec] += searches(&buf[..n]);
        }
    }
    eprintln!("SEARCH messages per second: {per_second:?}");
    let total: usize = per_second.iter().sum();
    let late: usize = per_second[7..].iter().sum();
    // Every name is searched for at once...
    assert!(per_second[0] >= NAMES, "first second: {per_second:?}");
    // ...then less and less often: doubling from 32 ms gives about ten searches per name
    // in 12 s, and at most one per name in the last five seconds. A fixed 100 ms period
    // would have sent 120 000.
    assert!(
        total <= 15 * NAMES,
        "{total} searches in 12 s: {per_second:?}"
    );
    assert!(
        late <= 2 * NAMES,
        "{late} searches in the last 5 s: {per_second:?}"
    );
    drop(channels);
}
