//! Re-applying the site policies to PVs already archived (`reapplyPolicies`): what the
//! Java appliance cannot do (its policy runs once, at archive time; issue #401).
//!
//! For each PV with a `PVTypeInfo`, the policy is decided again ([`crate::Policy::decide`])
//! from what is known now — its name, `extraFields.RTYP`, its element count, the event
//! rate the engine measured since the PV was added (over at least [`MIN_RATE_SECS`];
//! else the `computedEventRate` a previous re-application recorded) — honouring what its `archivePV`
//! request set itself (kept in `extraFields`: `policyRequested`, `userSamplingMethod`,
//! `userSamplingPeriod`, `userControllingPV`). Then:
//!
//! * sampling method and period, and the archive fields when the policy names some, go to
//!   the engine (the PV's channel is recreated, as `changeArchivalParameters` does; a
//!   paused PV stays paused) and to the type info;
//! * `dataStores` becomes the policy's stores, **plus every store the PV had that still
//!   holds files of it**, so that no archived sample becomes unreachable: the data is
//!   kept, never moved or deleted;
//! * `controllingPV` and `policyName` are updated; a PV its old controlling PV had paused
//!   is resumed when it has none any more.
//!
//! A PV still waiting for its first connection (no type info) is left alone: its policy is
//! decided again once it has connected and been recorded (the catalogue sync does so,
//! without the event rate, when the file has rules: Java, too, decides once the metadata
//! is known). `dry_run` reports what would change without changing anything.

use archiver_engine::{PvConfig, PvState, PvStatus, SamplingMethod};
use archiver_registry::PvTypeInfo;
use archiver_storage::DataStores;

use crate::appliance::{
    Appliance, POLICY_REQUESTED_FIELD, USER_CONTROLLING_PV_FIELD, USER_METHOD_FIELD,
    USER_PERIOD_FIELD,
};
use crate::error::{ApplianceError, blocking};
use crate::policy::{ArchiveSpec, Decided, SamplingPeriod, to_registry_method};
use crate::site_policy::PvFacts;

/// The shortest time, in seconds, over which the engine's count of a PV's events gives
/// its event rate; over a shorter one (just after a restart or a reconfiguration) the rate
/// recorded in `PVTypeInfo.computedEventRate` by the last re-application is used.
pub const MIN_RATE_SECS: i64 = 2;

/// What re-applying the policies did to one PV.
#[derive(Debug, Clone, PartialEq)]
pub struct Reapplied {
    /// The PV.
    pub pv: String,
    /// `policyName` before (`None` for a PV archived before policies were recorded).
    pub previous_policy: Option<String>,
    /// The policy decided now (`None` when the PV was skipped).
    pub policy: Option<String>,
    /// Each change, as `what: old -> new` (empty: unchanged), or why the PV was skipped.
    pub changes: Vec<String>,
    /// False when the PV was skipped (unknown, not yet connected).
    pub applied: bool,
}

/// The stores of a PV after re-application: every configured store, in the configured
/// order, that `decided` lists or that `old` lists and holds files of `pv`; then the
/// stores of `old` that are not configured here (kept as they are).
fn merged_stores(stores: &DataStores, pv: &str, decided: &[String], old: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(decided.len().max(old.len()));
    for tier in stores.tiers() {
        let url = tier.url();
        let wanted = decided.contains(&url);
        let kept = old.contains(&url) && tier.partitions(pv).is_ok_and(|p| !p.is_empty());
        if wanted || kept {
            out.push(url);
        }
    }
    let configured: Vec<String> = stores.tiers().iter().map(|t| t.url()).collect();
    out.extend(old.iter().filter(|u| !configured.contains(u)).cloned());
    out
}

/// The changes from (`status`, `info`) to `decided` with `stores`, as text.
fn describe(status: &PvStatus, info: &PvTypeInfo, d: &Decided, stores: &[String]) -> Vec<String> {
    let mut c = Vec::new();
    if status.config.method != d.config.method {
        c.push(format!(
            "samplingMethod: {} -> {}",
            status.config.method.as_str(),
            d.config.method.as_str()
        ));
    }
    if status.config.period != d.config.period {
        c.push(format!(
            "samplingPeriod: {} -> {}",
            status.config.period, d.config.period
        ));
    }
    if !d.config.archive_fields.is_empty()
        && status.config.archive_fields != d.config.archive_fields
    {
        c.push(format!(
            "archiveFields: {} -> {}",
            status.config.archive_fields.join(","),
            d.config.archive_fields.join(",")
        ));
    }
    if info.data_stores != stores {
        c.push(format!(
            "dataStores: {} -> {}",
            info.data_stores.join(" "),
            stores.join(" ")
        ));
    }
    if info.controlling_pv != d.controlling_pv {
        c.push(format!(
            "controllingPV: {} -> {}",
            info.controlling_pv.as_deref().unwrap_or(""),
            d.controlling_pv.as_deref().unwrap_or("")
        ));
    }
    if info.policy_name.as_deref() != Some(d.policy_name.as_str()) {
        c.push(format!(
            "policyName: {} -> {}",
            info.policy_name.as_deref().unwrap_or(""),
            d.policy_name
        ));
    }
    c
}

impl Appliance {
    /// Re-applies the site policies to `names` (see the module documentation); with
    /// `dry_run`, only reports. One [`Reapplied`] per name, in order.
    ///
    /// # Errors
    ///
    /// The catalogue or the engine fails, or a PV's requested policy no longer exists
    /// ([`ApplianceError::Policy`]; the PVs before it are changed already);
    /// [`ApplianceError::Validation`] naming the file and the problem when the policy
    /// file was changed but does not read (re-applying the policies read before is not
    /// what the operator asked for).
    pub async fn reapply_policies(
        &self,
        names: &[String],
        dry_run: bool,
    ) -> Result<Vec<Reapplied>, ApplianceError> {
        if let Some(e) = self.policy_file_error() {
            return Err(ApplianceError::Validation(e));
        }
        self.reapply(names, dry_run, true).await
    }

    /// The policies of PVs just recorded after their first connection, decided again with
    /// their element count and record type (not their event rate, measured for seconds
    /// only): Java decides the policy once the metadata is known. Changes are logged.
    pub(crate) async fn decide_on_connect(&self, names: &[String]) -> Result<(), ApplianceError> {
        for r in self.reapply(names, false, false).await? {
            if r.applied && !r.changes.is_empty() {
                tracing::info!(pv = %r.pv, changes = ?r.changes, "policy decided on connection");
            }
        }
        Ok(())
    }

    async fn reapply(
        &self,
        names: &[String],
        dry_run: bool,
        use_rate: bool,
    ) -> Result<Vec<Reapplied>, ApplianceError> {
        let reg = self.registry().clone();
        let wanted = names.to_vec();
        let infos = blocking(move || {
            wanted
                .iter()
                .map(|n| reg.get_type_info(n))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        let now = self.clock().now().secs;
        let site = self.site_policy();
        let mut out = Vec::with_capacity(names.len());
        for (name, info) in names.iter().zip(infos) {
            let skipped = |why: &str| Reapplied {
                pv: name.clone(),
                previous_policy: None,
                policy: None,
                changes: vec![why.to_string()],
                applied: false,
            };
            let Some(status) = self.engine().status(name) else {
                out.push(skipped("not archived by this appliance"));
                continue;
            };
            let Some(info) = info else {
                out.push(skipped(
                    "not connected yet: its policy is decided when it is first recorded",
                ));
                continue;
            };
            let elapsed = now - status.counters.added_secs;
            // Measured since the engine got the PV (its request, the restore, or the last
            // reconfiguration); over a shorter time, the rate last recorded.
            let measured =
                (use_rate && elapsed >= MIN_RATE_SECS).then(|| status.counters.event_rate(elapsed));
            let count = if status.conn.element_count > 0 {
                status.conn.element_count
            } else {
                info.element_count
            };
            let facts = PvFacts {
                pv: name,
                rtyp: status
                    .conn
                    .record_type
                    .as_deref()
                    .or(info.extra_fields.get("RTYP").map(String::as_str)),
                element_count: Some(count),
                event_rate: if use_rate {
                    measured.or((info.computed_event_rate > 0.0)
                        .then_some(f64::from(info.computed_event_rate)))
                } else {
                    None
                },
            };
            let user = |k: &str| info.extra_fields.get(k);
            let spec = ArchiveSpec {
                policy: user(POLICY_REQUESTED_FIELD).cloned(),
                method: user(USER_METHOD_FIELD).and_then(|m| SamplingMethod::parse(m)),
                period: user(USER_PERIOD_FIELD).and_then(|p| SamplingPeriod::parse(p).ok()),
                controlling_pv: user(USER_CONTROLLING_PV_FIELD).cloned(),
                ..ArchiveSpec::new(name.clone())
            };
            let d = self.policy().decide_with(&site, &spec, &facts)?;
            let stores = self.stores().clone();
            let (pv, new_urls, old_urls) = (
                name.clone(),
                d.data_stores.clone(),
                info.data_stores.clone(),
            );
            let data_stores = blocking(move || {
                Ok::<_, ApplianceError>(merged_stores(&stores, &pv, &new_urls, &old_urls))
            })
            .await?;
            let changes = describe(&status, &info, &d, &data_stores);
            if !dry_run && !changes.is_empty() {
                self.apply_decision(&status, &d, data_stores, measured)
                    .await?;
            }
            out.push(Reapplied {
                pv: name.clone(),
                previous_policy: info.policy_name.clone(),
                policy: Some(d.policy_name.clone()),
                changes,
                applied: true,
            });
        }
        Ok(out)
    }

    /// Puts `d` into the engine, the controlling PVs and the catalogue.
    async fn apply_decision(
        &self,
        status: &PvStatus,
        d: &Decided,
        data_stores: Vec<String>,
        event_rate: Option<f64>,
    ) -> Result<(), ApplianceError> {
        let pv = status.name.as_str();
        let fields = if d.config.archive_fields.is_empty() {
            status.config.archive_fields.clone()
        } else {
            d.config.archive_fields.clone()
        };
        let config = PvConfig {
            archive_fields: fields,
            ..d.config.clone()
        };
        let control_paused = self.control().is_paused_by_control(pv);
        let old_controlling = self.control().controlling_pv(pv);
        if config != status.config {
            let paused = status.state == PvState::Paused;
            self.reconfigure(status, config.clone(), paused).await?;
        }
        if old_controlling != d.controlling_pv {
            self.control().remove(pv);
            if control_paused
                && self
                    .engine()
                    .status(pv)
                    .is_some_and(|s| s.state == PvState::Paused)
            {
                // Its old controlling PV paused it; the new one (if any) decides again.
                self.engine().resume(pv)?;
            }
            if let Some(c) = &d.controlling_pv {
                self.control().add(c, pv);
                self.control().ensure_running(self);
            }
        }
        let d = d.clone();
        let reg = self.registry().clone();
        let name = pv.to_string();
        let now = self.clock().now();
        blocking(move || {
            if let Some(mut info) = reg.get_type_info(&name)? {
                info.sampling_method = to_registry_method(config.method);
                info.sampling_period = config.period as f32;
                info.archive_fields = config.archive_fields;
                info.data_stores = data_stores;
                info.controlling_pv = d.controlling_pv;
                info.policy_name = Some(d.policy_name);
                if let Some(r) = event_rate {
                    info.computed_event_rate = r as f32;
                }
                info.modification_time = Some(now);
                reg.put_type_info(&info)?;
            }
            Ok::<_, ApplianceError>(())
        })
        .await
    }
}
