//! The TCP virtual circuit: one per server, shared by all channels on that server.
//!
//! A circuit task owns the socket's read half and the per-circuit tables (channels by
//! CID, monitor routes by SUBID, pending reads/writes by IOID); a small writer task owns
//! the write half so a slow server can never block reading. Monitor updates are decoded
//! here and pushed straight into each channel's queue. The task ends when the socket
//! closes, the server breaks the protocol, or the circuit stays silent for
//! EPICS_CA_CONN_TMO (an ECHO is sent after half of it); every connected channel then
//! gets a `Disconnected` event and the client context searches for them again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

use crate::channel::{ChannelShared, ConnInfo, DbrRequest, SubSpec};
use crate::codec;
use crate::config::ClientConfig;
use crate::dbr::{DbfType, DbrClass, DbrType};
use crate::error::{CaError, ProtocolError};
use crate::event::{ChannelEvent, Event, SubscriptionId};
use crate::header::{CA_MINOR, Header, cmd, payload_str, push_message, push_string_message};
use crate::status::{AccessRights, EcaStatus};
use crate::value::{Dbr, Timestamp, Value};

/// Commands from the client context to a circuit.
#[derive(Debug)]
pub(crate) enum CircCmd {
    Create {
        shared: Arc<ChannelShared>,
        subs: Vec<SubSpec>,
    },
    Clear {
        cid: u32,
    },
    Subscribe {
        cid: u32,
        spec: SubSpec,
    },
    Unsubscribe {
        cid: u32,
        id: SubscriptionId,
    },
    Read {
        cid: u32,
        request: DbrRequest,
        count: Option<u32>,
        reply: oneshot::Sender<Result<Dbr, CaError>>,
    },
    Write {
        cid: u32,
        value: Value,
        reply: oneshot::Sender<Result<(), CaError>>,
    },
}

/// Reports from a circuit to the client context.
#[derive(Debug)]
pub(crate) enum CircEvent {
    /// CREATE_CHAN failed or the server dropped the channel: search again later.
    ChannelLost { circuit: u64, cid: u32 },
    /// The circuit is gone; every channel on it must be searched again.
    Down { circuit: u64 },
}

/// The context's handle on a running circuit.
#[derive(Debug)]
pub(crate) struct CircuitHandle {
    pub id: u64,
    pub tx: mpsc::UnboundedSender<CircCmd>,
}

struct Chan {
    shared: Arc<ChannelShared>,
    sid: Option<u32>,
    native: DbfType,
    count: u32,
    access: AccessRights,
    subs: Vec<SubSpec>,
}

struct Route {
    cid: u32,
    ty: DbrType,
    count: u32,
    scalar: bool,
    shared: Arc<ChannelShared>,
}

enum Pending {
    Read {
        ty: DbrType,
        scalar: bool,
        reply: oneshot::Sender<Result<Dbr, CaError>>,
    },
    Write {
        reply: oneshot::Sender<Result<(), CaError>>,
    },
}

impl Pending {
    fn is_closed(&self) -> bool {
        match self {
            Pending::Read { reply, .. } => reply.is_closed(),
            Pending::Write { reply } => reply.is_closed(),
        }
    }

    fn fail(self, e: CaError) {
        match self {
            Pending::Read { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Pending::Write { reply } => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// Starts a circuit task for `server`.
pub(crate) fn spawn(
    id: u64,
    server: SocketAddr,
    cfg: Arc<ClientConfig>,
    events: mpsc::UnboundedSender<CircEvent>,
) -> CircuitHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut c = Circuit::new(id, server, cfg, events.clone());
        let reason = c.run(rx).await;
        tracing::info!(%server, reason = %reason, "CA circuit closed");
        c.close(&reason);
        let _ = events.send(CircEvent::Down { circuit: id });
    });
    CircuitHandle { id, tx }
}

struct Circuit {
    id: u64,
    server: SocketAddr,
    cfg: Arc<ClientConfig>,
    max_payload: usize,
    server_minor: u16,
    chans: HashMap<u32, Chan>,
    routes: HashMap<u32, Route>,
    pending: HashMap<u32, Pending>,
    next_ioid: u32,
    out: Vec<u8>,
    events: mpsc::UnboundedSender<CircEvent>,
}

impl Circuit {
    fn new(
        id: u64,
        server: SocketAddr,
        cfg: Arc<ClientConfig>,
        events: mpsc::UnboundedSender<CircEvent>,
    ) -> Self {
        let max_payload = cfg.max_array_bytes.saturating_add(1024);
        Circuit {
            id,
            server,
            cfg,
            max_payload,
            server_minor: 0,
            chans: HashMap::new(),
            routes: HashMap::new(),
            pending: HashMap::new(),
            next_ioid: 1,
            out: Vec::with_capacity(4096),
            events,
        }
    }

    async fn connect(&self) -> Result<TcpStream, String> {
        let s = tokio::time::timeout(self.cfg.conn_tmo, TcpStream::connect(self.server))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect failed: {e}"))?;
        let _ = s.set_nodelay(true);
        let _ = socket2::SockRef::from(&s).set_keepalive(true);
        Ok(s)
    }

    async fn run(&mut self, mut rx: mpsc::UnboundedReceiver<CircCmd>) -> String {
        let stream = match self.connect().await {
            Ok(s) => s,
            Err(e) => {
                // take the channels that were queued so the context re-searches them
                while let Ok(c) = rx.try_recv() {
                    self.command(c);
                }
                return e;
            }
        };
        let (mut rd, wr) = stream.into_split();
        let (wtx, wrx) = mpsc::unbounded_channel::<Vec<u8>>();
        let mut writer = tokio::spawn(write_loop(wr, wrx));

        let mut v = Header::new(cmd::VERSION);
        v.count = u32::from(CA_MINOR);
        v.encode(&mut self.out);
        push_string_message(
            &mut self.out,
            Header::new(cmd::CLIENT_NAME),
            self.cfg.user_name.as_bytes(),
        );
        push_string_message(
            &mut self.out,
            Header::new(cmd::HOST_NAME),
            self.cfg.host_name.as_bytes(),
        );

        let mut rbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut last_rx = Instant::now();
        let mut echo_sent = false;
        let tick_every =
            (self.cfg.conn_tmo / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if !self.out.is_empty() {
                let chunk = std::mem::replace(&mut self.out, Vec::with_capacity(4096));
                if wtx.send(chunk).is_err() {
                    return "writer stopped".into();
                }
            }
            if rbuf.capacity() - rbuf.len() < 16 * 1024 {
                rbuf.reserve(64 * 1024);
            }
            tokio::select! {
                r = rd.read_buf(&mut rbuf) => {
                    match r {
                        Ok(0) => return "closed by server".into(),
                        Ok(_) => {
                            last_rx = Instant::now();
                            echo_sent = false;
                            match self.process(&mut rbuf).await {
                                Ok(()) => {}
                                Err(e) => return format!("protocol error: {e}"),
                            }
                        }
                        Err(e) => return format!("read error: {e}"),
                    }
                }
                c = rx.recv() => match c {
                    Some(c) => self.command(c),
                    None => return "client shut down".into(),
                },
                _ = tick.tick() => {
                    let idle = last_rx.elapsed();
                    // checked once per tick, so give up one tick early: a silent
                    // circuit is reported within EPICS_CA_CONN_TMO of its last message
                    if idle + tick_every >= self.cfg.conn_tmo {
                        return format!("unresponsive for {:.1} s (EPICS_CA_CONN_TMO)", idle.as_secs_f64());
                    }
                    if idle >= self.cfg.conn_tmo / 2 && !echo_sent {
                        Header::new(cmd::ECHO).encode(&mut self.out);
                        echo_sent = true;
                    }
                    self.pending.retain(|_, p| !p.is_closed());
                }
                w = &mut writer => {
                    return match w {
                        Ok(Err(e)) => format!("write error: {e}"),
                        _ => "writer stopped".into(),
                    };
                }
            }
        }
    }

    /// Processes every complete message in `buf`, keeping a partial one.
    async fn process(&mut self, buf: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let mut at = 0;
        let result = loop {
            let Some((h, hl)) = Header::decode(&buf[at..]) else {
                break Ok(());
            };
            let size = match h.check_payload(self.max_payload) {
                Ok(s) => s,
                Err(e) => break Err(e),
            };
            if buf.len() - at < hl + size {
                // make room for the whole message (bounded by max_payload)
                buf.reserve(hl + size);
                break Ok(());
            }
            let start = at + hl;
            at = start + size;
            if let Err(e) = self.message(h, &buf[start..at]).await {
                break Err(e);
            }
        };
        buf.drain(..at);
        result
    }

    async fn message(&mut self, h: Header, payload: &[u8]) -> Result<(), ProtocolError> {
        match h.command {
            cmd::EVENT_ADD => self.monitor_update(h, payload).await,
            cmd::VERSION => {
                self.server_minor = h.count as u16;
                if self.server_minor < 4 && self.server_minor != 0 {
                    return Err(ProtocolError::OldServer(self.server_minor));
                }
            }
            cmd::ACCESS_RIGHTS => self.access_rights(h.param1, AccessRights::from_bits(h.param2)),
            cmd::CREATE_CHAN => self.created(h)?,
            cmd::CREATE_CH_FAIL | cmd::SERVER_DISCONN => self.channel_lost(h.param1),
            cmd::READ_NOTIFY => self.read_reply(h, payload),
            cmd::WRITE_NOTIFY => {
                if let Some(Pending::Write { reply }) = self.pending.remove(&h.param2) {
                    let st = EcaStatus(h.param1);
                    let _ = reply.send(if st.is_success() {
                        Ok(())
                    } else {
                        Err(CaError::Server {
                            what: "write",
                            status: st,
                        })
                    });
                }
            }
            cmd::ERROR => self.error_message(h, payload),
            cmd::ECHO
            | cmd::CLEAR_CHANNEL
            | cmd::EVENT_CANCEL
            | cmd::READ_SYNC
            | cmd::EVENTS_OFF
            | cmd::EVENTS_ON
            | cmd::NOT_FOUND
            | cmd::SEARCH
            | cmd::RSRV_IS_UP
            | cmd::READ => {}
            other => return Err(ProtocolError::UnexpectedCommand(other)),
        }
        Ok(())
    }

    async fn monitor_update(&mut self, h: Header, payload: &[u8]) {
        if h.payload_size == 0 {
            return; // EVENT_CANCEL acknowledgement
        }
        let Some(route) = self.routes.get(&h.param2) else {
            return;
        };
        let sub = SubscriptionId(h.param2);
        let status = EcaStatus(h.param1);
        let kind = if !status.is_success() {
            ChannelEvent::SubscriptionError { sub, status }
        } else {
            let decoded = if route.scalar && h.count == 1 && h.data_type == route.ty.to_u16() {
                codec::decode_scalar_fast(route.ty, payload)
            } else {
                match DbrType::from_u16(h.data_type) {
                    Ok(ty) => codec::decode(ty, h.count, payload, route.scalar),
                    Err(e) => Err(e),
                }
            };
            match decoded {
                Ok(data) => ChannelEvent::Value { sub, data },
                Err(e) => {
                    tracing::warn!(server = %self.server, pv = %route.shared.name, error = %e, "undecodable monitor update");
                    ChannelEvent::SubscriptionError {
                        sub,
                        status: EcaStatus::BADTYPE,
                    }
                }
            }
        };
        let shared = &route.shared;
        shared
            .queue
            .send_value(
                Event {
                    key: shared.key,
                    kind,
                },
                &shared.dropped,
            )
            .await;
    }

    fn access_rights(&mut self, cid: u32, access: AccessRights) {
        let Some(ch) = self.chans.get_mut(&cid) else {
            return;
        };
        let changed = ch.access != access;
        ch.access = access;
        if ch.sid.is_some() && changed {
            ch.shared.conn.send_modify(|c| {
                if let Some(c) = c {
                    c.access = access;
                }
            });
            ch.shared
                .queue
                .push_state(ch.shared.key, ChannelEvent::AccessRights(access));
        }
    }

    fn created(&mut self, h: Header) -> Result<(), ProtocolError> {
        let cid = h.param1;
        let sid = h.param2;
        let Some(ch) = self.chans.get_mut(&cid) else {
            // a channel cleared while its creation was in flight
            self.out_header(Header {
                param1: sid,
                param2: cid,
                ..Header::new(cmd::CLEAR_CHANNEL)
            });
            return Ok(());
        };
        if ch.sid.is_some() {
            // a duplicate reply: the channel is already connected
            return Ok(());
        }
        let native = DbfType::from_u16(h.data_type)?;
        ch.sid = Some(sid);
        ch.native = native;
        ch.count = h.count;
        let info = ConnInfo {
            native,
            count: h.count,
            server: self.server,
            access: ch.access,
            server_minor: self.server_minor,
        };
        ch.shared.conn.send_replace(Some(info));
        ch.shared.queue.push_state(
            ch.shared.key,
            ChannelEvent::Connected {
                native,
                count: h.count,
                server: self.server,
                access: ch.access,
            },
        );
        let subs = ch.subs.clone();
        for s in subs {
            self.event_add(cid, s);
        }
        Ok(())
    }

    fn channel_lost(&mut self, cid: u32) {
        let Some(ch) = self.chans.remove(&cid) else {
            return;
        };
        self.routes.retain(|_, r| r.cid != cid);
        if ch.sid.is_some() {
            ch.shared.conn.send_replace(None);
            ch.shared.queue.push_state(
                ch.shared.key,
                ChannelEvent::Disconnected {
                    at: Timestamp::now(),
                },
            );
        }
        let _ = self.events.send(CircEvent::ChannelLost {
            circuit: self.id,
            cid,
        });
    }

    fn read_reply(&mut self, h: Header, payload: &[u8]) {
        let Some(p) = self.pending.remove(&h.param2) else {
            return;
        };
        let Pending::Read { ty, scalar, reply } = p else {
            p.fail(CaError::Protocol {
                server: self.server,
                error: ProtocolError::UnexpectedCommand(h.command),
            });
            return;
        };
        let st = EcaStatus(h.param1);
        let r = if !st.is_success() {
            Err(CaError::Server {
                what: "read",
                status: st,
            })
        } else if h.data_type != ty.to_u16() {
            Err(CaError::Decode(crate::error::DecodeError::UnsupportedType(
                h.data_type,
            )))
        } else {
            codec::decode(ty, h.count, payload, scalar).map_err(CaError::from)
        };
        let _ = reply.send(r);
    }

    fn error_message(&mut self, h: Header, payload: &[u8]) {
        let status = EcaStatus(h.param2);
        let Some((orig, hl)) = Header::decode(payload) else {
            return;
        };
        let text =
            String::from_utf8_lossy(payload_str(&payload[hl.min(payload.len())..])).into_owned();
        tracing::warn!(server = %self.server, %status, command = orig.command, %text, "CA server error");
        match orig.command {
            cmd::EVENT_ADD => {
                if let Some(r) = self.routes.get(&orig.param2) {
                    let shared = &r.shared;
                    shared.queue.push_state(
                        shared.key,
                        ChannelEvent::SubscriptionError {
                            sub: SubscriptionId(orig.param2),
                            status,
                        },
                    );
                }
            }
            cmd::READ_NOTIFY | cmd::WRITE_NOTIFY => {
                if let Some(p) = self.pending.remove(&orig.param2) {
                    p.fail(CaError::Server {
                        what: "request",
                        status,
                    });
                }
            }
            cmd::CREATE_CHAN => self.channel_lost(orig.param1),
            _ => {}
        }
    }

    fn out_header(&mut self, h: Header) {
        h.encode(&mut self.out);
    }

    /// Resolves the element count of a request on a connected channel.
    fn request_count(&self, ty: DbrType, native_count: u32, count: Option<u32>) -> u32 {
        let want = match count {
            None => native_count,
            Some(0) if self.server_minor >= 13 => 0,
            Some(0) => native_count,
            Some(n) => n.min(native_count.max(1)),
        };
        let cap = ty.max_count(self.cfg.max_array_bytes).max(1) as u32;
        if want > cap {
            tracing::warn!(server = %self.server, want, cap, "request count clamped to EPICS_CA_MAX_ARRAY_BYTES");
        }
        want.min(cap)
    }

    fn event_add(&mut self, cid: u32, spec: SubSpec) {
        let Some(ch) = self.chans.get(&cid) else {
            return;
        };
        let Some(sid) = ch.sid else { return };
        let ty = spec.sub.request.resolve(ch.native);
        let count = self.request_count(ty, ch.count, spec.sub.count);
        let route = Route {
            cid,
            ty,
            count,
            scalar: ch.count == 1,
            shared: ch.shared.clone(),
        };
        self.routes.insert(spec.id.0, route);
        let mut payload = [0u8; 16];
        payload[12..14].copy_from_slice(&spec.sub.mask.to_be_bytes());
        let h = Header {
            data_type: ty.to_u16(),
            count,
            param1: sid,
            param2: spec.id.0,
            ..Header::new(cmd::EVENT_ADD)
        };
        push_message(&mut self.out, h, &payload);
    }

    fn command(&mut self, c: CircCmd) {
        match c {
            CircCmd::Create { shared, subs } => {
                let cid = shared.cid;
                let name = shared.name.clone();
                self.chans.insert(
                    cid,
                    Chan {
                        shared,
                        sid: None,
                        native: DbfType::Double,
                        count: 0,
                        access: AccessRights::default(),
                        subs,
                    },
                );
                let h = Header {
                    param1: cid,
                    param2: u32::from(CA_MINOR),
                    ..Header::new(cmd::CREATE_CHAN)
                };
                push_string_message(&mut self.out, h, name.as_bytes());
            }
            CircCmd::Clear { cid } => {
                if let Some(ch) = self.chans.remove(&cid) {
                    self.routes.retain(|_, r| r.cid != cid);
                    if let Some(sid) = ch.sid {
                        self.out_header(Header {
                            param1: sid,
                            param2: cid,
                            ..Header::new(cmd::CLEAR_CHANNEL)
                        });
                    }
                }
            }
            CircCmd::Subscribe { cid, spec } => {
                if let Some(ch) = self.chans.get_mut(&cid) {
                    ch.subs.push(spec);
                    self.event_add(cid, spec);
                }
            }
            CircCmd::Unsubscribe { cid, id } => {
                if let Some(ch) = self.chans.get_mut(&cid) {
                    ch.subs.retain(|s| s.id != id);
                    let sid = ch.sid;
                    if let (Some(r), Some(sid)) = (self.routes.remove(&id.0), sid) {
                        let h = Header {
                            data_type: r.ty.to_u16(),
                            count: r.count,
                            param1: sid,
                            param2: id.0,
                            ..Header::new(cmd::EVENT_CANCEL)
                        };
                        self.out_header(h);
                    }
                }
            }
            CircCmd::Read {
                cid,
                request,
                count,
                reply,
            } => {
                let Some((sid, native, ncount)) = self
                    .chans
                    .get(&cid)
                    .and_then(|c| Some((c.sid?, c.native, c.count)))
                else {
                    let name = self
                        .chans
                        .get(&cid)
                        .map(|c| c.shared.name.clone())
                        .unwrap_or_default();
                    let _ = reply.send(Err(CaError::Disconnected(name)));
                    return;
                };
                let ty = request.resolve(native);
                let n = self.request_count(ty, ncount, count);
                let ioid = self.ioid();
                self.pending.insert(
                    ioid,
                    Pending::Read {
                        ty,
                        scalar: ncount == 1,
                        reply,
                    },
                );
                self.out_header(Header {
                    data_type: ty.to_u16(),
                    count: n,
                    param1: sid,
                    param2: ioid,
                    ..Header::new(cmd::READ_NOTIFY)
                });
            }
            CircCmd::Write { cid, value, reply } => {
                let Some(ch) = self.chans.get(&cid) else {
                    let _ = reply.send(Err(CaError::Disconnected(String::new())));
                    return;
                };
                let Some(sid) = ch.sid else {
                    let _ = reply.send(Err(CaError::Disconnected(ch.shared.name.clone())));
                    return;
                };
                let ty = DbrType::new(DbrClass::Plain, ch.native);
                let converted = match value.convert(ch.native, &[], value.is_array()) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        return;
                    }
                };
                let mut payload = Vec::new();
                let n = match codec::encode(ty, &Dbr::plain(converted), &mut payload) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        return;
                    }
                };
                let ioid = self.ioid();
                self.pending.insert(ioid, Pending::Write { reply });
                let h = Header {
                    data_type: ty.to_u16(),
                    count: n as u32,
                    param1: sid,
                    param2: ioid,
                    ..Header::new(cmd::WRITE_NOTIFY)
                };
                push_message(&mut self.out, h, &payload);
            }
        }
    }

    fn ioid(&mut self) -> u32 {
        let id = self.next_ioid;
        self.next_ioid = self.next_ioid.wrapping_add(1);
        id
    }

    /// The circuit is gone: disconnect every channel and fail every request.
    fn close(&mut self, reason: &str) {
        let at = Timestamp::now();
        for ch in self.chans.values() {
            if ch.sid.is_some() {
                ch.shared.conn.send_replace(None);
                ch.shared
                    .queue
                    .push_state(ch.shared.key, ChannelEvent::Disconnected { at });
            }
        }
        for (_, p) in self.pending.drain() {
            p.fail(CaError::Disconnected(format!(
                "circuit to {} closed: {reason}",
                self.server
            )));
        }
        self.chans.clear();
        self.routes.clear();
    }
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) -> std::io::Result<()> {
    while let Some(mut buf) = rx.recv().await {
        // coalesce whatever else is queued into one write
        while let Ok(more) = rx.try_recv() {
            buf.extend_from_slice(&more);
        }
        wr.write_all(&buf).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Subscription;
    use crate::queue::{Overflow, event_queue};
    use proptest::prelude::*;
    use std::sync::atomic::AtomicU64;

    fn circuit_with_channel() -> (
        Circuit,
        crate::queue::EventReceiver,
        mpsc::UnboundedReceiver<CircEvent>,
    ) {
        let cfg = Arc::new(
            ClientConfig::builder()
                .max_array_bytes(16384)
                .build()
                .expect("config"),
        );
        let (etx, erx) = mpsc::unbounded_channel();
        let mut c = Circuit::new(1, "127.0.0.1:5064".parse().expect("addr"), cfg, etx);
        let (q, rx) = event_queue(64, Overflow::DropNewest);
        let shared = Arc::new(ChannelShared {
            name: "X".into(),
            cid: 1,
            key: 5,
            queue: q,
            dropped: AtomicU64::new(0),
            conn: tokio::sync::watch::channel(None).0,
        });
        let spec = SubSpec {
            id: SubscriptionId(2),
            sub: Subscription::time(6),
        };
        c.command(CircCmd::Create {
            shared,
            subs: vec![spec],
        });
        (c, rx, erx)
    }

    fn msg(h: Header, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        push_message(&mut v, h, payload);
        v
    }

    #[tokio::test]
    async fn connect_then_monitor_update_reaches_the_queue() {
        let (mut c, rx, _e) = circuit_with_channel();
        let mut buf = Vec::new();
        buf.extend(msg(
            Header {
                param1: 1,
                param2: 3,
                ..Header::new(cmd::ACCESS_RIGHTS)
            },
            &[],
        ));
        buf.extend(msg(
            Header {
                data_type: 6,
                count: 1,
                param1: 1,
                param2: 42,
                ..Header::new(cmd::CREATE_CHAN)
            },
            &[],
        ));
        // fact sheet §9 (d), split across two reads
        let update = msg(
            Header {
                data_type: 20,
                count: 1,
                param1: 1,
                param2: 2,
                ..Header::new(cmd::EVENT_ADD)
            },
            &[
                0, 0, 0, 0, 0x3f, 0xf3, 0x63, 0, 0x1d, 0xcd, 0x65, 0, 0, 0, 0, 0, 0x3f, 0xf8, 0, 0,
                0, 0, 0, 0,
            ],
        );
        buf.extend_from_slice(&update[..20]);
        c.process(&mut buf).await.expect("valid");
        assert_eq!(buf.len(), 20, "partial message kept");
        buf.extend_from_slice(&update[20..]);
        c.process(&mut buf).await.expect("valid");
        assert!(buf.is_empty());
        let mut got = Vec::new();
        rx.try_recv_many(&mut got, 10);
        assert!(matches!(
            got[0].kind,
            ChannelEvent::Connected {
                native: DbfType::Double,
                count: 1,
                ..
            }
        ));
        let ChannelEvent::Value { sub, data } = &got[1].kind else {
            panic!("{got:?}")
        };
        assert_eq!(*sub, SubscriptionId(2));
        assert_eq!(data.value, Value::Double(1.5));
        assert_eq!(
            data.stamp,
            Some(Timestamp {
                secs: 1_704_067_200,
                nanos: 500_000_000
            })
        );
        // CREATE_CHAN ("X": 16 + 8 bytes), then EVENT_ADD with the new SID, went out
        let (h, _) = Header::decode(&c.out[24..]).expect("event add");
        assert_eq!(
            (h.command, h.data_type, h.param1, h.param2),
            (cmd::EVENT_ADD, 20, 42, 2)
        );
    }

    #[tokio::test]
    async fn oversized_or_misaligned_messages_close_the_circuit() {
        let (mut c, _rx, _e) = circuit_with_channel();
        let mut big = Vec::new();
        Header {
            payload_size: 0x7FFF_FFF8,
            count: 1,
            ..Header::new(cmd::EVENT_ADD)
        }
        .encode(&mut big);
        assert!(matches!(
            c.process(&mut big).await,
            Err(ProtocolError::TooLarge { .. })
        ));
        assert!(
            big.capacity() < 1 << 20,
            "no allocation for the announced size"
        );
        let mut odd = Vec::new();
        Header {
            payload_size: 12,
            ..Header::new(cmd::EVENT_ADD)
        }
        .encode(&mut odd);
        assert!(matches!(
            c.process(&mut odd).await,
            Err(ProtocolError::Misaligned { .. })
        ));
        let mut unknown = msg(Header::new(99), &[]);
        assert!(matches!(
            c.process(&mut unknown).await,
            Err(ProtocolError::UnexpectedCommand(99))
        ));
    }

    fn arb_message() -> impl Strategy<Value = Vec<u8>> {
        (
            0u16..30,
            0u16..40,
            any::<u32>(),
            0u32..4,
            0u32..4,
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<bool>(),
        )
            .prop_map(|(command, data_type, count, p1, p2, payload, ext)| {
                let mut h = Header {
                    command,
                    data_type,
                    count: if ext { count } else { count & 0xFFFF },
                    param1: p1,
                    param2: p2,
                    ..Header::new(0)
                };
                if ext {
                    h.payload_size = 0xFFFF; // force the extended form below
                }
                let mut v = Vec::new();
                push_message(&mut v, h, &payload);
                v
            })
    }

    proptest! {
        /// Arbitrary server messages (any command, type, count, payload) and arbitrary
        /// raw bytes: processing never panics and never buffers more than the limit.
        #[test]
        fn arbitrary_server_bytes_never_panic(
            msgs in proptest::collection::vec(arb_message(), 0..20),
            noise in proptest::collection::vec(any::<u8>(), 0..64),
            split in any::<usize>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            rt.block_on(async {
                let (mut c, rx, _e) = circuit_with_channel();
                let mut stream = Vec::new();
                Header { data_type: 6, count: 3, param1: 1, param2: 1, ..Header::new(cmd::CREATE_CHAN) }.encode(&mut stream);
                for m in &msgs {
                    stream.extend_from_slice(m);
                }
                stream.extend_from_slice(&noise);
                let cut = split % (stream.len() + 1);
                let mut buf = stream[..cut].to_vec();
                let mut r = c.process(&mut buf).await;
                if r.is_ok() {
                    buf.extend_from_slice(&stream[cut..]);
                    r = c.process(&mut buf).await;
                }
                let _ = r;
                prop_assert!(buf.capacity() <= 2 * (16384 + 1024 + 24) + stream.len());
                let mut got = Vec::new();
                rx.try_recv_many(&mut got, 1000);
                prop_assert!(got.len() <= 64 + 10);
                Ok(())
            })?;
        }
    }
}
