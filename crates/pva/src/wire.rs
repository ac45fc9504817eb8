//! Primitive pvData/pvAccess encoding: a bounds-checked [`Reader`] and a [`Writer`], both
//! in either byte order, with the protocol's size, string and status encodings.
//!
//! Sizes (pvAccess spec, "Sizes"): one byte below 254; 254 followed by a 32-bit size;
//! 255 is "null" (only where allowed: strings from pvAccessJava, union selectors).
//!
//! The reader carries a *budget* of nodes it may allocate while decoding one message,
//! proportional to the message length: a hostile server can make a few bytes reference a
//! large cached type (`0xFE id`), and without the budget a short message could make the
//! decoder build millions of nodes.

use crate::error::DecodeError;

/// Budget granted per message byte (plus [`BUDGET_BASE`]); see the module docs.
pub const BUDGET_PER_BYTE: usize = 4;
/// Budget granted to every message regardless of its length.
pub const BUDGET_BASE: usize = 4096;

/// Reads pvData from one message, never beyond its end.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    be: bool,
    budget: usize,
}

macro_rules! get_num {
    ($name:ident, $t:ty) => {
        #[doc = concat!("Reads a `", stringify!($t), "` in the message byte order.")]
        pub fn $name(&mut self) -> Result<$t, DecodeError> {
            let b = self.take(std::mem::size_of::<$t>())?;
            let mut a = [0u8; std::mem::size_of::<$t>()];
            a.copy_from_slice(b);
            Ok(if self.be {
                <$t>::from_be_bytes(a)
            } else {
                <$t>::from_le_bytes(a)
            })
        }
    };
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `be` is true for big-endian (header flag 0x80).
    pub fn new(buf: &'a [u8], be: bool) -> Self {
        Reader {
            buf,
            pos: 0,
            be,
            budget: BUDGET_BASE.saturating_add(buf.len().saturating_mul(BUDGET_PER_BYTE)),
        }
    }

    /// True when the message is big-endian.
    pub fn big_endian(&self) -> bool {
        self.be
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The unread rest of the message.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Spends `n` units of the allocation budget.
    pub fn spend(&mut self, n: usize) -> Result<(), DecodeError> {
        match self.budget.checked_sub(n) {
            Some(b) => {
                self.budget = b;
                Ok(())
            }
            None => Err(DecodeError::Budget("message creates too many nodes")),
        }
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                need: n,
                at: self.pos,
                have: self.buf.len(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// Reads a signed byte.
    pub fn i8(&mut self) -> Result<i8, DecodeError> {
        Ok(self.u8()? as i8)
    }

    get_num!(u16, u16);
    get_num!(i16, i16);
    get_num!(u32, u32);
    get_num!(i32, i32);
    get_num!(u64, u64);
    get_num!(i64, i64);
    get_num!(f32, f32);
    get_num!(f64, f64);

    /// Reads a size; `None` for the null size (255), which only some fields allow.
    pub fn opt_size(&mut self) -> Result<Option<usize>, DecodeError> {
        match self.u8()? {
            255 => Ok(None),
            254 => {
                let n = self.u32()?;
                usize::try_from(n)
                    .map(Some)
                    .map_err(|_| DecodeError::BadSize(u64::from(n)))
            }
            n => Ok(Some(usize::from(n))),
        }
    }

    /// Reads a non-null size.
    pub fn size(&mut self) -> Result<usize, DecodeError> {
        self.opt_size()?.ok_or(DecodeError::BadSize(255))
    }

    /// Reads a count of elements each at least `min_elem` bytes long, refusing counts the
    /// rest of the message cannot hold (so no allocation is ever larger than the message).
    pub fn count(&mut self, min_elem: usize) -> Result<usize, DecodeError> {
        let n = self.size()?;
        if n.saturating_mul(min_elem) > self.remaining() {
            return Err(DecodeError::BadSize(n as u64));
        }
        Ok(n)
    }

    /// Reads a string into `out` (cleared first; invalid UTF-8 is replaced, as a string
    /// must never fail a whole update). A null size reads as the empty string.
    pub fn string_into(&mut self, out: &mut String) -> Result<(), DecodeError> {
        out.clear();
        let n = self.opt_size()?.unwrap_or(0);
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => out.push_str(s),
            Err(_) => out.push_str(&String::from_utf8_lossy(b)),
        }
        Ok(())
    }

    /// Reads a string.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let mut s = String::new();
        self.string_into(&mut s)?;
        Ok(s)
    }

    /// Reads a status (pvAccess "Status"): `None` for OK, else `(type, message)` with
    /// type 0 OK, 1 warning, 2 error, 3 fatal. The stack trace is read and dropped.
    pub fn status(&mut self) -> Result<Option<(u8, String)>, DecodeError> {
        let t = self.u8()?;
        if t == 255 {
            return Ok(None);
        }
        let msg = self.string()?;
        let _trace = self.opt_size()?.map(|n| self.take(n)).transpose()?;
        Ok(Some((t, msg)))
    }
}

/// True for a status that is OK or a warning.
pub fn status_ok(s: &Option<(u8, String)>) -> bool {
    s.as_ref().is_none_or(|(t, _)| *t <= 1)
}

/// Writes pvData in one byte order.
#[derive(Debug, Clone)]
pub struct Writer {
    /// The bytes written.
    pub buf: Vec<u8>,
    be: bool,
}

macro_rules! put_num {
    ($name:ident, $t:ty) => {
        #[doc = concat!("Writes a `", stringify!($t), "`.")]
        pub fn $name(&mut self, v: $t) -> &mut Self {
            if self.be {
                self.buf.extend_from_slice(&v.to_be_bytes());
            } else {
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
            self
        }
    };
}

impl Writer {
    /// An empty writer; `be` selects big-endian.
    pub fn new(be: bool) -> Self {
        Writer {
            buf: Vec::new(),
            be,
        }
    }

    /// True when big-endian.
    pub fn big_endian(&self) -> bool {
        self.be
    }

    /// Writes one byte.
    pub fn put_u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    put_num!(put_u16, u16);
    put_num!(put_i16, i16);
    put_num!(put_u32, u32);
    put_num!(put_i32, i32);
    put_num!(put_u64, u64);
    put_num!(put_i64, i64);
    put_num!(put_f32, f32);
    put_num!(put_f64, f64);

    /// Writes a size (must fit 32 bits; larger saturates, which no caller produces).
    pub fn put_size(&mut self, n: usize) -> &mut Self {
        if n < 254 {
            self.put_u8(n as u8)
        } else {
            self.put_u8(254)
                .put_u32(u32::try_from(n).unwrap_or(u32::MAX))
        }
    }

    /// Writes a string.
    pub fn put_string(&mut self, s: &str) -> &mut Self {
        self.put_size(s.len());
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    /// Writes raw bytes.
    pub fn put_bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip_in_both_orders() {
        for be in [false, true] {
            for n in [0usize, 1, 253, 254, 255, 70000] {
                let mut w = Writer::new(be);
                w.put_size(n);
                let mut r = Reader::new(&w.buf, be);
                assert_eq!(r.size().unwrap(), n);
                assert_eq!(r.remaining(), 0);
            }
        }
    }

    #[test]
    fn null_size_and_truncation_are_errors_not_panics() {
        let mut r = Reader::new(&[255], false);
        assert_eq!(r.size(), Err(DecodeError::BadSize(255)));
        let mut r = Reader::new(&[254, 1, 0], false);
        assert!(matches!(r.size(), Err(DecodeError::Truncated { .. })));
        let mut r = Reader::new(&[5, b'a'], false);
        assert!(r.string().is_err());
        // a count larger than the message holds is refused before allocating
        let mut r = Reader::new(&[254, 0xff, 0xff, 0xff, 0x7f], false);
        assert_eq!(r.count(8), Err(DecodeError::BadSize(0x7fff_ffff)));
    }

    #[test]
    fn numbers_follow_the_byte_order() {
        let mut r = Reader::new(&[0, 0, 0, 1], true);
        assert_eq!(r.u32().unwrap(), 1);
        let mut r = Reader::new(&[0, 0, 0, 1], false);
        assert_eq!(r.u32().unwrap(), 1 << 24);
    }

    #[test]
    fn status_ok_error_and_null_string() {
        let mut r = Reader::new(&[255], false);
        assert_eq!(r.status().unwrap(), None);
        let mut w = Writer::new(false);
        w.put_u8(2).put_string("bad").put_u8(255);
        let mut r = Reader::new(&w.buf, false);
        let s = r.status().unwrap();
        assert_eq!(s, Some((2, "bad".to_string())));
        assert!(!status_ok(&s));
    }
}
