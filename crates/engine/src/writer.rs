//! The writer: every write period, each PV's buffer is moved aside ("in flight", still
//! visible to retrieval), appended to the short-term store, then released. The period is
//! cut into [`SLICES`] slices, each writing a tenth of the PVs, so that many PVs do not
//! open and append all their files in one burst. A failed write
//! (an I/O error, a full disk) puts the samples back at the front of the buffer to be
//! retried; nothing is lost, and since the store's appends are all or nothing, the retry
//! writes the batch once.
//!
//! Each PV is written under its storage write lock (`Tier::lock_pv`), the lock an ETL job
//! or a deletion of the PV's data also takes, held for the whole flush of the PV (take the
//! buffer, append, put a failed batch back): it is also what keeps two flushes of one PV
//! apart. The periodic flush does not wait for it: a PV
//! whose lock is held is skipped and written at the next period, so one busy PV never
//! stalls the others. Explicit flushes (pause, delete, `Engine::flush`, shutdown) wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::warn;

use archiver_storage::Tier;

use crate::engine::Inner;
use crate::linebuf::Chunk;
use crate::noise;
use crate::pv::{PvSlot, lock};
use std::sync::atomic::Ordering::Relaxed;

/// A write period is cut into this many slices; each slice writes the PVs of one bucket
/// (the PV's id modulo `SLICES`), so every PV is still written once per period, but
/// 20,000 PVs make ten bursts of 2,000 appends a period instead of one of 20,000 (the
/// reopen storm of the issue "many PVs without a cliff").
const SLICES: u64 = 10;

pub(crate) async fn run(inner: Arc<Inner>) {
    let slice =
        (inner.config.write_period / SLICES as u32).max(std::time::Duration::from_millis(1));
    let mut iv = tokio::time::interval(slice);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    iv.tick().await;
    let mut k: u64 = 0;
    loop {
        iv.tick().await;
        // Stops when the engine is gone (only this task holds the last reference).
        if Arc::strong_count(&inner) == 1 {
            return;
        }
        let slots = inner.slots_where(|s| s.id % SLICES == k);
        flush(&inner, slots, IfBusy::Skip).await;
        if k == SLICES - 1
            && let Some(f) = inner.config.after_write
        {
            let _ = tokio::task::spawn_blocking(f).await;
        }
        k = (k + 1) % SLICES;
    }
}

/// The storage-rate guard's limits (the Java appliance only reports rates; here a PV that
/// writes more than its limit in a wall-clock hour has the excess dropped and counted,
/// instead of filling the disk). Off by default.
///
/// Where the drops show: `droppedEventsRateLimit` in getPVStatus, the lost events of
/// getPVDetails, the report `getPVsByDroppedEventsRateLimit`, a `droppedEventsRateLimit`
/// column of getStorageRateReport, and one WARN log per PV and hour.
///
/// Two limits of the guard, by design:
/// * The bytes a PV wrote in the current hour are kept in memory only (`RateState`):
///   a restart starts every PV's budget afresh, so within the hour of a restart a PV may
///   write up to twice its limit. Reading the hour's bytes back from the files at start
///   would cost a walk of every PV's current partition; the guard bounds disk growth over
///   hours, which a restart now and then does not change.
/// * The guard decides when the buffer is written (every write period), not when a sample
///   is received: until that write, retrieval's live part of a getData shows every
///   buffered sample, including those the write will drop (at most one write period's
///   worth, 10 s by default). Deciding at receive time would put the guard's lock on the
///   ingest path of every sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// Bytes per hour for every PV without its own limit; `None`: no limit.
    pub default_bytes_per_hour: Option<u64>,
    /// Bytes per hour of single PVs (over the default).
    pub per_pv: HashMap<String, u64>,
}

impl RateLimit {
    /// The limit of `pv`, if any.
    pub fn for_pv(&self, pv: &str) -> Option<u64> {
        self.per_pv.get(pv).copied().or(self.default_bytes_per_hour)
    }
}

/// Bytes each PV (by id) wrote in the current hour: (hour number, bytes, whether a drop
/// was logged this hour).
#[derive(Debug, Default)]
pub(crate) struct RateState(Mutex<HashMap<u64, (i64, u64, bool)>>);

impl RateState {
    /// How many of `lines` (whole lines, from the start) PV `id` may write now under
    /// `limit` bytes per hour (counted as written), and whether this is the PV's first
    /// drop of the hour (to be logged once).
    fn admit(&self, id: u64, hour: i64, limit: u64, lines: &[u8]) -> (usize, bool) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let used = map.entry(id).or_insert((hour, 0, false));
        if used.0 != hour {
            *used = (hour, 0, false);
        }
        let room = usize::try_from(limit.saturating_sub(used.1)).unwrap_or(usize::MAX);
        let take = if lines.len() <= room {
            lines.len()
        } else {
            memchr::memrchr(b'\n', &lines[..room]).map_or(0, |i| i + 1)
        };
        used.1 += take as u64;
        let first_drop = take < lines.len() && !used.2;
        used.2 |= first_drop;
        (take, first_drop)
    }
}

/// What a flush does with a PV whose storage write lock another thread holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IfBusy {
    /// Wait for it.
    Wait,
    /// Leave the PV for the next period.
    Skip,
}

/// What a flush left in memory: samples a failed write kept to retry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unwritten {
    /// Samples still buffered after the flush.
    pub samples: u64,
    /// PVs they belong to.
    pub pvs: u64,
}

impl Unwritten {
    fn add(&mut self, samples: u64) {
        if samples > 0 {
            self.samples += samples;
            self.pvs += 1;
        }
    }
}

pub(crate) async fn flush_all(inner: &Arc<Inner>) -> Unwritten {
    flush_slots(inner, inner.slots_where(|_| true)).await
}

pub(crate) async fn flush_slots(inner: &Arc<Inner>, slots: Vec<Arc<PvSlot>>) -> Unwritten {
    flush(inner, slots, IfBusy::Wait).await
}

async fn flush(inner: &Arc<Inner>, slots: Vec<Arc<PvSlot>>, if_busy: IfBusy) -> Unwritten {
    let inner = inner.clone();
    let n = slots.len() as u64;
    tokio::task::spawn_blocking(move || {
        let mut left = Unwritten::default();
        for slot in slots {
            left.add(flush_slot_guarded(&inner, &slot, if_busy));
        }
        left
    })
    .await
    // The blocking task panicked: nothing is known to be written.
    .unwrap_or(Unwritten { samples: 0, pvs: n })
}

/// The write failures of all PVs: at most [`noise::Gate::PER_MINUTE`] lines a minute.
static WRITE_FAILURES: noise::Gate = noise::Gate::new();

/// Counts a failed write of `slot` (`write_errors`) and logs it within the noise limits: a
/// PV's 1st, 2nd, 4th, 8th... failure, and at most [`noise::Gate::PER_MINUTE`] such lines
/// a minute for the whole process (a full disk fails every PV every write period).
fn write_failure(slot: &PvSlot, message: impl FnOnce() -> String) {
    let n = slot.counters.write_errors.fetch_add(1, Relaxed) + 1;
    if !noise::repeat_worth_logging(n) {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if let noise::Admit::Log { left_out } = WRITE_FAILURES.admit(now) {
        warn!(
            pv = %slot.name,
            failures = n,
            left_out,
            "{} (this PV's failure {n}; the next logged at {}; {left_out} other lines \
             left out in the last minute)",
            message(),
            n * 2
        );
    }
}

fn flush_slot_guarded(inner: &Inner, slot: &PvSlot, if_busy: IfBusy) -> u64 {
    let written_before = slot.counters.events_written.load(Relaxed);
    let started = std::time::Instant::now();
    let kept = match inner.config.rate_limit.for_pv(&slot.name) {
        None => flush_slot(&inner.sts, slot, if_busy, None),
        Some(limit) => {
            let guard = Guard {
                state: &inner.rate,
                hour: inner.clock.now().secs.div_euclid(3600),
                limit,
            };
            flush_slot(&inner.sts, slot, if_busy, Some(guard))
        }
    };
    // Java's `WriterRunnable` sets `lastRotateLogs` each time it writes a PV's buffer to
    // the short-term store.
    if slot.counters.events_written.load(Relaxed) != written_before {
        inner.write_stats.observe(started.elapsed());
        let now = inner.clock.now().secs;
        slot.counters.last_written_secs.store(now, Relaxed);
    }
    kept
}

/// The storage-rate guard of one flush.
struct Guard<'a> {
    state: &'a RateState,
    hour: i64,
    limit: u64,
}

/// Writes one PV's buffer; returns how many samples a failed write kept in memory.
fn flush_slot(sts: &Tier, slot: &PvSlot, if_busy: IfBusy, guard: Option<Guard<'_>>) -> u64 {
    {
        let mut st = lock(&slot.state);
        if st.buffer.is_empty() {
            // Nothing unwritten (a buffer emptied otherwise): no journal segment needed.
            st.unwritten_seg = None;
            return 0;
        }
        if st.archived_type.is_none() {
            return 0;
        }
    }
    // Two flushes of one PV (the periodic one and a pause's, say) serialize on the PV's
    // storage lock, held from the take to the put-back: only the holder takes from the
    // buffer and sets `in_flight`, so writes never interleave and a failed batch is back
    // in the buffer before the next flush looks. The buffer is checked again under it.
    let pv_lock = match if_busy {
        IfBusy::Wait => sts.lock_pv(&slot.name).map(Some),
        IfBusy::Skip => sts.try_lock_pv(&slot.name),
    };
    let pv_lock = match pv_lock {
        Ok(Some(l)) => l,
        Ok(None) => return 0, // another flush, an ETL job or a deletion holds it: next period
        Err(e) => {
            write_failure(slot, || format!("not written: {e}"));
            return lock(&slot.state).buffer.len() as u64;
        }
    };
    let (ty, batch) = {
        let mut st = lock(&slot.state);
        let Some(ty) = st.archived_type else { return 0 };
        if st.buffer.is_empty() {
            return 0;
        }
        let batch: Arc<Vec<Chunk>> = Arc::new(st.buffer.take());
        st.in_flight = Some(batch.clone());
        st.in_flight_seg = st.unwritten_seg.take();
        (ty, batch)
    };
    // Chunk by chunk (one year each); a failure keeps that chunk and the later ones.
    let mut failed_at = None;
    for (i, chunk) in batch.iter().enumerate() {
        let mut lines = chunk.lines_bytes();
        if let Some(g) = &guard {
            let (take, first_drop) = g.state.admit(slot.id, g.hour, g.limit, lines);
            if take < lines.len() {
                let dropped = memchr::memchr_iter(b'\n', &lines[take..]).count() as u64;
                slot.counters.dropped_rate_limit.fetch_add(dropped, Relaxed);
                if first_drop {
                    warn!(
                        pv = %slot.name,
                        limit = g.limit,
                        "storage-rate guard: the PV wrote its {} bytes of this hour; what \
                         comes until the next hour is dropped and counted \
                         (droppedEventsRateLimit)",
                        g.limit
                    );
                }
                lines = &lines[..take];
            }
            if lines.is_empty() {
                continue;
            }
        }
        match sts.append_lines_locked(&pv_lock, ty, chunk.year, lines) {
            Ok(c) => {
                slot.counters.events_written.fetch_add(c.written, Relaxed);
                slot.counters
                    .refused_by_writer
                    .fetch_add(c.refused(), Relaxed);
            }
            Err(e) => {
                let left: usize = batch[i..].iter().map(|c| c.lines).sum();
                write_failure(slot, || {
                    // What the failure costs, said where it is seen (a fresh-user test
                    // found the drops only in droppedEventsBuffer).
                    let capacity = lock(&slot.state).capacity;
                    let dropped = slot.counters.dropped_buffer_overflow.load(Relaxed);
                    format!(
                        "write failed, keeping {left} samples to retry; the PV's buffer holds \
                         at most {capacity}, beyond that the oldest are dropped ({dropped} so \
                         far, droppedEventsBuffer): {e}"
                    )
                });
                failed_at = Some(i);
                break;
            }
        }
    }
    let mut st = lock(&slot.state);
    st.in_flight = None;
    let journaled_in = st.in_flight_seg.take();
    if let Some(i) = failed_at {
        // The kept samples still need their journal segment.
        st.unwritten_seg = match (journaled_in, st.unwritten_seg) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let capacity = st.capacity;
        let dropped = st.buffer.put_back(batch[i..].to_vec(), capacity);
        slot.counters
            .dropped_buffer_overflow
            .fetch_add(dropped as u64, Relaxed);
    }
    if failed_at.is_some() {
        st.buffer.len() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use archiver_pb::{Granularity, PbReader, Sample, Timestamp, Value};

    use super::*;

    /// Flushes of one PV from several threads (the periodic one skipping a busy PV, a
    /// pause's waiting), while samples keep coming, write every sample once and in order:
    /// the PV's storage lock alone keeps them apart.
    #[test]
    fn concurrent_flushes_of_one_pv_write_each_sample_once_in_order() {
        const N: i64 = 20_000;
        let dir = tempfile::tempdir().expect("tmp");
        let sts = Tier::new("STS", dir.path(), Granularity::Hour);
        let slot = Arc::new(PvSlot::for_test("T:FLUSH", 1 << 20));
        let done = Arc::new(AtomicBool::new(false));
        let flushers: Vec<_> = [IfBusy::Skip, IfBusy::Wait, IfBusy::Wait]
            .into_iter()
            .map(|if_busy| {
                let (sts, slot, done) = (sts.clone(), slot.clone(), done.clone());
                std::thread::spawn(move || {
                    while !done.load(std::sync::atomic::Ordering::SeqCst) {
                        flush_slot(&sts, &slot, if_busy, None);
                    }
                })
            })
            .collect();
        for k in 0..N {
            slot.push(&Sample::new(
                Timestamp::new(1_700_000_000 + k / 10, (k % 10) as u32 * 100_000_000),
                Value::ScalarDouble(k as f64),
            ));
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        for f in flushers {
            f.join().expect("flusher");
        }
        flush_slot(&sts, &slot, IfBusy::Wait, None);
        let mut values = Vec::new();
        for p in sts.partitions("T:FLUSH").expect("partitions") {
            let mut r = PbReader::open(&p.path).expect("open");
            while let Some(s) = r.next_sample().expect("read") {
                if let Value::ScalarDouble(v) = s.value {
                    values.push(v as i64);
                }
            }
        }
        assert_eq!(values.len() as i64, N, "every sample once");
        assert!(values.iter().copied().eq(0..N), "in order");
        assert_eq!(slot.counters.refused_by_writer.load(Relaxed), 0);
        assert_eq!(slot.counters.write_errors.load(Relaxed), 0);
    }

    /// The storage-rate guard writes whole lines up to the PV's bytes for the hour, drops
    /// and counts the rest, and starts afresh the next hour; without a limit nothing is
    /// dropped.
    #[test]
    fn the_rate_guard_writes_up_to_the_limit_per_hour_and_counts_the_rest() {
        let dir = tempfile::tempdir().expect("tmp");
        let sts = Tier::new("STS", dir.path(), Granularity::Hour);
        let slot = PvSlot::for_test("T:RATE", 1 << 20);
        let state = RateState::default();
        let push = |from: i64, n: i64| {
            for k in from..from + n {
                slot.push(&Sample::new(
                    Timestamp::new(1_700_000_000 + k, 0),
                    Value::ScalarDouble(k as f64),
                ));
            }
        };
        let stored = || {
            let mut n = 0;
            for p in sts.partitions("T:RATE").expect("partitions") {
                let mut r = PbReader::open(&p.path).expect("open");
                while r.next_sample().expect("read").is_some() {
                    n += 1;
                }
            }
            n
        };
        // A scalar double line is about 15 bytes: 100 lines are well over 400 bytes.
        push(0, 100);
        let guard = |hour| Guard {
            state: &state,
            hour,
            limit: 400,
        };
        assert_eq!(flush_slot(&sts, &slot, IfBusy::Wait, Some(guard(1))), 0);
        let (kept, dropped) = (stored(), slot.counters.dropped_rate_limit.load(Relaxed));
        assert!(kept > 10 && kept < 40, "{kept}");
        assert_eq!(kept + dropped, 100, "every sample written or counted");
        // The same hour: everything dropped.
        push(100, 10);
        flush_slot(&sts, &slot, IfBusy::Wait, Some(guard(1)));
        assert_eq!(stored(), kept);
        assert_eq!(slot.counters.dropped_rate_limit.load(Relaxed), dropped + 10);
        // The drops count as lost events (getPVDetails), and the first drop of an hour is
        // the one logged: once per PV per hour (a fresh-user test found them silent).
        assert_eq!(slot.counters.snapshot().events_lost(), dropped + 10);
        let fresh = RateState::default();
        let line = b"0123456789\n";
        assert_eq!(fresh.admit(7, 5, 15, line), (11, false));
        assert_eq!(fresh.admit(7, 5, 15, line), (0, true));
        assert_eq!(fresh.admit(7, 5, 15, line), (0, false));
        assert_eq!(fresh.admit(7, 6, 15, line), (11, false));
        assert_eq!(fresh.admit(7, 6, 15, line), (0, true));
        // The next hour: room again.
        push(110, 10);
        flush_slot(&sts, &slot, IfBusy::Wait, Some(guard(2)));
        assert_eq!(stored(), kept + 10);
        // No limit: nothing dropped.
        let limits = RateLimit {
            default_bytes_per_hour: None,
            per_pv: HashMap::from([("T:OTHER".to_string(), 5)]),
        };
        assert_eq!(limits.for_pv("T:RATE"), None);
        assert_eq!(limits.for_pv("T:OTHER"), Some(5));
    }
}
