//! Protobuf wire encoding of samples and `PayloadInfo`, byte for byte as the Java
//! appliance (protobuf-java, proto2) writes them.
//!
//! Fields are written in field-number order. `val` uses the proto's wire type per payload
//! type: zigzag varint (`sint32`) for shorts and enums, `sfixed32` for ints, packed repeated
//! numerics, unpacked repeated strings. Severity and status are written only when non-zero.
//! Decoding is lenient where protobuf is (unknown fields are skipped, repeated numerics are
//! accepted packed or not) and strict where a wrong byte would give a wrong value.

use crate::escape::{TrailingEscape, escape_tail_in_place, unescape};
use crate::sample::{FieldValue, PayloadInfo, Sample, Value};
use crate::time::{Timestamp, seconds_in_year, start_of_year};
use crate::types::PayloadType;

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

const NANOS_PER_SEC: u32 = 1_000_000_000;

/// Why a sample cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The sample's time is not inside the UTC year of the file.
    #[error("sample time {time} is outside the year {year}")]
    OutsideYear {
        /// The sample's time.
        time: Timestamp,
        /// The file's year.
        year: i32,
    },
    /// The nanoseconds are not below one billion.
    #[error("nanoseconds {0} out of range (must be < 1000000000)")]
    BadNanos(u32),
}

/// Why bytes do not decode to a sample or header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message ends inside a field.
    #[error("message truncated")]
    Truncated,
    /// A varint is longer than ten bytes.
    #[error("malformed varint")]
    BadVarint,
    /// A known field has an unexpected wire type.
    #[error("field {field} has wire type {wire}, expected {expected}")]
    WireType {
        /// Field number.
        field: u32,
        /// Wire type found.
        wire: u8,
        /// Wire type expected.
        expected: u8,
    },
    /// A wire type the codec cannot skip (groups, or 6/7).
    #[error("unsupported wire type {0}")]
    UnsupportedWireType(u8),
    /// Field number 0 is never valid.
    #[error("field number 0")]
    ZeroField,
    /// A required field is absent.
    #[error("required field {0} missing")]
    Missing(&'static str),
    /// A packed field's length is not a multiple of its element size.
    #[error("packed field length {len} is not a multiple of {size}")]
    PackedLength {
        /// The length found.
        len: usize,
        /// The element size.
        size: usize,
    },
    /// A `ScalarByte` value with no byte.
    #[error("ScalarByte value is empty")]
    EmptyByte,
    /// The header names a payload type that does not exist.
    #[error("unknown payload type {0}")]
    UnknownPayloadType(u64),
    /// The nanoseconds are not below one billion.
    #[error("nanoseconds {0} out of range")]
    BadNanos(u32),
    /// The line ends with a lone escape byte.
    #[error(transparent)]
    Escape(#[from] TrailingEscape),
}

// ---------------------------------------------------------------------------------------
// Encoding primitives

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
const fn varint_len(v: u64) -> usize {
    // 1 + floor(bits/7), with 0 taking one byte.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[inline]
fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, u64::from(field << 3 | u32::from(wire)));
}

#[inline]
fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `int32` fields: negative numbers are sign-extended to ten bytes, as protobuf does.
#[inline]
fn put_int32(out: &mut Vec<u8>, field: u32, v: i32) {
    put_key(out, field, WIRE_VARINT);
    put_varint(out, i64::from(v) as u64);
}

#[inline]
const fn zigzag32(v: i32) -> u64 {
    ((v << 1) ^ (v >> 31)) as u32 as u64
}

#[inline]
const fn unzigzag32(v: u64) -> i32 {
    let v = v as u32;
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

fn field_value_len(f: &FieldValue) -> usize {
    1 + varint_len(f.name.len() as u64)
        + f.name.len()
        + 1
        + varint_len(f.val.len() as u64)
        + f.val.len()
}

fn put_field_value(out: &mut Vec<u8>, field: u32, f: &FieldValue) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, field_value_len(f) as u64);
    put_bytes(out, 1, f.name.as_bytes());
    put_bytes(out, 2, f.val.as_bytes());
}

fn put_packed_zigzag(out: &mut Vec<u8>, v: &[i16]) {
    if v.is_empty() {
        return;
    }
    let len: usize = v.iter().map(|&x| varint_len(zigzag32(i32::from(x)))).sum();
    put_key(out, 3, WIRE_LEN);
    put_varint(out, len as u64);
    for &x in v {
        put_varint(out, zigzag32(i32::from(x)));
    }
}

fn put_packed_fixed<const N: usize, T: Copy>(out: &mut Vec<u8>, v: &[T], le: fn(T) -> [u8; N]) {
    if v.is_empty() {
        return;
    }
    put_key(out, 3, WIRE_LEN);
    put_varint(out, (v.len() * N) as u64);
    out.reserve(v.len() * N);
    for &x in v {
        out.extend_from_slice(&le(x));
    }
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::ScalarString(s) => put_bytes(out, 3, s.as_bytes()),
        Value::ScalarShort(x) | Value::ScalarEnum(x) => {
            put_key(out, 3, WIRE_VARINT);
            put_varint(out, zigzag32(i32::from(*x)));
        }
        Value::ScalarFloat(x) => {
            put_key(out, 3, WIRE_FIXED32);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::ScalarByte(x) => put_bytes(out, 3, &x.to_le_bytes()),
        Value::ScalarInt(x) => {
            put_key(out, 3, WIRE_FIXED32);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::ScalarDouble(x) => {
            put_key(out, 3, WIRE_FIXED64);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::VectorString(v) => {
            for s in v {
                put_bytes(out, 3, s.as_bytes());
            }
        }
        Value::VectorShort(v) | Value::VectorEnum(v) => put_packed_zigzag(out, v),
        Value::VectorFloat(v) => put_packed_fixed(out, v, f32::to_le_bytes),
        Value::VectorInt(v) => put_packed_fixed(out, v, i32::to_le_bytes),
        Value::VectorDouble(v) => put_packed_fixed(out, v, f64::to_le_bytes),
        Value::VectorChar(v) | Value::V4GenericBytes(v) => put_bytes(out, 3, v),
    }
}

/// Appends the protobuf bytes (not escaped, no newline) of `sample` in a file of `year`.
pub fn encode_sample(sample: &Sample, year: i32, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let into_year = sample.time.secs - start_of_year(year);
    if !(0..seconds_in_year(year)).contains(&into_year) {
        return Err(EncodeError::OutsideYear {
            time: sample.time,
            year,
        });
    }
    if sample.time.nanos >= NANOS_PER_SEC {
        return Err(EncodeError::BadNanos(sample.time.nanos));
    }
    put_key(out, 1, WIRE_VARINT);
    put_varint(out, into_year as u64);
    put_key(out, 2, WIRE_VARINT);
    put_varint(out, u64::from(sample.time.nanos));
    put_value(out, &sample.value);
    if sample.severity != 0 {
        put_int32(out, 4, sample.severity);
    }
    if sample.status != 0 {
        put_int32(out, 5, sample.status);
    }
    if let Some(r) = sample.repeat_count {
        put_key(out, 6, WIRE_VARINT);
        put_varint(out, u64::from(r));
    }
    for f in &sample.field_values {
        put_field_value(out, 7, f);
    }
    if let Some(c) = sample.field_actual_change {
        put_key(out, 8, WIRE_VARINT);
        out.push(u8::from(c));
    }
    if let Some(t) = sample.user_tag {
        put_key(out, 9, WIRE_VARINT);
        put_varint(out, u64::from(t));
    }
    Ok(())
}

/// Appends `sample` as one escaped line, newline included. `scratch` is reused working
/// space; nothing is allocated once both buffers have grown to size.
pub fn encode_line(
    sample: &Sample,
    year: i32,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    encode_sample(sample, year, out)?;
    escape_tail_in_place(out, start, scratch);
    out.push(b'\n');
    Ok(())
}

/// Appends the protobuf bytes (not escaped) of a `PayloadInfo`.
pub fn encode_payload_info(info: &PayloadInfo, out: &mut Vec<u8>) {
    put_key(out, 1, WIRE_VARINT);
    put_varint(out, u64::from(info.payload_type.number()));
    put_bytes(out, 2, info.pv_name.as_bytes());
    put_int32(out, 3, info.year);
    if let Some(c) = info.element_count {
        put_int32(out, 4, c);
    }
    for h in &info.headers {
        put_field_value(out, 15, h);
    }
}

/// Appends a `PayloadInfo` as one escaped line, newline included.
pub fn encode_header_line(info: &PayloadInfo, out: &mut Vec<u8>) {
    let start = out.len();
    encode_payload_info(info, out);
    let mut scratch = Vec::new();
    escape_tail_in_place(out, start, &mut scratch);
    out.push(b'\n');
}

// ---------------------------------------------------------------------------------------
// Decoding primitives

struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Wire { buf, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let b0 = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        if b0 < 0x80 {
            return Ok(u64::from(b0));
        }
        let mut v = u64::from(b0 & 0x7F);
        for shift in (7..70).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
            self.pos += 1;
            v |= u64::from(b & 0x7F).wrapping_shl(shift);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint)
    }

    /// The varint value of `field`, which must have the varint wire type.
    #[inline]
    fn varint_field(&mut self, field: u32, wire: u8) -> Result<u64, DecodeError> {
        expect(field, wire, WIRE_VARINT)?;
        self.varint()
    }

    /// The next key as (field, wire type), or `None` at the end.
    #[inline]
    fn key(&mut self) -> Result<Option<(u32, u8)>, DecodeError> {
        if self.at_end() {
            return Ok(None);
        }
        let k = self.varint()?;
        let field = (k >> 3) as u32;
        if field == 0 {
            return Err(DecodeError::ZeroField);
        }
        Ok(Some((field, (k & 7) as u8)))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::Truncated)?;
        self.take(n)
    }

    #[inline]
    fn fixed32(&mut self) -> Result<[u8; 4], DecodeError> {
        let s = self.take(4)?;
        Ok([s[0], s[1], s[2], s[3]])
    }

    #[inline]
    fn fixed64(&mut self) -> Result<[u8; 8], DecodeError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn skip(&mut self, wire: u8) -> Result<(), DecodeError> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_FIXED64 => self.take(8).map(drop),
            WIRE_LEN => self.bytes().map(drop),
            WIRE_FIXED32 => self.take(4).map(drop),
            other => Err(DecodeError::UnsupportedWireType(other)),
        }
    }
}

#[inline]
fn expect(field: u32, wire: u8, expected: u8) -> Result<(), DecodeError> {
    if wire == expected {
        Ok(())
    } else {
        Err(DecodeError::WireType {
            field,
            wire,
            expected,
        })
    }
}

fn set_string(dst: &mut String, bytes: &[u8]) {
    dst.clear();
    // proto2 strings are not validated by protobuf-java; invalid UTF-8 becomes U+FFFD.
    dst.push_str(&String::from_utf8_lossy(bytes));
}

fn decode_field_value(bytes: &[u8]) -> Result<FieldValue, DecodeError> {
    let mut w = Wire::new(bytes);
    let (mut name, mut val) = (None, None);
    while let Some((field, wire)) = w.key()? {
        match field {
            1 | 2 => {
                expect(field, wire, WIRE_LEN)?;
                let s = String::from_utf8_lossy(w.bytes()?).into_owned();
                if field == 1 {
                    name = Some(s);
                } else {
                    val = Some(s);
                }
            }
            _ => w.skip(wire)?,
        }
    }
    Ok(FieldValue {
        name: name.ok_or(DecodeError::Missing("FieldValue.name"))?,
        val: val.ok_or(DecodeError::Missing("FieldValue.val"))?,
    })
}

/// Appends the elements of a repeated numeric field, packed (wire type 2) or not.
fn read_repeated<T, const N: usize>(
    w: &mut Wire<'_>,
    wire: u8,
    scalar_wire: u8,
    dst: &mut Vec<T>,
    from: fn([u8; N]) -> T,
) -> Result<(), DecodeError> {
    if wire == WIRE_LEN {
        let b = w.bytes()?;
        if b.len() % N != 0 {
            return Err(DecodeError::PackedLength {
                len: b.len(),
                size: N,
            });
        }
        dst.reserve(b.len() / N);
        for c in b.chunks_exact(N) {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            dst.push(from(a));
        }
        return Ok(());
    }
    expect(3, wire, scalar_wire)?;
    let b = w.take(N)?;
    let mut a = [0u8; N];
    a.copy_from_slice(b);
    dst.push(from(a));
    Ok(())
}

fn read_zigzags(w: &mut Wire<'_>, wire: u8, dst: &mut Vec<i16>) -> Result<(), DecodeError> {
    if wire == WIRE_LEN {
        let mut inner = Wire::new(w.bytes()?);
        while !inner.at_end() {
            dst.push(unzigzag32(inner.varint()?) as i16);
        }
        return Ok(());
    }
    expect(3, wire, WIRE_VARINT)?;
    dst.push(unzigzag32(w.varint()?) as i16);
    Ok(())
}

/// Reads one occurrence of field 3 into `value`, whose variant is already the file's type.
fn read_value(w: &mut Wire<'_>, wire: u8, value: &mut Value) -> Result<(), DecodeError> {
    match value {
        Value::ScalarString(s) => {
            expect(3, wire, WIRE_LEN)?;
            set_string(s, w.bytes()?);
        }
        Value::ScalarShort(x) | Value::ScalarEnum(x) => {
            expect(3, wire, WIRE_VARINT)?;
            *x = unzigzag32(w.varint()?) as i16;
        }
        Value::ScalarFloat(x) => {
            expect(3, wire, WIRE_FIXED32)?;
            *x = f32::from_le_bytes(w.fixed32()?);
        }
        Value::ScalarByte(x) => {
            expect(3, wire, WIRE_LEN)?;
            let b = w.bytes()?;
            *x = *b.first().ok_or(DecodeError::EmptyByte)? as i8;
        }
        Value::ScalarInt(x) => {
            expect(3, wire, WIRE_FIXED32)?;
            *x = i32::from_le_bytes(w.fixed32()?);
        }
        Value::ScalarDouble(x) => {
            expect(3, wire, WIRE_FIXED64)?;
            *x = f64::from_le_bytes(w.fixed64()?);
        }
        Value::VectorString(v) => {
            expect(3, wire, WIRE_LEN)?;
            let mut s = String::new();
            set_string(&mut s, w.bytes()?);
            v.push(s);
        }
        Value::VectorShort(v) | Value::VectorEnum(v) => read_zigzags(w, wire, v)?,
        Value::VectorFloat(v) => read_repeated(w, wire, WIRE_FIXED32, v, f32::from_le_bytes)?,
        Value::VectorInt(v) => read_repeated(w, wire, WIRE_FIXED32, v, i32::from_le_bytes)?,
        Value::VectorDouble(v) => read_repeated(w, wire, WIRE_FIXED64, v, f64::from_le_bytes)?,
        Value::VectorChar(v) | Value::V4GenericBytes(v) => {
            expect(3, wire, WIRE_LEN)?;
            v.clear();
            v.extend_from_slice(w.bytes()?);
        }
    }
    Ok(())
}

/// Makes `value` an empty value of type `t`, keeping its allocation when it already is one.
fn reset_value(value: &mut Value, t: PayloadType) {
    match value {
        Value::VectorString(v) if t == PayloadType::WaveformString => v.clear(),
        Value::VectorShort(v) if t == PayloadType::WaveformShort => v.clear(),
        Value::VectorEnum(v) if t == PayloadType::WaveformEnum => v.clear(),
        Value::VectorFloat(v) if t == PayloadType::WaveformFloat => v.clear(),
        Value::VectorInt(v) if t == PayloadType::WaveformInt => v.clear(),
        Value::VectorDouble(v) if t == PayloadType::WaveformDouble => v.clear(),
        Value::VectorChar(v) if t == PayloadType::WaveformByte => v.clear(),
        Value::V4GenericBytes(v) if t == PayloadType::V4GenericBytes => v.clear(),
        Value::ScalarString(s) if t == PayloadType::ScalarString => s.clear(),
        v if v.payload_type() == t => {}
        v => *v = Value::zero(t),
    }
}

/// The varint at `bytes[pos..]` and the position after it; `None` when it is cut or
/// longer than 5 bytes (the fast path's fields are below 2^32).
#[inline(always)]
fn small_varint(bytes: &[u8], mut pos: usize) -> Option<(u32, usize)> {
    let mut v: u32 = 0;
    for shift in [0u32, 7, 14, 21, 28] {
        let b = *bytes.get(pos)?;
        pos += 1;
        v |= u32::from(b & 0x7F).checked_shl(shift)?;
        if b < 0x80 {
            return Some((v, pos));
        }
    }
    None
}

/// The common layout of a numeric scalar sample, read without the general field loop:
/// `secondsintoyear` (field 1), `nano` (2), `val` (3) with the type's wire type, then
/// optionally `severity` (4) and `status` (5), nothing else, in that order (the order in
/// which the Java appliance and this crate's writer write them). Anything else (other
/// fields, another order, a bad value) is `None`: the general decoder reads it and reports
/// the error. This is the retrieval hot path: every stored sample of a scalar PV goes
/// through it.
#[inline]
fn decode_scalar_fast(
    bytes: &[u8],
    t: PayloadType,
    year_start: i64,
    sample: &mut Sample,
) -> Option<()> {
    if bytes.first() != Some(&0x08) {
        return None;
    }
    let (secs, p) = small_varint(bytes, 1)?;
    if bytes.get(p) != Some(&0x10) {
        return None;
    }
    let (nanos, mut p) = small_varint(bytes, p + 1)?;
    if nanos >= NANOS_PER_SEC {
        return None;
    }
    let value = match t {
        PayloadType::ScalarDouble => {
            if bytes.get(p) != Some(&0x19) {
                return None;
            }
            let v = f64::from_le_bytes(bytes.get(p + 1..p + 9)?.try_into().ok()?);
            p += 9;
            Value::ScalarDouble(v)
        }
        PayloadType::ScalarFloat | PayloadType::ScalarInt => {
            if bytes.get(p) != Some(&0x1D) {
                return None;
            }
            let raw: [u8; 4] = bytes.get(p + 1..p + 5)?.try_into().ok()?;
            p += 5;
            if t == PayloadType::ScalarFloat {
                Value::ScalarFloat(f32::from_le_bytes(raw))
            } else {
                Value::ScalarInt(i32::from_le_bytes(raw))
            }
        }
        PayloadType::ScalarShort | PayloadType::ScalarEnum => {
            if bytes.get(p) != Some(&0x18) {
                return None;
            }
            let (z, q) = small_varint(bytes, p + 1)?;
            p = q;
            let x = unzigzag32(u64::from(z)) as i16;
            if t == PayloadType::ScalarShort {
                Value::ScalarShort(x)
            } else {
                Value::ScalarEnum(x)
            }
        }
        _ => return None,
    };
    let (mut severity, mut status) = (0u32, 0u32);
    if bytes.get(p) == Some(&0x20) {
        (severity, p) = small_varint(bytes, p + 1)?;
    }
    if bytes.get(p) == Some(&0x28) {
        (status, p) = small_varint(bytes, p + 1)?;
    }
    if p != bytes.len() {
        return None;
    }
    sample.time = Timestamp::new(year_start + i64::from(secs), nanos);
    sample.value = value;
    sample.severity = severity as i32;
    sample.status = status as i32;
    sample.repeat_count = None;
    sample.field_values.clear();
    sample.field_actual_change = None;
    sample.user_tag = None;
    Some(())
}

/// Decodes protobuf bytes (already unescaped) of a sample of type `t` in a file whose year
/// starts at `year_start` (epoch seconds) into `sample`, reusing its allocations: scalar
/// samples decode without allocating.
pub fn decode_sample_into(
    bytes: &[u8],
    t: PayloadType,
    year_start: i64,
    sample: &mut Sample,
) -> Result<(), DecodeError> {
    if decode_scalar_fast(bytes, t, year_start, sample).is_some() {
        return Ok(());
    }
    decode_sample_general(bytes, t, year_start, sample)
}

/// [`decode_sample_into`] by the general field loop (any field order, every field).
fn decode_sample_general(
    bytes: &[u8],
    t: PayloadType,
    year_start: i64,
    sample: &mut Sample,
) -> Result<(), DecodeError> {
    reset_value(&mut sample.value, t);
    sample.severity = 0;
    sample.status = 0;
    sample.repeat_count = None;
    sample.field_values.clear();
    sample.field_actual_change = None;
    sample.user_tag = None;
    let (mut secs, mut nanos, mut have_val) = (None, None, false);
    let mut w = Wire::new(bytes);
    while let Some((field, wire)) = w.key()? {
        match field {
            1 => {
                secs = Some(w.varint_field(field, wire)? as u32);
            }
            2 => {
                nanos = Some(w.varint_field(field, wire)? as u32);
            }
            3 => {
                read_value(&mut w, wire, &mut sample.value)?;
                have_val = true;
            }
            4 => {
                sample.severity = w.varint_field(field, wire)? as i32;
            }
            5 => {
                sample.status = w.varint_field(field, wire)? as i32;
            }
            6 => {
                sample.repeat_count = Some(w.varint_field(field, wire)? as u32);
            }
            7 => {
                expect(field, wire, WIRE_LEN)?;
                sample.field_values.push(decode_field_value(w.bytes()?)?);
            }
            8 => {
                sample.field_actual_change = Some(w.varint_field(field, wire)? != 0);
            }
            9 => {
                sample.user_tag = Some(w.varint_field(field, wire)? as u32);
            }
            _ => w.skip(wire)?,
        }
    }
    let secs = secs.ok_or(DecodeError::Missing("secondsintoyear"))?;
    let nanos = nanos.ok_or(DecodeError::Missing("nano"))?;
    if nanos >= NANOS_PER_SEC {
        return Err(DecodeError::BadNanos(nanos));
    }
    if !have_val && (t.is_scalar() || !t.is_waveform() || t == PayloadType::WaveformByte) {
        return Err(DecodeError::Missing("val"));
    }
    sample.time = Timestamp::new(year_start + i64::from(secs), nanos);
    Ok(())
}

/// Decodes a `PayloadInfo` from protobuf bytes (already unescaped).
pub fn decode_payload_info(bytes: &[u8]) -> Result<PayloadInfo, DecodeError> {
    let mut w = Wire::new(bytes);
    let (mut t, mut pv, mut year) = (None, None, None);
    let (mut element_count, mut headers) = (None, Vec::new());
    while let Some((field, wire)) = w.key()? {
        match field {
            1 => {
                let n = w.varint_field(field, wire)?;
                t = Some(
                    i64::try_from(n)
                        .ok()
                        .and_then(PayloadType::from_number)
                        .ok_or(DecodeError::UnknownPayloadType(n))?,
                );
            }
            2 => {
                expect(field, wire, WIRE_LEN)?;
                pv = Some(String::from_utf8_lossy(w.bytes()?).into_owned());
            }
            3 => {
                year = Some(w.varint_field(field, wire)? as i32);
            }
            4 => {
                element_count = Some(w.varint_field(field, wire)? as i32);
            }
            15 => {
                expect(field, wire, WIRE_LEN)?;
                headers.push(decode_field_value(w.bytes()?)?);
            }
            _ => w.skip(wire)?,
        }
    }
    Ok(PayloadInfo {
        payload_type: t.ok_or(DecodeError::Missing("PayloadInfo.type"))?,
        pv_name: pv.ok_or(DecodeError::Missing("PayloadInfo.pvname"))?,
        year: year.ok_or(DecodeError::Missing("PayloadInfo.year"))?,
        element_count,
        headers,
    })
}

/// Decodes one escaped header line (without its newline).
pub fn decode_header_line(line: &[u8]) -> Result<PayloadInfo, DecodeError> {
    let mut scratch = Vec::new();
    decode_payload_info(unescape(line, &mut scratch)?)
}

/// Decodes the escaped sample lines of one file or chunk: it knows the payload type and
/// year from the header and keeps a scratch buffer, so decoding allocates nothing for
/// scalar types.
#[derive(Debug, Clone)]
pub struct LineDecoder {
    payload_type: PayloadType,
    year_start: i64,
    scratch: Vec<u8>,
}

impl LineDecoder {
    /// A decoder for samples of `payload_type` in `year`.
    pub fn new(payload_type: PayloadType, year: i32) -> Self {
        LineDecoder {
            payload_type,
            year_start: start_of_year(year),
            scratch: Vec::new(),
        }
    }

    /// A decoder for the samples under `header`.
    pub fn for_header(header: &PayloadInfo) -> Self {
        Self::new(header.payload_type, header.year)
    }

    /// Decodes one escaped line (without its newline) into `sample`.
    #[inline]
    pub fn decode(&mut self, line: &[u8], sample: &mut Sample) -> Result<(), DecodeError> {
        let bytes = unescape(line, &mut self.scratch)?;
        decode_sample_into(bytes, self.payload_type, self.year_start, sample)
    }

    /// Decodes only the timestamp of an escaped line (used by binary search).
    pub fn decode_time(&mut self, line: &[u8]) -> Result<Timestamp, DecodeError> {
        let bytes = unescape(line, &mut self.scratch)?;
        let mut w = Wire::new(bytes);
        let (mut secs, mut nanos) = (None, None);
        while let Some((field, wire)) = w.key()? {
            match field {
                1 => {
                    secs = Some(w.varint_field(field, wire)? as u32);
                }
                2 => {
                    nanos = Some(w.varint_field(field, wire)? as u32);
                }
                _ => w.skip(wire)?,
            }
            if let (Some(s), Some(n)) = (secs, nanos) {
                if n >= NANOS_PER_SEC {
                    return Err(DecodeError::BadNanos(n));
                }
                return Ok(Timestamp::new(self.year_start + i64::from(s), n));
            }
        }
        Err(DecodeError::Missing(if secs.is_none() {
            "secondsintoyear"
        } else {
            "nano"
        }))
    }

    /// The payload type this decoder expects.
    pub fn payload_type(&self) -> PayloadType {
        self.payload_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths() {
        for v in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            assert_eq!(Wire::new(&out).varint(), Ok(v));
        }
    }

    #[test]
    fn zigzag() {
        for v in [
            0i32,
            -1,
            1,
            i32::from(i16::MIN),
            i32::from(i16::MAX),
            i32::MIN,
            i32::MAX,
        ] {
            assert_eq!(unzigzag32(zigzag32(v)), v);
        }
        assert_eq!(zigzag32(-1), 1);
        assert_eq!(zigzag32(1), 2);
    }

    #[test]
    fn severity_and_status_only_when_nonzero() {
        let mut s = Sample::new(
            Timestamp::new(start_of_year(2020) + 5, 7),
            Value::ScalarInt(-2),
        );
        let mut out = Vec::new();
        encode_sample(&s, 2020, &mut out).unwrap();
        assert_eq!(out, [0x08, 5, 0x10, 7, 0x1D, 0xFE, 0xFF, 0xFF, 0xFF]);
        s.severity = 2;
        s.status = 7;
        out.clear();
        encode_sample(&s, 2020, &mut out).unwrap();
        assert_eq!(&out[9..], [0x20, 2, 0x28, 7]);
    }

    #[test]
    fn outside_year_is_refused() {
        let s = Sample::new(
            Timestamp::new(start_of_year(2021), 0),
            Value::ScalarDouble(1.0),
        );
        let mut out = Vec::new();
        assert!(matches!(
            encode_sample(&s, 2020, &mut out),
            Err(EncodeError::OutsideYear { .. })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn missing_required_fields() {
        let mut s = Sample::new(Timestamp::default(), Value::ScalarDouble(0.0));
        let r = decode_sample_into(&[0x08, 1], PayloadType::ScalarDouble, 0, &mut s);
        assert_eq!(r, Err(DecodeError::Missing("nano")));
        let r = decode_sample_into(&[0x08, 1, 0x10, 1], PayloadType::ScalarDouble, 0, &mut s);
        assert_eq!(r, Err(DecodeError::Missing("val")));
        // an empty waveform is valid: the packed field is simply absent
        let r = decode_sample_into(&[0x08, 1, 0x10, 1], PayloadType::WaveformDouble, 0, &mut s);
        assert_eq!(r, Ok(()));
        assert_eq!(s.value, Value::VectorDouble(vec![]));
    }

    #[test]
    fn unpacked_repeated_numerics_are_accepted() {
        let mut s = Sample::new(Timestamp::default(), Value::ScalarDouble(0.0));
        let bytes = [0x08, 1, 0x10, 1, 0x18, 2, 0x18, 3];
        decode_sample_into(&bytes, PayloadType::WaveformShort, 0, &mut s).unwrap();
        assert_eq!(s.value, Value::VectorShort(vec![1, -2]));
    }
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;
    use proptest::prelude::*;

    const SCALARS: [PayloadType; 5] = [
        PayloadType::ScalarDouble,
        PayloadType::ScalarFloat,
        PayloadType::ScalarInt,
        PayloadType::ScalarShort,
        PayloadType::ScalarEnum,
    ];

    fn value_of(t: PayloadType, x: i64) -> Value {
        match t {
            PayloadType::ScalarDouble => Value::ScalarDouble(x as f64 / 7.0),
            PayloadType::ScalarFloat => Value::ScalarFloat(x as f32 / 3.0),
            PayloadType::ScalarInt => Value::ScalarInt(x as i32),
            PayloadType::ScalarShort => Value::ScalarShort(x as i16),
            _ => Value::ScalarEnum(x as i16),
        }
    }

    proptest! {
        /// Whatever the bytes, when the fast path accepts a line the general decoder gives
        /// the same sample.
        #[test]
        fn fast_path_agrees_with_the_general_decoder_on_any_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            k in 0usize..5,
        ) {
            let t = SCALARS[k];
            let mut fast = Sample::new(Timestamp::new(0, 0), Value::zero(t));
            if decode_scalar_fast(&bytes, t, 1_000, &mut fast).is_some() {
                let mut general = Sample::new(Timestamp::new(0, 0), Value::zero(t));
                decode_sample_general(&bytes, t, 1_000, &mut general).expect("general");
                prop_assert_eq!(fast, general);
            }
        }

        /// Encoded samples (with and without alarm fields) take the fast path and decode
        /// to what was encoded.
        #[test]
        fn encoded_scalars_take_the_fast_path(
            secs in 0i64..31_622_400,
            nanos in 0u32..1_000_000_000,
            x in any::<i64>(),
            severity in 0i32..4,
            status in 0i32..22,
            k in 0usize..5,
        ) {
            let t = SCALARS[k];
            let year_start = archiver_time::calendar::start_of_year(2024);
            let mut s = Sample::new(Timestamp::new(year_start + secs, nanos), value_of(t, x));
            s.severity = severity;
            s.status = status;
            let mut bytes = Vec::new();
            encode_sample(&s, 2024, &mut bytes).expect("encode");
            let mut got = Sample::new(Timestamp::new(0, 0), Value::zero(t));
            prop_assert!(decode_scalar_fast(&bytes, t, year_start, &mut got).is_some());
            prop_assert_eq!(got, s);
        }
    }
}
