//! ETL: moving a PV's closed partitions from one store to the next (STS → MTS → LTS →
//! blackhole), with the Java appliance's rules (spec java-appliance.md §6.1;
//! `etl/common/PBThreeTierETLPVLookup`, `ETLJob`, `PlainStoragePlugin.getETLStreams`,
//! `markForDeletion`).
//!
//! * **Stages.** Stage `i` moves store `i` into store `i + 1` of [`DataStores`]; the last
//!   tier moves into the blackhole store if one is configured (its data is then deleted:
//!   retention). A PV moves along its own `dataStores` ([`Etl::run_pv_chain`], Java's
//!   per-PV `ETLStages`): into the store that follows the source in its list, never into
//!   a store it does not list; a configured blackhole applies to every PV whose list ends
//!   with the last configured store. A stage runs every [`Etl::stage_period`] seconds (the source's
//!   granularity, at most 8 h, raised to the period of any earlier stage), at
//!   `k · period + 5 min` ([`Etl::next_run`]): STS hourly at hh:05, MTS every 8 h.
//! * **What moves** ([`Etl::eligible`]): never the current partition (a file moves once its
//!   partition ended before the start of the partition holding "now"). With `hold` and
//!   `gather` (the source URL's ETL watermarks, in partitions): nothing moves until the
//!   oldest file's first sample is at or before `holdTime`, the last second of the
//!   partition before `now − hold·approx`; then the files whose first sample is at or
//!   before `gatherTime`, the last second of the partition before
//!   `now − (hold − gather + 1)·approx`, move. `hold = gather = 0` moves every closed
//!   partition (Java's `skipHoldAndGather`).
//! * **How a file moves** ([`Etl::run_pv`]), under the PV's write lock of the shared
//!   [`Backend`](crate::Backend) (the engine's writer skips a PV whose lock is held and
//!   writes it the next period, so ETL never races it and never stalls the others):
//!   1. its length must still be the one listed;
//!   2. free space on the destination must be at least its size + 1 MiB, or the
//!      [`OutOfSpacePolicy`] applies;
//!   3. its lines are copied **verbatim** (no decode and re-encode: the destination's
//!      [`PbWriter::append_lines`](archiver_pb::PbWriter::append_lines) reads only each
//!      line's time) to the destination, which **skips every sample not newer than its
//!      last** (so a re-run after a crash appends nothing twice), and the destination files
//!      are synced;
//!
//!      A destination with `reducedata=<post-processor>` (Java's `PlainStoragePlugin`
//!      `reducedata`, e.g. `firstSample_3600`) gets the file's samples reduced by that
//!      post-processor over the file's partition instead of its lines (decoded, reduced
//!      by the [`Reducer`], appended with the same skip of what is not newer); a failed
//!      reduction leaves the file in the source. Without a [`Reducer`] the lines are
//!      copied as they are.
//!   4. for a destination that caches post-processors (its URL's `pp=`, Java's
//!      `PlainStoragePlugin` reductions) and an ETL given a [`Reducer`], each reduction of
//!      the file's samples is appended to `<key><partition>.<post-processor>` in the
//!      destination (skipping, as above, what it already has: a re-run writes nothing
//!      twice; a failed reduction is logged and counted, the move goes on);
//!   5. the source is deleted only if its length is still the one listed.
//!
//!   A crash between 3 and 4 leaves the samples in both stores: the next run moves the
//!   file again and the destination refuses them all (retrieval's merge hides the
//!   duplicate meanwhile). A crash inside 3 leaves a torn line in the destination, cut
//!   when it is next opened. Files of a PV move oldest first, and the first file that
//!   cannot move (changed, failed, out of space) ends the PV's stage for this run, so a
//!   destination never gets a newer file before an older one (which would then be refused
//!   as not newer and lost).
//! * **Empty files** (no header, or no sample) before the current partition are deleted.
//! * **Batches** ([`Etl::run_stage`]): PVs are moved in batches of at most [`BATCH_PVS`]
//!   PVs and [`BATCH_BYTES`] copied, the copies of a batch synced together before its
//!   sources are deleted; so at most one batch (plus a file) is on disk twice. A stop
//!   (shutdown) starts no new copy and finishes the batch's sync and deletions. Each PV
//!   is moved under its move lock ([`DataStores::lock_pv_moves`]): a consolidation or a
//!   deletion of its data waits for the batch, and a batch skips a PV they hold (moved
//!   alone after the batches, once they are done with it).

use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use archiver_pb::{AppendCounts, Granularity, PayloadType, Sample, Timestamp};

use crate::backend::OpenMode;
use crate::error::StorageError;
use crate::locks::PvLock;
use crate::stores::DataStores;
use crate::tier::{Partition, Tier};
use crate::url::{StoreUrl, blackhole_name};

/// Java's maximum period of an ETL stage (`PBThreeTierETLPVLookup`: 8 hours).
pub const MAX_STAGE_PERIOD_SECS: i64 = 8 * 3600;
/// A stage runs this long after its period's boundary (Java: 5 minutes).
pub const STAGE_OFFSET_SECS: i64 = 5 * 60;
/// Free space a move must leave on the destination beyond the file's size (Java: 1 MiB).
pub const SPACE_MARGIN_BYTES: u64 = 1 << 20;
/// The most PVs per batch of a stage run (their destination files and folders are synced
/// together, then their sources deleted).
pub const BATCH_PVS: usize = 512;
/// A batch of a stage run ends once it has copied this many bytes of source files (or at
/// [`BATCH_PVS`] PVs, whichever comes first; a PV whose files pass the bound is cut after
/// the file that passes it, and the next batch goes on with it). A copy's source is
/// deleted at the end of its batch, so this (plus one file) is the most disk ETL holds
/// twice at any time (found by a fresh-user test: a 300-PV catch-up kept 1.4 GB twice for
/// minutes). Set per ETL with [`Etl::with_batch_bytes`].
pub const BATCH_BYTES: u64 = 64 << 20;
/// The most bytes copied per append call.
const COPY_CHUNK: usize = 1 << 20;

/// What a stage does when the destination lacks the space for a file (Java's
/// `OutOfSpaceHandling`, in `archappl.properties`).
///
/// The default here is [`OutOfSpacePolicy::Skip`], not Java's
/// `DELETE_SRC_STREAMS_IF_FIRST_DEST_WHEN_OUT_OF_SPACE`: nothing archived is deleted
/// because a disk is full. While the MTS is full the STS keeps its files (and, once it is
/// full too, new samples wait in memory, then drop, counted); choose Java's policy for an
/// STS on a small RAM disk where fresh data matters more than the oldest hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutOfSpacePolicy {
    /// `DELETE_SRC_STREAMS_IF_FIRST_DEST_WHEN_OUT_OF_SPACE` (Java's default): the first
    /// stage (STS → MTS) deletes the file it cannot move, so the short-term store (often
    /// a RAM disk) never fills; later stages wait for space.
    DeleteSrcIfFirstDest,
    /// `DELETE_SRC_STREAMS_WHEN_OUT_OF_SPACE`: every stage deletes what it cannot move.
    DeleteSrc,
    /// `SKIP_ETL_WHEN_OUT_OF_SPACE` (the default here): the file stays where it is until
    /// there is space.
    #[default]
    Skip,
}

impl OutOfSpacePolicy {
    /// The Java name.
    pub const fn java_name(self) -> &'static str {
        match self {
            OutOfSpacePolicy::DeleteSrcIfFirstDest => {
                "DELETE_SRC_STREAMS_IF_FIRST_DEST_WHEN_OUT_OF_SPACE"
            }
            OutOfSpacePolicy::DeleteSrc => "DELETE_SRC_STREAMS_WHEN_OUT_OF_SPACE",
            OutOfSpacePolicy::Skip => "SKIP_ETL_WHEN_OUT_OF_SPACE",
        }
    }
}

/// An out-of-space policy name that is none of Java's three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an out-of-space policy (DELETE_SRC_STREAMS_IF_FIRST_DEST_WHEN_OUT_OF_SPACE, DELETE_SRC_STREAMS_WHEN_OUT_OF_SPACE, SKIP_ETL_WHEN_OUT_OF_SPACE)"
)]
pub struct BadOutOfSpacePolicy(pub String);

impl FromStr for OutOfSpacePolicy {
    type Err = BadOutOfSpacePolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            OutOfSpacePolicy::DeleteSrcIfFirstDest,
            OutOfSpacePolicy::DeleteSrc,
            OutOfSpacePolicy::Skip,
        ]
        .into_iter()
        .find(|p| p.java_name().eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| BadOutOfSpacePolicy(s.to_string()))
    }
}

/// Which files a run moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtlMode {
    /// The scheduled rules: closed partitions, after hold/gather.
    Scheduled,
    /// Every file, the current partition included, ignoring hold/gather: consolidation
    /// (`consolidateDataForPV`, consolidate on shutdown; Java's `ETLStages.runAll`).
    All,
}

/// What one or more runs did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EtlCounts {
    /// Source files moved (and deleted).
    pub files_moved: u64,
    /// Bytes of those files.
    pub bytes_moved: u64,
    /// Samples appended to destinations.
    pub samples_moved: u64,
    /// Samples a destination already had (not newer than its last): a re-run's.
    pub samples_skipped: u64,
    /// Files deleted into the blackhole store.
    pub files_discarded: u64,
    /// Files deleted because the destination was out of space (data dropped by the
    /// out-of-space policy, logged).
    pub files_dropped_out_of_space: u64,
    /// Files left because the destination was out of space.
    pub files_skipped_out_of_space: u64,
    /// Files left because they changed after they were listed.
    pub files_changed: u64,
    /// Empty source files deleted.
    pub empty_files_removed: u64,
    /// PVs whose run failed (the error is logged; the file stays to be moved again).
    pub errors: u64,
    /// Cached reductions written (one per moved file and `pp=` of its destination).
    pub reductions_written: u64,
    /// Cached reductions that failed (logged; retrieval computes those at request time).
    pub reductions_failed: u64,
}

impl EtlCounts {
    /// Adds `o` to this.
    pub fn add(&mut self, o: &EtlCounts) {
        self.files_moved += o.files_moved;
        self.bytes_moved += o.bytes_moved;
        self.samples_moved += o.samples_moved;
        self.samples_skipped += o.samples_skipped;
        self.files_discarded += o.files_discarded;
        self.files_dropped_out_of_space += o.files_dropped_out_of_space;
        self.files_skipped_out_of_space += o.files_skipped_out_of_space;
        self.files_changed += o.files_changed;
        self.empty_files_removed += o.empty_files_removed;
        self.errors += o.errors;
        self.reductions_written += o.reductions_written;
        self.reductions_failed += o.reductions_failed;
    }
}

/// Computes a post-processor's reduction of one partition's samples for a destination
/// store that caches it (`pp=`). Implemented where the post-processors live (the
/// retrieval crate; the appliance wires it in with [`Etl::with_reducer`]): storage only
/// stores the result.
pub trait Reducer: Send + Sync + std::fmt::Debug {
    /// The samples `post_processor` (a `pp=` value such as `mean_3600`) makes of `input`
    /// (one partition's samples of type `payload_type`, oldest first) over `[from, to]`,
    /// and their type. An error (a message) skips that reduction.
    fn reduce(
        &self,
        post_processor: &str,
        payload_type: PayloadType,
        input: &[Sample],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<(PayloadType, Vec<Sample>), String>;
}

/// The appliance's named flags (`getNamedFlag` / `setNamedFlag`), as ETL reads them
/// (Java's `ConfigService.getNamedFlag`: a flag never set is false). They gate ETL
/// (reference section 6.1, Java's `ETLExecutor` and `PlainStoragePlugin`):
/// `SKIP_<dest>_FOR_ETL` true holds back every move into the store `dest`; a store's
/// `etlOutofStoreIf=<flag>` false keeps its data where it is (it accumulates); a store's
/// `etlIntoStoreIf=<flag>` false makes moves into it discard the data, as a blackhole.
/// Implemented by the appliance over its registry ([`Etl::with_named_flags`]).
pub trait NamedFlags: Send + Sync + std::fmt::Debug {
    /// The value of the flag `name`, false for one never set; `None` when it cannot be
    /// read now (say why in the log): ETL then holds back every move the flag gates, so
    /// that an unreadable flag never discards data.
    fn named_flag(&self, name: &str) -> Option<bool>;
}

/// How the named flags gate one stage's moves into one destination store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Move as usual.
    Move,
    /// `SKIP_<dest>_FOR_ETL`: nothing moves.
    Hold,
    /// `etlIntoStoreIf` false: what moves is discarded.
    Discard,
}

/// Running totals of an [`Etl`] since it was built, for status and metrics.
#[derive(Debug, Default)]
pub struct EtlTotals {
    /// Runs of a stage over a set of PVs.
    pub runs: AtomicU64,
    /// See [`EtlCounts::files_moved`].
    pub files_moved: AtomicU64,
    /// See [`EtlCounts::bytes_moved`].
    pub bytes_moved: AtomicU64,
    /// See [`EtlCounts::samples_moved`].
    pub samples_moved: AtomicU64,
    /// See [`EtlCounts::files_dropped_out_of_space`].
    pub files_dropped_out_of_space: AtomicU64,
    /// See [`EtlCounts::errors`].
    pub errors: AtomicU64,
    /// Microseconds spent in runs.
    pub busy_micros: AtomicU64,
}

impl EtlTotals {
    fn add(&self, c: &EtlCounts, micros: u64) {
        self.runs.fetch_add(1, Relaxed);
        self.files_moved.fetch_add(c.files_moved, Relaxed);
        self.bytes_moved.fetch_add(c.bytes_moved, Relaxed);
        self.samples_moved.fetch_add(c.samples_moved, Relaxed);
        self.files_dropped_out_of_space
            .fetch_add(c.files_dropped_out_of_space, Relaxed);
        self.errors.fetch_add(c.errors, Relaxed);
        self.busy_micros.fetch_add(micros, Relaxed);
    }
}

/// A source file as listed: its partition and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The partition.
    pub partition: Partition,
    /// Its length when listed.
    pub len: u64,
    /// The time of its first sample; `None` for a file with no sample.
    pub first: Option<Timestamp>,
}

/// One store of a PV's chain (its `PVTypeInfo.dataStores`, in order), for ETL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStore {
    /// A store, by name (a `pb://` URL's `name`).
    Named(String),
    /// A `blackhole://` store: what moves into it is deleted.
    Blackhole,
}

impl ChainStore {
    /// The chain store of a data store URL; `None` for one that does not parse.
    pub fn from_url(url: &str) -> Option<ChainStore> {
        if blackhole_name(url).is_some() {
            return Some(ChainStore::Blackhole);
        }
        StoreUrl::parse(url).ok().map(|u| ChainStore::Named(u.name))
    }

    /// The chain of a PV's `dataStores` URLs (those that do not parse are left out).
    pub fn chain<S: AsRef<str>>(urls: &[S]) -> Vec<ChainStore> {
        urls.iter()
            .filter_map(|u| ChainStore::from_url(u.as_ref()))
            .collect()
    }
}

/// A PV for an ETL run: its name and its chain of stores (`None`: the configured stores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtlPv {
    /// The PV.
    pub pv: String,
    /// Its stores in order, from its `dataStores`; `None` for a PV without a type info
    /// yet (it gets the configured stores).
    pub chain: Option<Vec<ChainStore>>,
}

/// The destination of a stage.
#[derive(Debug, Clone, Copy)]
enum Dest<'a> {
    Tier(&'a Tier),
    Blackhole,
}

/// The number of ETL stages of `stores`: one per pair of consecutive stores, the
/// blackhole included.
fn stage_count(stores: &DataStores) -> usize {
    let n = stores.tiers().len() + usize::from(stores.blackhole().is_some());
    n.saturating_sub(1)
}

/// The ETL of the configured data stores (see the module documentation). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Etl {
    stores: DataStores,
    out_of_space: OutOfSpacePolicy,
    totals: Arc<EtlTotals>,
    /// The totals of each stage (index: the stage).
    stage_totals: Arc<[EtlTotals]>,
    reducer: Option<Arc<dyn Reducer>>,
    flags: Option<Arc<dyn NamedFlags>>,
    batch_bytes: u64,
}

impl Etl {
    /// ETL over `stores` with the out-of-space policy `out_of_space`.
    pub fn new(stores: DataStores, out_of_space: OutOfSpacePolicy) -> Self {
        let stages = stage_count(&stores);
        Etl {
            stores,
            out_of_space,
            totals: Arc::default(),
            stage_totals: (0..stages).map(|_| EtlTotals::default()).collect(),
            reducer: None,
            flags: None,
            batch_bytes: BATCH_BYTES,
        }
    }

    /// This ETL with batches ending at `bytes` bytes copied instead of [`BATCH_BYTES`]
    /// (at least one file is copied per batch, whatever its size).
    pub fn with_batch_bytes(mut self, bytes: u64) -> Self {
        self.batch_bytes = bytes;
        self
    }

    /// This ETL gated by the named flags `flags` (see [`NamedFlags`]); without them every
    /// flag reads false, as Java's for a flag never set.
    pub fn with_named_flags(mut self, flags: Arc<dyn NamedFlags>) -> Self {
        self.flags = Some(flags);
        self
    }

    /// A named flag: false when there are no flags, `None` when unreadable.
    fn flag(&self, name: &str) -> Option<bool> {
        match &self.flags {
            Some(f) => f.named_flag(name),
            None => Some(false),
        }
    }

    /// How the named flags gate moves into the tier `dest` now.
    fn gate(&self, dest: &Tier) -> Gate {
        match self.flag(&format!("SKIP_{}_FOR_ETL", dest.name())) {
            Some(false) => {}
            Some(true) | None => return Gate::Hold,
        }
        match &dest.store_url().etl_into_store_if {
            Some(f) => match self.flag(f) {
                Some(true) => Gate::Move,
                Some(false) => Gate::Discard,
                None => Gate::Hold,
            },
            None => Gate::Move,
        }
    }

    /// This ETL computing the reductions destination stores cache (`pp=`) with `reducer`;
    /// without one, no reduction is written (retrieval then computes them).
    pub fn with_reducer(mut self, reducer: Arc<dyn Reducer>) -> Self {
        self.reducer = Some(reducer);
        self
    }

    /// The stores.
    pub fn stores(&self) -> &DataStores {
        &self.stores
    }

    /// The totals since this was built.
    pub fn totals(&self) -> &EtlTotals {
        &self.totals
    }

    /// The totals of `stage` since this was built (`None`: no such stage).
    pub fn stage_totals(&self, stage: usize) -> Option<&EtlTotals> {
        self.stage_totals.get(stage)
    }

    /// The number of stages: one per pair of consecutive stores, the blackhole included.
    pub fn stages(&self) -> usize {
        stage_count(&self.stores)
    }

    /// The names of a stage's source and destination.
    pub fn stage_names(&self, stage: usize) -> Option<(&str, &str)> {
        let src = self.stores.tiers().get(stage)?;
        let dest = match self.stores.tiers().get(stage + 1) {
            Some(t) => t.name(),
            None => self.stores.blackhole()?,
        };
        Some((src.name(), dest))
    }

    fn dest(&self, stage: usize) -> Option<Dest<'_>> {
        match self.stores.tiers().get(stage + 1) {
            Some(t) => Some(Dest::Tier(t)),
            None if stage + 1 == self.stores.tiers().len() && self.stores.blackhole().is_some() => {
                Some(Dest::Blackhole)
            }
            None => None,
        }
    }

    /// Seconds between two runs of `stage`: its source's granularity (Java's approximate
    /// seconds), at most [`MAX_STAGE_PERIOD_SECS`], raised to the period of every
    /// earlier stage. `None` for a stage that does not exist.
    pub fn stage_period(&self, stage: usize) -> Option<i64> {
        if stage >= self.stages() {
            return None;
        }
        self.stores.tiers()[..=stage]
            .iter()
            .map(|t| t.granularity().approx_seconds().min(MAX_STAGE_PERIOD_SECS))
            .max()
    }

    /// The first run time of `stage` strictly after `now_secs` (epoch seconds):
    /// `k · period + 5 min`.
    pub fn next_run(&self, stage: usize, now_secs: i64) -> Option<i64> {
        let p = self.stage_period(stage)?;
        let k = (now_secs - STAGE_OFFSET_SECS).div_euclid(p) + 1;
        Some(k * p + STAGE_OFFSET_SECS)
    }

    /// The files of `pv` that `stage` would move at `now`, oldest first (see the module
    /// documentation), with empty files (first sample `None`) among them to be deleted.
    pub fn eligible(
        &self,
        stage: usize,
        pv: &str,
        now: Timestamp,
        mode: EtlMode,
    ) -> Result<Vec<Listed>, StorageError> {
        self.eligible_after(stage, pv, now, mode, false)
    }

    /// [`Etl::eligible`]; with `hold_passed`, the hold was found passed by an earlier
    /// batch of this run, which moved the PV's oldest files (its moves go on to the
    /// gather time as if in one batch).
    fn eligible_after(
        &self,
        stage: usize,
        pv: &str,
        now: Timestamp,
        mode: EtlMode,
        hold_passed: bool,
    ) -> Result<Vec<Listed>, StorageError> {
        let Some(src) = self.stores.tiers().get(stage) else {
            return Ok(Vec::new());
        };
        let g = src.granularity();
        let current_start = g.partition_start(now.secs);
        let url = src.store_url();
        let (hold, gather) = (i64::from(url.hold), i64::from(url.gather));
        let approx = g.approx_seconds();
        let hold_time = prev_partition_last_second(g, now.secs - approx * hold);
        let gather_time = prev_partition_last_second(g, now.secs - approx * (hold - gather + 1));
        let skip_hold_gather = mode == EtlMode::All || (hold == 0 && gather == 0);
        let io = src.backend().io();
        let mut out = Vec::new();
        let mut hold_ok = hold_passed;
        for p in src.partitions(pv)? {
            if mode == EtlMode::Scheduled && p.end > current_start {
                break; // the current partition (and any later) never moves
            }
            let len = match io.len(&p.path) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(src.io_error(&p.path, e)),
            };
            let first = src.first_time_in(&p.path)?;
            let listed = Listed {
                partition: p,
                len,
                first,
            };
            let Some(first) = first else {
                out.push(listed); // empty: deleted by the run
                continue;
            };
            if skip_hold_gather {
                out.push(listed);
                continue;
            }
            if !hold_ok {
                if first.secs > hold_time {
                    break;
                }
                hold_ok = true;
            }
            if first.secs <= gather_time {
                out.push(listed);
            }
        }
        Ok(out)
    }

    /// Runs `stage` for `pv` at `now` over the configured chain of stores: see
    /// [`Etl::run_pv_chain`].
    pub fn run_pv(
        &self,
        stage: usize,
        pv: &str,
        now: Timestamp,
        mode: EtlMode,
    ) -> Result<EtlCounts, StorageError> {
        self.run_pv_chain(stage, pv, None, now, mode)
    }

    /// The destination of the source store of `stage` for a PV whose stores are `chain`
    /// (the configured chain when `None`), and whether the source is the PV's first store;
    /// `None` when nothing moves (the source is not one of the PV's stores, or its last).
    fn dest_in_chain(
        &self,
        stage: usize,
        chain: Option<&[ChainStore]>,
    ) -> Result<Option<(Dest<'_>, bool)>, StorageError> {
        let Some(chain) = chain else {
            return Ok(self.dest(stage).map(|d| (d, stage == 0)));
        };
        let Some(src) = self.stores.tiers().get(stage) else {
            return Ok(None);
        };
        let Some(pos) = chain
            .iter()
            .position(|c| matches!(c, ChainStore::Named(n) if n == src.name()))
        else {
            return Ok(None);
        };
        Ok(match chain.get(pos + 1) {
            // The PV's last store: a configured blackhole after the last configured store
            // still applies (retention is the appliance's, whatever the PV's list says).
            None if stage + 1 == self.stores.tiers().len() && self.stores.blackhole().is_some() => {
                Some((Dest::Blackhole, pos == 0))
            }
            None => None,
            Some(ChainStore::Blackhole) => Some((Dest::Blackhole, pos == 0)),
            Some(ChainStore::Named(n)) => match self.stores.get(n) {
                Some(t) => Some((Dest::Tier(t), pos == 0)),
                None if self.stores.blackhole() == Some(n.as_str()) => {
                    Some((Dest::Blackhole, pos == 0))
                }
                None => {
                    return Err(StorageError::UnknownStore {
                        name: n.clone(),
                        url: format!("the dataStores after {}", src.name()),
                    });
                }
            },
        })
    }

    /// Runs `stage` (its source is the configured store `stage`) for `pv` at `now`,
    /// moving each eligible file (see the module documentation) into the store that
    /// follows the source in `chain`, the PV's stores in order (its `PVTypeInfo.dataStores`,
    /// Java's per-PV `ETLStages`; `None`: the configured stores). A PV whose stores do not
    /// include the source, or end with it, has nothing moved: data never goes where its
    /// `dataStores` would not find it. An error ends the PV's run (files already moved stay
    /// moved; the failed one stays in the source, whole, to be moved by the next run).
    /// Waits while a batch, a consolidation or a deletion holds the PV's move lock
    /// ([`DataStores::lock_pv_moves`]), and holds it meanwhile.
    pub fn run_pv_chain(
        &self,
        stage: usize,
        pv: &str,
        chain: Option<&[ChainStore]>,
        now: Timestamp,
        mode: EtlMode,
    ) -> Result<EtlCounts, StorageError> {
        let moves = self.stores.lock_pv_moves(pv)?;
        self.run_pv_held(stage, pv, chain, now, mode, &moves)
    }

    /// [`Etl::run_pv_chain`] with the PV's move lock held by the caller (`_moves`).
    fn run_pv_held(
        &self,
        stage: usize,
        pv: &str,
        chain: Option<&[ChainStore]>,
        now: Timestamp,
        mode: EtlMode,
        _moves: &PvLock,
    ) -> Result<EtlCounts, StorageError> {
        let one = [EtlPv {
            pv: pv.to_string(),
            chain: chain.map(<[ChainStore]>::to_vec),
        }];
        let mut total = EtlCounts::default();
        let mut resumed = false;
        loop {
            // A batch cut by its byte bound has consumed nothing: the PV goes on.
            let (end, counts, mut errors) = self.run_batch(
                stage,
                &one,
                now,
                mode,
                (true, resumed),
                &|| false,
                &mut Vec::new(),
            );
            total.add(&counts);
            if let Some((_, e)) = errors.pop() {
                return Err(e);
            }
            if end.done == one.len() {
                return Ok(total);
            }
            resumed = end.cut;
        }
    }

    /// Runs `stage` for each of `pvs` at `now`, in batches (of at most [`BATCH_PVS`] PVs
    /// and about [`BATCH_BYTES`] copied); a PV whose run fails is logged, counted in
    /// [`EtlCounts::errors`], and the others go on. `stop` is asked before each PV (and
    /// between a PV's files); once it says true no new copy starts: what the batch copied
    /// is synced and its sources deleted, and the run ends (a shutdown during ETL waits
    /// for at most one file's copy and one batch's sync).
    pub fn run_stage(
        &self,
        stage: usize,
        pvs: &[EtlPv],
        now: Timestamp,
        mode: EtlMode,
        stop: &dyn Fn() -> bool,
    ) -> EtlCounts {
        let started = std::time::Instant::now();
        let mut total = EtlCounts::default();
        let (mut next, mut resumed) = (0, false);
        let warn = |pv: &str, e: StorageError| {
            tracing::warn!(pv = %pv, stage, "ETL stopped for this PV, to be retried: {e}");
        };
        let mut busy = Vec::new(); // PVs skipped while consolidated or deleted
        while next < pvs.len() && !stop() {
            let batch = &pvs[next..pvs.len().min(next + BATCH_PVS)];
            let mut skipped = Vec::new();
            let (end, c, errors) = self.run_batch(
                stage,
                batch,
                now,
                mode,
                (false, resumed),
                stop,
                &mut skipped,
            );
            busy.extend(skipped.into_iter().map(|i| &batch[i]));
            (next, resumed) = (next + end.done, end.cut);
            total.add(&c);
            for (pv, e) in errors {
                warn(&pv, e);
            }
        }
        // The PVs skipped as busy, each alone, waiting for its consolidation or deletion
        // (holding no other PV's lock meanwhile).
        for pv in busy {
            if stop() {
                break;
            }
            match self.run_pv_chain(stage, &pv.pv, pv.chain.as_deref(), now, mode) {
                Ok(c) => total.add(&c),
                Err(e) => {
                    total.errors += 1;
                    warn(&pv.pv, e);
                }
            }
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.totals.add(&total, micros);
        if let Some(t) = self.stage_totals.get(stage) {
            t.add(&total, micros);
        }
        total
    }

    /// One batch of PVs: (1) each PV's eligible files are copied to their destinations
    /// (each under the PV's lock, in order, the PV stopping at its first file that cannot
    /// move); (2) every destination file written and its folders are synced, once each;
    /// (3) each copied source is deleted if unchanged (under the PV's lock; a PV stops at
    /// its first changed file). A failure in (2) deletes nothing of the PVs whose files it
    /// concerns: each PV's files are then synced alone, and only the PVs whose sync fails
    /// keep their sources (the next run copies the files again and the destinations skip
    /// what they have). Returns the counts and each failed PV's error (counted in
    /// [`EtlCounts::errors`]).
    ///
    /// A PV is moved under its move lock ([`DataStores::lock_pv_moves`]), held from its
    /// first copy to the deletion of its sources, so a consolidation or a deletion of its
    /// data never changes its files in between; a PV whose move lock another thread holds
    /// is skipped and its index added to `busy` ([`Etl::run_stage`] moves it alone once
    /// the batches are done). With `held`, the caller holds the move lock of
    /// every PV of `pvs`; with `resumed`, the first PV was cut by the previous batch (its
    /// hold is passed).
    ///
    /// The batch ends early once it has copied [`Etl::with_batch_bytes`] bytes (cutting
    /// the PV it is moving after the file that passed the bound), or when `stop` says true
    /// (asked before each PV and each file): no new copy starts, steps (2) and (3) run
    /// for what was copied. Also returns where it ended (a cut PV is not done, unless it
    /// failed: the next batch starts with it).
    #[allow(clippy::too_many_arguments)]
    fn run_batch(
        &self,
        stage: usize,
        pvs: &[EtlPv],
        now: Timestamp,
        mode: EtlMode,
        (held, resumed): (bool, bool),
        stop: &dyn Fn() -> bool,
        busy: &mut Vec<usize>,
    ) -> (BatchEnd, EtlCounts, Vec<(String, StorageError)>) {
        let mut counts = EtlCounts::default();
        let mut errors = Vec::new();
        let all = BatchEnd {
            done: pvs.len(),
            cut: false,
        };
        let Some(src) = self.stores.tiers().get(stage) else {
            return (all, counts, errors);
        };
        if let Some(f) = &src.store_url().etl_out_of_store_if
            && self.flag(f) != Some(true)
        {
            return (all, counts, errors); // the store accumulates while its flag is false
        }
        let mut copied_bytes = 0u64;
        let mut done = pvs.len();
        // The PV cut by the bound or `stop`, if any.
        let mut cut = None;
        // The named flags, read once per batch and destination.
        let mut gates: Vec<(&str, Gate)> = Vec::new();
        // (1) Copy.
        let mut pending: Vec<(usize, Listed)> = Vec::new(); // (index in pvs, source file)
        // (index in pvs, destination, its files written), one entry per PV that wrote.
        let mut touched: Vec<(usize, &Tier, Vec<PathBuf>)> = Vec::new();
        // The move locks of the PVs with copies pending, until their sources are deleted.
        let mut move_locks: Vec<PvLock> = Vec::new();
        for (i, pv) in pvs.iter().enumerate() {
            if copied_bytes >= self.batch_bytes || stop() {
                done = i;
                break;
            }
            let r = (|| -> Result<(), StorageError> {
                let Some((mut dest, first)) = self.dest_in_chain(stage, pv.chain.as_deref())?
                else {
                    return Ok(());
                };
                if let Dest::Tier(t) = dest {
                    let gate = match gates.iter().find(|(n, _)| *n == t.name()) {
                        Some((_, g)) => *g,
                        None => {
                            let g = self.gate(t);
                            if g != Gate::Move {
                                tracing::info!(dest = t.name(), "ETL gated by a named flag: {g:?}");
                            }
                            gates.push((t.name(), g));
                            g
                        }
                    };
                    match gate {
                        Gate::Move => {}
                        Gate::Hold => return Ok(()),
                        Gate::Discard => dest = Dest::Blackhole,
                    }
                }
                let moves = match held {
                    true => None,
                    false => match self.stores.try_lock_pv_moves(&pv.pv)? {
                        Some(l) => Some(l),
                        None => {
                            tracing::debug!(pv = %pv.pv, "being consolidated or deleted; ETL moves it after this run's batches");
                            busy.push(i);
                            return Ok(());
                        }
                    },
                };
                let mut files = Vec::new();
                let mut copied = false;
                for listed in self.eligible_after(stage, &pv.pv, now, mode, resumed && i == 0)? {
                    if copied && (copied_bytes >= self.batch_bytes || stop()) {
                        cut = Some(i);
                        break;
                    }
                    let lock = self.stores.lock_pv(&pv.pv)?;
                    let step =
                        self.copy_file(first, src, dest, &lock, &listed, &mut files, &mut counts)?;
                    drop(lock);
                    match step {
                        Step::Done => {}
                        Step::Copied => {
                            copied_bytes = copied_bytes.saturating_add(listed.len);
                            pending.push((i, listed));
                            copied = true;
                        }
                        Step::Stop => break,
                    }
                }
                if let (Dest::Tier(t), false) = (dest, files.is_empty()) {
                    touched.push((i, t, files));
                }
                if copied {
                    move_locks.extend(moves);
                }
                Ok(())
            })();
            if let Err(e) = r {
                counts.errors += 1;
                errors.push((pv.pv.clone(), e));
            }
            if let Some(c) = cut {
                done = c + 1;
                break;
            }
        }
        if pending.is_empty() {
            let end = BatchEnd { done, cut: false };
            return (end, counts, errors);
        }
        // (2) Make the copies durable, together; if that fails, PV by PV.
        let mut unsynced: Vec<usize> = Vec::new();
        let mut dests: Vec<&Tier> = Vec::new();
        for (_, t, _) in &touched {
            if !dests.iter().any(|d| d.name() == t.name()) {
                dests.push(t);
            }
        }
        for dest in dests {
            let mine = || touched.iter().filter(|(_, t, _)| t.name() == dest.name());
            let all: Vec<PathBuf> = mine().flat_map(|(_, _, f)| f.iter().cloned()).collect();
            let Err(e) = dest.sync_touched(&all) else {
                continue;
            };
            tracing::warn!(
                dest = dest.name(),
                "ETL: syncing the batch failed ({e}); syncing PV by PV"
            );
            for (i, _, files) in mine() {
                if let Err(e) = dest.sync_touched(files) {
                    unsynced.push(*i);
                    counts.errors += 1;
                    errors.push((pvs[*i].pv.clone(), e));
                }
            }
        }
        pending.retain(|(i, _)| !unsynced.contains(i));
        // (3) Delete the sources that did not change.
        let mut stopped = Vec::new();
        for (i, listed) in pending {
            if stopped.contains(&i) {
                continue;
            }
            let pv = &pvs[i].pv;
            let r = (|| -> Result<bool, StorageError> {
                let lock = self.stores.lock_pv(pv)?;
                let path = &listed.partition.path;
                match src.backend().io().len(path) {
                    Ok(l) if l == listed.len => {
                        src.remove_file_locked(&lock, path)?;
                        counts.files_moved += 1;
                        counts.bytes_moved += listed.len;
                        Ok(true)
                    }
                    Ok(_) => {
                        tracing::warn!(file = %path.display(), "changed while being moved; ETL moves it again next run");
                        counts.files_changed += 1;
                        Ok(false)
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
                    Err(e) => Err(src.io_error(path, e)),
                }
            })();
            match r {
                Ok(true) => {}
                Ok(false) => stopped.push(i),
                Err(e) => {
                    stopped.push(i);
                    counts.errors += 1;
                    errors.push((pv.clone(), e));
                }
            }
        }
        drop(move_locks);
        // A cut PV goes on in the next batch, unless it failed or stopped (a changed file).
        let mut end = BatchEnd { done, cut: false };
        if let Some(c) = cut
            && !stopped.contains(&c)
            && !unsynced.contains(&c)
            && !errors.iter().any(|(pv, _)| *pv == pvs[c].pv)
        {
            end = BatchEnd { done: c, cut: true };
        }
        (end, counts, errors)
    }

    /// Moves every file of `pv` down to the store named `store` now, the current
    /// partitions included (Java's `consolidateDataForPV`): every stage from the first up
    /// to the one whose destination is `store`, in order, along `chain` (as
    /// [`Etl::run_pv_chain`]), holding the PV's move lock throughout (waiting for an ETL
    /// batch that moves the PV to finish with it; ETL skips the PV meanwhile). An unknown
    /// store, or the first store (nothing moves into it), is [`StorageError::UnknownStore`].
    pub fn consolidate(
        &self,
        pv: &str,
        chain: Option<&[ChainStore]>,
        store: &str,
        now: Timestamp,
    ) -> Result<EtlCounts, StorageError> {
        let into = |stage: usize| -> bool {
            match self.dest_in_chain(stage, chain) {
                Ok(Some((Dest::Tier(t), _))) => t.name() == store,
                Ok(Some((Dest::Blackhole, _))) => self.stores.blackhole() == Some(store),
                _ => false,
            }
        };
        let last =
            (0..self.stages())
                .find(|s| into(*s))
                .ok_or_else(|| StorageError::UnknownStore {
                    name: store.to_string(),
                    url: format!("consolidate {pv} into {store}"),
                })?;
        let moves = self.stores.lock_pv_moves(pv)?;
        let mut total = EtlCounts::default();
        for stage in 0..=last {
            total.add(&self.run_pv_held(stage, pv, chain, now, EtlMode::All, &moves)?);
        }
        Ok(total)
    }

    /// Handles one source file in step (1) of a batch: an empty one or one going to the
    /// blackhole is deleted (`Done`), one the destination has no room for is handled by
    /// the out-of-space policy (`Done` when deleted, `Stop` when kept), a changed one stops
    /// the PV, and any other is copied (`Copied`, its destination files added to
    /// `touched`).
    #[allow(clippy::too_many_arguments)]
    fn copy_file(
        &self,
        first_stage: bool,
        src: &Tier,
        dest: Dest<'_>,
        lock: &PvLock,
        listed: &Listed,
        touched: &mut Vec<PathBuf>,
        counts: &mut EtlCounts,
    ) -> Result<Step, StorageError> {
        let path = &listed.partition.path;
        match src.backend().io().len(path) {
            Ok(l) if l == listed.len => {}
            Ok(_) => {
                tracing::warn!(file = %path.display(), "changed since listed; ETL moves it next run");
                counts.files_changed += 1;
                return Ok(Step::Stop);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Step::Done),
            Err(e) => return Err(src.io_error(path, e)),
        }
        if listed.first.is_none() {
            src.remove_file_locked(lock, path)?;
            counts.empty_files_removed += 1;
            return Ok(Step::Done);
        }
        let dest = match dest {
            Dest::Blackhole => {
                src.remove_file_locked(lock, path)?;
                counts.files_discarded += 1;
                return Ok(Step::Done);
            }
            Dest::Tier(t) => t,
        };
        // Java's free-space check: the file's size and 1 MiB.
        let room = dest
            .backend()
            .io()
            .available_space(dest.root())
            .map_err(|e| dest.io_error(dest.root(), e))?;
        if room.is_some_and(|r| r < listed.len.saturating_add(SPACE_MARGIN_BYTES)) {
            let delete = match self.out_of_space {
                OutOfSpacePolicy::DeleteSrcIfFirstDest => first_stage,
                OutOfSpacePolicy::DeleteSrc => true,
                OutOfSpacePolicy::Skip => false,
            };
            if delete {
                tracing::error!(
                    file = %path.display(),
                    dest = dest.name(),
                    policy = self.out_of_space.java_name(),
                    "destination out of space: deleting the source file, its data is lost"
                );
                src.remove_file_locked(lock, path)?;
                counts.files_dropped_out_of_space += 1;
                return Ok(Step::Done);
            }
            tracing::warn!(
                file = %path.display(),
                dest = dest.name(),
                "destination out of space: the file stays until there is room"
            );
            counts.files_skipped_out_of_space += 1;
            return Ok(Step::Stop);
        }
        let c = match (&self.reducer, &dest.store_url().reduce_data) {
            (Some(reducer), Some(pp)) => {
                reduce_into(reducer.as_ref(), pp, src, dest, lock, listed, touched)?
            }
            _ => copy_lines(src, dest, lock, path, listed.len, touched)?,
        };
        counts.samples_moved += c.written;
        counts.samples_skipped += c.not_newer;
        if let Some(reducer) = &self.reducer
            && !dest.cached_post_processors().is_empty()
        {
            write_reductions(reducer.as_ref(), src, dest, lock, listed, counts)?;
        }
        Ok(Step::Copied)
    }
}

/// Appends to `dest`'s cached reductions (each of its `pp=`) what `reducer` makes of the
/// samples of the source file of `listed` (its partition's range). A reduction that fails
/// is logged and counted; reading the source failing is an error (the move stops, the
/// source stays).
fn write_reductions(
    reducer: &dyn Reducer,
    src: &Tier,
    dest: &Tier,
    lock: &PvLock,
    listed: &Listed,
    counts: &mut EtlCounts,
) -> Result<(), StorageError> {
    let path = &listed.partition.path;
    let Some(PartitionSamples {
        payload_type,
        samples: input,
        from,
        to,
    }) = read_partition(src, listed)?
    else {
        return Ok(());
    };
    for pp in dest.cached_post_processors() {
        let reduced = reducer
            .reduce(pp, payload_type, &input, from, to)
            .and_then(|(ty, out)| {
                dest.reduced(pp)
                    .append_locked(lock, ty, &out)
                    .map_err(|e| e.to_string())
            });
        match reduced {
            Ok(_) => counts.reductions_written += 1,
            Err(e) => {
                tracing::warn!(file = %path.display(), post_processor = %pp, "cached reduction not written: {e}");
                counts.reductions_failed += 1;
            }
        }
    }
    Ok(())
}

/// A source file's samples, as a [`Reducer`] takes them.
struct PartitionSamples {
    /// Their type.
    payload_type: PayloadType,
    /// Oldest first.
    samples: Vec<Sample>,
    /// The start of the file's partition.
    from: Timestamp,
    /// Its last instant.
    to: Timestamp,
}

/// The samples of the source file of `listed` and its partition's range; `None` for a
/// file without a header.
fn read_partition(src: &Tier, listed: &Listed) -> Result<Option<PartitionSamples>, StorageError> {
    let path = &listed.partition.path;
    let Some(mut reader) = src.open_reader(path)? else {
        return Ok(None);
    };
    let payload_type = reader.header().payload_type;
    let mut input = Vec::new();
    while let Some(s) = reader.next_sample().map_err(|e| src.io_error(path, e))? {
        input.push(s.clone());
    }
    let from = Timestamp::new(listed.partition.start, 0);
    let to = Timestamp::new(listed.partition.end - 1, 999_999_999);
    Ok(Some(PartitionSamples {
        payload_type,
        samples: input,
        from,
        to,
    }))
}

/// Step 3 for a destination with `reducedata=<pp>` (Java's `PlainStoragePlugin`
/// `reducedata`: the store keeps the post-processed samples, not the raw ones): the
/// source file's samples reduced by `pp` over its partition are appended to `dest` (the
/// destination again skips what is not newer than its last sample, so a re-run appends
/// nothing twice), its files added to `touched`. A reduction that fails is
/// [`StorageError::Reduce`]: the file is not moved (its data stays in the source).
fn reduce_into(
    reducer: &dyn Reducer,
    pp: &str,
    src: &Tier,
    dest: &Tier,
    lock: &PvLock,
    listed: &Listed,
    touched: &mut Vec<PathBuf>,
) -> Result<AppendCounts, StorageError> {
    let Some(p) = read_partition(src, listed)? else {
        return Ok(AppendCounts::default());
    };
    let (ty, reduced) = reducer
        .reduce(pp, p.payload_type, &p.samples, p.from, p.to)
        .map_err(|reason| StorageError::Reduce {
            tier: dest.name().to_string(),
            post_processor: pp.to_string(),
            path: listed.partition.path.clone(),
            reason,
        })?;
    dest.append_touching(lock, ty, &reduced, touched)
}

/// Where a batch ended, in its PVs.
#[derive(Debug, Clone, Copy)]
struct BatchEnd {
    /// How many PVs of the batch are done.
    done: usize,
    /// The PV after those was cut after some of its files (its hold is passed).
    cut: bool,
}

/// What step (1) of a batch did with a file.
enum Step {
    /// Handled whole (deleted, or gone).
    Done,
    /// Copied: to be deleted after the destinations are synced.
    Copied,
    /// Not moved: the PV's run ends here.
    Stop,
}

/// Copies the lines of the source file `path` (its first `len` bytes) to `dest`, in
/// pieces of at most [`COPY_CHUNK`] ending at a line end; a torn last line is left out.
fn copy_lines(
    src: &Tier,
    dest: &Tier,
    lock: &PvLock,
    path: &Path,
    len: u64,
    touched: &mut Vec<PathBuf>,
) -> Result<AppendCounts, StorageError> {
    let mut total = AppendCounts::default();
    let Some(reader) = src.open_reader(path)? else {
        return Ok(total);
    };
    let header = reader.header().clone();
    let mut pos = reader.header_len();
    let file = src
        .backend()
        .io()
        .open(path, OpenMode::Read)
        .map_err(|e| src.io_error(path, e))?;
    drop(reader);
    let mut buf = vec![0u8; COPY_CHUNK.min(usize::try_from(len).unwrap_or(COPY_CHUNK))];
    let mut carry = 0usize; // bytes of an unfinished line at the start of `buf`
    while pos < len {
        let want = usize::try_from(len - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len() - carry);
        if want == 0 {
            // One line longer than the buffer: grow it.
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        let n = file
            .read_at(&mut buf[carry..carry + want], pos)
            .map_err(|e| src.io_error(path, e))?;
        if n == 0 {
            break;
        }
        pos += n as u64;
        let filled = carry + n;
        let cut = memchr::memrchr(b'\n', &buf[..filled]).map_or(0, |i| i + 1);
        if cut > 0 {
            let c = dest.append_lines_touching(
                lock,
                header.payload_type,
                header.year,
                &buf[..cut],
                touched,
            )?;
            crate::tier::add(&mut total, &c);
        }
        buf.copy_within(cut..filled, 0);
        carry = filled - cut;
    }
    if carry > 0 {
        // A torn last line (a write cut by a crash; never returned by a reader) is not
        // copied, and goes with the source: logged and counted as the writer's repair.
        let bytes = carry as u64;
        tracing::warn!(
            tier = src.name(),
            file = %path.display(),
            bytes,
            "ETL: dropped a torn last line (a write interrupted by a crash) of the file moved"
        );
        src.backend().counters().torn_repair(bytes);
    }
    Ok(total)
}

/// Java's `TimeUtils.getPreviousPartitionLastSecond`: the last second of the partition
/// before the one holding `secs`.
fn prev_partition_last_second(g: Granularity, secs: i64) -> i64 {
    g.partition_start(secs) - 1
}
