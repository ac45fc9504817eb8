//! The TCP virtual circuit: one per server, shared by all channels on that server.
//!
//! A circuit task owns the socket's read half and the per-circuit tables (channels by
//! CID, monitor routes by SUBID, pending reads/writes by IOID); a small writer task owns
//! the write half so a slow server can never block reading. Monitor updates are decoded
//! here; those of one socket read go into their queue as one batch (one lock, at most
//! one wake-up of the consumer), in order with the connection events. The task ends
//! when the socket closes, the server breaks the protocol, or the circuit stays silent
//! for EPICS_CA_CONN_TMO (an ECHO is sent after half of it); every connected channel
//! then gets a `Disconnected` event and the client context searches for them again.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
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
use crate::queue::EventQueue;
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

/// Where the updates of one subscription go. The channel's key and its queue's identity
/// are copied here so that an update touches only its route.
struct Route {
    subid: u32,
    cid: u32,
    ty: DbrType,
    count: u32,
    scalar: bool,
    key: u64,
    queue_id: usize,
    shared: Arc<ChannelShared>,
}

/// The circuit's tables are keyed by ids this client chose (CID, SUBID, IOID), so they
/// need no collision-resistant hash: one multiplication (as FxHash) instead of SipHash.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// The monitor routes by SUBID: a small hash index (8 bytes an entry) into a dense slab
/// of routes, so the per-update lookup touches little memory and routes created one
/// after the other sit next to each other. A server often sends the updates in the
/// order of the subscriptions (it posts its PVs in a fixed order): [`Routes::find`]
/// tries the slot after the previous one before the index.
#[derive(Default)]
struct Routes {
    index: IdMap<u32>,
    slots: Vec<Option<Route>>,
    free: Vec<u32>,
    /// The slot found by the previous [`Routes::find`].
    last: usize,
}

impl Routes {
    fn find(&mut self, subid: u32) -> Option<&Route> {
        let next = self.last.wrapping_add(1);
        let slot = match self.slots.get(next) {
            Some(Some(r)) if r.subid == subid => next,
            _ => *self.index.get(&subid)? as usize,
        };
        self.last = slot;
        self.slots.get(slot)?.as_ref()
    }

    fn get(&self, subid: &u32) -> Option<&Route> {
        let slot = *self.index.get(subid)?;
        self.slots.get(slot as usize)?.as_ref()
    }

    fn insert(&mut self, subid: u32, route: Route) {
        if let Some(&slot) = self.index.get(&subid) {
            self.slots[slot as usize] = Some(route);
            return;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(route);
                slot
            }
            None => {
                self.slots.push(Some(route));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(subid, slot);
    }

    fn remove(&mut self, subid: &u32) -> Option<Route> {
        let slot = self.index.remove(subid)?;
        let r = self.slots.get_mut(slot as usize)?.take();
        self.free.push(slot);
        r
    }

    fn retain(&mut self, mut keep: impl FnMut(&Route) -> bool) {
        let (slots, free) = (&mut self.slots, &mut self.free);
        self.index.retain(|_, slot| {
            let s = &mut slots[*slot as usize];
            if s.as_ref().is_some_and(&mut keep) {
                return true;
            }
            *s = None;
            free.push(*slot);
            false
        });
        if self.index.is_empty() {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.free.clear();
    }
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
    chans: IdMap<Chan>,
    routes: Routes,
    pending: IdMap<Pending>,
    next_ioid: u32,
    out: Vec<u8>,
    events: mpsc::UnboundedSender<CircEvent>,
    /// Monitor updates decoded from the current read, not yet in their queue.
    batch: Vec<Event>,
    /// The queue of `batch` (set at the first update of a read and at each change of queue).
    batch_queue: Option<EventQueue>,
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
            chans: IdMap::default(),
            routes: Routes::default(),
            pending: IdMap::default(),
            next_ioid: 1,
            out: Vec::with_capacity(4096),
            events,
            batch: Vec::new(),
            batch_queue: None,
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
                // An exactly sized copy: chunks wait in the writer's queue, and at connect
                // time there is one (of a few dozen bytes) per request. `out` keeps its
                // buffer, unless a burst made it large.
                let chunk = self.out.as_slice().to_vec();
                self.out.clear();
                if self.out.capacity() > 64 * 1024 {
                    self.out.shrink_to(4096);
                }
                if wtx.send(chunk).is_err() {
                    return "writer stopped".into();
                }
            }
            if rbuf.capacity() - rbuf.len() < 16 * 1024 {
                // exact: an amortized reserve doubles a buffer that one large message
                // (up to max_payload) made large
                rbuf.reserve_exact(64 * 1024);
            }
            tokio::select! {
                r = rd.read_buf(&mut rbuf) => {
                    match r {
                        Ok(0) => return "closed by server".into(),
                        Ok(_) => {
                            echo_sent = false;
                            match self.process(&mut rbuf).await {
                                Ok(()) => {}
                                Err(e) => return format!("protocol error: {e}"),
                            }
                            // After processing: under back-pressure `process` waits for
                            // the consumer, and that time is ours, not the server's
                            // silence (counting it closed healthy circuits when the
                            // consumer fell behind for EPICS_CA_CONN_TMO).
                            last_rx = Instant::now();
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
    ///
    /// Monitor updates are decoded into a local batch that goes into the queue under one
    /// lock with at most one wake-up of the consumer: at the end of `buf`, when an update
    /// for another queue comes, and before any other message (so connection and other
    /// state events stay in order with the values, and the route tables do not change
    /// while a batch is pending).
    async fn process(&mut self, buf: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let mut at = 0;
        // the whole size of a partial message at the end of `buf`
        let mut partial = 0;
        let result = loop {
            let Some((h, hl)) = Header::decode(&buf[at..]) else {
                break Ok(());
            };
            let size = match h.check_payload(self.max_payload) {
                Ok(s) => s,
                Err(e) => break Err(e),
            };
            if buf.len() - at < hl + size {
                partial = hl + size;
                break Ok(());
            }
            let start = at + hl;
            at = start + size;
            let payload = &buf[start..at];
            if h.command == cmd::EVENT_ADD {
                // the first update of this read, or one for another queue than the batch
                if let Some(ev) = self.monitor_update(h, payload)
                    && let Some(queue) = self.routes.get(&h.param2).map(|r| r.shared.queue.clone())
                {
                    self.flush().await;
                    self.batch_queue = Some(queue);
                    self.batch.push(ev);
                }
                continue;
            }
            self.flush().await;
            if let Err(e) = self.message(h, payload) {
                break Err(e);
            }
        };
        self.flush().await;
        // hold no queue between reads: a receiver ends when its last channel is gone
        self.batch_queue = None;
        buf.drain(..at);
        // Room for the whole partial message (bounded by max_payload), exactly: reserving
        // its size on top of the bytes already read, and the amortized doubling of
        // `reserve`, let the buffer reach twice the largest message (found by the
        // `ca_tcp_stream` fuzz target).
        buf.reserve_exact(partial.saturating_sub(buf.len()));
        result
    }

    /// Hands the pending batch of monitor updates to its queue (waiting for room under
    /// backpressure; counting drops on their channels under DropNewest).
    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        // a batch is only started with its queue
        let Some(queue) = self.batch_queue.as_ref() else {
            return;
        };
        let routes = &self.routes;
        queue
            .send_batch(&mut self.batch, |ev| {
                if let ChannelEvent::Value { sub, .. } = ev.kind
                    && let Some(r) = routes.get(&sub.0)
                {
                    r.shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await;
    }

    /// Handles a message other than a monitor update (no batch is pending).
    fn message(&mut self, h: Header, payload: &[u8]) -> Result<(), ProtocolError> {
        match h.command {
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
            | cmd::EVENT_ADD
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

    /// Decodes a monitor update into the batch; returns it instead when it is for another
    /// queue than the batch (or the batch has none yet).
    fn monitor_update(&mut self, h: Header, payload: &[u8]) -> Option<Event> {
        if h.payload_size == 0 {
            return None; // EVENT_CANCEL acknowledgement
        }
        let route = self.routes.find(h.param2)?;
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
        let ev = Event {
            key: route.key,
            kind,
        };
        if self.batch_queue.as_ref().map(EventQueue::id) != Some(route.queue_id) {
            return Some(ev);
        }
        self.batch.push(ev);
        None
    }

    fn access_rights(&mut self, cid: u32, access: AccessRights) {
        let Some(ch) = self.chans.get_mut(&cid) else {
            return;
        };
        let changed = ch.access != access;
        ch.access = access;
        if ch.sid.is_some() && changed {
            ch.shared.conn.set_access(access);
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
        ch.shared.conn.set(Some(info));
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
        self.routes.retain(|r| r.cid != cid);
        if ch.sid.is_some() {
            ch.shared.conn.set(None);
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
            subid: spec.id.0,
            cid,
            ty,
            count,
            scalar: ch.count == 1,
            key: ch.shared.key,
            queue_id: ch.shared.queue.id(),
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
                    self.routes.retain(|r| r.cid != cid);
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
                    if ch.subs.capacity() == 0 {
                        ch.subs.reserve_exact(1);
                    }
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
                ch.shared.conn.set(None);
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

/// A channel's shared state for tests and fuzzing: `name`, CID `cid`, client key `key`.
#[cfg(any(test, feature = "fuzzing"))]
fn test_channel(name: &str, cid: u32, key: u64, queue: EventQueue) -> Arc<ChannelShared> {
    Arc::new(ChannelShared {
        name: name.into(),
        cid,
        key,
        queue,
        dropped: std::sync::atomic::AtomicU64::new(0),
        conn: Default::default(),
    })
}

/// A circuit with one channel (`X`, CID 1, a DBR_DOUBLE of 3 elements once created) and one
/// DBR_TIME_DOUBLE subscription (subscription id 2) into a 64-event queue that drops the
/// newest: what the unit tests and the `ca_tcp_stream` fuzz target feed server bytes to.
#[cfg(any(test, feature = "fuzzing"))]
impl Circuit {
    fn with_test_channel() -> (
        Circuit,
        crate::queue::EventReceiver,
        mpsc::UnboundedReceiver<CircEvent>,
    ) {
        use crate::channel::Subscription;
        use crate::queue::{Overflow, event_queue};
        let (etx, erx) = mpsc::unbounded_channel();
        let mut c = Circuit::new(
            1,
            SocketAddr::from(([127, 0, 0, 1], 5064)),
            Arc::new(ClientConfig {
                max_array_bytes: crate::config::MIN_ARRAY_BYTES,
                ..ClientConfig::default()
            }),
            etx,
        );
        let (queue, rx) = event_queue(64, Overflow::DropNewest);
        let shared = test_channel("X", 1, 5, queue);
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
}

/// Feeds `stream` (bytes as a server sends them) to a fresh circuit of
/// [`Circuit::with_test_channel`] in two reads cut at `split % (len + 1)`, as the read loop
/// does: never panics; returns the circuit's verdict (a protocol error closes a real
/// circuit), the largest capacity the read buffer reached, and the events queued.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) async fn feed_server_bytes(
    stream: &[u8],
    split: usize,
) -> (Result<(), ProtocolError>, usize, usize) {
    let (mut c, rx, _events) = Circuit::with_test_channel();
    let cut = split % (stream.len() + 1);
    let mut buf = stream[..cut].to_vec();
    let mut r = c.process(&mut buf).await;
    let mut cap = buf.capacity();
    if r.is_ok() {
        // as `read_buf` into the spare room the read loop reserves
        buf.reserve_exact(stream.len() - cut);
        buf.extend_from_slice(&stream[cut..]);
        r = c.process(&mut buf).await;
        cap = cap.max(buf.capacity());
    }
    let mut got = Vec::new();
    rx.try_recv_many(&mut got, usize::MAX);
    (r, cap, got.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Subscription;
    use crate::queue::{Overflow, event_queue};
    use proptest::prelude::*;

    fn circuit_with_channel() -> (
        Circuit,
        crate::queue::EventReceiver,
        mpsc::UnboundedReceiver<CircEvent>,
    ) {
        let (c, rx, erx) = Circuit::with_test_channel();
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

    fn time_double_update(subid: u32, v: f64) -> Vec<u8> {
        let mut payload = vec![0u8; 16];
        payload.extend_from_slice(&v.to_be_bytes());
        msg(
            Header {
                data_type: 20,
                count: 1,
                param1: 1,
                param2: subid,
                ..Header::new(cmd::EVENT_ADD)
            },
            &payload,
        )
    }

    #[tokio::test]
    async fn one_read_is_one_batch_in_order_with_drops_counted_on_the_channel() {
        let (mut c, rx, _e) = circuit_with_channel();
        let shared = c.chans[&1].shared.clone();
        let mut buf = msg(
            Header {
                data_type: 6,
                count: 1,
                param1: 1,
                param2: 42,
                ..Header::new(cmd::CREATE_CHAN)
            },
            &[],
        );
        // 100 updates for a queue of 64 (DropNewest), then the server drops the channel
        for i in 0..100 {
            buf.extend(time_double_update(2, f64::from(i)));
        }
        buf.extend(msg(
            Header {
                param1: 1,
                ..Header::new(cmd::SERVER_DISCONN)
            },
            &[],
        ));
        c.process(&mut buf).await.expect("valid");
        assert!(buf.is_empty());
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 36);
        assert_eq!(rx.dropped(), 36);
        let mut got = Vec::with_capacity(256);
        assert_eq!(rx.try_recv_many(&mut got, 1000), 1 + 64 + 1);
        assert!(matches!(got[0].kind, ChannelEvent::Connected { .. }));
        for (i, ev) in got[1..65].iter().enumerate() {
            let ChannelEvent::Value { data, .. } = &ev.kind else {
                panic!("{ev:?}")
            };
            assert_eq!((ev.key, &data.value), (5, &Value::Double(i as f64)));
        }
        assert!(matches!(got[65].kind, ChannelEvent::Disconnected { .. }));
    }

    #[tokio::test]
    async fn a_full_backpressure_queue_stalls_the_batch_and_loses_nothing() {
        let (mut c, _rx0, _e) = circuit_with_channel();
        let (q, rx) = event_queue(10, Overflow::Backpressure);
        let shared = test_channel("Y", 7, 9, q);
        let spec = SubSpec {
            id: SubscriptionId(8),
            sub: Subscription::time(6),
        };
        c.command(CircCmd::Create {
            shared: shared.clone(),
            subs: vec![spec],
        });
        let mut buf = msg(
            Header {
                data_type: 6,
                count: 1,
                param1: 7,
                param2: 43,
                ..Header::new(cmd::CREATE_CHAN)
            },
            &[],
        );
        for i in 0..1000 {
            buf.extend(time_double_update(8, f64::from(i)));
        }
        let circuit = tokio::spawn(async move {
            c.process(&mut buf).await.expect("valid");
            buf.len()
        });
        let mut values = Vec::new();
        let mut out = Vec::with_capacity(64);
        while values.len() < 1000 {
            out.clear();
            tokio::time::timeout(Duration::from_secs(5), rx.recv_many(&mut out, 3))
                .await
                .expect("no hang");
            for ev in &out {
                assert!(rx.len() <= 10 + 1, "bounded");
                if let ChannelEvent::Value { data, .. } = &ev.kind {
                    values.push(data.value.clone());
                }
            }
        }
        assert_eq!(circuit.await.expect("circuit"), 0);
        let expected: Vec<Value> = (0..1000).map(|i| Value::Double(f64::from(i))).collect();
        assert_eq!(values, expected);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 0);
        assert_eq!(rx.dropped(), 0);
    }

    #[test]
    fn routes_find_by_hint_or_index_and_reuse_slots() {
        let (c, _rx, _e) = circuit_with_channel();
        let shared = c.chans[&1].shared.clone();
        let route = |subid: u32, cid: u32| Route {
            subid,
            cid,
            ty: DbrType::time(DbfType::Double),
            count: 1,
            scalar: true,
            key: u64::from(subid) * 10,
            queue_id: shared.queue.id(),
            shared: shared.clone(),
        };
        let mut r = Routes::default();
        for id in [7, 3, 9, 4] {
            r.insert(id, route(id, id % 2));
        }
        // in order (hint), out of order (index), unknown
        for id in [7, 3, 9, 4, 9, 7, 4, 3, 3] {
            assert_eq!(r.find(id).map(|x| x.key), Some(u64::from(id) * 10), "{id}");
        }
        assert!(r.find(5).is_none());
        // a removed route is gone, its slot is reused, the hint never returns a stale one
        assert_eq!(r.remove(&3).map(|x| x.subid), Some(3));
        assert!(r.find(7).is_some());
        assert!(r.find(3).is_none());
        r.insert(11, route(11, 0));
        assert_eq!(r.slots.len(), 4, "slot reused");
        assert!(r.find(7).is_some());
        assert_eq!(r.find(11).map(|x| x.subid), Some(11));
        r.insert(11, route(11, 1));
        assert_eq!(r.find(11).map(|x| x.cid), Some(1), "replaced");
        r.retain(|x| x.cid == 1);
        for id in [7, 9, 11] {
            assert!(r.find(id).is_some(), "{id}");
        }
        assert!(r.find(4).is_none());
        r.retain(|_| false);
        assert!(r.slots.is_empty() && r.free.is_empty() && r.index.is_empty());
        assert!(r.find(7).is_none());
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

    /// The stream from the server in the `ca_tcp_stream` fuzz target's form.
    fn fuzz_stream(data: &[u8]) -> (Vec<u8>, usize) {
        crate::fuzzing::stream_from_input(data).expect("8 bytes")
    }

    /// Found by the `ca_tcp_stream` fuzz target (`crash-bfcb631d`): a partial message made
    /// the read buffer reserve its announced size on top of the bytes already buffered,
    /// amortized, and the next read doubled it: 35,260 bytes for a 17 KiB message limit.
    /// Now the buffer holds at most the largest message plus what was read.
    #[tokio::test]
    async fn read_buffer_grew_to_twice_the_largest_message() {
        let data: &[u8] = &[
            10, 0, 36, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 126, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 113, 68, 0, 0, 0, 146, 245, 238, 0, 11, 0, 56,
            36, 57, 57, 57, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0, 0, 199, 198, 52, 10,
            53, 117, 183, 183, 183, 183, 183, 183, 183, 183, 183, 183, 183, 183, 183, 183, 183,
            183, 183, 183, 183, 183, 183, 183, 183, 183, 183, 183, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 183, 183, 183, 183, 183, 183, 183, 183, 183, 183, 183, 8, 0, 0, 0, 0, 0, 0,
            0, 0, 30, 245, 0, 19, 0, 0, 6, 1, 0, 0, 0, 0, 0, 0, 0, 0, 230, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 57, 57, 1, 36, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            45, 0, 0, 33, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 126, 0, 0, 0, 0, 4, 0, 0, 0,
            0, 0, 0, 9, 0, 0, 9, 0, 0, 10, 0, 1, 0, 0, 16, 255, 6, 59, 2, 0, 78, 255,
        ];
        let (stream, split) = fuzz_stream(data);
        let (r, cap, _) = feed_server_bytes(&stream, split).await;
        assert!(r.is_ok(), "{r:?}");
        let max = crate::config::MIN_ARRAY_BYTES + 1024 + 24;
        assert!(cap <= max + stream.len(), "{cap} bytes");
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
            split in any::<u64>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let mut data = split.to_le_bytes().to_vec();
            for m in &msgs {
                data.extend_from_slice(m);
            }
            data.extend_from_slice(&noise);
            let (stream, split) = fuzz_stream(&data);
            let (_, cap, events) = rt.block_on(feed_server_bytes(&stream, split));
            prop_assert!(cap <= 16384 + 1024 + 24 + stream.len());
            prop_assert!(events <= 64 + stream.len() / 16);
        }
    }
}
