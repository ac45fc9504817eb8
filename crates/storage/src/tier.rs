//! One storage tier: a root folder of PlainPB files at one partition granularity, read and
//! written through a [`Backend`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use archiver_pb::path::{DEFAULT_SEPARATORS, DEFAULT_TERMINATOR, PB_EXTENSION, chunk_key_with};
use archiver_pb::{
    AppendCounts, FileCursor, FileIo, Granularity, LineDecoder, PayloadInfo, PayloadType, PbReader,
    PbWriter, ReadError, Sample, Timestamp,
};

use crate::backend::{Backend, OpenMode};
use crate::error::StorageError;
use crate::faults::{LastWriteError, StoreWriteFailures};
use crate::index::PartitionIndex;
use crate::locks::PvLock;
use crate::query::TierQuery;
use crate::url::StoreUrl;

/// A reader of one partition file through the backend.
pub(crate) type FileReader = PbReader<FileCursor<Box<dyn FileIo>>>;

/// When the tier makes an append durable (see the crate documentation, "Durability").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Appends are not synced: they are durable once the kernel writes them back (on
    /// Linux within about 30 s, `vm.dirty_expire_centisecs`), survive a crash of the
    /// process at once, and a power loss loses at most that window. The Java appliance's
    /// behaviour, and the right one for a short-term store on a RAM disk.
    #[default]
    OsWriteback,
    /// Every append call ends with `fdatasync` of each file it wrote, and a new file's
    /// folder (and each new folder's parent) is synced when it is created: an append is
    /// durable when it returns `Ok`.
    EachWrite,
}

/// A storage tier (STS, MTS, LTS...): the Java appliance's `PlainPBStoragePlugin`.
///
/// Cheap to clone. Every write takes the PV's write lock of the tier's [`Backend`], shared
/// by every tier built from that backend.
#[derive(Debug, Clone)]
pub struct Tier {
    url: Arc<StoreUrl>,
    root: PathBuf,
    terminator: char,
    backend: Backend,
    sync: SyncPolicy,
    index: Arc<PartitionIndex>,
    /// The file name extension of this view's partitions: `.pb` for the samples, or
    /// `.<post-processor>` for the reductions ETL caches ([`Tier::reduced`]).
    extension: Arc<str>,
    /// Failed writes by reason and each failing PV's last error (shared by clones).
    faults: Arc<crate::faults::WriteFaults>,
}

/// One partition file of a PV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Epoch seconds of the partition's start (inclusive).
    pub start: i64,
    /// Epoch seconds of the partition's end (exclusive).
    pub end: i64,
    /// The file.
    pub path: PathBuf,
}

/// Adds the counts `c` to `total`.
pub(crate) fn add(total: &mut AppendCounts, c: &AppendCounts) {
    total.written += c.written;
    total.not_newer += c.not_newer;
    total.other_year += c.other_year;
    total.wrong_type += c.wrong_type;
    total.invalid += c.invalid;
}

fn is_root(p: &Path) -> bool {
    p.as_os_str().is_empty() || p.parent().is_none()
}

/// What [`Tier::delete_range_locked`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeleteCounts {
    /// Partition files removed whole.
    pub files_removed: u64,
    /// Partition files rewritten without the range.
    pub files_rewritten: u64,
    /// Samples deleted (summed over tiers: a sample held by two tiers, as between an ETL
    /// copy and its source's deletion, counts in each).
    pub samples_deleted: u64,
}

impl DeleteCounts {
    /// Adds `o` to this.
    pub fn add(&mut self, o: &DeleteCounts) {
        self.files_removed += o.files_removed;
        self.files_rewritten += o.files_rewritten;
        self.samples_deleted += o.samples_deleted;
    }
}

/// Disk use of a PV in a store (or summed over stores).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Partition files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// A file written by the current append call and its length before it, to roll back.
type Written = Vec<(PathBuf, u64)>;

impl Tier {
    /// A tier named `name` (e.g. `STS`) with files under `root` on the real filesystem
    /// ([`Backend::fs`]).
    pub fn new(
        name: impl Into<String>,
        root: impl Into<PathBuf>,
        granularity: Granularity,
    ) -> Self {
        Tier::with_backend(name, root, granularity, Backend::fs())
    }

    /// A tier named `name` with files under `root` through `backend`.
    pub fn with_backend(
        name: impl Into<String>,
        root: impl Into<PathBuf>,
        granularity: Granularity,
        backend: Backend,
    ) -> Self {
        let root = root.into();
        let url = StoreUrl::new(name, root.display().to_string(), granularity);
        Tier {
            url: Arc::new(url),
            root,
            terminator: DEFAULT_TERMINATOR,
            backend,
            sync: SyncPolicy::default(),
            index: Arc::default(),
            extension: PB_EXTENSION.into(),
            faults: Arc::default(),
        }
    }

    /// The tier a data store URL describes (`pb://localhost?name=STS&rootFolder=...&
    /// partitionGranularity=PARTITION_HOUR`, see [`StoreUrl`]), through `backend`;
    /// `${VAR}` in `rootFolder` is expanded from the process environment. The error names
    /// the problem (a missing parameter, an unknown granularity, an unset variable...).
    pub fn from_url(url: &str, backend: &Backend) -> Result<Tier, StorageError> {
        let bad = |source| StorageError::BadUrl {
            url: url.to_string(),
            source,
        };
        let parsed = StoreUrl::parse(url).map_err(bad)?;
        let root = parsed.expand_root_folder_from_env().map_err(bad)?;
        Ok(Tier::from_store_url(parsed, root, backend))
    }

    /// The tier of a parsed URL whose root folder has been expanded to `root`.
    pub fn from_store_url(url: StoreUrl, root: impl Into<PathBuf>, backend: &Backend) -> Tier {
        Tier {
            terminator: url.terminator.unwrap_or(DEFAULT_TERMINATOR),
            url: Arc::new(url),
            root: root.into(),
            backend: backend.clone(),
            sync: SyncPolicy::default(),
            index: Arc::default(),
            extension: PB_EXTENSION.into(),
            faults: Arc::default(),
        }
    }

    /// The same store's cached reduction `post_processor` (a `pp=` of its URL, e.g.
    /// `mean_3600`): partitions named `<key><partition>.mean_3600` instead of `.pb`, in
    /// PlainPB, beside the samples (Java `PlainStoragePlugin`: ETL writes them, retrieval
    /// reads them for a request of exactly that post-processor). Same folder, index, locks
    /// and backend as this tier.
    pub fn reduced(&self, post_processor: &str) -> Tier {
        let mut t = self.clone();
        t.extension = format!(".{post_processor}").into();
        t
    }

    /// The post-processors whose results this store caches (its URL's `pp=`, in order).
    pub fn cached_post_processors(&self) -> &[String] {
        &self.url.post_processors
    }

    /// This tier with `policy` for its appends.
    pub fn with_sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync = policy;
        self
    }

    /// When appends are made durable.
    pub fn sync_policy(&self) -> SyncPolicy {
        self.sync
    }

    /// The tier's name.
    pub fn name(&self) -> &str {
        &self.url.name
    }

    /// The tier's root folder (with `${VAR}` expanded).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The tier's partition granularity.
    pub fn granularity(&self) -> Granularity {
        self.url.granularity
    }

    /// The parsed store URL: ETL parameters (`hold`, `gather`, `consolidateOnShutdown`,
    /// `pp`, `reducedata`...) included.
    pub fn store_url(&self) -> &StoreUrl {
        &self.url
    }

    /// The backend (its I/O and its PV locks).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The Java-style store URL of this tier, as `PVTypeInfo.dataStores` lists it; parsing
    /// it gives this tier back (`rootFolder` as configured, `${VAR}` kept).
    pub fn url(&self) -> String {
        self.url.to_string()
    }

    fn key(&self, pv: &str) -> Result<String, StorageError> {
        chunk_key_with(pv, DEFAULT_SEPARATORS, self.terminator).map_err(|source| {
            StorageError::BadName {
                tier: self.name().to_string(),
                source,
            }
        })
    }

    /// An I/O error of this tier at `path`.
    pub(crate) fn io_error(&self, path: &Path, source: io::Error) -> StorageError {
        self.io_err(path, source)
    }

    /// The time of the first sample of the file at `path`; `None` for a file without a
    /// header or a sample.
    pub(crate) fn first_time_in(&self, path: &Path) -> Result<Option<Timestamp>, StorageError> {
        let Some(mut r) = self.open_reader(path)? else {
            return Ok(None);
        };
        let first = r.next_sample().map_err(|e| self.io_err(path, e))?;
        Ok(first.map(|s| s.time))
    }

    /// Removes the partition file `path` of the PV of `lock` (which the caller holds),
    /// syncing its folder as the policy says; a file already gone is no error.
    pub fn remove_file_locked(&self, lock: &PvLock, path: &Path) -> Result<(), StorageError> {
        self.check_lock(lock)?;
        match self.backend.io().remove_file(path) {
            Ok(()) => {
                self.index.note_removed(path);
                self.sync_folder(path.parent().unwrap_or(Path::new("")))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io_err(path, e)),
        }
    }

    fn io_err(&self, path: &Path, source: io::Error) -> StorageError {
        StorageError::Io {
            tier: self.name().to_string(),
            path: path.to_path_buf(),
            source,
        }
    }

    /// The file holding the partition of `pv` that contains `secs`.
    pub fn file_for(&self, pv: &str, secs: i64) -> Result<PathBuf, StorageError> {
        let mut key = self.key(pv)?;
        key.push_str(&self.granularity().partition_name(secs));
        key.push_str(&self.extension);
        Ok(self.root.join(key))
    }

    /// Takes the write lock of `pv` (waiting for another writer of it). Every append,
    /// rewrite and removal takes it; hold it to make several of them one step, through the
    /// `*_locked` methods (calling a method that takes the lock while holding it is an
    /// error, not a deadlock).
    pub fn lock_pv(&self, pv: &str) -> Result<PvLock, StorageError> {
        self.backend
            .locks()
            .lock(pv)
            .map_err(|source| StorageError::Lock {
                tier: self.name().to_string(),
                source,
            })
    }

    /// [`Tier::lock_pv`] without waiting: `None` if another thread holds the lock.
    pub fn try_lock_pv(&self, pv: &str) -> Result<Option<PvLock>, StorageError> {
        self.backend
            .locks()
            .try_lock(pv)
            .map_err(|source| StorageError::Lock {
                tier: self.name().to_string(),
                source,
            })
    }

    fn check_lock<'a>(&self, lock: &'a PvLock) -> Result<&'a str, StorageError> {
        if lock.is_from(self.backend.locks()) {
            Ok(lock.pv())
        } else {
            Err(StorageError::ForeignLock {
                tier: self.name().to_string(),
                pv: lock.pv().to_string(),
            })
        }
    }

    /// Appends `samples` (in time order) of `pv`, of type `ty`, to their partition files:
    /// one open and one write per partition touched. Samples the files refuse (not newer
    /// than the last stored, wrong type) are counted in the result. On error no file keeps
    /// any of the samples (the ones written to earlier partitions are rolled back), so the
    /// caller can retry the same batch.
    pub fn append(
        &self,
        pv: &str,
        ty: PayloadType,
        samples: &[Sample],
    ) -> Result<AppendCounts, StorageError> {
        let lock = self.lock_pv(pv)?;
        self.append_locked(&lock, ty, samples)
    }

    /// [`Tier::append`] for the PV of `lock`, which the caller holds.
    pub fn append_locked(
        &self,
        lock: &PvLock,
        ty: PayloadType,
        samples: &[Sample],
    ) -> Result<AppendCounts, StorageError> {
        self.append_touching(lock, ty, samples, &mut Vec::new())
    }

    /// [`Tier::append_locked`] that also adds to `touched` each file it wrote to (on
    /// success), as [`Tier::append_lines_touching`].
    pub(crate) fn append_touching(
        &self,
        lock: &PvLock,
        ty: PayloadType,
        samples: &[Sample],
        touched: &mut Vec<PathBuf>,
    ) -> Result<AppendCounts, StorageError> {
        let pv = self.check_lock(lock)?;
        let result = self.append_samples(pv, ty, samples, touched);
        self.faults.note(pv, &result);
        result
    }

    fn append_samples(
        &self,
        pv: &str,
        ty: PayloadType,
        samples: &[Sample],
        touched: &mut Vec<PathBuf>,
    ) -> Result<AppendCounts, StorageError> {
        let mut total = AppendCounts::default();
        let mut written = Written::new();
        let mut rest = samples;
        while let Some(first) = rest.first() {
            let end = self.granularity().partition_end(first.time.secs);
            let n = rest
                .iter()
                .position(|s| s.time.secs >= end || s.time.secs < first.time.secs)
                .unwrap_or(rest.len())
                .max(1);
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            let c = self
                .write_partition(
                    pv,
                    ty,
                    first.time.secs,
                    first.time.year(),
                    &mut written,
                    |w| w.append(batch),
                )
                .inspect_err(|_| self.roll_back(&written))?;
            add(&mut total, &c);
        }
        touched.extend(written.into_iter().map(|(p, _)| p));
        Ok(total)
    }

    /// This store's failed writes since start, by reason (see [`crate::WriteFailureReason`]).
    pub fn write_failures(&self) -> StoreWriteFailures {
        self.faults.counts()
    }

    /// The last error of `pv`'s writes to this store if its last write failed; `None`
    /// once a write succeeded again.
    pub fn last_write_error(&self, pv: &str) -> Option<LastWriteError> {
        self.faults.last(pv)
    }

    /// How many PVs' last write to this store failed.
    pub fn failing_pvs(&self) -> usize {
        self.faults.failing_pvs()
    }

    /// Appends already encoded lines (escaped, newline-terminated) of samples of `pv` of
    /// type `ty` in the UTC year `year`, in time order, to their partition files, copying
    /// them verbatim (see [`PbWriter::append_lines`]). All or nothing, as
    /// [`Tier::append`]. No allocation per line: one per partition file touched.
    pub fn append_lines(
        &self,
        pv: &str,
        ty: PayloadType,
        year: i32,
        lines: &[u8],
    ) -> Result<AppendCounts, StorageError> {
        let lock = self.lock_pv(pv)?;
        self.append_lines_locked(&lock, ty, year, lines)
    }

    /// [`Tier::append_lines`] for the PV of `lock`, which the caller holds.
    pub fn append_lines_locked(
        &self,
        lock: &PvLock,
        ty: PayloadType,
        year: i32,
        lines: &[u8],
    ) -> Result<AppendCounts, StorageError> {
        self.append_lines_touching(lock, ty, year, lines, &mut Vec::new())
    }

    /// [`Tier::append_lines_locked`] that also adds to `touched` each file it wrote to
    /// (on success), so that the caller can make them durable later, together
    /// ([`Tier::sync_touched`]).
    pub(crate) fn append_lines_touching(
        &self,
        lock: &PvLock,
        ty: PayloadType,
        year: i32,
        lines: &[u8],
        touched: &mut Vec<PathBuf>,
    ) -> Result<AppendCounts, StorageError> {
        let pv = self.check_lock(lock)?;
        let mut written = Written::new();
        let result = self
            .append_lines_runs(pv, ty, year, lines, &mut written)
            .inspect_err(|_| self.roll_back(&written));
        self.faults.note(pv, &result);
        let c = result?;
        touched.extend(written.into_iter().map(|(p, _)| p));
        Ok(c)
    }

    /// Makes everything written on this tier's filesystem durable (`syncfs(2)` through the
    /// backend): what the write-ahead journal waits for before it removes a segment.
    ///
    /// # Errors
    ///
    /// [`StorageError::Io`] naming the tier's root.
    pub fn sync_filesystem(&self) -> Result<(), StorageError> {
        self.backend
            .io()
            .sync_filesystem(&self.root)
            .map_err(|e| self.io_err(&self.root, e))
    }

    /// Makes the files `touched` durable, and their folders' entries up to (and the entry
    /// of) this tier's root: `fdatasync` of each file, `fsync` of each folder, each once.
    pub(crate) fn sync_touched(&self, touched: &[PathBuf]) -> Result<(), StorageError> {
        let io = self.backend.io();
        let files: std::collections::BTreeSet<&PathBuf> = touched.iter().collect();
        let mut dirs = std::collections::BTreeSet::new();
        for f in files {
            let mut file = io
                .open(f, OpenMode::Append)
                .map_err(|e| self.io_err(f, e))?;
            file.sync_data().map_err(|e| self.io_err(f, e))?;
            for d in f.ancestors().skip(1) {
                dirs.insert(d.to_path_buf());
                if d == self.root || !d.starts_with(&self.root) {
                    break;
                }
            }
            if let Some(above) = self.root.parent() {
                dirs.insert(above.to_path_buf());
            }
        }
        for d in dirs {
            let d = if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            };
            io.sync_dir(&d).map_err(|e| self.io_err(&d, e))?;
        }
        Ok(())
    }

    fn append_lines_runs(
        &self,
        pv: &str,
        ty: PayloadType,
        year: i32,
        lines: &[u8],
        written: &mut Written,
    ) -> Result<AppendCounts, StorageError> {
        let g = self.granularity();
        let mut total = AppendCounts::default();
        let mut decoder = LineDecoder::new(ty, year);
        // Cut the lines into runs of one partition each (by the time of each line).
        let mut run_start = 0;
        // (seconds of the run's first line, end of its partition)
        let mut run_partition: Option<(i64, i64)> = None;
        let mut pos = 0;
        let mut flush = |from: usize, to: usize, secs: i64, total: &mut AppendCounts| {
            if from < to {
                let c = self.write_partition(pv, ty, secs, year, written, |w| {
                    w.append_lines(year, &lines[from..to])
                })?;
                add(total, &c);
            }
            Ok::<(), StorageError>(())
        };
        while pos < lines.len() {
            let end = memchr::memchr(b'\n', &lines[pos..]).map_or(lines.len(), |i| pos + i + 1);
            let body = &lines[pos..end];
            let body = body.strip_suffix(b"\n").unwrap_or(body);
            if let Ok(t) = decoder.decode_time(body) {
                let same = run_partition.is_some_and(|(first, pend)| {
                    t.secs < pend && t.secs >= g.partition_start(first)
                });
                if !same {
                    if let Some((first, _)) = run_partition {
                        flush(run_start, pos, first, &mut total)?;
                    }
                    run_start = pos;
                    run_partition = Some((t.secs, g.partition_end(t.secs)));
                }
            } else if run_partition.is_none() {
                // Inside a run the file writer counts it; before any run, nobody else does.
                total.invalid += 1;
            }
            pos = end;
        }
        if let Some((first, _)) = run_partition {
            flush(run_start, lines.len(), first, &mut total)?;
        }
        Ok(total)
    }

    /// Sets every file written by a failed append call back to its length before it
    /// (best effort: a file that cannot be opened keeps the lines, which a retry then
    /// refuses as not newer, so nothing is stored twice).
    fn roll_back(&self, written: &Written) {
        for (path, len) in written {
            if let Ok(mut f) = self.backend.io().open(path, OpenMode::Append) {
                let _ = f.set_len(*len);
            }
        }
    }

    /// Opens the file of the partition of `pv` holding `secs` (a file of `year`), runs
    /// `append` on it, and syncs it as the policy says. Records the file in `written`.
    fn write_partition(
        &self,
        pv: &str,
        ty: PayloadType,
        secs: i64,
        year: i32,
        written: &mut Written,
        append: impl FnOnce(
            &mut PbWriter<Box<dyn FileIo>>,
        ) -> Result<AppendCounts, archiver_pb::WriteError>,
    ) -> Result<AppendCounts, StorageError> {
        let path = self.file_for(pv, secs)?;
        let write_err = |source| StorageError::Write {
            tier: self.name().to_string(),
            source,
        };
        let file = self.open_for_append(&path)?;
        let mut w = PbWriter::from_file(file, path.clone(), pv, ty, year).map_err(write_err)?;
        if w.repaired_bytes() > 0 {
            // A crash cut the last write: the partial line (never returned by a reader)
            // is gone now. Logged and counted, as every repair.
            tracing::warn!(
                tier = self.name(),
                file = %path.display(),
                bytes = w.repaired_bytes(),
                "cut a torn last line (a write interrupted by a crash) before appending"
            );
            self.backend.counters().torn_repair(w.repaired_bytes());
        }
        let before = w.len();
        let c = append(&mut w).map_err(write_err)?;
        if w.len() > before {
            written.push((path, before));
            if self.sync == SyncPolicy::EachWrite {
                w.sync().map_err(write_err)?;
            }
        }
        Ok(c)
    }

    /// Opens `path` for appending, creating it (and its folders) if needed; under
    /// [`SyncPolicy::EachWrite`] a created entry's folder is synced at once.
    fn open_for_append(&self, path: &Path) -> Result<Box<dyn FileIo>, StorageError> {
        let io = self.backend.io();
        match io.open(path, OpenMode::Append) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io_err(path, e)),
        }
        let dir = path.parent().unwrap_or(Path::new(""));
        let mut made_folders = false;
        loop {
            match io.open(path, OpenMode::CreateNew) {
                Ok(f) => {
                    if let Err(e) = self.sync_folder(dir) {
                        // Let the next attempt create it again, and sync it then.
                        let _ = io.remove_file(path);
                        return Err(e);
                    }
                    self.index.note_added(path);
                    return Ok(f);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return io
                        .open(path, OpenMode::Append)
                        .map_err(|e| self.io_err(path, e));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && !made_folders => {
                    self.create_folders(dir)?;
                    made_folders = true;
                }
                Err(e) => return Err(self.io_err(path, e)),
            }
        }
    }

    /// Creates `dir` and its missing ancestors, top down.
    fn create_folders(&self, dir: &Path) -> Result<(), StorageError> {
        let io = self.backend.io();
        let mut missing = Vec::new();
        for d in dir.ancestors() {
            if is_root(d) || io.exists(d).map_err(|e| self.io_err(d, e))? {
                break;
            }
            missing.push(d);
        }
        for d in missing.into_iter().rev() {
            match io.create_dir(d) {
                Ok(()) => self.sync_folder(d.parent().unwrap_or(Path::new("")))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.io_err(d, e)),
            }
        }
        Ok(())
    }

    /// Under [`SyncPolicy::EachWrite`], syncs the folder `dir`, in which an entry was
    /// created or removed.
    fn sync_folder(&self, dir: &Path) -> Result<(), StorageError> {
        if self.sync == SyncPolicy::EachWrite {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            self.backend
                .io()
                .sync_dir(dir)
                .map_err(|e| self.io_err(dir, e))?;
        }
        Ok(())
    }

    /// Replaces the whole file of the partition of the locked PV that holds `secs` with
    /// `contents` (a complete PlainPB file of that PV), by the rename protocol: the bytes
    /// go to `<file>.rewrite`, which is synced, renamed over the file, and the folder
    /// synced. Whatever the policy, so that a crash leaves the old file or the new one,
    /// never a mix and never neither. For ETL and repairs; returns the file's path.
    pub fn replace_partition_locked(
        &self,
        lock: &PvLock,
        secs: i64,
        contents: &[u8],
    ) -> Result<PathBuf, StorageError> {
        let pv = self.check_lock(lock)?;
        let path = self.file_for(pv, secs)?;
        let header =
            PbReader::new(io::Cursor::new(contents)).map_err(|source| StorageError::Read {
                tier: self.name().to_string(),
                path: path.clone(),
                source,
            })?;
        if header.header().pv_name != pv {
            return Err(StorageError::OtherPv {
                tier: self.name().to_string(),
                path,
                found: header.header().pv_name.clone(),
                pv: pv.to_string(),
            });
        }
        let io = self.backend.io();
        let mut tmp = path.clone().into_os_string();
        tmp.push(".rewrite");
        let tmp = PathBuf::from(tmp);
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        match io.remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io_err(&tmp, e)),
        }
        let write = || -> Result<(), StorageError> {
            let mut f = match io.open(&tmp, OpenMode::CreateNew) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.create_folders(&dir)?;
                    io.open(&tmp, OpenMode::CreateNew)
                }
                other => other,
            }
            .map_err(|e| self.io_err(&tmp, e))?;
            f.append(contents).map_err(|e| self.io_err(&tmp, e))?;
            f.sync_data().map_err(|e| self.io_err(&tmp, e))?;
            io.rename(&tmp, &path).map_err(|e| self.io_err(&path, e))
        };
        if let Err(e) = write() {
            let _ = io.remove_file(&tmp);
            return Err(e);
        }
        self.index.note_added(&path);
        let sync_dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &dir
        };
        io.sync_dir(sync_dir)
            .map_err(|e| self.io_err(sync_dir, e))?;
        Ok(path)
    }

    /// Removes every partition file of `pv` in this tier (under its write lock); returns
    /// how many. On an error the others are still tried, and the first error is returned
    /// (the files removed stay removed; calling again removes the rest).
    pub fn remove_pv_data(&self, pv: &str) -> Result<usize, StorageError> {
        let lock = self.lock_pv(pv)?;
        self.remove_pv_data_locked(&lock)
    }

    /// [`Tier::remove_pv_data`] for the PV of `lock`, which the caller holds.
    pub fn remove_pv_data_locked(&self, lock: &PvLock) -> Result<usize, StorageError> {
        let pv = self.check_lock(lock)?;
        let io = self.backend.io();
        let mut removed = 0;
        let mut first_err = None;
        let mut parts = self.partitions(pv)?;
        // The reductions cached beside the samples go with them.
        if self.extension.as_ref() == PB_EXTENSION {
            for pp in self.cached_post_processors() {
                parts.extend(self.reduced(pp).partitions(pv)?);
            }
        }
        for p in &parts {
            match io.remove_file(&p.path) {
                Ok(()) => {
                    self.index.note_removed(&p.path);
                    removed += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_err.get_or_insert(self.io_err(&p.path, e));
                }
            }
        }
        if removed > 0
            && let Some(dir) = parts.first().and_then(|p| p.path.parent())
            && let Err(e) = self.sync_folder(dir)
        {
            first_err.get_or_insert(e);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// Deletes the samples of the PV of `lock` (which the caller holds) with
    /// `from ≤ time < to` from this tier: a partition the range covers is removed whole;
    /// one it overlaps is rewritten without those samples by
    /// [`Tier::replace_partition_locked`] (write a new file, sync, rename over the old,
    /// sync the folder: a crash leaves the old file or the new one), the kept lines copied
    /// verbatim; a rewrite that would keep no sample removes the file. The Java appliance
    /// has no such operation.
    pub fn delete_range_locked(
        &self,
        lock: &PvLock,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<DeleteCounts, StorageError> {
        let pv = self.check_lock(lock)?;
        let mut counts = DeleteCounts::default();
        if from >= to {
            return Ok(counts);
        }
        for p in self.partitions(pv)? {
            let (start, end) = (Timestamp::new(p.start, 0), Timestamp::new(p.end, 0));
            if end <= from || start >= to {
                continue;
            }
            let Some(mut r) = self.open_reader(&p.path)? else {
                continue;
            };
            let io = |e| self.io_err(&p.path, e);
            let mut kept = Vec::new();
            archiver_pb::codec::encode_header_line(r.header(), &mut kept);
            let (mut kept_n, mut gone) = (0u64, 0u64);
            while let Some(s) = r.next_sample().map_err(io)? {
                if s.time >= from && s.time < to {
                    gone += 1;
                } else {
                    kept_n += 1;
                    kept.extend_from_slice(r.current_line());
                    kept.push(b'\n');
                }
            }
            drop(r);
            if kept_n == 0 || (from <= start && end <= to) {
                self.remove_file_locked(lock, &p.path)?;
                counts.files_removed += 1;
            } else if gone > 0 {
                self.replace_partition_locked(lock, p.start, &kept)?;
                counts.files_rewritten += 1;
            }
            counts.samples_deleted += gone;
        }
        Ok(counts)
    }

    /// Files and bytes of `pv` in this tier (one listing of its folder and a length per
    /// file), for the storage reports.
    pub fn disk_usage(&self, pv: &str) -> Result<DiskUsage, StorageError> {
        let mut u = DiskUsage::default();
        for p in self.partitions(pv)? {
            match self.backend.io().len(&p.path) {
                Ok(l) => {
                    u.files += 1;
                    u.bytes += l;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io_err(&p.path, e)),
            }
        }
        Ok(u)
    }

    /// Bytes per sample of `pv` in this tier, measured on its newest partition file with
    /// samples (bytes after the header over lines); `None` without one. For the storage
    /// reports (Java's "storage rate" estimates).
    pub fn bytes_per_sample(&self, pv: &str) -> Result<Option<f64>, StorageError> {
        for p in self.partitions(pv)?.iter().rev() {
            let Some(r) = self.open_reader(&p.path)? else {
                continue;
            };
            let header_len = r.header_len();
            drop(r);
            let file = self
                .backend
                .io()
                .open(&p.path, OpenMode::Read)
                .map_err(|e| self.io_err(&p.path, e))?;
            let len = file.len().map_err(|e| self.io_err(&p.path, e))?;
            let (mut pos, mut lines) = (header_len, 0u64);
            let mut buf = vec![0u8; 64 * 1024];
            while pos < len {
                let n = file
                    .read_at(&mut buf, pos)
                    .map_err(|e| self.io_err(&p.path, e))?;
                if n == 0 {
                    break;
                }
                lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                pos += n as u64;
            }
            if lines > 0 {
                return Ok(Some((len - header_len) as f64 / lines as f64));
            }
        }
        Ok(None)
    }

    /// The partitions of `pv` in this tier, oldest first, from the files in its folder
    /// (through the store's partition index: a big folder is listed once while it does not
    /// change, see `index.rs`). Files whose names do not parse at this granularity are
    /// ignored, as in Java.
    pub fn partitions(&self, pv: &str) -> Result<Vec<Partition>, StorageError> {
        let key = self.key(pv)?;
        let (dir, prefix) = match key.rfind('/') {
            Some(i) => (self.root.join(&key[..i]), &key[i + 1..]),
            None => (self.root.clone(), key.as_str()),
        };
        let g = self.granularity();
        let mut out = Vec::new();
        self.index
            .files_with_prefix(self.backend.io(), &dir, prefix, |name| {
                let Some(partition) = name
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_suffix(&*self.extension))
                else {
                    return;
                };
                if let Ok(start) = g.parse_partition_name(partition) {
                    out.push(Partition {
                        start,
                        end: g.partition_end(start),
                        path: dir.join(name),
                    });
                }
            })
            .map_err(|source| self.io_err(&dir, source))?;
        out.sort_by_key(|p| p.start);
        Ok(out)
    }

    /// Folders of this store whose listing the partition index holds, and the file names
    /// in them.
    pub fn index_size(&self) -> (usize, usize) {
        self.index.size()
    }

    /// Opens a partition file for reading; `None` for a file without a complete header
    /// (empty, or cut inside the header by a crash), which holds no sample.
    pub(crate) fn open_reader(&self, path: &Path) -> Result<Option<FileReader>, StorageError> {
        let file = self
            .backend
            .io()
            .open(path, OpenMode::Read)
            .map_err(|e| self.io_err(path, e))?;
        match PbReader::from_file(file) {
            Ok(r) => Ok(Some(r)),
            Err(ReadError::NoHeader) => Ok(None),
            Err(source) => Err(StorageError::Read {
                tier: self.name().to_string(),
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The time of the newest sample of `pv` in this tier, if any (looks at the newest
    /// few partitions, skipping empty ones).
    pub fn last_time(&self, pv: &str) -> Result<Option<Timestamp>, StorageError> {
        let far = Timestamp::new(i64::MAX / 4, 0);
        for p in self.partitions(pv)?.iter().rev().take(3) {
            let Some(mut r) = self.open_reader(&p.path)? else {
                continue;
            };
            let io = |source| self.io_err(&p.path, source);
            if r.seek_to_last_at_or_before(far).map_err(io)?
                && let Some(s) = r.next_sample().map_err(io)?
            {
                return Ok(Some(s.time));
            }
        }
        Ok(None)
    }

    /// What the newest partition of `pv` here says of its samples: its file header and
    /// the element count of its last sample (1 when it has none). For a PV with files but
    /// no `PVTypeInfo` (a retired PV, Java `retiredPVTemplate`). `None` when `pv` has no
    /// partition with a header here.
    pub fn latest_payload(&self, pv: &str) -> Result<Option<(PayloadInfo, u32)>, StorageError> {
        let far = Timestamp::new(i64::MAX / 4, 0);
        for p in self.partitions(pv)?.iter().rev() {
            let Some(mut r) = self.open_reader(&p.path)? else {
                continue;
            };
            let io = |source| self.io_err(&p.path, source);
            let mut count = 1;
            if r.seek_to_last_at_or_before(far).map_err(io)?
                && let Some(s) = r.next_sample().map_err(io)?
            {
                count = u32::try_from(s.value.element_count())
                    .unwrap_or(u32::MAX)
                    .max(1);
            }
            return Ok(Some((r.header().clone(), count)));
        }
        Ok(None)
    }

    /// A query over `[from, to]`: see [`TierQuery`].
    pub fn query(
        &self,
        pv: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<TierQuery, StorageError> {
        TierQuery::new(self.clone(), self.partitions(pv)?, from, to)
    }
}
