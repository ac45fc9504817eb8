//! The appliance's storage operations: the ETL service ([`EtlService`], moving closed
//! partitions down the stores on the Java schedule), consolidation of a PV into a named
//! store (`consolidateDataForPV`), consolidation on shutdown for stores that ask for it
//! (`consolidateOnShutdown=true`, the RAM-disk STS setup), deleting a PV's data in a time
//! range, and disk use per PV. The work itself is `archiver_storage` (`Etl`,
//! `DataStores::delete_range`); here it is scheduled on blocking threads, stopped by a
//! `CancellationToken`, and checked against the catalogue.
//!
//! **Shutdown order** (see the crate documentation): the ETL service is stopped (a run
//! under way stops after the PV it is moving) before the engine's final write; the
//! consolidation on shutdown runs after that write, so the last samples move too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use archiver_pb::Timestamp;
use archiver_storage::{
    ChainStore, DeleteCounts, DiskUsage, Etl, EtlCounts, EtlMode, EtlPv, StorageError,
};
use archiver_time::Clock;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::appliance::Appliance;

/// One data store's disk figures (`getStorageMetricsForAppliance`, Java's
/// `StorageWithLifetime.getStorageDetails` per store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreReport {
    /// Store name (`STS`, `MTS`, `LTS`...).
    pub name: String,
    /// Its root folder.
    pub root: std::path::PathBuf,
    /// Size of its filesystem in bytes; `None` when unknown.
    pub total_bytes: Option<u64>,
    /// Bytes still free for the archiver on its filesystem; `None` when unknown.
    pub available_bytes: Option<u64>,
    /// Partition (`.pb`) files in the store.
    pub files: u64,
    /// Their bytes.
    pub used_bytes: u64,
}

/// Why a storage operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageOpsError {
    /// The named store is not configured, or nothing moves into it.
    #[error(
        "{store:?} is not a store data can be consolidated into (the stores after the first: {known})"
    )]
    UnknownStore {
        /// The name given.
        store: String,
        /// The accepted names, comma separated.
        known: String,
    },
    /// The named store is the blackhole: consolidating into it would delete the PV's data
    /// in every store, a deletion that no management call does by moving.
    #[error(
        "{0:?} is a blackhole store: consolidating into it would delete the PV's data; \
         use deletePVData to delete data (stores data can be consolidated into: {1})"
    )]
    BlackholeStore(String, String),
    /// The PV is not archived here and has no data.
    #[error("PV {0} is not archived here and has no data")]
    UnknownPv(String),
    /// `from` is not before `to`.
    #[error("the range is empty: from {from} is not before to {to}")]
    EmptyRange {
        /// `from`, ISO 8601.
        from: String,
        /// `to`, ISO 8601.
        to: String,
    },
    /// A storage operation failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The catalogue failed.
    #[error(transparent)]
    Registry(#[from] archiver_registry::RegistryError),
    /// The appliance does not offer the operation (a test fake).
    #[error("not supported by this appliance")]
    Unsupported,
    /// A blocking task panicked.
    #[error("background task failed: {0}")]
    Task(String),
}

impl StorageOpsError {
    /// True for a refusal of the request (HTTP 400).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            StorageOpsError::UnknownStore { .. }
                | StorageOpsError::BlackholeStore(..)
                | StorageOpsError::EmptyRange { .. }
                // a PV name that maps to no file inside a store (`/X`, `..:X`): found by the
                // hostile-input test, deletePVData answered it 500
                | StorageOpsError::Storage(archiver_storage::StorageError::BadName { .. })
        )
    }

    /// True for an unknown PV (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageOpsError::UnknownPv(_))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageOpsError> + Send + 'static,
) -> Result<T, StorageOpsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageOpsError::Task(e.to_string()))?
}

/// The running ETL service: one task that first runs every stage once (catching up what
/// fell due while the appliance was down, or what a Java appliance left), then sleeps
/// until the next stage run is due (by the appliance's clock, checked at least every
/// second, so a test's `ManualClock` drives it) and runs every stage due, in order, over
/// every PV of the catalogue and the engine, on a blocking thread. Stop it with
/// [`EtlService::stop`].
#[derive(Debug)]
pub struct EtlService {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    etl: Etl,
}

impl EtlService {
    /// The ETL it runs (its totals: files, bytes and samples moved, errors).
    pub fn etl(&self) -> &Etl {
        &self.etl
    }

    /// Stops the service and waits for it: a run under way starts no new copy (it ends
    /// after the file it is copying), syncs what its batch copied and deletes those
    /// sources, then returns (`archiver_storage::Etl::run_stage`): seconds, not the
    /// batch's whole run.
    pub async fn stop(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            warn!("the ETL task ended badly: {e}");
        }
    }
}

impl Appliance {
    /// The PVs ETL looks at, sorted: every PV of the catalogue, each with the chain of
    /// its `dataStores`, and every PV of the engine not catalogued yet (a pending request,
    /// whose type info will list the configured stores).
    ///
    /// Without `include_paused`, a PV whose type info says `paused` is left out, with its
    /// data where it is until it is resumed (Java: a paused PV has no `ETLStages`).
    pub async fn etl_pvs(&self, include_paused: bool) -> Result<Vec<EtlPv>, StorageOpsError> {
        let registry = self.registry().clone();
        let infos = blocking(move || Ok(registry.all_type_infos()?)).await?;
        let mut pvs: BTreeMap<String, Option<Option<Vec<ChainStore>>>> = BTreeMap::new();
        for i in infos {
            // A paused PV stays in the map as `None` so that the engine's names below do
            // not bring it back as an uncatalogued PV.
            let chain =
                (include_paused || !i.paused).then(|| Some(ChainStore::chain(&i.data_stores)));
            pvs.insert(i.pv_name, chain);
        }
        for name in self.engine().names() {
            pvs.entry(name).or_insert(Some(None));
        }
        Ok(pvs
            .into_iter()
            .filter_map(|(pv, chain)| chain.map(|chain| EtlPv { pv, chain }))
            .collect())
    }

    /// Runs every stage of `etl` due at `now` (all of them with `EtlMode::All`) over every
    /// PV, in order, on a blocking thread; stops between files once `cancel` is cancelled
    /// (finishing what the batch copied).
    ///
    /// A scheduled run (`EtlMode::Scheduled`) leaves paused PVs alone (Java: a paused PV
    /// gets no ETL; [`Appliance::etl_pvs`]); `EtlMode::All` (the consolidation on
    /// shutdown) moves theirs too: a store that asks for it is typically a RAM disk,
    /// whose data would not survive the shutdown. Java consolidates such a store when the
    /// PV is paused instead; here it happens at shutdown, which covers the PVs paused
    /// before too.
    pub async fn run_etl(
        &self,
        etl: &Etl,
        stages: Vec<usize>,
        now: Timestamp,
        mode: EtlMode,
        cancel: &CancellationToken,
    ) -> Result<EtlCounts, StorageOpsError> {
        let pvs = self.etl_pvs(mode == EtlMode::All).await?;
        let etl = etl.clone();
        let cancel = cancel.clone();
        blocking(move || {
            let mut total = EtlCounts::default();
            for stage in stages {
                let c = etl.run_stage(stage, &pvs, now, mode, &|| cancel.is_cancelled());
                if c.files_moved + c.errors + c.files_dropped_out_of_space > 0 {
                    let (src, dest) = etl.stage_names(stage).unwrap_or(("?", "?"));
                    info!(
                        src,
                        dest,
                        files = c.files_moved,
                        bytes = c.bytes_moved,
                        samples = c.samples_moved,
                        errors = c.errors,
                        dropped_out_of_space = c.files_dropped_out_of_space,
                        "ETL run"
                    );
                }
                total.add(&c);
            }
            Ok(total)
        })
        .await
    }

    /// Starts the ETL service over `etl` (see [`EtlService`]); `cancel` stops it.
    pub fn spawn_etl(&self, etl: Etl, cancel: CancellationToken) -> EtlService {
        let app = self.clone();
        let token = cancel.clone();
        let run = etl.clone();
        let task = tokio::spawn(async move {
            let clock: Arc<dyn Clock> = app.clock().clone();
            let all: Vec<usize> = (0..run.stages()).collect();
            if let Err(e) = app
                .run_etl(&run, all, clock.now(), EtlMode::Scheduled, &token)
                .await
            {
                warn!("ETL catch-up run failed, retried at the next: {e}");
            }
            loop {
                let now = clock.now().secs;
                let Some(due) = (0..run.stages()).filter_map(|s| run.next_run(s, now)).min() else {
                    return; // one store: nothing to move
                };
                // Sleep by the clock, a second at a time at most.
                loop {
                    let left = due - clock.now().secs;
                    if left <= 0 {
                        break;
                    }
                    let step = Duration::from_secs(u64::try_from(left.min(1)).unwrap_or(1));
                    tokio::select! {
                        () = token.cancelled() => return,
                        () = tokio::time::sleep(step) => {}
                    }
                }
                let stages: Vec<usize> = (0..run.stages())
                    .filter(|s| run.next_run(*s, now) == Some(due))
                    .collect();
                let at = Timestamp::new(due, 0);
                if let Err(e) = app
                    .run_etl(&run, stages, at, EtlMode::Scheduled, &token)
                    .await
                {
                    warn!("ETL run failed, retried at the next: {e}");
                }
                if token.is_cancelled() {
                    return;
                }
            }
        });
        EtlService { cancel, task, etl }
    }

    /// An ETL over this appliance's stores with `out_of_space`, writing the reductions a
    /// store caches (`pp=`) with the retrieval's post-processors.
    /// Its moves are gated by the appliance's named flags (`SKIP_<store>_FOR_ETL`,
    /// `etlIntoStoreIf`, `etlOutofStoreIf`: [`archiver_storage::NamedFlags`]).
    pub fn new_etl(&self, out_of_space: archiver_storage::OutOfSpacePolicy) -> Etl {
        Etl::new(self.stores().clone(), out_of_space)
            .with_reducer(std::sync::Arc::new(
                archiver_retrieval::PostProcessorReducer,
            ))
            .with_named_flags(std::sync::Arc::new(RegistryFlags(self.registry().clone())))
    }

    /// Moves every file of `pv` down to the store `store` now, the current partitions
    /// included (Java's `consolidateDataForPV`; here the PV need not be paused: each file
    /// moves under the PV's write lock, and the engine's next write starts a new file).
    ///
    /// The counts are those of the last hop, into `store`: what ended there, each sample
    /// once (a move STS→MTS→LTS is not counted twice); `errors` adds the earlier hops'.
    pub async fn consolidate(&self, pv: &str, store: &str) -> Result<EtlCounts, StorageOpsError> {
        let etl = self.new_etl(Default::default());
        let known: Vec<String> = (0..etl.stages())
            .filter_map(|s| etl.stage_names(s).map(|(_, d)| d.to_string()))
            .collect();
        let blackhole = self.stores().blackhole();
        let stores = || {
            known
                .iter()
                .filter(|k| Some(k.as_str()) != blackhole)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        };
        if blackhole == Some(store) {
            return Err(StorageOpsError::BlackholeStore(store.to_string(), stores()));
        }
        if !known.iter().any(|k| k == store) {
            return Err(StorageOpsError::UnknownStore {
                store: store.to_string(),
                known: stores(),
            });
        }
        let chain = self.check_known(pv).await?;
        // What the engine holds goes to the STS first, so that it moves too.
        self.engine().flush().await;
        // The store before `store`: everything is moved into it first, then the last hop
        // (whose earlier stages then find nothing left) is counted alone.
        let before = known
            .iter()
            .position(|k| k == store)
            .and_then(|i| i.checked_sub(1))
            .map(|i| known[i].clone());
        let (pv, store, now) = (pv.to_string(), store.to_string(), self.clock().now());
        blocking(move || {
            let chain = chain.as_deref();
            let earlier = match before {
                Some(b) => match etl.consolidate(&pv, chain, &b, now) {
                    Ok(c) => c,
                    // Not in this PV's own chain of stores: one pass does it all.
                    Err(StorageError::UnknownStore { .. }) => EtlCounts::default(),
                    Err(e) => return Err(e.into()),
                },
                None => EtlCounts::default(),
            };
            let mut last = etl.consolidate(&pv, chain, &store, now)?;
            last.errors += earlier.errors;
            Ok(last)
        })
        .await
    }

    /// The consolidation on shutdown: every store whose URL says
    /// `consolidateOnShutdown=true` is moved whole into the next, for every PV. Run after
    /// the engine's final write.
    pub async fn consolidate_on_shutdown(&self, etl: &Etl) -> Result<EtlCounts, StorageOpsError> {
        let stages: Vec<usize> = (0..etl.stages())
            .filter(|s| {
                self.stores().tiers()[*s]
                    .store_url()
                    .consolidate_on_shutdown
            })
            .collect();
        if stages.is_empty() {
            return Ok(EtlCounts::default());
        }
        let never = CancellationToken::new();
        let now = self.clock().now();
        self.run_etl(etl, stages, now, EtlMode::All, &never).await
    }

    /// Deletes the samples of `pv` with `from ≤ time < to` from every store (buffered
    /// samples are written first, so they are deleted too); see
    /// `archiver_storage::DataStores::delete_range`.
    pub async fn delete_data_range(
        &self,
        pv: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<DeleteCounts, StorageOpsError> {
        if from >= to {
            return Err(StorageOpsError::EmptyRange {
                from: from.iso(archiver_time::Precision::Nanos).to_string(),
                to: to.iso(archiver_time::Precision::Nanos).to_string(),
            });
        }
        let archived = self.check_known(pv).await.is_ok();
        if archived {
            // Buffered samples written (so they are deleted too), and no journal segment
            // left to bring the deleted ones back after a crash.
            self.engine().journal_checkpoint().await;
        }
        let stores = self.stores().clone();
        let name = pv.to_string();
        let c = blocking(move || Ok(stores.delete_range(&name, from, to)?)).await?;
        if !archived && c == DeleteCounts::default() {
            return Err(StorageOpsError::UnknownPv(pv.to_string()));
        }
        info!(
            pv,
            removed = c.files_removed,
            rewritten = c.files_rewritten,
            samples = c.samples_deleted,
            "deleted data in a range"
        );
        Ok(c)
    }

    /// Disk use of `pv` in each store, by store name.
    pub async fn disk_usage(&self, pv: &str) -> Result<Vec<(String, DiskUsage)>, StorageOpsError> {
        let stores = self.stores().clone();
        let pv = pv.to_string();
        blocking(move || Ok(stores.disk_usage(&pv)?)).await
    }

    /// Bytes per sample of `pv` in each store, measured on its newest partition file with
    /// samples (`None` for a store without one), by store name.
    pub async fn bytes_per_sample(
        &self,
        pv: &str,
    ) -> Result<Vec<(String, Option<f64>)>, StorageOpsError> {
        let stores = self.stores().clone();
        let pv = pv.to_string();
        blocking(move || {
            stores
                .tiers()
                .iter()
                .map(|t| Ok((t.name().to_string(), t.bytes_per_sample(&pv)?)))
                .collect()
        })
        .await
    }

    /// Every configured store's disk figures (one walk of each store's folder): files and
    /// bytes of `.pb` files, and the size and free space of its filesystem.
    pub async fn store_report(&self) -> Result<Vec<StoreReport>, StorageOpsError> {
        let stores = self.stores().clone();
        blocking(move || {
            let usage = stores.store_usage()?;
            let io = stores.backend().io();
            Ok(stores
                .tiers()
                .iter()
                .zip(usage)
                .map(|(t, (name, u))| StoreReport {
                    name,
                    root: t.root().to_path_buf(),
                    total_bytes: io.total_space(t.root()).ok().flatten(),
                    available_bytes: io.available_space(t.root()).ok().flatten(),
                    files: u.files,
                    used_bytes: u.bytes,
                })
                .collect())
        })
        .await
    }

    /// Bytes of each of `pvs` on disk, every store together, in order (Java's
    /// `StorageWithLifetime.getPVSByStorageConsumed`: `spaceConsumedByPV` summed over the
    /// PV's stores). A PV's files are found through the stores' partition indexes and each
    /// file's length read once: no folder of other PVs is listed.
    pub async fn disk_bytes(&self, pvs: Vec<String>) -> Result<Vec<u64>, StorageOpsError> {
        let stores = self.stores().clone();
        blocking(move || {
            pvs.iter()
                .map(|pv| {
                    Ok(stores
                        .disk_usage(pv)?
                        .iter()
                        .map(|(_, u)| u.bytes)
                        .sum::<u64>())
                })
                .collect()
        })
        .await
    }

    /// The chain of stores of a known PV (`None`: archived, not catalogued yet); an
    /// unknown PV is [`StorageOpsError::UnknownPv`].
    async fn check_known(&self, pv: &str) -> Result<Option<Vec<ChainStore>>, StorageOpsError> {
        let registry = self.registry().clone();
        let name = pv.to_string();
        match blocking(move || Ok(registry.get_type_info(&name)?)).await? {
            Some(info) => Ok(Some(ChainStore::chain(&info.data_stores))),
            None if self.engine().status(pv).is_some() => Ok(None),
            None => Err(StorageOpsError::UnknownPv(pv.to_string())),
        }
    }
}

/// The named flags of the registry, for ETL. A flag that cannot be read is unknown
/// (`None`: ETL then holds the moves it gates), with the reason logged.
struct RegistryFlags(std::sync::Arc<dyn archiver_registry::Registry>);

impl std::fmt::Debug for RegistryFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryFlags")
    }
}

impl archiver_storage::NamedFlags for RegistryFlags {
    fn named_flag(&self, name: &str) -> Option<bool> {
        self.0
            .get_named_flag(name)
            .map_err(|e| {
                warn!(
                    flag = name,
                    "cannot read the named flag; ETL holds what it gates: {e}"
                )
            })
            .ok()
    }
}
