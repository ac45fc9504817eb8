//! Partition granularities and the Java appliance's partition names.
//!
//! A PlainPB file holds one partition of one PV: the samples whose time falls in
//! `[start, end)` of a UTC-aligned period. Its name (the part after the chunk key's
//! terminator) encodes that period, e.g. `2014_01_05_13` for an hour.

use std::fmt;
use std::str::FromStr;

use crate::time::{SECS_PER_DAY, UtcDateTime, days_from_civil, start_of_year};

/// How much time one partition (one file) covers. The seven granularities of the Java
/// appliance's `PartitionGranularity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    /// Five minutes, `PARTITION_5MIN`, named `2014_01_05_13_05`.
    FiveMinutes,
    /// Fifteen minutes, `PARTITION_15MIN`, named `2014_01_05_13_45`.
    FifteenMinutes,
    /// Thirty minutes, `PARTITION_30MIN`, named `2014_01_05_13_30`.
    ThirtyMinutes,
    /// One hour, `PARTITION_HOUR`, named `2014_01_05_13`.
    Hour,
    /// One day, `PARTITION_DAY`, named `2014_01_05`.
    Day,
    /// One calendar month, `PARTITION_MONTH`, named `2014_01`.
    Month,
    /// One calendar year, `PARTITION_YEAR`, named `2014`.
    Year,
}

/// The error for a partition name that does not fit its granularity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a {granularity} partition name")]
pub struct BadPartitionName {
    /// The name that was given.
    pub name: String,
    /// The granularity it was parsed for.
    pub granularity: Granularity,
}

impl Granularity {
    /// All granularities, finest first.
    pub const ALL: [Granularity; 7] = [
        Granularity::FiveMinutes,
        Granularity::FifteenMinutes,
        Granularity::ThirtyMinutes,
        Granularity::Hour,
        Granularity::Day,
        Granularity::Month,
        Granularity::Year,
    ];

    /// The name used in storage URLs and `PVTypeInfo` (`PARTITION_HOUR`).
    pub const fn url_name(self) -> &'static str {
        match self {
            Granularity::FiveMinutes => "PARTITION_5MIN",
            Granularity::FifteenMinutes => "PARTITION_15MIN",
            Granularity::ThirtyMinutes => "PARTITION_30MIN",
            Granularity::Hour => "PARTITION_HOUR",
            Granularity::Day => "PARTITION_DAY",
            Granularity::Month => "PARTITION_MONTH",
            Granularity::Year => "PARTITION_YEAR",
        }
    }

    /// Java's `getApproxSecondsPerChunk` (31 days for a month, 366 for a year).
    pub const fn approx_seconds(self) -> i64 {
        match self {
            Granularity::FiveMinutes => 300,
            Granularity::FifteenMinutes => 900,
            Granularity::ThirtyMinutes => 1800,
            Granularity::Hour => 3600,
            Granularity::Day => SECS_PER_DAY,
            Granularity::Month => 31 * SECS_PER_DAY,
            Granularity::Year => 366 * SECS_PER_DAY,
        }
    }

    /// The fixed length of granularities up to a day; `None` for month and year.
    const fn fixed_seconds(self) -> Option<i64> {
        match self {
            Granularity::Month | Granularity::Year => None,
            other => Some(other.approx_seconds()),
        }
    }

    /// Epoch seconds at which the partition containing `secs` starts (inclusive).
    pub fn partition_start(self, secs: i64) -> i64 {
        match self.fixed_seconds() {
            Some(len) => secs - secs.rem_euclid(len),
            None => {
                let d = UtcDateTime::from_epoch_secs(secs);
                match self {
                    Granularity::Month => {
                        days_from_civil(i64::from(d.year), d.month, 1) * SECS_PER_DAY
                    }
                    _ => start_of_year(d.year),
                }
            }
        }
    }

    /// Epoch seconds at which the partition containing `secs` ends (exclusive); this is
    /// also the start of the next partition.
    pub fn partition_end(self, secs: i64) -> i64 {
        match self.fixed_seconds() {
            Some(len) => self.partition_start(secs) + len,
            None => {
                let d = UtcDateTime::from_epoch_secs(secs);
                match self {
                    Granularity::Month if d.month == 12 => start_of_year(d.year + 1),
                    Granularity::Month => {
                        days_from_civil(i64::from(d.year), d.month + 1, 1) * SECS_PER_DAY
                    }
                    _ => start_of_year(d.year + 1),
                }
            }
        }
    }

    /// The first partition boundary strictly after `secs`.
    pub fn next_boundary(self, secs: i64) -> i64 {
        self.partition_end(secs)
    }

    /// The last partition boundary strictly before `secs` (the start of the previous
    /// partition when `secs` is itself a boundary).
    pub fn previous_boundary(self, secs: i64) -> i64 {
        self.partition_start(secs - 1)
    }

    /// The Java partition name of the partition containing `secs` (UTC, zero padded).
    pub fn partition_name(self, secs: i64) -> String {
        let d = UtcDateTime::from_epoch_secs(self.partition_start(secs));
        let (y, mo, da, h, mi) = (d.year, d.month, d.day, d.hour, d.minute);
        match self {
            Granularity::FiveMinutes | Granularity::FifteenMinutes | Granularity::ThirtyMinutes => {
                format!("{y:04}_{mo:02}_{da:02}_{h:02}_{mi:02}")
            }
            Granularity::Hour => format!("{y:04}_{mo:02}_{da:02}_{h:02}"),
            Granularity::Day => format!("{y:04}_{mo:02}_{da:02}"),
            Granularity::Month => format!("{y:04}_{mo:02}"),
            Granularity::Year => format!("{y:04}"),
        }
    }

    /// The start (epoch seconds) of the partition named `name`; the inverse of
    /// [`Granularity::partition_name`]. Names that do not fit this granularity, or name
    /// an impossible date, or a minute not on the granularity's grid, are errors.
    pub fn parse_partition_name(self, name: &str) -> Result<i64, BadPartitionName> {
        let bad = || BadPartitionName {
            name: name.to_string(),
            granularity: self,
        };
        let expected_parts = match self {
            Granularity::FiveMinutes | Granularity::FifteenMinutes | Granularity::ThirtyMinutes => {
                5
            }
            Granularity::Hour => 4,
            Granularity::Day => 3,
            Granularity::Month => 2,
            Granularity::Year => 1,
        };
        let mut fields = [0u32, 1, 1, 0, 0];
        let mut n = 0;
        for (i, part) in name.split('_').enumerate() {
            let width_ok = if i == 0 {
                part.len() == 4
            } else {
                part.len() == 2
            };
            if i >= expected_parts || !width_ok || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            fields[i] = part.parse().map_err(|_| bad())?;
            n += 1;
        }
        if n != expected_parts {
            return Err(bad());
        }
        let [year, month, day, hour, minute] = fields;
        let dt = UtcDateTime {
            year: year as i32,
            month,
            day,
            hour,
            minute,
            second: 0,
        };
        let start = dt.to_epoch_secs();
        // Reject out-of-range fields (13th month, 31st of April, minute 07 of a 5 min grid):
        // a valid name is exactly the name of the partition it starts.
        if !(1..=12).contains(&month) || self.partition_name(start) != name {
            return Err(bad());
        }
        Ok(start)
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url_name())
    }
}

/// The error for an unknown granularity name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown partition granularity {0:?} (expected PARTITION_5MIN, PARTITION_15MIN, PARTITION_30MIN, PARTITION_HOUR, PARTITION_DAY, PARTITION_MONTH or PARTITION_YEAR)"
)]
pub struct UnknownGranularity(pub String);

impl FromStr for Granularity {
    type Err = UnknownGranularity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Granularity::ALL
            .into_iter()
            .find(|g| g.url_name() == s)
            .ok_or_else(|| UnknownGranularity(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::UtcDateTime;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        UtcDateTime {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
            second: s,
        }
        .to_epoch_secs()
    }

    /// Names of the Java appliance (reference §1.5) at several instants, all granularities.
    #[test]
    fn java_partition_names_table() {
        use Granularity::*;
        let cases: &[(i64, Granularity, &str)] = &[
            (at(2014, 1, 5, 13, 7, 12), FiveMinutes, "2014_01_05_13_05"),
            (
                at(2014, 1, 5, 13, 47, 0),
                FifteenMinutes,
                "2014_01_05_13_45",
            ),
            (
                at(2014, 1, 5, 13, 59, 59),
                ThirtyMinutes,
                "2014_01_05_13_30",
            ),
            (at(2014, 1, 5, 13, 0, 0), Hour, "2014_01_05_13"),
            (at(2014, 1, 5, 23, 59, 59), Day, "2014_01_05"),
            (at(2014, 1, 31, 23, 59, 59), Month, "2014_01"),
            (at(2014, 12, 8, 6, 21, 7), Year, "2014"),
            (at(2014, 12, 8, 7, 30, 0), Hour, "2014_12_08_07"),
            (at(2012, 2, 29, 0, 4, 59), FiveMinutes, "2012_02_29_00_00"),
            (at(2012, 2, 29, 12, 0, 0), Day, "2012_02_29"),
            (
                at(2016, 12, 31, 23, 59, 59),
                FiveMinutes,
                "2016_12_31_23_55",
            ),
            (
                at(2016, 12, 31, 23, 59, 59),
                FifteenMinutes,
                "2016_12_31_23_45",
            ),
            (
                at(2016, 12, 31, 23, 59, 59),
                ThirtyMinutes,
                "2016_12_31_23_30",
            ),
            (at(2016, 12, 31, 23, 59, 59), Hour, "2016_12_31_23"),
            (at(2016, 12, 31, 23, 59, 59), Day, "2016_12_31"),
            (at(2016, 12, 31, 23, 59, 59), Month, "2016_12"),
            (at(2016, 12, 31, 23, 59, 59), Year, "2016"),
            (at(2017, 1, 1, 0, 0, 0), Year, "2017"),
            (at(1999, 9, 9, 9, 9, 9), Month, "1999_09"),
        ];
        for &(t, g, name) in cases {
            assert_eq!(g.partition_name(t), name, "{g} at {t}");
            assert_eq!(g.parse_partition_name(name), Ok(g.partition_start(t)));
        }
    }

    #[test]
    fn bounds_across_year_end_and_leap_day() {
        let t = at(2016, 12, 31, 23, 59, 59);
        assert_eq!(Granularity::Month.partition_end(t), at(2017, 1, 1, 0, 0, 0));
        assert_eq!(Granularity::Year.partition_end(t), at(2017, 1, 1, 0, 0, 0));
        assert_eq!(Granularity::Hour.partition_end(t), at(2017, 1, 1, 0, 0, 0));
        let feb = at(2012, 2, 10, 0, 0, 0);
        assert_eq!(
            Granularity::Month.partition_end(feb),
            at(2012, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            Granularity::Month.partition_end(feb) - Granularity::Month.partition_start(feb),
            29 * 86_400
        );
        let b = at(2014, 3, 1, 0, 0, 0);
        assert_eq!(
            Granularity::Month.previous_boundary(b),
            at(2014, 2, 1, 0, 0, 0)
        );
        assert_eq!(Granularity::Month.next_boundary(b), at(2014, 4, 1, 0, 0, 0));
        assert_eq!(Granularity::Hour.previous_boundary(b), b - 3600);
    }

    #[test]
    fn bad_names_are_refused() {
        let g = Granularity::FiveMinutes;
        for name in [
            "2014_01_05_13_07",
            "2014_13_05_13_05",
            "2014_02_30_13_05",
            "2014_01_05_13",
            "2014_01_05_13_05_00",
            "14_01_05_13_05",
            "2014_1_05_13_05",
            "",
            "2014_01_05_24_00",
            "2014_+1_05_13_05",
        ] {
            assert!(g.parse_partition_name(name).is_err(), "{name}");
        }
        assert!(Granularity::Year.parse_partition_name("2014_01").is_err());
        assert!(Granularity::Month.parse_partition_name("2014_00").is_err());
    }

    #[test]
    fn url_names_round_trip() {
        for g in Granularity::ALL {
            assert_eq!(g.url_name().parse::<Granularity>(), Ok(g));
        }
        assert!("PARTITION_WEEK".parse::<Granularity>().is_err());
    }
}
