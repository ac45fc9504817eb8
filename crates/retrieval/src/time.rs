//! ISO-8601 instants as retrieval clients send them.

use archiver_pb::Timestamp;
use archiver_pb::time::{UtcDateTime, days_from_civil};

/// A time parameter that is not an ISO-8601 instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {0:?} as an ISO-8601 time (expected e.g. 2024-01-31T08:00:00.000Z)")]
pub struct BadTime(pub String);

fn num(s: &str, bad: &impl Fn() -> BadTime) -> Result<u32, BadTime> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse().map_err(|_| bad())
}

/// Parses `YYYY-MM-DDTHH:MM[:SS[.fraction]](Z|±HH:MM|±HHMM)`; a space may stand for `T`.
pub fn parse_iso8601(text: &str) -> Result<Timestamp, BadTime> {
    let bad = || BadTime(text.to_string());
    let t = text.trim();
    let (date, rest) = t.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let mut d = date.split('-');
    let (y, mo, da) = (d.next(), d.next(), d.next());
    if d.next().is_some() {
        return Err(bad());
    }
    let year = num(y.ok_or_else(bad)?, &bad)? as i32;
    let month = num(mo.ok_or_else(bad)?, &bad)?;
    let day = num(da.ok_or_else(bad)?, &bad)?;
    // Split off the zone.
    let (clock, offset_secs) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (c, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = z[1..].replace(':', "");
        if z.len() != 4 {
            return Err(bad());
        }
        let hh = i64::from(num(&z[..2], &bad)?);
        let mm = i64::from(num(&z[2..], &bad)?);
        if hh > 23 || mm > 59 {
            return Err(bad());
        }
        (c, sign * (hh * 3600 + mm * 60))
    } else {
        return Err(bad());
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let mut p = hms.split(':');
    let hour = num(p.next().ok_or_else(bad)?, &bad)?;
    let minute = num(p.next().ok_or_else(bad)?, &bad)?;
    let second = match p.next() {
        Some(s) => num(s, &bad)?,
        None => 0,
    };
    if p.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    let nanos = match frac {
        Some(f) if !f.is_empty() && f.len() <= 9 => num(f, &bad)? * 10u32.pow(9 - f.len() as u32),
        Some(_) => return Err(bad()),
        None => 0,
    };
    if !(1..=12).contains(&month) || day == 0 {
        return Err(bad());
    }
    // Reject the 31st of April and the like.
    let (cy, cm, cd) =
        archiver_pb::time::civil_from_days(days_from_civil(i64::from(year), month, day));
    if (cy, cm, cd) != (i64::from(year), month, day) {
        return Err(bad());
    }
    let local = UtcDateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
    }
    .to_epoch_secs();
    Ok(Timestamp::new(local - offset_secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_formats() {
        let base = Timestamp::new(1_418_019_667, 0);
        assert_eq!(parse_iso8601("2014-12-08T06:21:07Z"), Ok(base));
        assert_eq!(
            parse_iso8601("2014-12-08T06:21:07.601158377Z"),
            Ok(Timestamp::new(base.secs, 601_158_377))
        );
        assert_eq!(
            parse_iso8601("2014-12-08T06:21:07.601Z"),
            Ok(Timestamp::new(base.secs, 601_000_000))
        );
        assert_eq!(
            parse_iso8601("2014-12-08T06:21:07.601158Z"),
            Ok(Timestamp::new(base.secs, 601_158_000))
        );
        assert_eq!(parse_iso8601("2014-12-07T23:21:07.000-07:00"), Ok(base));
        assert_eq!(parse_iso8601("2014-12-08T15:21:07+09:00"), Ok(base));
        assert_eq!(parse_iso8601("2014-12-08T15:21:07+0900"), Ok(base));
        assert_eq!(parse_iso8601("2014-12-08 06:21:07Z"), Ok(base));
        assert_eq!(
            parse_iso8601("2014-12-08T06:21Z"),
            Ok(Timestamp::new(base.secs - 7, 0))
        );
    }

    #[test]
    fn bad_times() {
        for t in [
            "",
            "yesterday",
            "2014-12-08",
            "2014-12-08T06:21:07",
            "2014-13-08T06:21:07Z",
            "2014-04-31T06:21:07Z",
            "2014-12-08T24:21:07Z",
            "2014-12-08T06:21:07.Z",
            "2014-12-08T06:21:07.1234567890Z",
            "2014-12-08T06:21:07+25:00",
            "2014-12-08T06:-1:07Z",
        ] {
            assert!(parse_iso8601(t).is_err(), "{t}");
        }
    }
}
