//! Channel Access values → PlainPB samples.
//!
//! The archived type follows the Java appliance (`JCA2ArchDBRType`): the native DBF type of
//! the channel, as a waveform when the native element count is above one.

use archiver_ca::{CaString, DbfType, Value as CaValue};
use archiver_pb::{PayloadType, Timestamp, Value};

/// The PlainPB type a channel of native type `native` and element count `count` is
/// archived as.
pub fn archived_type(native: DbfType, count: u32) -> PayloadType {
    let scalar = match native {
        DbfType::String => PayloadType::ScalarString,
        DbfType::Short => PayloadType::ScalarShort,
        DbfType::Float => PayloadType::ScalarFloat,
        DbfType::Enum => PayloadType::ScalarEnum,
        DbfType::Char => PayloadType::ScalarByte,
        DbfType::Long => PayloadType::ScalarInt,
        DbfType::Double => PayloadType::ScalarDouble,
    };
    if count > 1 {
        scalar.to_waveform()
    } else {
        scalar
    }
}

fn text(s: &CaString) -> String {
    s.to_str_lossy().into_owned()
}

/// Converts a CA value to a PlainPB value of type `ty`, or `None` when the value's type
/// does not match (a type change, counted by the caller). A scalar arriving for a waveform
/// type becomes a one-element waveform, and a one-element array for a scalar type its
/// element, as the count of an array channel can drop to one.
pub fn to_pb_value(v: &CaValue, ty: PayloadType) -> Option<Value> {
    use PayloadType as P;
    Some(match (v, ty) {
        (CaValue::String(s), P::ScalarString) => Value::ScalarString(text(s)),
        (CaValue::Short(x), P::ScalarShort) => Value::ScalarShort(*x),
        (CaValue::Float(x), P::ScalarFloat) => Value::ScalarFloat(*x),
        (CaValue::Enum(x), P::ScalarEnum) => Value::ScalarEnum(*x as i16),
        (CaValue::Char(x), P::ScalarByte) => Value::ScalarByte(*x as i8),
        (CaValue::Long(x), P::ScalarInt) => Value::ScalarInt(*x),
        (CaValue::Double(x), P::ScalarDouble) => Value::ScalarDouble(*x),
        (CaValue::StringArray(a), P::WaveformString) => {
            Value::VectorString(a.iter().map(text).collect())
        }
        (CaValue::ShortArray(a), P::WaveformShort) => Value::VectorShort(a.clone()),
        (CaValue::FloatArray(a), P::WaveformFloat) => Value::VectorFloat(a.clone()),
        (CaValue::EnumArray(a), P::WaveformEnum) => {
            Value::VectorEnum(a.iter().map(|x| *x as i16).collect())
        }
        (CaValue::CharArray(a), P::WaveformByte) => Value::VectorChar(a.clone()),
        (CaValue::LongArray(a), P::WaveformInt) => Value::VectorInt(a.clone()),
        (CaValue::DoubleArray(a), P::WaveformDouble) => Value::VectorDouble(a.clone()),
        // Scalar for a waveform type: a one-element waveform.
        (CaValue::String(s), P::WaveformString) => Value::VectorString(vec![text(s)]),
        (CaValue::Short(x), P::WaveformShort) => Value::VectorShort(vec![*x]),
        (CaValue::Float(x), P::WaveformFloat) => Value::VectorFloat(vec![*x]),
        (CaValue::Enum(x), P::WaveformEnum) => Value::VectorEnum(vec![*x as i16]),
        (CaValue::Char(x), P::WaveformByte) => Value::VectorChar(vec![*x]),
        (CaValue::Long(x), P::WaveformInt) => Value::VectorInt(vec![*x]),
        (CaValue::Double(x), P::WaveformDouble) => Value::VectorDouble(vec![*x]),
        // One-element array for a scalar type: its element.
        (a, t) if a.is_array() && a.len() == 1 && t.is_scalar() => {
            return to_pb_value(&a.clone().into_scalar(), t);
        }
        _ => return None,
    })
}

/// A CA timestamp as a PlainPB timestamp (both Unix seconds + nanoseconds).
pub fn to_pb_time(t: archiver_ca::Timestamp) -> Timestamp {
    Timestamp::new(t.secs, t.nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_type_mapping() {
        assert_eq!(archived_type(DbfType::Double, 1), PayloadType::ScalarDouble);
        assert_eq!(
            archived_type(DbfType::Double, 16),
            PayloadType::WaveformDouble
        );
        assert_eq!(archived_type(DbfType::Char, 64), PayloadType::WaveformByte);
        assert_eq!(archived_type(DbfType::Long, 1), PayloadType::ScalarInt);
        assert_eq!(archived_type(DbfType::Enum, 1), PayloadType::ScalarEnum);
        assert_eq!(archived_type(DbfType::String, 1), PayloadType::ScalarString);
    }

    #[test]
    fn values_convert_and_type_changes_are_refused() {
        assert_eq!(
            to_pb_value(&CaValue::Double(1.5), PayloadType::ScalarDouble),
            Some(Value::ScalarDouble(1.5))
        );
        assert_eq!(
            to_pb_value(&CaValue::Enum(3), PayloadType::ScalarEnum),
            Some(Value::ScalarEnum(3))
        );
        assert_eq!(
            to_pb_value(
                &CaValue::String(CaString::new("ab")),
                PayloadType::ScalarString
            ),
            Some(Value::ScalarString("ab".into()))
        );
        assert_eq!(
            to_pb_value(
                &CaValue::DoubleArray(vec![1.0, 2.0]),
                PayloadType::WaveformDouble
            ),
            Some(Value::VectorDouble(vec![1.0, 2.0]))
        );
        assert_eq!(
            to_pb_value(&CaValue::Double(2.0), PayloadType::WaveformDouble),
            Some(Value::VectorDouble(vec![2.0]))
        );
        assert_eq!(
            to_pb_value(&CaValue::Long(1), PayloadType::ScalarDouble),
            None
        );
        assert_eq!(
            to_pb_value(
                &CaValue::DoubleArray(vec![1.0, 2.0]),
                PayloadType::ScalarDouble
            ),
            None
        );
    }
}
