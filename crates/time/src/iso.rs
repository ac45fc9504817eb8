//! The one ISO-8601 parser and the one ISO-8601 formatter of the archiver.
//!
//! * [`parse_iso8601`] reads the instants clients send (`from`/`to` of getData, the
//!   `creationTime` of an imported PVTypeInfo): what Java's `Instant.parse` accepts, plus what
//!   real clients send that Java would refuse. The grammar is jiff's Temporal ISO 8601 parser
//!   ([`jiff::fmt::temporal::Pieces`]); this module only narrows it to instants and adds the
//!   archiver's rules (four-digit years, a zone required, the `+` lost in a URL).
//! * [`Iso8601`] / [`write_iso8601`] write an instant in UTC with a chosen [`Precision`],
//!   through `fmt::Write` and without allocating.

use std::fmt;

use jiff::fmt::temporal::Pieces;

use crate::calendar::{SECS_PER_DAY, Timestamp, UtcDateTime, days_from_civil};

/// Largest zone offset accepted, in seconds: ±18:00, the range of Java's `ZoneOffset`.
pub const MAX_OFFSET_SECS: i32 = 18 * 3600;

/// How many fraction digits [`write_iso8601`] writes. The fraction is truncated, never
/// rounded, as Java's `Instant.truncatedTo` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// No fraction: `2014-12-11T14:49:58Z`.
    Seconds,
    /// Three digits: `2014-12-11T14:49:58.523Z`, as Java's
    /// `TimeUtils.convertToISO8601String` writes the times of a PVTypeInfo.
    Millis,
    /// Six digits: `2014-12-11T14:49:58.523456Z`.
    Micros,
    /// Nine digits: `2014-12-11T14:49:58.523456789Z`, the full resolution of a sample.
    Nanos,
}

impl Precision {
    /// Every precision, coarsest first.
    pub const ALL: [Precision; 4] = [
        Precision::Seconds,
        Precision::Millis,
        Precision::Micros,
        Precision::Nanos,
    ];

    /// The number of fraction digits written: 0, 3, 6 or 9.
    pub const fn digits(self) -> usize {
        match self {
            Precision::Seconds => 0,
            Precision::Millis => 3,
            Precision::Micros => 6,
            Precision::Nanos => 9,
        }
    }

    /// Nanoseconds in one unit of the last digit written: 1e9, 1e6, 1e3 or 1.
    pub const fn unit_nanos(self) -> u32 {
        match self {
            Precision::Seconds => 1_000_000_000,
            Precision::Millis => 1_000_000,
            Precision::Micros => 1_000,
            Precision::Nanos => 1,
        }
    }
}

/// A [`Timestamp`] displayed as ISO-8601 UTC with a [`Precision`]: `YYYY-MM-DDTHH:MM:SS`,
/// then `.` and `precision.digits()` truncated fraction digits (none for `Seconds`), then
/// `Z`. Made by [`Timestamp::iso`]; formatting it allocates nothing.
///
/// Years 0000..=9999 print as four digits, and [`parse_iso8601`] reads every such text back
/// to the same instant truncated to the precision. Instants outside those years print with
/// as many digits as the year needs and a `-` sign before year 0 (`-0001-12-31T…`, `10000-…`),
/// which the parser refuses; a `nanos` of one billion or more (not a valid timestamp) prints
/// as its truncated digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iso8601 {
    time: Timestamp,
    precision: Precision,
}

impl Iso8601 {
    /// `time` to be written with `precision` fraction digits.
    pub const fn new(time: Timestamp, precision: Precision) -> Self {
        Iso8601 { time, precision }
    }
}

impl fmt::Display for Iso8601 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_iso8601(f, self.time, self.precision)
    }
}

/// Writes `t` as ISO-8601 UTC with `precision` fraction digits (see [`Iso8601`]) into `out`.
///
/// This is the one formatter of the project and sits on the hot path of the text encoders
/// (one call per sample), so it is written by hand on the calendar arithmetic of this crate
/// rather than through a date library: the common case fills a 30-byte stack buffer and makes
/// a single `write_str`; nothing is allocated.
pub fn write_iso8601<W: fmt::Write + ?Sized>(
    out: &mut W,
    t: Timestamp,
    precision: Precision,
) -> fmt::Result {
    let d = UtcDateTime::from_epoch_secs(t.secs);
    let digits = precision.digits();
    let fraction = t.nanos / precision.unit_nanos();
    if !(0..=9999).contains(&d.year) || t.nanos >= 1_000_000_000 {
        // Not a four-digit year or not a valid fraction: the rare, slower path.
        write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            d.year, d.month, d.day, d.hour, d.minute, d.second
        )?;
        if digits > 0 {
            write!(out, ".{fraction:0digits$}")?;
        }
        return out.write_char('Z');
    }
    let mut buf = *b"0000-00-00T00:00:00.000000000Z";
    put_digits(&mut buf[0..4], d.year as u32);
    put_digits(&mut buf[5..7], d.month);
    put_digits(&mut buf[8..10], d.day);
    put_digits(&mut buf[11..13], d.hour);
    put_digits(&mut buf[14..16], d.minute);
    put_digits(&mut buf[17..19], d.second);
    let len = if digits == 0 {
        buf[19] = b'Z';
        20
    } else {
        put_digits(&mut buf[20..20 + digits], fraction);
        buf[20 + digits] = b'Z';
        21 + digits
    };
    // Only ASCII digits and punctuation were written, so this cannot fail.
    out.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
}

/// Writes the decimal digits of `n` right-aligned into `field`, zero-padded; higher digits
/// that do not fit are dropped (callers pass fields wide enough).
fn put_digits(field: &mut [u8], mut n: u32) {
    for b in field.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// A text that is not an ISO-8601 instant: the text (as received) and what is wrong with it.
///
/// Its message names the problem and the expected form; the HTTP layer prefixes the name of
/// the parameter (`parameter 'from': cannot parse …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot parse {:?} as an ISO-8601 time: {} (expected e.g. 2024-01-31T08:00:00.000Z or 2024-01-31T09:00:00+01:00)",
    Shortened(text),
    Shortened(problem)
)]
pub struct BadTime {
    /// The text as received.
    pub text: String,
    /// What is wrong with it.
    pub problem: String,
}

impl BadTime {
    fn new(text: &str, problem: impl Into<String>) -> Self {
        BadTime {
            text: text.to_string(),
            problem: problem.into(),
        }
    }
}

/// At most [`Shortened::MAX_CHARS`] characters of a text, for error messages that echo what
/// a client sent (a request may carry a megabyte in one parameter).
struct Shortened<'a>(&'a str);

impl<'a> Shortened<'a> {
    const MAX_CHARS: usize = 120;

    /// The text cut to `MAX_CHARS` characters (on a character boundary), and whether it was.
    fn cut(&self) -> (&'a str, bool) {
        match self.0.char_indices().nth(Self::MAX_CHARS) {
            None => (self.0, false),
            Some((end, _)) => (&self.0[..end], true),
        }
    }
}

impl fmt::Debug for Shortened<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, cut) = self.cut();
        fmt::Debug::fmt(s, f)?;
        if cut { f.write_str("…") } else { Ok(()) }
    }
}

impl fmt::Display for Shortened<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, cut) = self.cut();
        f.write_str(s)?;
        if cut { f.write_str("…") } else { Ok(()) }
    }
}

/// Parses an ISO-8601 instant as a retrieval client or a PVTypeInfo sends it.
///
/// Accepted, as by Java's `Instant.parse` (`DateTimeFormatter.ISO_INSTANT`):
/// `YYYY-MM-DDTHH:MM[:SS[.f]]` then a zone, where
/// * the year has exactly four digits, `0000..=9999` (a longer year such as `3000000000` is
///   an error, never wrapped);
/// * `T` may also be `t` or a space;
/// * the fraction has 1 to 9 digits (`.` or `,`), the seconds and the fraction are optional
///   (`2014-12-08T06:21Z`); a leap second `:60` reads as `:59`;
/// * the zone is `Z`/`z` or a numeric offset `±HH:MM`, `±HHMM`, `±HH`, `±HH:MM:SS` of at most
///   ±18:00 (Java's `ZoneOffset` range);
/// * **a space in place of the offset's `+`**: `2026-11-29T16:00:00.123 01:00` is +01:00.
///   Clients that build URLs by string concatenation send `from=…+01:00` unencoded, and the
///   query decoding turns the `+` into a space;
/// * leading and trailing white space is ignored.
///
/// Beyond Java, jiff's Temporal grammar also takes a basic-format time (`T062107`) and the
/// `,` decimal sign. Refused: a missing zone (a local time is ambiguous on a server), a date
/// alone, bracketed time-zone or calendar annotations (`[Europe/Paris]`), out-of-range fields
/// (`2014-04-31`, `24:00`), more than nine fraction digits.
///
/// # Errors
///
/// [`BadTime`] with the text and the problem. Never panics, whatever the input.
pub fn parse_iso8601(text: &str) -> Result<Timestamp, BadTime> {
    let t = text.trim();
    let b = t.as_bytes();
    let date_ok = b.len() >= 10
        && b[4] == b'-'
        && b[7] == b'-'
        && [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&i| b[i].is_ascii_digit());
    if !date_ok {
        return Err(BadTime::new(
            text,
            "it does not start with a date YYYY-MM-DD with a four-digit year (0000 to 9999)",
        ));
    }
    if t.contains('[') {
        return Err(BadTime::new(
            text,
            "bracketed annotations such as [Europe/Paris] are not accepted; give the offset",
        ));
    }
    let restored;
    let t = match plus_lost_as_space(t) {
        Some((local, offset)) => {
            restored = format!("{local}+{offset}");
            restored.as_str()
        }
        None => t,
    };
    let pieces = Pieces::parse(t).map_err(|e| BadTime::new(text, e.to_string()))?;
    let Some(time) = pieces.time() else {
        return Err(BadTime::new(
            text,
            "it has no time of day (THH:MM[:SS[.fraction]])",
        ));
    };
    let Some(offset) = pieces.offset() else {
        return Err(BadTime::new(
            text,
            "it has no zone (Z or an offset such as +01:00)",
        ));
    };
    let offset = offset.to_numeric_offset().seconds();
    if offset.abs() > MAX_OFFSET_SECS {
        return Err(BadTime::new(text, "its offset is beyond ±18:00"));
    }
    let date = pieces.date();
    // jiff guarantees valid fields (month 1..=12, a day that exists, hour 0..=23...), and the
    // date check above a year 0000..=9999, so this arithmetic cannot overflow.
    let days = days_from_civil(
        i64::from(date.year()),
        date.month() as u32,
        date.day() as u32,
    );
    let secs = days * SECS_PER_DAY
        + i64::from(time.hour()) * 3600
        + i64::from(time.minute()) * 60
        + i64::from(time.second())
        - i64::from(offset);
    Ok(Timestamp::new(secs, time.subsec_nanosecond() as u32))
}

/// `Some((local, offset))` when `t` is `local offset` with a space where the `+` of a
/// numeric offset was: the part after the last space is only digits and colons, starting
/// with two digits, and the part before it is longer than a date (so `2014-12-08 06:21`,
/// a space-separated time without zone, is not taken for an offset).
fn plus_lost_as_space(t: &str) -> Option<(&str, &str)> {
    let (local, offset) = t.rsplit_once(' ')?;
    let ob = offset.as_bytes();
    let looks_like_offset = ob.len() >= 2
        && ob[0].is_ascii_digit()
        && ob[1].is_ascii_digit()
        && ob.iter().all(|c| c.is_ascii_digit() || *c == b':');
    (looks_like_offset && local.trim_end().len() > 10).then(|| (local.trim_end(), offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2014-12-08T06:21:07Z.
    const BASE: i64 = 1_418_019_667;

    fn at(secs: i64, nanos: u32) -> Result<Timestamp, BadTime> {
        Ok(Timestamp::new(secs, nanos))
    }

    #[test]
    fn formats_each_precision() {
        let t = Timestamp::new(BASE, 601_158_377);
        assert_eq!(
            t.iso(Precision::Seconds).to_string(),
            "2014-12-08T06:21:07Z"
        );
        assert_eq!(
            t.iso(Precision::Millis).to_string(),
            "2014-12-08T06:21:07.601Z"
        );
        assert_eq!(
            t.iso(Precision::Micros).to_string(),
            "2014-12-08T06:21:07.601158Z"
        );
        assert_eq!(
            t.iso(Precision::Nanos).to_string(),
            "2014-12-08T06:21:07.601158377Z"
        );
        assert_eq!(t.to_string(), "2014-12-08T06:21:07.601158377Z");
        // Truncated, never rounded.
        assert_eq!(
            Timestamp::new(BASE, 999_999_999)
                .iso(Precision::Millis)
                .to_string(),
            "2014-12-08T06:21:07.999Z"
        );
        assert_eq!(
            Timestamp::new(-1, 999_000_000)
                .iso(Precision::Millis)
                .to_string(),
            "1969-12-31T23:59:59.999Z"
        );
        let mut s = String::new();
        write_iso8601(&mut s, Timestamp::new(0, 0), Precision::Seconds).unwrap();
        assert_eq!(s, "1970-01-01T00:00:00Z");
    }

    #[test]
    fn formats_years_outside_four_digits_without_panicking() {
        let year_10000 = days_from_civil(10_000, 1, 1) * SECS_PER_DAY;
        assert_eq!(
            Timestamp::new(year_10000, 5_000_000)
                .iso(Precision::Millis)
                .to_string(),
            "10000-01-01T00:00:00.005Z"
        );
        assert_eq!(
            Timestamp::new(days_from_civil(0, 1, 1) * SECS_PER_DAY - 1, 0)
                .iso(Precision::Seconds)
                .to_string(),
            "-001-12-31T23:59:59Z"
        );
        assert_eq!(
            Timestamp::new(0, 1_500_000_000)
                .iso(Precision::Micros)
                .to_string(),
            "1970-01-01T00:00:00.1500000Z"
        );
        for secs in [i64::MIN, i64::MAX] {
            let s = Timestamp::new(secs, u32::MAX).to_string();
            assert!(s.ends_with('Z'), "{s}");
        }
    }

    #[test]
    fn parses_what_clients_send() {
        assert_eq!(parse_iso8601("2014-12-08T06:21:07Z"), at(BASE, 0));
        assert_eq!(parse_iso8601("2014-12-08t06:21:07z"), at(BASE, 0));
        assert_eq!(
            parse_iso8601("2014-12-08T06:21:07.601158377Z"),
            at(BASE, 601_158_377)
        );
        assert_eq!(
            parse_iso8601("2014-12-08T06:21:07.6Z"),
            at(BASE, 600_000_000)
        );
        assert_eq!(
            parse_iso8601("2014-12-08T06:21:07.601158Z"),
            at(BASE, 601_158_000)
        );
        assert_eq!(parse_iso8601("2014-12-07T23:21:07.000-07:00"), at(BASE, 0));
        assert_eq!(parse_iso8601("2014-12-08T15:21:07+09:00"), at(BASE, 0));
        assert_eq!(parse_iso8601("2014-12-08T15:21:07+0900"), at(BASE, 0));
        assert_eq!(parse_iso8601("2014-12-08T15:21:07+09"), at(BASE, 0));
        assert_eq!(parse_iso8601("2014-12-08T15:21:37+09:00:30"), at(BASE, 0));
        assert_eq!(parse_iso8601("2014-12-08 06:21:07Z"), at(BASE, 0));
        assert_eq!(parse_iso8601("  2014-12-08T06:21:07Z\n"), at(BASE, 0));
        assert_eq!(parse_iso8601("2014-12-08T06:21Z"), at(BASE - 7, 0));
        assert_eq!(parse_iso8601("2014-12-08T06:21+00:00"), at(BASE - 7, 0));
        assert_eq!(parse_iso8601("2014-12-08T06:21:07-00:00"), at(BASE, 0));
        assert_eq!(
            parse_iso8601("2014-12-08T06:21:07+18:00"),
            at(BASE - 18 * 3600, 0)
        );
        assert_eq!(parse_iso8601("2016-02-29T00:00:00Z"), at(1_456_704_000, 0));
        assert_eq!(
            parse_iso8601("0000-01-01T00:00:00Z"),
            at(-62_167_219_200, 0)
        );
        assert_eq!(
            parse_iso8601("9999-12-31T23:59:59.999999999Z"),
            at(253_402_300_799, 999_999_999)
        );
        // Beyond Java, from jiff's Temporal grammar: a `,` decimal sign, a basic-format or
        // hour-only time; a leap second reads as the second before it, as in Java.
        assert_eq!(
            parse_iso8601("2014-12-08T06:21:07,5Z"),
            at(BASE, 500_000_000)
        );
        assert_eq!(parse_iso8601("2014-12-08T062107Z"), at(BASE, 0));
        assert_eq!(parse_iso8601("2014-12-08T06Z"), at(BASE - 21 * 60 - 7, 0));
        assert_eq!(parse_iso8601("2014-12-08T06:21:60Z"), at(BASE + 52, 0));
        // An offset pushes the instant out of the four-digit years: still a valid instant.
        assert_eq!(
            parse_iso8601("9999-12-31T23:59:59-01:00"),
            at(253_402_300_799 + 3600, 0)
        );
    }

    #[test]
    fn a_space_where_the_plus_of_an_offset_was() {
        // from=2026-11-29T16:00:00.123+01:00 sent without URL-encoding.
        let want = parse_iso8601("2026-11-29T15:00:00.123Z");
        assert_eq!(want, at(1_795_964_400, 123_000_000));
        assert_eq!(parse_iso8601("2026-11-29T16:00:00.123 01:00"), want);
        assert_eq!(parse_iso8601("2026-11-29T16:00:00.123+01:00"), want);
        assert_eq!(parse_iso8601("2026-11-29T16:00:00.123 0100"), want);
        assert_eq!(parse_iso8601("2026-11-29 16:00:00.123 01:00"), want);
        assert_eq!(
            parse_iso8601("2026-11-29T16:00 01:00"),
            at(1_795_964_400, 0)
        );
        // A space-separated time without a zone is not mistaken for an offset.
        assert!(parse_iso8601("2026-11-29 16:00").is_err());
        assert!(parse_iso8601("2026-11-29T16:00:00 1:00").is_err());
        assert!(parse_iso8601("2026-11-29T16:00:00 01:00Z").is_err());
    }

    #[test]
    fn refuses_what_is_not_an_instant() {
        for t in [
            "",
            " ",
            "yesterday",
            "2014-12-08",
            "2014-12-08Z",
            "2014-12-08T06:21:07",
            "2014-12-08 06:21:07",
            "2014-13-08T06:21:07Z",
            "2014-04-31T06:21:07Z",
            "2015-02-29T00:00:00Z",
            "2014-12-08T24:21:07Z",
            "2014-12-08T24:00:00Z",
            "2014-12-08T06:60:00Z",
            "2014-12-08T06:21:07.Z",
            "2014-12-08T06:21:07.1234567890Z",
            "2014-12-08T06:21:07ZZ",
            "2014-12-08T06:21:07+25:00",
            "2014-12-08T06:21:07+18:01",
            "2014-12-08T06:21:07+1:00",
            "2014-12-08T06:-1:07Z",
            "2014-12-08T06:21:07Z[UTC]",
            "2014-12-08T06:21:07+01:00[Europe/Paris]",
            "2014-12-08T06:21:07[u-ca=iso8601]Z",
            "+2014-12-08T06:21:07Z",
            "-0001-12-08T06:21:07Z",
            "+002014-12-08T06:21:07Z",
            "20141208T062107Z",
            "٢٠١٤-12-11T14:49:58Z",
            "2014-12-08T06:21:07+1é2",
            "3000000000-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
        ] {
            assert!(parse_iso8601(t).is_err(), "{t:?} was accepted");
        }
    }

    #[test]
    fn multibyte_utf8_after_the_seconds_is_an_error_not_a_panic() {
        // getData.json?from=2014-12-08T06:21:07%2B1%C3%A92, percent-decoded.
        let e = parse_iso8601("2014-12-08T06:21:07+1é2").unwrap_err();
        assert_eq!(e.text, "2014-12-08T06:21:07+1é2");
        for t in [
            "2014-12-08T06:21:07é",
            "2014-12-08T06:21:0é",
            "2014-12-08T06:21:07.é1Z",
        ] {
            assert!(parse_iso8601(t).is_err(), "{t:?}");
        }
    }

    #[test]
    fn a_year_beyond_four_digits_is_an_error_not_a_wrap() {
        let e = parse_iso8601("3000000000-01-01T00:00:00Z").unwrap_err();
        assert!(e.to_string().contains("four-digit year"), "{e}");
    }

    #[test]
    fn the_error_names_the_text_and_what_is_expected() {
        let e = parse_iso8601("2014-12-08T06:21:07").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("\"2014-12-08T06:21:07\""), "{msg}");
        assert!(msg.contains("no zone"), "{msg}");
        assert!(
            msg.contains("expected e.g. 2024-01-31T08:00:00.000Z"),
            "{msg}"
        );
        // A long text is shortened in the message but kept whole in the error.
        let long = format!("2014-12-08T{}", "é".repeat(10_000));
        let e = parse_iso8601(&long).unwrap_err();
        assert_eq!(e.text, long);
        assert!(e.to_string().len() < 800, "{}", e.to_string().len());
        // So is a long tail that the grammar leaves unparsed (and echoes in its problem).
        let long = format!("2014-12-08T06:21:07Z{}", "x".repeat(100_000));
        let msg = parse_iso8601(&long).unwrap_err().to_string();
        assert!(msg.len() < 800, "{}", msg.len());
        assert!(msg.contains("unparsed"), "{msg}");
    }
}
