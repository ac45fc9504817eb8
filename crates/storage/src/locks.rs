//! The per-PV write lock: one lock per PV name for all of its tiers, so that the engine's
//! writer, an ETL job moving the PV's partitions and a deletion of its data never
//! interleave their writes.
//!
//! # No global lock, no leak
//!
//! The table is split into [`SHARDS`] shards by a hash of the PV name; a shard's mutex is
//! held only to look an entry up or drop it, never during I/O, so writers of different PVs
//! do not wait on each other (the ingest path has no global lock). An entry exists only
//! while someone holds or waits for its PV's lock: the last [`PvLock`] to be dropped
//! removes it. The table's size is therefore the number of PVs being written at this
//! moment, not the number ever written: a deleted PV costs nothing once its last write
//! ends. The price is one small allocation (the entry and its key) per lock taken when the
//! PV was not already locked, once per PV per write period on the ingest path.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

/// How many shards the lock table has.
pub const SHARDS: usize = 64;

type Shard = Mutex<HashMap<Box<str>, Arc<Entry>>>;

/// A table of per-PV write locks. Shared (in an `Arc`) by every tier of one
/// [`Backend`](crate::Backend).
#[derive(Debug)]
pub struct PvLocks {
    shards: Box<[Shard]>,
}

#[derive(Debug, Default)]
struct Entry {
    /// The thread holding the lock, if any.
    holder: Mutex<Option<ThreadId>>,
    freed: Condvar,
}

/// Why a lock was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PV {pv:?}: this thread already holds its write lock (use the *_locked methods)")]
pub struct Reentrant {
    /// The PV.
    pub pv: String,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these mutexes; recover the data if something did.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for PvLocks {
    fn default() -> Self {
        PvLocks {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl PvLocks {
    fn shard(&self, pv: &str) -> &Shard {
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(pv);
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// Takes the write lock of `pv`, waiting while another thread holds it. Fails (instead
    /// of deadlocking) if this thread already holds it.
    pub fn lock(self: &Arc<Self>, pv: &str) -> Result<PvLock, Reentrant> {
        let entry = self.entry(pv);
        let me = std::thread::current().id();
        let mut holder = guard(&entry.holder);
        while let Some(h) = *holder {
            if h == me {
                drop(holder);
                self.release_entry(pv, &entry);
                return Err(Reentrant { pv: pv.to_string() });
            }
            holder = entry.freed.wait(holder).unwrap_or_else(|e| e.into_inner());
        }
        *holder = Some(me);
        drop(holder);
        Ok(self.guard(pv, entry))
    }

    /// Takes the write lock of `pv` if nobody holds it; `None` if another thread does (for
    /// a writer that would rather come back later than wait, such as the engine's periodic
    /// flush while an ETL job moves the PV's files).
    pub fn try_lock(self: &Arc<Self>, pv: &str) -> Result<Option<PvLock>, Reentrant> {
        let entry = self.entry(pv);
        let me = std::thread::current().id();
        let mut holder = guard(&entry.holder);
        if let Some(h) = *holder {
            drop(holder);
            self.release_entry(pv, &entry);
            return match h == me {
                true => Err(Reentrant { pv: pv.to_string() }),
                false => Ok(None),
            };
        }
        *holder = Some(me);
        drop(holder);
        Ok(Some(self.guard(pv, entry)))
    }

    /// The entry of `pv`, made if absent.
    fn entry(&self, pv: &str) -> Arc<Entry> {
        let mut shard = guard(self.shard(pv));
        match shard.get(pv) {
            Some(e) => e.clone(),
            None => {
                let e = Arc::new(Entry::default());
                shard.insert(pv.into(), e.clone());
                e
            }
        }
    }

    fn guard(self: &Arc<Self>, pv: &str, entry: Arc<Entry>) -> PvLock {
        PvLock {
            table: self.clone(),
            entry,
            pv: pv.into(),
            not_send: PhantomData,
        }
    }

    /// Drops the table's entry for `pv` if nobody else refers to it (`entry` is the
    /// caller's reference, which it then drops).
    fn release_entry(&self, pv: &str, entry: &Arc<Entry>) {
        let mut shard = guard(self.shard(pv));
        // Clones are made under the shard's mutex, so the count cannot grow meanwhile:
        // 2 means the table's reference and the caller's.
        if Arc::strong_count(entry) == 2 {
            shard.remove(pv);
        }
    }

    /// How many PVs have an entry (held or awaited locks).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| guard(s).len()).sum()
    }

    /// True when no lock is held or awaited.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The write lock of one PV, held until dropped. Not `Send`: it stays on the thread that
/// took it (the table uses the thread to refuse a second, deadlocking, lock of the same PV).
#[derive(Debug)]
pub struct PvLock {
    table: Arc<PvLocks>,
    entry: Arc<Entry>,
    pv: Box<str>,
    not_send: PhantomData<*const ()>,
}

impl PvLock {
    /// The PV this lock is for.
    pub fn pv(&self) -> &str {
        &self.pv
    }

    /// True if this lock comes from `table`.
    pub(crate) fn is_from(&self, table: &Arc<PvLocks>) -> bool {
        Arc::ptr_eq(&self.table, table)
    }
}

impl Drop for PvLock {
    fn drop(&mut self) {
        *guard(&self.entry.holder) = None;
        self.entry.freed.notify_one();
        self.table.release_entry(&self.pv, &self.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn one_writer_per_pv_and_no_entry_left_behind() {
        let locks = Arc::new(PvLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let max_inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (locks, inside, max_inside) =
                    (locks.clone(), inside.clone(), max_inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _g = locks.lock("A:PV").expect("lock");
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max_inside.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(50));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        assert_eq!(max_inside.load(Ordering::SeqCst), 1);
        assert!(locks.is_empty(), "{} entries left", locks.len());
    }

    #[test]
    fn other_pvs_do_not_wait_and_reentry_is_refused() {
        let locks = Arc::new(PvLocks::default());
        let a = locks.lock("A").expect("lock");
        assert_eq!(
            locks.lock("A").map(|_| ()),
            Err(Reentrant { pv: "A".into() })
        );
        // Another PV, from another thread, while A is held.
        let l2 = locks.clone();
        std::thread::spawn(move || {
            drop(l2.lock("B").expect("lock"));
            // A held, by the other thread: try_lock does not wait.
            assert!(l2.try_lock("A").expect("not re-entry").is_none());
            assert!(l2.try_lock("C").expect("free").is_some());
        })
        .join()
        .expect("join");
        assert_eq!(locks.len(), 1);
        assert_eq!(a.pv(), "A");
        drop(a);
        assert!(locks.is_empty());
        // Many PVs written once each leave nothing behind.
        for k in 0..1000 {
            drop(locks.lock(&format!("PV:{k}")).expect("lock"));
        }
        assert!(locks.is_empty());
    }
}
