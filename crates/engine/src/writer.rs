//! The writer: every write period, each PV's buffer is moved aside ("in flight", still
//! visible to retrieval), appended to the short-term store, then released. A failed write
//! puts the samples back at the front of the buffer to be retried; nothing is lost.

use std::collections::VecDeque;
use std::sync::Arc;

use archiver_pb::Sample;
use tracing::warn;

use crate::counters::Counters;
use crate::engine::Inner;
use crate::pv::{PvSlot, lock};

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut iv = tokio::time::interval(inner.config.write_period);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    iv.tick().await;
    loop {
        iv.tick().await;
        // Stops when the engine is gone (only this task holds the last reference).
        if Arc::strong_count(&inner) == 1 {
            return;
        }
        flush_all(&inner).await;
    }
}

pub(crate) async fn flush_all(inner: &Arc<Inner>) {
    let slots: Vec<Arc<PvSlot>> = inner
        .slots
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    flush_slots(inner, slots).await;
}

pub(crate) async fn flush_slots(inner: &Arc<Inner>, slots: Vec<Arc<PvSlot>>) {
    let inner = inner.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for slot in slots {
            flush_slot(&inner.sts, &slot);
        }
    })
    .await;
}

fn flush_slot(sts: &archiver_storage::Tier, slot: &PvSlot) {
    let _io = lock(&slot.io);
    let (ty, batch) = {
        let mut st = lock(&slot.state);
        let Some(ty) = st.archived_type else { return };
        if st.buffer.is_empty() {
            return;
        }
        // The next period likely brings as many samples: keep the capacity.
        let capacity = st.buffer.len();
        let taken = std::mem::replace(&mut st.buffer, VecDeque::with_capacity(capacity));
        let batch: Arc<Vec<Sample>> = Arc::new(taken.into());
        st.in_flight = Some(batch.clone());
        (ty, batch)
    };
    let result = sts.append(&slot.name, ty, &batch);
    let mut st = lock(&slot.state);
    st.in_flight = None;
    match result {
        Ok(c) => {
            slot.counters
                .events_written
                .fetch_add(c.written, std::sync::atomic::Ordering::Relaxed);
            slot.counters
                .refused_by_writer
                .fetch_add(c.refused(), std::sync::atomic::Ordering::Relaxed);
        }
        Err(e) => {
            warn!(pv = %slot.name, "write failed, keeping {} samples to retry: {e}", batch.len());
            Counters::inc(&slot.counters.write_errors);
            let newer = std::mem::take(&mut st.buffer);
            st.buffer = batch.iter().cloned().chain(newer).collect();
            while st.buffer.len() > st.capacity {
                st.buffer.pop_front();
                Counters::inc(&slot.counters.dropped_buffer_overflow);
            }
        }
    }
}
