/*!
The appliance: the service that ties the engine and the PV catalogue together, as the
Java EPICS Archiver Appliance's `mgmt` webapp does. It archives, pauses, resumes, deletes
and restores PVs, applies the Java policy defaults, and keeps the catalogue in step with
the engine. (ETL scheduling and metrics aggregation will live here too.)

# Brief overview

* [`Appliance`] — built from [`ApplianceParts`] (engine, `Arc<dyn Registry>`, clock,
  identity, [`Policy`], the configured `archiver_storage::DataStores`, whose first store
  is the engine's); its operations keep engine and catalogue in step:
  [`Appliance::archive_many`], `pause`, `resume`, `delete` (optionally with the data
  files), [`Appliance::restore`] at start-up, [`Appliance::sync_catalogue`].
* [`Appliance::retrieval`] — the retrieval pipeline (`archiver_retrieval::Retrieval`) over
  the catalogue, the data stores and the engine as live source ([`EngineLive`],
  [`Appliance::live_source`]): retrieval knows no engine, the appliance connects them.
* [`site_policy`] — the site policy file ([`SitePolicy`], TOML): named policies and
  rules (name glob or regex, RTYP, element count, event rate; first match wins) deciding
  a PV's sampling, stores, archive fields and controlling PV at archive time
  ([`Policy::decide`]), and again on request for PVs already archived
  ([`Appliance::reapply_policies`], keeping their data). [`SiteSource`] holds the one
  in force and re-reads the file when it changes ([`Appliance::with_policy_file`]); a
  broken file keeps the policies read before and is reported
  ([`Appliance::policy_file_error`]).
* [`Appliance::change_type`] — `changeTypeForPV`: every stored partition rewritten to
  a new type ([`convert_value`], Java's `ThruNumberAndStringConversion`) by
  write-sync-rename, then the type info's `DBRType` changed.
* Conditional archiving: a PV with a controlling PV is paused while that PV is 0 and
  resumed when it is not; the appliance monitors the controlling PVs on the engine's CA
  client ([`ControlStatus`], [`Appliance::control_status`]).
* [`policy`] — the Java defaults as data ([`Policy`]: MONITOR at 1 s, the default archive
  fields, `DRVH`/`DRVL` for output records, the data stores of a new PV) and the one
  validation of a sampling period, [`SamplingPeriod::new`]: `0` (every update) or
  `0.001 ..= 31 536 000` seconds (365 days); anything else is a [`PeriodError`] naming
  the value and the range.
* [`Figures`] — the operational figures the metrics endpoint exports
  ([`Appliance::figures`]): PVs by state ([`PvCounts`], also `getApplianceMetrics`'s),
  the engine's counters summed, the writer's latency, buffer fill, ETL per stage, free
  disk per store, the CA client's searches and circuits, all read from counters kept
  anyway.
* [`ApplianceApi`] — the trait the HTTP crate talks to ([`SharedAppliance`] =
  `Arc<dyn ApplianceApi>`); [`Appliance`] implements it, handler tests use fakes.
* [`CatalogueSync`] — the task that writes a `PVTypeInfo` for each PV once it has
  connected, every [`SYNC_PERIOD`], until its `tokio_util` `CancellationToken` is
  cancelled.
* [`ApplianceError`] — every failure: engine, catalogue, period, background task.

# Shutdown order

The binary (`src/serve.rs`) stops in this order, so that nothing received is lost and the
catalogue ends up describing what is on disk:

1. **Stop accepting HTTP requests** (axum's graceful shutdown lets requests under way
   finish): no new archive, pause or delete can start behind the steps below. Then
   **stop ETL** ([`EtlService::stop`]: a file being moved completes or stays whole in
   its source).
2. **Cancel the catalogue sync** and wait for its task ([`CatalogueSync::stop`]); a round
   under way finishes first, so no sync races the final one.
3. **Shut the engine down**: held-back samples are committed, every channel closed, every
   buffer written to the short-term store (`Engine::shutdown`).
4. **Final catalogue sync**: every PV's final state (paused flags, metadata, PVs that
   connected since the last round) is written.
5. **Consolidate on shutdown** the stores that ask for it
   ([`Appliance::consolidate_on_shutdown`], after the final write), then **exit.**

Steps 2–4 are [`Appliance::shutdown`].

# Example

```no_run
# async fn demo(parts: archiver_appliance::ApplianceParts) -> Result<(), archiver_appliance::ApplianceError> {
use archiver_appliance::{Appliance, ArchiveSpec, SYNC_PERIOD, SamplingPeriod};
use tokio_util::sync::CancellationToken;

let appliance = Appliance::new(parts);
appliance.restore().await?;
let sync = appliance.spawn_catalogue_sync(SYNC_PERIOD, CancellationToken::new());
let spec = ArchiveSpec {
    period: Some(SamplingPeriod::new(0.5)?),
    ..ArchiveSpec::new("SIM:AI")
};
appliance.archive_many(vec![spec]).await?;
// ... serve HTTP until a signal, stop accepting requests, then:
appliance.shutdown(sync).await?;
# Ok(())
# }
```
*/
#![deny(missing_docs)]

mod api;
mod appliance;
mod change_type;
mod control;
mod error;
mod figures;
mod live;
mod manage;
pub mod policy;
mod reapply;
mod site_file;
pub mod site_policy;
mod storage_ops;
mod sync;

pub use crate::api::{ApplianceApi, SharedAppliance};
pub use crate::appliance::{Appliance, ApplianceParts, Archived, newest_stored};
pub use crate::change_type::{Converted, convert_value};
pub use crate::control::ControlStatus;
pub use crate::error::ApplianceError;
pub use crate::figures::{CaFigures, Figures, PvCounts, StageFigures, StoreFigures};
pub use crate::live::EngineLive;
pub use crate::manage::meta_from_type_info;
pub use crate::policy::{ArchiveSpec, Decided, PeriodError, Policy, SamplingPeriod};
pub use crate::reapply::Reapplied;
pub use crate::site_file::SiteSource;
pub use crate::site_policy::{NamedPolicy, PolicyError, PvFacts, SitePolicy};
pub use crate::storage_ops::{EtlService, StorageOpsError, StoreReport};
pub use crate::sync::{CatalogueSync, SYNC_PERIOD, ShutdownReport};
/// The storage results of [`ApplianceApi`]'s storage operations, re-exported so that the
/// HTTP crate needs no storage of its own.
pub use archiver_storage::{DeleteCounts, EtlCounts};
pub use tokio_util::sync::CancellationToken;

/// The engine's types that are part of this crate's API (a PV's status and settings in
/// [`ApplianceApi`], the outcome of an archive request, the engine's refusals inside
/// [`ApplianceError`]), re-exported so that the HTTP crate needs no engine of its own.
pub use archiver_engine::{
    ArchiveOutcome, ConnState, CountersSnapshot, EngineError, PvConfig, PvMeta, PvState, PvStatus,
    PvSummary, SamplingMethod, Unwritten,
};
