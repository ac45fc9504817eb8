//! The server clock, injected so that filters, periods and rollover are testable.

use std::fmt::Debug;
use std::time::{SystemTime, UNIX_EPOCH};

use archiver_pb::Timestamp;

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
