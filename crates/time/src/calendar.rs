//! UTC calendar arithmetic and the sample timestamp.
//!
//! Everything in the archiver is UTC: the year of a PlainPB file, the partition a sample
//! falls into and the ISO-8601 text the tools print. The conversions here are the proleptic
//! Gregorian calendar on whole days since 1970-01-01 (no leap seconds, as in Java's
//! `Instant`), after H. Hinnant's `days_from_civil` / `civil_from_days`.

use std::fmt;

use crate::iso::{Iso8601, Precision};

/// Seconds in a day.
pub const SECS_PER_DAY: i64 = 86_400;

/// Seconds between the EPICS epoch (1990-01-01) and the Unix epoch.
pub const EPICS_EPOCH_OFFSET: i64 = 631_152_000;

/// A point in time: seconds since the Unix epoch (UTC) and nanoseconds within the second.
///
/// Ordered by seconds then nanoseconds, as the Java appliance compares sample times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

impl Timestamp {
    /// A timestamp; `nanos` must be below one billion (checked by the codec, not here).
    pub const fn new(secs: i64, nanos: u32) -> Self {
        Timestamp { secs, nanos }
    }

    /// The calendar fields of this instant in UTC.
    pub fn to_utc(self) -> UtcDateTime {
        UtcDateTime::from_epoch_secs(self.secs)
    }

    /// The UTC year this instant falls in.
    pub fn year(self) -> i32 {
        year_of(self.secs)
    }

    /// This instant with the nanoseconds cut to `precision` (toward the past, as Java's
    /// `Instant.truncatedTo`): `Millis` turns `.523999999` into `.523000000`.
    pub const fn truncated(self, precision: Precision) -> Timestamp {
        let unit = precision.unit_nanos();
        Timestamp {
            secs: self.secs,
            nanos: self.nanos - self.nanos % unit,
        }
    }

    /// An ISO-8601 UTC rendering of this instant with `precision` fraction digits
    /// (truncated), written without allocating: `t.iso(Precision::Millis)` displays as
    /// `2014-12-11T14:49:58.523Z`. See [`Iso8601`].
    pub const fn iso(self, precision: Precision) -> Iso8601 {
        Iso8601::new(self, precision)
    }
}

impl fmt::Display for Timestamp {
    /// ISO-8601 UTC with nine fraction digits: `2014-12-08T06:21:07.601158377Z`
    /// (the same as `self.iso(Precision::Nanos)`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.iso(Precision::Nanos), f)
    }
}

/// Broken-down UTC calendar time (second resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcDateTime {
    /// Year (proleptic Gregorian).
    pub year: i32,
    /// Month 1..=12.
    pub month: u32,
    /// Day of month 1..=31.
    pub day: u32,
    /// Hour 0..=23.
    pub hour: u32,
    /// Minute 0..=59.
    pub minute: u32,
    /// Second 0..=59.
    pub second: u32,
}

impl UtcDateTime {
    /// The calendar fields of `secs` seconds since the Unix epoch.
    pub fn from_epoch_secs(secs: i64) -> Self {
        let days = secs.div_euclid(SECS_PER_DAY);
        let rem = secs.rem_euclid(SECS_PER_DAY) as u32;
        let (year, month, day) = civil_from_days(days);
        UtcDateTime {
            year: year as i32,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }

    /// Seconds since the Unix epoch. Fields out of range roll over arithmetically.
    pub fn to_epoch_secs(self) -> i64 {
        days_from_civil(i64::from(self.year), self.month, self.day) * SECS_PER_DAY
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

/// Days since 1970-01-01 of the civil date `y-m-d` (month 1..=12, day 1..=31).
pub const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a day count since 1970-01-01.
pub const fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Epoch seconds of `year-01-01T00:00:00Z`.
pub const fn start_of_year(year: i32) -> i64 {
    days_from_civil(year as i64, 1, 1) * SECS_PER_DAY
}

/// The UTC year of `secs` seconds since the Unix epoch.
pub fn year_of(secs: i64) -> i32 {
    civil_from_days(secs.div_euclid(SECS_PER_DAY)).0 as i32
}

/// True for Gregorian leap years.
pub const fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Seconds in the UTC year `year` (365 or 366 days).
pub const fn seconds_in_year(year: i32) -> i64 {
    if is_leap_year(year) {
        366 * SECS_PER_DAY
    } else {
        365 * SECS_PER_DAY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(start_of_year(1970), 0);
        assert_eq!(start_of_year(2014), 1_388_534_400);
        assert_eq!(start_of_year(1990), EPICS_EPOCH_OFFSET);
        let t = Timestamp::new(1_418_019_667, 601_158_377);
        assert_eq!(t.to_string(), "2014-12-08T06:21:07.601158377Z");
        assert_eq!(t.year(), 2014);
        assert_eq!(year_of(-1), 1969);
        assert_eq!(
            Timestamp::new(-1, 0).to_string(),
            "1969-12-31T23:59:59.000000000Z"
        );
    }

    #[test]
    fn leap_years() {
        assert!(is_leap_year(2012) && is_leap_year(2000) && !is_leap_year(1900));
        assert_eq!(seconds_in_year(2016), 366 * 86_400);
        let feb29 = UtcDateTime {
            year: 2012,
            month: 2,
            day: 29,
            hour: 12,
            minute: 0,
            second: 0,
        };
        assert_eq!(UtcDateTime::from_epoch_secs(feb29.to_epoch_secs()), feb29);
    }

    #[test]
    fn civil_round_trip_over_many_days() {
        for days in (-800_000..800_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }
}
