//! UTC calendar arithmetic and the sample timestamp, from `archiver-time`.
//!
//! Everything in PlainPB is UTC: the year of a file, the partition a sample falls into and
//! the ISO-8601 text the tools print. The types and functions live in the `archiver-time`
//! crate (shared with storage, retrieval, the registry and the engine) and are re-exported
//! here at their historical paths (`archiver_pb::time::start_of_year`...).

pub use archiver_time::calendar::{
    EPICS_EPOCH_OFFSET, SECS_PER_DAY, Timestamp, UtcDateTime, civil_from_days, days_from_civil,
    is_leap_year, seconds_in_year, start_of_year, year_of,
};
