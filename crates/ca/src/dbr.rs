//! DBR type numbering and struct layouts (fact sheet §3).
//!
//! A DBR type is a (class, native field type) pair: id = 7·class + field type for the 35
//! types 0–34. Each layout is a fixed prefix (status, severity, time stamp, units,
//! limits, …, with alignment pads) followed by `count` big-endian value elements; only
//! the value repeats.

use std::fmt;

use crate::error::DecodeError;

/// Native field type of a channel (DBF_*), also the value type of a DBR type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum DbfType {
    /// `char[40]` string.
    String = 0,
    /// `i16` (DBF_SHORT = DBF_INT).
    Short = 1,
    /// `f32`.
    Float = 2,
    /// `u16` enumerated state index.
    Enum = 3,
    /// `u8`.
    Char = 4,
    /// `i32`.
    Long = 5,
    /// `f64`.
    Double = 6,
}

impl DbfType {
    /// All field types in numbering order.
    pub const ALL: [DbfType; 7] = [
        DbfType::String,
        DbfType::Short,
        DbfType::Float,
        DbfType::Enum,
        DbfType::Char,
        DbfType::Long,
        DbfType::Double,
    ];

    /// Decodes a native type number (0–6).
    pub fn from_u16(v: u16) -> Result<Self, DecodeError> {
        Self::ALL
            .get(usize::from(v))
            .copied()
            .ok_or(DecodeError::UnknownFieldType(v))
    }

    /// Size of one value element in bytes.
    pub const fn element_size(self) -> usize {
        match self {
            DbfType::String => 40,
            DbfType::Short | DbfType::Enum => 2,
            DbfType::Float | DbfType::Long => 4,
            DbfType::Char => 1,
            DbfType::Double => 8,
        }
    }

    /// The EPICS name, e.g. `DBF_DOUBLE`.
    pub const fn name(self) -> &'static str {
        match self {
            DbfType::String => "DBF_STRING",
            DbfType::Short => "DBF_SHORT",
            DbfType::Float => "DBF_FLOAT",
            DbfType::Enum => "DBF_ENUM",
            DbfType::Char => "DBF_CHAR",
            DbfType::Long => "DBF_LONG",
            DbfType::Double => "DBF_DOUBLE",
        }
    }
}

impl fmt::Display for DbfType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The class (structure family) of a DBR type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DbrClass {
    /// Value only.
    Plain = 0,
    /// Status and severity.
    Sts = 1,
    /// Status, severity, time stamp.
    Time = 2,
    /// Status, severity, units, precision, display/alarm limits (enum: labels).
    Gr = 3,
    /// GR plus control limits.
    Ctrl = 4,
}

impl DbrClass {
    const ALL: [DbrClass; 5] = [
        DbrClass::Plain,
        DbrClass::Sts,
        DbrClass::Time,
        DbrClass::Gr,
        DbrClass::Ctrl,
    ];

    /// The prefix of the EPICS name (`DBR_TIME_`, ...).
    const fn prefix(self) -> &'static str {
        match self {
            DbrClass::Plain => "DBR_",
            DbrClass::Sts => "DBR_STS_",
            DbrClass::Time => "DBR_TIME_",
            DbrClass::Gr => "DBR_GR_",
            DbrClass::Ctrl => "DBR_CTRL_",
        }
    }
}

/// Offset of the first value element, indexed `[class][field type]` (fact sheet §3.1).
const VALUE_OFFSET: [[usize; 7]; 5] = [
    [0, 0, 0, 0, 0, 0, 0],
    [4, 4, 4, 4, 5, 4, 8],
    [12, 14, 12, 14, 15, 12, 16],
    [4, 24, 40, 422, 19, 36, 64],
    [4, 28, 48, 422, 21, 44, 80],
];

/// A DBR type: class × native field type (ids 0–34).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DbrType {
    /// The structure family.
    pub class: DbrClass,
    /// The value type.
    pub field: DbfType,
}

impl DbrType {
    /// Builds a type from its parts.
    pub const fn new(class: DbrClass, field: DbfType) -> Self {
        DbrType { class, field }
    }

    /// `DBR_TIME_<field>`: what an archiver monitors.
    pub const fn time(field: DbfType) -> Self {
        Self::new(DbrClass::Time, field)
    }

    /// `DBR_CTRL_<field>`: the metadata read on connect.
    pub const fn ctrl(field: DbfType) -> Self {
        Self::new(DbrClass::Ctrl, field)
    }

    /// `DBR_<field>`: the bare value.
    pub const fn plain(field: DbfType) -> Self {
        Self::new(DbrClass::Plain, field)
    }

    /// Decodes a DBR type number (0–34).
    pub fn from_u16(id: u16) -> Result<Self, DecodeError> {
        if id > 34 {
            return Err(DecodeError::UnsupportedType(id));
        }
        let class = DbrClass::ALL[usize::from(id / 7)];
        let field = DbfType::ALL[usize::from(id % 7)];
        Ok(DbrType { class, field })
    }

    /// The DBR type number.
    pub const fn to_u16(self) -> u16 {
        self.class as u16 * 7 + self.field as u16
    }

    /// Offset of the first value element in the payload.
    pub const fn value_offset(self) -> usize {
        VALUE_OFFSET[self.class as usize][self.field as usize]
    }

    /// Unpadded payload size for `count` elements; `None` on overflow.
    pub fn payload_len(self, count: usize) -> Option<usize> {
        count
            .checked_mul(self.field.element_size())?
            .checked_add(self.value_offset())
    }

    /// Element count whose payload fits in `bytes` (how many elements a limit allows).
    pub const fn max_count(self, bytes: usize) -> usize {
        bytes.saturating_sub(self.value_offset()) / self.field.element_size()
    }
}

impl fmt::Display for DbrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field.name()[4..];
        write!(f, "{}{}", self.class.prefix(), field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_roundtrip() {
        for id in 0..=34u16 {
            let t = DbrType::from_u16(id).expect("valid id");
            assert_eq!(t.to_u16(), id);
        }
        assert!(DbrType::from_u16(35).is_err());
        assert_eq!(DbrType::time(DbfType::Double).to_u16(), 20);
        assert_eq!(DbrType::ctrl(DbfType::Enum).to_u16(), 31);
        assert_eq!(
            DbrType::time(DbfType::Double).to_string(),
            "DBR_TIME_DOUBLE"
        );
    }

    /// `sizeof(struct)` per id from db_access.h (fact sheet §3.1) = payload_len(1).
    #[test]
    fn struct_sizes_match_db_access() {
        let sizes: [usize; 35] = [
            40, 2, 4, 2, 1, 4, 8, //
            44, 6, 8, 6, 6, 8, 16, //
            52, 16, 16, 16, 16, 16, 24, //
            44, 26, 44, 424, 20, 40, 72, //
            44, 30, 52, 424, 22, 48, 88,
        ];
        for (id, want) in sizes.iter().enumerate() {
            let t = DbrType::from_u16(id as u16).expect("valid");
            assert_eq!(t.payload_len(1), Some(*want), "{t}");
        }
    }

    #[test]
    fn array_sizes_from_fact_sheet() {
        assert_eq!(DbrType::time(DbfType::Short).payload_len(5), Some(24));
        assert_eq!(DbrType::time(DbfType::Char).payload_len(3), Some(18));
        assert_eq!(DbrType::plain(DbfType::String).payload_len(2), Some(80));
        assert_eq!(
            DbrType::plain(DbfType::Double).payload_len(usize::MAX),
            None
        );
        assert_eq!(DbrType::time(DbfType::Double).max_count(16 + 80), 10);
    }
}
