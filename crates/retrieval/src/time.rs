//! ISO-8601 instants as retrieval clients send them (`from`, `to` of getData).
//!
//! The parser is the one of the project, in `archiver-time`; it is re-exported here so the
//! HTTP layer keeps reaching it as `archiver_retrieval::time::parse_iso8601`. See
//! [`parse_iso8601`] for the grammar (what Java's `Instant.parse` accepts, a space for `T`,
//! a space where the `+` of an unencoded offset was).

pub use archiver_time::{BadTime, parse_iso8601};

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::Timestamp;

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
        // The `+` of an offset that arrived as a space (an unencoded query string).
        assert_eq!(parse_iso8601("2014-12-08T15:21:07 09:00"), Ok(base));
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
            "2014-12-08T06:21:07+1é2",
            "3000000000-01-01T00:00:00Z",
        ] {
            assert!(parse_iso8601(t).is_err(), "{t}");
        }
    }
}
