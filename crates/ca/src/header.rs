//! The CA message header: 16 bytes, or 24 bytes in the extended ("large array") form.
//!
//! Layout (all big-endian): `u16 command, u16 payload size, u16 data type, u16 count,
//! u32 parameter 1, u32 parameter 2`. When the payload size field is `0xFFFF` two more
//! `u32`s follow: the real payload size and the real element count. Payloads are always
//! zero-padded to a multiple of 8.

use crate::error::ProtocolError;

/// Command numbers (the `command` header field).
pub mod cmd {
    /// VERSION: protocol handshake; first message of every search datagram.
    pub const VERSION: u16 = 0;
    /// EVENT_ADD: subscribe (request) and monitor update (reply).
    pub const EVENT_ADD: u16 = 1;
    /// EVENT_CANCEL: cancel a subscription (acknowledged with an empty EVENT_ADD).
    pub const EVENT_CANCEL: u16 = 2;
    /// READ (obsolete).
    pub const READ: u16 = 3;
    /// WRITE without notification.
    pub const WRITE: u16 = 4;
    /// SEARCH: name resolution.
    pub const SEARCH: u16 = 6;
    /// EVENTS_OFF: flow control, stop sending monitor updates.
    pub const EVENTS_OFF: u16 = 8;
    /// EVENTS_ON: flow control, resume monitor updates.
    pub const EVENTS_ON: u16 = 9;
    /// READ_SYNC (obsolete).
    pub const READ_SYNC: u16 = 10;
    /// ERROR: the server reports a failed request.
    pub const ERROR: u16 = 11;
    /// CLEAR_CHANNEL: destroy a channel.
    pub const CLEAR_CHANNEL: u16 = 12;
    /// RSRV_IS_UP: server beacon.
    pub const RSRV_IS_UP: u16 = 13;
    /// NOT_FOUND: negative search reply.
    pub const NOT_FOUND: u16 = 14;
    /// READ_NOTIFY: read with a reply.
    pub const READ_NOTIFY: u16 = 15;
    /// REPEATER_CONFIRM: the repeater accepted a registration.
    pub const REPEATER_CONFIRM: u16 = 17;
    /// CREATE_CHAN: create a channel on a circuit.
    pub const CREATE_CHAN: u16 = 18;
    /// WRITE_NOTIFY: write with a completion reply.
    pub const WRITE_NOTIFY: u16 = 19;
    /// CLIENT_NAME: the user name of the client.
    pub const CLIENT_NAME: u16 = 20;
    /// HOST_NAME: the host name of the client.
    pub const HOST_NAME: u16 = 21;
    /// ACCESS_RIGHTS: read/write permission of a channel.
    pub const ACCESS_RIGHTS: u16 = 22;
    /// ECHO: circuit liveness probe.
    pub const ECHO: u16 = 23;
    /// REPEATER_REGISTER: a client registers with the beacon repeater.
    pub const REPEATER_REGISTER: u16 = 24;
    /// CREATE_CH_FAIL: the server refused CREATE_CHAN.
    pub const CREATE_CH_FAIL: u16 = 26;
    /// SERVER_DISCONN: the server dropped a channel.
    pub const SERVER_DISCONN: u16 = 27;
}

/// Protocol major revision.
pub const CA_MAJOR: u16 = 4;
/// Our protocol minor revision.
pub const CA_MINOR: u16 = 13;
/// Search flag: the server must not answer NOT_FOUND (what libca sends over UDP).
pub const DONT_REPLY: u16 = 5;
/// Search flag: the server should answer NOT_FOUND.
pub const DO_REPLY: u16 = 10;

/// One decoded CA message header (standard or extended form).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Command number, see [`cmd`].
    pub command: u16,
    /// Payload size in bytes (a multiple of 8 on the wire).
    pub payload_size: u32,
    /// Data type, or a per-command overloaded field.
    pub data_type: u16,
    /// Element count, or a per-command overloaded field.
    pub count: u32,
    /// Parameter 1 (CID, SID, status, ...).
    pub param1: u32,
    /// Parameter 2 (CID, SID, IOID, SUBID, ...).
    pub param2: u32,
}

/// Size of the standard header.
pub const HEADER_SIZE: usize = 16;
/// Size of the extended header.
pub const EXT_HEADER_SIZE: usize = 24;

/// Rounds `n` up to the next multiple of 8.
pub const fn padded_len(n: usize) -> usize {
    (n + 7) & !7
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Header {
    /// A header with only the command set.
    pub const fn new(command: u16) -> Self {
        Header {
            command,
            payload_size: 0,
            data_type: 0,
            count: 0,
            param1: 0,
            param2: 0,
        }
    }

    /// Whether this header needs the extended (24-byte) form on the wire.
    pub const fn needs_extended(&self) -> bool {
        self.payload_size >= 0xFFFF || self.count >= 0xFFFF
    }

    /// Bytes this header occupies on the wire.
    pub const fn encoded_len(&self) -> usize {
        if self.needs_extended() {
            EXT_HEADER_SIZE
        } else {
            HEADER_SIZE
        }
    }

    /// Appends the header (standard or extended form as needed) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.command.to_be_bytes());
        if self.needs_extended() {
            out.extend_from_slice(&0xFFFFu16.to_be_bytes());
            out.extend_from_slice(&self.data_type.to_be_bytes());
            out.extend_from_slice(&0u16.to_be_bytes());
            out.extend_from_slice(&self.param1.to_be_bytes());
            out.extend_from_slice(&self.param2.to_be_bytes());
            out.extend_from_slice(&self.payload_size.to_be_bytes());
            out.extend_from_slice(&self.count.to_be_bytes());
        } else {
            // needs_extended() is false, so both fit in u16
            out.extend_from_slice(&(self.payload_size as u16).to_be_bytes());
            out.extend_from_slice(&self.data_type.to_be_bytes());
            out.extend_from_slice(&(self.count as u16).to_be_bytes());
            out.extend_from_slice(&self.param1.to_be_bytes());
            out.extend_from_slice(&self.param2.to_be_bytes());
        }
    }

    /// Decodes a header from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header, otherwise the
    /// header and how many bytes it used (16 or 24). Validity of the payload size
    /// (alignment, limits) is checked by the caller, which knows the transport.
    pub fn decode(buf: &[u8]) -> Option<(Header, usize)> {
        if buf.len() < HEADER_SIZE {
            return None;
        }
        let size16 = be_u16(buf, 2);
        let mut h = Header {
            command: be_u16(buf, 0),
            payload_size: u32::from(size16),
            data_type: be_u16(buf, 4),
            count: u32::from(be_u16(buf, 6)),
            param1: be_u32(buf, 8),
            param2: be_u32(buf, 12),
        };
        if size16 != 0xFFFF {
            return Some((h, HEADER_SIZE));
        }
        if buf.len() < EXT_HEADER_SIZE {
            return None;
        }
        h.payload_size = be_u32(buf, 16);
        h.count = be_u32(buf, 20);
        Some((h, EXT_HEADER_SIZE))
    }

    /// Checks the payload size of a received TCP message against alignment and `max`.
    pub fn check_payload(&self, max: usize) -> Result<usize, ProtocolError> {
        let size = self.payload_size as usize;
        if !size.is_multiple_of(8) {
            return Err(ProtocolError::Misaligned {
                command: self.command,
                size: self.payload_size,
            });
        }
        if size > max {
            return Err(ProtocolError::TooLarge {
                command: self.command,
                size: self.payload_size,
                max,
            });
        }
        Ok(size)
    }
}

/// Appends one whole message: the header (with `payload_size` set to the padded length
/// of `payload`) followed by `payload` and its zero padding.
pub fn push_message(out: &mut Vec<u8>, mut header: Header, payload: &[u8]) {
    let padded = padded_len(payload.len());
    header.payload_size = padded as u32;
    header.encode(out);
    out.extend_from_slice(payload);
    out.resize(out.len() + (padded - payload.len()), 0);
}

/// Appends a message whose payload is a NUL-terminated string (PV name, user, host).
pub fn push_string_message(out: &mut Vec<u8>, mut header: Header, s: &[u8]) {
    let padded = padded_len(s.len() + 1);
    header.payload_size = padded as u32;
    header.encode(out);
    out.extend_from_slice(s);
    out.resize(out.len() + (padded - s.len()), 0);
}

/// Reads a NUL-terminated string from a payload (stopping at the payload end).
pub fn payload_str(payload: &[u8]) -> &[u8] {
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    &payload[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .filter(|t| *t != "|")
            .map(|t| u8::from_str_radix(t, 16).expect("hex"))
            .collect()
    }

    #[test]
    fn version_header_worked_example() {
        let mut h = Header::new(cmd::VERSION);
        h.count = 13;
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out, hex("00 00 00 00 00 00 00 0d 00 00 00 00 00 00 00 00"));
    }

    #[test]
    fn create_chan_worked_example() {
        let mut h = Header::new(cmd::CREATE_CHAN);
        h.param1 = 1;
        h.param2 = 13;
        let mut out = Vec::new();
        push_string_message(&mut out, h, b"SIM:AI:0");
        assert_eq!(
            out,
            hex("00 12 | 00 10 | 00 00 | 00 00 | 00 00 00 01 | 00 00 00 0d
                 53 49 4d 3a 41 49 3a 30 00 00 00 00 00 00 00 00")
        );
    }

    #[test]
    fn decode_create_chan_reply() {
        let b = hex("00 12 00 00 00 06 00 01 00 00 00 01 00 00 00 2a");
        let (h, n) = Header::decode(&b).expect("complete");
        assert_eq!(n, 16);
        assert_eq!(h.command, cmd::CREATE_CHAN);
        assert_eq!(h.data_type, 6);
        assert_eq!(h.count, 1);
        assert_eq!(h.param1, 1);
        assert_eq!(h.param2, 42);
    }

    #[test]
    fn extended_roundtrip() {
        let h = Header {
            command: cmd::EVENT_ADD,
            payload_size: 800_016,
            data_type: 20,
            count: 100_000,
            param1: 1,
            param2: 7,
        };
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(out.len(), 24);
        assert_eq!(&out[2..4], &[0xff, 0xff]);
        assert_eq!(&out[6..8], &[0, 0]);
        assert_eq!(Header::decode(&out[..20]), None);
        assert_eq!(Header::decode(&out), Some((h, 24)));
    }

    #[test]
    fn extended_when_count_reaches_ffff() {
        let h = Header {
            count: 0xFFFF,
            ..Header::new(cmd::READ_NOTIFY)
        };
        assert!(h.needs_extended());
        let h = Header {
            count: 0xFFFE,
            payload_size: 0xFFF8,
            ..Header::new(1)
        };
        assert!(!h.needs_extended());
    }

    #[test]
    fn check_payload_rejects_misaligned_and_large() {
        let h = Header {
            payload_size: 12,
            ..Header::new(1)
        };
        assert!(matches!(
            h.check_payload(1000),
            Err(ProtocolError::Misaligned { .. })
        ));
        let h = Header {
            payload_size: 2048,
            ..Header::new(1)
        };
        assert!(matches!(
            h.check_payload(1024),
            Err(ProtocolError::TooLarge { .. })
        ));
        assert_eq!(
            Header {
                payload_size: 16,
                ..Header::new(1)
            }
            .check_payload(16)
            .ok(),
            Some(16)
        );
    }

    #[test]
    fn short_buffer_is_incomplete() {
        assert_eq!(Header::decode(&[0; 15]), None);
    }

    #[test]
    fn payload_str_stops_at_nul_or_end() {
        assert_eq!(payload_str(b"abc\0\0\0\0\0"), b"abc");
        assert_eq!(payload_str(b"abcdefgh"), b"abcdefgh");
    }
}
