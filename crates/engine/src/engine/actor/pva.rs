//! The pvAccess path of the actor: `pva://` PVs ([`crate::pv::PvaTarget`]) monitored with
//! the archiver's PVA client ([`archiver_pva`]), their updates turned into the same samples
//! as CA values and fed to the same filter, sampler, annotator and buffer
//! ([`Actor::offer`]).
//!
//! * One client, made at the first `pva://` PV (`EngineConfig::pva`, else the `EPICS_PVA_*`
//!   environment), and one
//!   event queue with back-pressure, as for CA; keys as for CA (field index 0).
//! * A PV monitors its whole structure (`field()`, as Java). Its archived member is
//!   `value`, or for a field PV (`pva://NAME#a/b`) the member `a.b`; a field PV takes an
//!   update only when that member (or a structure above it) changed.
//! * Type ([`crate::convert::pva_archived_type`]) and metadata (`display`, `control`,
//!   `valueAlarm`, enum choices → EGU, PREC, limits, labels) are read from the first
//!   update after each connect, and the metadata again whenever those members change.
//! * `timeStamp` (Unix seconds + nanoseconds) is the sample time, `alarm` its severity and
//!   status; a V4_GENERIC_BYTES sample also carries `timeStamp.userTag` (Java does).
//! * An update whose overrun bitset is not empty (the server squashed updates before it)
//!   counts one in `dropped_by_client`, as a CA update the client dropped does.

use std::time::UNIX_EPOCH;

use archiver_pb::{PayloadType, Sample, Timestamp};
use archiver_pva::value::lookup;
use archiver_pva::{
    BitSet, ChannelEvent, Client, ClientConfig, EventQueue, EventReceiver, FieldDesc, MonitorData,
    Overflow, PvRequest, event_queue, nt,
};
use tracing::warn;

use super::{Actor, Runtime, split_key};
use crate::convert::{pva_archived_type, pva_to_pb_value};
use crate::counters::Counters;
use crate::pv::{PvMeta, PvSlot, PvaTarget, lock};

/// The actor's pvAccess client and queue.
pub(super) struct PvaSide {
    config: Option<ClientConfig>,
    client: Option<Client>,
    /// The client could not be made (reported once).
    failed: bool,
    queue: EventQueue,
}

/// A `pva://` PV's channel.
pub(super) struct PvaChannel {
    _channel: archiver_pva::Channel,
    /// The next update is the first since a connect: read type and metadata.
    first_update: bool,
}

impl PvaSide {
    /// No client yet (it will use `config`, or the environment); a queue of `capacity`
    /// updates with back-pressure.
    pub(super) fn new(config: Option<ClientConfig>, capacity: usize) -> (PvaSide, EventReceiver) {
        let (queue, events) = event_queue(capacity, Overflow::Backpressure);
        (
            PvaSide {
                config,
                client: None,
                failed: false,
                queue,
            },
            events,
        )
    }

    fn client(&mut self) -> Option<&Client> {
        if self.client.is_none() && !self.failed {
            let config = match self.config.take() {
                Some(c) => Ok(c),
                None => ClientConfig::from_env(),
            };
            match config.and_then(Client::start) {
                Ok(c) => self.client = Some(c),
                Err(e) => {
                    warn!("pvAccess client not started: {e}; pva:// PVs will not connect");
                    self.failed = true;
                }
            }
        }
        self.client.as_ref()
    }

    /// Creates the channel of `target` reporting under `key`, monitoring its whole
    /// structure; `None` (counted as a transient error) when there is no client.
    pub(super) fn channel(
        &mut self,
        target: &PvaTarget,
        slot: &PvSlot,
        key: u64,
    ) -> Option<PvaChannel> {
        let queue = self.queue.clone();
        let made = self
            .client()
            .map(|c| c.create_channel(&target.channel, key, &queue));
        match made {
            Some(Ok(ch)) => {
                ch.subscribe(PvRequest::all());
                Some(PvaChannel {
                    _channel: ch,
                    first_update: true,
                })
            }
            Some(Err(e)) => {
                warn!(pv = %slot.name, "cannot create the pvAccess channel: {e}");
                Counters::inc(&slot.counters.transient_errors);
                None
            }
            None => {
                Counters::inc(&slot.counters.transient_errors);
                None
            }
        }
    }
}

/// Seconds since the Unix epoch of a client time.
fn epoch_secs(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// True when `changed` covers member `path`: its own bits, or a structure above it.
fn member_changed(desc: &FieldDesc, changed: &BitSet, path: &str) -> bool {
    if changed.get(0) {
        return true;
    }
    let mut end = 0;
    loop {
        let next = path[end..].find('.').map(|i| end + i);
        let prefix = &path[..next.unwrap_or(path.len())];
        let Some((d, off)) = desc.lookup(prefix) else {
            return true;
        };
        match next {
            Some(n) => {
                if changed.get(off) {
                    return true;
                }
                end = n + 1;
            }
            None => return changed.any_in(off, off.saturating_add(d.bits())),
        }
    }
}

/// The metadata of an NT structure: EGU, PREC, the limits in the order of
/// `archiver_ca::Limits::as_array` (display high/low, alarm high, warning high/low, alarm
/// low, control high/low; 0 where absent) and the enum choices.
fn meta_of(desc: &FieldDesc, value: &archiver_pva::PvValue, member: &str) -> PvMeta {
    let d = nt::display(desc, value);
    let [lolo, low, high, hihi] = d.alarm_limits;
    let labels = lookup(desc, value, member)
        .and_then(|(md, mv)| nt::enum_value(md, mv))
        .map(|(_, c)| c.to_vec())
        .unwrap_or_default();
    PvMeta {
        egu: d.units.unwrap_or_default(),
        prec: d
            .precision
            .map_or(0, |p| p.clamp(0, i32::from(i16::MAX)) as i16),
        limits: [
            d.high,
            d.low,
            hihi,
            high,
            low,
            lolo,
            d.control_high,
            d.control_low,
        ]
        .map(|x| x.unwrap_or(0.0)),
        labels,
        known: true,
    }
}

/// Elements of a value: an array's length (at least 1), else 1.
fn element_count(v: &archiver_pva::PvValue) -> u32 {
    use archiver_pva::PvValue as V;
    let n = match v {
        V::BoolArray(a) => a.len(),
        V::I8Array(a) => a.len(),
        V::I16Array(a) => a.len(),
        V::I32Array(a) => a.len(),
        V::I64Array(a) => a.len(),
        V::U8Array(a) => a.len(),
        V::U16Array(a) => a.len(),
        V::U32Array(a) => a.len(),
        V::U64Array(a) => a.len(),
        V::F32Array(a) => a.len(),
        V::F64Array(a) => a.len(),
        V::StringArray(a) => a.len(),
        V::StructureArray(a) | V::UnionArray(a) | V::AnyArray(a) => a.len(),
        _ => 1,
    };
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

/// True when an update changed `display`, `control`, `valueAlarm` or the value's
/// choices: the metadata is read again.
fn meta_changed(desc: &FieldDesc, changed: &BitSet) -> bool {
    ["display", "control", "valueAlarm", "value.choices"]
        .iter()
        .any(|m| desc.lookup(m).is_some() && member_changed(desc, changed, m))
}

impl Actor {
    /// One event of the pvAccess queue.
    pub(super) fn on_pva_event(&mut self, key: u64, kind: ChannelEvent, now: Timestamp) {
        let (id, _) = split_key(key);
        let Some(rt) = self.pvs.get_mut(&id) else {
            return;
        };
        // Events still queued from a channel closed by pause or delete are ignored.
        let Some(ch) = rt.pva.as_mut() else {
            return;
        };
        match kind {
            ChannelEvent::Connected { server, .. } => {
                ch.first_update = true;
                let _ = self.mark_connected(id, None, 1, server, now);
            }
            ChannelEvent::Disconnected { at } => self.on_disconnected(id, epoch_secs(at), now),
            ChannelEvent::SubscriptionError { message, .. } => {
                warn!(pv = %rt.slot.name, "pvAccess monitor error: {message}");
                Counters::inc(&rt.slot.counters.transient_errors);
            }
            ChannelEvent::Update { data, .. } => {
                if Self::on_pva_update(rt, &mut self.out, &data, now) {
                    self.with_pending.insert(id);
                }
            }
        }
    }

    /// Converts, samples and buffers one monitor update; true when the sampler holds a
    /// sample back.
    fn on_pva_update(
        rt: &mut Runtime,
        out: &mut Vec<Sample>,
        data: &MonitorData,
        now: Timestamp,
    ) -> bool {
        let Some(target) = rt.slot.pva.as_ref() else {
            return false;
        };
        let (desc, value) = (&*data.desc, &data.value);
        if data.overrun.any() {
            // the server squashed updates before this one: lost, counted as the CA
            // client's drops are
            Counters::inc(&rt.slot.counters.dropped_by_client);
        }
        let field = target.field.as_deref();
        let path = field.unwrap_or("value");
        let first = rt
            .pva
            .as_mut()
            .is_some_and(|c| std::mem::take(&mut c.first_update));
        if field.is_some() && !first && !member_changed(desc, &data.changed, path) {
            return false;
        }
        let member = lookup(desc, value, path);
        if first || meta_changed(desc, &data.changed) {
            let ty = pva_archived_type(member.map(|m| m.0));
            let meta = meta_of(desc, value, path);
            let mut st = lock(&rt.slot.state);
            match st.archived_type {
                None => st.archived_type = Some(ty),
                Some(t) if t != ty && first => {
                    warn!(pv = %rt.slot.name, "type changed from {t} to {ty}: events are dropped and counted");
                }
                Some(_) => {}
            }
            rt.archived_type = st.archived_type;
            st.meta = meta;
            // the element count (Java's elementCount): an array's length, else 1
            st.conn.element_count = member.map(|(_, v)| element_count(v)).unwrap_or(1);
        }
        let ts = match nt::time_stamp(desc, value) {
            Some(t) => match u32::try_from(t.nanos) {
                Ok(n) if n < 1_000_000_000 => Timestamp::new(t.seconds, n),
                _ => {
                    Counters::inc(&rt.slot.counters.dropped_timestamp);
                    return false;
                }
            },
            None => now,
        };
        let alarm = nt::alarm(desc, value).map_or((0, 0), |a| (a.severity, a.status));
        // a field PV of a structure member serializes that member alone
        let whole = match (field, member) {
            (Some(_), Some(m)) => m,
            _ => (desc, value),
        };
        let user_tag = (rt.archived_type == Some(PayloadType::V4GenericBytes))
            .then(|| nt::time_stamp(desc, value).map(|t| t.user_tag as u32))
            .flatten();
        Self::offer(rt, out, ts, alarm, now, user_tag, |ty| {
            pva_to_pb_value(member.map(|m| m.0), member.map(|m| m.1), ty, whole)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pva::ScalarType;
    use std::sync::Arc;

    #[test]
    fn a_member_changes_with_its_own_bits_or_a_structure_above() {
        let inner = FieldDesc::structure(
            "",
            vec![
                ("x".into(), Arc::new(FieldDesc::Scalar(ScalarType::F64))),
                ("y".into(), Arc::new(FieldDesc::Scalar(ScalarType::F64))),
            ],
        );
        let d = FieldDesc::structure("", vec![("value".into(), Arc::new(inner))]);
        // bits: 0 top, 1 value, 2 value.x, 3 value.y
        let set = |bits: &[usize]| {
            let mut b = BitSet::new();
            for i in bits {
                b.set(*i);
            }
            b
        };
        assert!(member_changed(&d, &set(&[2]), "value.x"));
        assert!(!member_changed(&d, &set(&[3]), "value.x"));
        assert!(member_changed(&d, &set(&[1]), "value.x"));
        assert!(member_changed(&d, &set(&[0]), "value.y"));
        assert!(member_changed(&d, &set(&[3]), "value"));
        assert!(!member_changed(&d, &set(&[]), "value"));
    }
}
