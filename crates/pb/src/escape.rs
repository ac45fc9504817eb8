//! Line escaping of the Java appliance (`LineEscaper`).
//!
//! Each serialized message is one line ending in `0x0A`, so the bytes of the message are
//! escaped: `0x1B → 1B 01`, `0x0A → 1B 02`, `0x0D → 1B 03`. Unescaping is lenient as in
//! Java: `1B xx` for any other `xx` gives `xx`; only a lone trailing `1B` is an error.

/// The escape byte.
pub const ESCAPE: u8 = 0x1B;
/// The line terminator.
pub const NEWLINE: u8 = 0x0A;
/// Carriage return, escaped too.
pub const CARRIAGE_RETURN: u8 = 0x0D;

/// A line ended with a lone escape byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line ends with a lone escape byte (0x1B)")]
pub struct TrailingEscape;

/// Appends `src`, escaped, to `out`. The appended bytes never contain `0x0A` or `0x0D`.
pub fn escape_into(src: &[u8], out: &mut Vec<u8>) {
    out.reserve(src.len() + src.len() / 8 + 2);
    let mut rest = src;
    while let Some(i) = memchr::memchr3(ESCAPE, NEWLINE, CARRIAGE_RETURN, rest) {
        out.extend_from_slice(&rest[..i]);
        let code = match rest[i] {
            ESCAPE => 1,
            NEWLINE => 2,
            _ => 3,
        };
        out.extend_from_slice(&[ESCAPE, code]);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// True when `bytes` holds any byte that escaping changes.
#[inline]
pub fn needs_escape(bytes: &[u8]) -> bool {
    memchr::memchr3(ESCAPE, NEWLINE, CARRIAGE_RETURN, bytes).is_some()
}

/// Escapes the bytes of `buf` from `start` to its end in place (through `scratch`).
/// Used by encoders that serialize straight into an output buffer.
pub fn escape_tail_in_place(buf: &mut Vec<u8>, start: usize, scratch: &mut Vec<u8>) {
    if !needs_escape(&buf[start..]) {
        return;
    }
    scratch.clear();
    scratch.extend_from_slice(&buf[start..]);
    buf.truncate(start);
    escape_into(scratch, buf);
}

/// Appends `src`, unescaped, to `out`.
pub fn unescape_into(src: &[u8], out: &mut Vec<u8>) -> Result<(), TrailingEscape> {
    out.reserve(src.len());
    let mut rest = src;
    while let Some(i) = memchr::memchr(ESCAPE, rest) {
        out.extend_from_slice(&rest[..i]);
        let Some(&code) = rest.get(i + 1) else {
            return Err(TrailingEscape);
        };
        out.push(match code {
            1 => ESCAPE,
            2 => NEWLINE,
            3 => CARRIAGE_RETURN,
            other => other,
        });
        rest = &rest[i + 2..];
    }
    out.extend_from_slice(rest);
    Ok(())
}

/// The unescaped form of `line`: the line itself when it holds no escape byte (the common
/// case, no copy), else the unescaped bytes in `scratch`.
#[inline]
pub fn unescape<'a>(line: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<&'a [u8], TrailingEscape> {
    if memchr::memchr(ESCAPE, line).is_none() {
        return Ok(line);
    }
    scratch.clear();
    unescape_into(line, scratch)?;
    Ok(scratch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_escapes() {
        let mut out = Vec::new();
        escape_into(&[0x1B, 0x0A, 0x0D, 0x41, 0x0A], &mut out);
        assert_eq!(out, [0x1B, 1, 0x1B, 2, 0x1B, 3, 0x41, 0x1B, 2]);
        let mut back = Vec::new();
        unescape_into(&out, &mut back).unwrap();
        assert_eq!(back, [0x1B, 0x0A, 0x0D, 0x41, 0x0A]);
    }

    #[test]
    fn lenient_unescape_and_trailing_escape() {
        let mut out = Vec::new();
        unescape_into(&[0x1B, 0x41, 0x42], &mut out).unwrap();
        assert_eq!(out, b"AB");
        out.clear();
        assert_eq!(unescape_into(&[0x41, 0x1B], &mut out), Err(TrailingEscape));
    }

    #[test]
    fn in_place_tail() {
        let mut buf = b"head".to_vec();
        buf.extend_from_slice(&[1, 0x0A, 2]);
        let mut scratch = Vec::new();
        escape_tail_in_place(&mut buf, 4, &mut scratch);
        assert_eq!(buf, b"head\x01\x1b\x02\x02");
        let mut scratch2 = Vec::new();
        assert_eq!(unescape(b"plain", &mut scratch2).unwrap(), b"plain");
    }
}
