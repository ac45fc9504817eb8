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
//! * Archive fields, as Java's `EPICS_V4_PV` with `FieldValuesCache` (the policy's CA
//!   archive fields do not apply): the structure's members besides `value` (at any level),
//!   `timeStamp` and `alarm`, flattened to their leaves ([`PvaField`]). A change of a
//!   member Java names in V3 terms (`valueAlarm.highAlarmLimit` → `HIHI`,
//!   `display.limitLow` → `LOPR`, `display.units` → `EGU`, `control.minStep` → `PREC`,
//!   ...) rides on the next sample under that name, and all of them on the first sample
//!   after each connect; other members' changes only when the PV's archive fields name
//!   their path. The daily dump carries every member under its pvData path
//!   (`display.limitLow`, `display.form.index`, ...) with EGU and PREC from the metadata.
//! * An update whose overrun bitset is not empty (the server squashed updates before it)
//!   counts one in `dropped_by_client`, as a CA update the client dropped does.

use std::time::UNIX_EPOCH;

use archiver_pb::{PayloadType, Sample, Timestamp};
use archiver_pva::value::{lookup, marked};
use archiver_pva::{
    BitSet, ChannelEvent, Client, ClientConfig, EventQueue, EventReceiver, FieldDesc, MonitorData,
    Overflow, PvRequest, event_queue, nt,
};
use tracing::warn;

use super::{Actor, Runtime, split_key};
use crate::convert::{pva_archived_type, pva_to_pb_value};
use crate::counters::Counters;
use crate::engine::annotate::Annotator;
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
    /// The structure's archive fields (see [`archive_fields`]), found at the first update.
    fields: Option<Vec<PvaField>>,
}

/// A member of a pvAccess structure archived as a field value (see the module overview):
/// a leaf outside `value`, `timeStamp` and `alarm`, dumped daily under its path, its
/// changes reported under its V3 name where Java has one.
struct PvaField {
    /// Dotted path in the structure.
    path: String,
    /// The annotator's field index.
    idx: usize,
    /// Its changes are reported (a V3 name, or a path the PV's archive fields name).
    reported: bool,
    /// Bitset offsets whose change covers this member: its structures, then its own span.
    above: Vec<usize>,
    span: (usize, usize),
}

/// Java's names for normative-type members (`FieldValuesCache.v4FieldNames2v3FieldNames`).
const V3_NAMES: [(&str, &str); 12] = [
    ("display.limitLow", "LOPR"),
    ("display.limitHigh", "HOPR"),
    ("display.description", "DESC"),
    ("display.units", "EGU"),
    ("control.limitLow", "DRVL"),
    ("control.limitHigh", "DRVH"),
    ("control.minStep", "PREC"),
    ("valueAlarm.lowAlarmLimit", "LOLO"),
    ("valueAlarm.lowWarningLimit", "LOW"),
    ("valueAlarm.highWarningLimit", "HIGH"),
    ("valueAlarm.highAlarmLimit", "HIHI"),
    ("valueAlarm.hysteresis", "HYST"),
];

/// One archive field found in a structure: `(path, V3 name, above, span)` as in
/// [`PvaField`].
type FieldSpot = (String, Option<&'static str>, Vec<usize>, (usize, usize));

/// The archive fields of structure `desc`: `(path, V3 name, above, span)` of each leaf
/// member outside `value`, `timeStamp` and `alarm` (members named `value` are skipped at
/// every level, as Java's `FieldValuesCache.currentFieldValues` does; Java's daily dump
/// also carries `timeStamp.*` and `alarm.*` as read at the connect and never updated,
/// left out here: the sample itself has them, current).
fn archive_fields(desc: &FieldDesc) -> Vec<FieldSpot> {
    fn walk(
        d: &FieldDesc,
        prefix: &str,
        off: usize,
        above: &mut Vec<usize>,
        out: &mut Vec<FieldSpot>,
    ) {
        let FieldDesc::Structure { desc, .. } = d else {
            return;
        };
        above.push(off);
        let mut at = off + 1;
        for (name, m) in &desc.fields {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            let skip =
                name == "value" || (prefix.is_empty() && (name == "timeStamp" || name == "alarm"));
            if !skip {
                if matches!(**m, FieldDesc::Structure { .. }) {
                    walk(m, &path, at, above, out);
                } else {
                    let v3 = V3_NAMES.iter().find(|(p, _)| *p == path).map(|(_, n)| *n);
                    out.push((path, v3, above.clone(), (at, at + m.bits())));
                }
            }
            at += m.bits();
        }
        above.pop();
    }
    let mut out = Vec::new();
    walk(desc, "", 0, &mut Vec::new(), &mut out);
    out
}

/// A field value as Java's `FieldValuesCache.getScalarField` writes it: numbers as text
/// (unsigned ones read signed, as `PVAByte.get()`; floating point in the shortest form
/// that reads back, as for CA fields), arrays as `[a, b]`, anything else pretty-printed.
fn field_text(d: &FieldDesc, v: &archiver_pva::PvValue) -> String {
    use archiver_pva::PvValue as V;
    fn join<T>(v: &[T], f: impl Fn(&T) -> String) -> String {
        format!("[{}]", v.iter().map(f).collect::<Vec<_>>().join(", "))
    }
    match v {
        V::Bool(x) => x.to_string(),
        V::I8(x) => x.to_string(),
        V::I16(x) => x.to_string(),
        V::I32(x) => x.to_string(),
        V::I64(x) => x.to_string(),
        V::U8(x) => (*x as i8).to_string(),
        V::U16(x) => (*x as i16).to_string(),
        V::U32(x) => (*x as i32).to_string(),
        V::U64(x) => (*x as i64).to_string(),
        V::F32(x) => format!("{x:?}"),
        V::F64(x) => format!("{x:?}"),
        V::String(x) => x.clone(),
        V::BoolArray(a) => join(a, bool::to_string),
        V::I8Array(a) => join(a, i8::to_string),
        V::I16Array(a) => join(a, i16::to_string),
        V::I32Array(a) => join(a, i32::to_string),
        V::I64Array(a) => join(a, i64::to_string),
        V::U8Array(a) => join(a, |x| (*x as i8).to_string()),
        V::U16Array(a) => join(a, |x| (*x as i16).to_string()),
        V::U32Array(a) => join(a, |x| (*x as i32).to_string()),
        V::U64Array(a) => join(a, |x| (*x as i64).to_string()),
        V::F32Array(a) => join(a, |x| format!("{x:?}")),
        V::F64Array(a) => join(a, |x| format!("{x:?}")),
        V::StringArray(a) => join(a, String::clone),
        other => archiver_pva::Pretty {
            desc: d,
            value: other,
        }
        .to_string(),
    }
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
                    fields: None,
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
    u32::try_from(v.array_len().unwrap_or(1).max(1)).unwrap_or(u32::MAX)
}

/// True when an update changed `display`, `control`, `valueAlarm` or the value's
/// choices: the metadata is read again.
fn meta_changed(desc: &FieldDesc, changed: &BitSet) -> bool {
    ["display", "control", "valueAlarm", "value.choices"]
        .iter()
        .any(|m| desc.lookup(m).is_some() && marked(desc, changed, m))
}

impl Actor {
    /// Feeds the structure's archive fields that this update changed (all of them on the
    /// first update after a connect) to the annotator, which carries changes on the next
    /// archived sample and every value in the daily dump. Cost on an update that changes
    /// none: a few bit tests per field, no allocation.
    fn pva_field_values(
        pva: &mut Option<PvaChannel>,
        annotator: &mut Annotator,
        slot: &PvSlot,
        data: &MonitorData,
        first: bool,
    ) {
        let Some(ch) = pva.as_mut() else {
            return;
        };
        let (desc, value, changed) = (&*data.desc, &data.value, &data.changed);
        let fields = ch.fields.get_or_insert_with(|| {
            let requested = lock(&slot.state).config.archive_fields.clone();
            archive_fields(desc)
                .into_iter()
                .map(|(path, v3, above, span)| {
                    let reported = v3.is_some() || requested.contains(&path);
                    let name = v3.unwrap_or(&path);
                    PvaField {
                        idx: annotator.add_field_as(name, Some(&path), !reported),
                        path,
                        reported,
                        above,
                        span,
                    }
                })
                .collect()
        });
        for f in fields.iter() {
            let hit = first
                || f.above.iter().any(|o| changed.get(*o))
                || changed.any_in(f.span.0, f.span.1);
            if hit && let Some((d, v)) = lookup(desc, value, &f.path) {
                let text = field_text(d, v);
                if first && f.reported {
                    annotator.field_value_reported(f.idx, text);
                } else {
                    annotator.field_value(f.idx, text);
                }
            }
        }
    }

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
        if field.is_none() {
            Self::pva_field_values(&mut rt.pva, &mut rt.annotator, &rt.slot, data, first);
        }
        if field.is_some() && !first && !marked(desc, &data.changed, path) {
            return false;
        }
        let member = lookup(desc, value, path);
        if field.is_some() && member.is_none() {
            // A field PV whose path names no member of the structure (a typo after '#'):
            // nothing is archived (never the whole structure under the member's name),
            // each update counted as dropped for want of a type, and said once per connect.
            if first {
                warn!(
                    pv = %rt.slot.name,
                    "the structure of {} has no member {path}: nothing is archived",
                    target.channel
                );
            }
            Counters::inc(&rt.slot.counters.dropped_no_type);
            return false;
        }
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

    #[test]
    fn archive_fields_are_the_members_besides_value_time_and_alarm_with_v3_names() {
        use ScalarType::{F64, I32, I64, String as S};
        use archiver_pva::nt::desc::{alarm, members, scalar};
        // bits: 0 top, 1 value, 2 alarm{3,4,5}, 6 timeStamp{7}, 8 display{9 limitLow,
        // 10 units, 11 form{12 index, 13 value}}, 14 valueAlarm{15 highAlarmLimit}, 16 extra
        let d = members(
            "epics:nt/NTScalar:1.0",
            vec![
                ("value", scalar(F64)),
                ("alarm", alarm()),
                (
                    "timeStamp",
                    members("", vec![("secondsPastEpoch", scalar(I64))]),
                ),
                (
                    "display",
                    members(
                        "",
                        vec![
                            ("limitLow", scalar(F64)),
                            ("units", scalar(S)),
                            (
                                "form",
                                members("", vec![("index", scalar(I32)), ("value", scalar(S))]),
                            ),
                        ],
                    ),
                ),
                (
                    "valueAlarm",
                    members("", vec![("highAlarmLimit", scalar(F64))]),
                ),
                ("extra", scalar(S)),
            ],
        );
        let got: Vec<FieldSpot> = archive_fields(&d);
        let names: Vec<(&str, Option<&str>)> = got.iter().map(|f| (f.0.as_str(), f.1)).collect();
        // Java's FieldValuesCache: paths in the dump, V3 names (EGU and PREC too) for
        // changes; members named value skipped at every level
        assert_eq!(
            names,
            [
                ("display.limitLow", Some("LOPR")),
                ("display.units", Some("EGU")),
                ("display.form.index", None),
                ("valueAlarm.highAlarmLimit", Some("HIHI")),
                ("extra", None),
            ]
        );
        // the bits that cover each: its structures and its own
        assert_eq!((got[0].2.clone(), got[0].3), (vec![0, 8], (9, 10)));
        assert_eq!((got[1].2.clone(), got[1].3), (vec![0, 8], (10, 11)));
        assert_eq!((got[2].2.clone(), got[2].3), (vec![0, 8, 11], (12, 13)));
        assert_eq!((got[3].2.clone(), got[3].3), (vec![0, 14], (15, 16)));
        assert_eq!((got[4].2.clone(), got[4].3), (vec![0], (16, 17)));
        for (path, _, _, (start, _)) in &got {
            assert_eq!(d.lookup(path).map(|x| x.1), Some(*start), "{path}");
        }
    }

    #[test]
    fn field_values_are_written_as_java_does() {
        use archiver_pva::PvValue as V;
        let d = FieldDesc::Scalar(ScalarType::F64);
        assert_eq!(field_text(&d, &V::F64(90.0)), "90.0");
        assert_eq!(field_text(&d, &V::F64(0.1)), "0.1");
        assert_eq!(field_text(&d, &V::F32(1.5)), "1.5");
        assert_eq!(field_text(&d, &V::I32(-3)), "-3");
        assert_eq!(field_text(&d, &V::U8(200)), "-56");
        assert_eq!(field_text(&d, &V::Bool(true)), "true");
        assert_eq!(field_text(&d, &V::String("a b".into())), "a b");
        assert_eq!(field_text(&d, &V::F64Array(vec![1.0, 2.5])), "[1.0, 2.5]");
        assert_eq!(
            field_text(&d, &V::StringArray(vec!["x".into(), "y".into()])),
            "[x, y]"
        );
    }
}
