//! [`Appliance`]: the operations that keep the engine and the catalogue in step.
//!
//! An archive request is stored in the catalogue at once (`ArchivePVRequests`, so it
//! survives a restart) and becomes a `PVTypeInfo` once the PV has connected and its type
//! and DBR_CTRL metadata are known ([`Appliance::sync_catalogue`]); pause, resume and
//! delete update both; at start [`Appliance::restore`] rebuilds the engine from the
//! catalogue.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use archiver_engine::{ArchiveOutcome, Engine, PvConfig, PvState, PvStatus, SamplingMethod};
use archiver_pb::Timestamp;
use archiver_registry::{ArchiveRequest, CtrlLimits, PvTypeInfo, Registry, RegistryError};
use archiver_retrieval::{LiveSource, Retrieval};
use archiver_storage::DataStores;
use archiver_time::Clock;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::control::{Control, ControlStatus};
use crate::error::{ApplianceError, blocking};
use crate::live::EngineLive;
use crate::policy::{
    ArchiveSpec, Decided, Policy, SamplingPeriod, protocol_of, to_registry_method,
};
use crate::site_file::SiteSource;
use crate::site_policy::{PvFacts, SitePolicy};

/// What an [`Appliance`] is built from.
#[derive(Clone)]
pub struct ApplianceParts {
    /// The running engine.
    pub engine: Engine,
    /// The PV catalogue.
    pub registry: Arc<dyn Registry>,
    /// The clock of modification times.
    pub clock: Arc<dyn Clock>,
    /// This appliance's identity (`applianceIdentity`; `appliance0` by default).
    pub identity: Arc<str>,
    /// The defaults of new PVs.
    pub policy: Policy,
    /// Every configured data store (STS first). The engine writes to the first; it must
    /// have been started with that tier (or one on the same backend and folder), so that
    /// its writer and the appliance's deletions take the same PV locks.
    pub stores: DataStores,
}

impl std::fmt::Debug for ApplianceParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplianceParts")
            .field("identity", &self.identity)
            .field("policy", &self.policy)
            .field("stores", &self.stores)
            .finish_non_exhaustive()
    }
}

/// The appliance: engine, catalogue, clock, identity and policy, and the operations on
/// them. Cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct Appliance {
    parts: Arc<ApplianceParts>,
    control: Arc<Control>,
    site: Arc<SiteSource>,
}

/// The result of archiving one PV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// The PV name.
    pub pv: String,
    /// Whether it was new.
    pub outcome: ArchiveOutcome,
}

/// What archivePV does with one requested name ([`Appliance::archive_many`]).
enum Target {
    /// Archived already (or in its archive request) under `name`, the real name of the
    /// requested one; `field`: a stream field to add to its archive fields.
    Existing { name: String, field: Option<String> },
    /// A new PV; `field`: a stream field of the request (`PV.FIELD`) to archive with it.
    New { field: Option<String> },
}

/// The user parameters stored with a pending request (read back by
/// [`Appliance::restore`] and, for the type info, by [`Appliance::sync_catalogue`]):
/// the decided settings, and the policy the request named (`policyRequested`, kept so
/// that re-applying the policies honours it).
fn request_params(spec: &ArchiveSpec, d: &Decided, paused: bool) -> serde_json::Value {
    let requested = spec.policy.as_deref();
    // What the request itself set, kept so that re-applying the policies honours it.
    let mut user = serde_json::Map::new();
    if let Some(m) = spec.method {
        user.insert(USER_METHOD_FIELD.into(), m.as_str().into());
    }
    if let Some(p) = spec.period {
        user.insert(USER_PERIOD_FIELD.into(), p.secs().to_string().into());
    }
    if let Some(c) = &spec.controlling_pv {
        user.insert(USER_CONTROLLING_PV_FIELD.into(), c.clone().into());
    }
    json!({
        "user": user,
        "samplingmethod": d.config.method.as_str(),
        "samplingperiod": d.config.period,
        "archiveFields": d.config.archive_fields,
        "paused": paused,
        "policyName": d.policy_name,
        "policyRequested": requested,
        "dataStores": d.data_stores,
        "controllingPV": d.controlling_pv,
    })
}

/// What selects pvAccess in a PV name given to the engine (Java: `pva://`).
const PVA_PREFIX: &str = "pva://";

/// The name the engine is given for a stored PV: `pva://NAME` when it is archived over
/// pvAccess (`usePVAccess`), else NAME.
fn engine_name(pv: &str, pva: bool) -> String {
    if pva {
        format!("{PVA_PREFIX}{pv}")
    } else {
        pv.to_string()
    }
}

/// The extra field of a type info that keeps the policy an `archivePV` request named, so
/// that re-applying the policies honours it (Java keeps no such record).
pub(crate) const POLICY_REQUESTED_FIELD: &str = "policyRequested";

/// The extra field of a type info keeping the sampling method an `archivePV` request gave
/// (re-applying the policies keeps it).
pub(crate) const USER_METHOD_FIELD: &str = "userSamplingMethod";

/// The extra field keeping the sampling period an `archivePV` request gave.
pub(crate) const USER_PERIOD_FIELD: &str = "userSamplingPeriod";

/// The extra field keeping the controlling PV an `archivePV` request gave.
pub(crate) const USER_CONTROLLING_PV_FIELD: &str = "userControllingPV";

/// Puts what the policy decided, as stored with the archive request ([`request_params`]),
/// into a new type info: `policyName`, `dataStores`, `controllingPV` and the requested
/// policy.
fn decided_from_params(info: &mut PvTypeInfo, params: &serde_json::Value) {
    let text = |k: &str| params.get(k).and_then(|v| v.as_str()).map(String::from);
    info.policy_name = text("policyName");
    info.controlling_pv = text("controllingPV");
    if let Some(r) = text("policyRequested") {
        info.extra_fields
            .insert(POLICY_REQUESTED_FIELD.to_string(), r);
    }
    if let Some(user) = params.get("user").and_then(|u| u.as_object()) {
        for (k, v) in user {
            if let Some(v) = v.as_str() {
                info.extra_fields.insert(k.clone(), v.to_string());
            }
        }
    }
    if let Some(stores) = params.get("dataStores").and_then(|v| v.as_array()) {
        let urls: Vec<String> = stores
            .iter()
            .filter_map(|u| u.as_str().map(String::from))
            .collect();
        if !urls.is_empty() {
            info.data_stores = urls;
        }
    }
}

/// How long, in seconds after its first connection, the catalogue sync waits for a PV's
/// record type before recording it without one, when the site's rules use record types
/// (a server without an `RTYP` field never answers).
pub(crate) const RECORD_TYPE_WAIT_SECS: i64 = 5;

/// Why a stored value was replaced by the policy's, for the log.
type Repair = String;

/// How many PVs [`Appliance::restore`] hands to the engine at a time (their newest stored
/// times are read first, a chunk at a time).
const RESTORE_CHUNK: usize = 2048;

/// The time of the newest sample of `pv` over every store (a store whose files cannot be
/// read is logged and skipped).
pub fn newest_stored(stores: &DataStores, pv: &str) -> Option<Timestamp> {
    stores
        .tiers()
        .iter()
        .filter_map(|tier| match tier.last_time(pv) {
            Ok(t) => t,
            Err(e) => {
                warn!(
                    pv,
                    store = tier.name(),
                    "cannot read the last stored sample: {e}"
                );
                None
            }
        })
        .max()
}

/// How many partition files `pv` has over every store (a store that cannot be listed
/// counts none).
fn count_files(stores: &DataStores, pv: &str) -> usize {
    stores
        .tiers()
        .iter()
        .map(|tier| tier.partitions(pv).map_or(0, |p| p.len()))
        .sum()
}

impl Appliance {
    /// An appliance over `parts`. Logs a warning when the engine does not write to the
    /// first configured store (see [`ApplianceParts::stores`]).
    pub fn new(parts: ApplianceParts) -> Self {
        let sts = parts.engine.sts();
        let same = parts.stores.tiers().first().is_some_and(|first| {
            first.root() == sts.root()
                && Arc::ptr_eq(first.backend().locks(), sts.backend().locks())
        });
        if !same {
            warn!(
                engine = %sts.root().display(),
                "the engine does not write to the first configured data store; its writes \
                 and the appliance's deletions do not share the PV locks"
            );
        }
        let site = Arc::new(SiteSource::fixed(parts.policy.site.clone()));
        Appliance {
            parts: Arc::new(parts),
            control: Arc::new(Control::on_current_runtime()),
            site,
        }
    }

    /// This appliance with its site policy (`ApplianceParts::policy.site`) read from
    /// `path`, re-read when the file changes ([`SiteSource`]); `stores` check the
    /// stores a policy names. Call before cloning the appliance.
    pub fn with_policy_file(mut self, path: std::path::PathBuf) -> Self {
        self.site = Arc::new(SiteSource::watching(
            self.parts.policy.site.clone(),
            path,
            self.parts.stores.clone(),
        ));
        self
    }

    /// The site policy in force (the file re-read first if it changed).
    pub fn site_policy(&self) -> Arc<SitePolicy> {
        self.site.get()
    }

    /// Why the policy file's last change was not taken (naming the file and the
    /// problem); `None` when the policies in force are the file's.
    pub fn policy_file_error(&self) -> Option<String> {
        self.site.error()
    }

    /// The controlling PVs (conditional archiving).
    pub(crate) fn control(&self) -> &Control {
        &self.control
    }

    /// What `pv`'s status shows of its controlling PV, if it has one.
    pub fn control_status(&self, pv: &str) -> Option<ControlStatus> {
        self.control.status(pv)
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.parts.engine
    }

    /// The catalogue.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.parts.registry
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.parts.clock
    }

    /// This appliance's identity.
    pub fn identity(&self) -> &str {
        &self.parts.identity
    }

    /// The policy of new PVs.
    pub fn policy(&self) -> &Policy {
        &self.parts.policy
    }

    /// The configured data stores.
    pub fn stores(&self) -> &DataStores {
        &self.parts.stores
    }

    /// The engine as the retrieval pipeline's live source (its unwritten samples, and the
    /// type of a PV not yet in the catalogue).
    pub fn live_source(&self) -> Arc<dyn LiveSource> {
        Arc::new(EngineLive(self.parts.engine.clone()))
    }

    /// The retrieval pipeline over this appliance: its catalogue, its data stores (a PV's
    /// `dataStores` resolved by store name) and the engine as live source. Build it once
    /// and clone it (a few `Arc`s).
    pub fn retrieval(&self) -> Retrieval {
        Retrieval::new(
            self.parts.registry.clone(),
            Arc::new(self.parts.stores.clone()),
            self.live_source(),
        )
    }

    /// Starts archiving every PV of `specs` (what a spec leaves out comes from the
    /// policy) and records the new requests in the catalogue, in one blocking task, so a
    /// bulk request costs one round trip to the catalogue.
    ///
    /// # Errors
    ///
    /// The engine refuses a PV (bad name, bad period, too many fields: checked for every
    /// PV before any is archived; or shut down), or the catalogue fails.
    pub async fn archive_many(
        &self,
        mut specs: Vec<ArchiveSpec>,
    ) -> Result<Vec<Archived>, ApplianceError> {
        let targets = self.resolve_targets(&mut specs).await?;
        // Every policy is decided before anything is archived: an unknown policy name
        // refuses the whole request.
        let site = self.site_policy();
        let decided = specs
            .iter()
            .map(|spec| {
                self.parts
                    .policy
                    .decide_with(&site, spec, &PvFacts::name(&spec.pv))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // An alias must not name an archived PV (the catalogue would refuse it after the
        // PV is archived).
        for spec in &specs {
            if let Some(a) = &spec.alias
                && (self.parts.engine.status(a).is_some() || specs.iter().any(|s| &s.pv == a))
            {
                return Err(ApplianceError::Validation(format!(
                    "Cannot add alias {a} for {}: {a} is a PV being archived",
                    spec.pv
                )));
            }
        }
        self.refuse_foreign_aliases(&specs, &targets).await?;
        // Every new PV passes the engine's checks before any is archived: one bad name
        // refuses the whole request and archives nothing.
        for ((spec, d), target) in specs.iter().zip(&decided).zip(&targets) {
            if matches!(target, Target::New { .. }) {
                let (engine_pv, _, _) = protocol_of(&spec.pv, self.parts.policy.default_pva);
                self.parts.engine.check(&engine_pv, &d.config)?;
            }
        }
        // A field cannot be added to a catalogued PV the restore has not put in the
        // engine yet (its configuration is the engine's): refused before anything is
        // archived, saying so.
        for target in &targets {
            if let Target::Existing {
                name,
                field: Some(f),
            } = target
                && self.parts.engine.status(name).is_none()
            {
                return Err(ApplianceError::Validation(format!(
                    "{name} is being restored at start-up; archive {name}.{f} again once \
                     getPVStatus says it is being archived"
                )));
            }
        }
        let mut results = Vec::with_capacity(specs.len());
        let mut requests = Vec::new();
        let mut aliases = Vec::new();
        for ((spec, mut d), target) in specs.into_iter().zip(decided).zip(targets) {
            let field = match target {
                Target::Existing { name, field } => {
                    if let Some(f) = field {
                        self.add_archive_field(&name, &f).await?;
                    }
                    if let Some(a) = spec.alias {
                        aliases.push((a, name.clone()));
                    }
                    results.push(Archived {
                        pv: name,
                        outcome: ArchiveOutcome::AlreadySubmitted,
                    });
                    continue;
                }
                Target::New { field } => field,
            };
            if let Some(f) = field {
                // Java: the field joins the archive fields of the new PV. An empty list is
                // the policy's defaults; the field is added to them unless they have it.
                let fields = &mut d.config.archive_fields;
                if fields.is_empty() && !self.parts.policy.archive_fields.contains(&f) {
                    fields.clone_from(&self.parts.policy.archive_fields);
                }
                if !fields.is_empty() && !fields.contains(&f) {
                    fields.push(f);
                }
            }
            // `pva://NAME` (or a bare name with the policy's default): archived over
            // pvAccess, known as NAME (Java strips the prefix)
            let (engine_pv, name, pva) = protocol_of(&spec.pv, self.parts.policy.default_pva);
            let outcome = self.parts.engine.archive(&engine_pv, d.config.clone())?;
            if outcome == ArchiveOutcome::Submitted {
                let mut user_params = request_params(&spec, &d, false);
                if pva {
                    user_params["usePVAccess"] = json!(true);
                }
                requests.push(ArchiveRequest {
                    pv_name: name.clone(),
                    user_params,
                });
                if let Some(c) = &d.controlling_pv {
                    self.control().add(c, &name);
                }
            }
            if let Some(a) = spec.alias {
                aliases.push((a, name.clone()));
            }
            results.push(Archived { pv: name, outcome });
        }
        if !requests.is_empty() || !aliases.is_empty() {
            let reg = self.parts.registry.clone();
            blocking(move || {
                reg.add_archive_requests(&requests)?;
                for (alias, real) in &aliases {
                    reg.add_alias(alias, real)?;
                }
                Ok::<_, RegistryError>(())
            })
            .await?;
        }
        self.control().ensure_running(self);
        Ok(results)
    }

    /// What archivePV makes of each requested name (Java `ArchivePVAction.archivePV`):
    /// `PV.FIELD` with a stream field ([`Policy::is_stream_field`]) is `PV` with that
    /// field (`specs[i].pv` is rewritten to `PV`); a name the engine holds or the
    /// catalogue knows (a type info or a pending request the background restore has not
    /// put in the engine yet: found by a fresh-user test, such a PV was archived anew with
    /// the request's parameters), or an alias of one, is [`Target::Existing`] (answered
    /// "Already submitted" under the real name, nothing changed). Java learns of an alias only once its archive workflow has read the
    /// channel's `.NAME`, then drops the request and adds the alias; the catalogue knows
    /// the aliases here, so the answer is given at once. One blocking task looks up every
    /// name the engine does not hold.
    async fn resolve_targets(
        &self,
        specs: &mut [ArchiveSpec],
    ) -> Result<Vec<Target>, ApplianceError> {
        let policy = &self.parts.policy;
        let mut fields = Vec::with_capacity(specs.len());
        let mut unknown = Vec::new();
        for (i, spec) in specs.iter_mut().enumerate() {
            let prefix_len = ["pva://", "ca://"]
                .iter()
                .find(|p| spec.pv.starts_with(**p))
                .map_or(0, |p| p.len());
            let split = spec.pv[prefix_len..]
                .split_once('.')
                .filter(|(_, f)| policy.is_stream_field(f))
                .map(|(base, f)| (prefix_len + base.len(), f.to_string()));
            let field = split.map(|(end, f)| {
                spec.pv.truncate(end);
                f
            });
            if self.parts.engine.status(&spec.pv[prefix_len..]).is_none() {
                unknown.push((i, spec.pv[prefix_len..].to_string()));
            }
            fields.push(field);
        }
        let (real_names, catalogued): (HashMap<usize, String>, Vec<usize>) = if unknown.is_empty() {
            (HashMap::new(), Vec::new())
        } else {
            let reg = self.parts.registry.clone();
            let mut catalogued = Vec::new();
            blocking(move || {
                let mut found = HashMap::new();
                for (i, name) in unknown {
                    let real = reg.resolve_alias(&name)?;
                    let n = real.as_deref().unwrap_or(&name);
                    // Catalogued (a type info or a pending request) but not in the engine
                    // yet: the background restore has not reached it.
                    let known =
                        reg.get_type_info(n)?.is_some() || reg.get_archive_request(n)?.is_some();
                    if known {
                        catalogued.push(i);
                    }
                    if let Some(real) = real {
                        found.insert(i, real);
                    }
                }
                Ok::<_, RegistryError>((found, catalogued))
            })
            .await?
        };
        Ok(specs
            .iter()
            .zip(fields)
            .enumerate()
            .map(|(i, (spec, field))| {
                let name = real_names
                    .get(&i)
                    .cloned()
                    .unwrap_or_else(|| protocol_of(&spec.pv, false).1);
                if self.parts.engine.status(&name).is_some() || catalogued.contains(&i) {
                    Target::Existing { name, field }
                } else {
                    Target::New { field }
                }
            })
            .collect())
    }

    /// Pauses `pv` (its buffer is written first) and records it.
    ///
    /// A PV still in its archive request (it never connected: no PVTypeInfo yet) is not
    /// paused: Java's `PauseArchivingPV` finds no appliance for it and answers `Unable to
    /// pause PV X`; the request is cancelled with abortArchivingPV.
    ///
    /// # Errors
    ///
    /// [`archiver_engine::EngineError::NotFound`] or `AlreadyPaused`;
    /// [`ApplianceError::Validation`] for a PV in its archive request; the catalogue
    /// fails.
    pub async fn pause(&self, pv: &str) -> Result<(), ApplianceError> {
        let never_connected = self
            .parts
            .engine
            .status(pv)
            .is_some_and(|s| s.archived_type.is_none());
        if never_connected && !self.has_type_info(pv).await? {
            return Err(ApplianceError::Validation(format!(
                "Unable to pause PV {pv}: it has not connected yet (no PVTypeInfo); \
                 use abortArchivingPV to cancel its archive request"
            )));
        }
        if self.control.is_paused_by_control(pv) {
            // Paused by its controlling PV: now the operator's pause.
            self.control.operator_took_over(pv);
        } else {
            self.parts.engine.pause(pv).await?;
        }
        self.set_paused(pv, true).await
    }

    /// Resumes a paused `pv` and records it.
    ///
    /// # Errors
    ///
    /// [`archiver_engine::EngineError::NotFound`] or `NotPaused`, or the catalogue fails.
    pub async fn resume(&self, pv: &str) -> Result<(), ApplianceError> {
        self.parts.engine.resume(pv)?;
        self.control.operator_took_over(pv);
        self.set_paused(pv, false).await
    }

    async fn set_paused(&self, pv: &str, paused: bool) -> Result<(), ApplianceError> {
        let reg = self.parts.registry.clone();
        let pv = pv.to_string();
        let now = self.parts.clock.now();
        blocking(move || {
            if let Some(mut info) = reg.get_type_info(&pv)? {
                info.paused = paused;
                info.modification_time = Some(now);
                reg.put_type_info(&info)?;
            } else if let Some(mut req) = reg.get_archive_request(&pv)? {
                if let Some(o) = req.user_params.as_object_mut() {
                    o.insert("paused".into(), json!(paused));
                }
                reg.add_archive_request(&req)?;
            }
            Ok::<_, RegistryError>(())
        })
        .await
    }

    /// archivePV's `alias`: an alias the catalogue already holds for another PV is refused
    /// (it would be moved silently; `addAlias` is the call that moves an alias).
    ///
    /// # Errors
    ///
    /// [`ApplianceError::BadRequest`] naming the alias and its PV; the catalogue fails.
    async fn refuse_foreign_aliases(
        &self,
        specs: &[ArchiveSpec],
        targets: &[Target],
    ) -> Result<(), ApplianceError> {
        let wanted: Vec<(String, String)> = specs
            .iter()
            .zip(targets)
            .filter_map(|(spec, target)| {
                let alias = spec.alias.clone()?;
                let real = match target {
                    Target::Existing { name, .. } => name.clone(),
                    Target::New { .. } => protocol_of(&spec.pv, self.parts.policy.default_pva).1,
                };
                Some((alias, real))
            })
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let reg = self.parts.registry.clone();
        let taken = blocking(move || {
            for (alias, real) in wanted {
                if let Some(owner) = reg.resolve_alias(&alias)?
                    && owner != real
                {
                    return Ok::<_, RegistryError>(Some((alias, real, owner)));
                }
            }
            Ok(None)
        })
        .await?;
        match taken {
            Some((alias, real, owner)) => Err(ApplianceError::BadRequest(format!(
                "Cannot add alias {alias} for {real}: {alias} is already an alias of {owner}"
            ))),
            None => Ok(()),
        }
    }

    /// Deletes a paused `pv` from the engine and the catalogue, its aliases with it (Java
    /// `DeletePV` removes every alias whose real name is the PV, whatever `deleteData`
    /// says: an alias left behind would name nothing, and block a new PV of that name);
    /// with `delete_data`, its files in every data store too
    /// ([`DataStores::remove_pv_data`], under the PV's storage write lock, so no write of
    /// the PV, the engine's or an ETL job's, interleaves). Returns the number of files
    /// removed (a file that cannot be removed is logged and not counted).
    ///
    /// # Errors
    ///
    /// [`archiver_engine::EngineError::NotFound`] or `NotPaused`, or the catalogue fails.
    pub async fn delete(&self, pv: &str, delete_data: bool) -> Result<usize, ApplianceError> {
        self.parts.engine.delete(pv).await?;
        if delete_data {
            // No journal segment left to bring the deleted samples back after a crash
            // (a PV archived again under the name would take them).
            self.parts.engine.journal_checkpoint().await;
        }
        self.control.remove(pv);
        let reg = self.parts.registry.clone();
        let stores = self.parts.stores.clone();
        let name = pv.to_string();
        blocking(move || {
            reg.delete_type_info(&name)?;
            reg.remove_archive_request(&name)?;
            for alias in reg.aliases_of(&name)? {
                reg.remove_alias(&alias)?;
            }
            if !delete_data {
                return Ok(0);
            }
            let before = count_files(&stores, &name);
            let removed = match stores.remove_pv_data(&name) {
                Ok(n) => n,
                Err(e) => {
                    let left = count_files(&stores, &name);
                    warn!(pv = %name, "{left} data files not removed: {e}");
                    before.saturating_sub(left)
                }
            };
            Ok::<_, RegistryError>(removed)
        })
        .await
    }

    /// Restores the engine from the catalogue: every type info (paused or not; not
    /// `DONT_ARCHIVE`) and every pending request, each with the time of its newest stored
    /// sample so that the first event after the restart is not stored twice. A stored
    /// sampling period out of range ([`SamplingPeriod::new`]) or a stored method that is
    /// not one is logged, replaced by the policy's default, and corrected in the
    /// catalogue: the PV is restored, never skipped. Returns how many PVs were restored.
    ///
    /// # Errors
    ///
    /// The catalogue cannot be read or corrected. A PV the engine refuses is logged and
    /// skipped.
    pub async fn restore(&self) -> Result<usize, ApplianceError> {
        let reg = self.parts.registry.clone();
        let (infos, requests, request_times) = blocking(move || {
            Ok::<_, ApplianceError>((
                reg.all_type_infos()?,
                reg.archive_requests()?,
                reg.archive_request_times()?,
            ))
        })
        .await?;
        let policy = &self.parts.policy;
        let mut n = 0;
        let mut fixed_infos = Vec::new();
        let mut fixed_requests = Vec::new();
        // In chunks: the first PVs search and connect while the newest stored times of
        // the next ones are read (one file tail per PV per store).
        let mut last_times = HashMap::new();
        for (i, info) in infos.iter().enumerate() {
            if i % RESTORE_CHUNK == 0 {
                let names = infos[i..(i + RESTORE_CHUNK).min(infos.len())]
                    .iter()
                    .map(|i| i.pv_name.clone())
                    .collect();
                last_times = self.last_stored_times(names).await?;
            }
            let cfg = match policy.config_from_type_info(info) {
                Ok(Some(cfg)) => cfg,
                Ok(None) => {
                    debug!(pv = %info.pv_name, "DONT_ARCHIVE: not restored");
                    continue;
                }
                Err(e) => {
                    warn!(
                        pv = %info.pv_name,
                        "stored type info: {e}; restored with the default sampling period {}",
                        policy.default_period
                    );
                    let mut fixed = info.clone();
                    fixed.sampling_period = policy.default_period.secs() as f32;
                    fixed.modification_time = Some(self.parts.clock.now());
                    let cfg = policy
                        .config_from_type_info(&fixed)
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| policy.pv_config(&ArchiveSpec::new(&info.pv_name)));
                    fixed_infos.push(fixed);
                    cfg
                }
            };
            let last = last_times.get(&info.pv_name).copied();
            match self.parts.engine.restore(
                &engine_name(&info.pv_name, info.use_pv_access == Some(true)),
                cfg,
                Some(info.dbr_type),
                info.paused,
                last,
            ) {
                Ok(_) => {
                    // The catalogue holds it: the sync has nothing to record for it.
                    self.parts.engine.mark_catalogued([info.pv_name.as_str()]);
                    if let Some(c) = &info.controlling_pv {
                        self.control.add(c, &info.pv_name);
                    }
                    // Until the IOC answers, the metadata is what was archived.
                    self.parts
                        .engine
                        .seed_meta(&info.pv_name, crate::manage::meta_from_type_info(info));
                    n += 1;
                }
                Err(e) => warn!(pv = %info.pv_name, "cannot restore: {e}"),
            }
        }
        let names = requests.iter().map(|r| r.pv_name.clone()).collect();
        let last_times = self.last_stored_times(names).await?;
        for req in &requests {
            let (cfg, paused, repairs) = self.config_from_params(&req.user_params);
            if !repairs.is_empty() {
                warn!(
                    pv = %req.pv_name,
                    "stored archive request: {}; restored with the policy's defaults",
                    repairs.join("; ")
                );
                let mut user_params = req.user_params.clone();
                if let Some(o) = user_params.as_object_mut() {
                    o.insert("samplingmethod".into(), cfg.method.as_str().into());
                    o.insert("samplingperiod".into(), cfg.period.into());
                }
                fixed_requests.push(ArchiveRequest {
                    pv_name: req.pv_name.clone(),
                    user_params,
                });
            }
            let last = last_times.get(&req.pv_name).copied();
            let pva = req.user_params.get("usePVAccess") == Some(&json!(true));
            match self.parts.engine.restore(
                &engine_name(&req.pv_name, pva),
                cfg,
                None,
                paused,
                last,
            ) {
                Ok(_) => {
                    if let Some(c) = req
                        .user_params
                        .get("controllingPV")
                        .and_then(|c| c.as_str())
                    {
                        self.control.add(c, &req.pv_name);
                    }
                    // the request time survives the restart (getNeverConnectedPVs)
                    if let Some(t) = request_times.get(&req.pv_name) {
                        self.parts.engine.set_requested_at(&req.pv_name, t.secs);
                    }
                    n += 1
                }
                Err(e) => warn!(pv = %req.pv_name, "cannot restore request: {e}"),
            }
        }
        if !fixed_infos.is_empty() || !fixed_requests.is_empty() {
            let reg = self.parts.registry.clone();
            blocking(move || {
                reg.put_type_infos(&fixed_infos)?;
                reg.add_archive_requests(&fixed_requests)
            })
            .await?;
        }
        self.control.ensure_running(self);
        info!(
            "restored {} PVs and {} pending requests",
            infos.len(),
            requests.len()
        );
        Ok(n)
    }

    /// The newest stored time, over every data store, of each PV of `names` that has one
    /// (read on a blocking thread; a store whose files cannot be read is logged and left
    /// out).
    async fn last_stored_times(
        &self,
        names: Vec<String>,
    ) -> Result<HashMap<String, Timestamp>, ApplianceError> {
        let stores = self.parts.stores.clone();
        blocking(move || {
            Ok::<_, ApplianceError>(
                names
                    .into_iter()
                    .filter_map(|n| newest_stored(&stores, &n).map(|t| (n, t)))
                    .collect(),
            )
        })
        .await
    }

    /// The engine settings of a stored request, whether it is paused, and what had to be
    /// replaced by the policy's defaults (a method or period that is not valid).
    fn config_from_params(&self, v: &serde_json::Value) -> (PvConfig, bool, Vec<Repair>) {
        let policy = &self.parts.policy;
        let mut repairs = Vec::new();
        let method = match v.get("samplingmethod") {
            None | Some(serde_json::Value::Null) => policy.default_method,
            Some(m) => match m.as_str().and_then(SamplingMethod::parse) {
                Some(m) => m,
                None => {
                    repairs.push(format!("samplingmethod {m} is not MONITOR or SCAN"));
                    policy.default_method
                }
            },
        };
        let period = match v.get("samplingperiod") {
            None | Some(serde_json::Value::Null) => Ok(policy.default_period),
            Some(serde_json::Value::String(s)) => SamplingPeriod::parse(s),
            Some(p) => match p.as_f64() {
                Some(secs) => SamplingPeriod::new(secs),
                None => SamplingPeriod::parse(&p.to_string()),
            },
        };
        let period = period.unwrap_or_else(|e| {
            repairs.push(e.to_string());
            policy.default_period
        });
        let archive_fields = v
            .get("archiveFields")
            .and_then(|a| a.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let paused = v.get("paused").and_then(|p| p.as_bool()).unwrap_or(false);
        (
            PvConfig {
                method,
                period: period.secs(),
                archive_fields,
            },
            paused,
            repairs,
        )
    }

    /// Writes a type info for every PV whose type and metadata have become known (first
    /// connect) and that the catalogue does not hold as of its connection yet (or for
    /// every such PV when `all`: the final sync at shutdown), drops its pending request,
    /// and marks it recorded ([`archiver_engine::Engine::mark_catalogued`]). Returns how
    /// many PVs were recorded. A new type info gets the policy's data stores.
    ///
    /// # Errors
    ///
    /// The catalogue fails (nothing of this round is marked, so the next round tries
    /// again).
    pub async fn sync_catalogue(&self, all: bool) -> Result<usize, ApplianceError> {
        Ok(self.record_connected(all).await?.0.len())
    }

    /// [`Appliance::sync_catalogue`], returning the names recorded and, among them, those
    /// whose type info was made from their archive request this round.
    pub(crate) async fn record_connected(
        &self,
        all: bool,
    ) -> Result<(Vec<String>, Vec<String>), ApplianceError> {
        let mut todo: Vec<PvStatus> = self.parts.engine.uncatalogued_status(all);
        if self.site_policy().uses_record_types() {
            // The policy is decided once the PV is recorded: wait a little for its
            // record type (read on connection), which the site's rules use.
            let now = self.parts.clock.now().secs;
            todo.retain(|s| {
                s.conn.record_type.is_some()
                    || now - s.conn.first_established_secs >= RECORD_TYPE_WAIT_SECS
            });
        }
        if todo.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let reg = self.parts.registry.clone();
        let now = self.parts.clock.now();
        let stores = self.parts.policy.data_stores.clone();
        let identity = self.parts.identity.to_string();
        let names: Vec<String> = todo.iter().map(|s| s.name.clone()).collect();
        let pva: HashSet<String> = names
            .iter()
            .filter(|n| self.parts.engine.uses_pva(n))
            .cloned()
            .collect();
        // A pause by the controlling PV is not the operator's: not recorded as paused.
        let control_paused: HashSet<String> = names
            .iter()
            .filter(|n| self.control.is_paused_by_control(n))
            .cloned()
            .collect();
        let created = blocking(move || {
            let mut infos = Vec::with_capacity(todo.len());
            // The PVs whose type info is made here, from their archive request: only
            // those have their policy decided on connection (Java decides it in the
            // archivePV workflow; a type info put by putPVTypeInfo or imported is kept
            // as given).
            let mut created = Vec::new();
            let mut unchanged = Vec::new();
            for s in &todo {
                let Some(ty) = s.archived_type else { continue };
                let stored = reg.get_type_info(&s.name)?;
                let mut info = match stored.clone() {
                    Some(info) => info,
                    None => {
                        created.push(s.name.clone());
                        let params = reg
                            .get_archive_request(&s.name)?
                            .map(|r| r.user_params)
                            .unwrap_or_default();
                        match PvTypeInfo::new_for_archiving(
                            &s.name,
                            ty,
                            s.conn.element_count.max(1),
                            to_registry_method(s.config.method),
                            s.config.period as f32,
                            stores.clone(),
                            now,
                        ) {
                            Ok(mut i) => {
                                decided_from_params(&mut i, &params);
                                i
                            }
                            Err(e) => {
                                warn!(pv = %s.name, "cannot build a type info: {e}");
                                continue;
                            }
                        }
                    }
                };
                info.appliance_identity = Some(identity.clone());
                info.use_pv_access = Some(pva.contains(&s.name));
                if let Some(r) = &s.conn.record_type {
                    info.extra_fields.insert("RTYP".to_string(), r.clone());
                }
                info.archive_fields = s.config.archive_fields.clone();
                info.paused = s.state == PvState::Paused && !control_paused.contains(&s.name);
                info.set_units(s.meta.egu.clone());
                info.set_precision(f64::from(s.meta.prec));
                let l = s.meta.limits;
                info.set_limits(CtrlLimits {
                    upper_display: l[0],
                    lower_display: l[1],
                    upper_alarm: l[2],
                    upper_warning: l[3],
                    lower_warning: l[4],
                    lower_alarm: l[5],
                    upper_ctrl: l[6],
                    lower_ctrl: l[7],
                });
                if let Some(server) = s.conn.server {
                    info.set_host_name(server.ip().to_string());
                }
                // Only a change is written and bumps modificationTime (found by a
                // fresh-user test: every shutdown's final sync rewrote every PV's, and
                // getRecentlyModifiedPVs then listed them all).
                if stored.as_ref() == Some(&info) {
                    unchanged.push(s.name.as_str());
                    continue;
                }
                info.modification_time = Some(now);
                infos.push(info);
            }
            reg.put_type_infos(&infos)?;
            for pv in infos.iter().map(|i| i.pv_name.as_str()).chain(unchanged) {
                reg.remove_archive_request(pv)?;
            }
            Ok::<_, ApplianceError>(created)
        })
        .await?;
        self.parts
            .engine
            .mark_catalogued(names.iter().map(String::as_str));
        Ok((names, created))
    }
}
