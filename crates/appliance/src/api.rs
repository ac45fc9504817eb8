//! [`ApplianceApi`]: what the management API asks of the appliance. The HTTP crate holds
//! an `Arc<dyn ApplianceApi>`, so its handler tests run against a fake instead of an
//! engine with a live CA client.
//!
//! The trait is object-safe through `async-trait`: each async method returns a boxed
//! future (`Pin<Box<dyn Future + Send + '_>>`), one allocation per management call, which
//! is nothing next to the catalogue round trip the call makes. Native `async fn` in traits
//! cannot be called through `dyn`; hand-written boxed futures would be the same code with
//! longer signatures for every implementor, fakes included.

use std::sync::Arc;

use archiver_engine::{PvStatus, PvSummary, SamplingMethod};
use archiver_pb::Timestamp;
use archiver_registry::{PvTypeInfo, Registry};
use archiver_storage::{DeleteCounts, DiskUsage, EtlCounts};
use async_trait::async_trait;

use crate::appliance::{Appliance, Archived};
use crate::change_type::Converted;
use crate::control::ControlStatus;
use crate::error::ApplianceError;
use crate::policy::{ArchiveSpec, SamplingPeriod};
use crate::reapply::Reapplied;
use crate::storage_ops::{StorageOpsError, StoreReport};

/// What an operation an implementation does not provide answers (the default of the
/// optional methods of [`ApplianceApi`]).
fn unsupported(what: &'static str) -> ApplianceError {
    ApplianceError::BadRequest(format!("{what} is not supported by this appliance"))
}

/// The management operations of an appliance (spec §3, `mgmt/bpl`). Implemented by
/// [`Appliance`]; tests implement it with fakes.
///
/// Status reads are synchronous: the engine answers them from memory, without I/O.
#[async_trait]
pub trait ApplianceApi: Send + Sync + 'static {
    /// This appliance's identity (`appliance` in `getPVStatus`).
    fn identity(&self) -> &str;

    /// Archives each PV of `specs` (in order; what a spec leaves out comes from the
    /// policy); the result says, per PV, whether it was new.
    async fn archive(&self, specs: Vec<ArchiveSpec>) -> Result<Vec<Archived>, ApplianceError>;

    /// Pauses `pv`: its channel is closed and its buffer written.
    async fn pause(&self, pv: &str) -> Result<(), ApplianceError>;

    /// Resumes a paused `pv`.
    async fn resume(&self, pv: &str) -> Result<(), ApplianceError>;

    /// Deletes a paused `pv`; with `delete_data` its files in every data store too.
    /// Returns the number of files removed.
    async fn delete(&self, pv: &str, delete_data: bool) -> Result<usize, ApplianceError>;

    /// The status of `pv`, if it is archived here.
    fn status(&self, pv: &str) -> Option<PvStatus>;

    /// The status of each of `names`, in order (`None` for a name not archived here), in
    /// one read of the PV table. The default asks [`ApplianceApi::status`] per name (for
    /// fakes).
    fn statuses(&self, names: &[String]) -> Vec<Option<PvStatus>> {
        names.iter().map(|n| self.status(n)).collect()
    }

    /// The status of every PV archived here (any order).
    fn all_status(&self) -> Vec<PvStatus>;

    /// The summary of every PV archived here (any order): what the reports read, without
    /// the per-PV allocations of [`ApplianceApi::all_status`]. The default converts
    /// `all_status` (for fakes).
    fn summaries(&self) -> Vec<PvSummary> {
        self.all_status().iter().map(PvSummary::from).collect()
    }

    /// The names of every PV archived here, sorted.
    fn names(&self) -> Vec<String>;

    /// The PV catalogue (type infos, aliases, named flags). Its methods block: call them
    /// on a blocking thread.
    fn catalogue(&self) -> Arc<dyn Registry>;

    /// The server's clock, in epoch seconds (reports compute rates and ages from it).
    fn now_secs(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    /// The policies a request may name (`getPolicyList`): name and description.
    fn policy_list(&self) -> Vec<(String, String)> {
        vec![(
            "default".to_string(),
            "The Java appliance's default policy: MONITOR at 1 s, every configured store"
                .to_string(),
        )]
    }

    /// The policy configuration as text (`getPolicyText`).
    fn policy_text(&self) -> String {
        String::new()
    }

    /// What `pv`'s status shows of its controlling PV (conditional archiving), if it
    /// has one.
    fn control_status(&self, _pv: &str) -> Option<ControlStatus> {
        None
    }

    /// `pv`'s last write error, if its last write into a data store failed (see
    /// `Appliance::last_write_error`); shown by getPVStatus and getPVDetails.
    fn last_write_error(&self, _pv: &str) -> Option<String> {
        None
    }

    /// Why the site policy file's last change was not taken, naming the file and the
    /// problem (the policies read before stay in force); `None` when all is well.
    fn policy_file_error(&self) -> Option<String> {
        None
    }

    /// `reapplyPolicies` (see [`Appliance::reapply_policies`]).
    async fn reapply_policies(
        &self,
        _names: &[String],
        _dry_run: bool,
    ) -> Result<Vec<Reapplied>, ApplianceError> {
        Err(unsupported("reapplyPolicies"))
    }

    /// `changeTypeForPV` (see [`Appliance::change_type`]).
    async fn change_type(
        &self,
        _pv: &str,
        _to: archiver_pb::PayloadType,
    ) -> Result<Converted, ApplianceError> {
        Err(unsupported("changeTypeForPV"))
    }

    /// `changeArchivalParameters` (see [`Appliance::change_parameters`]).
    async fn change_parameters(
        &self,
        _pv: &str,
        _method: Option<SamplingMethod>,
        _period: SamplingPeriod,
    ) -> Result<String, ApplianceError> {
        Err(unsupported("changeArchivalParameters"))
    }

    /// `abortArchivingPV` (see [`Appliance::abort`]).
    async fn abort(&self, _pv: &str) -> Result<bool, ApplianceError> {
        Err(unsupported("abortArchivingPV"))
    }

    /// `renamePV` (see [`Appliance::rename`]).
    async fn rename(&self, _pv: &str, _new_name: &str) -> Result<String, ApplianceError> {
        Err(unsupported("renamePV"))
    }

    /// `appendAndAliasPV` (see [`Appliance::append_and_alias`]).
    async fn append_and_alias(&self, _older: &str, _newer: &str) -> Result<String, ApplianceError> {
        Err(unsupported("appendAndAliasPV"))
    }

    /// `modifyMetaFields` (see [`Appliance::modify_archive_fields`]).
    async fn modify_archive_fields(
        &self,
        _pv: &str,
        _commands: &[String],
    ) -> Result<Vec<String>, ApplianceError> {
        Err(unsupported("modifyMetaFields"))
    }

    /// `putPVTypeInfo` (see [`Appliance::put_type_info`]).
    async fn put_type_info(
        &self,
        _pv: &str,
        _info: PvTypeInfo,
        _override_existing: bool,
        _create_new: bool,
    ) -> Result<PvTypeInfo, ApplianceError> {
        Err(unsupported("putPVTypeInfo"))
    }

    /// Moves every file of `pv` down to the store named `store` now
    /// (`consolidateDataForPV`). The default refuses ([`StorageOpsError::Unsupported`]).
    async fn consolidate(&self, pv: &str, store: &str) -> Result<EtlCounts, StorageOpsError> {
        let _ = (pv, store);
        Err(StorageOpsError::Unsupported)
    }

    /// Disk use of `pv` in each store (files, bytes), by store name, in the stores' order.
    /// The default: none.
    async fn disk_usage(&self, pv: &str) -> Result<Vec<(String, DiskUsage)>, StorageOpsError> {
        let _ = pv;
        Ok(Vec::new())
    }

    /// Bytes per sample of `pv` in each store (on its newest file with samples), by store
    /// name. The default: none.
    async fn bytes_per_sample(
        &self,
        pv: &str,
    ) -> Result<Vec<(String, Option<f64>)>, StorageOpsError> {
        let _ = pv;
        Ok(Vec::new())
    }

    /// Every store's disk figures (`getStorageMetricsForAppliance`). The default: none
    /// ([`StorageOpsError::Unsupported`]).
    async fn store_report(&self) -> Result<Vec<StoreReport>, StorageOpsError> {
        Err(StorageOpsError::Unsupported)
    }

    /// Bytes on disk of each of `pvs`, every store together, in order (the storage-consumed
    /// report). The default: none ([`StorageOpsError::Unsupported`]).
    async fn disk_bytes(&self, pvs: Vec<String>) -> Result<Vec<u64>, StorageOpsError> {
        let _ = pvs;
        Err(StorageOpsError::Unsupported)
    }

    /// Deletes the samples of `pv` with `from ≤ time < to` from every store. The default
    /// refuses ([`StorageOpsError::Unsupported`]).
    async fn delete_data_range(
        &self,
        pv: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<DeleteCounts, StorageOpsError> {
        let _ = (pv, from, to);
        Err(StorageOpsError::Unsupported)
    }
}

/// The management API's handle on the appliance.
pub type SharedAppliance = Arc<dyn ApplianceApi>;

#[async_trait]
impl ApplianceApi for Appliance {
    fn identity(&self) -> &str {
        Appliance::identity(self)
    }

    async fn archive(&self, specs: Vec<ArchiveSpec>) -> Result<Vec<Archived>, ApplianceError> {
        self.archive_many(specs).await
    }

    async fn pause(&self, pv: &str) -> Result<(), ApplianceError> {
        Appliance::pause(self, pv).await
    }

    async fn resume(&self, pv: &str) -> Result<(), ApplianceError> {
        Appliance::resume(self, pv).await
    }

    async fn delete(&self, pv: &str, delete_data: bool) -> Result<usize, ApplianceError> {
        Appliance::delete(self, pv, delete_data).await
    }

    fn status(&self, pv: &str) -> Option<PvStatus> {
        self.engine().status(pv)
    }

    fn statuses(&self, names: &[String]) -> Vec<Option<PvStatus>> {
        self.engine().statuses(names)
    }

    fn all_status(&self) -> Vec<PvStatus> {
        self.engine().all_status()
    }

    fn summaries(&self) -> Vec<PvSummary> {
        self.engine().summaries()
    }

    fn names(&self) -> Vec<String> {
        self.engine().names()
    }

    fn catalogue(&self) -> Arc<dyn Registry> {
        self.registry().clone()
    }

    fn now_secs(&self) -> i64 {
        self.clock().now().secs
    }

    fn policy_list(&self) -> Vec<(String, String)> {
        self.site_policy()
            .policies()
            .iter()
            .map(|p| (p.name.clone(), p.description.clone()))
            .collect()
    }

    fn policy_text(&self) -> String {
        let site = self.site_policy();
        let text = site.text();
        if let Some(e) = self.policy_file_error() {
            // The problem first, as comment lines, then the policies in force.
            let mut out: String = e.lines().map(|l| format!("# {l}\n")).collect();
            out.push_str(text);
            return out;
        }
        if text.is_empty() {
            "# No policy file is configured ([policy] file in the configuration): the one\n\
             # policy is \"default\", the Java appliance's defaults (MONITOR at 1 s, every\n\
             # configured data store).\n"
                .to_string()
        } else {
            text.to_string()
        }
    }

    fn control_status(&self, pv: &str) -> Option<ControlStatus> {
        Appliance::control_status(self, pv)
    }

    fn policy_file_error(&self) -> Option<String> {
        Appliance::policy_file_error(self)
    }

    fn last_write_error(&self, pv: &str) -> Option<String> {
        Appliance::last_write_error(self, pv)
    }

    async fn change_parameters(
        &self,
        pv: &str,
        method: Option<SamplingMethod>,
        period: SamplingPeriod,
    ) -> Result<String, ApplianceError> {
        Appliance::change_parameters(self, pv, method, period).await
    }

    async fn abort(&self, pv: &str) -> Result<bool, ApplianceError> {
        Appliance::abort(self, pv).await
    }

    async fn reapply_policies(
        &self,
        names: &[String],
        dry_run: bool,
    ) -> Result<Vec<Reapplied>, ApplianceError> {
        Appliance::reapply_policies(self, names, dry_run).await
    }

    async fn change_type(
        &self,
        pv: &str,
        to: archiver_pb::PayloadType,
    ) -> Result<Converted, ApplianceError> {
        Appliance::change_type(self, pv, to).await
    }

    async fn rename(&self, pv: &str, new_name: &str) -> Result<String, ApplianceError> {
        Appliance::rename(self, pv, new_name).await
    }

    async fn append_and_alias(&self, older: &str, newer: &str) -> Result<String, ApplianceError> {
        Appliance::append_and_alias(self, older, newer).await
    }

    async fn modify_archive_fields(
        &self,
        pv: &str,
        commands: &[String],
    ) -> Result<Vec<String>, ApplianceError> {
        Appliance::modify_archive_fields(self, pv, commands).await
    }

    async fn put_type_info(
        &self,
        pv: &str,
        info: PvTypeInfo,
        override_existing: bool,
        create_new: bool,
    ) -> Result<PvTypeInfo, ApplianceError> {
        Appliance::put_type_info(self, pv, info, override_existing, create_new).await
    }

    async fn consolidate(&self, pv: &str, store: &str) -> Result<EtlCounts, StorageOpsError> {
        Appliance::consolidate(self, pv, store).await
    }

    async fn delete_data_range(
        &self,
        pv: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<DeleteCounts, StorageOpsError> {
        Appliance::delete_data_range(self, pv, from, to).await
    }

    async fn disk_usage(&self, pv: &str) -> Result<Vec<(String, DiskUsage)>, StorageOpsError> {
        Appliance::disk_usage(self, pv).await
    }

    async fn disk_bytes(&self, pvs: Vec<String>) -> Result<Vec<u64>, StorageOpsError> {
        Appliance::disk_bytes(self, pvs).await
    }

    async fn store_report(&self) -> Result<Vec<StoreReport>, StorageOpsError> {
        Appliance::store_report(self).await
    }

    async fn bytes_per_sample(
        &self,
        pv: &str,
    ) -> Result<Vec<(String, Option<f64>)>, StorageOpsError> {
        Appliance::bytes_per_sample(self, pv).await
    }
}
