//! The ISO-8601 instants of `PVTypeInfo` (`creationTime`, `modificationTime`).
//!
//! The Java appliance writes them with `TimeUtils.convertToISO8601String`: UTC, truncated
//! to milliseconds, always three fraction digits and a `Z` (`2014-12-11T14:49:58.523Z`),
//! and reads them with `Instant.parse`, which also takes zero to nine fraction digits,
//! no seconds, and a numeric offset (`+01:00`) instead of `Z`.

use archiver_pb::Timestamp;
use archiver_pb::time::{SECS_PER_DAY, UtcDateTime, days_from_civil, is_leap_year};

/// `t` with its nanoseconds cut to whole milliseconds (Java's `truncatedTo(MILLIS)`).
pub fn truncate_to_millis(t: Timestamp) -> Timestamp {
    Timestamp::new(t.secs, t.nanos - t.nanos % 1_000_000)
}

/// `2014-12-11T14:49:58.523Z`: UTC, milliseconds truncated, as the Java appliance writes.
pub fn format_iso_millis(t: Timestamp) -> String {
    let d = UtcDateTime::from_epoch_secs(t.secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        d.year,
        d.month,
        d.day,
        d.hour,
        d.minute,
        d.second,
        t.nanos / 1_000_000
    )
}

/// Parses what Java's `Instant.parse` accepts for the years 0000..=9999:
/// `YYYY-MM-DDTHH:MM[:SS[.f…]](Z|±HH:MM[:SS])`, `T` and `Z` in either case.
/// `None` when the text is not such an instant or a field is out of range.
pub fn parse_iso(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let year = digits(b, 0, 4)?;
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    if !matches!(b.get(10), Some(b'T' | b't')) {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2)?;
    let mut i = 16;
    let mut second = 0;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b':') {
        second = digits(b, i + 1, 2)?;
        i += 3;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let n = i - start;
            if n == 0 || n > 9 {
                return None;
            }
            nanos = digits(b, start, n)? * 10u32.pow((9 - n) as u32);
        }
    }
    let offset_secs: i64 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let oh = digits(b, i + 1, 2)?;
            expect(b, i + 3, b':')?;
            let om = digits(b, i + 4, 2)?;
            let mut os = 0;
            let mut end = i + 6;
            if b.get(end) == Some(&b':') {
                os = digits(b, end + 1, 2)?;
                end += 3;
            }
            if end != b.len() || oh > 18 || om > 59 || os > 59 {
                return None;
            }
            let total = i64::from(oh * 3600 + om * 60 + os);
            if *sign == b'-' { -total } else { total }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year as i32, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let secs = days_from_civil(i64::from(year), month, day) * SECS_PER_DAY
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset_secs;
    Some(Timestamp::new(secs, nanos))
}

/// The decimal number in `b[at..at + n]`, all ASCII digits, or `None`.
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let field = b.get(at..at + n)?;
    field.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn expect(b: &[u8], at: usize, c: u8) -> Option<()> {
    (b.get(at) == Some(&c)).then_some(())
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2014-12-11T14:49:58Z, the creation time of the prototype vector.
    const PROTO_SECS: i64 = 1_418_309_398;

    #[test]
    fn formats_like_java_with_truncated_millis() {
        let t = Timestamp::new(PROTO_SECS, 523_999_999);
        assert_eq!(format_iso_millis(t), "2014-12-11T14:49:58.523Z");
        assert_eq!(
            format_iso_millis(Timestamp::new(0, 0)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_iso_millis(Timestamp::new(-1, 999_000_000)),
            "1969-12-31T23:59:59.999Z"
        );
        assert_eq!(
            truncate_to_millis(Timestamp::new(5, 1_234_567)),
            Timestamp::new(5, 1_000_000)
        );
    }

    #[test]
    fn parses_what_instant_parse_accepts() {
        let proto = Timestamp::new(PROTO_SECS, 523_000_000);
        assert_eq!(parse_iso("2014-12-11T14:49:58.523Z"), Some(proto));
        assert_eq!(parse_iso("2014-12-11t14:49:58.523z"), Some(proto));
        assert_eq!(parse_iso("2014-12-11T15:49:58.523+01:00"), Some(proto));
        assert_eq!(parse_iso("2014-12-11T09:49:58.523-05:00"), Some(proto));
        assert_eq!(
            parse_iso("2014-12-11T14:49:58Z"),
            Some(Timestamp::new(PROTO_SECS, 0))
        );
        assert_eq!(
            parse_iso("2014-12-11T14:49Z"),
            Some(Timestamp::new(PROTO_SECS - 58, 0))
        );
        assert_eq!(
            parse_iso("2014-12-11T14:49:58.123456789Z"),
            Some(Timestamp::new(PROTO_SECS, 123_456_789))
        );
        assert_eq!(
            parse_iso("2016-02-29T00:00:00Z"),
            Some(Timestamp::new(1_456_704_000, 0))
        );
    }

    #[test]
    fn rejects_what_is_not_an_instant() {
        for bad in [
            "",
            "yesterday",
            "2014-12-11",
            "2014-12-11T14:49:58.523",
            "2014-12-11 14:49:58.523Z",
            "2014-13-11T14:49:58Z",
            "2015-02-29T00:00:00Z",
            "2014-12-11T24:00:00Z",
            "2014-12-11T14:60:00Z",
            "2014-12-11T14:49:58.Z",
            "2014-12-11T14:49:58.1234567890Z",
            "2014-12-11T14:49:58ZZ",
            "2014-12-11T14:49:58+1:00",
            "٢٠١٤-12-11T14:49:58Z",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn format_then_parse_is_identity_at_millisecond_resolution() {
        for secs in [0, PROTO_SECS, -86_401, 4_102_444_799] {
            let t = Timestamp::new(secs, 7_000_000);
            assert_eq!(parse_iso(&format_iso_millis(t)), Some(t));
        }
    }
}
