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
//! Nothing here allocates: the shortest digits come from Rust's float formatting (the same
//! shortest-round-trip rule as Java ≥ 19's `Double.toString`) into a stack buffer.

use std::io::Write;

use archiver_pb::Value;

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
        let _ = write!(out, "{exp}");
    }
}

/// Splits Rust's `{:e}` text (`1.2345e3`, `5e-324`) of a positive finite number into its
/// digits (into `digits`) and exponent.
fn split_sci(text: &[u8], digits: &mut [u8; 48]) -> (usize, i32) {
    let mut n = 0;
    let mut exp = 0i32;
    let mut i = 0;
    while i < text.len() && text[i] != b'e' {
        if text[i].is_ascii_digit() {
            digits[n] = text[i];
            n += 1;
        }
        i += 1;
    }
    if i + 1 < text.len() {
        let (neg, start) = if text[i + 1] == b'-' {
            (true, i + 2)
        } else {
            (false, i + 1)
        };
        for &c in &text[start..] {
            exp = exp * 10 + i32::from(c - b'0');
        }
        if neg {
            exp = -exp;
        }
    }
    (n, exp)
}

macro_rules! java_float {
    ($name:ident, $t:ty) => {
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
            let mut s = Stack {
                buf: [0; 48],
                len: 0,
            };
            let _ = write!(s, "{:e}", x.abs());
            let mut digits = [0u8; 48];
            let (n, exp) = split_sci(&s.buf[..s.len], &mut digits);
            java_layout(out, x.is_sign_negative(), &digits[..n.max(1)], exp);
        }
    };
}

java_float!(java_f64, f64);
java_float!(java_f32, f32);

/// Writes an integer in decimal.
pub fn int(out: &mut Vec<u8>, x: impl std::fmt::Display) {
    let _ = write!(out, "{x}");
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
        Value::ScalarShort(x) | Value::ScalarEnum(x) => int(out, x),
        Value::ScalarFloat(x) => java_f32(out, *x),
        Value::ScalarByte(x) => int(out, x),
        Value::ScalarInt(x) => int(out, x),
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
