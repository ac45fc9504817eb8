//! The storage backend: every file and folder operation of the tiers goes through
//! [`StorageBackend`], so tests can run the same code over a fault-injecting, crash-simulating
//! filesystem ([`crate::testing::SimBackend`]) instead of the real one ([`FsBackend`]).
//!
//! Modelled on redb's `StorageBackend` (`src/db.rs`), widened from one file to a folder
//! tree: the per-file operations are [`archiver_pb::FileIo`] (append, positional read,
//! set length, sync data); the folder operations are here (open/create, rename, remove,
//! list, create a folder, sync a folder).

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use archiver_pb::{FileIo, StdFile};

use crate::locks::PvLocks;

/// How [`StorageBackend::open`] opens a file. Every mode can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, read-only (`NotFound` if absent).
    Read,
    /// An existing file, for appending (`NotFound` if absent).
    Append,
    /// A new file, for appending (`AlreadyExists` if present; `NotFound` if its folder
    /// is absent: folders are created by [`StorageBackend::create_dir`]).
    CreateNew,
}

/// One entry of a folder listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (not its path).
    pub name: OsString,
    /// True for a folder.
    pub is_dir: bool,
}

/// The file and folder operations of a storage tier.
///
/// Errors are [`io::Error`]s with their usual kinds (`NotFound`, `AlreadyExists`,
/// `StorageFull` for a full disk, raw OS error 28). Nothing here is durable until synced:
/// file data by [`FileIo::sync_data`], a name in a folder (a created, renamed or removed
/// entry) by [`StorageBackend::sync_dir`] of that folder. See the crate documentation for
/// when the tiers sync.
pub trait StorageBackend: Send + Sync + fmt::Debug {
    /// Opens the file at `path` in `mode`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileIo>>;

    /// The length of the file at `path`.
    fn len(&self, path: &Path) -> io::Result<u64>;

    /// True if something (a file or a folder) exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;

    /// Renames the file `from` to `to`, replacing `to` if it exists (atomically, as
    /// `rename(2)`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// The entries of the folder `dir`, in no particular order (`NotFound` if absent).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;

    /// Creates the folder `dir` (one level: its parent must exist; `AlreadyExists` if it
    /// does).
    fn create_dir(&self, dir: &Path) -> io::Result<()>;

    /// Makes the entries of the folder `dir` durable (`fsync` of the folder).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Makes everything written on the filesystem holding `dir` durable: every file's data
    /// and every folder's entries (`syncfs(2)`). One call instead of a sync per file, for
    /// the write-ahead journal, which removes a segment only once the samples it held are
    /// durable in their partition files (see `crate::journal`).
    fn sync_filesystem(&self, dir: &Path) -> io::Result<()>;

    /// A stamp of the entries of the folder `dir`: equal stamps mean no entry was created,
    /// removed or renamed in between, unless [`DirStamp::settled`] is false (a change
    /// within the filesystem's clock tick may keep it). `NotFound` if absent; `None`: no
    /// stamp at all, list the folder. Not an operation of the fault-injecting backend.
    /// The store's partition index trusts a cached listing of a folder while its stamp is
    /// unchanged (see `index.rs`).
    fn dir_stamp(&self, dir: &Path) -> io::Result<Option<DirStamp>> {
        let _ = dir;
        Ok(None)
    }

    /// The size of the filesystem holding `dir` in bytes (`statvfs`: `f_blocks ×
    /// f_frsize`); `None` if unknown (the default). For the storage reports (Java's
    /// `StorageMetrics.getTotalSpace`).
    fn total_space(&self, dir: &Path) -> io::Result<Option<u64>> {
        let _ = dir;
        Ok(None)
    }

    /// Bytes an unprivileged process may still write on the filesystem holding `dir`
    /// (`statvfs`: `f_bavail × f_frsize`); `None` if unknown. Not an operation of the
    /// fault-injecting backend. ETL checks it before a move (Java's free-space check).
    fn available_space(&self, dir: &Path) -> io::Result<Option<u64>> {
        let _ = dir;
        Ok(None)
    }
}

/// A folder's stamp ([`StorageBackend::dir_stamp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirStamp {
    /// Equal values: no entry changed in between (see `settled`).
    pub value: u128,
    /// False while a change could still leave `value` as it is (a coarse clock's tick).
    pub settled: bool,
}

/// How old a folder's modification time must be for [`FsBackend`] to call its stamp settled.
pub const SETTLED: std::time::Duration = std::time::Duration::from_secs(1);

/// The real filesystem, through `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsBackend;

impl StorageBackend for FsBackend {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileIo>> {
        let file = match mode {
            OpenMode::Read => StdFile::open_read(path)?,
            OpenMode::Append => StdFile::open_append(path, false)?,
            OpenMode::CreateNew => StdFile::create_new(path)?,
        };
        Ok(Box::new(file))
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            out.push(DirEntry {
                is_dir: entry.file_type()?.is_dir(),
                name: entry.file_name(),
            });
        }
        Ok(out)
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn sync_filesystem(&self, dir: &Path) -> io::Result<()> {
        let Some(existing) = dir.ancestors().find(|d| d.exists()) else {
            return Ok(());
        };
        let d = std::fs::File::open(existing)?;
        rustix::fs::syncfs(&d).map_err(io::Error::from)
    }

    /// The folder's modification time in nanoseconds; settled when more than [`SETTLED`]
    /// old: filesystems stamp folders with a coarse clock (a few ms), so a change made
    /// within the same tick as a listing could leave the time unchanged, while a time
    /// that old cannot be repeated by a later change.
    fn dir_stamp(&self, dir: &Path) -> io::Result<Option<DirStamp>> {
        let meta = std::fs::metadata(dir)?;
        let Ok(mtime) = meta.modified() else {
            return Ok(None);
        };
        let settled = std::time::SystemTime::now()
            .checked_sub(SETTLED)
            .is_some_and(|t| mtime < t);
        Ok(mtime
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| DirStamp {
                value: d.as_nanos(),
                settled,
            }))
    }

    fn available_space(&self, dir: &Path) -> io::Result<Option<u64>> {
        Ok(statvfs_near(dir)?.map(|st| st.f_bavail.saturating_mul(st.f_frsize)))
    }

    fn total_space(&self, dir: &Path) -> io::Result<Option<u64>> {
        Ok(statvfs_near(dir)?.map(|st| st.f_blocks.saturating_mul(st.f_frsize)))
    }
}

/// `statvfs` of the filesystem of `dir`, or of its nearest existing ancestor (a store's
/// folder may not exist yet); `None` when no ancestor exists.
fn statvfs_near(dir: &Path) -> io::Result<Option<rustix::fs::StatVfs>> {
    let Some(existing) = dir.ancestors().find(|d| d.exists()) else {
        return Ok(None);
    };
    rustix::fs::statvfs(existing)
        .map(Some)
        .map_err(io::Error::from)
}

/// A storage backend and the per-PV write locks of everything stored through it; cheap to
/// clone (a few `Arc`s). Every [`Tier`](crate::Tier) built from one `Backend` (or its
/// clones) takes the same lock for a PV, whichever tier it writes.
#[derive(Clone)]
pub struct Backend {
    io: Arc<dyn StorageBackend>,
    locks: Arc<PvLocks>,
    moves: Arc<PvLocks>,
    counters: Arc<BackendCounters>,
}

/// Counts of what the tiers of one [`Backend`] repaired, for status and metrics.
#[derive(Debug, Default)]
pub struct BackendCounters {
    /// Files whose torn last line (a crash in the middle of a write) was cut when they
    /// were opened for appending, or left out when ETL moved them.
    pub torn_repairs: AtomicU64,
    /// Bytes cut by those repairs.
    pub torn_bytes: AtomicU64,
}

impl BackendCounters {
    /// Counts one repair of `bytes` bytes.
    pub fn torn_repair(&self, bytes: u64) {
        self.torn_repairs.fetch_add(1, Ordering::Relaxed);
        self.torn_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend").field("io", &self.io).finish()
    }
}

impl Backend {
    /// A backend over `io`, with its own lock table.
    pub fn new(io: impl StorageBackend + 'static) -> Self {
        Backend {
            io: Arc::new(io),
            locks: Arc::new(PvLocks::default()),
            moves: Arc::new(PvLocks::default()),
            counters: Arc::new(BackendCounters::default()),
        }
    }

    /// The real filesystem. One per process: every call returns a clone of the same
    /// handle, so every tier on the real filesystem in this process (whoever built it,
    /// [`Tier::new`](crate::Tier::new) included) shares one lock table, and the engine's
    /// writer and an ETL job serialize on a PV even if they built their tiers separately.
    pub fn fs() -> Self {
        static FS: OnceLock<Backend> = OnceLock::new();
        FS.get_or_init(|| Backend::new(FsBackend)).clone()
    }

    /// The file and folder operations.
    pub fn io(&self) -> &dyn StorageBackend {
        &*self.io
    }

    /// The per-PV write locks.
    pub fn locks(&self) -> &Arc<PvLocks> {
        &self.locks
    }

    /// The per-PV move locks: held by whatever moves or rewrites a PV's files across
    /// several steps (an ETL batch from a PV's first copy to the deletion of its sources,
    /// a consolidation, a deletion of its data), so that those never interleave on one PV.
    /// Taken before the write lock, never while holding it; the engine's writer does not
    /// take it (it only appends, under the write lock).
    pub fn moves(&self) -> &Arc<PvLocks> {
        &self.moves
    }

    /// The repair counters of every tier of this backend.
    pub fn counters(&self) -> &BackendCounters {
        &self.counters
    }
}
