//! The sample model: a value of one of the 15 types, its time, alarm and field values, and
//! the `PayloadInfo` header of a file or chunk.

use crate::time::Timestamp;
use crate::types::PayloadType;

/// A `name=value` pair: a field value of a sample (`cnxlostepsecs`, `HIHI`, ...) or a
/// header of a `PayloadInfo` (`EGU`, `PREC`, ...). Proto message `FieldValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldValue {
    /// Field name.
    pub name: String,
    /// Field value, always text.
    pub val: String,
}

impl FieldValue {
    /// A field value from anything string-like.
    pub fn new(name: impl Into<String>, val: impl Into<String>) -> Self {
        FieldValue {
            name: name.into(),
            val: val.into(),
        }
    }
}

/// The value of a sample. The variant decides the payload type.
///
/// Shorts and enums are `i16` as in Java (`Short`); a wider number on the wire is cut to
/// 16 bits as Java's cast does. Unsigned CA types are stored signed, as in Java.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `ScalarString`.
    ScalarString(String),
    /// `ScalarShort`.
    ScalarShort(i16),
    /// `ScalarFloat`.
    ScalarFloat(f32),
    /// `ScalarEnum` (index).
    ScalarEnum(i16),
    /// `ScalarByte`.
    ScalarByte(i8),
    /// `ScalarInt`.
    ScalarInt(i32),
    /// `ScalarDouble`.
    ScalarDouble(f64),
    /// `VectorString`.
    VectorString(Vec<String>),
    /// `VectorShort`.
    VectorShort(Vec<i16>),
    /// `VectorFloat`.
    VectorFloat(Vec<f32>),
    /// `VectorEnum`.
    VectorEnum(Vec<i16>),
    /// `VectorChar`: the bytes of a char waveform.
    VectorChar(Vec<u8>),
    /// `VectorInt`.
    VectorInt(Vec<i32>),
    /// `VectorDouble`.
    VectorDouble(Vec<f64>),
    /// `V4GenericBytes`: a serialized pvAccess structure.
    V4GenericBytes(Vec<u8>),
}

impl Value {
    /// The payload type this value is stored as.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Value::ScalarString(_) => PayloadType::ScalarString,
            Value::ScalarShort(_) => PayloadType::ScalarShort,
            Value::ScalarFloat(_) => PayloadType::ScalarFloat,
            Value::ScalarEnum(_) => PayloadType::ScalarEnum,
            Value::ScalarByte(_) => PayloadType::ScalarByte,
            Value::ScalarInt(_) => PayloadType::ScalarInt,
            Value::ScalarDouble(_) => PayloadType::ScalarDouble,
            Value::VectorString(_) => PayloadType::WaveformString,
            Value::VectorShort(_) => PayloadType::WaveformShort,
            Value::VectorFloat(_) => PayloadType::WaveformFloat,
            Value::VectorEnum(_) => PayloadType::WaveformEnum,
            Value::VectorChar(_) => PayloadType::WaveformByte,
            Value::VectorInt(_) => PayloadType::WaveformInt,
            Value::VectorDouble(_) => PayloadType::WaveformDouble,
            Value::V4GenericBytes(_) => PayloadType::V4GenericBytes,
        }
    }

    /// The zero (or empty) value of a type.
    pub fn zero(t: PayloadType) -> Value {
        match t {
            PayloadType::ScalarString => Value::ScalarString(String::new()),
            PayloadType::ScalarShort => Value::ScalarShort(0),
            PayloadType::ScalarFloat => Value::ScalarFloat(0.0),
            PayloadType::ScalarEnum => Value::ScalarEnum(0),
            PayloadType::ScalarByte => Value::ScalarByte(0),
            PayloadType::ScalarInt => Value::ScalarInt(0),
            PayloadType::ScalarDouble => Value::ScalarDouble(0.0),
            PayloadType::WaveformString => Value::VectorString(Vec::new()),
            PayloadType::WaveformShort => Value::VectorShort(Vec::new()),
            PayloadType::WaveformFloat => Value::VectorFloat(Vec::new()),
            PayloadType::WaveformEnum => Value::VectorEnum(Vec::new()),
            PayloadType::WaveformByte => Value::VectorChar(Vec::new()),
            PayloadType::WaveformInt => Value::VectorInt(Vec::new()),
            PayloadType::WaveformDouble => Value::VectorDouble(Vec::new()),
            PayloadType::V4GenericBytes => Value::V4GenericBytes(Vec::new()),
        }
    }

    /// The number of elements: 1 for scalars, the length for vectors and bytes.
    pub fn element_count(&self) -> usize {
        match self {
            Value::VectorString(v) => v.len(),
            Value::VectorShort(v) | Value::VectorEnum(v) => v.len(),
            Value::VectorFloat(v) => v.len(),
            Value::VectorChar(v) | Value::V4GenericBytes(v) => v.len(),
            Value::VectorInt(v) => v.len(),
            Value::VectorDouble(v) => v.len(),
            _ => 1,
        }
    }
}

/// One archived sample: one line of a PlainPB file.
///
/// The time is absolute here; on the wire it is seconds into the file's year plus nanos.
#[derive(Debug, PartialEq)]
pub struct Sample {
    /// When the value was taken (IOC time).
    pub time: Timestamp,
    /// The value.
    pub value: Value,
    /// EPICS alarm severity (0 = NO_ALARM); written only when non-zero.
    pub severity: i32,
    /// EPICS alarm status (0 = NO_ALARM); written only when non-zero.
    pub status: i32,
    /// `repeatcount`, reserved; the engine never sets it.
    pub repeat_count: Option<u32>,
    /// Field values attached to this sample (connection annotations, archive fields).
    pub field_values: Vec<FieldValue>,
    /// `fieldactualchange`: true when the field values changed, false for the daily dump.
    pub field_actual_change: Option<bool>,
    /// `userTag` of pvAccess (only meaningful for `V4GenericBytes`).
    pub user_tag: Option<u32>,
}

impl Clone for Sample {
    fn clone(&self) -> Self {
        Sample {
            time: self.time,
            value: self.value.clone(),
            severity: self.severity,
            status: self.status,
            repeat_count: self.repeat_count,
            field_values: self.field_values.clone(),
            field_actual_change: self.field_actual_change,
            user_tag: self.user_tag,
        }
    }

    /// Copies `src` into `self`, reusing `self`'s allocations. Written by hand (the
    /// derived one clones a whole new sample and drops the old): a numeric scalar without
    /// field values, the common sample, is a copy of a few words (the retrieval's reading
    /// thread hands every sample over this way; perf showed the derived copy as the
    /// largest cost of a post-processed year).
    #[inline]
    fn clone_from(&mut self, src: &Self) {
        self.time = src.time;
        match src.value {
            Value::ScalarDouble(x) => self.value = Value::ScalarDouble(x),
            Value::ScalarFloat(x) => self.value = Value::ScalarFloat(x),
            Value::ScalarInt(x) => self.value = Value::ScalarInt(x),
            Value::ScalarShort(x) => self.value = Value::ScalarShort(x),
            Value::ScalarEnum(x) => self.value = Value::ScalarEnum(x),
            Value::ScalarByte(x) => self.value = Value::ScalarByte(x),
            _ => self.value.clone_from(&src.value),
        }
        self.severity = src.severity;
        self.status = src.status;
        self.repeat_count = src.repeat_count;
        if !(self.field_values.is_empty() && src.field_values.is_empty()) {
            self.field_values.clone_from(&src.field_values);
        }
        self.field_actual_change = src.field_actual_change;
        self.user_tag = src.user_tag;
    }
}

impl Sample {
    /// A sample with no alarm and no field values.
    pub fn new(time: Timestamp, value: Value) -> Self {
        Sample {
            time,
            value,
            severity: 0,
            status: 0,
            repeat_count: None,
            field_values: Vec::new(),
            field_actual_change: None,
            user_tag: None,
        }
    }

    /// The value of the field value `name`, if present.
    pub fn field_value(&self, name: &str) -> Option<&str> {
        self.field_values
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.val.as_str())
    }
}

/// The header of a PlainPB file or of a pbraw chunk (proto message `PayloadInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadInfo {
    /// The type of every sample that follows.
    pub payload_type: PayloadType,
    /// The PV name.
    pub pv_name: String,
    /// The UTC year every sample that follows falls in.
    pub year: i32,
    /// Element count; set in pbraw responses, not by the file writer.
    pub element_count: Option<i32>,
    /// Headers (`EGU`, `PREC`, ...); set in pbraw responses, optional in files.
    pub headers: Vec<FieldValue>,
}

impl PayloadInfo {
    /// The header the file writer writes: type, PV name and year only.
    pub fn new(payload_type: PayloadType, pv_name: impl Into<String>, year: i32) -> Self {
        PayloadInfo {
            payload_type,
            pv_name: pv_name.into(),
            year,
            element_count: None,
            headers: Vec::new(),
        }
    }

    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.val.as_str())
    }
}
