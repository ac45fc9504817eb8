//! A served process variable: current value, metadata and the monitors watching it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::channel::mask;
use crate::codec;
use crate::dbr::{DbfType, DbrType};
use crate::error::DecodeError;
use crate::header::{Header, cmd, padded_len};
use crate::status::EcaStatus;
use crate::value::{Dbr, Meta, Timestamp, Value};

/// What a PV is created with.
#[derive(Clone, Debug)]
pub struct PvSpec {
    /// PV name.
    pub name: String,
    /// Initial value: its field type is the native type; its length (arrays) the native
    /// element count.
    pub value: Value,
    /// Units, precision, limits, enum labels.
    pub meta: Meta,
    /// Whether clients may write.
    pub writable: bool,
}

impl PvSpec {
    /// A read-only PV with default metadata.
    pub fn new(name: &str, value: Value) -> Self {
        PvSpec {
            name: name.to_string(),
            value,
            meta: Meta::default(),
            writable: false,
        }
    }

    /// Sets the metadata.
    pub fn meta(mut self, meta: Meta) -> Self {
        self.meta = meta;
        self
    }

    /// Allows writes.
    pub fn writable(mut self) -> Self {
        self.writable = true;
        self
    }
}

/// Outgoing bytes of one client connection, filled by PV updates and the connection
/// task, drained by its writer task.
#[derive(Debug)]
pub(crate) struct ConnOut {
    buf: Mutex<Vec<u8>>,
    pub notify: Notify,
    limit: usize,
    /// Monitor updates dropped because the client was too slow (shared by all of the
    /// server's connections).
    dropped: Arc<AtomicU64>,
    pub closed: AtomicBool,
}

impl ConnOut {
    pub fn new(limit: usize, dropped: Arc<AtomicU64>) -> Self {
        ConnOut {
            buf: Mutex::new(Vec::with_capacity(16 * 1024)),
            notify: Notify::new(),
            limit,
            dropped,
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends with `f`; monitor updates (`droppable`) are dropped and counted when the
    /// client is too slow to take them.
    pub fn push(&self, droppable: bool, f: impl FnOnce(&mut Vec<u8>)) {
        {
            let mut b = self.lock();
            if droppable && b.len() > self.limit {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            f(&mut b);
        }
        self.notify.notify_one();
    }

    /// Takes everything queued.
    pub fn take(&self, spare: &mut Vec<u8>) {
        spare.clear();
        std::mem::swap(&mut *self.lock(), spare);
    }
}

#[derive(Debug)]
pub(crate) struct Sub {
    pub out: Arc<ConnOut>,
    pub conn: u64,
    pub subid: u32,
    pub ty: DbrType,
    pub count: u32,
    pub mask: u16,
}

#[derive(Debug)]
struct State {
    dbr: Dbr,
    meta: Meta,
}

/// A served PV (shared by every connection that opened it).
#[derive(Debug)]
pub struct Pv {
    name: String,
    native: DbfType,
    count: u32,
    writable: bool,
    state: Mutex<State>,
    subs: Mutex<Vec<Sub>>,
}

impl Pv {
    pub(crate) fn new(spec: PvSpec) -> Self {
        let count = spec.value.len().max(1) as u32;
        Pv {
            name: spec.name,
            native: spec.value.field_type(),
            count,
            writable: spec.writable,
            state: Mutex::new(State {
                dbr: Dbr {
                    status: 0,
                    severity: 0,
                    stamp: Some(Timestamp::now()),
                    value: spec.value,
                    meta: None,
                },
                meta: spec.meta,
            }),
            subs: Mutex::new(Vec::new()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn subs(&self) -> MutexGuard<'_, Vec<Sub>> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The PV name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Native field type.
    pub fn native(&self) -> DbfType {
        self.native
    }

    /// Native element count.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether clients may write.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Current value, alarm and time stamp.
    pub fn get(&self) -> Dbr {
        self.state().dbr.clone()
    }

    /// Number of active monitors on this PV.
    pub fn subscribers(&self) -> usize {
        self.subs().len()
    }

    /// Posts a new value (converted to the native type) with its time stamp and alarm;
    /// monitors with DBE_VALUE or DBE_LOG get it, DBE_ALARM ones when the alarm changed.
    pub fn post(
        &self,
        value: Value,
        stamp: Timestamp,
        status: u16,
        severity: u16,
    ) -> Result<(), DecodeError> {
        let mut st = self.state();
        let value = if value.field_type() == self.native && (value.is_array() == (self.count != 1))
        {
            value
        } else {
            value.convert(self.native, &st.meta.enum_strs, self.count != 1)?
        };
        let alarm_changed = st.dbr.status != status || st.dbr.severity != severity;
        st.dbr = Dbr {
            status,
            severity,
            stamp: Some(stamp),
            value,
            meta: None,
        };
        let mut events = mask::DBE_VALUE | mask::DBE_LOG;
        if alarm_changed {
            events |= mask::DBE_ALARM;
        }
        self.notify(&st, events);
        Ok(())
    }

    /// Replaces the metadata; DBE_PROPERTY monitors get an update.
    pub fn set_meta(&self, meta: Meta) {
        let mut st = self.state();
        st.meta = meta;
        self.notify(&st, mask::DBE_PROPERTY);
    }

    fn notify(&self, st: &State, events: u16) {
        for s in self.subs().iter() {
            if s.mask & events != 0 {
                s.out.push(true, |buf| {
                    self.encode_reply(st, buf, cmd::EVENT_ADD, s.ty, s.count, s.subid)
                });
            }
        }
    }

    pub(crate) fn add_sub(&self, sub: Sub) {
        let st = self.state();
        sub.out.push(false, |buf| {
            self.encode_reply(&st, buf, cmd::EVENT_ADD, sub.ty, sub.count, sub.subid)
        });
        self.subs().push(sub);
    }

    pub(crate) fn remove_subs(&self, conn: u64, subid: Option<u32>) -> usize {
        let mut subs = self.subs();
        let before = subs.len();
        subs.retain(|s| !(s.conn == conn && subid.is_none_or(|id| id == s.subid)));
        before - subs.len()
    }

    /// Appends a READ_NOTIFY / EVENT_ADD reply for (type, count) to `buf`.
    pub(crate) fn reply(
        &self,
        buf: &mut Vec<u8>,
        command: u16,
        ty: DbrType,
        count: u32,
        param2: u32,
    ) {
        let st = self.state();
        self.encode_reply(&st, buf, command, ty, count, param2);
    }

    fn encode_reply(
        &self,
        st: &State,
        buf: &mut Vec<u8>,
        command: u16,
        ty: DbrType,
        count: u32,
        param2: u32,
    ) {
        let n = if count == 0 {
            st.dbr.value.len()
        } else {
            count.min(self.count) as usize
        };
        let array = self.count != 1;
        let meta = matches!(
            ty.class,
            crate::dbr::DbrClass::Gr | crate::dbr::DbrClass::Ctrl
        )
        .then(|| Box::new(st.meta.clone()));
        let converted = st
            .dbr
            .value
            .convert(ty.field, &st.meta.enum_strs, array)
            .map(|v| if array || n != 1 { v.resized(n) } else { v });
        let size = ty.payload_len(n).unwrap_or(0);
        let h = Header {
            command,
            payload_size: padded_len(size) as u32,
            data_type: ty.to_u16(),
            count: n as u32,
            param1: EcaStatus::NORMAL.0,
            param2,
        };
        let start = buf.len();
        h.encode(buf);
        let body = buf.len();
        let ok = converted.and_then(|value| {
            let d = Dbr {
                status: st.dbr.status,
                severity: st.dbr.severity,
                stamp: st.dbr.stamp,
                value,
                meta,
            };
            codec::encode(ty, &d, buf)
        });
        if ok.is_err() || buf.len() - body != size {
            // no conversion: the full-size payload, zeroed, with an error status
            buf.truncate(start);
            Header {
                param1: EcaStatus::BADTYPE.0,
                ..h
            }
            .encode(buf);
            buf.resize(buf.len() + size, 0);
        }
        buf.resize(buf.len() + (padded_len(size) - size), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::CaString;

    #[test]
    fn reply_converts_pads_and_zero_fills() {
        let pv = Pv::new(PvSpec::new("X", Value::LongArray(vec![1, 2, 3])));
        let mut buf = Vec::new();
        pv.reply(
            &mut buf,
            cmd::READ_NOTIFY,
            DbrType::time(DbfType::Double),
            0,
            7,
        );
        let (h, hl) = Header::decode(&buf).expect("header");
        assert_eq!((h.count, h.param1, h.param2), (3, 1, 7));
        assert_eq!(h.payload_size, 40);
        let d =
            codec::decode(DbrType::time(DbfType::Double), 3, &buf[hl..], false).expect("decodes");
        assert_eq!(d.value, Value::DoubleArray(vec![1.0, 2.0, 3.0]));
        // a string that is not a number: BADTYPE with a zeroed payload of full size
        let pv = Pv::new(PvSpec::new("S", Value::String(CaString::new("abc"))));
        buf.clear();
        pv.reply(
            &mut buf,
            cmd::READ_NOTIFY,
            DbrType::plain(DbfType::Double),
            1,
            1,
        );
        let (h, _) = Header::decode(&buf).expect("header");
        assert_eq!(
            (h.param1, h.payload_size, buf.len()),
            (EcaStatus::BADTYPE.0, 8, 24)
        );
    }

    #[test]
    fn post_notifies_matching_masks() {
        let pv = Pv::new(PvSpec::new("X", Value::Double(0.0)));
        let out = Arc::new(ConnOut::new(1 << 20, Arc::default()));
        for (subid, mask) in [
            (1, mask::DBE_VALUE),
            (2, mask::DBE_ALARM),
            (3, mask::DBE_PROPERTY),
        ] {
            pv.add_sub(Sub {
                out: out.clone(),
                conn: 1,
                subid,
                ty: DbrType::time(DbfType::Double),
                count: 1,
                mask,
            });
        }
        let mut b = Vec::new();
        out.take(&mut b);
        assert_eq!(b.len(), 3 * 40);
        pv.post(Value::Double(1.0), Timestamp::now(), 0, 0)
            .expect("post");
        out.take(&mut b);
        assert_eq!(b.len(), 40);
        pv.post(Value::Long(2), Timestamp::now(), 3, 2)
            .expect("post");
        out.take(&mut b);
        assert_eq!(b.len(), 80);
        assert_eq!(pv.remove_subs(1, Some(2)), 1);
        assert_eq!(pv.remove_subs(1, None), 2);
    }

    #[test]
    fn updates_for_a_slow_client_are_dropped_and_counted() {
        let pv = Pv::new(PvSpec::new("X", Value::Double(0.0)));
        let dropped = Arc::new(AtomicU64::new(0));
        let out = Arc::new(ConnOut::new(100, dropped.clone()));
        pv.add_sub(Sub {
            out: out.clone(),
            conn: 1,
            subid: 1,
            ty: DbrType::time(DbfType::Double),
            count: 1,
            mask: mask::DBE_VALUE,
        });
        for i in 1..=5 {
            pv.post(Value::Double(f64::from(i)), Timestamp::now(), 0, 0)
                .expect("post");
        }
        // 40-byte updates: queued while the buffer holds at most 100 bytes, then dropped
        let mut b = Vec::new();
        out.take(&mut b);
        assert_eq!((b.len(), dropped.load(Ordering::Relaxed)), (120, 3));
    }
}
