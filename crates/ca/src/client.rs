//! The client context: channels, name search, beacons, and the circuits.
//!
//! One task owns the UDP socket and the table of channels. It searches for unresolved
//! names (batched datagrams, per-name back-off, reset by beacon anomalies), starts one
//! circuit per server, hands each found channel to its circuit, and puts channels back
//! into the search when their circuit dies. Requests from [`Channel`] handles pass
//! through it to the right circuit.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::beacon::BeaconTracker;
use crate::channel::{Channel, ChannelShared, ConnCell, DbrRequest, SubSpec};
use crate::circuit::{self, CircCmd, CircEvent, CircuitHandle};
use crate::config::ClientConfig;
use crate::error::CaError;
use crate::event::SubscriptionId;
use crate::queue::{EventQueue, EventReceiver, event_queue};
use crate::repeater;
use crate::search::{DatagramBuilder, MAX_NAME_LEN, SearchSchedule, UdpMessage, parse_datagram};
use crate::value::{Dbr, Value};

/// Names searched per pass at most; the rest follow on the next pass, at least
/// [`crate::search::PASS_INTERVAL`] later.
const NAMES_PER_PASS: usize = 512;
/// Delay before searching again for a channel the server refused or dropped.
const LOST_RETRY: Duration = Duration::from_secs(1);

/// Requests from handles to the context.
#[derive(Debug)]
pub(crate) enum Cmd {
    Create {
        shared: Arc<ChannelShared>,
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

/// A Channel Access client. Cheap to clone; the background task ends when the last
/// clone and the last [`Channel`] are dropped.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

/// What the client and every channel handle share (a channel holds one pointer to it).
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) cmd: mpsc::UnboundedSender<Cmd>,
    pub(crate) cfg: Arc<ClientConfig>,
    next_cid: AtomicU32,
    pub(crate) next_sub: AtomicU32,
    search_addrs: Vec<SocketAddr>,
    pub(crate) search_addrs_text: Arc<str>,
    stats: Arc<ClientStats>,
}

/// Running totals of a [`Client`] since it started, for metrics (relaxed atomics, counted
/// by the client's one task: a search pass adds once per datagram, not per name sent).
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Search datagrams sent (one per batch of names and search address).
    pub search_datagrams: AtomicU64,
    /// Names searched for (each name of each pass, once per pass).
    pub search_names: AtomicU64,
    /// Search replies that found a channel's server.
    pub search_replies: AtomicU64,
    /// Virtual circuits (TCP connections to an IOC) started.
    pub circuits_opened: AtomicU64,
    /// Virtual circuits open now.
    pub circuits_open: AtomicU64,
    /// Times this client bound the repeater port after its holder had gone (see
    /// [`crate::repeater`]), and runs the host's repeater since.
    pub repeater_takeovers: AtomicU64,
}

impl Client {
    /// Starts a client (must be called inside a tokio runtime).
    pub async fn new(cfg: ClientConfig) -> Result<Client, CaError> {
        let cfg = Arc::new(cfg);
        let search_addrs = cfg.search_addrs();
        if search_addrs.is_empty() {
            return Err(CaError::InvalidArgument(
                "no search address: set EPICS_CA_ADDR_LIST or EPICS_CA_AUTO_ADDR_LIST=YES".into(),
            ));
        }
        let udp = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)).await?;
        udp.set_broadcast(true)?;
        // Bound here, before `new` returns, so that a short-lived client holds the port
        // for its whole life (the case the repeater hand-over has to survive).
        let repeater_task =
            repeater::try_bind(cfg.repeater_port).map(|s| tokio::spawn(repeater::run(s)));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let text = search_addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        let stats = Arc::new(ClientStats::default());
        let mut ctx = Context::new(cfg.clone(), udp, search_addrs.clone(), stats.clone());
        ctx.repeater_task = repeater_task;
        tokio::spawn(ctx.run(cmd_rx));
        Ok(Client {
            inner: Arc::new(Inner {
                cmd: cmd_tx,
                cfg,
                next_cid: AtomicU32::new(1),
                next_sub: AtomicU32::new(1),
                search_addrs,
                search_addrs_text: text.into(),
                stats,
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The client's running totals (searches, circuits).
    pub fn stats(&self) -> &ClientStats {
        &self.inner.stats
    }

    /// Where searches are sent.
    pub fn search_addrs(&self) -> &[SocketAddr] {
        &self.inner.search_addrs
    }

    /// Creates a channel with its own queue (capacity and overflow from the config).
    /// The receiver ends when the channel is dropped.
    pub fn channel(&self, name: &str) -> Result<(Channel, EventReceiver), CaError> {
        let (q, rx) = event_queue(self.inner.cfg.queue_capacity, self.inner.cfg.overflow);
        let ch = self.create_channel(name, &q, 0)?;
        Ok((ch, rx))
    }

    /// Creates a channel whose events go to `queue`, tagged with `key` (share one queue
    /// among thousands of channels and drain it in batches with
    /// [`EventReceiver::recv_many`]).
    pub fn create_channel(
        &self,
        name: &str,
        queue: &EventQueue,
        key: u64,
    ) -> Result<Channel, CaError> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(CaError::InvalidArgument(format!(
                "bad PV name length {}",
                name.len()
            )));
        }
        let cid = self.inner.next_cid.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(ChannelShared {
            name: name.to_string(),
            cid,
            key,
            queue: queue.clone(),
            dropped: AtomicU64::new(0),
            conn: ConnCell::default(),
        });
        self.inner
            .cmd
            .send(Cmd::Create {
                shared: shared.clone(),
            })
            .map_err(|_| CaError::Shutdown)?;
        Ok(Channel {
            shared,
            client: self.inner.clone(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Searching,
    OnCircuit { server: SocketAddr, circuit: u64 },
}

struct ChanRec {
    shared: Arc<ChannelShared>,
    subs: Vec<SubSpec>,
    state: State,
}

struct Context {
    cfg: Arc<ClientConfig>,
    udp: UdpSocket,
    search_addrs: Vec<SocketAddr>,
    chans: HashMap<u32, ChanRec>,
    circuits: HashMap<SocketAddr, CircuitHandle>,
    next_circuit: u64,
    schedule: SearchSchedule,
    datagrams: DatagramBuilder,
    beacons: BeaconTracker,
    circ_tx: mpsc::UnboundedSender<CircEvent>,
    circ_rx: mpsc::UnboundedReceiver<CircEvent>,
    /// Our registration with the host's repeater, renewed for the client's whole life.
    registration: repeater::Registration,
    /// The repeater this process runs, if it holds the port (aborted with the context).
    repeater_task: Option<tokio::task::JoinHandle<()>>,
    stats: Arc<ClientStats>,
}

impl Drop for Context {
    fn drop(&mut self) {
        if let Some(t) = self.repeater_task.take() {
            t.abort();
        }
    }
}

impl Context {
    fn new(
        cfg: Arc<ClientConfig>,
        udp: UdpSocket,
        search_addrs: Vec<SocketAddr>,
        stats: Arc<ClientStats>,
    ) -> Self {
        let (circ_tx, circ_rx) = mpsc::unbounded_channel();
        let max = cfg.max_search_period;
        Context {
            cfg,
            udp,
            search_addrs,
            chans: HashMap::new(),
            circuits: HashMap::new(),
            next_circuit: 1,
            schedule: SearchSchedule::new(max),
            datagrams: DatagramBuilder::default(),
            beacons: BeaconTracker::new(Instant::now()),
            circ_tx,
            circ_rx,
            registration: repeater::Registration::default(),
            repeater_task: None,
            stats,
        }
    }

    async fn run(mut self, mut cmd_rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut buf = vec![0u8; 0x10000];
        let mut msgs = Vec::new();
        let mut register = tokio::time::interval(repeater::TICK);
        register.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = self.schedule.next_due();
            let sleep = tokio::time::sleep_until(next.map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(3600),
                tokio::time::Instant::from_std,
            ));
            tokio::select! {
                c = cmd_rx.recv() => match c {
                    Some(c) => self.command(c),
                    None => break,
                },
                Some(ev) = self.circ_rx.recv() => self.circuit_event(ev),
                r = self.udp.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        msgs.clear();
                        parse_datagram(&buf[..n], from, &mut msgs);
                        for m in msgs.drain(..) {
                            self.udp_message(m);
                        }
                    }
                }
                _ = sleep, if next.is_some() => self.search_pass().await,
                _ = register.tick() => self.repeater_tick().await,
            }
        }
    }

    /// Keeps this client registered with the host's repeater, whatever happens to the
    /// process that holds the port ([`repeater::Registration`]).
    async fn repeater_tick(&mut self) {
        let step = self.registration.tick(Instant::now());
        if step == repeater::Step::Wait {
            return;
        }
        let port = self.cfg.repeater_port;
        if step == repeater::Step::TakePortAndRegister
            && self.repeater_task.as_ref().is_none_or(|t| t.is_finished())
            && let Some(sock) = repeater::try_bind(port)
        {
            tracing::info!(
                port,
                "no repeater answered: this process runs the beacon repeater now"
            );
            self.stats
                .repeater_takeovers
                .fetch_add(1, Ordering::Relaxed);
            self.repeater_task = Some(tokio::spawn(repeater::run(sock)));
        }
        let to = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let msg = repeater::register_message(Ipv4Addr::LOCALHOST);
        if let Err(e) = self.udp.send_to(&msg, to).await {
            tracing::debug!(%to, error = %e, "repeater registration failed");
        }
    }

    async fn search_pass(&mut self) {
        let due = self.schedule.take_due(Instant::now(), NAMES_PER_PASS);
        let names = due
            .iter()
            .filter_map(|cid| self.chans.get(cid).map(|c| (*cid, c.shared.name.as_str())));
        let datagrams = self.datagrams.build(names);
        self.stats
            .search_names
            .fetch_add(due.len() as u64, Ordering::Relaxed);
        self.stats.search_datagrams.fetch_add(
            (datagrams.len() * self.search_addrs.len()) as u64,
            Ordering::Relaxed,
        );
        for d in &datagrams {
            for a in &self.search_addrs {
                if let Err(e) = self.udp.send_to(d, a).await {
                    tracing::debug!(addr = %a, error = %e, "search send failed");
                }
            }
        }
    }

    fn udp_message(&mut self, m: UdpMessage) {
        match m {
            UdpMessage::Found { cid, server, minor } => {
                let Some(rec) = self.chans.get(&cid) else {
                    return;
                };
                if rec.state != State::Searching {
                    if rec.state
                        != (State::OnCircuit {
                            server,
                            circuit: self.circuit_id(server),
                        })
                    {
                        tracing::debug!(pv = %rec.shared.name, %server, "duplicate search reply (ECA_DBLCHNL)");
                    }
                    return;
                }
                if minor != 0 && minor < 4 {
                    tracing::warn!(%server, minor, "ignoring server with unsupported protocol version");
                    return;
                }
                self.schedule.remove(cid);
                self.stats.search_replies.fetch_add(1, Ordering::Relaxed);
                self.attach(cid, server);
            }
            UdpMessage::Beacon { server, id } => {
                // beacons reach us only through a repeater: it is alive
                self.registration.heard(Instant::now());
                if self.beacons.beacon(server, id, Instant::now()) && !self.schedule.is_empty() {
                    tracing::debug!(%server, "beacon anomaly: searching again now");
                    self.schedule.reset_all(Instant::now());
                }
            }
            UdpMessage::RepeaterConfirm => self.registration.heard(Instant::now()),
        }
    }

    /// Records the number of open circuits in the stats.
    fn count_circuits(&self) {
        let open = self.circuits.len() as u64;
        self.stats.circuits_open.store(open, Ordering::Relaxed);
    }

    fn circuit_id(&self, server: SocketAddr) -> u64 {
        self.circuits.get(&server).map_or(0, |c| c.id)
    }

    /// Hands channel `cid` to the circuit for `server`, starting one if needed.
    fn attach(&mut self, cid: u32, server: SocketAddr) {
        let Some(rec) = self.chans.get(&cid) else {
            return;
        };
        let mut cmd = CircCmd::Create {
            shared: rec.shared.clone(),
            subs: rec.subs.clone(),
        };
        for _ in 0..2 {
            let handle = match self.circuits.get(&server) {
                Some(h) => h,
                None => {
                    let id = self.next_circuit;
                    self.next_circuit += 1;
                    let h = circuit::spawn(id, server, self.cfg.clone(), self.circ_tx.clone());
                    self.stats.circuits_opened.fetch_add(1, Ordering::Relaxed);
                    let open = self.circuits.len() as u64 + 1;
                    self.stats.circuits_open.store(open, Ordering::Relaxed);
                    self.circuits.entry(server).or_insert(h)
                }
            };
            let circuit = handle.id;
            match handle.tx.send(cmd) {
                Ok(()) => {
                    if let Some(rec) = self.chans.get_mut(&cid) {
                        rec.state = State::OnCircuit { server, circuit };
                    }
                    return;
                }
                Err(e) => {
                    // that circuit task has ended; its Down event will follow
                    self.circuits.remove(&server);
                    self.count_circuits();
                    cmd = e.0;
                }
            }
        }
        self.schedule.add(cid, Instant::now());
    }

    fn circuit_event(&mut self, ev: CircEvent) {
        let now = Instant::now();
        match ev {
            CircEvent::ChannelLost { circuit, cid } => {
                if let Some(rec) = self.chans.get_mut(&cid)
                    && matches!(rec.state, State::OnCircuit { circuit: c, .. } if c == circuit)
                {
                    rec.state = State::Searching;
                    self.schedule.add(cid, now + LOST_RETRY);
                }
            }
            CircEvent::Down { circuit } => {
                let server = self
                    .circuits
                    .iter()
                    .find(|(_, h)| h.id == circuit)
                    .map(|(s, _)| *s);
                if let Some(s) = server {
                    self.circuits.remove(&s);
                    self.count_circuits();
                    self.beacons.forget(s);
                }
                for (cid, rec) in self.chans.iter_mut() {
                    if matches!(rec.state, State::OnCircuit { circuit: c, .. } if c == circuit) {
                        rec.state = State::Searching;
                        self.schedule.add(*cid, now);
                    }
                }
            }
        }
    }

    /// Sends a command to the circuit of `cid`; `Err` gives it back if not on a circuit.
    fn send_to_circuit(&mut self, cid: u32, c: CircCmd) -> Result<(), CircCmd> {
        let Some(State::OnCircuit { server, circuit }) = self.chans.get(&cid).map(|r| r.state)
        else {
            return Err(c);
        };
        match self.circuits.get(&server) {
            Some(h) if h.id == circuit => h.tx.send(c).map_err(|e| e.0),
            _ => Err(c),
        }
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Create { shared } => {
                let cid = shared.cid;
                self.chans.insert(
                    cid,
                    ChanRec {
                        shared,
                        subs: Vec::new(),
                        state: State::Searching,
                    },
                );
                self.schedule.add(cid, Instant::now());
            }
            Cmd::Clear { cid } => {
                let _ = self.send_to_circuit(cid, CircCmd::Clear { cid });
                self.schedule.remove(cid);
                self.chans.remove(&cid);
            }
            Cmd::Subscribe { cid, spec } => {
                if let Some(rec) = self.chans.get_mut(&cid) {
                    // The first one exactly sized: most channels have one subscription,
                    // and an archiver has tens of thousands of channels.
                    if rec.subs.capacity() == 0 {
                        rec.subs.reserve_exact(1);
                    }
                    rec.subs.push(spec);
                    let _ = self.send_to_circuit(cid, CircCmd::Subscribe { cid, spec });
                }
            }
            Cmd::Unsubscribe { cid, id } => {
                if let Some(rec) = self.chans.get_mut(&cid) {
                    rec.subs.retain(|s| s.id != id);
                    let _ = self.send_to_circuit(cid, CircCmd::Unsubscribe { cid, id });
                }
            }
            Cmd::Read {
                cid,
                request,
                count,
                reply,
            } => {
                if let Err(CircCmd::Read { reply, .. }) = self.send_to_circuit(
                    cid,
                    CircCmd::Read {
                        cid,
                        request,
                        count,
                        reply,
                    },
                ) {
                    let _ = reply.send(Err(CaError::Disconnected(self.name(cid))));
                }
            }
            Cmd::Write { cid, value, reply } => {
                if let Err(CircCmd::Write { reply, .. }) =
                    self.send_to_circuit(cid, CircCmd::Write { cid, value, reply })
                {
                    let _ = reply.send(Err(CaError::Disconnected(self.name(cid))));
                }
            }
        }
    }

    fn name(&self, cid: u32) -> String {
        self.chans
            .get(&cid)
            .map(|r| r.shared.name.clone())
            .unwrap_or_default()
    }
}
