//! Channel Access and pvAccess values → PlainPB samples.
//!
//! CA: the archived type follows the Java appliance (`JCA2ArchDBRType`): the native DBF
//! type of the channel, as a waveform when the native element count is above one.
//!
//! PVA ([`pva_archived_type`], [`pva_to_pb_value`]): as Java's
//! `EPICS_V4_PV.determineDBRType`, by the type of the structure's `value` member:
//! `double|float|int|uint|short|ushort|byte|ubyte|string` and their arrays map to the
//! CA-equivalent scalar and waveform types (unsigned values are stored with the same bits,
//! signed, as Java does), an `enum_t` structure to SCALAR_ENUM (its index), and 64-bit
//! integers, booleans, other structures and a missing `value` to V4_GENERIC_BYTES, whose
//! bytes are the pvData serialization of the type description then the whole value,
//! big-endian (Java: `PBV4GenericBytes`, a `ByteBuffer` in its default byte order).

use archiver_ca::{CaString, DbfType, Value as CaValue};
use archiver_pb::{PayloadType, Timestamp, Value};
use archiver_pva::{FieldDesc, PvValue, ScalarType};

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

/// The PlainPB type of a PVA value whose archived member (`value`, or the member a
/// field PV names) has type `value`; `None` (no such member) gives V4_GENERIC_BYTES.
pub fn pva_archived_type(value: Option<&FieldDesc>) -> PayloadType {
    use PayloadType as P;
    let scalar = |t: ScalarType| match t {
        ScalarType::F64 => Some(P::ScalarDouble),
        ScalarType::F32 => Some(P::ScalarFloat),
        ScalarType::I32 | ScalarType::U32 => Some(P::ScalarInt),
        ScalarType::I16 | ScalarType::U16 => Some(P::ScalarShort),
        ScalarType::I8 | ScalarType::U8 => Some(P::ScalarByte),
        ScalarType::String => Some(P::ScalarString),
        ScalarType::Bool | ScalarType::I64 | ScalarType::U64 => None,
    };
    match value {
        Some(FieldDesc::Scalar(t)) => scalar(*t).unwrap_or(P::V4GenericBytes),
        Some(FieldDesc::ScalarArray(t)) => scalar(*t).map_or(P::V4GenericBytes, P::to_waveform),
        Some(d) if archiver_pva::nt::is_enum(d) => P::ScalarEnum,
        _ => P::V4GenericBytes,
    }
}

/// The pvData serialization of `desc` then `value` (big-endian): a V4_GENERIC_BYTES value.
pub fn pva_generic_bytes(desc: &FieldDesc, value: &PvValue) -> Vec<u8> {
    let mut w = archiver_pva::wire::Writer::new(true);
    archiver_pva::types::encode_type(&mut w, desc);
    archiver_pva::value::encode_value(&mut w, desc, value);
    w.buf
}

/// Converts a PVA member (`desc`/`value`: the `value` member, or the member a field PV
/// names) to a PlainPB value of type `ty`; `whole` is what V4_GENERIC_BYTES serializes.
/// `None` when the value does not have the type (a type change, counted by the caller).
pub fn pva_to_pb_value(
    desc: Option<&FieldDesc>,
    value: Option<&PvValue>,
    ty: PayloadType,
    whole: (&FieldDesc, &PvValue),
) -> Option<Value> {
    use PayloadType as P;
    use PvValue as V;
    if ty == P::V4GenericBytes {
        return Some(Value::V4GenericBytes(pva_generic_bytes(whole.0, whole.1)));
    }
    let (desc, value) = (desc?, value?);
    if ty == P::ScalarEnum {
        let (i, _) = archiver_pva::nt::enum_value(desc, value)?;
        return Some(Value::ScalarEnum(i as i16));
    }
    // unsigned values keep their bits (Java's PVA ints are signed)
    Some(match (value, ty) {
        (V::F64(x), P::ScalarDouble) => Value::ScalarDouble(*x),
        (V::F32(x), P::ScalarFloat) => Value::ScalarFloat(*x),
        (V::I32(x), P::ScalarInt) => Value::ScalarInt(*x),
        (V::U32(x), P::ScalarInt) => Value::ScalarInt(*x as i32),
        (V::I16(x), P::ScalarShort) => Value::ScalarShort(*x),
        (V::U16(x), P::ScalarShort) => Value::ScalarShort(*x as i16),
        (V::I8(x), P::ScalarByte) => Value::ScalarByte(*x),
        (V::U8(x), P::ScalarByte) => Value::ScalarByte(*x as i8),
        (V::String(x), P::ScalarString) => Value::ScalarString(x.clone()),
        (V::F64Array(a), P::WaveformDouble) => Value::VectorDouble(a.clone()),
        (V::F32Array(a), P::WaveformFloat) => Value::VectorFloat(a.clone()),
        (V::I32Array(a), P::WaveformInt) => Value::VectorInt(a.clone()),
        (V::U32Array(a), P::WaveformInt) => Value::VectorInt(a.iter().map(|x| *x as i32).collect()),
        (V::I16Array(a), P::WaveformShort) => Value::VectorShort(a.clone()),
        (V::U16Array(a), P::WaveformShort) => {
            Value::VectorShort(a.iter().map(|x| *x as i16).collect())
        }
        (V::I8Array(a), P::WaveformByte) => Value::VectorChar(a.iter().map(|x| *x as u8).collect()),
        (V::U8Array(a), P::WaveformByte) => Value::VectorChar(a.clone()),
        (V::StringArray(a), P::WaveformString) => Value::VectorString(a.clone()),
        _ => return None,
    })
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
    fn pva_types_map_as_java_maps_them() {
        use std::sync::Arc;
        let s = |t| FieldDesc::Scalar(t);
        assert_eq!(
            pva_archived_type(Some(&s(ScalarType::F64))),
            PayloadType::ScalarDouble
        );
        assert_eq!(
            pva_archived_type(Some(&s(ScalarType::U32))),
            PayloadType::ScalarInt
        );
        assert_eq!(
            pva_archived_type(Some(&s(ScalarType::U8))),
            PayloadType::ScalarByte
        );
        assert_eq!(
            pva_archived_type(Some(&s(ScalarType::I64))),
            PayloadType::V4GenericBytes
        );
        assert_eq!(
            pva_archived_type(Some(&s(ScalarType::Bool))),
            PayloadType::V4GenericBytes
        );
        assert_eq!(
            pva_archived_type(Some(&FieldDesc::ScalarArray(ScalarType::F32))),
            PayloadType::WaveformFloat
        );
        assert_eq!(pva_archived_type(None), PayloadType::V4GenericBytes);
        let enum_t = FieldDesc::structure(
            "enum_t",
            vec![
                ("index".into(), Arc::new(s(ScalarType::I32))),
                (
                    "choices".into(),
                    Arc::new(FieldDesc::ScalarArray(ScalarType::String)),
                ),
            ],
        );
        assert_eq!(pva_archived_type(Some(&enum_t)), PayloadType::ScalarEnum);
        let ev = PvValue::Structure(vec![PvValue::I32(2), PvValue::StringArray(vec![])]);
        assert_eq!(
            pva_to_pb_value(
                Some(&enum_t),
                Some(&ev),
                PayloadType::ScalarEnum,
                (&enum_t, &ev)
            ),
            Some(Value::ScalarEnum(2))
        );
        let d = s(ScalarType::U16);
        assert_eq!(
            pva_to_pb_value(
                Some(&d),
                Some(&PvValue::U16(65535)),
                PayloadType::ScalarShort,
                (&d, &PvValue::U16(0))
            ),
            Some(Value::ScalarShort(-1))
        );
        assert_eq!(
            pva_to_pb_value(
                Some(&d),
                Some(&PvValue::F64(1.0)),
                PayloadType::ScalarShort,
                (&d, &PvValue::U16(0))
            ),
            None
        );
        // generic bytes: the big-endian type then value, decodable by our own codec
        let top = FieldDesc::structure("x_t", vec![("value".into(), Arc::new(s(ScalarType::I64)))]);
        let v = PvValue::Structure(vec![PvValue::I64(1)]);
        let Some(Value::V4GenericBytes(b)) =
            pva_to_pb_value(None, None, PayloadType::V4GenericBytes, (&top, &v))
        else {
            panic!()
        };
        assert_eq!(&b[..4], &[0x80, 3, b'x', b'_']);
        assert_eq!(&b[b.len() - 8..], &1i64.to_be_bytes());
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
