//! The write failures of one store, for the operator: how many by reason (out of space,
//! read-only, permission, other) since start, and the last error of each PV whose last
//! write failed (cleared by its next successful write). Kept by [`crate::Tier`] for every
//! append (the engine's writer and ETL's copies into the store), read by `/metrics`
//! (`archiver_store_write_errors_total{store,reason}`) and by getPVStatus/getPVDetails
//! (`lastWriteError`).
//!
//! Cost on the write path: one atomic load per successful append while no PV is failing;
//! the map is locked only on a failure and on the first success after one.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

use crate::error::StorageError;

/// Why a write to a store failed, from the I/O error underneath.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteFailureReason {
    /// No space or quota left (`ENOSPC`, `EDQUOT`).
    OutOfSpace,
    /// The file system is mounted read-only (`EROFS`).
    ReadOnly,
    /// The process may not write there (`EACCES`, `EPERM`).
    Permission,
    /// Any other failure (an I/O error, a damaged file...).
    Other,
}

impl WriteFailureReason {
    /// Every reason, in the order of [`StoreWriteFailures::by_reason`].
    pub const ALL: [WriteFailureReason; 4] = [
        WriteFailureReason::OutOfSpace,
        WriteFailureReason::ReadOnly,
        WriteFailureReason::Permission,
        WriteFailureReason::Other,
    ];

    /// The metric label: `out_of_space`, `read_only`, `permission` or `other`.
    pub fn label(self) -> &'static str {
        match self {
            WriteFailureReason::OutOfSpace => "out_of_space",
            WriteFailureReason::ReadOnly => "read_only",
            WriteFailureReason::Permission => "permission",
            WriteFailureReason::Other => "other",
        }
    }

    /// The reason of `err` (its I/O error's kind; anything else is `Other`).
    pub fn of(err: &StorageError) -> WriteFailureReason {
        match err.io_error().map(std::io::Error::kind) {
            Some(ErrorKind::StorageFull | ErrorKind::QuotaExceeded) => {
                WriteFailureReason::OutOfSpace
            }
            Some(ErrorKind::ReadOnlyFilesystem) => WriteFailureReason::ReadOnly,
            Some(ErrorKind::PermissionDenied) => WriteFailureReason::Permission,
            _ => WriteFailureReason::Other,
        }
    }
}

/// The last failed write of a PV to a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWriteError {
    /// When it failed, Unix seconds.
    pub at_secs: i64,
    /// Why.
    pub reason: WriteFailureReason,
    /// The error, naming the store and the file.
    pub message: String,
}

/// Failed writes of one store since start, by reason, in the order of
/// [`WriteFailureReason::ALL`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreWriteFailures {
    /// Counts by reason.
    pub by_reason: [u64; 4],
}

impl StoreWriteFailures {
    /// `(reason, count)` for every reason.
    pub fn iter(&self) -> impl Iterator<Item = (WriteFailureReason, u64)> + '_ {
        WriteFailureReason::ALL.into_iter().zip(self.by_reason)
    }
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct WriteFaults {
    counts: [AtomicU64; 4],
    failing: Mutex<HashMap<Box<str>, LastWriteError>>,
    /// `failing.len()`, read without the lock.
    n_failing: AtomicUsize,
}

impl WriteFaults {
    /// Records `result` of a write of `pv`.
    pub(crate) fn note<T>(&self, pv: &str, result: &Result<T, StorageError>) {
        match result {
            Ok(_) => {
                if self.n_failing.load(Relaxed) > 0 {
                    let mut m = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
                    if m.remove(pv).is_some() {
                        self.n_failing.store(m.len(), Relaxed);
                    }
                }
            }
            Err(e) => {
                let reason = WriteFailureReason::of(e);
                let i = WriteFailureReason::ALL
                    .iter()
                    .position(|r| *r == reason)
                    .unwrap_or(3);
                self.counts[i].fetch_add(1, Relaxed);
                let at_secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let mut m = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
                m.insert(
                    pv.into(),
                    LastWriteError {
                        at_secs,
                        reason,
                        message: e.to_string(),
                    },
                );
                self.n_failing.store(m.len(), Relaxed);
            }
        }
    }

    pub(crate) fn counts(&self) -> StoreWriteFailures {
        StoreWriteFailures {
            by_reason: std::array::from_fn(|i| self.counts[i].load(Relaxed)),
        }
    }

    pub(crate) fn last(&self, pv: &str) -> Option<LastWriteError> {
        if self.n_failing.load(Relaxed) == 0 {
            return None;
        }
        let m = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        m.get(pv).cloned()
    }

    /// PVs whose last write failed.
    pub(crate) fn failing_pvs(&self) -> usize {
        self.n_failing.load(Relaxed)
    }
}
