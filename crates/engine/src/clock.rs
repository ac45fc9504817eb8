//! The server clock, injected so that filters, periods and rollover are testable.
//!
//! The trait and its implementations live in `archiver-time` (low in the crate graph, so
//! storage, retrieval and the registry can take the same clock); the engine re-exports them.

pub use archiver_time::{Clock, SystemClock};
