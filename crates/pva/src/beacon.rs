//! Beacon tracking: which pvAccess servers are up, and when a beacon means "search again".
//!
//! pvAccess servers send BEACON datagrams (command 0x00: GUID, flags, sequence, change
//! count, server address and port, protocol) to their beacon addresses on
//! EPICS_PVA_BROADCAST_PORT, at once when they start and then every 15 s (pvxs: a burst,
//! then every 180 s). The rules follow pvxs (`ContextImpl::onBeacon` and
//! `tickBeaconClean` in src/client.cpp): a server is known by its TCP address; a beacon
//! is an *anomaly*, worth searching every unresolved name again at once, when the
//!
//! - server is **new** (not heard of before, after the client's start-up grace),
//! - server's **GUID changed** (the process restarted on the same address), or
//! - server was **silent** for more than [`SILENCE`] (pvxs forgets such servers, so their
//!   next beacon counts as new: a network partition healed, a host rebooted).
//!
//! At most [`MAX_SERVERS`] servers are tracked (pvxs's limit: a server in a fast restart
//! loop cannot make us grow without bound); beyond it, unknown servers are ignored.
//! The search side ([`archiver_ca::search::SearchSchedule::reset_all`], shared with the
//! CA client) does the reset; [`ResetGate`] spaces resets out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Servers first heard within this time after start-up are not "new" (every name is being
/// searched for at its first, fast delays anyway). As our CA client.
pub const STARTUP_GRACE: Duration = Duration::from_secs(2);
/// A server silent this long is forgotten (pvxs: twice its 180 s clean-up interval).
pub const SILENCE: Duration = Duration::from_secs(360);
/// Most servers tracked (pvxs `beaconTrackLimit`).
pub const MAX_SERVERS: usize = 20_000;
/// Shortest interval between two beacon-driven resets of the whole search schedule.
pub const RESET_HOLDOFF: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Seen {
    guid: [u8; 12],
    last: Instant,
}

/// Tracks the beacons (and search replies) of every pvAccess server heard.
#[derive(Debug)]
pub struct BeaconTracker {
    started: Instant,
    servers: HashMap<SocketAddr, Seen>,
}

impl BeaconTracker {
    /// A tracker for a client started at `now`.
    pub fn new(now: Instant) -> Self {
        BeaconTracker {
            started: now,
            servers: HashMap::new(),
        }
    }

    /// Records that the server at TCP address `server` with `guid` was heard at `now`
    /// (a beacon, or a search reply); returns true on an anomaly (see the module docs).
    pub fn heard(&mut self, server: SocketAddr, guid: [u8; 12], now: Instant) -> bool {
        match self.servers.get_mut(&server) {
            Some(s) => {
                let anomaly = s.guid != guid || now.saturating_duration_since(s.last) > SILENCE;
                s.guid = guid;
                s.last = now;
                anomaly
            }
            None => {
                if self.servers.len() >= MAX_SERVERS {
                    self.forget_silent(now);
                    if self.servers.len() >= MAX_SERVERS {
                        return false;
                    }
                }
                self.servers.insert(server, Seen { guid, last: now });
                now.saturating_duration_since(self.started) > STARTUP_GRACE
            }
        }
    }

    /// Forgets servers silent for more than [`SILENCE`].
    pub fn forget_silent(&mut self, now: Instant) {
        self.servers
            .retain(|_, s| now.saturating_duration_since(s.last) <= SILENCE);
    }

    /// Number of servers tracked.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether no server is tracked.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

/// Spaces beacon-driven resets at least [`RESET_HOLDOFF`] apart without losing any: an
/// anomaly inside the hold-off is deferred to its end (many IOCs rebooting together make
/// one search burst, not one per IOC; pvxs holds off 30 s and drops the poke instead).
#[derive(Debug, Default)]
pub struct ResetGate {
    last: Option<Instant>,
    deferred: Option<Instant>,
}

impl ResetGate {
    /// An anomaly at `now`: true when the reset is to be done now; otherwise it is
    /// deferred (see [`ResetGate::due`]).
    pub fn anomaly(&mut self, now: Instant) -> bool {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < RESET_HOLDOFF => {
                self.deferred = Some(t + RESET_HOLDOFF);
                false
            }
            _ => {
                self.last = Some(now);
                self.deferred = None;
                true
            }
        }
    }

    /// When a deferred reset is due.
    pub fn due(&self) -> Option<Instant> {
        self.deferred
    }

    /// True (once) when a deferred reset is due at `now`.
    pub fn take_due(&mut self, now: Instant) -> bool {
        match self.deferred {
            Some(t) if t <= now => {
                self.deferred = None;
                self.last = Some(now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_servers_guid_changes_and_silences_are_anomalies() {
        let t0 = Instant::now();
        let a: SocketAddr = "127.0.0.1:5075".parse().expect("addr");
        let b: SocketAddr = "127.0.0.1:5080".parse().expect("addr");
        let mut t = BeaconTracker::new(t0);
        // heard during start-up: not new
        assert!(!t.heard(a, [1; 12], t0 + Duration::from_secs(1)));
        // regular beacons of the same server: nothing
        for i in 1..10 {
            assert!(!t.heard(a, [1; 12], t0 + Duration::from_secs(1 + 15 * i)));
        }
        // a restart: same address, new GUID
        let at = t0 + Duration::from_secs(200);
        assert!(t.heard(a, [2; 12], at));
        assert!(!t.heard(a, [2; 12], at + Duration::from_secs(15)));
        // a server first heard after start-up
        assert!(t.heard(b, [3; 12], at));
        assert_eq!(t.len(), 2);
        // a beacon after a long silence (same GUID)
        let later = at + Duration::from_secs(15) + SILENCE + Duration::from_secs(1);
        assert!(t.heard(a, [2; 12], later));
        // silent servers are forgotten
        t.forget_silent(later + Duration::from_secs(1));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn the_number_of_servers_is_bounded() {
        let t0 = Instant::now();
        let mut t = BeaconTracker::new(t0);
        let late = t0 + Duration::from_secs(10);
        for i in 0..MAX_SERVERS as u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            t.heard(SocketAddr::from((ip, 5075)), [0; 12], late);
        }
        let extra: SocketAddr = "192.168.0.1:5075".parse().expect("addr");
        assert!(!t.heard(extra, [0; 12], late));
        assert_eq!(t.len(), MAX_SERVERS);
        // once the others have gone silent, a new server is tracked again
        assert!(t.heard(extra, [0; 12], late + SILENCE + Duration::from_secs(1)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn resets_are_spaced_out_but_never_lost() {
        let t0 = Instant::now();
        let mut g = ResetGate::default();
        assert!(g.anomaly(t0));
        assert_eq!(g.due(), None);
        // a second anomaly inside the hold-off is deferred to its end
        let t1 = t0 + RESET_HOLDOFF / 4;
        assert!(!g.anomaly(t1));
        assert!(!g.anomaly(t1 + Duration::from_millis(1)));
        assert_eq!(g.due(), Some(t0 + RESET_HOLDOFF));
        assert!(!g.take_due(t1));
        assert!(g.take_due(t0 + RESET_HOLDOFF));
        assert!(!g.take_due(t0 + RESET_HOLDOFF), "taken once");
        // after the hold-off an anomaly resets at once
        assert!(g.anomaly(t0 + 3 * RESET_HOLDOFF));
    }
}
