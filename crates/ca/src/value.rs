//! Decoded values: [`Value`] (inline scalars, arrays in `Vec`), [`CaString`] (inline
//! 40-byte string), [`Timestamp`] (Unix seconds + ns), [`Meta`] (GR/CTRL metadata) and
//! [`Dbr`] (one decoded DBR payload).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::dbr::DbfType;
use crate::error::DecodeError;

/// Seconds from the POSIX epoch to the EPICS epoch (1990-01-01 UTC).
pub const EPICS_EPOCH_OFFSET: i64 = 631_152_000;

/// Maximum length of a DBR string field, including the terminating NUL.
pub const MAX_STRING_SIZE: usize = 40;

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary
/// (a fixed-size CA text field never ends in half a character).
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    let mut n = text.len().min(max);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    &text[..n]
}

/// A DBR string held inline (no heap allocation): up to 40 bytes, no NUL.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaString {
    len: u8,
    buf: [u8; MAX_STRING_SIZE],
}

impl CaString {
    /// The empty string.
    pub const EMPTY: CaString = CaString {
        len: 0,
        buf: [0; MAX_STRING_SIZE],
    };

    /// From a `char[40]` field: bytes up to the first NUL or the field end.
    pub fn from_field(field: &[u8]) -> Self {
        let field = &field[..field.len().min(MAX_STRING_SIZE)];
        let n = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        let mut s = Self::EMPTY;
        s.buf[..n].copy_from_slice(&field[..n]);
        s.len = n as u8;
        s
    }

    /// From text, truncated to 39 bytes (room for the NUL that writers must send), on a
    /// character boundary.
    pub fn new(text: &str) -> Self {
        Self::from_field(truncate_utf8(text, MAX_STRING_SIZE - 1).as_bytes())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The text (lossy for invalid UTF-8).
    pub fn to_str_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }

    /// The whole 40-byte field, NUL padded, as written on the wire.
    pub fn field(&self) -> &[u8; MAX_STRING_SIZE] {
        &self.buf
    }
}

impl fmt::Display for CaString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_str_lossy())
    }
}

impl fmt::Debug for CaString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_str_lossy(), f)
    }
}

/// A time stamp as Unix seconds and nanoseconds (converted from the EPICS epoch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since 1970-01-01 UTC.
    pub secs: i64,
    /// Nanoseconds within the second, as sent (0…999 999 999 for valid stamps).
    pub nanos: u32,
}

impl Timestamp {
    /// From an `epicsTimeStamp` (seconds past 1990, nanoseconds).
    pub const fn from_epics(sec_past_epoch: u32, nsec: u32) -> Self {
        Timestamp {
            secs: sec_past_epoch as i64 + EPICS_EPOCH_OFFSET,
            nanos: nsec,
        }
    }

    /// To an `epicsTimeStamp`; times before 1990 map to 0, after 2106 saturate.
    pub fn to_epics(self) -> (u32, u32) {
        let s = (self.secs - EPICS_EPOCH_OFFSET).clamp(0, i64::from(u32::MAX));
        (s as u32, self.nanos)
    }

    /// From a system time (times before 1970 map to 0).
    pub fn from_system(t: SystemTime) -> Self {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }

    /// The current time.
    pub fn now() -> Self {
        Self::from_system(SystemTime::now())
    }

    /// As a system time (negative seconds clamp to the Unix epoch).
    pub fn to_system(self) -> SystemTime {
        UNIX_EPOCH + Duration::new(self.secs.max(0) as u64, self.nanos.min(999_999_999))
    }

    /// Seconds as a float.
    pub fn as_f64(self) -> f64 {
        self.secs as f64 + f64::from(self.nanos) * 1e-9
    }
}

/// A decoded value: scalars inline, arrays in a `Vec`.
///
/// A value is a scalar when the channel's native count is 1 and one element arrived;
/// otherwise it is an array (possibly with 0 or 1 elements).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// DBF_STRING scalar.
    String(CaString),
    /// DBF_SHORT scalar.
    Short(i16),
    /// DBF_FLOAT scalar.
    Float(f32),
    /// DBF_ENUM scalar (state index).
    Enum(u16),
    /// DBF_CHAR scalar.
    Char(u8),
    /// DBF_LONG scalar.
    Long(i32),
    /// DBF_DOUBLE scalar.
    Double(f64),
    /// DBF_STRING array.
    StringArray(Vec<CaString>),
    /// DBF_SHORT array.
    ShortArray(Vec<i16>),
    /// DBF_FLOAT array.
    FloatArray(Vec<f32>),
    /// DBF_ENUM array.
    EnumArray(Vec<u16>),
    /// DBF_CHAR array (waveforms of bytes, long strings).
    CharArray(Vec<u8>),
    /// DBF_LONG array.
    LongArray(Vec<i32>),
    /// DBF_DOUBLE array.
    DoubleArray(Vec<f64>),
}

macro_rules! each_array {
    ($v:expr, $a:ident => $e:expr) => {
        match $v {
            Value::StringArray($a) => $e,
            Value::ShortArray($a) => $e,
            Value::FloatArray($a) => $e,
            Value::EnumArray($a) => $e,
            Value::CharArray($a) => $e,
            Value::LongArray($a) => $e,
            Value::DoubleArray($a) => $e,
            _ => unreachable!("each_array on scalar"),
        }
    };
}

impl Value {
    /// The field type of the elements.
    pub fn field_type(&self) -> DbfType {
        match self {
            Value::String(_) | Value::StringArray(_) => DbfType::String,
            Value::Short(_) | Value::ShortArray(_) => DbfType::Short,
            Value::Float(_) | Value::FloatArray(_) => DbfType::Float,
            Value::Enum(_) | Value::EnumArray(_) => DbfType::Enum,
            Value::Char(_) | Value::CharArray(_) => DbfType::Char,
            Value::Long(_) | Value::LongArray(_) => DbfType::Long,
            Value::Double(_) | Value::DoubleArray(_) => DbfType::Double,
        }
    }

    /// Whether this is an array variant.
    pub fn is_array(&self) -> bool {
        matches!(
            self,
            Value::StringArray(_)
                | Value::ShortArray(_)
                | Value::FloatArray(_)
                | Value::EnumArray(_)
                | Value::CharArray(_)
                | Value::LongArray(_)
                | Value::DoubleArray(_)
        )
    }

    /// Number of elements (1 for scalars).
    pub fn len(&self) -> usize {
        if self.is_array() {
            each_array!(self, a => a.len())
        } else {
            1
        }
    }

    /// Whether this is an empty array.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as `f64` (strings parse; unparsable strings and out-of-range give `None`).
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        let parse = |s: &CaString| s.to_str_lossy().trim().parse::<f64>().ok();
        match self {
            Value::String(s) if i == 0 => parse(s),
            Value::Short(v) if i == 0 => Some(f64::from(*v)),
            Value::Float(v) if i == 0 => Some(f64::from(*v)),
            Value::Enum(v) if i == 0 => Some(f64::from(*v)),
            Value::Char(v) if i == 0 => Some(f64::from(*v)),
            Value::Long(v) if i == 0 => Some(f64::from(*v)),
            Value::Double(v) if i == 0 => Some(*v),
            Value::StringArray(a) => a.get(i).and_then(parse),
            Value::ShortArray(a) => a.get(i).map(|v| f64::from(*v)),
            Value::FloatArray(a) => a.get(i).map(|v| f64::from(*v)),
            Value::EnumArray(a) => a.get(i).map(|v| f64::from(*v)),
            Value::CharArray(a) => a.get(i).map(|v| f64::from(*v)),
            Value::LongArray(a) => a.get(i).map(|v| f64::from(*v)),
            Value::DoubleArray(a) => a.get(i).copied(),
            _ => None,
        }
    }

    /// Element `i` as text (enum indices map through `labels` when given).
    pub fn get_string(&self, i: usize, labels: &[String]) -> Option<String> {
        match self {
            Value::String(s) if i == 0 => Some(s.to_string()),
            Value::StringArray(a) => a.get(i).map(|s| s.to_string()),
            Value::Enum(v) if i == 0 => Some(enum_label(*v, labels)),
            Value::EnumArray(a) => a.get(i).map(|v| enum_label(*v, labels)),
            Value::Float(_) | Value::FloatArray(_) => {
                self.get_f64(i).map(|f| format!("{}", f as f32))
            }
            _ => self.get_f64(i).map(|f| format!("{f}")),
        }
    }

    /// Converts to another field type (numeric casts saturate as C would for in-range
    /// values; strings parse; enums format through `labels`). `array` chooses the
    /// array variant even for one element.
    pub fn convert(
        &self,
        to: DbfType,
        labels: &[String],
        array: bool,
    ) -> Result<Value, DecodeError> {
        let n = self.len();
        let fail = || DecodeError::Conversion {
            from: self.field_type().name(),
            to: to.name(),
        };
        if to == self.field_type() && array == self.is_array() {
            return Ok(self.clone());
        }
        let num = |i: usize| -> Result<f64, DecodeError> {
            if let (DbfType::String, DbfType::Enum) = (self.field_type(), to) {
                let s = self.get_string(i, labels).ok_or_else(fail)?;
                if let Some(p) = labels.iter().position(|l| *l == s) {
                    return Ok(p as f64);
                }
            }
            self.get_f64(i).ok_or_else(fail)
        };
        let out = match to {
            DbfType::String => Value::StringArray(
                (0..n)
                    .map(|i| {
                        self.get_string(i, labels)
                            .map(|s| CaString::new(&s))
                            .ok_or_else(fail)
                    })
                    .collect::<Result<_, _>>()?,
            ),
            DbfType::Short => Value::ShortArray(
                (0..n)
                    .map(|i| num(i).map(|f| f as i16))
                    .collect::<Result<_, _>>()?,
            ),
            DbfType::Float => Value::FloatArray(
                (0..n)
                    .map(|i| num(i).map(|f| f as f32))
                    .collect::<Result<_, _>>()?,
            ),
            DbfType::Enum => Value::EnumArray(
                (0..n)
                    .map(|i| num(i).map(|f| f as u16))
                    .collect::<Result<_, _>>()?,
            ),
            DbfType::Char => Value::CharArray(
                (0..n)
                    .map(|i| num(i).map(|f| f as u8))
                    .collect::<Result<_, _>>()?,
            ),
            DbfType::Long => Value::LongArray(
                (0..n)
                    .map(|i| num(i).map(|f| f as i32))
                    .collect::<Result<_, _>>()?,
            ),
            DbfType::Double => Value::DoubleArray((0..n).map(num).collect::<Result<_, _>>()?),
        };
        Ok(if array || n != 1 {
            out
        } else {
            out.into_scalar()
        })
    }

    /// Turns a one-element array into the scalar variant (other values unchanged).
    pub fn into_scalar(self) -> Value {
        match self {
            Value::StringArray(a) if a.len() == 1 => Value::String(a[0]),
            Value::ShortArray(a) if a.len() == 1 => Value::Short(a[0]),
            Value::FloatArray(a) if a.len() == 1 => Value::Float(a[0]),
            Value::EnumArray(a) if a.len() == 1 => Value::Enum(a[0]),
            Value::CharArray(a) if a.len() == 1 => Value::Char(a[0]),
            Value::LongArray(a) if a.len() == 1 => Value::Long(a[0]),
            Value::DoubleArray(a) if a.len() == 1 => Value::Double(a[0]),
            v => v,
        }
    }

    /// Turns a scalar into a one-element array (arrays unchanged).
    pub fn into_array(self) -> Value {
        match self {
            Value::String(v) => Value::StringArray(vec![v]),
            Value::Short(v) => Value::ShortArray(vec![v]),
            Value::Float(v) => Value::FloatArray(vec![v]),
            Value::Enum(v) => Value::EnumArray(vec![v]),
            Value::Char(v) => Value::CharArray(vec![v]),
            Value::Long(v) => Value::LongArray(vec![v]),
            Value::Double(v) => Value::DoubleArray(vec![v]),
            v => v,
        }
    }

    /// An array of `n` elements: truncated, or zero-filled beyond the current length
    /// (what a server sends for a requested count larger than the PV's length).
    pub fn resized(&self, n: usize) -> Value {
        let mut a = self.clone().into_array();
        match &mut a {
            Value::StringArray(v) => v.resize(n, CaString::EMPTY),
            Value::ShortArray(v) => v.resize(n, 0),
            Value::FloatArray(v) => v.resize(n, 0.0),
            Value::EnumArray(v) => v.resize(n, 0),
            Value::CharArray(v) => v.resize(n, 0),
            Value::LongArray(v) => v.resize(n, 0),
            Value::DoubleArray(v) => v.resize(n, 0.0),
            _ => {}
        }
        a
    }
}

fn enum_label(v: u16, labels: &[String]) -> String {
    match labels.get(usize::from(v)) {
        Some(l) => l.clone(),
        None => v.to_string(),
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_array() {
            return match self.get_string(0, &[]) {
                Some(s) => f.write_str(&s),
                None => Ok(()),
            };
        }
        write!(f, "[")?;
        for i in 0..self.len() {
            if i > 0 {
                write!(f, ", ")?;
            }
            if let Some(s) = self.get_string(i, &[]) {
                f.write_str(&s)?;
            }
        }
        write!(f, "]")
    }
}

/// Display, alarm and control limits (as `f64` whatever the native type).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// Upper display limit (HOPR).
    pub upper_disp: f64,
    /// Lower display limit (LOPR).
    pub lower_disp: f64,
    /// Upper alarm limit (HIHI).
    pub upper_alarm: f64,
    /// Upper warning limit (HIGH).
    pub upper_warning: f64,
    /// Lower warning limit (LOW).
    pub lower_warning: f64,
    /// Lower alarm limit (LOLO).
    pub lower_alarm: f64,
    /// Upper control limit (DRVH); CTRL class only, 0 otherwise.
    pub upper_ctrl: f64,
    /// Lower control limit (DRVL); CTRL class only, 0 otherwise.
    pub lower_ctrl: f64,
}

impl Limits {
    /// The limits in wire order (display, alarm, warning…, control).
    pub fn as_array(&self) -> [f64; 8] {
        [
            self.upper_disp,
            self.lower_disp,
            self.upper_alarm,
            self.upper_warning,
            self.lower_warning,
            self.lower_alarm,
            self.upper_ctrl,
            self.lower_ctrl,
        ]
    }

    /// From the wire order.
    pub fn from_array(a: [f64; 8]) -> Self {
        Limits {
            upper_disp: a[0],
            lower_disp: a[1],
            upper_alarm: a[2],
            upper_warning: a[3],
            lower_warning: a[4],
            lower_alarm: a[5],
            upper_ctrl: a[6],
            lower_ctrl: a[7],
        }
    }
}

/// GR/CTRL metadata of a channel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    /// Engineering units (EGU); empty for enum and string.
    pub units: String,
    /// Display precision (PREC); float and double only, else 0.
    pub precision: i16,
    /// Limits; numeric types only.
    pub limits: Limits,
    /// Enum state labels; enum only.
    pub enum_strs: Vec<String>,
}

/// One decoded DBR payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Dbr {
    /// Alarm status (0 NO_ALARM …); 0 for the PLAIN class.
    pub status: u16,
    /// Alarm severity (0 NO_ALARM … 3 INVALID); 0 for the PLAIN class.
    pub severity: u16,
    /// Time stamp (TIME class only).
    pub stamp: Option<Timestamp>,
    /// The value.
    pub value: Value,
    /// Metadata (GR and CTRL classes only).
    pub meta: Option<Box<Meta>>,
}

impl Dbr {
    /// A value without alarm, time or metadata.
    pub fn plain(value: Value) -> Self {
        Dbr {
            status: 0,
            severity: 0,
            stamp: None,
            value,
            meta: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epics_epoch_conversion() {
        let t = Timestamp::from_epics(0x3FF3_6300, 500_000_000);
        assert_eq!(t.secs, 1_704_067_200);
        assert_eq!(t.nanos, 500_000_000);
        assert_eq!(t.to_epics(), (0x3FF3_6300, 500_000_000));
        assert_eq!(Timestamp { secs: 5, nanos: 0 }.to_epics(), (0, 0));
    }

    #[test]
    fn ca_string_truncates_and_stops_at_nul() {
        let long = "x".repeat(60);
        assert_eq!(CaString::new(&long).as_bytes().len(), 39);
        assert_eq!(CaString::from_field(&[b'a'; 50]).as_bytes().len(), 40);
        assert_eq!(CaString::from_field(b"ab\0cd").as_bytes(), b"ab");
        assert_eq!(CaString::new("é".repeat(30).as_str()).as_bytes().len(), 38);
    }

    #[test]
    fn value_is_small() {
        assert!(std::mem::size_of::<Value>() <= 48);
    }

    #[test]
    fn conversions() {
        let labels = vec!["OK".to_string(), "WARN".to_string()];
        let v = Value::Double(2.75);
        assert_eq!(v.convert(DbfType::Long, &[], false), Ok(Value::Long(2)));
        assert_eq!(
            v.convert(DbfType::String, &[], false),
            Ok(Value::String(CaString::new("2.75")))
        );
        assert_eq!(
            Value::Enum(1).convert(DbfType::String, &labels, false),
            Ok(Value::String(CaString::new("WARN")))
        );
        assert_eq!(
            Value::String(CaString::new("WARN")).convert(DbfType::Enum, &labels, false),
            Ok(Value::Enum(1))
        );
        assert!(
            Value::String(CaString::new("abc"))
                .convert(DbfType::Double, &[], false)
                .is_err()
        );
        assert_eq!(
            Value::Short(3).convert(DbfType::Double, &[], true),
            Ok(Value::DoubleArray(vec![3.0]))
        );
        assert_eq!(
            Value::LongArray(vec![1, 2]).resized(3),
            Value::LongArray(vec![1, 2, 0])
        );
        assert_eq!(Value::Double(1.0).to_string(), "1");
        assert_eq!(Value::ShortArray(vec![1, 2]).to_string(), "[1, 2]");
    }
}
