//! pvData values: [`PvValue`] (a tree shaped by a [`FieldDesc`]), full and bitset-driven
//! partial decoding *in place* (a monitor keeps one value per subscription and applies each
//! update to it; scalars and same-length arrays are overwritten without allocating), the
//! encoding, and [`BitSet`].
//!
//! Serialization (pvAccess spec, "Data"): scalars in the message byte order (boolean one
//! byte); strings size + UTF-8; arrays size + elements; a structure its members in order;
//! a union a selector (255 = none) then the selected member; a variant union a type
//! description (0xFF = null) then the value; arrays of structures, unions and variant unions
//! a size then, per element, a byte 0 (null) or 1 followed by the element.
//!
//! Partial values (monitor and get replies): a *changed* bitset then only the fields whose
//! bit is set, in order. Bit 0 is the whole structure, then the members depth-first; a set
//! bit for a structure means the whole sub-structure follows.

use std::fmt;
use std::sync::Arc;

use crate::error::DecodeError;
use crate::types::{FieldDesc, MAX_DEPTH, ScalarType, TypeCache, decode_type_at, encode_type};
use crate::wire::{Reader, Writer};

/// The content of a variant union: its own type and value, or null.
pub type AnyValue = Option<(Arc<FieldDesc>, Box<PvValue>)>;

/// A value of a [`FieldDesc`].
#[derive(Clone, Debug, PartialEq)]
pub enum PvValue {
    /// `boolean`
    Bool(bool),
    /// `byte`
    I8(i8),
    /// `short`
    I16(i16),
    /// `int`
    I32(i32),
    /// `long`
    I64(i64),
    /// `ubyte`
    U8(u8),
    /// `ushort`
    U16(u16),
    /// `uint`
    U32(u32),
    /// `ulong`
    U64(u64),
    /// `float`
    F32(f32),
    /// `double`
    F64(f64),
    /// `string`
    String(String),
    /// `boolean[]`
    BoolArray(Vec<bool>),
    /// `byte[]`
    I8Array(Vec<i8>),
    /// `short[]`
    I16Array(Vec<i16>),
    /// `int[]`
    I32Array(Vec<i32>),
    /// `long[]`
    I64Array(Vec<i64>),
    /// `ubyte[]`
    U8Array(Vec<u8>),
    /// `ushort[]`
    U16Array(Vec<u16>),
    /// `uint[]`
    U32Array(Vec<u32>),
    /// `ulong[]`
    U64Array(Vec<u64>),
    /// `float[]`
    F32Array(Vec<f32>),
    /// `double[]`
    F64Array(Vec<f64>),
    /// `string[]`
    StringArray(Vec<String>),
    /// A structure: its members' values in the description's order.
    Structure(Vec<PvValue>),
    /// A union: the selected member's index and value, or none.
    Union(Option<(usize, Box<PvValue>)>),
    /// A variant union: the value's own type and value, or null.
    Any(AnyValue),
    /// An array of structures (`None` = null element).
    StructureArray(Vec<Option<PvValue>>),
    /// An array of unions (each a [`PvValue::Union`]; `None` = null element).
    UnionArray(Vec<Option<PvValue>>),
    /// An array of variant unions (each a [`PvValue::Any`]; `None` = null element).
    AnyArray(Vec<Option<PvValue>>),
}

macro_rules! scalar_arms {
    ($m:ident) => {
        $m!(
            I8, I8Array, i8;
            I16, I16Array, i16;
            I32, I32Array, i32;
            I64, I64Array, i64;
            U8, U8Array, u8;
            U16, U16Array, u16;
            U32, U32Array, u32;
            U64, U64Array, u64;
            F32, F32Array, f32;
            F64, F64Array, f64
        )
    };
}

impl PvValue {
    /// The default (zero, empty, null) value of a description.
    pub fn default_for(d: &FieldDesc) -> PvValue {
        match d {
            FieldDesc::Scalar(s) => scalar_default(*s),
            FieldDesc::ScalarArray(s) => array_default(*s),
            FieldDesc::Structure { desc, .. } => PvValue::Structure(
                desc.fields
                    .iter()
                    .map(|(_, f)| Self::default_for(f))
                    .collect(),
            ),
            FieldDesc::Union(_) => PvValue::Union(None),
            FieldDesc::Any => PvValue::Any(None),
            FieldDesc::StructureArray(_) => PvValue::StructureArray(Vec::new()),
            FieldDesc::UnionArray(_) => PvValue::UnionArray(Vec::new()),
            FieldDesc::AnyArray => PvValue::AnyArray(Vec::new()),
        }
    }

    /// The value as a double, for numeric scalars and booleans (1/0).
    pub fn as_f64(&self) -> Option<f64> {
        macro_rules! arms {
            ($($s:ident, $a:ident, $t:ty);*) => {
                match self {
                    PvValue::Bool(v) => Some(if *v { 1.0 } else { 0.0 }),
                    $(PvValue::$s(v) => Some(num_f64(*v)),)*
                    _ => None,
                }
            };
        }
        scalar_arms!(arms)
    }

    /// The value as an i64, for integer scalars and booleans (floats truncate, a u64
    /// above `i64::MAX` wraps as Java reads it).
    pub fn as_i64(&self) -> Option<i64> {
        macro_rules! arms {
            ($($s:ident, $a:ident, $t:ty);*) => {
                match self {
                    PvValue::Bool(v) => Some(i64::from(*v)),
                    $(PvValue::$s(v) => Some(*v as i64),)*
                    _ => None,
                }
            };
        }
        scalar_arms!(arms)
    }

    /// The number of elements of an array value (scalar, structure, union or variant
    /// union arrays); `None` for anything else.
    pub fn array_len(&self) -> Option<usize> {
        macro_rules! arms {
            ($($s:ident, $a:ident, $t:ty);*) => {
                match self {
                    PvValue::BoolArray(a) => Some(a.len()),
                    PvValue::StringArray(a) => Some(a.len()),
                    PvValue::StructureArray(a) | PvValue::UnionArray(a) | PvValue::AnyArray(a) => {
                        Some(a.len())
                    }
                    $(PvValue::$a(a) => Some(a.len()),)*
                    _ => None,
                }
            };
        }
        scalar_arms!(arms)
    }

    /// The string of a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PvValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// Member `i` of a structure.
    pub fn member(&self, i: usize) -> Option<&PvValue> {
        match self {
            PvValue::Structure(v) => v.get(i),
            _ => None,
        }
    }
}

/// Conversion of any numeric scalar to f64 (u64/i64 may round, as in pvData's `castTo`).
trait NumF64: Copy {
    fn f64(self) -> f64;
}
macro_rules! num_f64_impl {
    ($($t:ty),*) => { $(impl NumF64 for $t { fn f64(self) -> f64 { self as f64 } })* };
}
num_f64_impl!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);
impl NumF64 for bool {
    fn f64(self) -> f64 {
        if self { 1.0 } else { 0.0 }
    }
}
fn num_f64<T: NumF64>(v: T) -> f64 {
    v.f64()
}

fn scalar_default(s: ScalarType) -> PvValue {
    macro_rules! arms {
        ($($v:ident, $a:ident, $t:ident);*) => {
            match s {
                ScalarType::Bool => PvValue::Bool(false),
                ScalarType::String => PvValue::String(String::new()),
                $(ScalarType::$v => PvValue::$v(0 as $t),)*
            }
        };
    }
    scalar_arms!(arms)
}

fn array_default(s: ScalarType) -> PvValue {
    macro_rules! arms {
        ($($v:ident, $a:ident, $t:ident);*) => {
            match s {
                ScalarType::Bool => PvValue::BoolArray(Vec::new()),
                ScalarType::String => PvValue::StringArray(Vec::new()),
                $(ScalarType::$v => PvValue::$a(Vec::new()),)*
            }
        };
    }
    scalar_arms!(arms)
}

/// A bitset as pvData serializes it: a size in bytes, then whole 64-bit words in the
/// message byte order, then the remaining bytes least significant first (pvDataJava
/// `BitSet.serialize`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets bit `i`.
    pub fn set(&mut self, i: usize) {
        let w = i / 64;
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (i % 64);
    }

    /// True when bit `i` is set.
    pub fn get(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// True when any bit is set.
    pub fn any(&self) -> bool {
        self.words.iter().any(|w| *w != 0)
    }

    /// True when any bit in `start..end` is set.
    pub fn any_in(&self, start: usize, end: usize) -> bool {
        let mut i = start;
        while i < end {
            let w = i / 64;
            let Some(word) = self.words.get(w) else {
                return false;
            };
            let lo = i % 64;
            let hi = (end - w * 64).min(64);
            let mask = if hi - lo == 64 {
                u64::MAX
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            if word & mask != 0 {
                return true;
            }
            i = (w + 1) * 64;
        }
        false
    }

    /// Adds every bit of `other` (a union: the members marked by either).
    pub fn union_with(&mut self, other: &BitSet) {
        if self.words.len() < other.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w |= o;
        }
    }

    /// Number of set bits.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Clears every bit (keeps the storage).
    pub fn clear(&mut self) {
        self.words.clear();
    }

    /// Decodes into `self` (reusing its storage).
    pub fn decode_into(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let n = r.count(1)?;
        self.words.clear();
        for _ in 0..n / 8 {
            let w = r.u64()?;
            self.words.push(w);
        }
        if n % 8 != 0 {
            let mut last = 0u64;
            for (i, b) in r.take(n % 8)?.iter().enumerate() {
                last |= u64::from(*b) << (8 * i);
            }
            self.words.push(last);
        }
        Ok(())
    }

    /// Encodes the set (trailing zero bytes omitted).
    pub fn encode(&self, w: &mut Writer) {
        let n = self
            .words
            .iter()
            .rposition(|x| *x != 0)
            .map_or(0, |i| i + 1);
        if n == 0 {
            w.put_size(0);
            return;
        }
        let last = self.words[n - 1];
        let tail = (8 - last.leading_zeros() as usize / 8).max(1);
        w.put_size(8 * (n - 1) + tail);
        for x in &self.words[..n - 1] {
            w.put_u64(*x);
        }
        for i in 0..tail {
            w.put_u8((last >> (8 * i)) as u8);
        }
    }
}

/// Decodes a whole value of `desc` into `val`, reusing `val`'s storage when it already
/// has the right shape.
pub fn decode_value(
    r: &mut Reader<'_>,
    cache: &mut TypeCache,
    desc: &FieldDesc,
    val: &mut PvValue,
) -> Result<(), DecodeError> {
    decode_at(r, cache, desc, val, 0)
}

/// Decodes a *partial* value: only the fields whose bit is set in `changed` (bit 0 =
/// `desc` itself), into `val`, which keeps the others.
pub fn decode_partial(
    r: &mut Reader<'_>,
    cache: &mut TypeCache,
    desc: &FieldDesc,
    val: &mut PvValue,
    changed: &BitSet,
) -> Result<(), DecodeError> {
    partial_at(r, cache, desc, val, changed, 0, 0)
}

fn partial_at(
    r: &mut Reader<'_>,
    cache: &mut TypeCache,
    desc: &FieldDesc,
    val: &mut PvValue,
    changed: &BitSet,
    offset: usize,
    depth: usize,
) -> Result<(), DecodeError> {
    if changed.get(offset) {
        return decode_at(r, cache, desc, val, depth);
    }
    if let FieldDesc::Structure { desc: s, .. } = desc {
        if !matches!(val, PvValue::Structure(v) if v.len() == s.fields.len()) {
            *val = PvValue::default_for(desc);
        }
        let PvValue::Structure(members) = val else {
            return Ok(());
        };
        let mut off = offset + 1;
        for ((_, f), m) in s.fields.iter().zip(members.iter_mut()) {
            let end = off.saturating_add(f.bits());
            if changed.any_in(off, end) {
                partial_at(r, cache, f, m, changed, off, depth + 1)?;
            }
            off = end;
        }
    }
    Ok(())
}

fn read_scalar_array<T>(
    r: &mut Reader<'_>,
    out: &mut Vec<T>,
    size: usize,
    mut get: impl FnMut(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<(), DecodeError> {
    let n = r.count(size)?;
    out.clear();
    out.reserve(n);
    for _ in 0..n {
        out.push(get(r)?);
    }
    Ok(())
}

fn decode_at(
    r: &mut Reader<'_>,
    cache: &mut TypeCache,
    desc: &FieldDesc,
    val: &mut PvValue,
    depth: usize,
) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH * 2 {
        return Err(DecodeError::TooDeep(MAX_DEPTH * 2));
    }
    match desc {
        FieldDesc::Scalar(s) => {
            macro_rules! arms {
                ($($v:ident, $a:ident, $t:ident);*) => {
                    match (s, &mut *val) {
                        (ScalarType::Bool, PvValue::Bool(x)) => *x = r.u8()? != 0,
                        (ScalarType::String, PvValue::String(x)) => r.string_into(x)?,
                        $((ScalarType::$v, PvValue::$v(x)) => {
                            *x = read_num!(r, $t);
                        })*
                        _ => {
                            *val = scalar_default(*s);
                            return decode_at(r, cache, desc, val, depth + 1);
                        }
                    }
                };
            }
            scalar_arms!(arms);
        }
        FieldDesc::ScalarArray(s) => {
            macro_rules! arms {
                ($($v:ident, $a:ident, $t:ident);*) => {
                    match (s, &mut *val) {
                        (ScalarType::Bool, PvValue::BoolArray(x)) => {
                            read_scalar_array(r, x, 1, |r| Ok(r.u8()? != 0))?
                        }
                        (ScalarType::String, PvValue::StringArray(x)) => {
                            let n = r.count(1)?;
                            r.spend(n)?;
                            x.truncate(n);
                            for item in x.iter_mut() {
                                r.string_into(item)?;
                            }
                            while x.len() < n {
                                x.push(r.string()?);
                            }
                        }
                        $((ScalarType::$v, PvValue::$a(x)) => {
                            read_scalar_array(r, x, std::mem::size_of::<$t>(), |r| Ok(read_num!(r, $t)))?
                        })*
                        _ => {
                            *val = array_default(*s);
                            return decode_at(r, cache, desc, val, depth + 1);
                        }
                    }
                };
            }
            scalar_arms!(arms);
        }
        FieldDesc::Structure { desc: s, .. } => {
            if !matches!(val, PvValue::Structure(v) if v.len() == s.fields.len()) {
                r.spend(s.fields.len())?;
                *val = PvValue::default_for(desc);
            }
            if let PvValue::Structure(members) = val {
                for ((_, f), m) in s.fields.iter().zip(members.iter_mut()) {
                    decode_at(r, cache, f, m, depth + 1)?;
                }
            }
        }
        FieldDesc::Union(u) => {
            let sel = decode_union(r, cache, u, depth)?;
            *val = PvValue::Union(sel);
        }
        FieldDesc::Any => {
            *val = PvValue::Any(decode_any(r, cache, depth)?);
        }
        FieldDesc::StructureArray(e) | FieldDesc::UnionArray(e) => {
            let n = r.count(1)?;
            r.spend(n)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                if r.u8()? == 0 {
                    items.push(None);
                    continue;
                }
                match &**e {
                    FieldDesc::Union(u) => {
                        // a present element with the null selector is read as null, as pvxs does
                        let sel = decode_union(r, cache, u, depth)?;
                        items.push(sel.map(|s| PvValue::Union(Some(s))));
                    }
                    _ => {
                        let mut v = PvValue::Structure(Vec::new());
                        decode_at(r, cache, e, &mut v, depth + 1)?;
                        items.push(Some(v));
                    }
                }
            }
            *val = if matches!(desc, FieldDesc::UnionArray(_)) {
                PvValue::UnionArray(items)
            } else {
                PvValue::StructureArray(items)
            };
        }
        FieldDesc::AnyArray => {
            let n = r.count(1)?;
            r.spend(n)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                if r.u8()? == 0 {
                    items.push(None);
                } else {
                    items.push(Some(PvValue::Any(decode_any(r, cache, depth)?)));
                }
            }
            *val = PvValue::AnyArray(items);
        }
    }
    Ok(())
}

macro_rules! read_num {
    ($r:ident, i8) => {
        $r.i8()?
    };
    ($r:ident, u8) => {
        $r.u8()?
    };
    ($r:ident, $t:ident) => {
        $r.$t()?
    };
}
use read_num;

fn decode_union(
    r: &mut Reader<'_>,
    cache: &mut TypeCache,
    u: &crate::types::StructDesc,
    depth: usize,
) -> Result<Option<(usize, Box<PvValue>)>, DecodeError> {
    let Some(sel) = r.opt_size()? else {
        return Ok(None);
    };
    let Some((_, f)) = u.fields.get(sel) else {
        return Err(DecodeError::BadSelector {
            selector: sel as u64,
            fields: u.fields.len(),
        });
    };
    r.spend(f.nodes())?;
    let mut v = PvValue::default_for(f);
    decode_at(r, cache, f, &mut v, depth + 1)?;
    Ok(Some((sel, Box::new(v))))
}

fn decode_any(
    r: &mut Reader<'_>,
    cache: &mut TypeCache,
    depth: usize,
) -> Result<AnyValue, DecodeError> {
    let Some(t) = decode_type_at(r, cache, depth + 1)? else {
        return Ok(None);
    };
    r.spend(t.nodes())?;
    let mut v = PvValue::default_for(&t);
    decode_at(r, cache, &t, &mut v, depth + 1)?;
    Ok(Some((t, Box::new(v))))
}

/// Encodes a whole value (the value must match `desc`; a mismatching member is written as
/// the description's default so the output always decodes).
pub fn encode_value(w: &mut Writer, desc: &FieldDesc, val: &PvValue) {
    macro_rules! arms {
        ($($v:ident, $a:ident, $t:ident);*) => {
            match (desc, val) {
                (FieldDesc::Scalar(ScalarType::Bool), PvValue::Bool(x)) => { w.put_u8(u8::from(*x)); }
                (FieldDesc::Scalar(ScalarType::String), PvValue::String(x)) => { w.put_string(x); }
                (FieldDesc::ScalarArray(ScalarType::Bool), PvValue::BoolArray(x)) => {
                    w.put_size(x.len());
                    for b in x { w.put_u8(u8::from(*b)); }
                }
                (FieldDesc::ScalarArray(ScalarType::String), PvValue::StringArray(x)) => {
                    w.put_size(x.len());
                    for s in x { w.put_string(s); }
                }
                $((FieldDesc::Scalar(ScalarType::$v), PvValue::$v(x)) => {
                    put_num!(w, $t, *x);
                })*
                $((FieldDesc::ScalarArray(ScalarType::$v), PvValue::$a(x)) => {
                    w.put_size(x.len());
                    for e in x { put_num!(w, $t, *e); }
                })*
                (FieldDesc::Structure { desc: s, .. }, PvValue::Structure(m)) if m.len() == s.fields.len() => {
                    for ((_, f), v) in s.fields.iter().zip(m) { encode_value(w, f, v); }
                }
                (FieldDesc::Union(u), PvValue::Union(sel)) => match sel {
                    Some((i, v)) if *i < u.fields.len() => {
                        w.put_size(*i);
                        encode_value(w, &u.fields[*i].1, v);
                    }
                    _ => { w.put_u8(255); }
                },
                (FieldDesc::Any, PvValue::Any(a)) => encode_any(w, a),
                (FieldDesc::StructureArray(e) | FieldDesc::UnionArray(e), PvValue::StructureArray(items) | PvValue::UnionArray(items)) => {
                    w.put_size(items.len());
                    for it in items {
                        match it {
                            None => { w.put_u8(0); }
                            Some(v) => { w.put_u8(1); encode_value(w, e, v); }
                        }
                    }
                }
                (FieldDesc::AnyArray, PvValue::AnyArray(items)) => {
                    w.put_size(items.len());
                    for it in items {
                        match it {
                            Some(PvValue::Any(a)) => { w.put_u8(1); encode_any(w, a); }
                            _ => { w.put_u8(0); }
                        }
                    }
                }
                _ => encode_value(w, desc, &PvValue::default_for(desc)),
            }
        };
    }
    scalar_arms!(arms);
}

macro_rules! put_num {
    ($w:ident, i8, $x:expr) => {
        $w.put_u8($x as u8)
    };
    ($w:ident, u8, $x:expr) => {
        $w.put_u8($x)
    };
    ($w:ident, i16, $x:expr) => {
        $w.put_i16($x)
    };
    ($w:ident, i32, $x:expr) => {
        $w.put_i32($x)
    };
    ($w:ident, i64, $x:expr) => {
        $w.put_i64($x)
    };
    ($w:ident, u16, $x:expr) => {
        $w.put_u16($x)
    };
    ($w:ident, u32, $x:expr) => {
        $w.put_u32($x)
    };
    ($w:ident, u64, $x:expr) => {
        $w.put_u64($x)
    };
    ($w:ident, f32, $x:expr) => {
        $w.put_f32($x)
    };
    ($w:ident, f64, $x:expr) => {
        $w.put_f64($x)
    };
}
use put_num;

fn encode_any(w: &mut Writer, a: &AnyValue) {
    match a {
        None => {
            w.put_u8(0xFF);
        }
        Some((t, v)) => {
            encode_type(w, t);
            encode_value(w, t, v);
        }
    }
}

/// A value with its description, printable as `pvget -v` prints it (one member per line).
#[derive(Clone, Copy, Debug)]
pub struct Pretty<'a> {
    /// The description.
    pub desc: &'a FieldDesc,
    /// The value.
    pub value: &'a PvValue,
}

fn fmt_scalarish(f: &mut fmt::Formatter<'_>, v: &PvValue) -> fmt::Result {
    macro_rules! arms {
        ($($s:ident, $a:ident, $t:ident);*) => {
            match v {
                PvValue::String(s) => write!(f, "{s:?}"),
                PvValue::Bool(x) => write!(f, "{x}"),
                PvValue::BoolArray(x) => write!(f, "{x:?}"),
                PvValue::StringArray(a) => write!(f, "{a:?}"),
                $(PvValue::$s(x) => write!(f, "{x}"),)*
                $(PvValue::$a(x) => write!(f, "{x:?}"),)*
                _ => write!(f, "?"),
            }
        };
    }
    scalar_arms!(arms)
}

fn fmt_tree(
    f: &mut fmt::Formatter<'_>,
    d: &FieldDesc,
    v: &PvValue,
    name: &str,
    indent: usize,
) -> fmt::Result {
    write!(
        f,
        "{:indent$}{} {}",
        "",
        d.type_name(),
        name,
        indent = indent
    )?;
    match (d, v) {
        (FieldDesc::Structure { desc, .. }, PvValue::Structure(m)) => {
            writeln!(f)?;
            for ((n, cd), cv) in desc.fields.iter().zip(m) {
                fmt_tree(f, cd, cv, n, indent + 4)?;
            }
            Ok(())
        }
        (FieldDesc::Union(u), PvValue::Union(sel)) => {
            writeln!(f)?;
            if let Some((i, cv)) = sel
                && let Some((n, cd)) = u.fields.get(*i)
            {
                fmt_tree(f, cd, cv, n, indent + 4)?;
            }
            Ok(())
        }
        (_, PvValue::Any(a)) => {
            writeln!(f)?;
            if let Some((t, cv)) = a {
                fmt_tree(f, t, cv, "", indent + 4)?;
            }
            Ok(())
        }
        (
            FieldDesc::StructureArray(e) | FieldDesc::UnionArray(e),
            PvValue::StructureArray(items) | PvValue::UnionArray(items),
        ) => {
            writeln!(f)?;
            for it in items {
                match it {
                    Some(cv) => fmt_tree(f, e, cv, "", indent + 4)?,
                    None => writeln!(f, "{:indent$}(null)", "", indent = indent + 4)?,
                }
            }
            Ok(())
        }
        (_, PvValue::AnyArray(items)) => {
            writeln!(f)?;
            for it in items.iter().flatten() {
                fmt_tree(f, &FieldDesc::Any, it, "", indent + 4)?;
            }
            Ok(())
        }
        _ => {
            write!(f, " ")?;
            fmt_scalarish(f, v)?;
            writeln!(f)
        }
    }
}

impl fmt::Display for Pretty<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_tree(f, self.desc, self.value, "", 0)
    }
}

/// Member `path` (dotted, e.g. `value.x`; empty = the whole value) of a structure value.
pub fn lookup<'a>(
    desc: &'a FieldDesc,
    val: &'a PvValue,
    path: &str,
) -> Option<(&'a FieldDesc, &'a PvValue)> {
    let mut d = desc;
    let mut v = val;
    if path.is_empty() {
        return Some((d, v));
    }
    for part in path.split('.') {
        let s = d.as_struct()?;
        let i = s.index_of(part)?;
        d = &s.fields[i].1;
        v = v.member(i)?;
    }
    Some((d, v))
}

/// True when `bits` (a changed or valid bitset over `desc`, pvData's offsets: 0 is the
/// whole structure, each member its own offset, a structure's members after it) covers
/// member `path` (dotted): its own bit, the bit of a structure above it, or any bit inside
/// it (a sub-structure marked member by member). A path naming no member is covered
/// (callers then find nothing to read).
pub fn marked(desc: &FieldDesc, bits: &BitSet, path: &str) -> bool {
    if bits.get(0) {
        return true;
    }
    let mut end = 0;
    loop {
        let next = path[end..].find('.').map(|i| end + i);
        let prefix = &path[..next.unwrap_or(path.len())];
        let Some((d, off)) = desc.lookup(prefix) else {
            return true;
        };
        match next {
            Some(n) => {
                if bits.get(off) {
                    return true;
                }
                end = n + 1;
            }
            None => return bits.any_in(off, off.saturating_add(d.bits())),
        }
    }
}

#[cfg(test)]
mod marked_tests {
    use super::*;

    fn set(bits: &[usize]) -> BitSet {
        let mut b = BitSet::new();
        for i in bits {
            b.set(*i);
        }
        b
    }

    #[test]
    fn a_member_is_marked_by_its_own_bits_or_a_structure_above() {
        let inner = FieldDesc::structure(
            "",
            vec![
                ("x".into(), Arc::new(FieldDesc::Scalar(ScalarType::F64))),
                ("y".into(), Arc::new(FieldDesc::Scalar(ScalarType::F64))),
            ],
        );
        let d = FieldDesc::structure("", vec![("value".into(), Arc::new(inner))]);
        // bits: 0 top, 1 value, 2 value.x, 3 value.y
        assert!(marked(&d, &set(&[2]), "value.x"));
        assert!(!marked(&d, &set(&[3]), "value.x"));
        assert!(marked(&d, &set(&[1]), "value.x"));
        assert!(marked(&d, &set(&[0]), "value.y"));
        assert!(marked(&d, &set(&[3]), "value"));
        assert!(!marked(&d, &set(&[]), "value"));
    }

    #[test]
    fn defaults_lengths_and_integers_of_every_scalar_type() {
        use ScalarType as S;
        for t in [
            S::Bool,
            S::I8,
            S::I16,
            S::I32,
            S::I64,
            S::U8,
            S::U16,
            S::U32,
            S::U64,
            S::F32,
            S::F64,
            S::String,
        ] {
            let v = scalar_default(t);
            assert_eq!(v.array_len(), None, "{t:?}");
            if t != S::String {
                assert_eq!(v.as_i64(), Some(0), "{t:?}");
            }
            let a = array_default(t);
            assert_eq!(a.array_len(), Some(0), "{t:?}");
            assert_eq!(PvValue::default_for(&FieldDesc::ScalarArray(t)), a, "{t:?}");
        }
        assert_eq!(PvValue::U64(u64::MAX).as_i64(), Some(-1));
        assert_eq!(PvValue::F64(-2.7).as_i64(), Some(-2));
        assert_eq!(PvValue::I16Array(vec![1, 2, 3]).array_len(), Some(3));
        assert_eq!(PvValue::AnyArray(vec![None]).array_len(), Some(1));
    }

    #[test]
    fn a_union_holds_the_bits_of_both() {
        let mut a = set(&[1, 70]);
        a.union_with(&set(&[2, 130]));
        assert_eq!(a, set(&[1, 2, 70, 130]));
        let mut e = BitSet::new();
        e.union_with(&set(&[5]));
        assert!(e.get(5) && e.count() == 1);
    }
}
