//! Values written as the Java appliance's text formats write them (`csv`, `txt`, `jplot`):
//! Java's `toString` of the sample value, written straight into the output buffer.
//!
//! * doubles and floats as `Double.toString` / `Float.toString`: the shortest digits that
//!   read back to the same value, `1.0`, `0.001`, `1234567.0` for magnitudes in
//!   `[1e-3, 1e7)`, else computerized scientific notation `1.0E7`, `1.0E-4`,
//!   `-1.2345E-10`; `NaN`, `Infinity`, `-Infinity`; `0.0`, `-0.0`;
//! * integers (short, int, byte, enum index) in decimal;
//! * a string as it is;
//! * a waveform as `[v0,v1,...]` of the elements' `toString` (Java `VectorValue.toString`);
//!   a `DBR_WAVEFORM_BYTE` element is a signed byte.
//!
//! Nothing here allocates: the shortest digits come from `zmij` (Schubfach, the algorithm of
//! Java ≥ 19's `Double.toString`) into a stack buffer, integers from `itoa`.

use archiver_pb::Value;

/// Writes `digits` (shortest significant digits, no leading zeros, at least one) with
/// decimal exponent `exp` (the value is `0.d1d2... × 10^(exp+1)`, i.e. `d1.d2... × 10^exp`)
/// in Java's layout.
fn java_layout(out: &mut Vec<u8>, negative: bool, digits: &[u8], exp: i32) {
    if negative {
        out.push(b'-');
    }
    if (-3..7).contains(&exp) {
        if exp < 0 {
            out.extend_from_slice(b"0.");
            for _ in 0..(-exp - 1) {
                out.push(b'0');
            }
            out.extend_from_slice(digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.extend_from_slice(digits);
                for _ in digits.len()..int_len {
                    out.push(b'0');
                }
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits[..int_len]);
                out.push(b'.');
                out.extend_from_slice(&digits[int_len..]);
            }
        }
    } else {
        out.push(digits[0]);
        out.push(b'.');
        if digits.len() > 1 {
            out.extend_from_slice(&digits[1..]);
        } else {
            out.push(b'0');
        }
        out.push(b'E');
        int(out, exp);
    }
}

/// Reads the shortest round-trip text of a positive finite number (`zmij`'s, in either of
/// its layouts: `123.45`, `0.001234`, `1e-7`, `1.5e+20`) into its significant digits (no
/// leading or trailing zeros, at least one; into `digits`) and decimal exponent (the value
/// is `d1.d2d3... × 10^exp`).
fn digits_exp(text: &[u8], digits: &mut [u8; 48]) -> (usize, i32) {
    let mut n = 0usize;
    let mut int_digits: i32 = 0;
    let mut seen_point = false;
    let mut i = 0;
    while i < text.len() && text[i] != b'e' && text[i] != b'E' {
        match text[i] {
            b'.' => seen_point = true,
            c if c.is_ascii_digit() => {
                if n == 0 && c == b'0' {
                    // A leading zero: before the point it is not a digit of the value,
                    // after it, it shifts the value one place down.
                    if seen_point {
                        int_digits -= 1;
                    }
                } else if n < digits.len() {
                    digits[n] = c;
                    n += 1;
                    if !seen_point {
                        int_digits += 1;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut exp: i32 = 0;
    if i < text.len() {
        let (neg, mut j) = match text.get(i + 1) {
            Some(b'-') => (true, i + 2),
            Some(b'+') => (false, i + 2),
            _ => (false, i + 1),
        };
        while j < text.len() && text[j].is_ascii_digit() {
            exp = exp
                .saturating_mul(10)
                .saturating_add(i32::from(text[j] - b'0'));
            j += 1;
        }
        if neg {
            exp = -exp;
        }
    }
    while n > 1 && digits[n - 1] == b'0' {
        n -= 1;
    }
    if n == 0 {
        digits[0] = b'0';
        n = 1;
    }
    (n, int_digits - 1 + exp)
}

/// `x × 10^k` for `x = m × 2^e`, when it is an integer below 2^100 (`None` otherwise):
/// exact, for deciding whether a number lies exactly halfway between two decimals.
fn scaled_integer(m: u64, e: i32, k: i32) -> Option<u128> {
    const LIMIT: u128 = 1 << 100;
    // m × 5^k (k ≥ 0) or m / 5^-k (k < 0, m must be a multiple).
    let odd_part: u128 = if k >= 0 {
        // Beyond 5^32 the product cannot be below the limit (m ≥ 1).
        if k > 32 {
            return None;
        }
        u128::from(m) * 5u128.pow(k.unsigned_abs())
    } else {
        let j = k.unsigned_abs();
        // m < 2^64 < 5^28: no multiple of a larger power.
        if j > 27 {
            return None;
        }
        let p = 5u128.pow(j);
        let m = u128::from(m);
        if m % p != 0 {
            return None;
        }
        m / p
    };
    // × 2^(e + k)
    let shift = e.saturating_add(k);
    if shift >= 0 {
        let s = shift.unsigned_abs();
        if s >= 100 || odd_part >= LIMIT >> s {
            return None;
        }
        Some(odd_part << s)
    } else {
        let s = shift.unsigned_abs();
        if s >= 128 || odd_part & ((1u128 << s) - 1) != 0 {
            return None;
        }
        Some(odd_part >> s)
    }
}

/// Java's tie rule for the shortest digits (`Double.toString` since Java 19: "if both are
/// equally close, the one whose least significant digit is even"), which zmij does not
/// apply: when `x = m × 2^e` lies exactly halfway between two `n`-digit decimals next to
/// the `digits[..n]` × 10^`exp` zmij chose, puts the even one in `digits` (and returns the
/// new digit count and exponent). Exact integer arithmetic; nothing allocated.
fn even_on_tie(m: u64, e: i32, digits: &mut [u8; 48], n: usize, exp: i32) -> (usize, i32) {
    // x × 10^(n - exp) has n + 1 digits: the n digits and a fraction digit.
    let Ok(len) = i32::try_from(n) else {
        return (n, exp);
    };
    let Some(scaled) = scaled_integer(m, e, len - exp) else {
        return (n, exp);
    };
    if scaled % 10 != 5 {
        return (n, exp);
    }
    let low = scaled / 10;
    let even = if low % 2 == 0 { low } else { low + 1 };
    let mut buf = itoa::Buffer::new();
    let text = buf.format(even).as_bytes();
    // `low + 1` may carry into one more digit (99…9 + 1): one place higher.
    let exp = exp + (text.len() as i32 - len);
    let mut k = text.len().min(digits.len());
    digits[..k].copy_from_slice(&text[..k]);
    while k > 1 && digits[k - 1] == b'0' {
        k -= 1;
    }
    (k, exp)
}

macro_rules! java_float {
    ($name:ident, $t:ty, $bits:ty, $mant_bits:expr, $bias:expr) => {
        /// Writes `x` as Java's `toString` of the same type does (see the module).
        pub fn $name(out: &mut Vec<u8>, x: $t) {
            if x.is_nan() {
                out.extend_from_slice(b"NaN");
                return;
            }
            if x.is_infinite() {
                out.extend_from_slice(if x > 0.0 { b"Infinity" } else { b"-Infinity" });
                return;
            }
            if x == 0.0 {
                out.extend_from_slice(if x.is_sign_negative() {
                    b"-0.0"
                } else {
                    b"0.0"
                });
                return;
            }
            let mut buf = zmij::Buffer::new();
            let text = buf.format_finite(x.abs());
            let mut digits = [0u8; 48];
            let (n, exp) = digits_exp(text.as_bytes(), &mut digits);
            // x = m × 2^e exactly.
            let bits: $bits = x.abs().to_bits();
            let frac = bits & ((1 << $mant_bits) - 1);
            let biased = (bits >> $mant_bits) as i32;
            let (m, e) = if biased == 0 {
                (frac, 1 - $bias - $mant_bits)
            } else {
                (frac | (1 << $mant_bits), biased - $bias - $mant_bits)
            };
            let (n, exp) = even_on_tie(u64::from(m), e, &mut digits, n, exp);
            java_layout(out, x.is_sign_negative(), &digits[..n], exp);
        }
    };
}

java_float!(java_f64, f64, u64, 52, 1023);
java_float!(java_f32, f32, u32, 23, 127);

/// Writes an integer in decimal (`itoa`: no `core::fmt` machinery per number).
#[inline]
pub fn int<T: itoa::Integer>(out: &mut Vec<u8>, x: T) {
    out.extend_from_slice(itoa::Buffer::new().format(x).as_bytes());
}

/// Writes `[a,b,...]`, each element by `each`.
pub(crate) fn list<T: Copy>(out: &mut Vec<u8>, v: &[T], mut each: impl FnMut(&mut Vec<u8>, T)) {
    out.push(b'[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, *x);
    }
    out.push(b']');
}

/// Writes what follows the time in a csv or txt line: value, severity, status and
/// nanoseconds, each preceded by `sep`, then the newline (Java's `SinglePVCSVResponse` and
/// `TextResponse` columns).
pub(crate) fn value_columns(out: &mut Vec<u8>, s: &archiver_pb::Sample, sep: u8) {
    out.push(sep);
    java_value(out, &s.value);
    out.push(sep);
    int(out, s.severity);
    out.push(sep);
    int(out, s.status);
    out.push(sep);
    int(out, s.time.nanos);
    out.push(b'\n');
}

/// Writes a sample value as Java's `SampleValue.toString` (see the module).
pub fn java_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::ScalarString(s) => out.extend_from_slice(s.as_bytes()),
        Value::ScalarShort(x) | Value::ScalarEnum(x) => int(out, *x),
        Value::ScalarFloat(x) => java_f32(out, *x),
        Value::ScalarByte(x) => int(out, *x),
        Value::ScalarInt(x) => int(out, *x),
        Value::ScalarDouble(x) => java_f64(out, *x),
        Value::VectorString(v) => {
            out.push(b'[');
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(s.as_bytes());
            }
            out.push(b']');
        }
        Value::VectorShort(v) | Value::VectorEnum(v) => list(out, v, int),
        Value::VectorFloat(v) => list(out, v, java_f32),
        Value::VectorChar(v) => list(out, v, |o, b| int(o, b as i8)),
        Value::VectorInt(v) => list(out, v, int),
        Value::VectorDouble(v) => list(out, v, java_f64),
        Value::V4GenericBytes(v) => list(out, v, int),
    }
}

/// The value as a double, as Java's `SampleValue.getValue().doubleValue()` (the first
/// element of a waveform; a string parsed, NaN when it does not parse).
pub fn as_f64(v: &Value) -> f64 {
    match v {
        Value::ScalarString(s) => s.trim().parse().unwrap_or(f64::NAN),
        Value::ScalarShort(x) | Value::ScalarEnum(x) => f64::from(*x),
        Value::ScalarFloat(x) => f64::from(*x),
        Value::ScalarByte(x) => f64::from(*x),
        Value::ScalarInt(x) => f64::from(*x),
        Value::ScalarDouble(x) => *x,
        Value::VectorString(v) => v
            .first()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(f64::NAN),
        Value::VectorShort(v) | Value::VectorEnum(v) => v.first().map_or(f64::NAN, |x| (*x).into()),
        Value::VectorFloat(v) => v.first().map_or(f64::NAN, |x| (*x).into()),
        Value::VectorChar(v) => v.first().map_or(f64::NAN, |x| f64::from(*x as i8)),
        Value::VectorInt(v) => v.first().map_or(f64::NAN, |x| (*x).into()),
        Value::VectorDouble(v) => v.first().copied().unwrap_or(f64::NAN),
        Value::V4GenericBytes(v) => v.first().map_or(f64::NAN, |x| f64::from(*x)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;

    /// A fixed stack buffer that `write!` fills (the digits of one number).
    struct Stack {
        buf: [u8; 48],
        len: usize,
    }

    impl Write for Stack {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let room = self.buf.len() - self.len;
            let n = b.len().min(room);
            self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
            self.len += n;
            if n < b.len() {
                return Err(std::io::Error::other("number longer than 48 bytes"));
            }
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The digits and exponent of Rust's `{:e}` text (the formatter used before `zmij`).
    fn reference_f64(x: f64) -> String {
        let mut s = Stack {
            buf: [0; 48],
            len: 0,
        };
        let _ = write!(s, "{:e}", x.abs());
        let mut digits = [0u8; 48];
        let (n, exp) = digits_exp(&s.buf[..s.len], &mut digits);
        let mut out = Vec::new();
        java_layout(&mut out, x.is_sign_negative(), &digits[..n], exp);
        String::from_utf8(out).expect("ascii")
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// Any finite double: the same text as from Rust's own shortest digits, and it
        /// reads back to the same value.
        #[test]
        fn any_double_prints_its_shortest_digits(bits in proptest::prelude::any::<u64>()) {
            let x = f64::from_bits(bits);
            proptest::prop_assume!(x.is_finite() && x != 0.0);
            let text = d(x);
            let reference = reference_f64(x);
            // As short as Rust's shortest digits (they differ only on exact ties).
            let len = |t: &str| digits_exp(t.as_bytes(), &mut [0u8; 48]).0;
            proptest::prop_assert_eq!(len(&text), len(&reference), "{} vs {}", text, reference);
            let back: f64 = text.replace('E', "e").parse().expect("number");
            proptest::prop_assert_eq!(back.to_bits(), x.to_bits());
        }
    }

    fn d(x: f64) -> String {
        let mut out = Vec::new();
        java_f64(&mut out, x);
        String::from_utf8(out).expect("ascii")
    }

    fn f(x: f32) -> String {
        let mut out = Vec::new();
        java_f32(&mut out, x);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn doubles_print_as_java_double_to_string() {
        // Expected strings are Java's `Double.toString` of the same values.
        let cases: &[(f64, &str)] = &[
            (1.0, "1.0"),
            (-0.09, "-0.09"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (1e-5, "1.0E-5"),
            (100.0, "100.0"),
            (1234567.0, "1234567.0"),
            (1e7, "1.0E7"),
            (12345678.9, "1.23456789E7"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::MAX, "1.7976931348623157E308"),
            (f64::MIN_POSITIVE, "2.2250738585072014E-308"),
            (5e-324, "4.9E-324"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (123.456, "123.456"),
            (-1.5e-3, "-0.0015"),
            // Exactly halfway between two 17-digit decimals: Java takes the even last
            // digit (checked against Python's repr, which follows the same rule).
            (
                f64::from_bits(4_822_771_797_695_314_020),
                "2.6324362613293112E14",
            ),
            (
                f64::from_bits(14_044_237_006_829_053_204),
                "-2.0365525985053662E14",
            ),
        ];
        for (x, want) in cases {
            if *x == 5e-324 {
                // Java prints the minimum subnormal as 4.9E-324 (not shortest); we print
                // the shortest digits, 5.0E-324. Both read back to the same double.
                assert_eq!(d(*x), "5.0E-324");
                continue;
            }
            assert_eq!(d(*x), *want, "{x:e}");
            if x.is_finite() {
                assert_eq!(d(*x).parse::<f64>().expect("reads back"), *x);
            }
        }
    }

    #[test]
    fn floats_print_as_java_float_to_string() {
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(1.5e10), "1.5E10");
        assert_eq!(f(3.0), "3.0");
        assert_eq!(f(f32::NAN), "NaN");
        assert_eq!(f(-2.5e-4), "-2.5E-4");
    }

    #[test]
    fn values_print_as_java_sample_values() {
        let s = |v: Value| {
            let mut out = Vec::new();
            java_value(&mut out, &v);
            String::from_utf8(out).expect("utf8")
        };
        assert_eq!(s(Value::ScalarEnum(3)), "3");
        assert_eq!(s(Value::ScalarString("a b,c".into())), "a b,c");
        assert_eq!(s(Value::VectorDouble(vec![1.0, 2.5])), "[1.0,2.5]");
        assert_eq!(s(Value::VectorChar(vec![255, 1])), "[-1,1]");
        assert_eq!(as_f64(&Value::VectorInt(vec![7, 8])), 7.0);
        assert!(as_f64(&Value::ScalarString("x".into())).is_nan());
    }
}
