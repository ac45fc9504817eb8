//! Name resolution: search datagrams, reply parsing and the per-name back-off schedule.
//!
//! A datagram is one VERSION (with a sequence number) followed by as many SEARCH
//! requests as fit in 1024 bytes. Each unresolved name is searched again after a delay
//! that doubles from 32 ms up to the maximum search period; a beacon anomaly (a server
//! appearing or restarting) resets every delay so names are found within one round trip.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::header::{
    CA_MINOR, DONT_REPLY, HEADER_SIZE, Header, cmd, padded_len, push_string_message,
};

/// Largest search datagram we send (libca's MAX_UDP_SEND).
pub const MAX_DATAGRAM: usize = 1024;
/// First search delay.
pub const MIN_DELAY: Duration = Duration::from_millis(32);
/// Longest accepted PV name (libca: strlen + 1 ≤ 1024 − 16).
pub const MAX_NAME_LEN: usize = MAX_DATAGRAM - 2 * HEADER_SIZE - 1;
/// Least time between two search passes. With [`crate::client`]'s names per pass this
/// bounds the search rate (about 25,000 names a second, 16 datagrams a pass for typical
/// names) however many names are due at once: 100,000 new channels, or a beacon anomaly
/// resetting every unresolved name, must not flood the servers' UDP buffers (libca paces
/// its searches too, by its search timers' frames per try). Found by trying: sent all at
/// once, most of 100,000 searches were lost and their names backed off for minutes.
pub const PASS_INTERVAL: Duration = Duration::from_millis(20);

/// Builds search datagrams for a batch of (CID, name) pairs.
#[derive(Debug)]
pub struct DatagramBuilder {
    seq: u32,
}

impl Default for DatagramBuilder {
    fn default() -> Self {
        DatagramBuilder { seq: 1 }
    }
}

impl DatagramBuilder {
    /// Packs `names` into datagrams of at most [`MAX_DATAGRAM`] bytes.
    pub fn build<'a>(&mut self, names: impl IntoIterator<Item = (u32, &'a str)>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut cur = Vec::new();
        for (cid, name) in names {
            let need = HEADER_SIZE + padded_len(name.len() + 1);
            if need + HEADER_SIZE > MAX_DATAGRAM {
                continue;
            }
            if !cur.is_empty() && cur.len() + need > MAX_DATAGRAM {
                out.push(std::mem::take(&mut cur));
            }
            if cur.is_empty() {
                let v = Header {
                    data_type: 1,
                    count: u32::from(CA_MINOR),
                    param1: self.seq,
                    ..Header::new(cmd::VERSION)
                };
                self.seq = self.seq.wrapping_add(1);
                v.encode(&mut cur);
            }
            let h = Header {
                data_type: DONT_REPLY,
                count: u32::from(CA_MINOR),
                param1: cid,
                param2: cid,
                ..Header::new(cmd::SEARCH)
            };
            push_string_message(&mut cur, h, name.as_bytes());
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }
}

/// One message parsed from a datagram received on the client's UDP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpMessage {
    /// A server found the channel with this CID at this TCP address.
    Found {
        /// The CID from the request.
        cid: u32,
        /// The server's TCP address.
        server: SocketAddr,
        /// The server's minor version (0 if not sent).
        minor: u16,
    },
    /// A beacon (possibly relayed by a repeater).
    Beacon {
        /// The server's TCP address.
        server: SocketAddr,
        /// Beacon sequence number.
        id: u32,
    },
    /// The repeater confirmed our registration.
    RepeaterConfirm,
}

/// Walks a datagram message by message; stops at the first truncated message.
pub fn parse_datagram(data: &[u8], from: SocketAddr, out: &mut Vec<UdpMessage>) {
    let mut at = 0;
    while let Some((h, hl)) = Header::decode(&data[at..]) {
        let size = h.payload_size as usize;
        let Some(end) = (at + hl).checked_add(size).filter(|e| *e <= data.len()) else {
            break;
        };
        let payload = &data[at + hl..end];
        let src_ip = match from.ip() {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
        };
        match h.command {
            cmd::SEARCH => {
                let ip = if h.param1 == 0xFFFF_FFFF || h.param1 == 0 {
                    src_ip
                } else {
                    Ipv4Addr::from(h.param1)
                };
                let minor = if payload.len() >= 2 {
                    u16::from_be_bytes([payload[0], payload[1]])
                } else {
                    0
                };
                out.push(UdpMessage::Found {
                    cid: h.param2,
                    server: SocketAddr::new(IpAddr::V4(ip), h.data_type),
                    minor,
                });
            }
            cmd::RSRV_IS_UP => {
                let ip = if h.param2 == 0 {
                    src_ip
                } else {
                    Ipv4Addr::from(h.param2)
                };
                let port = if h.count == 0 {
                    crate::config::DEFAULT_SERVER_PORT
                } else {
                    h.count as u16
                };
                out.push(UdpMessage::Beacon {
                    server: SocketAddr::new(IpAddr::V4(ip), port),
                    id: h.param1,
                });
            }
            cmd::REPEATER_CONFIRM => out.push(UdpMessage::RepeaterConfirm),
            _ => {}
        }
        at = end;
    }
}

#[derive(Debug)]
struct Entry {
    delay: Duration,
    due: Instant,
}

/// Per-name exponential back-off. Names are identified by CID.
#[derive(Debug)]
pub struct SearchSchedule {
    entries: HashMap<u32, Entry>,
    queue: BTreeSet<(Instant, u32)>,
    max_delay: Duration,
    /// When the last pass took names ([`PASS_INTERVAL`] pacing).
    last_pass: Option<Instant>,
}

impl SearchSchedule {
    /// A schedule whose delays never exceed `max_delay`.
    pub fn new(max_delay: Duration) -> Self {
        SearchSchedule {
            entries: HashMap::new(),
            queue: BTreeSet::new(),
            max_delay: max_delay.max(MIN_DELAY),
            last_pass: None,
        }
    }

    /// Starts searching for `cid` now (or restarts its back-off).
    pub fn add(&mut self, cid: u32, now: Instant) {
        self.remove(cid);
        self.entries.insert(
            cid,
            Entry {
                delay: MIN_DELAY,
                due: now,
            },
        );
        self.queue.insert((now, cid));
    }

    /// Searches for `cid` again after `delay` (at least [`MIN_DELAY`]), its back-off
    /// continuing from there: a name a server answered for but then refused is not
    /// searched for at the fast initial rate again (the pvAccess client uses it).
    pub fn add_delayed(&mut self, cid: u32, now: Instant, delay: Duration) {
        self.remove(cid);
        let delay = delay.clamp(MIN_DELAY, self.max_delay);
        self.entries.insert(
            cid,
            Entry {
                delay: (delay * 2).min(self.max_delay),
                due: now + delay,
            },
        );
        self.queue.insert((now + delay, cid));
    }

    /// The current back-off delay of `cid` (the interval before its next-but-one search).
    pub fn delay(&self, cid: u32) -> Option<Duration> {
        self.entries.get(&cid).map(|e| e.delay)
    }

    /// Stops searching for `cid` (found or cleared).
    pub fn remove(&mut self, cid: u32) {
        if let Some(e) = self.entries.remove(&cid) {
            self.queue.remove(&(e.due, cid));
        }
    }

    /// Whether `cid` is being searched for.
    pub fn contains(&self, cid: u32) -> bool {
        self.entries.contains_key(&cid)
    }

    /// Number of names being searched for.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is being searched for.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When the next search pass is due: the first name's time, but not before
    /// [`PASS_INTERVAL`] after the last pass.
    pub fn next_due(&self) -> Option<Instant> {
        let first = self.queue.first().map(|(t, _)| *t)?;
        Some(match self.last_pass {
            Some(last) => first.max(last + PASS_INTERVAL),
            None => first,
        })
    }

    /// Takes up to `max` names due at `now`, and reschedules each after its doubled delay;
    /// none before [`PASS_INTERVAL`] has passed since the last pass that took some.
    pub fn take_due(&mut self, now: Instant, max: usize) -> Vec<u32> {
        let mut out = Vec::new();
        if self
            .last_pass
            .is_some_and(|last| now.saturating_duration_since(last) < PASS_INTERVAL)
        {
            return out;
        }
        while out.len() < max {
            let Some(&(t, cid)) = self.queue.first() else {
                break;
            };
            if t > now {
                break;
            }
            self.queue.remove(&(t, cid));
            if let Some(e) = self.entries.get_mut(&cid) {
                e.due = now + e.delay;
                e.delay = (e.delay * 2).min(self.max_delay);
                self.queue.insert((e.due, cid));
                out.push(cid);
            }
        }
        if !out.is_empty() {
            self.last_pass = Some(now);
        }
        out
    }

    /// Beacon anomaly: every name is searched again now with the initial delay.
    pub fn reset_all(&mut self, now: Instant) {
        let cids: Vec<u32> = self.entries.keys().copied().collect();
        for cid in cids {
            self.add(cid, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_are_paced_however_many_names_are_due() {
        let t0 = Instant::now();
        let mut s = SearchSchedule::new(Duration::from_secs(60));
        for cid in 0..2000 {
            s.add(cid, t0);
        }
        assert_eq!(s.next_due(), Some(t0));
        assert_eq!(s.take_due(t0, 512).len(), 512);
        // The rest is due, but the next pass waits for the interval.
        assert_eq!(s.next_due(), Some(t0 + PASS_INTERVAL));
        assert!(s.take_due(t0 + PASS_INTERVAL / 2, 512).is_empty());
        let mut taken = 512;
        let mut t = t0;
        while taken < 2000 {
            t += PASS_INTERVAL;
            let n = s.take_due(t, 512).len();
            assert!(n > 0 && n <= 512);
            taken += n;
        }
        assert_eq!(t, t0 + 3 * PASS_INTERVAL, "2000 names in four passes");
        // A reset (beacon anomaly) makes every name due again, still paced.
        s.reset_all(t);
        assert_eq!(s.next_due(), Some(t + PASS_INTERVAL));
        assert!(s.take_due(t, 512).is_empty());
        assert_eq!(s.take_due(t + PASS_INTERVAL, 512).len(), 512);
    }

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .filter(|t| *t != "|")
            .map(|t| u8::from_str_radix(t, 16).expect("hex"))
            .collect()
    }

    /// Fact sheet §9 (a).
    #[test]
    fn search_datagram_worked_example() {
        let mut b = DatagramBuilder::default();
        let d = b.build([(1, "SIM:AI:0")]);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0],
            hex("00 00 | 00 00 | 00 01 | 00 0d | 00 00 00 01 | 00 00 00 00
                 00 06 | 00 10 | 00 05 | 00 0d | 00 00 00 01 | 00 00 00 01
                 53 49 4d 3a 41 49 3a 30 00 00 00 00 00 00 00 00")
        );
        // the next datagram carries sequence number 2
        let d = b.build([(2, "X")]);
        assert_eq!(&d[0][8..12], &[0, 0, 0, 2]);
    }

    #[test]
    fn batches_fit_in_1024() {
        let names: Vec<String> = (0..200).map(|i| format!("SIM:AI:{i}")).collect();
        let mut b = DatagramBuilder::default();
        let d = b.build(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (i as u32, n.as_str())),
        );
        assert!(d.len() > 1);
        assert!(d.iter().all(|x| x.len() <= MAX_DATAGRAM));
        let count: usize = d.iter().map(|x| (x.len() - 16) / 32).sum();
        assert_eq!(count, 200);
        assert!(b.build([(0, "x".repeat(2000).as_str())]).is_empty());
    }

    /// Fact sheet §9 (a): the rsrv answer.
    #[test]
    fn parse_search_reply_worked_example() {
        let d = hex("00 00 | 00 00 | 00 01 | 00 0d | 00 00 00 01 | 00 00 00 00
                     00 06 | 00 08 | 13 c8 | 00 00 | ff ff ff ff | 00 00 00 01
                     00 0d 00 00 00 00 00 00");
        let mut out = Vec::new();
        parse_datagram(&d, "127.0.0.1:5064".parse().expect("addr"), &mut out);
        assert_eq!(
            out,
            vec![UdpMessage::Found {
                cid: 1,
                server: "127.0.0.1:5064".parse().expect("addr"),
                minor: 13
            }]
        );
        // truncated: the reply message runs past the end
        out.clear();
        parse_datagram(&d[..30], "127.0.0.1:5064".parse().expect("addr"), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn parse_beacon() {
        let mut v = Vec::new();
        Header {
            data_type: 13,
            count: 5070,
            param1: 7,
            param2: 0,
            ..Header::new(cmd::RSRV_IS_UP)
        }
        .encode(&mut v);
        let mut out = Vec::new();
        parse_datagram(&v, "127.0.0.1:40000".parse().expect("addr"), &mut out);
        assert_eq!(
            out,
            vec![UdpMessage::Beacon {
                server: "127.0.0.1:5070".parse().expect("addr"),
                id: 7
            }]
        );
    }

    #[test]
    fn schedule_backs_off_and_resets() {
        let t0 = Instant::now();
        let mut s = SearchSchedule::new(Duration::from_secs(1));
        s.add(1, t0);
        assert_eq!(s.take_due(t0, 10), vec![1]);
        assert!(s.take_due(t0, 10).is_empty());
        assert_eq!(s.next_due(), Some(t0 + MIN_DELAY));
        let mut t = t0;
        for _ in 0..20 {
            t = s.next_due().expect("due");
            assert_eq!(s.take_due(t, 10), vec![1]);
        }
        assert_eq!(s.next_due(), Some(t + Duration::from_secs(1)));
        s.reset_all(t);
        // Due now, searched once the pass interval since the last pass is over.
        assert_eq!(s.next_due(), Some(t + PASS_INTERVAL));
        s.remove(1);
        assert!(s.is_empty() && s.next_due().is_none());
    }

    #[test]
    fn a_delayed_add_keeps_backing_off() {
        let t0 = Instant::now();
        let mut s = SearchSchedule::new(Duration::from_secs(10));
        s.add_delayed(1, t0, Duration::from_millis(500));
        assert_eq!(s.next_due(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(s.delay(1), Some(Duration::from_secs(1)));
        assert!(s.take_due(t0, 10).is_empty());
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(s.take_due(t1, 10), vec![1]);
        assert_eq!(s.next_due(), Some(t1 + Duration::from_secs(1)));
        // clamped to the schedule's bounds
        s.add_delayed(2, t0, Duration::ZERO);
        assert_eq!(s.delay(2), Some(2 * MIN_DELAY));
        s.add_delayed(3, t0, Duration::from_secs(99));
        assert_eq!(s.delay(3), Some(Duration::from_secs(10)));
        assert_eq!(s.delay(4), None);
    }

    #[test]
    fn take_due_respects_max() {
        let t0 = Instant::now();
        let mut s = SearchSchedule::new(Duration::from_secs(1));
        for i in 0..10 {
            s.add(i, t0);
        }
        assert_eq!(s.take_due(t0, 4).len(), 4);
        assert_eq!(s.take_due(t0 + PASS_INTERVAL, 100).len(), 6);
    }

    proptest::proptest! {
        /// What the `ca_udp` fuzz target checks, bounded for CI: any datagram from any
        /// sender parses without panicking into at most one message per 16-byte header,
        /// and its beacons go through the beacon tracker.
        #[test]
        fn arbitrary_datagrams_never_panic(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            v6 in proptest::prelude::any::<bool>(),
        ) {
            let from = if v6 {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 5064))
            } else {
                SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 5064))
            };
            let mut out = Vec::new();
            parse_datagram(&data, from, &mut out);
            proptest::prop_assert!(out.len() <= data.len() / 16);
            let t0 = Instant::now();
            let mut tracker = crate::beacon::BeaconTracker::new(t0);
            for (i, m) in out.iter().enumerate() {
                if let UdpMessage::Beacon { server, id } = *m {
                    let _ = tracker.beacon(server, id, t0 + Duration::from_millis(i as u64 * 100));
                }
            }
        }
    }
}
