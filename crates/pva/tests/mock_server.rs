//! The client against a scripted in-process server: a big-endian server, a type defined
//! with 0xFD, a segmented update, the overrun bitset counted on the
//! channel, and a hostile message (closing the connection, no panic, then a reconnect).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use archiver_pva::proto::Header;
use archiver_pva::types::encode_type;
use archiver_pva::value::{encode_value, lookup};
use archiver_pva::wire::{Reader, Writer};
use archiver_pva::{
    BitSet, ChannelEvent, Client, ClientConfig, FieldDesc, PvRequest, PvValue, ScalarType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const BE: bool = true;

fn msg(cmd: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut w = Writer::new(BE);
    w.put_bytes(&[0xCA, 2, 0x40 | 0x80 | flags, cmd])
        .put_u32(payload.len() as u32)
        .put_bytes(payload);
    w.buf
}

async fn read_msg(s: &mut TcpStream) -> (u8, Vec<u8>, bool) {
    let mut h = [0u8; 8];
    s.read_exact(&mut h).await.unwrap();
    let h = Header::parse(&h).unwrap();
    let mut p = vec![0; h.size as usize];
    s.read_exact(&mut p).await.unwrap();
    (h.command, p, h.big_endian())
}

fn desc() -> FieldDesc {
    archiver_pva::nt::desc::members(
        "test:t",
        vec![
            ("value", FieldDesc::Scalar(ScalarType::F64)),
            ("wave", FieldDesc::ScalarArray(ScalarType::I16)),
        ],
    )
}

/// Answers every search naming a PV with this TCP port.
async fn search_responder(udp: UdpSocket, tcp_port: u16) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, src)) = udp.recv_from(&mut buf).await else {
            return;
        };
        let h = Header::parse(&buf[..8].try_into().unwrap()).unwrap();
        let mut r = Reader::new(&buf[8..n], h.big_endian());
        let seq = r.u32().unwrap();
        r.take(1 + 3 + 16 + 2).unwrap();
        let np = r.size().unwrap();
        for _ in 0..np {
            r.string().unwrap();
        }
        let count = r.u16().unwrap();
        let mut ids = Vec::new();
        for _ in 0..count {
            ids.push(r.u32().unwrap());
            r.string().unwrap();
        }
        let mut w = Writer::new(BE);
        w.put_bytes(&[7; 12])
            .put_u32(seq)
            .put_bytes(&[0; 16])
            .put_u16(tcp_port)
            .put_string("tcp")
            .put_u8(1)
            .put_u16(ids.len() as u16);
        for id in ids {
            w.put_u32(id);
        }
        let _ = udp.send_to(&msg(4, 0, &w.buf), src).await;
    }
}

/// Handshake up to a started monitor; returns (stream, ioid).
async fn serve_until_monitor(s: &mut TcpStream) -> u32 {
    // set byte order (control), then validation
    s.write_all(&msg(2, 0x01, &[])).await.unwrap();
    let mut w = Writer::new(BE);
    w.put_u32(16384)
        .put_u16(0x7fff)
        .put_size(1)
        .put_string("anonymous");
    s.write_all(&msg(1, 0, &w.buf)).await.unwrap();
    let (cmd, p, be) = read_msg(s).await;
    assert_eq!(cmd, 1);
    let mut r = Reader::new(&p, be);
    r.take(8).unwrap();
    assert_eq!(r.string().unwrap(), "anonymous");
    s.write_all(&msg(9, 0, &[0xFF])).await.unwrap();
    // CREATE_CHANNEL
    let (cmd, p, be) = read_msg(s).await;
    assert_eq!(cmd, 7);
    let mut r = Reader::new(&p, be);
    assert_eq!(r.u16().unwrap(), 1);
    let cid = r.u32().unwrap();
    assert_eq!(r.string().unwrap(), "MOCK:PV");
    let mut w = Writer::new(BE);
    w.put_u32(cid).put_u32(77).put_u8(0xFF);
    s.write_all(&msg(7, 0, &w.buf)).await.unwrap();
    // MONITOR INIT
    let (cmd, p, be) = read_msg(s).await;
    assert_eq!(cmd, 13);
    let mut r = Reader::new(&p, be);
    assert_eq!(r.u32().unwrap(), 77);
    let ioid = r.u32().unwrap();
    assert_eq!(r.u8().unwrap() & 0x08, 0x08);
    let mut w = Writer::new(BE);
    w.put_u32(ioid).put_u8(0x08).put_u8(0xFF);
    // define the type as introspection cache entry 3 (0xFD)
    w.put_u8(0xFD).put_u16(3);
    encode_type(&mut w, &desc());
    s.write_all(&msg(13, 0, &w.buf)).await.unwrap();
    let (cmd, p, be) = read_msg(s).await;
    assert_eq!(cmd, 13);
    let mut r = Reader::new(&p, be);
    r.take(8).unwrap();
    assert_eq!(r.u8().unwrap(), 0x44, "START");
    ioid
}

fn update(
    ioid: u32,
    changed: &[usize],
    x: Option<f64>,
    wave: Option<&[i16]>,
    overrun: &[usize],
) -> Vec<u8> {
    let mut w = Writer::new(BE);
    w.put_u32(ioid).put_u8(0);
    let mut c = BitSet::new();
    for b in changed {
        c.set(*b);
    }
    c.encode(&mut w);
    if let Some(x) = x {
        w.put_f64(x);
    }
    if let Some(wv) = wave {
        encode_value(
            &mut w,
            &FieldDesc::ScalarArray(ScalarType::I16),
            &PvValue::I16Array(wv.to_vec()),
        );
    }
    let mut o = BitSet::new();
    for b in overrun {
        o.set(*b);
    }
    o.encode(&mut w);
    w.buf
}

async fn next(rx: &archiver_pva::EventReceiver) -> ChannelEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("event in time")
        .expect("open")
        .kind
}

#[tokio::test]
async fn big_endian_server_segments_overruns_and_a_hostile_message() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_addr: SocketAddr = udp.local_addr().unwrap();
    tokio::spawn(search_responder(udp, tcp_port));
    let cfg = ClientConfig {
        addr_list: vec![udp_addr],
        auto_addr_list: false,
        ..ClientConfig::default()
    };
    let client = Client::new(cfg).await.unwrap();
    let (ch, rx) = client.channel("MOCK:PV").unwrap();
    ch.subscribe(PvRequest::parse("field(value)").unwrap());

    let (mut s, _) = tcp.accept().await.unwrap();
    let ioid = serve_until_monitor(&mut s).await;
    assert!(matches!(next(&rx).await, ChannelEvent::Connected { .. }));

    // a whole update, then one in three segments (bits: 0 top, 1 value, 2 wave)
    s.write_all(&msg(
        13,
        0,
        &update(ioid, &[0], Some(1.5), Some(&[1, 2, 3]), &[]),
    ))
    .await
    .unwrap();
    let whole = update(ioid, &[1], Some(2.5), None, &[1]);
    let (a, rest) = whole.split_at(5);
    let (b, c) = rest.split_at(6);
    let mut seg = msg(13, 0x10, a);
    seg.extend(msg(13, 0x30, b));
    seg.extend(msg(13, 0x20, c));
    s.write_all(&seg).await.unwrap();

    let ChannelEvent::Update { data, .. } = next(&rx).await else {
        panic!()
    };
    assert_eq!(
        lookup(&data.desc, &data.value, "value").unwrap().1,
        &PvValue::F64(1.5)
    );
    drop(data);
    let ChannelEvent::Update { data, .. } = next(&rx).await else {
        panic!()
    };
    assert_eq!(
        lookup(&data.desc, &data.value, "value").unwrap().1,
        &PvValue::F64(2.5)
    );
    assert_eq!(
        lookup(&data.desc, &data.value, "wave").unwrap().1,
        &PvValue::I16Array(vec![1, 2, 3]),
        "unchanged array kept"
    );
    assert!(data.overrun.get(1));
    assert_eq!(ch.overruns(), 1);

    // hostile: an array claiming 2^31 elements
    let mut w = Writer::new(BE);
    w.put_u32(ioid).put_u8(0);
    let mut c = BitSet::new();
    c.set(2);
    c.encode(&mut w);
    w.put_u8(254).put_u32(0x7fff_ffff);
    s.write_all(&msg(13, 0, &w.buf)).await.unwrap();
    assert!(matches!(next(&rx).await, ChannelEvent::Disconnected { .. }));

    // the client searches again, reconnects and re-creates the monitor
    let (mut s2, _) = tokio::time::timeout(Duration::from_secs(5), tcp.accept())
        .await
        .unwrap()
        .unwrap();
    let ioid2 = serve_until_monitor(&mut s2).await;
    assert!(matches!(next(&rx).await, ChannelEvent::Connected { .. }));
    s2.write_all(&msg(13, 0, &update(ioid2, &[0], Some(9.0), Some(&[]), &[])))
        .await
        .unwrap();
    let ChannelEvent::Update { data, .. } = next(&rx).await else {
        panic!()
    };
    assert_eq!(
        lookup(&data.desc, &data.value, "value").unwrap().1,
        &PvValue::F64(9.0)
    );
    drop(s);
}

#[tokio::test]
async fn a_silent_server_is_dropped_after_the_connection_timeout() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_addr: SocketAddr = udp.local_addr().unwrap();
    tokio::spawn(search_responder(udp, tcp_port));
    let cfg = ClientConfig {
        addr_list: vec![udp_addr],
        auto_addr_list: false,
        conn_tmo: Duration::from_secs(2),
        ..ClientConfig::default()
    };
    let client = Client::new(cfg).await.unwrap();
    let (ch, rx) = client.channel("MOCK:PV").unwrap();
    ch.subscribe(PvRequest::parse("field(value)").unwrap());
    let (mut s, _) = tcp.accept().await.unwrap();
    serve_until_monitor(&mut s).await;
    assert!(matches!(next(&rx).await, ChannelEvent::Connected { .. }));
    // the server now reads (echo requests, every 1 s) but never answers: dead after 2-3 s
    let t = std::time::Instant::now();
    let reader = tokio::spawn(async move {
        let mut sink = vec![0u8; 1024];
        let mut echoes = 0;
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 {
                break;
            }
            echoes += 1;
        }
        echoes
    });
    assert!(matches!(next(&rx).await, ChannelEvent::Disconnected { .. }));
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(reader.await.unwrap() >= 1, "no echo request was sent");
}
