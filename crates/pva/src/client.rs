//! The client context ([`Client`]), channel handles ([`Channel`]), the search task and one
//! task per server connection.
//!
//! * **Search** — one UDP socket; each unresolved name is searched for at exponentially
//!   growing intervals (32 ms doubling up to [`crate::ClientConfig::max_search_period`]:
//!   the CA client's [`SearchSchedule`], shared), names batched into datagrams sent to
//!   every destination. A lost connection resets its channels' back-off.
//! * **Beacons** — a second UDP socket bound to 0.0.0.0:EPICS_PVA_BROADCAST_PORT, shared
//!   with the other pvAccess processes of the host (SO_REUSEADDR/SO_REUSEPORT, as pvxs).
//!   A beacon (or search reply) from a new server, a server with a new GUID or one silent
//!   for minutes ([`crate::beacon`]) resets every unresolved name's back-off, at most once a
//!   second, so a restarted server's channels reconnect within a round trip whatever the
//!   back-off had grown to. A unicast search the kernel gave this socket instead of a
//!   server on the same host is forwarded to the local multicast group with an ORIGIN_TAG
//!   ([`crate::proto::forward_unicast_search`]), as pvxs does. When the port cannot be
//!   bound the client works without beacons (back-off only).
//! * **Connections** — one TCP connection per server, shared by its channels: validation
//!   (anonymous, or "ca" when offered), CREATE_CHANNEL, GET_FIELD, GET, MONITOR; ECHO
//!   every `conn_tmo * 3 / 8` (1–15 s), and a connection silent for `conn_tmo` is closed.
//!   When a connection ends, its channels report `Disconnected`, are searched again and
//!   re-create their subscriptions on the next connect.
//! * **Reading** is cancel-safe (a buffer of whole messages, many decoded per socket read);
//!   segmented messages are joined up to [`crate::ClientConfig::max_message`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, warn};

use archiver_ca::search::SearchSchedule;

use crate::beacon::{BeaconTracker, ResetGate};
use crate::config::ClientConfig;
use crate::error::{DecodeError, PvaError};
use crate::event::{
    ChannelEvent, Event, EventQueue, EventReceiver, MonitorData, Overflow, SubscriptionId,
    event_queue,
};
use crate::proto::{self, Header, PvRequest, cmd, sub};
use crate::types::{FieldDesc, TypeCache, decode_type};
use crate::value::{BitSet, PvValue, decode_partial};
use crate::wire::{Reader, status_ok};

/// Names per search datagram at most (keeps datagrams under ~1400 bytes for short names).
const SEARCH_BATCH_BYTES: usize = 1400;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a poisoned lock only means a holder panicked; the data stays consistent
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The result type of a GET.
pub type GetResult = Result<(Arc<FieldDesc>, PvValue), PvaError>;

/// What a GET reply carries: the type, the value, and the members the server marked as
/// sent (a server may send the whole type and mark only what the pvRequest selected, as
/// pvxs does; unmarked members hold defaults).
type MarkedResult = Result<(Arc<FieldDesc>, PvValue, BitSet), PvaError>;

enum ConnCmd {
    Create(Arc<ChanShared>),
    Destroy(u32),
    Subscribe(u32, SubscriptionId, PvRequest),
    Get(u32, PvRequest, oneshot::Sender<MarkedResult>),
    GetField(u32, oneshot::Sender<Result<Arc<FieldDesc>, PvaError>>),
}

enum SearchCmd {
    Add { cid: u32, reset: bool },
    Remove(u32),
}

struct ChanState {
    server: Option<SocketAddr>,
    subs: Vec<(SubscriptionId, PvRequest)>,
    next_sub: u32,
    closed: bool,
    /// The search back-off delay when the channel was last found: a server refusing the
    /// channel sends it back to the search at that delay, not the fast initial one.
    found_delay: Option<Duration>,
}

struct ChanShared {
    name: String,
    cid: u32,
    key: u64,
    queue: EventQueue,
    dropped: AtomicU64,
    overruns: AtomicU64,
    state: Mutex<ChanState>,
    changed: Notify,
}

struct Inner {
    cfg: ClientConfig,
    next_cid: AtomicU32,
    channels: Mutex<HashMap<u32, Arc<ChanShared>>>,
    conns: Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<ConnCmd>>>,
    search: mpsc::UnboundedSender<SearchCmd>,
    /// Addresses searched, for messages.
    dests: Vec<(SocketAddr, bool)>,
}

/// The client context: owns the search task and the server connections. Cheap to clone;
/// its tasks stop when the last clone and every channel are dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("dests", &self.inner.dests)
            .finish()
    }
}

/// One PV over pvAccess. Dropping it destroys the channel on the server.
pub struct Channel {
    shared: Arc<ChanShared>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Channel({})", self.shared.name)
    }
}

impl Client {
    /// Starts a client (binds the search socket, spawns the search task) on the current
    /// tokio runtime.
    ///
    /// Errors: the UDP socket cannot be bound.
    pub async fn new(cfg: ClientConfig) -> Result<Client, PvaError> {
        Self::start(cfg)
    }

    /// As [`Client::new`], from synchronous code running inside a tokio runtime.
    ///
    /// Errors: the UDP socket cannot be bound; no runtime.
    pub fn start(cfg: ClientConfig) -> Result<Client, PvaError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(PvaError::InvalidArgument(
                "the PVA client needs a tokio runtime".into(),
            ));
        }
        let sock = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        sock.set_broadcast(true)?;
        sock.set_nonblocking(true)?;
        sock.bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into())?;
        let udp = UdpSocket::from_std(sock.into())?;
        let beacon_udp = match bind_beacon_socket(cfg.broadcast_port) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(
                    port = cfg.broadcast_port,
                    "cannot listen for pvAccess beacons ({e}); unresolved names are searched on their back-off only"
                );
                None
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let dests = cfg.search_destinations();
        let inner = Arc::new(Inner {
            cfg,
            next_cid: AtomicU32::new(1),
            channels: Mutex::new(HashMap::new()),
            conns: Mutex::new(HashMap::new()),
            search: tx,
            dests,
        });
        tokio::spawn(search_task(Arc::downgrade(&inner), udp, beacon_udp, rx));
        Ok(Client { inner })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// A channel with a queue of its own ([`ClientConfig::queue_capacity`] updates,
    /// dropping and counting beyond it); its events carry key 0.
    ///
    /// Errors: an empty name.
    pub fn channel(&self, name: &str) -> Result<(Channel, EventReceiver), PvaError> {
        let (q, rx) = event_queue(self.inner.cfg.queue_capacity, Overflow::DropNewest);
        Ok((self.create_channel(name, 0, &q)?, rx))
    }

    /// A channel reporting to a shared `queue` under `key`. The search starts at once.
    ///
    /// Errors: an empty name.
    pub fn create_channel(
        &self,
        name: &str,
        key: u64,
        queue: &EventQueue,
    ) -> Result<Channel, PvaError> {
        if name.is_empty() {
            return Err(PvaError::InvalidArgument("empty PV name".into()));
        }
        let cid = self.inner.next_cid.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(ChanShared {
            name: name.to_string(),
            cid,
            key,
            queue: queue.clone(),
            dropped: AtomicU64::new(0),
            overruns: AtomicU64::new(0),
            state: Mutex::new(ChanState {
                server: None,
                subs: Vec::new(),
                next_sub: 1,
                closed: false,
                found_delay: None,
            }),
            changed: Notify::new(),
        });
        lock(&self.inner.channels).insert(cid, shared.clone());
        let _ = self.inner.search.send(SearchCmd::Add { cid, reset: true });
        Ok(Channel {
            shared,
            inner: self.inner.clone(),
        })
    }

    /// The search destinations, space separated (for messages).
    pub fn searched(&self) -> String {
        self.inner
            .dests
            .iter()
            .map(|(a, _)| a.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Inner {
    fn conn_for(self: &Arc<Self>, server: SocketAddr) -> mpsc::UnboundedSender<ConnCmd> {
        let mut conns = lock(&self.conns);
        if let Some(tx) = conns.get(&server)
            && !tx.is_closed()
        {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        conns.insert(server, tx.clone());
        tokio::spawn(conn_task(self.clone(), server, tx.clone(), rx));
        tx
    }

    /// Sends a channel found at `server` to that server's connection.
    fn attach(self: &Arc<Self>, cid: u32, server: SocketAddr) {
        let Some(ch) = lock(&self.channels).get(&cid).cloned() else {
            return;
        };
        if lock(&ch.state).closed {
            return;
        }
        let tx = self.conn_for(server);
        if let Err(mpsc::error::SendError(ConnCmd::Create(ch))) = tx.send(ConnCmd::Create(ch)) {
            let _ = self.search.send(SearchCmd::Add {
                cid: ch.cid,
                reset: false,
            });
        }
    }
}

impl Channel {
    /// The PV name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The server when connected.
    pub fn server(&self) -> Option<SocketAddr> {
        lock(&self.shared.state).server
    }

    /// Updates dropped by a full queue ([`Overflow::DropNewest`]).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Updates the server reported as overrun (its overrun bitset not empty: it squashed
    /// values before sending), counted over all subscriptions of the channel.
    pub fn overruns(&self) -> u64 {
        self.shared.overruns.load(Ordering::Relaxed)
    }

    /// Waits until connected; returns the server.
    ///
    /// Errors: [`PvaError::Timeout`] naming the PV and the addresses searched.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<SocketAddr, PvaError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let w = self.shared.changed.notified();
            tokio::pin!(w);
            w.as_mut().enable();
            if let Some(s) = self.server() {
                return Ok(s);
            }
            if tokio::time::timeout_at(deadline, w).await.is_err() {
                return Err(PvaError::Timeout {
                    what: format!(
                        "connecting {} (searched: {})",
                        self.shared.name,
                        self.inner
                            .dests
                            .iter()
                            .map(|(a, _)| a.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                    timeout,
                });
            }
        }
    }

    /// Subscribes with `request` (see [`PvRequest`]); the monitor is (re)created at every
    /// connect and its updates arrive as [`ChannelEvent::Update`].
    pub fn subscribe(&self, request: PvRequest) -> SubscriptionId {
        let mut st = lock(&self.shared.state);
        let id = SubscriptionId(st.next_sub);
        st.next_sub += 1;
        st.subs.push((id, request.clone()));
        if let Some(server) = st.server
            && let Some(tx) = lock(&self.inner.conns).get(&server)
        {
            let _ = tx.send(ConnCmd::Subscribe(self.shared.cid, id, request));
        }
        id
    }

    fn conn(&self) -> Result<mpsc::UnboundedSender<ConnCmd>, PvaError> {
        let server = self
            .server()
            .ok_or_else(|| PvaError::Disconnected(self.shared.name.clone()))?;
        lock(&self.inner.conns)
            .get(&server)
            .cloned()
            .ok_or_else(|| PvaError::Disconnected(self.shared.name.clone()))
    }

    async fn wait_reply<T>(
        &self,
        rx: oneshot::Receiver<Result<T, PvaError>>,
        what: &str,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<T, PvaError> {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(PvaError::Disconnected(self.shared.name.clone())),
            Err(_) => Err(PvaError::Timeout {
                what: format!("{what} {}", self.shared.name),
                timeout,
            }),
        }
    }

    /// Connects (if needed) and reads the value once with `request`.
    ///
    /// Errors: timeout (connect and reply share `timeout`), disconnect, server error.
    pub async fn get(
        &self,
        request: PvRequest,
        timeout: Duration,
    ) -> Result<(Arc<FieldDesc>, PvValue), PvaError> {
        self.get_marked(request, timeout)
            .await
            .map(|(d, v, _)| (d, v))
    }

    /// [`Channel::get`] with the members the server marked as sent: only those hold
    /// the server's values (see [`crate::value::marked`]); a server such as pvxs sends
    /// the whole type and marks what `request` selected.
    ///
    /// Errors: as [`Channel::get`].
    pub async fn get_marked(
        &self,
        request: PvRequest,
        timeout: Duration,
    ) -> Result<(Arc<FieldDesc>, PvValue, BitSet), PvaError> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.wait_connected(timeout).await?;
        let (tx, rx) = oneshot::channel();
        self.conn()?
            .send(ConnCmd::Get(self.shared.cid, request, tx))
            .map_err(|_| PvaError::Disconnected(self.shared.name.clone()))?;
        self.wait_reply(rx, "GET", deadline, timeout).await
    }

    /// Connects (if needed) and reads the type (GET_FIELD).
    ///
    /// Errors: as [`Channel::get`].
    pub async fn get_field(&self, timeout: Duration) -> Result<Arc<FieldDesc>, PvaError> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.wait_connected(timeout).await?;
        let (tx, rx) = oneshot::channel();
        self.conn()?
            .send(ConnCmd::GetField(self.shared.cid, tx))
            .map_err(|_| PvaError::Disconnected(self.shared.name.clone()))?;
        self.wait_reply(rx, "GET_FIELD", deadline, timeout).await
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let server = {
            let mut st = lock(&self.shared.state);
            st.closed = true;
            st.server
        };
        lock(&self.inner.channels).remove(&self.shared.cid);
        let _ = self.inner.search.send(SearchCmd::Remove(self.shared.cid));
        if let Some(server) = server
            && let Some(tx) = lock(&self.inner.conns).get(&server)
        {
            let _ = tx.send(ConnCmd::Destroy(self.shared.cid));
        }
    }
}

// ---------------------------------------------------------------------------------------
// search

/// Binds the beacon listener: 0.0.0.0:`port` shared with every other pvAccess process on
/// the host (SO_REUSEADDR and SO_REUSEPORT, as pvxs's `UDPCollector`), so broadcast
/// beacons reach all of them.
fn bind_beacon_socket(port: u16) -> std::io::Result<UdpSocket> {
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    sock.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
    // forwarded unicast searches go to the local multicast group through the loopback
    sock.set_multicast_if_v4(&std::net::Ipv4Addr::LOCALHOST)?;
    sock.set_multicast_loop_v4(true)?;
    #[cfg(target_os = "linux")]
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::Ipv4PacketInfo, &true)
        .map_err(std::io::Error::from)?;
    UdpSocket::from_std(sock.into())
}

/// A datagram's source and, where the platform tells it (Linux IP_PKTINFO), the address it
/// was sent to.
type Received = (usize, SocketAddr, Option<std::net::Ipv4Addr>);

/// Receives on the beacon socket, or never when there is none.
async fn recv_beacon(
    sock: Option<&UdpSocket>,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> std::io::Result<Received> {
    let Some(sock) = sock else {
        return std::future::pending().await;
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        loop {
            sock.readable().await?;
            match sock.try_io(tokio::io::Interest::READABLE, || {
                recv_with_destination(sock.as_raw_fd(), buf, cmsg)
            }) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cmsg;
        sock.recv_from(buf).await.map(|(n, a)| (n, a, None))
    }
}

#[cfg(target_os = "linux")]
fn recv_with_destination(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> std::io::Result<Received> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn>(fd, &mut iov, Some(cmsg), MsgFlags::empty())
        .map_err(std::io::Error::from)?;
    let src = msg
        .address
        .map(|a| SocketAddr::V4(a.into()))
        .ok_or_else(|| std::io::Error::other("datagram without a source address"))?;
    let dst = msg.cmsgs().ok().and_then(|mut it| {
        it.find_map(|c| match c {
            ControlMessageOwned::Ipv4PacketInfo(p) => {
                Some(std::net::Ipv4Addr::from(u32::from_be(p.ipi_addr.s_addr)))
            }
            _ => None,
        })
    });
    Ok((msg.bytes, src, dst))
}

/// Walks a datagram's messages: `(header, payload)` of each non-control message, stopping
/// at the first truncated one.
fn udp_messages(data: &[u8], mut each: impl FnMut(&Header, &[u8])) {
    let mut at = 0;
    while let Some(hb) = data.get(at..at + 8) {
        let Ok(h) = <&[u8; 8]>::try_from(hb)
            .map_err(|_| ())
            .and_then(|b| Header::parse(b).map_err(|_| ()))
        else {
            break;
        };
        let len = if h.is_control() { 0 } else { h.size as usize };
        let Some(payload) = (at + 8).checked_add(len).and_then(|e| data.get(at + 8..e)) else {
            break;
        };
        if !h.is_control() {
            each(&h, payload);
        }
        at += 8 + len;
    }
}

async fn search_task(
    inner: Weak<Inner>,
    udp: UdpSocket,
    beacon_udp: Option<UdpSocket>,
    mut rx: mpsc::UnboundedReceiver<SearchCmd>,
) {
    let max_period = match inner.upgrade() {
        Some(i) => i.cfg.max_search_period,
        None => return,
    };
    let mut schedule = SearchSchedule::new(max_period);
    let mut servers = BeaconTracker::new(Instant::now());
    let mut gate = ResetGate::default();
    let mut buf = vec![0u8; 65536];
    let mut bbuf = vec![0u8; 65536];
    #[cfg(target_os = "linux")]
    let mut cmsg = nix::cmsg_space!(nix::libc::in_pktinfo);
    #[cfg(not(target_os = "linux"))]
    let mut cmsg = Vec::new();
    let mut seq = 0u32;
    let port = udp.local_addr().map(|a| a.port()).unwrap_or(0);
    let mcast = SocketAddr::from((
        proto::LOCAL_MCAST,
        beacon_udp
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map_or(0, |a| a.port()),
    ));
    loop {
        let next = match (schedule.next_due(), gate.due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        // what the sockets heard: (anomaly seen, found (id, server))
        let mut anomaly = false;
        tokio::select! {
            c = rx.recv() => match c {
                None => return,
                Some(SearchCmd::Add { cid, reset }) => {
                    let Some(inner) = inner.upgrade() else { return };
                    let Some(ch) = lock(&inner.channels).get(&cid).cloned() else { continue };
                    let mut st = lock(&ch.state);
                    if st.closed { continue; }
                    match st.found_delay.take() {
                        Some(d) if !reset => schedule.add_delayed(cid, Instant::now(), d),
                        _ => schedule.add(cid, Instant::now()),
                    }
                }
                Some(SearchCmd::Remove(cid)) => schedule.remove(cid),
            },
            _ = sleep => {
                let Some(inner) = inner.upgrade() else { return };
                let now = Instant::now();
                if gate.take_due(now) {
                    debug!("deferred beacon reset: searching every unresolved name again");
                    schedule.reset_all(now);
                }
                let mut due: Vec<(u32, String)> = Vec::new();
                {
                    let chans = lock(&inner.channels);
                    for cid in schedule.take_due(now, usize::MAX) {
                        match chans.get(&cid) {
                            Some(ch) => due.push((cid, ch.name.clone())),
                            None => schedule.remove(cid),
                        }
                    }
                }
                let mut start = 0;
                while start < due.len() {
                    let mut end = start;
                    let mut bytes = 64;
                    while end < due.len() && (end == start || bytes + due[end].1.len() + 5 < SEARCH_BATCH_BYTES) {
                        bytes += due[end].1.len() + 5;
                        end += 1;
                    }
                    let names: Vec<(u32, &str)> = due[start..end].iter().map(|(c, n)| (*c, n.as_str())).collect();
                    seq = seq.wrapping_add(1);
                    for (dest, bcast) in &inner.dests {
                        let msg = proto::search(seq, port, !bcast, &names);
                        if let Err(e) = udp.send_to(&msg, dest).await {
                            debug!("search to {dest}: {e}");
                        }
                    }
                    start = end;
                }
            }
            r = udp.recv_from(&mut buf) => {
                let Ok((n, src)) = r else { continue };
                let Some(inner) = inner.upgrade() else { return };
                let now = Instant::now();
                udp_messages(&buf[..n], |h, payload| {
                    if h.command != cmd::SEARCH_RESPONSE {
                        return;
                    }
                    let Ok(reply) = proto::parse_search_reply(payload, h.big_endian(), src) else { return };
                    // a server we had not heard from (pvxs treats such a reply as a beacon)
                    anomaly |= servers.heard(reply.server, reply.guid, now);
                    if reply.found {
                        for id in reply.ids {
                            if let Some(delay) = schedule.delay(id) {
                                schedule.remove(id);
                                if let Some(ch) = lock(&inner.channels).get(&id) {
                                    lock(&ch.state).found_delay = Some(delay);
                                }
                                inner.attach(id, reply.server);
                            }
                        }
                    }
                });
            }
            r = recv_beacon(beacon_udp.as_ref(), &mut bbuf, &mut cmsg) => {
                let Ok((n, src, dst)) = r else { continue };
                let now = Instant::now();
                let data = &bbuf[..n];
                if let (Some(fwd), Some(sock)) = (proto::forward_unicast_search(data, src, dst), beacon_udp.as_ref()) {
                    // a unicast search for a server on this host that the kernel gave us
                    if let Err(e) = sock.send_to(&fwd, mcast).await {
                        debug!("forwarding a unicast search from {src}: {e}");
                    }
                    continue;
                }
                udp_messages(data, |h, payload| {
                    if h.command == cmd::BEACON
                        && let Ok(b) = proto::parse_beacon(payload, h.big_endian(), src)
                    {
                        anomaly |= servers.heard(b.server, b.guid, now);
                    }
                });
            }
        }
        if anomaly && !schedule.is_empty() && gate.anomaly(Instant::now()) {
            debug!(
                "a pvAccess server appeared or restarted: searching every unresolved name again"
            );
            schedule.reset_all(Instant::now());
        }
    }
}

// ---------------------------------------------------------------------------------------
// connections

enum Op {
    Get {
        cid: u32,
        desc: Option<Arc<FieldDesc>>,
        reply: oneshot::Sender<MarkedResult>,
    },
    GetField {
        reply: oneshot::Sender<Result<Arc<FieldDesc>, PvaError>>,
    },
    Monitor {
        cid: u32,
        sub: SubscriptionId,
        data: Option<Arc<MonitorData>>,
        /// Pipelined: (updates not yet acknowledged, acknowledge at).
        pipeline: Option<(u32, u32)>,
    },
}

struct Chan {
    shared: Arc<ChanShared>,
    sid: u32,
}

struct Conn {
    inner: Arc<Inner>,
    server: SocketAddr,
    ready: bool,
    waiting: Vec<Arc<ChanShared>>,
    creating: HashMap<u32, Arc<ChanShared>>,
    chans: HashMap<u32, Chan>,
    ops: HashMap<u32, Op>,
    next_ioid: u32,
    cache: TypeCache,
    out: Vec<u8>,
    /// Events of the current socket read, pushed once it is decoded.
    batch: Vec<(Arc<ChanShared>, ChannelEvent)>,
}

fn now() -> SystemTime {
    SystemTime::now()
}

impl Conn {
    fn send(&mut self, m: &[u8]) {
        self.out.extend_from_slice(m);
    }

    fn ioid(&mut self) -> u32 {
        self.next_ioid = self.next_ioid.wrapping_add(1).max(1);
        self.next_ioid
    }

    fn create(&mut self, ch: Arc<ChanShared>) {
        if !self.ready {
            self.waiting.push(ch);
            return;
        }
        let m = proto::create_channel(ch.cid, &ch.name);
        self.send(&m);
        self.creating.insert(ch.cid, ch);
    }

    fn start_monitor(&mut self, cid: u32, sub: SubscriptionId, req: &PvRequest) {
        let Some(sid) = self.chans.get(&cid).map(|c| c.sid) else {
            return;
        };
        let ioid = self.ioid();
        let m = proto::op_init(cmd::MONITOR, sid, ioid, req);
        self.send(&m);
        self.ops.insert(
            ioid,
            Op::Monitor {
                cid,
                sub,
                data: None,
                pipeline: req.pipeline.then_some((0, (req.queue_size / 2).max(1))),
            },
        );
    }

    fn on_cmd(&mut self, c: ConnCmd) {
        match c {
            ConnCmd::Create(ch) => self.create(ch),
            ConnCmd::Destroy(cid) => {
                self.creating.remove(&cid);
                self.waiting.retain(|c| c.cid != cid);
                if let Some(c) = self.chans.remove(&cid) {
                    self.ops.retain(|_, op| op_cid(op) != Some(cid));
                    let m = proto::destroy_channel(c.sid, cid);
                    self.send(&m);
                }
            }
            ConnCmd::Subscribe(cid, sub, req) => self.start_monitor(cid, sub, &req),
            ConnCmd::Get(cid, req, reply) => {
                let Some(sid) = self.chans.get(&cid).map(|c| c.sid) else {
                    let _ = reply.send(Err(PvaError::Disconnected(format!("channel {cid}"))));
                    return;
                };
                let ioid = self.ioid();
                let m = proto::op_init(cmd::GET, sid, ioid, &req);
                self.send(&m);
                self.ops.insert(
                    ioid,
                    Op::Get {
                        cid,
                        desc: None,
                        reply,
                    },
                );
            }
            ConnCmd::GetField(cid, reply) => {
                let Some(sid) = self.chans.get(&cid).map(|c| c.sid) else {
                    let _ = reply.send(Err(PvaError::Disconnected(format!("channel {cid}"))));
                    return;
                };
                let ioid = self.ioid();
                let m = proto::get_field(sid, ioid);
                self.send(&m);
                self.ops.insert(ioid, Op::GetField { reply });
            }
        }
    }

    /// Handles one whole application message.
    fn on_message(&mut self, command: u8, be: bool, payload: &[u8]) -> Result<(), DecodeError> {
        let mut r = Reader::new(payload, be);
        match command {
            cmd::CONNECTION_VALIDATION => {
                let auth = proto::parse_validation(payload, be)?;
                let m = proto::validation_reply(auth);
                self.send(&m);
            }
            cmd::CONNECTION_VALIDATED => {
                let st = r.status()?;
                if !status_ok(&st) {
                    warn!(server = %self.server, "server refused authentication: {st:?}");
                }
                self.ready = true;
                for ch in std::mem::take(&mut self.waiting) {
                    self.create(ch);
                }
            }
            cmd::CREATE_CHANNEL => {
                let cid = r.u32()?;
                let sid = r.u32()?;
                let st = r.status()?;
                let Some(ch) = self.creating.remove(&cid) else {
                    if status_ok(&st) {
                        let m = proto::destroy_channel(sid, cid);
                        self.send(&m);
                    }
                    return Ok(());
                };
                if !status_ok(&st) {
                    warn!(pv = %ch.name, server = %self.server, "server refused the channel: {st:?}");
                    let _ = self.inner.search.send(SearchCmd::Add { cid, reset: false });
                    return Ok(());
                }
                let subs = {
                    let mut s = lock(&ch.state);
                    if s.closed {
                        drop(s);
                        let m = proto::destroy_channel(sid, cid);
                        self.send(&m);
                        return Ok(());
                    }
                    s.server = Some(self.server);
                    s.subs.clone()
                };
                ch.queue.push_state(Event {
                    key: ch.key,
                    kind: ChannelEvent::Connected {
                        server: self.server,
                        at: now(),
                    },
                });
                ch.changed.notify_waiters();
                self.chans.insert(
                    cid,
                    Chan {
                        shared: ch.clone(),
                        sid,
                    },
                );
                for (id, req) in subs {
                    self.start_monitor(cid, id, &req);
                }
            }
            cmd::DESTROY_CHANNEL => {
                let _sid = r.u32()?;
                let cid = r.u32()?;
                if let Some(c) = self.chans.remove(&cid) {
                    self.ops.retain(|_, op| op_cid(op) != Some(cid));
                    disconnected(&self.inner, &c.shared);
                }
            }
            cmd::GET_FIELD => {
                let ioid = r.u32()?;
                let st = r.status()?;
                if let Some(Op::GetField { reply }) = self.ops.remove(&ioid) {
                    let res = if status_ok(&st) {
                        decode_type(&mut r, &mut self.cache)?
                            .ok_or(DecodeError::BadTypeCode(0xFF))
                            .map_err(PvaError::from)
                    } else {
                        Err(server_error("GET_FIELD", st))
                    };
                    let _ = reply.send(res);
                }
            }
            cmd::GET => self.on_get(&mut r)?,
            cmd::MONITOR => self.on_monitor(&mut r)?,
            cmd::MESSAGE => {
                let ioid = r.u32()?;
                let t = r.u8()?;
                let msg = r.string()?;
                debug!(server = %self.server, ioid, "server message type {t}: {msg}");
            }
            _ => {}
        }
        Ok(())
    }

    fn on_get(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let ioid = r.u32()?;
        let subcmd = r.u8()?;
        let st = r.status()?;
        let Some(Op::Get { cid, desc, reply }) = self.ops.remove(&ioid) else {
            return Ok(());
        };
        let sid = self.chans.get(&cid).map(|c| c.sid);
        if !status_ok(&st) {
            let _ = reply.send(Err(server_error("GET", st)));
            if let Some(sid) = sid {
                let m = proto::destroy_request(sid, ioid);
                self.send(&m);
            }
            return Ok(());
        }
        if subcmd & sub::INIT != 0 {
            let d = decode_type(r, &mut self.cache)?.ok_or(DecodeError::BadTypeCode(0xFF))?;
            if let Some(sid) = sid {
                let m = proto::op_sub(cmd::GET, sid, ioid, 0);
                self.send(&m);
            }
            self.ops.insert(
                ioid,
                Op::Get {
                    cid,
                    desc: Some(d),
                    reply,
                },
            );
            return Ok(());
        }
        let Some(d) = desc else {
            return Err(DecodeError::Header("GET reply before INIT"));
        };
        let mut changed = BitSet::new();
        changed.decode_into(r)?;
        let mut v = PvValue::default_for(&d);
        decode_partial(r, &mut self.cache, &d, &mut v, &changed)?;
        let _ = reply.send(Ok((d, v, changed)));
        if let Some(sid) = sid {
            let m = proto::destroy_request(sid, ioid);
            self.send(&m);
        }
        Ok(())
    }

    fn on_monitor(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let ioid = r.u32()?;
        let subcmd = r.u8()?;
        let init = subcmd & sub::INIT != 0;
        let fin = subcmd & sub::DESTROY != 0;
        let st = if init || fin { r.status()? } else { None };
        let Some(Op::Monitor {
            cid,
            sub: sub_id,
            data,
            pipeline,
        }) = self.ops.get_mut(&ioid)
        else {
            return Ok(());
        };
        let cid = *cid;
        let sub_id = *sub_id;
        let Some(chan) = self.chans.get(&cid) else {
            return Ok(());
        };
        let (sid, shared) = (chan.sid, chan.shared.clone());
        if !status_ok(&st) || (fin && r.remaining() == 0) {
            if let Some((_, msg)) = st.filter(|s| s.0 > 1) {
                self.batch.push((
                    shared,
                    ChannelEvent::SubscriptionError {
                        sub: sub_id,
                        message: msg,
                    },
                ));
            }
            self.ops.remove(&ioid);
            return Ok(());
        }
        if init {
            let d = decode_type(r, &mut self.cache)?.ok_or(DecodeError::BadTypeCode(0xFF))?;
            *data = Some(Arc::new(MonitorData {
                value: PvValue::default_for(&d),
                desc: d,
                changed: BitSet::new(),
                overrun: BitSet::new(),
            }));
            let m = proto::op_sub(cmd::MONITOR, sid, ioid, sub::START);
            self.out.extend_from_slice(&m);
            return Ok(());
        }
        let Some(data) = data.as_mut() else {
            return Err(DecodeError::Header("MONITOR update before INIT"));
        };
        // decode in place when the consumer has let go of the previous update
        let d = Arc::make_mut(data);
        d.changed.decode_into(r)?;
        let desc = d.desc.clone();
        decode_partial(r, &mut self.cache, &desc, &mut d.value, &d.changed)?;
        d.overrun.decode_into(r)?;
        if d.overrun.any() {
            shared.overruns.fetch_add(1, Ordering::Relaxed);
        }
        let ev = ChannelEvent::Update {
            sub: sub_id,
            data: data.clone(),
        };
        self.batch.push((shared, ev));
        // a pipelined monitor acknowledges the updates it has taken, half a queue at a time
        if let Some((unacked, ack_at)) = pipeline.as_mut() {
            *unacked += 1;
            if *unacked >= *ack_at {
                let m = proto::monitor_ack(sid, ioid, *unacked);
                *unacked = 0;
                self.out.extend_from_slice(&m);
            }
        }
        Ok(())
    }

    async fn flush_batch(&mut self) {
        for (ch, ev) in self.batch.drain(..) {
            let e = Event {
                key: ch.key,
                kind: ev,
            };
            if matches!(e.kind, ChannelEvent::Update { .. }) {
                ch.queue.push_update(e, &ch.dropped).await;
            } else {
                ch.queue.push_state(e);
            }
        }
    }
}

fn op_cid(op: &Op) -> Option<u32> {
    match op {
        Op::Get { cid, .. } | Op::Monitor { cid, .. } => Some(*cid),
        Op::GetField { .. } => None,
    }
}

fn server_error(what: &str, st: Option<(u8, String)>) -> PvaError {
    PvaError::Server {
        what: what.to_string(),
        message: st.map(|s| s.1).unwrap_or_default(),
    }
}

/// Marks a channel disconnected (event, waiters) and searches for it again.
fn disconnected(inner: &Arc<Inner>, ch: &Arc<ChanShared>) {
    let was = {
        let mut s = lock(&ch.state);
        s.found_delay = None;
        s.server.take().is_some()
    };
    if was {
        ch.queue.push_state(Event {
            key: ch.key,
            kind: ChannelEvent::Disconnected { at: now() },
        });
        ch.changed.notify_waiters();
    }
    if !lock(&ch.state).closed {
        let _ = inner.search.send(SearchCmd::Add {
            cid: ch.cid,
            reset: true,
        });
    }
}

async fn conn_task(
    inner: Arc<Inner>,
    server: SocketAddr,
    me: mpsc::UnboundedSender<ConnCmd>,
    mut rx: mpsc::UnboundedReceiver<ConnCmd>,
) {
    let mut conn = Conn {
        inner: inner.clone(),
        server,
        ready: false,
        waiting: Vec::new(),
        creating: HashMap::new(),
        chans: HashMap::new(),
        ops: HashMap::new(),
        next_ioid: 0,
        cache: TypeCache::new(),
        out: Vec::new(),
        batch: Vec::new(),
    };
    let res = run_conn(&mut conn, &mut rx).await;
    match &res {
        Ok(()) => debug!(%server, "connection closed"),
        Err(e) => debug!(%server, "connection ended: {e}"),
    }
    // stop taking commands, then hand every channel back to the search
    {
        let mut conns = lock(&inner.conns);
        if conns.get(&server).is_some_and(|tx| tx.same_channel(&me)) {
            conns.remove(&server);
        }
    }
    drop(me);
    rx.close();
    let mut all: Vec<Arc<ChanShared>> = Vec::new();
    all.append(&mut conn.waiting);
    all.extend(conn.creating.drain().map(|(_, c)| c));
    all.extend(conn.chans.drain().map(|(_, c)| c.shared));
    while let Ok(c) = rx.try_recv() {
        if let ConnCmd::Create(ch) = c {
            all.push(ch);
        }
    }
    conn.flush_batch().await;
    for ch in all {
        disconnected(&inner, &ch);
    }
}

async fn run_conn(
    conn: &mut Conn,
    rx: &mut mpsc::UnboundedReceiver<ConnCmd>,
) -> Result<(), PvaError> {
    let cfg = conn.inner.cfg.clone();
    let server = conn.server;
    let mut stream = match tokio::time::timeout(cfg.conn_tmo, TcpStream::connect(server)).await {
        Ok(s) => s?,
        Err(_) => {
            return Err(PvaError::Timeout {
                what: format!("TCP connect to {server}"),
                timeout: cfg.conn_tmo,
            });
        }
    };
    let _ = stream.set_nodelay(true);
    let echo_every = (cfg.conn_tmo * 3 / 8).clamp(Duration::from_secs(1), Duration::from_secs(15));
    let mut echo = tokio::time::interval_at(tokio::time::Instant::now() + echo_every, echo_every);
    echo.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rx = Instant::now();
    let mut buf: Vec<u8> = vec![0; 64 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    let mut seg: Vec<u8> = Vec::new();
    let mut seg_cmd: Option<(u8, bool)> = None;
    loop {
        if !conn.out.is_empty() {
            let out = std::mem::take(&mut conn.out);
            stream.write_all(&out).await?;
            conn.out = out;
            conn.out.clear();
        }
        // make room: compact, or grow for a message larger than the buffer
        if start > 0 && (end == buf.len() || start == end) {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        if end == buf.len() {
            let need = if end - start >= 8 {
                let mut hb = [0u8; 8];
                hb.copy_from_slice(&buf[start..start + 8]);
                let h = Header::parse(&hb).map_err(|error| PvaError::Protocol { server, error })?;
                8 + h.size as usize
            } else {
                buf.len()
            };
            if need > cfg.max_message.saturating_add(8) {
                return Err(PvaError::Protocol {
                    server,
                    error: DecodeError::BadSize(need as u64),
                });
            }
            buf.resize(
                need.max(buf.len() + 1)
                    .min(cfg.max_message + 8)
                    .max(buf.len() + 1),
                0,
            );
        }
        tokio::select! {
            n = stream.read(&mut buf[end..]) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                end += n;
                last_rx = Instant::now();
                // decode every whole message in the buffer
                while end - start >= 8 {
                    let mut hb = [0u8; 8];
                    hb.copy_from_slice(&buf[start..start + 8]);
                    let h = Header::parse(&hb).map_err(|error| PvaError::Protocol { server, error })?;
                    if h.is_control() {
                        start += 8;
                        continue;
                    }
                    let size = h.size as usize;
                    if size > cfg.max_message {
                        return Err(PvaError::Protocol { server, error: DecodeError::BadSize(size as u64) });
                    }
                    if end - start < 8 + size {
                        break;
                    }
                    let payload = &buf[start + 8..start + 8 + size];
                    let segf = h.flags & proto::FLAG_SEGMENT_MASK;
                    let res = if segf == 0 {
                        conn.on_message(h.command, h.big_endian(), payload)
                    } else {
                        if segf == proto::FLAG_SEGMENT_FIRST {
                            seg.clear();
                            seg_cmd = Some((h.command, h.big_endian()));
                        }
                        if seg.len() + payload.len() > cfg.max_message {
                            return Err(PvaError::Protocol { server, error: DecodeError::BadSize((seg.len() + payload.len()) as u64) });
                        }
                        seg.extend_from_slice(payload);
                        if segf == proto::FLAG_SEGMENT_LAST {
                            match seg_cmd.take() {
                                Some((c, be)) => {
                                    let whole = std::mem::take(&mut seg);
                                    let r = conn.on_message(c, be, &whole);
                                    seg = whole;
                                    seg.clear();
                                    r
                                }
                                None => Err(DecodeError::Header("last segment without a first")),
                            }
                        } else {
                            Ok(())
                        }
                    };
                    res.map_err(|error| PvaError::Protocol { server, error })?;
                    start += 8 + size;
                }
                if start == end {
                    start = 0;
                    end = 0;
                }
                conn.flush_batch().await;
            }
            c = rx.recv() => match c {
                Some(c) => conn.on_cmd(c),
                None => return Ok(()),
            },
            _ = echo.tick() => {
                if last_rx.elapsed() > cfg.conn_tmo {
                    return Err(PvaError::Timeout { what: format!("server {server} silent"), timeout: cfg.conn_tmo });
                }
                conn.send(&proto::echo());
            }
        }
    }
}
