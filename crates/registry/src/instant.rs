//! The ISO-8601 instants of `PVTypeInfo` (`creationTime`, `modificationTime`).
//!
//! The Java appliance writes them with `TimeUtils.convertToISO8601String`: UTC, truncated
//! to milliseconds, always three fraction digits and a `Z` (`2014-12-11T14:49:58.523Z`),
//! and reads them with `Instant.parse`, which also takes zero to nine fraction digits,
//! no seconds, and a numeric offset (`+01:00`) instead of `Z`. Both directions use the one
//! parser and formatter of the project, in `archiver-time`.

use archiver_pb::Timestamp;
use archiver_time::{Precision, parse_iso8601};

/// `t` with its nanoseconds cut to whole milliseconds (Java's `truncatedTo(MILLIS)`).
pub fn truncate_to_millis(t: Timestamp) -> Timestamp {
    t.truncated(Precision::Millis)
}

/// `2014-12-11T14:49:58.523Z`: UTC, milliseconds truncated, as the Java appliance writes.
pub fn format_iso_millis(t: Timestamp) -> String {
    t.iso(Precision::Millis).to_string()
}

/// Parses what Java's `Instant.parse` accepts for the years 0000..=9999:
/// `YYYY-MM-DDTHH:MM[:SS[.f…]](Z|±HH:MM[:SS])`, `T` and `Z` in either case, and the few
/// more forms [`archiver_time::parse_iso8601`] takes (a space for `T`, `±HHMM`...).
/// `None` when the text is not such an instant or a field is out of range.
pub fn parse_iso(s: &str) -> Option<Timestamp> {
    parse_iso8601(s).ok()
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
        assert_eq!(parse_iso("2014-12-11T15:50:28.523+01:00:30"), Some(proto));
        // Refused before the one parser, accepted since (as retrieval always did).
        assert_eq!(parse_iso("2014-12-11 14:49:58.523Z"), Some(proto));
        assert_eq!(parse_iso("2014-12-11T15:49:58.523+0100"), Some(proto));
    }

    #[test]
    fn rejects_what_is_not_an_instant() {
        for bad in [
            "",
            "yesterday",
            "2014-12-11",
            "2014-12-11T14:49:58.523",
            "2014-13-11T14:49:58Z",
            "2015-02-29T00:00:00Z",
            "2014-12-11T24:00:00Z",
            "2014-12-11T14:60:00Z",
            "2014-12-11T14:49:58.Z",
            "2014-12-11T14:49:58.1234567890Z",
            "2014-12-11T14:49:58ZZ",
            "2014-12-11T14:49:58+1:00",
            "2014-12-11T14:49:58+19:00",
            "٢٠١٤-12-11T14:49:58Z",
            "10000-12-11T14:49:58Z",
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
