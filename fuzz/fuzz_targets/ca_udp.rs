//! Arbitrary bytes as a UDP datagram on the CA client's socket (search replies, beacons,
//! repeater confirmations, anything else): parsing never panics and yields at most one
//! message per 16-byte header; the beacons go through the beacon tracker (anomaly
//! detection) without panicking.
//!
//! Input: 1 byte (bit 0: the sender is IPv6), then the datagram.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use archiver_ca::beacon::BeaconTracker;
use archiver_ca::search::{UdpMessage, parse_datagram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, datagram)) = data.split_first() else {
        return;
    };
    let from = if flags & 1 == 1 {
        SocketAddr::from((Ipv6Addr::LOCALHOST, 5064))
    } else {
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 5064))
    };
    let mut out = Vec::new();
    parse_datagram(datagram, from, &mut out);
    assert!(out.len() <= datagram.len() / 16);
    let start = Instant::now();
    let mut tracker = BeaconTracker::new(start);
    for (i, m) in out.iter().enumerate() {
        if let UdpMessage::Beacon { server, id } = *m {
            let _ = tracker.beacon(server, id, start + Duration::from_millis(i as u64 * 100));
        }
    }
});
