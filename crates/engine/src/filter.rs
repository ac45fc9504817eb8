//! The timestamp filter of the Java appliance (`ArchiveChannel.isfutureorpastOrSame`).
//!
//! An event is dropped when its IOC timestamp is before 1991-01-01, more than the drift
//! allowance in the future, more than the drift allowance in the past (from the second
//! event after a connect on), or not newer than the last accepted one.

use archiver_pb::Timestamp;

/// 1991-01-01T00:00:00Z: events stamped earlier are dropped.
pub const EARLIEST_VALID_SECS: i64 = 662_688_000;

/// Why an event was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Newer than the last accepted event and within bounds.
    Accept,
    /// Before 1991-01-01.
    TooOld,
    /// More than the drift allowance ahead of the server clock.
    Future,
    /// More than the drift allowance behind the server clock (not for the first event
    /// after a connect).
    Past,
    /// Older than the last accepted event.
    Older,
    /// The same timestamp as the last accepted event (a repeat, typical for SCAN; not an
    /// error).
    Same,
}

impl Verdict {
    /// True for drops that are counted as timestamp problems (all but `Accept` and `Same`).
    pub fn is_timestamp_error(self) -> bool {
        !matches!(self, Verdict::Accept | Verdict::Same)
    }
}

/// Per-channel filter state.
#[derive(Debug, Clone)]
pub struct TimestampFilter {
    drift_secs: i64,
    last: Option<Timestamp>,
    seen_since_connect: bool,
}

impl TimestampFilter {
    /// A filter allowing `drift_secs` of difference between IOC and server clocks.
    pub fn new(drift_secs: i64) -> Self {
        TimestampFilter {
            drift_secs,
            last: None,
            seen_since_connect: false,
        }
    }

    /// Starts a new connection: the next event is not checked against the past bound.
    pub fn on_connect(&mut self) {
        self.seen_since_connect = false;
    }

    /// Sets the last accepted time (e.g. from the last sample in storage).
    pub fn set_last(&mut self, last: Option<Timestamp>) {
        self.last = last;
    }

    /// The last accepted time.
    pub fn last(&self) -> Option<Timestamp> {
        self.last
    }

    /// Judges an event stamped `ts` at server time `now`; accepting it makes it the last.
    pub fn check(&mut self, ts: Timestamp, now: Timestamp) -> Verdict {
        let verdict = if ts.secs < EARLIEST_VALID_SECS {
            Verdict::TooOld
        } else if ts.secs > now.secs + self.drift_secs {
            Verdict::Future
        } else if self.seen_since_connect && ts.secs < now.secs - self.drift_secs {
            Verdict::Past
        } else {
            match self.last {
                Some(last) if ts == last => Verdict::Same,
                Some(last) if ts < last => Verdict::Older,
                _ => Verdict::Accept,
            }
        };
        if verdict == Verdict::Accept {
            self.last = Some(ts);
            self.seen_since_connect = true;
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_rules() {
        let now = Timestamp::new(1_700_000_000, 0);
        let mut f = TimestampFilter::new(1800);
        assert_eq!(
            f.check(Timestamp::new(600_000_000, 0), now),
            Verdict::TooOld
        );
        assert_eq!(
            f.check(Timestamp::new(now.secs + 1801, 0), now),
            Verdict::Future
        );
        // The first event after connect may be old (a PV that has not changed for days).
        let old = Timestamp::new(now.secs - 86_400, 0);
        assert_eq!(f.check(old, now), Verdict::Accept);
        assert_eq!(
            f.check(Timestamp::new(now.secs - 86_000, 0), now),
            Verdict::Past
        );
        assert_eq!(f.check(old, now), Verdict::Past);
        let t1 = Timestamp::new(now.secs - 10, 5);
        assert_eq!(f.check(t1, now), Verdict::Accept);
        assert_eq!(
            f.check(Timestamp::new(now.secs - 10, 4), now),
            Verdict::Older
        );
        assert_eq!(f.check(t1, now), Verdict::Same);
        assert_eq!(
            f.check(Timestamp::new(now.secs + 1799, 0), now),
            Verdict::Accept
        );
        assert!(!Verdict::Same.is_timestamp_error());
        assert!(Verdict::Older.is_timestamp_error());
        f.on_connect();
        // After a reconnect, an old first value is still not newer than the last: refused.
        assert_eq!(f.check(old, now), Verdict::Older);
    }
}
