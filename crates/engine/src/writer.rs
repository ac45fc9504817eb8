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

use std::sync::Arc;

use tracing::warn;

use archiver_storage::Tier;

use crate::counters::Counters;
use crate::engine::Inner;
use crate::linebuf::Chunk;
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
            left.add(flush_slot(&inner.sts, &slot, if_busy));
        }
        left
    })
    .await
    // The blocking task panicked: nothing is known to be written.
    .unwrap_or(Unwritten { samples: 0, pvs: n })
}

/// Writes one PV's buffer; returns how many samples a failed write kept in memory.
fn flush_slot(sts: &Tier, slot: &PvSlot, if_busy: IfBusy) -> u64 {
    {
        let st = lock(&slot.state);
        if st.archived_type.is_none() || st.buffer.is_empty() {
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
            warn!(pv = %slot.name, "not written: {e}");
            Counters::inc(&slot.counters.write_errors);
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
        (ty, batch)
    };
    // Chunk by chunk (one year each); a failure keeps that chunk and the later ones.
    let mut failed_at = None;
    for (i, chunk) in batch.iter().enumerate() {
        match sts.append_lines_locked(&pv_lock, ty, chunk.year, chunk.lines_bytes()) {
            Ok(c) => {
                slot.counters.events_written.fetch_add(c.written, Relaxed);
                slot.counters
                    .refused_by_writer
                    .fetch_add(c.refused(), Relaxed);
            }
            Err(e) => {
                let left: usize = batch[i..].iter().map(|c| c.lines).sum();
                warn!(pv = %slot.name, "write failed, keeping {left} samples to retry: {e}");
                Counters::inc(&slot.counters.write_errors);
                failed_at = Some(i);
                break;
            }
        }
    }
    let mut st = lock(&slot.state);
    st.in_flight = None;
    if let Some(i) = failed_at {
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
                        flush_slot(&sts, &slot, if_busy);
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
        flush_slot(&sts, &slot, IfBusy::Wait);
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
}
