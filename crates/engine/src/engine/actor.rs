//! The actor: the one task that owns every CA channel (one per PV, one per archive field
//! `PV.FIELD`) and the per-PV sampling state ([`TimestampFilter`], [`Sampler`],
//! [`Annotator`]). It drains the shared CA event queue in batches, applies the filter,
//! converts and samples the values, annotates the samples and pushes them, encoded, into
//! the PV's bounded line buffer; it also processes management commands and the results of
//! its own background reads (DBR_CTRL metadata, `.RTYP`).
//!
//! # Queues
//!
//! * **CA events** — one shared queue of `EngineConfig::queue_capacity` events with
//!   back-pressure (`archiver_ca::Overflow::Backpressure`): when the actor falls behind,
//!   the CA client stops reading its sockets rather than growing memory.
//! * **Management commands** ([`Cmd`]) — unbounded, because [`Engine::archive`],
//!   [`Engine::restore`] and [`Engine::resume`] are synchronous (a start-up restore adds
//!   every PV in a loop) and cannot wait for room. Its length is nevertheless bounded by
//!   construction: see [`Cmd`].
//! * **Feedback** ([`Feedback`]) — bounded ([`FEEDBACK_CAPACITY`]): the results of the
//!   DBR_CTRL and `.RTYP` reads the actor spawns on each connect. The spawned reads wait for
//!   room; the actor itself never sends to it, so it cannot block on its own queue.
//!
//! [`Engine::archive`]: super::Engine::archive
//! [`Engine::restore`]: super::Engine::restore
//! [`Engine::resume`]: super::Engine::resume

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use archiver_ca::{
    Channel, ChannelEvent, Client, Dbr, EventQueue, EventReceiver, Subscription, event_queue, mask,
};
use archiver_pb::{PayloadType, Sample, Timestamp};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::convert::{archived_type, to_pb_time, to_pb_value};
use crate::counters::Counters;
use crate::filter::{TimestampFilter, Verdict};
use crate::pv::{PvMeta, PvSlot, PvState, lock};
use crate::sampler::Sampler;

use super::Inner;
use super::annotate::Annotator;

mod pva;
use super::fields::{
    MAX_FIELD_INDEX, RUNTIME_FIELDS, extra_fields, field_channel, field_text, is_runtime, key,
    read_rtyp, rtyp_channel, split_key,
};

/// A management command from the handle.
///
/// The queue is unbounded (the handle's `archive`, `restore` and `resume` are synchronous),
/// but it never holds more than one command per PV in the table plus one per management
/// request in progress:
/// * `Start` is sent once per PV added to the table (a name already there is refused) and
///   once per resume, which requires the PV to be paused; a pause waits for the actor to
///   answer, so by then the actor has consumed every earlier command (FIFO), the previous
///   `Start` of that PV included. So at most one `Start` per PV is queued.
/// * `Pause`, `Remove` and `Shutdown` each have a caller waiting for the reply.
///
/// Each entry is small (a pointer and a flag, or an id and a reply sender).
pub(super) enum Cmd {
    /// Creates the PV's channels; `startup` marks the first sample after the connect.
    Start { slot: Arc<PvSlot>, startup: bool },
    /// Commits held-back samples and closes the PV's channels.
    Pause { id: u64, reply: oneshot::Sender<()> },
    /// As `Pause`, then forgets the PV.
    Remove { id: u64, reply: oneshot::Sender<()> },
    /// Stops every PV, then the actor.
    Shutdown { reply: oneshot::Sender<()> },
}

/// The result of a read the actor spawned.
enum Feedback {
    /// `PV.RTYP` of PV `id`.
    Rtyp { id: u64, rtyp: String },
    /// DBR_CTRL of PV `id`.
    Meta {
        id: u64,
        result: Result<Dbr, archiver_ca::CaError>,
    },
}

/// Capacity of the feedback queue: beyond it, finished reads wait (as tasks) for the actor.
const FEEDBACK_CAPACITY: usize = 1024;

/// Events taken from the CA queue at once.
const EVENT_BATCH: usize = 1024;

/// Starts the actor on the current runtime.
pub(super) fn spawn(inner: Arc<Inner>, client: Client, cmds: mpsc::UnboundedReceiver<Cmd>) {
    let (queue, events) = event_queue(
        inner.config.queue_capacity,
        archiver_ca::Overflow::Backpressure,
    );
    let (feedback_tx, feedback_rx) = mpsc::channel(FEEDBACK_CAPACITY);
    let (pva, pva_events) =
        pva::PvaSide::new(inner.config.pva.clone(), inner.config.queue_capacity);
    let actor = Actor {
        inner,
        client,
        pva,
        queue,
        feedback: feedback_tx,
        pvs: HashMap::new(),
        with_pending: HashSet::new(),
        out: Vec::new(),
    };
    tokio::spawn(actor.run(events, pva_events, cmds, feedback_rx));
}

/// Per-PV state owned by the actor.
struct Runtime {
    slot: Arc<PvSlot>,
    channel: Option<Arc<Channel>>,
    /// The pvAccess channel of a `pva://` PV (then `channel` stays `None`).
    pva: Option<pva::PvaChannel>,
    /// The channel of each field, in the order of the annotator's fields (field index
    /// `i + 1` on the event queue); `None` where it could not be created.
    field_channels: Vec<Option<Channel>>,
    /// Whether the fields' channels are open: only once the PV's own channel has connected
    /// (an IOC that serves PV serves PV.FIELD), so that a PV that never connects is one
    /// name searched for, not one per archive field.
    fields_open: bool,
    /// The fields registered before that (their `field_channels` index, their name).
    unopened_fields: Vec<(usize, Box<str>)>,
    filter: TimestampFilter,
    sampler: Sampler,
    annotator: Annotator,
    rtyp_checked: bool,
    /// The archived type, mirrored from the slot (set once) to keep a lock off the hot path.
    archived_type: Option<PayloadType>,
}

impl Runtime {
    /// Monitors field `name` (its channel index follows the fields already there); false
    /// when the PV has as many fields as a key can number.
    fn add_field(&mut self, client: &Client, queue: &EventQueue, name: &str) -> bool {
        let idx = self.annotator.field_count() + 1;
        if idx > MAX_FIELD_INDEX {
            warn!(pv = %self.slot.name, "field {name} not monitored: more than {MAX_FIELD_INDEX} fields");
            return false;
        }
        let channel = if self.fields_open {
            field_channel(client, queue, &self.slot.name, name, self.slot.id, idx)
        } else {
            self.unopened_fields
                .push((self.field_channels.len(), Box::from(name)));
            None
        };
        self.annotator.add_field(name, is_runtime(name));
        self.field_channels.push(channel);
        true
    }

    /// Opens the channels of the fields registered before the PV connected.
    fn open_fields(&mut self, client: &Client, queue: &EventQueue) {
        if self.fields_open {
            return;
        }
        self.fields_open = true;
        for (i, name) in std::mem::take(&mut self.unopened_fields) {
            if let Some(ch) = self.field_channels.get_mut(i) {
                *ch = field_channel(client, queue, &self.slot.name, &name, self.slot.id, i + 1);
            }
        }
    }
}

struct Actor {
    inner: Arc<Inner>,
    client: Client,
    /// The pvAccess client (made at the first `pva://` PV) and its event queue.
    pva: pva::PvaSide,
    queue: EventQueue,
    feedback: mpsc::Sender<Feedback>,
    /// Boxed: the table then holds pointers, and its spare capacity (up to half of it
    /// after growing) costs 8 bytes a slot instead of a whole `Runtime`.
    pvs: HashMap<u64, Box<Runtime>>,
    with_pending: HashSet<u64>,
    out: Vec<Sample>,
}

impl Actor {
    async fn run(
        mut self,
        events: EventReceiver,
        pva_events: archiver_pva::EventReceiver,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut feedback: mpsc::Receiver<Feedback>,
    ) {
        let mut batch = Vec::with_capacity(EVENT_BATCH);
        let mut pva_batch = Vec::new();
        let mut tick = tokio::time::interval(self.inner.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                n = events.recv_many(&mut batch, EVENT_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    let now = self.inner.clock.now();
                    for ev in batch.drain(..) {
                        self.on_event(ev.key, ev.kind, now);
                    }
                }
                // The actor holds a sender of this queue too: 0 never comes while it runs.
                n = pva_events.recv_many(&mut pva_batch, EVENT_BATCH) => {
                    let now = self.inner.clock.now();
                    for ev in pva_batch.drain(..n) {
                        self.on_pva_event(ev.key, ev.kind, now);
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
                // The actor holds a sender: this never ends while it runs.
                Some(fb) = feedback.recv() => self.on_feedback(fb),
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
            Cmd::Shutdown { .. } => {}
        }
    }

    fn on_feedback(&mut self, fb: Feedback) {
        match fb {
            Feedback::Meta { id, result } => {
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
            Feedback::Rtyp { id, rtyp } => self.on_rtyp(id, &rtyp),
        }
    }

    /// Adds the policy's extra fields for record type `rtyp` to PV `id` (monitored at once
    /// if it is running, from its resume on if it was paused meanwhile).
    fn on_rtyp(&mut self, id: u64, rtyp: &str) {
        let extra = extra_fields(&self.inner.config.record_type_fields, rtyp);
        let Some(rt) = self.pvs.get_mut(&id) else {
            return;
        };
        let auto_fields = {
            let mut st = lock(&rt.slot.state);
            st.conn.record_type = Some(rtyp.to_string());
            st.auto_fields
        };
        if !auto_fields {
            // Read for the status only (`read_record_type`): its fields were chosen.
            return;
        }
        let keeps = &self.inner.config.default_fields_record_types;
        if !keeps.is_empty() && !keeps.iter().any(|t| t == rtyp) {
            // Java's default policy gives this record type no fields: stop the defaults
            // (a stringin has no HIHI: its channel would search forever), and let the
            // catalogue record the list again.
            for field in &self.inner.config.default_archive_fields {
                if let Some(idx) = rt.annotator.forget_field(field) {
                    if let Some(ch) = rt.field_channels.get_mut(idx) {
                        *ch = None;
                    }
                    rt.unopened_fields.retain(|(i, _)| *i != idx);
                }
            }
            let mut st = lock(&rt.slot.state);
            let defaults = &self.inner.config.default_archive_fields;
            st.config.archive_fields.retain(|f| !defaults.contains(f));
            drop(st);
            rt.slot
                .catalogued
                .store(false, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        for field in extra {
            let known = rt.annotator.has_field(field)
                || lock(&rt.slot.state).config.archive_fields.contains(field);
            if known {
                continue;
            }
            if rt.channel.is_some() {
                if !rt.add_field(&self.client, &self.queue, field) {
                    break;
                }
            } else if lock(&rt.slot.state).config.archive_fields.len() + RUNTIME_FIELDS.len()
                >= MAX_FIELD_INDEX
            {
                break;
            }
            lock(&rt.slot.state)
                .config
                .archive_fields
                .push(field.clone());
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
                pva: None,
                field_channels: Vec::new(),
                fields_open: false,
                unopened_fields: Vec::new(),
                filter: TimestampFilter::new(self.inner.config.drift_secs),
                sampler: Sampler::new(config.method, config.period),
                annotator: Annotator::default(),
                rtyp_checked: false,
                archived_type: None,
            })
        });
        if rt.filter.last().is_none() {
            rt.filter.set_last(last);
        }
        rt.annotator.start(startup);
        rt.archived_type = ty;
        if let Some(target) = &slot.pva {
            // pvAccess: one monitor of the whole structure; no archive fields
            rt.pva = self.pva.channel(target, &slot, key(id, 0));
            return;
        }
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
        rt.field_channels.clear();
        rt.unopened_fields.clear();
        rt.fields_open = false;
        let names = config
            .archive_fields
            .iter()
            .map(String::as_str)
            .chain(RUNTIME_FIELDS.iter().copied());
        for name in names {
            if !rt.add_field(&self.client, &self.queue, name) {
                break;
            }
        }
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
        rt.pva = None;
        for f in &mut rt.field_channels {
            *f = None;
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

    /// Records a connect of PV `id` (type `ty` when the connect tells it: CA; a PVA type
    /// is known at the first update) in its slot and annotator; `Some(true)` when the
    /// record type must be read now, `None` for an unknown PV.
    fn mark_connected(
        &mut self,
        id: u64,
        ty: Option<PayloadType>,
        count: u32,
        server: std::net::SocketAddr,
        now: Timestamp,
    ) -> Option<bool> {
        let rt = self.pvs.get_mut(&id)?;
        let slot = rt.slot.clone();
        let read_rtyp_now = {
            let mut st = lock(&slot.state);
            match (st.archived_type, ty) {
                (None, ty) => st.archived_type = ty,
                (Some(t), Some(ty)) if t != ty => {
                    warn!(pv = %slot.name, "type changed from {t} to {ty}: events are dropped and counted");
                }
                _ => {}
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
            rt.annotator.connected();
            let by_rtyp = !self.inner.config.record_type_fields.is_empty()
                || !self.inner.config.default_fields_record_types.is_empty();
            let due = !rt.rtyp_checked
                && ((st.auto_fields && by_rtyp) || self.inner.config.read_record_type);
            rt.rtyp_checked |= due;
            due
        };
        rt.filter.on_connect();
        Some(read_rtyp_now)
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
        let Some(read_rtyp_now) =
            self.mark_connected(id, Some(archived_type(native, count)), count, server, now)
        else {
            return;
        };
        let Some(rt) = self.pvs.get_mut(&id) else {
            return;
        };
        rt.open_fields(&self.client, &self.queue);
        let slot = rt.slot.clone();
        if read_rtyp_now {
            // Read PV.RTYP on a channel of the shared queue (its events are ignored: no
            // field has that index), to add the policy's fields for the record type.
            if let Some(ch) = rtyp_channel(&self.client, &self.queue, &slot.name, id) {
                let tx = self.feedback.clone();
                tokio::spawn(async move {
                    if let Some(rtyp) = read_rtyp(ch).await {
                        let _ = tx.send(Feedback::Rtyp { id, rtyp }).await;
                    }
                });
            }
        }
        if let Some(ch) = rt.channel.clone() {
            let tx = self.feedback.clone();
            tokio::spawn(async move {
                let result = ch.get_ctrl().await;
                let _ = tx.send(Feedback::Meta { id, result }).await;
            });
        }
    }

    fn on_event(&mut self, key: u64, kind: ChannelEvent, now: Timestamp) {
        let (id, field) = split_key(key);
        let Some(mut rt) = self.pvs.get_mut(&id) else {
            return;
        };
        // Events still queued from a channel closed by pause or delete are ignored.
        if rt.channel.is_none() {
            return;
        }
        if field > 0 {
            // The `.RTYP` read's index is beyond every field: ignored here.
            if let ChannelEvent::Value { data, .. } = &kind
                && field <= rt.annotator.field_count()
            {
                let text = field_text(&data.value, &lock(&rt.slot.state).meta.labels);
                rt.annotator.field_value(field - 1, text);
            }
            return;
        }
        match kind {
            ChannelEvent::Connected {
                native,
                count,
                server,
                ..
            } => self.on_connected(id, native, count, server, now),
            ChannelEvent::Disconnected { at } => self.on_disconnected(id, at.secs, now),
            ChannelEvent::AccessRights(_) => {}
            ChannelEvent::SubscriptionError { .. } => {
                Counters::inc(&rt.slot.counters.transient_errors);
            }
            ChannelEvent::Value { data, .. } => {
                if rt.archived_type.is_none() {
                    // The connect event was lost or is late: the channel knows.
                    if let Some(info) = rt.channel.as_ref().and_then(|ch| ch.info()) {
                        self.on_connected(id, info.native, info.count, info.server, now);
                    }
                    let Some(rt2) = self.pvs.get_mut(&id) else {
                        return;
                    };
                    rt = rt2;
                }
                if Self::on_value(rt, &mut self.out, &data, now) {
                    self.with_pending.insert(id);
                }
            }
        }
    }

    /// PV `id` lost its server at `at_secs`: counted, and what the sampler holds is stored.
    fn on_disconnected(&mut self, id: u64, at_secs: i64, now: Timestamp) {
        let Some(rt) = self.pvs.get_mut(&id) else {
            return;
        };
        let slot = &rt.slot;
        {
            let mut st = lock(&slot.state);
            st.conn.connected = false;
            st.conn.lost_at_secs = at_secs;
        }
        Counters::inc(&slot.counters.disconnects);
        slot.counters.last_disconnect_secs.store(at_secs, Relaxed);
        let out = &mut self.out;
        rt.sampler.flush(&mut |s| out.push(s));
        Self::store_all(rt, out, now);
        // After what was held is stored: those samples belong before the loss.
        rt.annotator.disconnected(at_secs);
        self.with_pending.remove(&id);
    }

    /// Samples, filters and buffers one value of a PV's own channel; true when the sampler
    /// holds a sample back (the tick must flush it). Borrows the runtime rather than
    /// cloning its slot's `Arc`: this runs once per event.
    fn on_value(rt: &mut Runtime, out: &mut Vec<Sample>, data: &Dbr, now: Timestamp) -> bool {
        let ts = data.stamp.map(to_pb_time).unwrap_or(now);
        let alarm = (i32::from(data.severity), i32::from(data.status));
        Self::offer(rt, out, ts, alarm, now, None, |ty| {
            to_pb_value(&data.value, ty)
        })
    }

    /// [`Actor::on_value`] for any protocol: counts the event, converts it with `convert`
    /// (`None`: a type change), filters its time stamp `ts`, samples and buffers it with
    /// its `(severity, status)`; true when the sampler holds a sample back.
    fn offer(
        rt: &mut Runtime,
        out: &mut Vec<Sample>,
        ts: Timestamp,
        (severity, status): (i32, i32),
        now: Timestamp,
        user_tag: Option<u32>,
        convert: impl FnOnce(PayloadType) -> Option<archiver_pb::Value>,
    ) -> bool {
        let c = &rt.slot.counters;
        Counters::inc(&c.events_received);
        let _ = c
            .first_event_secs
            .compare_exchange(0, ts.secs, Relaxed, Relaxed);
        c.last_event_secs.store(ts.secs, Relaxed);
        let Some(ty) = rt.archived_type else {
            Counters::inc(&c.dropped_no_type);
            return false;
        };
        let Some(value) = convert(ty) else {
            Counters::inc(&c.dropped_type_change);
            return false;
        };
        match rt.filter.check(ts, now) {
            Verdict::Accept => {}
            Verdict::Same => {
                Counters::inc(&c.repeated_timestamp);
                rt.annotator.repeated_timestamp();
                return false;
            }
            _ => {
                Counters::inc(&c.dropped_timestamp);
                return false;
            }
        }
        let mut s = Sample::new(ts, value);
        s.severity = severity;
        s.status = status;
        s.user_tag = user_tag;
        rt.sampler.offer(s, &mut |s| out.push(s));
        Self::store_all(rt, out, now);
        rt.sampler.has_pending()
    }

    /// Annotates and buffers the samples the sampler released.
    fn store_all(rt: &mut Runtime, out: &mut Vec<Sample>, now: Timestamp) {
        let slot = &rt.slot;
        for mut s in out.drain(..) {
            rt.annotator.annotate(&mut s, now, || {
                let st = lock(&slot.state);
                st.meta.known.then(|| (st.meta.egu.clone(), st.meta.prec))
            });
            slot.push(&s);
        }
    }
}
