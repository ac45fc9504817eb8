//! pvAccess messages: the 8-byte header, the commands this client sends and the replies
//! it parses, and the pvRequest a client attaches to GET and MONITOR. Free of I/O.
//!
//! Header (pvAccess spec, "Message header"): magic 0xCA, version, flags, command, then a
//! 32-bit payload size in the flagged byte order. Flags: 0x01 control message (the size
//! field is then a value and no payload follows), 0x30 segmentation (0x10 first, 0x30
//! middle, 0x20 last), 0x40 sent by a server, 0x80 big-endian.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use crate::error::DecodeError;
use crate::types::{FieldDesc, ScalarType, encode_type};
use crate::value::{PvValue, encode_value};
use crate::wire::{Reader, Writer};

/// Protocol version this client announces (pvxs sends 2).
pub const VERSION: u8 = 2;

/// Header flag: control message.
pub const FLAG_CONTROL: u8 = 0x01;
/// Header flags: segmentation mask.
pub const FLAG_SEGMENT_MASK: u8 = 0x30;
/// Header flag: first segment.
pub const FLAG_SEGMENT_FIRST: u8 = 0x10;
/// Header flag: last segment.
pub const FLAG_SEGMENT_LAST: u8 = 0x20;
/// Header flag: sent by a server.
pub const FLAG_SERVER: u8 = 0x40;
/// Header flag: big-endian payload.
pub const FLAG_BIG_ENDIAN: u8 = 0x80;

/// Application command numbers (pvAccess spec, "Application messages").
#[allow(missing_docs)]
pub mod cmd {
    pub const BEACON: u8 = 0;
    pub const CONNECTION_VALIDATION: u8 = 1;
    pub const ECHO: u8 = 2;
    pub const SEARCH: u8 = 3;
    pub const SEARCH_RESPONSE: u8 = 4;
    pub const CREATE_CHANNEL: u8 = 7;
    pub const DESTROY_CHANNEL: u8 = 8;
    pub const CONNECTION_VALIDATED: u8 = 9;
    pub const GET: u8 = 10;
    pub const MONITOR: u8 = 13;
    pub const DESTROY_REQUEST: u8 = 15;
    pub const GET_FIELD: u8 = 17;
    pub const MESSAGE: u8 = 18;
    pub const ORIGIN_TAG: u8 = 22;
}

/// Request sub-command bits.
#[allow(missing_docs)]
pub mod sub {
    pub const INIT: u8 = 0x08;
    pub const DESTROY: u8 = 0x10;
    pub const START: u8 = 0x44;
    pub const PIPELINE: u8 = 0x80;
}

/// A parsed message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Protocol version of the sender.
    pub version: u8,
    /// Flags (see the `FLAG_*` constants).
    pub flags: u8,
    /// Command number.
    pub command: u8,
    /// Payload size (or, for a control message, its value).
    pub size: u32,
}

impl Header {
    /// Parses 8 bytes.
    ///
    /// Errors: [`DecodeError::Header`] when the magic byte is not 0xCA.
    pub fn parse(b: &[u8; 8]) -> Result<Header, DecodeError> {
        if b[0] != 0xCA {
            return Err(DecodeError::Header("magic byte is not 0xCA"));
        }
        let s = [b[4], b[5], b[6], b[7]];
        let be = b[2] & FLAG_BIG_ENDIAN != 0;
        Ok(Header {
            version: b[1],
            flags: b[2],
            command: b[3],
            size: if be {
                u32::from_be_bytes(s)
            } else {
                u32::from_le_bytes(s)
            },
        })
    }

    /// True when the payload is big-endian.
    pub fn big_endian(&self) -> bool {
        self.flags & FLAG_BIG_ENDIAN != 0
    }

    /// True for a control message.
    pub fn is_control(&self) -> bool {
        self.flags & FLAG_CONTROL != 0
    }
}

/// Starts a client message: a writer (little-endian) holding the header with a size to be
/// patched by [`finish`].
pub fn begin(command: u8) -> Writer {
    let mut w = Writer::new(false);
    w.put_bytes(&[0xCA, VERSION, 0, command]).put_u32(0);
    w
}

/// Patches the payload size of a message started with [`begin`] and returns its bytes.
pub fn finish(mut w: Writer) -> Vec<u8> {
    let n = u32::try_from(w.buf.len().saturating_sub(8)).unwrap_or(u32::MAX);
    w.buf[4..8].copy_from_slice(&n.to_le_bytes());
    w.buf
}

/// A 16-byte IPv6 (or IPv4-mapped) address as the protocol carries it.
pub fn read_addr(r: &mut Reader<'_>) -> Result<IpAddr, DecodeError> {
    let b = r.take(16)?;
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    let v6 = Ipv6Addr::from(a);
    Ok(match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    })
}

/// A SEARCH datagram for `names` (`(search id, name)`), asking replies to `reply_port`
/// (0: to the source port). `unicast` sets flag 0x80, which tells a server that got the
/// datagram on a unicast address to forward it to the other servers of its host.
pub fn search(seq: u32, reply_port: u16, unicast: bool, names: &[(u32, &str)]) -> Vec<u8> {
    let mut w = begin(cmd::SEARCH);
    w.put_u32(seq)
        .put_u8(if unicast { 0x80 } else { 0 })
        .put_bytes(&[0, 0, 0])
        .put_bytes(&[0; 16])
        .put_u16(reply_port)
        .put_size(1)
        .put_string("tcp")
        .put_u16(u16::try_from(names.len()).unwrap_or(u16::MAX));
    for (id, n) in names.iter().take(usize::from(u16::MAX)) {
        w.put_u32(*id).put_string(n);
    }
    finish(w)
}

/// A parsed SEARCH_RESPONSE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchReply {
    /// The server's GUID.
    pub guid: [u8; 12],
    /// The server's TCP address (the datagram's source address when it sent 0.0.0.0).
    pub server: SocketAddr,
    /// True when the server has the names.
    pub found: bool,
    /// The search ids answered.
    pub ids: Vec<u32>,
}

/// A parsed BEACON (command 0x00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beacon {
    /// The server's GUID (new at each start of the server process).
    pub guid: [u8; 12],
    /// The server's TCP address (the datagram's source address when it sent 0.0.0.0).
    pub server: SocketAddr,
}

/// Parses a BEACON payload received from `src`: GUID (12 bytes), flags, sequence and
/// change count (4 bytes, unused, as pvxs), address (16), port, protocol; the trailing
/// server status is ignored.
///
/// Errors: truncated payload.
pub fn parse_beacon(payload: &[u8], be: bool, src: SocketAddr) -> Result<Beacon, DecodeError> {
    let mut r = Reader::new(payload, be);
    let mut guid = [0u8; 12];
    guid.copy_from_slice(r.take(12)?);
    r.take(4)?;
    let mut ip = read_addr(&mut r)?;
    if ip.is_unspecified() {
        ip = src.ip();
    }
    let port = r.u16()?;
    let _proto = r.string()?;
    Ok(Beacon {
        guid,
        server: SocketAddr::new(ip, port),
    })
}

/// A BEACON datagram (as a server sends it; for tests and tools): `server` 0.0.0.0 means
/// "my source address".
pub fn beacon(guid: [u8; 12], seq: u8, server: SocketAddr) -> Vec<u8> {
    let ip = match server.ip() {
        IpAddr::V4(v4) => mapped(v4),
        IpAddr::V6(v6) => v6.octets(),
    };
    let mut w = Writer::new(false);
    w.put_bytes(&[0xCA, VERSION, FLAG_SERVER, cmd::BEACON])
        .put_u32(0);
    w.put_bytes(&guid)
        .put_u8(0)
        .put_u8(seq)
        .put_u16(0)
        .put_bytes(&ip)
        .put_u16(server.port())
        .put_string("tcp")
        .put_u8(0xFF); // no server status (a null field)
    finish(w)
}

/// Size of the ORIGIN_TAG prefix (header and a 16-byte address).
pub const ORIGIN_TAG_SIZE: usize = 8 + 16;
/// Flag of a SEARCH sent to a unicast address.
pub const SEARCH_UNICAST: u8 = 0x80;
/// The local multicast group pvAccess peers on one host forward unicast searches to
/// (pvxs and pvAccessCPP join it on the loopback interface).
pub const LOCAL_MCAST: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 128);

/// When `datagram` (received from `src` on a socket bound to the shared UDP port, sent to
/// `dst` when known) is one SEARCH sent to a unicast address, the message to send to
/// [`LOCAL_MCAST`] so every pvAccess server on this host sees it: an ORIGIN_TAG naming
/// `dst` (0.0.0.0 when unknown: then only servers listening on every interface answer)
/// followed by the search with its unicast flag cleared and its reply address set to `src`
/// when it said 0.0.0.0. `None` for anything else.
///
/// Why: several processes bind EPICS_PVA_BROADCAST_PORT (SO_REUSEADDR) to hear
/// broadcasts, but the kernel gives a unicast datagram to one of them only, the last one
/// bound; a client listening for beacons would otherwise swallow unicast searches meant
/// for a server on the same host. pvxs's UDPCollector (`forwardM`) does the same.
pub fn forward_unicast_search(
    datagram: &[u8],
    src: SocketAddr,
    dst: Option<Ipv4Addr>,
) -> Option<Vec<u8>> {
    let head: &[u8; 8] = datagram.get(..8)?.try_into().ok()?;
    let h = Header::parse(head).ok()?;
    // header, sequence, flags, 3 reserved, the reply address (16), port
    let body = 8 + 4 + 1 + 3 + 16 + 2;
    if h.command != cmd::SEARCH
        || h.is_control()
        || h.flags & FLAG_SEGMENT_MASK != 0
        || h.size as usize + 8 != datagram.len()
        || datagram.len() < body
        || datagram[12] & SEARCH_UNICAST == 0
    {
        return None;
    }
    let IpAddr::V4(src_ip) = src.ip() else {
        return None;
    };
    let mut out = Vec::with_capacity(ORIGIN_TAG_SIZE + datagram.len());
    out.extend_from_slice(&[0xCA, VERSION, 0, cmd::ORIGIN_TAG]);
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&dst.map_or([0; 16], mapped));
    out.extend_from_slice(datagram);
    let s = ORIGIN_TAG_SIZE;
    out[s + 12] &= !SEARCH_UNICAST;
    if out[s + 16..s + 32].iter().all(|b| *b == 0)
        || out[s + 16..s + 32] == mapped(Ipv4Addr::UNSPECIFIED)
    {
        out[s + 16..s + 32].copy_from_slice(&mapped(src_ip));
    }
    Some(out)
}

/// Parses a SEARCH_RESPONSE payload received from `src`.
///
/// Errors: truncated payload; a protocol other than "tcp" gives `found == false`.
pub fn parse_search_reply(
    payload: &[u8],
    be: bool,
    src: SocketAddr,
) -> Result<SearchReply, DecodeError> {
    let mut r = Reader::new(payload, be);
    let mut guid = [0u8; 12];
    guid.copy_from_slice(r.take(12)?);
    let _seq = r.u32()?;
    let mut ip = read_addr(&mut r)?;
    if ip.is_unspecified() {
        ip = src.ip();
    }
    let port = r.u16()?;
    let proto = r.string()?;
    let found = r.u8()? != 0 && proto == "tcp";
    let n = r.u16()?;
    let mut ids = Vec::with_capacity(usize::from(n).min(r.remaining() / 4));
    for _ in 0..n {
        ids.push(r.u32()?);
    }
    Ok(SearchReply {
        guid,
        server: SocketAddr::new(ip, port),
        found,
        ids,
    })
}

/// The CONNECTION_VALIDATION reply: buffer size, registry size, QoS, "anonymous" auth with
/// a null credential (what pvxs sends when no "ca" is offered).
pub fn validation_reply(auth: &str) -> Vec<u8> {
    let mut w = begin(cmd::CONNECTION_VALIDATION);
    w.put_u32(0x10000)
        .put_u16(0x7fff)
        .put_u16(0)
        .put_string(auth);
    if auth == "ca" {
        let cred = FieldDesc::structure(
            "",
            vec![
                (
                    "user".into(),
                    Arc::new(FieldDesc::Scalar(ScalarType::String)),
                ),
                (
                    "host".into(),
                    Arc::new(FieldDesc::Scalar(ScalarType::String)),
                ),
            ],
        );
        encode_type(&mut w, &cred);
        let user = std::env::var("USER").unwrap_or_else(|_| "archiver".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        encode_value(
            &mut w,
            &cred,
            &PvValue::Structure(vec![PvValue::String(user), PvValue::String(host)]),
        );
    } else {
        w.put_u8(0xFF);
    }
    finish(w)
}

/// Picks the auth method from a server's CONNECTION_VALIDATION payload ("ca" if offered,
/// else "anonymous", as pvxs does).
pub fn parse_validation(payload: &[u8], be: bool) -> Result<&'static str, DecodeError> {
    let mut r = Reader::new(payload, be);
    r.take(6)?;
    let n = r.count(1)?;
    let mut ca = false;
    for _ in 0..n {
        ca |= r.string()? == "ca";
    }
    Ok(if ca { "ca" } else { "anonymous" })
}

/// CREATE_CHANNEL for one channel.
pub fn create_channel(cid: u32, name: &str) -> Vec<u8> {
    let mut w = begin(cmd::CREATE_CHANNEL);
    w.put_u16(1).put_u32(cid).put_string(name);
    finish(w)
}

/// DESTROY_CHANNEL.
pub fn destroy_channel(sid: u32, cid: u32) -> Vec<u8> {
    let mut w = begin(cmd::DESTROY_CHANNEL);
    w.put_u32(sid).put_u32(cid);
    finish(w)
}

/// DESTROY_REQUEST.
pub fn destroy_request(sid: u32, ioid: u32) -> Vec<u8> {
    let mut w = begin(cmd::DESTROY_REQUEST);
    w.put_u32(sid).put_u32(ioid);
    finish(w)
}

/// GET_FIELD for the whole structure.
pub fn get_field(sid: u32, ioid: u32) -> Vec<u8> {
    let mut w = begin(cmd::GET_FIELD);
    w.put_u32(sid).put_u32(ioid).put_string("");
    finish(w)
}

/// GET or MONITOR INIT with a pvRequest; a pipelined monitor also sends its queue size.
pub fn op_init(command: u8, sid: u32, ioid: u32, req: &PvRequest) -> Vec<u8> {
    let mut w = begin(command);
    let pipeline = command == cmd::MONITOR && req.pipeline;
    w.put_u32(sid)
        .put_u32(ioid)
        .put_u8(sub::INIT | if pipeline { sub::PIPELINE } else { 0 });
    encode_type(&mut w, &req.desc);
    encode_value(&mut w, &req.desc, &req.value);
    if pipeline {
        w.put_u32(req.queue_size);
    }
    finish(w)
}

/// A request message with only a sub-command (GET exec 0x00, MONITOR start 0x44).
pub fn op_sub(command: u8, sid: u32, ioid: u32, subcmd: u8) -> Vec<u8> {
    let mut w = begin(command);
    w.put_u32(sid).put_u32(ioid).put_u8(subcmd);
    finish(w)
}

/// A pipelined monitor's acknowledgement of `n` updates.
pub fn monitor_ack(sid: u32, ioid: u32, n: u32) -> Vec<u8> {
    let mut w = begin(cmd::MONITOR);
    w.put_u32(sid)
        .put_u32(ioid)
        .put_u8(sub::PIPELINE)
        .put_u32(n);
    finish(w)
}

/// An ECHO request.
pub fn echo() -> Vec<u8> {
    finish(begin(cmd::ECHO))
}

/// A pvRequest: which fields a GET/MONITOR asks for, and the record options.
///
/// Syntax (the subset of pvData's `CreateRequest` that archivers use):
/// `field(a,b.c)record[queueSize=4,pipeline=true]`; both parts optional; the empty string
/// asks for the whole structure.
#[derive(Clone, Debug, PartialEq)]
pub struct PvRequest {
    /// Its type.
    pub desc: FieldDesc,
    /// Its value.
    pub value: PvValue,
    /// `record[pipeline=true]`: flow-controlled monitor (acks every `queue_size / 2`).
    pub pipeline: bool,
    /// `record[queueSize=N]` (default 4).
    pub queue_size: u32,
}

impl PvRequest {
    /// The request for the whole structure (`field()`; what the Java appliance monitors).
    pub fn all() -> PvRequest {
        let desc = FieldDesc::structure("", Vec::new());
        PvRequest {
            value: PvValue::Structure(Vec::new()),
            desc,
            pipeline: false,
            queue_size: 4,
        }
    }

    /// Parses the request syntax above.
    ///
    /// Errors: unbalanced brackets, empty field names, a bad `queueSize`.
    pub fn parse(text: &str) -> Result<PvRequest, crate::PvaError> {
        let bad = |m: &str| crate::PvaError::InvalidArgument(format!("pvRequest {text:?}: {m}"));
        let mut fields: Vec<Vec<String>> = Vec::new();
        let mut options: Vec<(String, String)> = Vec::new();
        let mut rest = text.trim();
        // A bare member list (`value,alarm`) is `field(value,alarm)`, as pvget reads it.
        let bare;
        if !rest.is_empty() && !rest.contains(['(', ')', '[', ']']) {
            bare = format!("field({rest})");
            rest = &bare;
        }
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("field(") {
                let end = r.find(')').ok_or_else(|| bad("missing ')'"))?;
                for f in r[..end].split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    let path: Vec<String> = f.split('.').map(|p| p.trim().to_string()).collect();
                    if path.iter().any(|p| p.is_empty()) {
                        return Err(bad("empty field name"));
                    }
                    fields.push(path);
                }
                rest = r[end + 1..].trim_start();
            } else if let Some(r) = rest.strip_prefix("record[") {
                let end = r.find(']').ok_or_else(|| bad("missing ']'"))?;
                for o in r[..end].split(',').map(str::trim).filter(|o| !o.is_empty()) {
                    let (k, v) = o.split_once('=').ok_or_else(|| bad("option without '='"))?;
                    options.push((k.trim().to_string(), v.trim().to_string()));
                }
                rest = r[end + 1..].trim_start();
            } else {
                return Err(bad("expected field(...) or record[...]"));
            }
        }
        let mut queue_size = 4;
        let mut pipeline = false;
        for (k, v) in &options {
            match k.as_str() {
                "queueSize" => {
                    queue_size = v
                        .parse::<u32>()
                        .ok()
                        .filter(|q| *q >= 1)
                        .ok_or_else(|| bad("queueSize must be a positive integer"))?
                }
                "pipeline" => pipeline = v == "true",
                _ => {}
            }
        }
        // the type: structure { field: structure {...paths}, record: { _options: {...} } }
        fn tree(paths: &[Vec<String>]) -> FieldDesc {
            let mut names: Vec<&str> = Vec::new();
            for p in paths {
                if let Some(h) = p.first()
                    && !names.contains(&h.as_str())
                {
                    names.push(h);
                }
            }
            let members = names
                .into_iter()
                .map(|n| {
                    let sub: Vec<Vec<String>> = paths
                        .iter()
                        .filter(|p| p.first().map(String::as_str) == Some(n))
                        .map(|p| p[1..].to_vec())
                        .filter(|p| !p.is_empty())
                        .collect();
                    (n.to_string(), Arc::new(tree(&sub)))
                })
                .collect();
            FieldDesc::structure("", members)
        }
        let mut top = Vec::new();
        if !fields.is_empty() {
            top.push(("field".to_string(), Arc::new(tree(&fields))));
        }
        let mut opt_vals = Vec::new();
        if !options.is_empty() {
            let opts = FieldDesc::structure(
                "",
                options
                    .iter()
                    .map(|(k, _)| (k.clone(), Arc::new(FieldDesc::Scalar(ScalarType::String))))
                    .collect(),
            );
            opt_vals = options
                .iter()
                .map(|(_, v)| PvValue::String(v.clone()))
                .collect();
            top.push((
                "record".to_string(),
                Arc::new(FieldDesc::structure(
                    "",
                    vec![("_options".to_string(), Arc::new(opts))],
                )),
            ));
        }
        let desc = FieldDesc::structure("", top);
        let mut value = PvValue::default_for(&desc);
        if !opt_vals.is_empty()
            && let PvValue::Structure(m) = &mut value
            && let Some(PvValue::Structure(rec)) = m.last_mut()
        {
            rec[0] = PvValue::Structure(opt_vals);
        }
        Ok(PvRequest {
            desc,
            value,
            pipeline,
            queue_size,
        })
    }
}

/// The IPv4 address as a 16-byte IPv4-mapped IPv6 address.
pub fn mapped(ip: Ipv4Addr) -> [u8; 16] {
    ip.to_ipv6_mapped().octets()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{TypeCache, decode_type};
    use crate::value::decode_value;

    #[test]
    fn header_round_trip() {
        let m = echo();
        let h = Header::parse(&m[..8].try_into().unwrap()).unwrap();
        assert_eq!((h.command, h.size, h.big_endian()), (cmd::ECHO, 0, false));
        let mut b = [0xCA, 2, 0xC0, 4, 0, 0, 1, 0];
        assert_eq!(Header::parse(&b).unwrap().size, 256);
        b[0] = 0;
        assert!(Header::parse(&b).is_err());
    }

    #[test]
    fn search_reply_parses_and_falls_back_to_the_source_address() {
        let mut w = Writer::new(true);
        w.put_bytes(&[1; 12])
            .put_u32(5)
            .put_bytes(&[0; 16])
            .put_u16(5075);
        w.put_string("tcp")
            .put_u8(1)
            .put_u16(2)
            .put_u32(10)
            .put_u32(11);
        let src: SocketAddr = "127.0.0.1:5076".parse().unwrap();
        let r = parse_search_reply(&w.buf, true, src).unwrap();
        assert_eq!(r.server, "127.0.0.1:5075".parse().unwrap());
        assert!(r.found);
        assert_eq!(r.ids, vec![10, 11]);
        assert!(parse_search_reply(&w.buf[..20], true, src).is_err());
    }

    #[test]
    fn beacon_round_trip_and_truncation() {
        let src: SocketAddr = "10.0.0.7:41000".parse().unwrap();
        let m = beacon([7; 12], 3, "0.0.0.0:5075".parse().unwrap());
        let h = Header::parse(&m[..8].try_into().unwrap()).unwrap();
        assert_eq!((h.command, h.size as usize), (cmd::BEACON, m.len() - 8));
        let b = parse_beacon(&m[8..], h.big_endian(), src).unwrap();
        assert_eq!(b.guid, [7; 12]);
        // 0.0.0.0: the source address, the beacon's port
        assert_eq!(b.server, "10.0.0.7:5075".parse().unwrap());
        let m = beacon([1; 12], 0, "10.0.0.9:5999".parse().unwrap());
        let b = parse_beacon(&m[8..], false, src).unwrap();
        assert_eq!(b.server, "10.0.0.9:5999".parse().unwrap());
        for n in 0..m.len() - 8 - 2 {
            assert!(parse_beacon(&m[8..8 + n], false, src).is_err(), "{n} bytes");
        }
    }

    #[test]
    fn a_unicast_search_is_forwarded_with_an_origin_tag_and_a_reply_address() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let m = search(9, 40000, true, &[(1, "A"), (2, "BB")]);
        let f = forward_unicast_search(&m, src, None).unwrap();
        assert_eq!(f.len(), ORIGIN_TAG_SIZE + m.len());
        let h = Header::parse(&f[..8].try_into().unwrap()).unwrap();
        assert_eq!((h.command, h.size), (cmd::ORIGIN_TAG, 16));
        assert_eq!(&f[8..24], &[0; 16]);
        let g = forward_unicast_search(&m, src, Some(Ipv4Addr::new(10, 1, 2, 3))).unwrap();
        assert_eq!(&g[8..24], &mapped(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(&g[24..], &f[24..]);
        let fwd = &f[ORIGIN_TAG_SIZE..];
        // the same search, flag cleared, reply address filled in
        assert_eq!(fwd[12], 0);
        assert_eq!(&fwd[16..32], &mapped(Ipv4Addr::LOCALHOST));
        assert_eq!(&fwd[32..], &m[32..]);
        assert_eq!(&fwd[..12], &m[..12]);
        // broadcast searches, other commands, truncated or padded datagrams: not forwarded
        assert!(forward_unicast_search(&search(9, 0, false, &[(1, "A")]), src, None).is_none());
        assert!(forward_unicast_search(&echo(), src, None).is_none());
        assert!(forward_unicast_search(&m[..m.len() - 1], src, None).is_none());
        assert!(forward_unicast_search(&m[..20], src, None).is_none());
        let mut padded = m.clone();
        padded.push(0);
        assert!(forward_unicast_search(&padded, src, None).is_none());
        assert!(forward_unicast_search(&m, "[::1]:40000".parse().unwrap(), None).is_none());
    }

    #[test]
    fn pvrequest_builds_the_nested_structure() {
        let r = PvRequest::parse(
            "field(value,alarm,timeStamp.nanoseconds)record[queueSize=8,pipeline=true]",
        )
        .unwrap();
        assert!(r.pipeline);
        assert_eq!(r.queue_size, 8);
        assert!(r.desc.lookup("field.timeStamp.nanoseconds").is_some());
        assert!(r.desc.lookup("record._options.queueSize").is_some());
        // encodes and decodes
        let mut w = Writer::new(false);
        encode_type(&mut w, &r.desc);
        encode_value(&mut w, &r.desc, &r.value);
        let mut rd = Reader::new(&w.buf, false);
        let mut c = TypeCache::new();
        let d = decode_type(&mut rd, &mut c).unwrap().unwrap();
        let mut v = PvValue::default_for(&d);
        decode_value(&mut rd, &mut c, &d, &mut v).unwrap();
        assert_eq!(v, r.value);
        assert_eq!(PvRequest::parse("").unwrap(), PvRequest::all());
        assert!(PvRequest::parse("field(value").is_err());
        assert!(PvRequest::parse("record[queueSize=0]").is_err());
        assert!(PvRequest::parse("bogus)").is_err());
        // a bare member list, as pvget takes it
        assert_eq!(
            PvRequest::parse("value,alarm").unwrap(),
            PvRequest::parse("field(value,alarm)").unwrap()
        );
    }
}
