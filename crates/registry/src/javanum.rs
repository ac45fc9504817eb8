//! Java's text forms of `float` and `double`.
//!
//! The Java appliance writes every number of a `PVTypeInfo` as a JSON *string* made by
//! `Float.toString` / `Double.toString`, and reads them back with `Float.valueOf` /
//! `Double.valueOf`. The layout rules are Java's:
//!
//! * `NaN`, `Infinity`, `-Infinity`;
//! * at least one digit after the point: `0.0`, `1.0`, `-0.7`;
//! * plain decimal for `1e-3 <= |x| < 1e7`, otherwise computerized scientific notation
//!   with a capital `E` and no `+`: `1.0E7`, `1.2345E-5`.
//!
//! The digits are the shortest that read back to the same value (what the JDK prints
//! since JDK 19; older JDKs occasionally printed one more digit, which still parses to
//! the same value). A `float` uses the shortest digits *for a float*, so `0.016666668f`
//! prints as `0.016666668`, not as the digits of the widened double.

/// `Double.toString(x)`.
pub fn format_f64(x: f64) -> String {
    if let Some(special) = special(x.is_nan(), x.is_infinite(), x == 0.0, x.is_sign_negative()) {
        return special.to_string();
    }
    layout(&format!("{x:e}"))
}

/// `Float.toString(x)`.
pub fn format_f32(x: f32) -> String {
    if let Some(special) = special(x.is_nan(), x.is_infinite(), x == 0.0, x.is_sign_negative()) {
        return special.to_string();
    }
    layout(&format!("{x:e}"))
}

/// `Double.valueOf(s)`: surrounding whitespace, an optional sign, `NaN`, `Infinity`, a
/// decimal with an optional exponent and an optional `d`/`D`/`f`/`F` suffix. Hexadecimal
/// floats are not accepted. `None` when `s` is not a number.
pub fn parse_f64(s: &str) -> Option<f64> {
    java_number_text(s)?.parse().ok()
}

/// `Float.valueOf(s)`, with the same syntax as [`parse_f64`]; the decimal is rounded
/// straight to the nearest `float`, as Java does.
pub fn parse_f32(s: &str) -> Option<f32> {
    java_number_text(s)?.parse().ok()
}

/// The text of the special values, or `None` for a finite non-zero number.
fn special(nan: bool, inf: bool, zero: bool, negative: bool) -> Option<&'static str> {
    match (nan, inf, zero, negative) {
        (true, ..) => Some("NaN"),
        (_, true, _, false) => Some("Infinity"),
        (_, true, _, true) => Some("-Infinity"),
        (_, _, true, false) => Some("0.0"),
        (_, _, true, true) => Some("-0.0"),
        _ => None,
    }
}

/// Lays out Rust's shortest scientific form (`-1.2345e-5`) the way Java does.
fn layout(sci: &str) -> String {
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    // The significant digits d1 d2 d3 ...; the value is d1.d2d3... x 10^exp.
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if (-3..7).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        if digits.len() > 1 {
            out.push_str(&digits[1..]);
        } else {
            out.push('0');
        }
        out.push('E');
        out.push_str(&exp.to_string());
    }
    out
}

/// Trims, checks the characters and drops a Java type suffix; the result is text that
/// Rust's float parser reads with the same meaning as Java's.
fn java_number_text(s: &str) -> Option<&str> {
    let s = s.trim();
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body == "NaN" || body == "Infinity" {
        return Some(s);
    }
    // Rust also accepts "inf", "nan" in any case; Java does not.
    let s = s.strip_suffix(['d', 'D', 'f', 'F']).unwrap_or(s);
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let valid = body
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    valid.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_like_java() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-0.7, "-0.7"),
            (100.0, "100.0"),
            (123.456, "123.456"),
            (9_999_999.0, "9999999.0"),
            (1e7, "1.0E7"),
            (123_456_789.0, "1.23456789E8"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (1.2345e-5, "1.2345E-5"),
            (-2.5e-10, "-2.5E-10"),
            (1e300, "1.0E300"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (x, want) in cases {
            assert_eq!(format_f64(*x), *want, "format_f64({x:?})");
        }
    }

    #[test]
    fn floats_print_like_java() {
        let cases: &[(f32, &str)] = &[
            (0.016_666_668, "0.016666668"),
            (0.283_333_33, "0.28333333"),
            (0.1, "0.1"),
            (1.0, "1.0"),
            (60.0, "60.0"),
            (1e10, "1.0E10"),
            (3.0e-4, "3.0E-4"),
            (f32::NAN, "NaN"),
        ];
        for (x, want) in cases {
            assert_eq!(format_f32(*x), *want, "format_f32({x:?})");
        }
    }

    #[test]
    fn java_text_parses_back() {
        assert!(parse_f64("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_f64("Infinity"), Some(f64::INFINITY));
        assert_eq!(parse_f64("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64("1.0E7"), Some(1e7));
        assert_eq!(parse_f64("1e-3"), Some(0.001));
        assert_eq!(parse_f64(" 2.5 "), Some(2.5));
        assert_eq!(parse_f64("+3d"), Some(3.0));
        assert_eq!(parse_f64(".5"), Some(0.5));
        assert_eq!(parse_f32("1.5f"), Some(1.5));
        assert_eq!(parse_f32("0.016666668"), Some(0.016_666_668));
        for bad in ["", "abc", "inf", "nan", "1,5", "0x1p3", "-", "e5"] {
            assert_eq!(parse_f64(bad), None, "{bad:?} is not a Java double");
        }
    }

    #[test]
    fn printed_values_read_back_exactly() {
        for x in [0.1, 1.0 / 3.0, 6.02e23, -1e-7, 5e-324, f64::MAX, 1e7 - 1e-9] {
            let text = format_f64(x);
            assert_eq!(parse_f64(&text), Some(x), "{text}");
        }
        for x in [0.1f32, 1.0 / 3.0, 3.4e38, 1e-45] {
            let text = format_f32(x);
            assert_eq!(parse_f32(&text), Some(x), "{text}");
        }
    }
}
