//! The engine's side of the write-ahead journal (the files: `archiver_storage::journal`).
//!
//! Every sample a PV's buffer takes ([`crate::pv::PvSlot::push`]) is also appended, as the
//! same encoded line, to one shared [`RecordBuf`] under a short lock. Two threads do the
//! rest, away from the ingest path:
//!
//! * the **journal writer** swaps the shared buffer for an empty one every
//!   [`WRITE_EVERY`] (20 ms) and appends it to the current segment as one frame: once there,
//!   a kill -9 of the process loses nothing (the kernel holds it). It syncs the segment
//!   (`fdatasync`) every [`JournalConfig::fsync_interval`] (1 s by default): what a power
//!   cut can lose. It starts a new segment every write period or 64 MiB.
//! * the **trimmer** removes segments no longer needed: a segment is needed while some
//!   PV's buffer (or the batch being written) holds a sample journaled in it (each PV
//!   remembers the segment of its oldest unwritten sample). Before removing, it syncs the
//!   short-term store's filesystem (`syncfs`), so the samples of a removed segment are
//!   durable in their partition files. If the journal grows beyond
//!   [`JournalConfig::max_bytes`] (a PV whose writes keep failing pins every segment),
//!   the oldest segments go anyway, logged and counted: those samples are still in memory,
//!   only no longer protected against a crash.
//!
//! If the writer falls [`MAX_PENDING`] (64 MiB) behind (a stalled disk), samples are no
//! longer journaled (counted) until it catches up, rather than held twice in memory.
//!
//! A failed journal write (a full disk) never stops ingest: the frame is dropped and
//! counted (the samples stay in the PVs' buffers, as without a journal) and the next frame
//! starts a new segment, so every segment still declares each PV it names.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use archiver_pb::PayloadType;
use archiver_storage::journal::{RecordBuf, SegmentWriter, segments};
use tracing::{info, warn};

use crate::engine::Inner;
use crate::pv::lock;

/// How often the shared buffer goes to the segment: well within the 100 ms a kill -9 may
/// lose.
pub const WRITE_EVERY: Duration = Duration::from_millis(20);

/// A segment grows to at most about this many bytes before the next one starts.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// The most bytes waiting for the journal writer: if it stalls (a hung disk) longer than
/// that holds, samples are no longer journaled (counted) rather than held twice in memory
/// without bound; they stay in the PVs' buffers as without a journal.
const MAX_PENDING: usize = 64 * 1024 * 1024;

/// How often the trimmer looks for segments to remove.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// The journal's settings (`[engine] journal*` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// The journal's folder (`<data_dir>/journal`); must exist.
    pub dir: PathBuf,
    /// How often the current segment is synced: the most a power cut loses. Default 1 s.
    pub fsync_interval: Duration,
    /// Beyond this many bytes of segments, the oldest are removed even if needed (logged).
    pub max_bytes: u64,
    /// The number of the first segment (after those [`archiver_storage::journal::replay`]
    /// found: it returns it). Segments below it (kept by a failed replay) are left alone.
    pub first_seq: u64,
}

impl JournalConfig {
    /// A journal in `dir` with the default settings (1 s sync, 1 GiB).
    pub fn new(dir: impl Into<PathBuf>, first_seq: u64) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            fsync_interval: Duration::from_secs(1),
            max_bytes: 1 << 30,
            first_seq,
        }
    }
}

/// The journal's counters (`/metrics`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JournalStats {
    /// Bytes appended to segments.
    pub bytes_written: u64,
    /// Frames appended.
    pub frames: u64,
    /// Syncs of a segment.
    pub syncs: u64,
    /// Frames that could not be written (their samples were only in memory).
    pub write_errors: u64,
    /// Samples not journaled because the journal writer had fallen 64 MiB behind.
    pub samples_not_journaled: u64,
    /// Segments removed once their samples were stored.
    pub segments_removed: u64,
    /// Segments removed beyond `max_bytes` while still needed.
    pub segments_forced_out: u64,
    /// Bytes of segments on disk now.
    pub bytes_on_disk: u64,
}

#[derive(Debug, Default)]
struct Counters {
    bytes_written: AtomicU64,
    frames: AtomicU64,
    syncs: AtomicU64,
    write_errors: AtomicU64,
    samples_not_journaled: AtomicU64,
    segments_removed: AtomicU64,
    segments_forced_out: AtomicU64,
    bytes_on_disk: AtomicU64,
}

/// What the ingest path appends to.
#[derive(Debug)]
struct Pending {
    buf: RecordBuf,
    /// The segment `buf`'s records go to.
    seg: u64,
    /// Start a new segment at the next swap (after a failure, by age or size).
    rotate: bool,
}

/// The journal shared by the PVs' slots and its two threads.
#[derive(Debug)]
pub(crate) struct Journal {
    config: JournalConfig,
    pending: Mutex<Pending>,
    /// The segment being written: never removed.
    current: AtomicU64,
    counters: Counters,
    stop: AtomicBool,
    /// Wakes the threads early at a stop.
    wake: (Mutex<()>, Condvar),
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Journal {
    /// Starts the journal's threads. `inner` is the engine (held weakly: the threads end
    /// when it goes).
    pub(crate) fn start(config: JournalConfig, inner: Weak<Inner>) -> Arc<Journal> {
        let first = config.first_seq.max(1);
        let j = Arc::new(Journal {
            config,
            pending: Mutex::new(Pending {
                buf: RecordBuf::default(),
                seg: first,
                rotate: false,
            }),
            current: AtomicU64::new(first),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            threads: Mutex::new(Vec::new()),
        });
        let (w, t) = (j.clone(), j.clone());
        let inner2 = inner.clone();
        let spawned = [
            std::thread::Builder::new()
                .name("journal-writer".into())
                .spawn(move || w.write_loop(&inner)),
            std::thread::Builder::new()
                .name("journal-trim".into())
                .spawn(move || t.trim_loop(&inner2)),
        ];
        for s in spawned {
            match s {
                Ok(h) => lock(&j.threads).push(h),
                Err(e) => warn!("journal: cannot start a thread, samples not journaled: {e}"),
            }
        }
        j
    }

    /// Records one sample of PV `id` (`name`), whose slot last declared itself in segment
    /// `declared`; returns the segment the sample goes to. The hot path: a lock and a copy
    /// of the line, nothing allocated once the buffer has grown to a batch.
    pub(crate) fn record(
        &self,
        id: u64,
        name: &str,
        declared: &AtomicU64,
        ty: PayloadType,
        year: i32,
        line: &[u8],
    ) -> Option<u64> {
        // Ids are never reused; beyond 2^32 PVs added in one process (not a real case) the
        // samples are simply not journaled.
        let id = u32::try_from(id).ok()?;
        let mut p = lock(&self.pending);
        if p.buf.len() > MAX_PENDING {
            self.counters.samples_not_journaled.fetch_add(1, Relaxed);
            return None;
        }
        if declared.load(Relaxed) != p.seg {
            p.buf.declare(id, name);
            declared.store(p.seg, Relaxed);
        }
        p.buf.sample(id, ty, year, line);
        Some(p.seg)
    }

    /// The journal's counters.
    pub(crate) fn stats(&self) -> JournalStats {
        let c = &self.counters;
        JournalStats {
            bytes_written: c.bytes_written.load(Relaxed),
            frames: c.frames.load(Relaxed),
            syncs: c.syncs.load(Relaxed),
            write_errors: c.write_errors.load(Relaxed),
            samples_not_journaled: c.samples_not_journaled.load(Relaxed),
            segments_removed: c.segments_removed.load(Relaxed),
            segments_forced_out: c.segments_forced_out.load(Relaxed),
            bytes_on_disk: c.bytes_on_disk.load(Relaxed),
        }
    }

    /// Sleeps `d`, or less if the journal is stopping; true when stopping.
    fn pause(&self, d: Duration) -> bool {
        let (m, cv) = &self.wake;
        let g = lock(m);
        if self.stop.load(Relaxed) {
            return true;
        }
        let _ = cv.wait_timeout(g, d);
        self.stop.load(Relaxed)
    }

    fn write_loop(&self, inner: &Weak<Inner>) {
        let rotate_every = inner
            .upgrade()
            .map_or(Duration::from_secs(10), |i| i.config.write_period)
            .max(Duration::from_secs(1));
        let mut spare = RecordBuf::default();
        let mut scratch = Vec::new();
        let mut writer: Option<SegmentWriter> = None;
        let mut opened = Instant::now();
        let mut last_sync = Instant::now();
        let mut unsynced = false;
        loop {
            let stopping = self.pause(WRITE_EVERY) || inner.strong_count() == 0;
            let due = writer
                .as_ref()
                .is_some_and(|w| opened.elapsed() >= rotate_every || w.len() >= SEGMENT_BYTES);
            let (seg, next) = {
                let mut p = lock(&self.pending);
                std::mem::swap(&mut p.buf, &mut spare);
                let seg = p.seg;
                if (p.rotate || due) && !stopping {
                    p.seg += 1;
                    p.rotate = false;
                }
                (seg, p.seg)
            };
            if !spare.is_empty() {
                if writer.as_ref().is_none_or(|w| w.seq() != seg) {
                    if let Some(old) = writer.take() {
                        self.sync(&old);
                    }
                    match SegmentWriter::create(&self.config.dir, seg) {
                        Ok(w) => {
                            self.current.store(seg, Relaxed);
                            opened = Instant::now();
                            writer = Some(w);
                        }
                        Err(e) => self.failed(&e.to_string()),
                    }
                }
                if let Some(w) = writer.as_mut() {
                    let before = w.len();
                    match w.append_frame(spare.as_bytes(), &mut scratch) {
                        Ok(()) => {
                            self.counters.frames.fetch_add(1, Relaxed);
                            self.counters
                                .bytes_written
                                .fetch_add(w.len() - before, Relaxed);
                            unsynced = true;
                        }
                        Err(e) => {
                            self.failed(&e.to_string());
                            writer = None;
                        }
                    }
                }
                spare.clear();
            }
            if next != seg {
                // The segment is complete (by age, size or a failure): closed and synced
                // now, even if nothing more comes, so the trimmer may remove it; the next
                // one is created with its first frame.
                if let Some(old) = writer.take() {
                    self.sync(&old);
                }
                unsynced = false;
                self.current.store(next, Relaxed);
            }
            if unsynced
                && let Some(w) = &writer
                && (stopping || last_sync.elapsed() >= self.config.fsync_interval)
            {
                self.sync(w);
                last_sync = Instant::now();
                unsynced = false;
            }
            if stopping {
                return;
            }
        }
    }

    fn sync(&self, w: &SegmentWriter) {
        match w.sync() {
            Ok(()) => {
                self.counters.syncs.fetch_add(1, Relaxed);
            }
            Err(e) => self.failed(&e.to_string()),
        }
    }

    /// A frame lost (its samples are only in memory): counted, logged within limits, and
    /// the next frame starts a new segment.
    fn failed(&self, what: &str) {
        let n = self.counters.write_errors.fetch_add(1, Relaxed) + 1;
        lock(&self.pending).rotate = true;
        if crate::noise::repeat_worth_logging(n) {
            warn!(
                failures = n,
                "journal: {what}; the samples are kept in memory but not protected against \
                 a crash until the journal can be written again (failure {n})"
            );
        }
    }

    /// The oldest segment a PV still needs, or `None` when none is.
    fn oldest_needed(inner: &Inner) -> Option<u64> {
        inner
            .slots_where(|_| true)
            .iter()
            .filter_map(|s| {
                let st = lock(&s.state);
                match (st.unwritten_seg, st.in_flight_seg) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            })
            .min()
    }

    fn trim_loop(&self, inner: &Weak<Inner>) {
        loop {
            if self.pause(TRIM_EVERY) {
                return;
            }
            let Some(engine) = inner.upgrade() else {
                return;
            };
            self.trim_unneeded(&engine);
        }
    }

    /// Removes the segments no PV needs any more, the current one excepted (see
    /// [`Journal::trim`]).
    fn trim_unneeded(&self, inner: &Inner) {
        let current = self.current.load(Relaxed);
        let keep_from = Self::oldest_needed(inner).map_or(current, |n| n.min(current));
        self.trim(&inner.sts, keep_from, false);
    }

    /// Removes the segments numbered from `first_seq` up to (not including) `keep_from`,
    /// after syncing the store's filesystem; then, beyond `max_bytes`, the oldest others
    /// but the current one. With `all`, every segment from `first_seq` (a clean stop).
    fn trim(&self, sts: &archiver_storage::Tier, keep_from: u64, all: bool) {
        let segs = match segments(&self.config.dir) {
            Ok(s) => s,
            Err(e) => {
                warn!("journal: {e}");
                return;
            }
        };
        let ours: Vec<_> = segs
            .into_iter()
            .filter(|s| s.0 >= self.config.first_seq)
            .collect();
        let done: Vec<_> = ours.iter().filter(|s| all || s.0 < keep_from).collect();
        let mut removed = 0u64;
        if !done.is_empty() {
            if let Err(e) = sts.sync_filesystem() {
                warn!("journal: segments kept, the store could not be synced: {e}");
                return;
            }
            for s in &done {
                match std::fs::remove_file(&s.1) {
                    Ok(()) => {
                        removed += 1;
                        self.counters.segments_removed.fetch_add(1, Relaxed);
                    }
                    Err(e) => warn!("journal: cannot remove {}: {e}", s.1.display()),
                }
            }
        }
        let mut left: Vec<_> = ours.iter().filter(|s| !(all || s.0 < keep_from)).collect();
        let mut bytes: u64 = left.iter().map(|s| s.2).sum();
        let current = self.current.load(Relaxed);
        while bytes > self.config.max_bytes && left.first().is_some_and(|s| s.0 != current) {
            let s = left.remove(0);
            if std::fs::remove_file(&s.1).is_ok() {
                removed += 1;
                bytes -= s.2;
                let n = self.counters.segments_forced_out.fetch_add(1, Relaxed) + 1;
                warn!(
                    segment = %s.1.display(),
                    "journal: over its {} bytes (some PV's samples cannot be written): the \
                     oldest segment is removed while still needed; its samples are in \
                     memory but no longer protected against a crash ({n} so far)",
                    self.config.max_bytes
                );
            }
        }
        self.counters.bytes_on_disk.store(bytes, Relaxed);
        if removed > 0 {
            let _ = std::fs::File::open(&self.config.dir).and_then(|d| d.sync_all());
        }
    }

    /// Makes every segment written so far unneeded and removes it: starts a new segment
    /// (waiting up to 2 s for the writer thread to switch), then trims as the trimmer
    /// does. Called after every buffer was written, before data is deleted, so that no
    /// segment still holds samples of the deleted data for a later replay to bring back.
    /// Blocking.
    pub(crate) fn checkpoint(&self, inner: &Inner) {
        let target = {
            let mut p = lock(&self.pending);
            p.rotate = true;
            p.seg + 1
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.current.load(Relaxed) < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.trim_unneeded(inner);
    }

    /// Stops the threads after a last write and sync; with `all_written` (every buffer
    /// was written at shutdown) removes the segments, once the store is synced. Blocking.
    pub(crate) fn close(&self, sts: &archiver_storage::Tier, all_written: bool) {
        self.stop.store(true, Relaxed);
        self.wake.1.notify_all();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
        if all_written {
            self.trim(sts, u64::MAX, true);
        } else {
            info!(
                "journal: kept in {} for the samples not written; replayed at the next start",
                self.config.dir.display()
            );
        }
    }
}
