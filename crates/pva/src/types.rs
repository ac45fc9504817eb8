//! pvData introspection: [`FieldDesc`] (a type description tree), its wire encoding, and
//! the per-connection [`TypeCache`] of the `0xFD id` / `0xFE id` references.
//!
//! Type codes (pvAccess spec, "Introspection data"): bits 7–5 the kind (000 boolean,
//! 001 integer, 010 floating point, 011 string, 100 complex), bits 4–3 the array kind
//! (00 scalar, 01 variable array, 10 bounded array, 11 fixed array), bits 2–0 the detail
//! (integers: bit 2 unsigned, bits 1–0 size; floats: 2 float, 3 double; complex: 0
//! structure, 1 union, 2 variant union, 3 bounded string). `0xFF` is null, `0xFE id` a
//! cached type, `0xFD id <type>` defines a cache entry, `0xFC id tag <type>` a tagged one.
//! Fixed-size arrays are deprecated and refused (as pvxs does); bounded arrays and bounded
//! strings are read as their unbounded forms.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::error::DecodeError;
use crate::wire::{Reader, Writer};

/// Deepest nesting of types (and values) accepted (pvxs uses 20).
pub const MAX_DEPTH: usize = 20;

/// Most type nodes a connection's cache may hold in total (a hostile server could
/// otherwise define 65536 huge types).
pub const MAX_CACHE_NODES: usize = 1 << 20;

/// A scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarType {
    /// `boolean`
    Bool,
    /// `byte`
    I8,
    /// `short`
    I16,
    /// `int`
    I32,
    /// `long`
    I64,
    /// `ubyte`
    U8,
    /// `ushort`
    U16,
    /// `uint`
    U32,
    /// `ulong`
    U64,
    /// `float`
    F32,
    /// `double`
    F64,
    /// `string`
    String,
}

impl ScalarType {
    /// The type code of the scalar (the array code adds 0x08).
    pub fn code(self) -> u8 {
        match self {
            ScalarType::Bool => 0x00,
            ScalarType::I8 => 0x20,
            ScalarType::I16 => 0x21,
            ScalarType::I32 => 0x22,
            ScalarType::I64 => 0x23,
            ScalarType::U8 => 0x24,
            ScalarType::U16 => 0x25,
            ScalarType::U32 => 0x26,
            ScalarType::U64 => 0x27,
            ScalarType::F32 => 0x42,
            ScalarType::F64 => 0x43,
            ScalarType::String => 0x60,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0x00 => ScalarType::Bool,
            0x20 => ScalarType::I8,
            0x21 => ScalarType::I16,
            0x22 => ScalarType::I32,
            0x23 => ScalarType::I64,
            0x24 => ScalarType::U8,
            0x25 => ScalarType::U16,
            0x26 => ScalarType::U32,
            0x27 => ScalarType::U64,
            0x42 => ScalarType::F32,
            0x43 => ScalarType::F64,
            0x60 | 0x83 => ScalarType::String,
            _ => return None,
        })
    }

    /// The pvData name (`double`, `ubyte`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ScalarType::Bool => "boolean",
            ScalarType::I8 => "byte",
            ScalarType::I16 => "short",
            ScalarType::I32 => "int",
            ScalarType::I64 => "long",
            ScalarType::U8 => "ubyte",
            ScalarType::U16 => "ushort",
            ScalarType::U32 => "uint",
            ScalarType::U64 => "ulong",
            ScalarType::F32 => "float",
            ScalarType::F64 => "double",
            ScalarType::String => "string",
        }
    }

    /// Smallest wire size of one element (strings: one size byte).
    pub fn min_size(self) -> usize {
        match self {
            ScalarType::Bool | ScalarType::I8 | ScalarType::U8 | ScalarType::String => 1,
            ScalarType::I16 | ScalarType::U16 => 2,
            ScalarType::I32 | ScalarType::U32 | ScalarType::F32 => 4,
            ScalarType::I64 | ScalarType::U64 | ScalarType::F64 => 8,
        }
    }
}

/// The members of a structure or union.
#[derive(Clone, Debug, PartialEq)]
pub struct StructDesc {
    /// The type id (`epics:nt/NTScalar:1.0`, or empty).
    pub id: String,
    /// The members, in wire order.
    pub fields: Vec<(String, Arc<FieldDesc>)>,
    /// Nodes of the tree below (counted once per reference, saturating): the cache budget.
    nodes: usize,
    /// Nesting depth of the tree below.
    depth: usize,
}

impl StructDesc {
    /// Members `fields` under type id `id`.
    pub fn new(id: &str, fields: Vec<(String, Arc<FieldDesc>)>) -> Self {
        let mut nodes = 1usize;
        let mut depth = 0;
        for (_, f) in &fields {
            nodes = nodes.saturating_add(f.nodes());
            depth = depth.max(f.depth());
        }
        StructDesc {
            id: id.to_string(),
            fields,
            nodes,
            depth: depth + 1,
        }
    }

    /// Index of member `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|(n, _)| n == name)
    }

    /// Member `name`.
    pub fn field(&self, name: &str) -> Option<&Arc<FieldDesc>> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }
}

/// A type description.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldDesc {
    /// A scalar.
    Scalar(ScalarType),
    /// An array of scalars.
    ScalarArray(ScalarType),
    /// A structure; `bits` is its size in bitset positions (1 + the members' bits).
    Structure {
        /// Members.
        desc: StructDesc,
        /// Bitset positions it spans.
        bits: usize,
    },
    /// A union of the listed members (one selected, or none).
    Union(StructDesc),
    /// A variant union (`any`): each value carries its own type.
    Any,
    /// An array of structures (elements of this structure type, each may be null).
    StructureArray(Arc<FieldDesc>),
    /// An array of unions of this type.
    UnionArray(Arc<FieldDesc>),
    /// An array of variant unions.
    AnyArray,
}

impl FieldDesc {
    /// A structure from its id and members (computes its bit span).
    pub fn structure(id: &str, fields: Vec<(String, Arc<FieldDesc>)>) -> FieldDesc {
        let bits = fields
            .iter()
            .fold(1usize, |a, (_, f)| a.saturating_add(f.bits()));
        FieldDesc::Structure {
            desc: StructDesc::new(id, fields),
            bits,
        }
    }

    /// Bitset positions this field spans (a structure: itself and all its descendants;
    /// anything else: one).
    pub fn bits(&self) -> usize {
        match self {
            FieldDesc::Structure { bits, .. } => *bits,
            _ => 1,
        }
    }

    /// The members when this is a structure.
    pub fn as_struct(&self) -> Option<&StructDesc> {
        match self {
            FieldDesc::Structure { desc, .. } => Some(desc),
            _ => None,
        }
    }

    /// The type id of a structure or union (empty otherwise).
    pub fn id(&self) -> &str {
        match self {
            FieldDesc::Structure { desc, .. } | FieldDesc::Union(desc) => &desc.id,
            _ => "",
        }
    }

    /// Number of nodes in this tree, counting a shared subtree once per reference
    /// (saturating; O(1)): the cache budget unit.
    pub fn nodes(&self) -> usize {
        match self {
            FieldDesc::Structure { desc, .. } | FieldDesc::Union(desc) => desc.nodes,
            FieldDesc::StructureArray(e) | FieldDesc::UnionArray(e) => e.nodes().saturating_add(1),
            _ => 1,
        }
    }

    /// Nesting depth (a scalar is 1; O(1)).
    pub fn depth(&self) -> usize {
        match self {
            FieldDesc::Structure { desc, .. } | FieldDesc::Union(desc) => desc.depth,
            FieldDesc::StructureArray(e) | FieldDesc::UnionArray(e) => e.depth() + 1,
            _ => 1,
        }
    }

    /// The pvData type name as `pvinfo` prints it (`double[]`, `structure`, ...).
    pub fn type_name(&self) -> String {
        match self {
            FieldDesc::Scalar(s) => s.name().to_string(),
            FieldDesc::ScalarArray(s) => format!("{}[]", s.name()),
            FieldDesc::Structure { desc, .. } if desc.id.is_empty() => "structure".into(),
            FieldDesc::Structure { desc, .. } => desc.id.clone(),
            FieldDesc::Union(d) if d.id.is_empty() => "union".into(),
            FieldDesc::Union(d) => d.id.clone(),
            FieldDesc::Any => "any".into(),
            FieldDesc::StructureArray(e) => format!("{}[]", e.type_name()),
            FieldDesc::UnionArray(e) => format!("{}[]", e.type_name()),
            FieldDesc::AnyArray => "any[]".into(),
        }
    }

    /// Follows a dotted path of structure members (`value.x`, `alarm.severity`); the
    /// empty path is `self`. Returns the member's description and its bit offset
    /// relative to `self`.
    pub fn lookup(&self, path: &str) -> Option<(&FieldDesc, usize)> {
        let mut cur = self;
        let mut offset = 0;
        if path.is_empty() {
            return Some((cur, 0));
        }
        for part in path.split('.') {
            let s = cur.as_struct()?;
            offset += 1;
            let mut found = None;
            for (name, f) in &s.fields {
                if name == part {
                    found = Some(f);
                    break;
                }
                offset += f.bits();
            }
            cur = found?;
        }
        Some((cur, offset))
    }

    fn fmt_tree(&self, f: &mut fmt::Formatter<'_>, name: &str, indent: usize) -> fmt::Result {
        writeln!(
            f,
            "{:indent$}{} {}",
            "",
            self.type_name(),
            name,
            indent = indent
        )?;
        let members = match self {
            FieldDesc::Structure { desc, .. } | FieldDesc::Union(desc) => Some(desc),
            FieldDesc::StructureArray(e) | FieldDesc::UnionArray(e) => match &**e {
                FieldDesc::Structure { desc, .. } | FieldDesc::Union(desc) => Some(desc),
                _ => None,
            },
            _ => None,
        };
        if let Some(d) = members {
            for (n, c) in &d.fields {
                c.fmt_tree(f, n, indent + 4)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for FieldDesc {
    /// The tree as `pvinfo` prints it: one member per line, indented by 4.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_tree(f, "", 0)
    }
}

/// The introspection cache of one connection (the ids the server defined with `0xFD`).
#[derive(Debug, Default)]
pub struct TypeCache {
    map: HashMap<u16, Arc<FieldDesc>>,
    nodes: usize,
}

impl TypeCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached types.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn insert(&mut self, id: u16, d: Arc<FieldDesc>) -> Result<(), DecodeError> {
        let n = d.nodes();
        let old = self.map.get(&id).map(|o| o.nodes()).unwrap_or(0);
        let total = self.nodes - old + n;
        if total > MAX_CACHE_NODES {
            return Err(DecodeError::Budget("introspection cache full"));
        }
        self.nodes = total;
        self.map.insert(id, d);
        Ok(())
    }
}

/// Decodes a type description; `None` for the null type (0xFF).
///
/// Errors: truncated input, unknown codes or cache ids, nesting beyond [`MAX_DEPTH`],
/// an exhausted node budget; never panics.
pub fn decode_type(
    r: &mut Reader<'_>,
    cache: &mut TypeCache,
) -> Result<Option<Arc<FieldDesc>>, DecodeError> {
    decode_type_at(r, cache, 0)
}

pub(crate) fn decode_type_at(
    r: &mut Reader<'_>,
    cache: &mut TypeCache,
    depth: usize,
) -> Result<Option<Arc<FieldDesc>>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep(MAX_DEPTH));
    }
    let code = r.u8()?;
    match code {
        0xFF => Ok(None),
        0xFE => {
            let id = r.u16()?;
            match cache.map.get(&id) {
                Some(d) => Ok(Some(d.clone())),
                None => Err(DecodeError::UnknownTypeId(id)),
            }
        }
        0xFD | 0xFC => {
            let id = r.u16()?;
            if code == 0xFC {
                let _tag = r.u32()?;
            }
            let d = decode_type_at(r, cache, depth + 1)?.ok_or(DecodeError::BadTypeCode(0xFF))?;
            cache.insert(id, d.clone())?;
            Ok(Some(d))
        }
        _ => decode_field(r, cache, code, depth).map(|d| Some(Arc::new(d))),
    }
}

fn decode_field(
    r: &mut Reader<'_>,
    cache: &mut TypeCache,
    code: u8,
    depth: usize,
) -> Result<FieldDesc, DecodeError> {
    r.spend(1)?;
    let array = code & 0x18;
    let base = code & !0x18;
    if array == 0x18 {
        return Err(DecodeError::BadTypeCode(code));
    }
    if array == 0x10 {
        // bounded array: the bound is informative only
        let _bound = r.size()?;
    }
    if base == 0x83 {
        // bounded string
        let _bound = r.size()?;
    }
    if let Some(s) = ScalarType::from_code(base) {
        return Ok(if array == 0 {
            FieldDesc::Scalar(s)
        } else {
            FieldDesc::ScalarArray(s)
        });
    }
    match (base, array) {
        (0x80, 0) | (0x81, 0) => {
            let id = r.string()?;
            // each member takes at least 2 bytes (name size, type code)
            let n = r.count(2)?;
            let mut fields = Vec::with_capacity(n);
            for _ in 0..n {
                let name = r.string()?;
                let f =
                    decode_type_at(r, cache, depth + 1)?.ok_or(DecodeError::BadTypeCode(0xFF))?;
                fields.push((name, f));
            }
            let d = if base == 0x80 {
                FieldDesc::structure(&id, fields)
            } else {
                FieldDesc::Union(StructDesc::new(&id, fields))
            };
            // shared cached subtrees can nest deeper than the bytes do
            if d.depth() > MAX_DEPTH {
                return Err(DecodeError::TooDeep(MAX_DEPTH));
            }
            Ok(d)
        }
        (0x82, 0) => Ok(FieldDesc::Any),
        (0x82, _) => Ok(FieldDesc::AnyArray),
        (0x80, _) | (0x81, _) => {
            let e = decode_type_at(r, cache, depth + 1)?.ok_or(DecodeError::ElementType)?;
            if e.depth() >= MAX_DEPTH {
                return Err(DecodeError::TooDeep(MAX_DEPTH));
            }
            match (&*e, base) {
                (FieldDesc::Structure { .. }, 0x80) => Ok(FieldDesc::StructureArray(e)),
                (FieldDesc::Union(_), 0x81) => Ok(FieldDesc::UnionArray(e)),
                _ => Err(DecodeError::ElementType),
            }
        }
        _ => Err(DecodeError::BadTypeCode(code)),
    }
}

/// Encodes a type description in full (no cache references).
pub fn encode_type(w: &mut Writer, d: &FieldDesc) {
    match d {
        FieldDesc::Scalar(s) => {
            w.put_u8(s.code());
        }
        FieldDesc::ScalarArray(s) => {
            w.put_u8(s.code() | 0x08);
        }
        FieldDesc::Structure { desc, .. } | FieldDesc::Union(desc) => {
            w.put_u8(if matches!(d, FieldDesc::Union(_)) {
                0x81
            } else {
                0x80
            });
            w.put_string(&desc.id).put_size(desc.fields.len());
            for (n, f) in &desc.fields {
                w.put_string(n);
                encode_type(w, f);
            }
        }
        FieldDesc::Any => {
            w.put_u8(0x82);
        }
        FieldDesc::StructureArray(e) => {
            w.put_u8(0x88);
            encode_type(w, e);
        }
        FieldDesc::UnionArray(e) => {
            w.put_u8(0x89);
            encode_type(w, e);
        }
        FieldDesc::AnyArray => {
            w.put_u8(0x8A);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nt_scalar() -> FieldDesc {
        use crate::nt::desc;
        desc::members(
            "epics:nt/NTScalar:1.0",
            vec![
                ("value", desc::scalar(ScalarType::F64)),
                ("alarm", desc::alarm()),
                ("tags", FieldDesc::ScalarArray(ScalarType::String)),
            ],
        )
    }

    #[test]
    fn round_trip_both_orders_and_bits() {
        let d = nt_scalar();
        assert_eq!(d.bits(), 1 + 1 + 4 + 1);
        for be in [false, true] {
            let mut w = Writer::new(be);
            encode_type(&mut w, &d);
            let mut cache = TypeCache::new();
            let mut r = Reader::new(&w.buf, be);
            let got = decode_type(&mut r, &mut cache).unwrap().unwrap();
            assert_eq!(*got, d);
            assert_eq!(r.remaining(), 0);
        }
        assert_eq!(d.lookup("alarm.status").map(|(_, o)| o), Some(4));
        assert_eq!(d.lookup("tags").map(|(_, o)| o), Some(6));
        assert!(d.lookup("alarm.nope").is_none());
    }

    #[test]
    fn cache_define_then_reference() {
        let d = nt_scalar();
        let mut w = Writer::new(false);
        w.put_u8(0xFD).put_u16(7);
        encode_type(&mut w, &d);
        w.put_u8(0xFE).put_u16(7);
        w.put_u8(0xFE).put_u16(8);
        let mut cache = TypeCache::new();
        let mut r = Reader::new(&w.buf, false);
        let a = decode_type(&mut r, &mut cache).unwrap().unwrap();
        let b = decode_type(&mut r, &mut cache).unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(
            decode_type(&mut r, &mut cache),
            Err(DecodeError::UnknownTypeId(8))
        );
    }

    #[test]
    fn struct_and_union_arrays_check_their_element() {
        let mut w = Writer::new(false);
        w.put_u8(0x88).put_u8(0x43);
        let mut r = Reader::new(&w.buf, false);
        assert_eq!(
            decode_type(&mut r, &mut TypeCache::new()),
            Err(DecodeError::ElementType)
        );
        // fixed arrays are refused, bounded ones read
        let mut r = Reader::new(&[0x5B, 4], false);
        assert_eq!(
            decode_type(&mut r, &mut TypeCache::new()),
            Err(DecodeError::BadTypeCode(0x5B))
        );
        let mut r = Reader::new(&[0x53, 4], false);
        assert_eq!(
            *decode_type(&mut r, &mut TypeCache::new()).unwrap().unwrap(),
            FieldDesc::ScalarArray(ScalarType::F64)
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut bytes = Vec::new();
        for _ in 0..100 {
            bytes.extend_from_slice(&[0x80, 0, 1, 1, b'a']);
        }
        let mut r = Reader::new(&bytes, false);
        assert_eq!(
            decode_type(&mut r, &mut TypeCache::new()),
            Err(DecodeError::TooDeep(MAX_DEPTH))
        );
    }
}
