//! The 15 payload types of the Java appliance (`ArchDBRTypes` / proto `PayloadType`).

use std::fmt;
use std::str::FromStr;

/// The type of every sample in a PlainPB file, with the Java appliance's numbers (0..=14).
///
/// The number is what the `type` field of the file header holds; the name is what
/// `PVTypeInfo.DBRType` holds with a `DBR_` prefix (`DBR_SCALAR_DOUBLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PayloadType {
    /// `ScalarString`, from `DBR_TIME_STRING`.
    ScalarString = 0,
    /// `ScalarShort`, from `DBR_TIME_SHORT`.
    ScalarShort = 1,
    /// `ScalarFloat`, from `DBR_TIME_FLOAT`.
    ScalarFloat = 2,
    /// `ScalarEnum` (the index only), from `DBR_TIME_ENUM`.
    ScalarEnum = 3,
    /// `ScalarByte`, from `DBR_TIME_CHAR`.
    ScalarByte = 4,
    /// `ScalarInt` (32-bit), from `DBR_TIME_LONG`.
    ScalarInt = 5,
    /// `ScalarDouble`, from `DBR_TIME_DOUBLE`.
    ScalarDouble = 6,
    /// `VectorString`.
    WaveformString = 7,
    /// `VectorShort`.
    WaveformShort = 8,
    /// `VectorFloat`.
    WaveformFloat = 9,
    /// `VectorEnum`.
    WaveformEnum = 10,
    /// `VectorChar` (bytes).
    WaveformByte = 11,
    /// `VectorInt`.
    WaveformInt = 12,
    /// `VectorDouble`.
    WaveformDouble = 13,
    /// `V4GenericBytes`: a serialized pvAccess structure.
    V4GenericBytes = 14,
}

impl PayloadType {
    /// All types in number order.
    pub const ALL: [PayloadType; 15] = [
        PayloadType::ScalarString,
        PayloadType::ScalarShort,
        PayloadType::ScalarFloat,
        PayloadType::ScalarEnum,
        PayloadType::ScalarByte,
        PayloadType::ScalarInt,
        PayloadType::ScalarDouble,
        PayloadType::WaveformString,
        PayloadType::WaveformShort,
        PayloadType::WaveformFloat,
        PayloadType::WaveformEnum,
        PayloadType::WaveformByte,
        PayloadType::WaveformInt,
        PayloadType::WaveformDouble,
        PayloadType::V4GenericBytes,
    ];

    /// The Java number of this type (the `type` field of a file header).
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The type with the Java number `n`, if there is one.
    pub const fn from_number(n: i64) -> Option<PayloadType> {
        if n < 0 || n > 14 {
            return None;
        }
        Some(Self::ALL[n as usize])
    }

    /// The proto enum name, e.g. `SCALAR_DOUBLE`; with a `DBR_` prefix it is the
    /// `ArchDBRTypes` name used in `PVTypeInfo`.
    pub const fn name(self) -> &'static str {
        match self {
            PayloadType::ScalarString => "SCALAR_STRING",
            PayloadType::ScalarShort => "SCALAR_SHORT",
            PayloadType::ScalarFloat => "SCALAR_FLOAT",
            PayloadType::ScalarEnum => "SCALAR_ENUM",
            PayloadType::ScalarByte => "SCALAR_BYTE",
            PayloadType::ScalarInt => "SCALAR_INT",
            PayloadType::ScalarDouble => "SCALAR_DOUBLE",
            PayloadType::WaveformString => "WAVEFORM_STRING",
            PayloadType::WaveformShort => "WAVEFORM_SHORT",
            PayloadType::WaveformFloat => "WAVEFORM_FLOAT",
            PayloadType::WaveformEnum => "WAVEFORM_ENUM",
            PayloadType::WaveformByte => "WAVEFORM_BYTE",
            PayloadType::WaveformInt => "WAVEFORM_INT",
            PayloadType::WaveformDouble => "WAVEFORM_DOUBLE",
            PayloadType::V4GenericBytes => "V4_GENERIC_BYTES",
        }
    }

    /// True for the seven scalar types.
    pub const fn is_scalar(self) -> bool {
        (self as u8) <= 6
    }

    /// True for the waveform (vector) types; `V4GenericBytes` is neither.
    pub const fn is_waveform(self) -> bool {
        matches!(self as u8, 7..=13)
    }

    /// The waveform type for a scalar type (count > 1 on the CA side), or itself.
    pub const fn to_waveform(self) -> PayloadType {
        match self {
            PayloadType::ScalarString => PayloadType::WaveformString,
            PayloadType::ScalarShort => PayloadType::WaveformShort,
            PayloadType::ScalarFloat => PayloadType::WaveformFloat,
            PayloadType::ScalarEnum => PayloadType::WaveformEnum,
            PayloadType::ScalarByte => PayloadType::WaveformByte,
            PayloadType::ScalarInt => PayloadType::WaveformInt,
            PayloadType::ScalarDouble => PayloadType::WaveformDouble,
            other => other,
        }
    }
}

impl fmt::Display for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a payload type name that is not one of the 15.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown payload type {0:?} (expected e.g. SCALAR_DOUBLE or DBR_SCALAR_DOUBLE)")]
pub struct UnknownPayloadType(pub String);

impl FromStr for PayloadType {
    type Err = UnknownPayloadType;

    /// Parses `SCALAR_DOUBLE` or `DBR_SCALAR_DOUBLE` (the `PVTypeInfo.DBRType` spelling).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bare = s.strip_prefix("DBR_").unwrap_or(s);
        PayloadType::ALL
            .into_iter()
            .find(|t| t.name() == bare)
            .ok_or_else(|| UnknownPayloadType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_java() {
        for (i, t) in PayloadType::ALL.iter().enumerate() {
            assert_eq!(t.number() as usize, i);
            assert_eq!(PayloadType::from_number(i as i64), Some(*t));
        }
        assert_eq!(PayloadType::from_number(15), None);
        assert_eq!(PayloadType::from_number(-1), None);
        assert_eq!(PayloadType::ScalarDouble.number(), 6);
        assert_eq!(PayloadType::WaveformByte.number(), 11);
        assert_eq!(PayloadType::V4GenericBytes.number(), 14);
    }

    #[test]
    fn names_parse_back() {
        for t in PayloadType::ALL {
            assert_eq!(t.name().parse::<PayloadType>(), Ok(t));
            assert_eq!(format!("DBR_{t}").parse::<PayloadType>(), Ok(t));
        }
        assert!("DBR_SCALAR_LONG".parse::<PayloadType>().is_err());
    }

    #[test]
    fn scalar_and_waveform_classes() {
        let scalars = PayloadType::ALL.iter().filter(|t| t.is_scalar()).count();
        let waves = PayloadType::ALL.iter().filter(|t| t.is_waveform()).count();
        assert_eq!((scalars, waves), (7, 7));
        assert_eq!(
            PayloadType::ScalarEnum.to_waveform(),
            PayloadType::WaveformEnum
        );
        assert!(!PayloadType::V4GenericBytes.is_scalar());
    }
}
