//! The server clock, injected so that filters, periods, rollover, annotations and retention
//! are testable: production code takes an `Arc<dyn Clock>` and gets a [`SystemClock`];
//! tests hand it a [`ManualClock`] and move time by hand.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::calendar::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + Debug {
    /// Now, as Unix seconds and nanoseconds.
    fn now(&self) -> Timestamp;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::new(d.as_secs() as i64, d.subsec_nanos())
    }
}

/// A clock that stands still until a test moves it: [`set`](ManualClock::set) jumps to an
/// instant (backwards too, to test clock steps), [`advance`](ManualClock::advance) moves
/// it forward. Shared between threads behind an `Arc` (a mutex guards the instant).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock that reads `start` until moved.
    pub const fn new(start: Timestamp) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Makes the clock read `t` from now on.
    pub fn set(&self, t: Timestamp) {
        *self.lock() = t;
    }

    /// Moves the clock forward by `by` and returns the new time. Saturates at the largest
    /// representable instant instead of overflowing.
    pub fn advance(&self, by: Duration) -> Timestamp {
        let mut now = self.lock();
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        // A valid `nanos` (< 1e9) plus a subsecond part (< 1e9) carries at most one second;
        // an invalid one set by a test is carried as far as it goes.
        let nanos = u64::from(now.nanos) + u64::from(by.subsec_nanos());
        let carry = (nanos / 1_000_000_000) as i64;
        *now = Timestamp::new(
            now.secs.saturating_add(secs).saturating_add(carry),
            (nanos % 1_000_000_000) as u32,
        );
        *now
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timestamp> {
        // A panic while holding the guard cannot leave a torn Timestamp (it is Copy and
        // written in one assignment), so a poisoned lock is still good to use.
        self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.lock()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn system_clock_is_after_2020() {
        // 2020-01-01T00:00:00Z; a clock before it is not the system's real time.
        assert!(SystemClock.now().secs > 1_577_836_800);
        assert!(SystemClock.now().nanos < 1_000_000_000);
    }

    #[test]
    fn manual_clock_sets_and_advances() {
        let c = ManualClock::new(Timestamp::new(100, 900_000_000));
        assert_eq!(c.now(), Timestamp::new(100, 900_000_000));
        assert_eq!(
            c.advance(Duration::from_millis(250)),
            Timestamp::new(101, 150_000_000)
        );
        assert_eq!(c.now(), Timestamp::new(101, 150_000_000));
        c.set(Timestamp::new(5, 0));
        assert_eq!(c.now(), Timestamp::new(5, 0));
        assert_eq!(c.advance(Duration::from_secs(60)), Timestamp::new(65, 0));
        c.set(Timestamp::new(i64::MAX - 1, 999_999_999));
        assert_eq!(
            c.advance(Duration::from_secs(u64::MAX)),
            Timestamp::new(i64::MAX, 999_999_999)
        );
    }

    #[test]
    fn manual_clock_is_shared_between_threads() {
        let c = Arc::new(ManualClock::new(Timestamp::new(0, 0)));
        let dyn_clock: Arc<dyn Clock> = c.clone();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.advance(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(dyn_clock.now(), Timestamp::new(4, 0));
    }
}
