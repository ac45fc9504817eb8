//! Beacon anomaly detection (libca bhe.cpp rules, fact sheet §7.3).
//!
//! Per server address we keep the last arrival and an average period. A beacon is an
//! anomaly (a server appeared or restarted) when the server is new (after client
//! start-up), when its period collapses (≤ 0.8 × average: a restarted server beacons
//! fast) or after a long silence (≥ 3.25 × average), or when its beacon id restarts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Servers seen in this window after start-up are not "new".
const STARTUP_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Server {
    last: Instant,
    avg: Option<Duration>,
    last_id: u32,
}

/// Tracks beacons of every server heard.
#[derive(Debug)]
pub struct BeaconTracker {
    started: Instant,
    servers: HashMap<SocketAddr, Server>,
}

impl BeaconTracker {
    /// A tracker for a client started at `now`.
    pub fn new(now: Instant) -> Self {
        BeaconTracker {
            started: now,
            servers: HashMap::new(),
        }
    }

    /// Records a beacon; returns true on an anomaly.
    pub fn beacon(&mut self, server: SocketAddr, id: u32, now: Instant) -> bool {
        let Some(s) = self.servers.get_mut(&server) else {
            self.servers.insert(
                server,
                Server {
                    last: now,
                    avg: None,
                    last_id: id,
                },
            );
            return now.duration_since(self.started) > STARTUP_GRACE;
        };
        let period = now.duration_since(s.last);
        let step = id.wrapping_sub(s.last_id);
        // duplicate (same id) or a small step back: ignore
        if step == 0 || step > u32::MAX - 256 {
            if id == 0 && s.last_id != 0 {
                // id restarted at 0: a new server instance
                s.last = now;
                s.last_id = id;
                s.avg = None;
                return true;
            }
            return false;
        }
        s.last = now;
        s.last_id = id;
        let Some(avg) = s.avg else {
            s.avg = Some(period);
            return false;
        };
        let anomaly = period.as_secs_f64() >= 3.25 * avg.as_secs_f64()
            || period.as_secs_f64() <= 0.8 * avg.as_secs_f64();
        s.avg = Some(Duration::from_secs_f64(
            0.125 * period.as_secs_f64() + 0.875 * avg.as_secs_f64(),
        ));
        anomaly
    }

    /// Forgets a server (its circuit closed), so its next beacon counts as new.
    pub fn forget(&mut self, server: SocketAddr) {
        self.servers.remove(&server);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anomalies() {
        let t0 = Instant::now();
        let a: SocketAddr = "127.0.0.1:5064".parse().expect("addr");
        let mut b = BeaconTracker::new(t0);
        // seen at start-up: not new
        assert!(!b.beacon(a, 0, t0));
        let s = Duration::from_secs(15);
        assert!(!b.beacon(a, 1, t0 + s));
        assert!(!b.beacon(a, 2, t0 + 2 * s));
        // duplicate id ignored
        assert!(!b.beacon(a, 2, t0 + 2 * s + Duration::from_millis(1)));
        // fast beacon: restart
        assert!(b.beacon(a, 3, t0 + 2 * s + Duration::from_secs(1)));
        // id restart
        assert!(b.beacon(a, 0, t0 + 3 * s));
        // a new server after start-up
        let c: SocketAddr = "127.0.0.1:5070".parse().expect("addr");
        assert!(b.beacon(c, 0, t0 + 3 * s));
        b.forget(c);
        assert!(b.beacon(c, 5, t0 + 4 * s));
    }
}
