//! The state of one archived PV shared between the engine task, the writer and readers
//! (status, retrieval): configuration, connection, metadata, buffer and counters.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use archiver_pb::{PayloadType, Sample};

use crate::counters::{Counters, CountersSnapshot};
use crate::linebuf::{Chunk, LineBuffer};
use crate::sampler::SamplingMethod;

/// How a PV is archived.
#[derive(Debug, Clone, PartialEq)]
pub struct PvConfig {
    /// MONITOR or SCAN.
    pub method: SamplingMethod,
    /// Sampling period in seconds (0 with MONITOR = every event).
    pub period: f64,
    /// Fields monitored as `PV.FIELD` and stored as field values of the samples.
    pub archive_fields: Vec<String>,
}

/// Where a PV is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvState {
    /// Archiving was requested; the PV has not connected yet.
    NeverConnected,
    /// Archiving (connected or not).
    Archiving,
    /// Paused by an operator: no channel, nothing stored.
    Paused,
}

/// Display and alarm metadata from DBR_CTRL (EGU, PREC, limits, enum labels).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PvMeta {
    /// Engineering units.
    pub egu: String,
    /// Display precision.
    pub prec: i16,
    /// Limits: upper/lower display, upper alarm, upper warning, lower warning, lower
    /// alarm, upper/lower control (the order of `archiver_ca::Limits::as_array`).
    pub limits: [f64; 8],
    /// Enum state labels.
    pub labels: Vec<String>,
    /// True once a DBR_CTRL read has succeeded.
    pub known: bool,
}

/// Connection facts of a PV.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnState {
    /// Connected now.
    pub connected: bool,
    /// The server it is (or was last) connected to.
    pub server: Option<SocketAddr>,
    /// Epoch seconds of the first connection (0 = never).
    pub first_established_secs: i64,
    /// Epoch seconds of the last reconnection (0 = never).
    pub last_reestablished_secs: i64,
    /// Epoch seconds when the connection was last lost (0 = never).
    pub lost_at_secs: i64,
    /// Reconnections after a loss.
    pub loss_regain_count: u64,
    /// Native element count from the server.
    pub element_count: u32,
    /// The record type (`RTYP`), once read on the first connection (when the engine reads
    /// it: see `EngineConfig::read_record_type`).
    pub record_type: Option<String>,
}

#[derive(Debug)]
pub(crate) struct SlotState {
    pub config: PvConfig,
    pub state: PvState,
    pub archived_type: Option<PayloadType>,
    pub conn: ConnState,
    pub meta: PvMeta,
    /// Unwritten samples, as encoded lines.
    pub buffer: LineBuffer,
    /// Chunks being written (still visible to retrieval).
    pub in_flight: Option<Arc<Vec<Chunk>>>,
    /// The journal segment of the oldest sample in `buffer` (`None`: empty, or no journal):
    /// the journal keeps that segment until the sample is written.
    pub unwritten_seg: Option<u64>,
    /// The same for `in_flight`.
    pub in_flight_seg: Option<u64>,
    pub capacity: usize,
    /// Time of the newest sample already stored (from storage at restore), so that the
    /// first event after a restart, often the value archived last, is not stored twice.
    pub last_stored: Option<archiver_pb::Timestamp>,
    /// True when the archive fields are the defaults (not chosen by the request): output
    /// records then also get DRVH and DRVL, as the Java default policy does.
    pub auto_fields: bool,
}

/// What a `pva://` PV monitors: its pvAccess channel and, for a field PV
/// (`pva://NAME#a/b`), the member archived (`a.b`). See [`PvaTarget::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PvaTarget {
    /// The pvAccess channel name.
    pub channel: String,
    /// The dotted member path of a field PV (`value.x`), `None` for the whole PV.
    pub field: Option<String>,
}

/// The prefix that selects pvAccess (Java: `pva://`).
pub(crate) const PVA_PREFIX: &str = "pva://";

impl PvaTarget {
    /// Splits a requested name: `pva://NAME` archives channel NAME over pvAccess;
    /// `pva://NAME#a/b` (beyond Java) archives member `a.b` of NAME's structure as a PV of
    /// its own (`/` separates the levels, since a dot would read as a CA archive field,
    /// and `#` and `/` are PV-name characters Java accepts). Returns the name the PV is
    /// stored under (without `pva://`) and the target; a name without the prefix is CA.
    ///
    /// Errors (each message quotes the name and says what is wrong and what is meant):
    /// a mistyped protocol prefix (`pva:/X`, `pva//X`, `pva:\\X`, `PVA://X`, `ca:/X`: a
    /// real PV name never starts so, while `PVA:X` may and stays a CA name); a second
    /// prefix (`pva://ca://X`); an empty channel; after `#`, an empty path, an empty
    /// member (`a//b`, a trailing `/`) or a dotted one (`a.b`: levels are separated by
    /// `/`).
    pub fn parse(name: &str) -> Result<(&str, Option<PvaTarget>), String> {
        if let Some(problem) = mistyped_prefix(name) {
            return Err(format!("{name:?}: {problem}"));
        }
        let Some(rest) = name.strip_prefix(PVA_PREFIX) else {
            return Ok((name, None));
        };
        if let Some(problem) = mistyped_prefix(rest).or_else(|| {
            ["pva://", "ca://"]
                .iter()
                .any(|p| rest.starts_with(p))
                .then(|| "a name takes one protocol prefix".to_string())
        }) {
            return Err(format!("{name:?}: {problem}"));
        }
        let (channel, field) = match rest.split_once('#') {
            Some((c, f)) => {
                let problem = if f.is_empty() {
                    Some("no field path after '#' (e.g. #value/x)".to_string())
                } else if f.split('/').any(str::is_empty) {
                    Some(format!(
                        "an empty member in the field path {f:?} ('/' separates members, \
                         e.g. #value/x)"
                    ))
                } else if f.contains('.') {
                    Some(format!(
                        "the field path {f:?} has a '.': members are separated by '/' \
                         (#{})",
                        f.replace('.', "/")
                    ))
                } else if f.contains('#') {
                    Some(format!("a second '#' in the field path {f:?}"))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(format!("{name:?}: {problem}"));
                }
                (c, Some(f.replace('/', ".")))
            }
            None => (rest, None),
        };
        if channel.is_empty() {
            return Err(format!("{name:?}: no channel name after {PVA_PREFIX}"));
        }
        Ok((
            rest,
            Some(PvaTarget {
                channel: channel.to_string(),
                field,
            }),
        ))
    }
}

/// What is wrong with a name that starts like a protocol prefix without being one
/// (`pva:/`, `pva//`, `pva:\\`, `PVA://`, `ca:/`...); `None` for a name that does not, or
/// starts with `pva://` or `ca://` exactly.
fn mistyped_prefix(name: &str) -> Option<String> {
    for proto in ["pva", "ca"] {
        let Some(head) = name.get(..proto.len()) else {
            continue;
        };
        if !head.eq_ignore_ascii_case(proto) {
            continue;
        }
        let tail = &name[proto.len()..];
        let sep: String = tail
            .chars()
            .take_while(|c| matches!(c, ':' | '/' | '\\'))
            .collect();
        let exact = head == proto && sep == "://";
        // `PVA:X` or `CA:X` (one colon, nothing else) may be a real PV's name.
        let plausible_name = sep == ":" || sep.is_empty();
        if exact || plausible_name {
            return None;
        }
        return Some(format!(
            "{:?} is not a protocol prefix: write {proto}:// (lower case, two slashes)",
            &name[..proto.len() + sep.len()]
        ));
    }
    None
}

/// One PV's shared state.
#[derive(Debug)]
pub(crate) struct PvSlot {
    pub name: Arc<str>,
    pub id: u64,
    /// Set for a PV archived over pvAccess.
    pub pva: Option<PvaTarget>,
    pub counters: Counters,
    pub state: Mutex<SlotState>,
    /// Set once the catalogue holds this PV's type info as of its connection (the
    /// appliance's catalogue sync, or a restore from the catalogue): the sync then skips
    /// it without looking at its name, so a round over 100,000 recorded PVs is one pass
    /// over a flag each ([`crate::Engine::uncatalogued_status`]).
    pub catalogued: std::sync::atomic::AtomicBool,
    /// The write-ahead journal every buffered sample also goes to (`None`: none).
    pub journal: Option<Arc<crate::journal::Journal>>,
    /// The journal segment this PV last declared its id in.
    pub journal_declared: std::sync::atomic::AtomicU64,
}

/// Locks a mutex, recovering the data if a holder panicked (the state stays usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PvSlot {
    pub fn status(&self) -> PvStatus {
        let st = lock(&self.state);
        PvStatus {
            name: self.name.to_string(),
            state: st.state,
            config: st.config.clone(),
            archived_type: st.archived_type,
            conn: st.conn.clone(),
            meta: st.meta.clone(),
            buffered: st.buffer.len()
                + st.in_flight
                    .as_ref()
                    .map_or(0, |v| v.iter().map(|c| c.lines).sum::<usize>()),
            counters: self.counters.snapshot(),
        }
    }

    /// Samples in memory (buffered and being written) and the buffer's capacity.
    pub fn buffer_fill(&self) -> (u64, u64) {
        let st = lock(&self.state);
        let in_flight = st
            .in_flight
            .as_ref()
            .map_or(0, |v| v.iter().map(|c| c.lines).sum::<usize>());
        ((st.buffer.len() + in_flight) as u64, st.capacity as u64)
    }

    /// The fields the reports read, copied without allocating (the name is shared).
    pub fn summary(&self) -> PvSummary {
        let st = lock(&self.state);
        PvSummary {
            name: self.name.clone(),
            state: st.state,
            method: st.config.method,
            period: st.config.period,
            archived_type: st.archived_type,
            connected: st.conn.connected,
            server: st.conn.server,
            lost_at_secs: st.conn.lost_at_secs,
            element_count: st.conn.element_count,
            counters: self.counters.snapshot(),
        }
    }

    /// The samples in memory (being written, then buffered), oldest first; `None` while the
    /// archived type is unknown. The lock is held only to copy the lines
    /// ([`LineBuffer::copy_chunks`]); decoding happens after it is released.
    pub fn buffered(&self) -> Option<BufferSnapshot> {
        self.buffered_with(&mut || {})
    }

    /// [`PvSlot::buffered`], running `before_chunk` before each chunk is decoded (a test
    /// hook).
    fn buffered_with(&self, before_chunk: &mut dyn FnMut()) -> Option<BufferSnapshot> {
        // Under the lock: the chunks being written (shared, not copied) and a copy of the
        // buffered ones. The guard ends with this block.
        let copy = {
            let st = lock(&self.state);
            BufferCopy {
                payload_type: st.archived_type?,
                in_flight: st.in_flight.clone(),
                held: st.buffer.copy_chunks(),
            }
        };
        Some(copy.decode(before_chunk))
    }

    /// Adds a sample to the buffer; when full, the oldest is dropped and counted.
    pub fn push(&self, s: &Sample) {
        let mut st = lock(&self.state);
        let capacity = st.capacity;
        match st.buffer.push(s, capacity) {
            Ok(dropped) => {
                if dropped {
                    Counters::inc(&self.counters.dropped_buffer_overflow);
                }
                Counters::inc(&self.counters.events_stored);
                self.counters.bytes_stored.fetch_add(
                    st.buffer.last_line_len() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                if let (Some(j), Some(ty), Some((year, line))) =
                    (&self.journal, st.archived_type, st.buffer.last_line())
                    && let Some(seg) =
                        j.record(self.id, &self.name, &self.journal_declared, ty, year, line)
                {
                    st.unwritten_seg.get_or_insert(seg);
                }
            }
            // Only a time the filter let through with bad nanoseconds; counted as such.
            Err(()) => Counters::inc(&self.counters.dropped_timestamp),
        }
    }
}

/// A PV's lines in memory, taken out of its lock to be decoded. It holds no reference to
/// the slot, so decoding it cannot hold up the PV's ingest.
struct BufferCopy {
    payload_type: PayloadType,
    in_flight: Option<Arc<Vec<Chunk>>>,
    held: Vec<Chunk>,
}

impl BufferCopy {
    /// Decodes the lines, oldest first; `before_chunk` runs before each chunk is decoded
    /// (a test hook).
    fn decode(self, before_chunk: &mut dyn FnMut()) -> BufferSnapshot {
        let in_flight: &[Chunk] = self.in_flight.as_deref().map_or(&[], Vec::as_slice);
        let mut samples = Vec::with_capacity(
            LineBuffer::count_lines(in_flight) + LineBuffer::count_lines(&self.held),
        );
        for chunk in in_flight.iter().chain(&self.held) {
            before_chunk();
            LineBuffer::decode_into(std::slice::from_ref(chunk), self.payload_type, &mut samples);
        }
        BufferSnapshot {
            payload_type: self.payload_type,
            samples,
        }
    }
}

/// A snapshot of one PV for status reports.
#[derive(Debug, Clone, PartialEq)]
pub struct PvStatus {
    /// PV name.
    pub name: String,
    /// Life-cycle state.
    pub state: PvState,
    /// Sampling configuration.
    pub config: PvConfig,
    /// The type samples are stored as (known once connected or restored).
    pub archived_type: Option<PayloadType>,
    /// Connection facts.
    pub conn: ConnState,
    /// Metadata.
    pub meta: PvMeta,
    /// Samples in memory not yet written.
    pub buffered: usize,
    /// Counters.
    pub counters: CountersSnapshot,
}

/// The part of a PV's status the reports read ([`crate::Engine::summaries`]): what
/// [`PvStatus`] holds minus its allocated parts (archive fields, metadata), the name
/// shared with the engine's table. Reading it for 100 000 PVs allocates one vector.
#[derive(Debug, Clone, PartialEq)]
pub struct PvSummary {
    /// PV name.
    pub name: Arc<str>,
    /// Life-cycle state.
    pub state: PvState,
    /// Sampling method.
    pub method: SamplingMethod,
    /// Sampling period in seconds.
    pub period: f64,
    /// The type samples are stored as.
    pub archived_type: Option<PayloadType>,
    /// Connected now.
    pub connected: bool,
    /// The server it is (or was last) connected to.
    pub server: Option<SocketAddr>,
    /// Epoch seconds when the connection was last lost (0 = never).
    pub lost_at_secs: i64,
    /// Native element count.
    pub element_count: u32,
    /// Counters.
    pub counters: CountersSnapshot,
}

impl From<&PvStatus> for PvSummary {
    fn from(s: &PvStatus) -> Self {
        PvSummary {
            name: Arc::from(s.name.as_str()),
            state: s.state,
            method: s.config.method,
            period: s.config.period,
            archived_type: s.archived_type,
            connected: s.conn.connected,
            server: s.conn.server,
            lost_at_secs: s.conn.lost_at_secs,
            element_count: s.conn.element_count,
            counters: s.counters,
        }
    }
}

/// The samples of a PV still in memory, oldest first.
#[derive(Debug, Clone)]
pub struct BufferSnapshot {
    /// Their type.
    pub payload_type: PayloadType,
    /// The samples being written, then the buffered ones.
    pub samples: Vec<Sample>,
}

#[cfg(test)]
impl PvSlot {
    /// An archiving scalar-double PV `name` whose buffer holds `capacity` samples, for
    /// unit tests.
    pub(crate) fn for_test(name: &str, capacity: usize) -> PvSlot {
        use crate::sampler::SamplingMethod;
        PvSlot {
            name: Arc::from(name),
            id: 1,
            pva: None,
            counters: Counters::default(),
            catalogued: Default::default(),
            journal: None,
            journal_declared: Default::default(),
            state: Mutex::new(SlotState {
                config: PvConfig {
                    method: SamplingMethod::Monitor,
                    period: 0.0,
                    archive_fields: Vec::new(),
                },
                state: PvState::Archiving,
                archived_type: Some(PayloadType::ScalarDouble),
                conn: ConnState::default(),
                meta: PvMeta::default(),
                buffer: LineBuffer::default(),
                in_flight: None,
                unwritten_seg: None,
                in_flight_seg: None,
                capacity,
                last_stored: None,
                auto_fields: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use archiver_pb::{Timestamp, Value};

    use super::*;

    /// Found by a fresh-user test: near-miss prefixes were archived as CA names.
    #[test]
    fn a_mistyped_prefix_or_field_path_is_refused_naming_the_problem() {
        for (name, says) in [
            ("pva:/X", "\"pva:/\" is not a protocol prefix: write pva://"),
            ("pva//X", "\"pva//\" is not a protocol prefix"),
            ("PVA://X", "\"PVA://\" is not a protocol prefix"),
            ("Pva:/X", "write pva://"),
            ("pva:\\\\X", "is not a protocol prefix"),
            ("pva:///X", "\"pva:///\" is not a protocol prefix"),
            ("ca:/X", "write ca://"),
            ("pva://pva:/X", "\"pva:/\" is not a protocol prefix"),
            ("pva://ca://X", "one protocol prefix"),
            ("pva://", "no channel name"),
            ("pva://#value/x", "no channel name"),
            ("pva://X#", "no field path after '#'"),
            ("pva://X#value//x", "an empty member"),
            ("pva://X#value/", "an empty member"),
            ("pva://X#value.x", "separated by '/' (#value/x)"),
            ("pva://X#a#b", "a second '#'"),
        ] {
            let e = PvaTarget::parse(name).expect_err(name);
            assert!(e.contains(says), "{name}: {e}");
            assert!(e.starts_with(&format!("{name:?}")), "{name}: {e}");
        }
    }

    #[test]
    fn names_that_merely_look_like_prefixes_stay_ca_names() {
        for name in [
            "PVA:CURRENT",
            "pva:X",
            "CA:TEMP",
            "CAL:X",
            "pvaX",
            "X#a/b",
            "X",
        ] {
            assert_eq!(PvaTarget::parse(name), Ok((name, None)), "{name}");
        }
        let (stored, t) = PvaTarget::parse("pva://S:T#value/x").unwrap();
        assert_eq!(stored, "S:T#value/x");
        assert_eq!(
            t,
            Some(PvaTarget {
                channel: "S:T".into(),
                field: Some("value.x".into())
            })
        );
    }

    fn slot(capacity: usize) -> PvSlot {
        PvSlot::for_test("T:SNAP", capacity)
    }

    fn sample(k: i64) -> Sample {
        Sample::new(
            Timestamp::new(1_700_000_000 + k, 0),
            Value::ScalarDouble(k as f64),
        )
    }

    fn values(snap: &BufferSnapshot) -> Vec<i64> {
        snap.samples
            .iter()
            .map(|s| match s.value {
                Value::ScalarDouble(v) => v as i64,
                _ => -1,
            })
            .collect()
    }

    #[test]
    fn decoding_a_snapshot_does_not_hold_the_pvs_lock() {
        let slot = slot(100_000);
        for k in 0..5_000 {
            slot.push(&sample(k));
        }
        // The writer moves these aside; more arrive meanwhile.
        {
            let mut st = lock(&slot.state);
            let taken = st.buffer.take();
            st.in_flight = Some(Arc::new(taken));
        }
        for k in 5_000..10_000 {
            slot.push(&sample(k));
        }
        let mut chunks = 0;
        let mut k = 10_000;
        let snap = slot
            .buffered_with(&mut || {
                chunks += 1;
                // Ingest proceeds while the snapshot decodes: the lock is free.
                let free = slot.state.try_lock().is_ok();
                assert!(free, "the PV's lock is held while decoding");
                slot.push(&sample(k));
                k += 1;
            })
            .unwrap();
        assert_eq!(chunks, 2, "the in-flight chunk, then the held one");
        // The snapshot is what was there when it was copied, in order.
        assert_eq!(values(&snap), (0..10_000).collect::<Vec<_>>());
        // The samples pushed during decoding are in the buffer, not lost.
        assert_eq!(slot.status().buffered, 10_002);
        let again = slot.buffered().unwrap();
        assert_eq!(again.samples.len(), 10_002);
        assert_eq!(values(&again)[10_000..], [10_000, 10_001]);
    }

    #[test]
    fn no_snapshot_before_the_type_is_known() {
        let slot = slot(10);
        lock(&slot.state).archived_type = None;
        assert!(slot.buffered().is_none());
    }
}
