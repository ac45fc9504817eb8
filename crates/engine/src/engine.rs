//! The engine: one task that owns every CA channel and the sampling state, fed by one
//! shared event queue; a writer task that flushes the per-PV buffers to the short-term
//! store every write period; and a handle ([`Engine`]) for the management API.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use archiver_ca::{
    Channel, ChannelEvent, Client, Dbr, EventReceiver, Subscription, event_queue, mask,
};
use archiver_pb::{FieldValue, PayloadType, Sample, Timestamp};
use archiver_storage::Tier;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::convert::{archived_type, to_pb_time, to_pb_value};
use crate::counters::Counters;
use crate::error::EngineError;
use crate::filter::{TimestampFilter, Verdict};
use crate::linebuf::{Chunk, LineBuffer};
use crate::pv::{BufferSnapshot, PvConfig, PvMeta, PvSlot, PvState, PvStatus, SlotState, lock};
use crate::sampler::Sampler;
use crate::writer;

/// Seconds between two full dumps of a PV's fields (Java: once a day).
const DAILY_DUMP_SECS: i64 = 86_400;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How often buffers are written to the short-term store (Java `secondsToBuffer`).
    pub write_period: Duration,
    /// Allowed difference between IOC and server clocks (`server_ioc_drift_secs`).
    pub drift_secs: i64,
    /// Archive fields of a PV when the request names none.
    pub default_archive_fields: Vec<String>,
    /// Buffer bound for a PV archived at every event (period 0).
    pub max_buffer_samples: usize,
    /// Capacity of the shared CA event queue.
    pub queue_capacity: usize,
    /// How often held-back samples are checked for the end of their period.
    pub tick: Duration,
    /// Called (on a blocking thread) after each write period's flush; the binary trims
    /// the C heap there, when the period's buffers have just been released.
    pub after_write: Option<fn()>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            write_period: Duration::from_secs(10),
            drift_secs: 1800,
            default_archive_fields: ["HIHI", "HIGH", "LOW", "LOLO", "LOPR", "HOPR"]
                .map(String::from)
                .to_vec(),
            max_buffer_samples: 100_000,
            queue_capacity: 1 << 16,
            tick: Duration::from_millis(200),
            after_write: None,
        }
    }
}

/// What `archive` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveOutcome {
    /// A new PV: its channel is being created.
    Submitted,
    /// The PV was already archived or requested.
    AlreadySubmitted,
}

enum Cmd {
    Start {
        slot: Arc<PvSlot>,
        startup: bool,
    },
    Rtyp {
        id: u64,
        rtyp: String,
    },
    Pause {
        id: u64,
        reply: oneshot::Sender<()>,
    },
    Remove {
        id: u64,
        reply: oneshot::Sender<()>,
    },
    Meta {
        id: u64,
        result: Result<Dbr, archiver_ca::CaError>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

pub(crate) struct Inner {
    pub slots: RwLock<HashMap<Arc<str>, Arc<PvSlot>>>,
    pub sts: Tier,
    pub config: EngineConfig,
    pub clock: Arc<dyn Clock>,
    cmd: mpsc::UnboundedSender<Cmd>,
    next_id: AtomicU64,
}

impl Inner {
    /// The slots `keep` selects, copied out so the table's lock is not held while they
    /// are used.
    pub(crate) fn slots_where(&self, keep: impl Fn(&PvSlot) -> bool) -> Vec<Arc<PvSlot>> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|s| keep(s))
            .cloned()
            .collect()
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sts", &self.sts)
            .finish_non_exhaustive()
    }
}

/// A handle to the running engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn buffer_capacity(config: &EngineConfig, pv: &PvConfig) -> usize {
    // Java: round(writePeriod / samplingPeriod) + 1, at least 2; with our decimation at
    // most one sample per period is stored, so this bounds MONITOR and SCAN alike. Twice
    // that, so that a slow write does not drop what the next period brings.
    if pv.period > 0.0 {
        let per_write = (config.write_period.as_secs_f64() / pv.period)
            .round()
            .max(1.0);
        ((per_write as usize + 1) * 2).clamp(4, config.max_buffer_samples.max(4))
    } else {
        config.max_buffer_samples.max(4)
    }
}

impl Engine {
    /// Starts the engine: its event task and its writer. Must be called in a tokio runtime.
    pub fn start(client: Client, sts: Tier, config: EngineConfig, clock: Arc<dyn Clock>) -> Engine {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            slots: RwLock::new(HashMap::new()),
            sts,
            config: config.clone(),
            clock: clock.clone(),
            cmd: cmd_tx.clone(),
            next_id: AtomicU64::new(1),
        });
        let (queue, events) =
            event_queue(config.queue_capacity, archiver_ca::Overflow::Backpressure);
        let actor = Actor {
            inner: inner.clone(),
            client,
            queue,
            cmd_tx,
            pvs: HashMap::new(),
            with_pending: HashSet::new(),
            out: Vec::new(),
        };
        tokio::spawn(actor.run(events, cmd_rx));
        tokio::spawn(writer::run(inner.clone()));
        Engine { inner }
    }

    fn slot(&self, pv: &str) -> Option<Arc<PvSlot>> {
        self.inner
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(pv)
            .cloned()
    }

    /// Starts archiving `pv` (returns at once; the channel connects in the background).
    pub fn archive(&self, pv: &str, config: PvConfig) -> Result<ArchiveOutcome, EngineError> {
        self.add(pv, config, None, false, None)
    }

    /// Adds a PV known from the catalogue at start-up, with its stored type, paused or
    /// not, and the time of its newest stored sample.
    pub fn restore(
        &self,
        pv: &str,
        config: PvConfig,
        archived_type: Option<PayloadType>,
        paused: bool,
        last_stored: Option<Timestamp>,
    ) -> Result<ArchiveOutcome, EngineError> {
        self.add(pv, config, archived_type, paused, last_stored)
    }

    fn add(
        &self,
        pv: &str,
        mut config: PvConfig,
        archived_type: Option<PayloadType>,
        paused: bool,
        last_stored: Option<Timestamp>,
    ) -> Result<ArchiveOutcome, EngineError> {
        archiver_pb::path::chunk_key(pv).map_err(|e| EngineError::BadName(e.to_string()))?;
        if !config.period.is_finite() || config.period < 0.0 {
            return Err(EngineError::BadPeriod(config.period));
        }
        if config.archive_fields.len() > MAX_ARCHIVE_FIELDS {
            return Err(EngineError::TooManyFields(config.archive_fields.len()));
        }
        let auto_fields = config.archive_fields.is_empty();
        if auto_fields {
            config.archive_fields = self.inner.config.default_archive_fields.clone();
        }
        let mut slots = self.inner.slots.write().unwrap_or_else(|e| e.into_inner());
        if slots.contains_key(pv) {
            return Ok(ArchiveOutcome::AlreadySubmitted);
        }
        let id = self.inner.next_id.fetch_add(1, Relaxed);
        let capacity = buffer_capacity(&self.inner.config, &config);
        let slot = Arc::new(PvSlot {
            name: Arc::from(pv),
            id,
            counters: Counters::default(),
            state: std::sync::Mutex::new(SlotState {
                config,
                state: if paused {
                    PvState::Paused
                } else {
                    PvState::NeverConnected
                },
                archived_type,
                conn: Default::default(),
                meta: PvMeta::default(),
                buffer: Default::default(),
                in_flight: None,
                capacity,
                last_stored,
                auto_fields,
            }),
            io: std::sync::Mutex::new(()),
        });
        slots.insert(slot.name.clone(), slot.clone());
        drop(slots);
        if !paused {
            self.send(Cmd::Start {
                slot,
                startup: true,
            })?;
        }
        Ok(ArchiveOutcome::Submitted)
    }

    fn send(&self, cmd: Cmd) -> Result<(), EngineError> {
        self.inner.cmd.send(cmd).map_err(|_| EngineError::ShutDown)
    }

    /// Pauses `pv`: its channel is closed and everything it had in memory is written.
    pub async fn pause(&self, pv: &str) -> Result<(), EngineError> {
        let slot = self
            .slot(pv)
            .ok_or_else(|| EngineError::NotFound(pv.to_string()))?;
        if lock(&slot.state).state == PvState::Paused {
            return Err(EngineError::AlreadyPaused(pv.to_string()));
        }
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Pause {
            id: slot.id,
            reply: tx,
        })?;
        rx.await.map_err(|_| EngineError::ShutDown)?;
        lock(&slot.state).state = PvState::Paused;
        writer::flush_slots(&self.inner, vec![slot]).await;
        Ok(())
    }

    /// Resumes a paused `pv`.
    pub fn resume(&self, pv: &str) -> Result<(), EngineError> {
        let slot = self
            .slot(pv)
            .ok_or_else(|| EngineError::NotFound(pv.to_string()))?;
        {
            let mut st = lock(&slot.state);
            if st.state != PvState::Paused {
                return Err(EngineError::NotPaused(pv.to_string()));
            }
            st.state = if st.conn.first_established_secs == 0 {
                PvState::NeverConnected
            } else {
                PvState::Archiving
            };
        }
        self.send(Cmd::Start {
            slot,
            startup: true,
        })
    }

    /// Removes a paused `pv` from the engine (its files stay).
    pub async fn delete(&self, pv: &str) -> Result<(), EngineError> {
        let slot = self
            .slot(pv)
            .ok_or_else(|| EngineError::NotFound(pv.to_string()))?;
        if lock(&slot.state).state != PvState::Paused {
            return Err(EngineError::NotPaused(pv.to_string()));
        }
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Remove {
            id: slot.id,
            reply: tx,
        })?;
        rx.await.map_err(|_| EngineError::ShutDown)?;
        writer::flush_slots(&self.inner, vec![slot]).await;
        self.inner
            .slots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pv);
        Ok(())
    }

    /// The status of `pv`, if the engine has it.
    pub fn status(&self, pv: &str) -> Option<PvStatus> {
        self.slot(pv).map(|s| s.status())
    }

    /// The status of every PV.
    pub fn all_status(&self) -> Vec<PvStatus> {
        self.inner
            .slots_where(|_| true)
            .iter()
            .map(|s| s.status())
            .collect()
    }

    /// The status of each PV whose archived type and metadata are known and whose name
    /// `skip` does not hold: what the catalogue has yet to record. Only those are copied,
    /// so the periodic check costs next to nothing once every PV is recorded.
    pub fn known_status_except(&self, skip: &HashSet<String>) -> Vec<PvStatus> {
        self.inner
            .slots_where(|s| !skip.contains(&*s.name))
            .iter()
            .filter(|s| {
                let st = lock(&s.state);
                st.archived_type.is_some() && st.meta.known
            })
            .map(|s| s.status())
            .collect()
    }

    /// The names of all PVs, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .map(|k| k.to_string())
            .collect();
        v.sort();
        v
    }

    /// The samples of `pv` still in memory (being written, then buffered).
    pub fn buffered(&self, pv: &str) -> Option<BufferSnapshot> {
        let slot = self.slot(pv)?;
        let st = lock(&slot.state);
        let payload_type = st.archived_type?;
        let mut samples = Vec::with_capacity(st.buffer.len());
        if let Some(chunks) = &st.in_flight {
            LineBuffer::decode_into(chunks, payload_type, &mut samples);
        }
        let held: Vec<Chunk> = st.buffer.chunks().cloned().collect();
        LineBuffer::decode_into(&held, payload_type, &mut samples);
        Some(BufferSnapshot {
            payload_type,
            samples,
        })
    }

    /// The short-term store.
    pub fn sts(&self) -> &Tier {
        &self.inner.sts
    }

    /// Writes every buffer now.
    pub async fn flush(&self) {
        writer::flush_all(&self.inner).await;
    }

    /// Stops archiving: every held-back sample is committed, every channel closed, every
    /// buffer written. Returns when all is on disk.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Cmd::Shutdown { reply: tx }).is_ok() {
            let _ = rx.await;
        }
        writer::flush_all(&self.inner).await;
    }
}

/// Per-PV state owned by the engine task.
struct Runtime {
    slot: Arc<PvSlot>,
    channel: Option<Arc<Channel>>,
    fields: Vec<FieldRuntime>,
    filter: TimestampFilter,
    sampler: Sampler,
    /// Connection annotations for the next archived sample.
    cnx_pending: Option<(i64, bool)>,
    startup: bool,
    changed_fields: Vec<FieldValue>,
    last_dump_secs: i64,
    rtyp_checked: bool,
    /// The archived type, mirrored from the slot (set once) to keep a lock off the hot path.
    archived_type: Option<PayloadType>,
}

struct FieldRuntime {
    name: String,
    channel: Option<Channel>,
    value: Option<String>,
}

/// Runtime fields: monitored, kept, written only in the daily dump.
const RUNTIME_FIELDS: &[&str] = &["DESC"];

struct Actor {
    inner: Arc<Inner>,
    client: Client,
    queue: archiver_ca::EventQueue,
    cmd_tx: mpsc::UnboundedSender<Cmd>,
    /// Boxed: the table then holds pointers, and its spare capacity (up to half of it
    /// after growing) costs 8 bytes a slot instead of a whole `Runtime`.
    pvs: HashMap<u64, Box<Runtime>>,
    with_pending: HashSet<u64>,
    out: Vec<Sample>,
}

fn key(id: u64, field: usize) -> u64 {
    (id << 8) | field as u64
}

/// The most archive fields a PV may have (field channels are numbered 1..=254).
pub(crate) const MAX_ARCHIVE_FIELDS: usize = 200;

/// The field index of the channel that reads `PV.RTYP` (no archive field has it).
const RTYP_INDEX: usize = 255;

/// Record types whose archive fields include DRVH and DRVL by default.
const OUTPUT_RECORDS: &[&str] = &["ao", "longout"];

/// A monitored channel on `pv.field`, reporting to `queue` under field index `idx`.
fn field_channel(
    client: &Client,
    queue: &archiver_ca::EventQueue,
    pv: &str,
    field: &str,
    id: u64,
    idx: usize,
) -> Option<Channel> {
    let ch = client
        .create_channel(&format!("{pv}.{field}"), queue, key(id, idx))
        .ok()?;
    ch.subscribe(Subscription::time(
        mask::DBE_VALUE | mask::DBE_LOG | mask::DBE_ALARM,
    ))
    .ok()?;
    Some(ch)
}

fn field_text(v: &archiver_ca::Value, labels: &[String]) -> String {
    match v {
        archiver_ca::Value::Double(x) => format!("{x:?}"),
        archiver_ca::Value::Float(x) => format!("{x:?}"),
        other => other.get_string(0, labels).unwrap_or_default(),
    }
}

impl Actor {
    async fn run(mut self, events: EventReceiver, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let mut batch = Vec::with_capacity(1024);
        let mut tick = tokio::time::interval(self.inner.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                n = events.recv_many(&mut batch, 1024) => {
                    if n == 0 {
                        break;
                    }
                    let now = self.inner.clock.now();
                    for ev in batch.drain(..) {
                        self.on_event(ev.key, ev.kind, now);
                    }
                }
                cmd = cmds.recv() => {
                    match cmd {
                        Some(Cmd::Shutdown { reply }) => {
                            self.stop_all();
                            let _ = reply.send(());
                            break;
                        }
                        Some(cmd) => self.on_cmd(cmd),
                        None => break,
                    }
                }
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Start { slot, startup } => self.start(slot, startup),
            Cmd::Pause { id, reply } => {
                self.stop(id);
                let _ = reply.send(());
            }
            Cmd::Remove { id, reply } => {
                self.stop(id);
                self.pvs.remove(&id);
                let _ = reply.send(());
            }
            Cmd::Meta { id, result } => {
                let Some(rt) = self.pvs.get(&id) else { return };
                match result {
                    Ok(dbr) => {
                        if let Some(m) = dbr.meta {
                            let mut st = lock(&rt.slot.state);
                            st.meta = PvMeta {
                                egu: m.units.clone(),
                                prec: m.precision,
                                limits: m.limits.as_array(),
                                labels: m.enum_strs.clone(),
                                known: true,
                            };
                        }
                    }
                    Err(e) => {
                        debug!(pv = %rt.slot.name, "DBR_CTRL read failed: {e}");
                        Counters::inc(&rt.slot.counters.transient_errors);
                    }
                }
            }
            Cmd::Rtyp { id, rtyp } => {
                // Java's default policy: output records also archive DRVH and DRVL.
                if !OUTPUT_RECORDS.contains(&rtyp.as_str()) {
                    return;
                }
                let Some(rt) = self.pvs.get_mut(&id) else {
                    return;
                };
                for field in ["DRVH", "DRVL"] {
                    if rt.fields.iter().any(|f| f.name == field) {
                        continue;
                    }
                    let idx = rt.fields.len() + 1;
                    let channel =
                        field_channel(&self.client, &self.queue, &rt.slot.name, field, id, idx);
                    rt.fields.push(FieldRuntime {
                        name: field.to_string(),
                        channel,
                        value: None,
                    });
                    lock(&rt.slot.state)
                        .config
                        .archive_fields
                        .push(field.to_string());
                }
            }
            Cmd::Shutdown { .. } => {}
        }
    }

    fn start(&mut self, slot: Arc<PvSlot>, startup: bool) {
        let id = slot.id;
        let (config, last, ty) = {
            let st = lock(&slot.state);
            (
                st.config.clone(),
                st.buffer.last_time().or(st.last_stored),
                st.archived_type,
            )
        };
        let rt = self.pvs.entry(id).or_insert_with(|| {
            Box::new(Runtime {
                slot: slot.clone(),
                channel: None,
                fields: Vec::new(),
                filter: TimestampFilter::new(self.inner.config.drift_secs),
                sampler: Sampler::new(config.method, config.period),
                cnx_pending: None,
                startup,
                changed_fields: Vec::new(),
                last_dump_secs: 0,
                rtyp_checked: false,
                archived_type: None,
            })
        });
        if rt.filter.last().is_none() {
            rt.filter.set_last(last);
        }
        rt.startup = startup;
        rt.archived_type = ty;
        match self
            .client
            .create_channel(&slot.name, &self.queue, key(id, 0))
        {
            Ok(ch) => {
                if let Err(e) = ch.subscribe(Subscription::time(mask::DBE_LOG | mask::DBE_ALARM)) {
                    warn!(pv = %slot.name, "cannot subscribe: {e}");
                }
                rt.channel = Some(Arc::new(ch));
            }
            Err(e) => {
                warn!(pv = %slot.name, "cannot create channel: {e}");
                Counters::inc(&slot.counters.transient_errors);
            }
        }
        let names: Vec<String> = config
            .archive_fields
            .iter()
            .map(String::as_str)
            .chain(RUNTIME_FIELDS.iter().copied())
            .map(String::from)
            .collect();
        rt.fields = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let channel =
                    field_channel(&self.client, &self.queue, &slot.name, &name, id, i + 1);
                FieldRuntime {
                    name,
                    channel,
                    value: None,
                }
            })
            .collect();
    }

    /// Commits held-back samples and closes the channels of PV `id`.
    fn stop(&mut self, id: u64) {
        let Some(rt) = self.pvs.get_mut(&id) else {
            return;
        };
        let out = &mut self.out;
        rt.sampler.flush(&mut |s| out.push(s));
        let now = self.inner.clock.now();
        Self::store_all(rt, out, now);
        self.with_pending.remove(&id);
        rt.channel = None;
        for f in &mut rt.fields {
            f.channel = None;
        }
        let mut st = lock(&rt.slot.state);
        st.conn.connected = false;
    }

    fn stop_all(&mut self) {
        let ids: Vec<u64> = self.pvs.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }

    fn on_tick(&mut self) {
        if self.with_pending.is_empty() {
            return;
        }
        let now = self.inner.clock.now();
        let out = &mut self.out;
        self.with_pending.retain(|id| {
            let Some(rt) = self.pvs.get_mut(id) else {
                return false;
            };
            rt.sampler.tick(now, &mut |s| out.push(s));
            Self::store_all(rt, out, now);
            rt.sampler.has_pending()
        });
    }

    /// A channel connected (or its first value arrived before the connect event).
    fn on_connected(
        &mut self,
        id: u64,
        native: archiver_ca::DbfType,
        count: u32,
        server: std::net::SocketAddr,
        now: Timestamp,
    ) {
        let Some(rt) = self.pvs.get_mut(&id) else {
            return;
        };
        let slot = rt.slot.clone();
        let ty = archived_type(native, count);
        {
            let mut st = lock(&slot.state);
            match st.archived_type {
                None => st.archived_type = Some(ty),
                Some(t) if t != ty => {
                    warn!(pv = %slot.name, "type changed from {t} to {ty}: events are dropped and counted");
                }
                Some(_) => {}
            }
            rt.archived_type = st.archived_type;
            if st.state == PvState::NeverConnected {
                st.state = PvState::Archiving;
            }
            st.conn.connected = true;
            st.conn.server = Some(server);
            st.conn.element_count = count;
            if st.conn.first_established_secs == 0 {
                st.conn.first_established_secs = now.secs;
            } else {
                st.conn.last_reestablished_secs = now.secs;
                st.conn.loss_regain_count += 1;
            }
            rt.cnx_pending = Some((st.conn.lost_at_secs, rt.startup));
            if !rt.rtyp_checked && st.auto_fields {
                rt.rtyp_checked = true;
                // Read PV.RTYP on a channel of the shared queue (its events are ignored:
                // no field has that index), to add DRVH and DRVL for output records.
                let rtyp = self
                    .client
                    .create_channel(
                        &format!("{}.RTYP", slot.name),
                        &self.queue,
                        key(id, RTYP_INDEX),
                    )
                    .ok();
                let tx = self.cmd_tx.clone();
                if let Some(ch) = rtyp {
                    tokio::spawn(async move {
                        if ch.wait_connected(Duration::from_secs(5)).await.is_err() {
                            return;
                        }
                        if let Ok(d) = ch.get().await {
                            let rtyp = d.value.get_string(0, &[]).unwrap_or_default();
                            let _ = tx.send(Cmd::Rtyp { id, rtyp });
                        }
                    });
                }
            }
        }
        rt.startup = false;
        rt.filter.on_connect();
        if let Some(ch) = rt.channel.clone() {
            let tx = self.cmd_tx.clone();
            tokio::spawn(async move {
                let result = ch.get_ctrl().await;
                let _ = tx.send(Cmd::Meta { id, result });
            });
        }
    }

    fn on_event(&mut self, key: u64, kind: ChannelEvent, now: Timestamp) {
        let id = key >> 8;
        let field = (key & 0xFF) as usize;
        let Some(mut rt) = self.pvs.get_mut(&id) else {
            return;
        };
        // Events still queued from a channel closed by pause or delete are ignored.
        if rt.channel.is_none() {
            return;
        }
        if field > 0 {
            if let (ChannelEvent::Value { data, .. }, Some(f)) =
                (&kind, rt.fields.get_mut(field - 1))
            {
                let labels = lock(&rt.slot.state).meta.labels.clone();
                let text = field_text(&data.value, &labels);
                if f.value.as_deref() != Some(text.as_str()) {
                    let is_runtime = RUNTIME_FIELDS.contains(&f.name.as_str());
                    // The first value after connect is not a change.
                    if f.value.is_some() && !is_runtime {
                        rt.changed_fields.retain(|c| c.name != f.name);
                        rt.changed_fields
                            .push(FieldValue::new(f.name.clone(), text.clone()));
                    }
                    f.value = Some(text);
                }
            }
            return;
        }
        let slot = rt.slot.clone();
        match kind {
            ChannelEvent::Connected {
                native,
                count,
                server,
                ..
            } => self.on_connected(id, native, count, server, now),
            ChannelEvent::Disconnected { at } => {
                {
                    let mut st = lock(&slot.state);
                    st.conn.connected = false;
                    st.conn.lost_at_secs = at.secs;
                }
                Counters::inc(&slot.counters.disconnects);
                slot.counters.last_disconnect_secs.store(at.secs, Relaxed);
                let out = &mut self.out;
                rt.sampler.flush(&mut |s| out.push(s));
                Self::store_all(rt, out, now);
                self.with_pending.remove(&id);
            }
            ChannelEvent::AccessRights(_) => {}
            ChannelEvent::SubscriptionError { .. } => {
                Counters::inc(&slot.counters.transient_errors);
            }
            ChannelEvent::Value { data, .. } => {
                let c = &slot.counters;
                Counters::inc(&c.events_received);
                let ts = data.stamp.map(to_pb_time).unwrap_or(now);
                let _ = c
                    .first_event_secs
                    .compare_exchange(0, ts.secs, Relaxed, Relaxed);
                c.last_event_secs.store(ts.secs, Relaxed);
                let ty = match rt.archived_type {
                    Some(ty) => ty,
                    None => {
                        // The connect event was lost or is late: the channel knows.
                        let Some(info) = rt.channel.as_ref().and_then(|ch| ch.info()) else {
                            Counters::inc(&c.dropped_no_type);
                            return;
                        };
                        self.on_connected(id, info.native, info.count, info.server, now);
                        let Some(rt2) = self.pvs.get_mut(&id) else {
                            return;
                        };
                        rt = rt2;
                        match rt.archived_type {
                            Some(ty) => ty,
                            None => {
                                Counters::inc(&slot.counters.dropped_no_type);
                                return;
                            }
                        }
                    }
                };
                let Some(value) = to_pb_value(&data.value, ty) else {
                    Counters::inc(&c.dropped_type_change);
                    return;
                };
                match rt.filter.check(ts, now) {
                    Verdict::Accept => {}
                    Verdict::Same => {
                        Counters::inc(&c.repeated_timestamp);
                        return;
                    }
                    _ => {
                        Counters::inc(&c.dropped_timestamp);
                        return;
                    }
                }
                let mut s = Sample::new(ts, value);
                s.severity = i32::from(data.severity);
                s.status = i32::from(data.status);
                let out = &mut self.out;
                rt.sampler.offer(s, &mut |s| out.push(s));
                Self::store_all(rt, out, now);
                if rt.sampler.has_pending() {
                    self.with_pending.insert(id);
                }
            }
        }
    }

    /// Annotates and buffers the samples the sampler released.
    fn store_all(rt: &mut Runtime, out: &mut Vec<Sample>, now: Timestamp) {
        for mut s in out.drain(..) {
            if let Some((lost, startup)) = rt.cnx_pending.take() {
                s.field_values
                    .push(FieldValue::new("cnxlostepsecs", lost.to_string()));
                s.field_values
                    .push(FieldValue::new("cnxregainedepsecs", now.secs.to_string()));
                if startup {
                    s.field_values.push(FieldValue::new("startup", "true"));
                }
            }
            if now.secs - rt.last_dump_secs >= DAILY_DUMP_SECS
                && rt.fields.iter().any(|f| f.value.is_some())
            {
                rt.last_dump_secs = now.secs;
                rt.changed_fields.clear();
                for f in &rt.fields {
                    if let Some(v) = &f.value {
                        s.field_values
                            .push(FieldValue::new(f.name.clone(), v.clone()));
                    }
                }
                let meta = lock(&rt.slot.state).meta.clone();
                if meta.known {
                    s.field_values.push(FieldValue::new("EGU", meta.egu));
                    s.field_values
                        .push(FieldValue::new("PREC", meta.prec.to_string()));
                }
                s.field_actual_change = Some(false);
            } else if !rt.changed_fields.is_empty() {
                s.field_values.append(&mut rt.changed_fields);
                s.field_actual_change = Some(true);
            }
            rt.slot.push(&s);
        }
    }
}
