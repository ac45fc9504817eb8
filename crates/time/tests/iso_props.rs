//! Property tests of the one ISO-8601 parser and formatter: the parser never panics on any
//! text (arbitrary Unicode, ISO-looking token soup, valid instants with a character replaced
//! — the kind of input a percent-decoded query string delivers), and every instant of the
//! years 0000..=9999 reads back from its formatted text at each precision, with `Z` or with
//! any offset up to ±18:00, including the offset whose `+` a URL turned into a space.

use archiver_time::calendar::{SECS_PER_DAY, UtcDateTime, days_from_civil};
use archiver_time::{Precision, Timestamp, parse_iso8601};
use proptest::prelude::*;

/// 0000-01-01T00:00:00Z.
const MIN_SECS: i64 = days_from_civil(0, 1, 1) * SECS_PER_DAY;
/// 9999-12-31T23:59:59Z.
const MAX_SECS: i64 = days_from_civil(10_000, 1, 1) * SECS_PER_DAY - 1;

fn instant() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        (MIN_SECS..=MAX_SECS, 0u32..1_000_000_000),
        // Around today, where real samples are.
        (1_400_000_000i64..1_900_000_000, 0u32..1_000_000_000),
        // The edges of the range.
        (
            prop::sample::select(vec![MIN_SECS, MIN_SECS + 1, MAX_SECS - 1, MAX_SECS, 0, -1]),
            prop::sample::select(vec![0u32, 1, 999_999_999, 500_000_000])
        ),
    ]
    .prop_map(|(s, n)| Timestamp::new(s, n))
}

fn precision() -> impl Strategy<Value = Precision> {
    prop::sample::select(Precision::ALL.to_vec())
}

/// Strings made of the pieces of ISO-8601 instants and the characters that break byte
/// slicing: multi-byte UTF-8, signs, separators, digits of other scripts.
fn iso_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "2014",
            "-",
            "12",
            "08",
            "T",
            "t",
            " ",
            "06",
            ":",
            "21",
            "07",
            ".",
            ",",
            "601",
            "123456789",
            "1234567890",
            "Z",
            "z",
            "+",
            "01:00",
            "0100",
            "é",
            "é",
            "2",
            "٢",
            "€",
            "\u{0}",
            "\u{10FFFF}",
            "[",
            "]",
            "UTC",
            "3000000000",
            "9999",
            "0000",
            "-00:00",
            "60",
            "24",
            "31",
            "02-29",
            "  ",
        ]),
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

/// A valid instant's text with one character replaced by `c`, one inserted, or the text cut
/// at a character position.
fn mutated() -> impl Strategy<Value = String> {
    (
        instant(),
        precision(),
        any::<prop::sample::Index>(),
        any::<char>(),
        0u8..3,
    )
        .prop_map(|(t, p, at, c, how)| {
            let s = t.iso(p).to_string();
            let chars: Vec<char> = s.chars().collect();
            let i = at.index(chars.len() + 1);
            let mut out: Vec<char> = chars.clone();
            match how {
                0 if i < chars.len() => out[i] = c,
                0 | 1 => out.insert(i, c),
                _ => out.truncate(i),
            }
            out.into_iter().collect()
        })
}

/// `t` as local time at `offset_secs` from UTC, with the offset written `±HH:MM[:SS]`, or
/// with a space for the `+`.
fn with_offset(t: Timestamp, offset_secs: i32, space_for_plus: bool) -> String {
    let d = UtcDateTime::from_epoch_secs(t.secs + i64::from(offset_secs));
    let sign = match (offset_secs < 0, space_for_plus) {
        (true, _) => '-',
        (false, true) => ' ',
        (false, false) => '+',
    };
    let a = offset_secs.unsigned_abs();
    let mut zone = format!("{sign}{:02}:{:02}", a / 3600, a / 60 % 60);
    if !a.is_multiple_of(60) {
        zone.push_str(&format!(":{:02}", a % 60));
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}{zone}",
        d.year, d.month, d.day, d.hour, d.minute, d.second, t.nanos
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn never_panics_on_arbitrary_unicode(s in any::<String>()) {
        let _ = parse_iso8601(&s);
    }

    #[test]
    fn never_panics_on_printable_text(s in "\\PC{0,60}") {
        let _ = parse_iso8601(&s);
    }

    #[test]
    fn never_panics_on_iso_soup(s in iso_soup()) {
        let _ = parse_iso8601(&s);
    }

    #[test]
    fn never_panics_on_a_mutated_instant(s in mutated()) {
        if let Ok(t) = parse_iso8601(&s) {
            // Whatever it accepts is an instant it can write again.
            prop_assert!(t.nanos < 1_000_000_000);
            prop_assert_eq!(parse_iso8601(&t.to_string()), Ok(t));
        }
    }

    #[test]
    fn parse_of_format_is_the_truncated_instant(t in instant(), p in precision()) {
        let text = t.iso(p).to_string();
        prop_assert_eq!(text.len(), 20 + p.digits() + usize::from(p != Precision::Seconds));
        prop_assert_eq!(parse_iso8601(&text), Ok(t.truncated(p)), "{}", text);
    }

    #[test]
    fn display_is_the_nanosecond_form(t in instant()) {
        prop_assert_eq!(t.to_string(), t.iso(Precision::Nanos).to_string());
        prop_assert_eq!(parse_iso8601(&t.to_string()), Ok(t));
    }

    #[test]
    fn an_offset_names_the_same_instant(
        t in instant(),
        offset in -18 * 3600..=18 * 3600i32,
        space in any::<bool>(),
    ) {
        let local = t.secs + i64::from(offset);
        prop_assume!((MIN_SECS..=MAX_SECS).contains(&local));
        let text = with_offset(t, offset, space);
        prop_assert_eq!(parse_iso8601(&text), Ok(t), "{}", text);
    }

    #[test]
    fn agrees_with_jiff_on_rfc3339(t in instant(), p in precision()) {
        // jiff's own timestamp type as the oracle of our calendar arithmetic (its range
        // stops a day short of 0000-01-01 and 9999-12-31 to leave room for offsets).
        let text = t.iso(p).to_string();
        if let Ok(j) = text.parse::<jiff::Timestamp>() {
            let ours = parse_iso8601(&text).expect("parses");
            // jiff signs the fraction as the seconds; compare total nanoseconds.
            let ours_ns = i128::from(ours.secs) * 1_000_000_000 + i128::from(ours.nanos);
            prop_assert_eq!(ours_ns, j.as_nanosecond());
        }
    }
}
