//! The appliance's management operations, which keep the engine and the catalogue in step:
//! archive requests are persisted at once and become type infos once the PV has connected
//! (its type and metadata are then known); pause, resume and delete update both; at start
//! the engine is restored from the catalogue.

use std::collections::HashSet;
use std::time::Duration;

use archiver_engine::{ArchiveOutcome, EngineError, PvConfig, PvStatus, SamplingMethod};
use archiver_registry::{ArchiveRequest, CtrlLimits, PvTypeInfo, RegistryError};
use serde_json::json;
use tracing::{info, warn};

use crate::state::AppState;

/// The Java default sampling period (policy `default`).
pub const DEFAULT_PERIOD: f64 = 1.0;

fn to_registry_method(m: SamplingMethod) -> archiver_registry::SamplingMethod {
    match m {
        SamplingMethod::Monitor => archiver_registry::SamplingMethod::Monitor,
        SamplingMethod::Scan => archiver_registry::SamplingMethod::Scan,
    }
}

fn from_registry_method(m: archiver_registry::SamplingMethod) -> Option<SamplingMethod> {
    match m {
        archiver_registry::SamplingMethod::Monitor => Some(SamplingMethod::Monitor),
        archiver_registry::SamplingMethod::Scan => Some(SamplingMethod::Scan),
        archiver_registry::SamplingMethod::DontArchive => None,
    }
}

/// The user parameters stored with a pending request.
fn request_params(cfg: &PvConfig, paused: bool) -> serde_json::Value {
    json!({
        "samplingmethod": cfg.method.as_str(),
        "samplingperiod": cfg.period,
        "archiveFields": cfg.archive_fields,
        "paused": paused,
    })
}

fn config_from_params(v: &serde_json::Value) -> (PvConfig, bool) {
    let method = v
        .get("samplingmethod")
        .and_then(|m| m.as_str())
        .and_then(SamplingMethod::parse)
        .unwrap_or(SamplingMethod::Monitor);
    let period = v
        .get("samplingperiod")
        .and_then(|p| {
            p.as_f64()
                .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(DEFAULT_PERIOD);
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
            period,
            archive_fields,
        },
        paused,
    )
}

/// Why a management operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MgmtError {
    /// The engine refused.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The catalogue failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A blocking task failed.
    #[error("background task failed: {0}")]
    Task(String),
}

impl AppState {
    /// Starts archiving every PV of `plan` at once and records the new requests (in one
    /// blocking task, so a bulk request costs one round trip to the catalogue).
    pub async fn archive_many(
        &self,
        plan: Vec<(String, PvConfig)>,
    ) -> Result<Vec<(String, ArchiveOutcome)>, MgmtError> {
        let mut outcomes = Vec::with_capacity(plan.len());
        let mut requests = Vec::new();
        for (pv, cfg) in plan {
            let outcome = self.engine.archive(&pv, cfg.clone())?;
            if outcome == ArchiveOutcome::Submitted {
                requests.push(ArchiveRequest {
                    pv_name: pv.clone(),
                    user_params: request_params(&cfg, false),
                });
            }
            outcomes.push((pv, outcome));
        }
        if !requests.is_empty() {
            let reg = self.registry.clone();
            blocking(move || reg.add_archive_requests(&requests)).await?;
        }
        Ok(outcomes)
    }

    /// Pauses `pv` (flushing its buffer) and records it.
    pub async fn pause(&self, pv: &str) -> Result<(), MgmtError> {
        self.engine.pause(pv).await?;
        self.set_paused(pv, true).await
    }

    /// Resumes `pv` and records it.
    pub async fn resume(&self, pv: &str) -> Result<(), MgmtError> {
        self.engine.resume(pv)?;
        self.set_paused(pv, false).await
    }

    async fn set_paused(&self, pv: &str, paused: bool) -> Result<(), MgmtError> {
        let reg = self.registry.clone();
        let pv = pv.to_string();
        let now = self.clock.now();
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

    /// Deletes a paused `pv` from the engine and the catalogue; with `delete_data`, its
    /// files too. Returns the number of files removed.
    pub async fn delete(&self, pv: &str, delete_data: bool) -> Result<usize, MgmtError> {
        self.engine.delete(pv).await?;
        let reg = self.registry.clone();
        let sts = self.engine.sts().clone();
        let name = pv.to_string();
        blocking(move || {
            reg.delete_type_info(&name)?;
            reg.remove_archive_request(&name)?;
            let mut removed = 0;
            if delete_data {
                match sts.partitions(&name) {
                    Ok(parts) => {
                        for p in parts {
                            match std::fs::remove_file(&p.path) {
                                Ok(()) => removed += 1,
                                Err(e) => warn!("cannot remove {}: {e}", p.path.display()),
                            }
                        }
                    }
                    Err(e) => warn!("cannot list files of {name}: {e}"),
                }
            }
            Ok::<_, RegistryError>(removed)
        })
        .await
    }

    /// Restores the engine from the catalogue: every type info (paused or not) and every
    /// pending request. Returns how many PVs were restored.
    pub async fn restore(&self) -> Result<usize, MgmtError> {
        let reg = self.registry.clone();
        let (infos, requests) =
            blocking(move || Ok::<_, MgmtError>((reg.all_type_infos()?, reg.archive_requests()?)))
                .await?;
        // The newest stored time of each PV, so the first event after the restart is not
        // stored twice.
        let sts = self.engine.sts().clone();
        let names: Vec<String> = infos
            .iter()
            .map(|i| i.pv_name.clone())
            .chain(requests.iter().map(|r| r.pv_name.clone()))
            .collect();
        let last_times: std::collections::HashMap<String, archiver_pb::Timestamp> =
            tokio::task::spawn_blocking(move || {
                names
                    .into_iter()
                    .filter_map(|n| match sts.last_time(&n) {
                        Ok(Some(t)) => Some((n, t)),
                        Ok(None) => None,
                        Err(e) => {
                            warn!(pv = %n, "cannot read the last stored sample: {e}");
                            None
                        }
                    })
                    .collect()
            })
            .await
            .map_err(|e| MgmtError::Task(e.to_string()))?;
        let mut n = 0;
        for info in &infos {
            let Some(method) = from_registry_method(info.sampling_method) else {
                continue;
            };
            let cfg = PvConfig {
                method,
                period: f64::from(info.sampling_period),
                archive_fields: info.archive_fields.clone(),
            };
            let last = last_times.get(&info.pv_name).copied();
            let restored =
                self.engine
                    .restore(&info.pv_name, cfg, Some(info.dbr_type), info.paused, last);
            match restored {
                Ok(_) => n += 1,
                Err(e) => warn!(pv = %info.pv_name, "cannot restore: {e}"),
            }
        }
        for req in &requests {
            let (cfg, paused) = config_from_params(&req.user_params);
            let last = last_times.get(&req.pv_name).copied();
            match self.engine.restore(&req.pv_name, cfg, None, paused, last) {
                Ok(_) => n += 1,
                Err(e) => warn!(pv = %req.pv_name, "cannot restore request: {e}"),
            }
        }
        info!(
            "restored {} PVs and {} pending requests",
            infos.len(),
            requests.len()
        );
        Ok(n)
    }

    /// Writes a type info for every PV whose type has become known (first connect) or
    /// whose metadata arrived since, and drops its pending request.
    pub async fn sync_catalogue(&self, done: &mut HashSet<String>) -> Result<usize, MgmtError> {
        let todo: Vec<PvStatus> = self.engine.known_status_except(done);
        if todo.is_empty() {
            return Ok(0);
        }
        let reg = self.registry.clone();
        let now = self.clock.now();
        let store = self.engine.sts().url();
        let identity = self.identity.to_string();
        let names: Vec<String> = todo.iter().map(|s| s.name.clone()).collect();
        blocking(move || {
            let mut infos = Vec::with_capacity(todo.len());
            for s in &todo {
                let Some(ty) = s.archived_type else { continue };
                let mut info = match reg.get_type_info(&s.name)? {
                    Some(info) => info,
                    None => match PvTypeInfo::new_for_archiving(
                        &s.name,
                        ty,
                        s.conn.element_count.max(1),
                        to_registry_method(s.config.method),
                        s.config.period as f32,
                        vec![store.clone()],
                        now,
                    ) {
                        Ok(i) => i,
                        Err(e) => {
                            warn!(pv = %s.name, "cannot build a type info: {e}");
                            continue;
                        }
                    },
                };
                info.appliance_identity = Some(identity.clone());
                info.archive_fields = s.config.archive_fields.clone();
                info.paused = s.state == archiver_engine::PvState::Paused;
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
                info.modification_time = Some(now);
                infos.push(info);
            }
            reg.put_type_infos(&infos)?;
            for i in &infos {
                reg.remove_archive_request(&i.pv_name)?;
            }
            Ok::<_, MgmtError>(())
        })
        .await?;
        let n = names.len();
        done.extend(names);
        Ok(n)
    }
}

/// Runs catalogue syncs every `period` until the engine is gone.
pub async fn run_catalogue_sync(app: AppState, period: Duration) {
    let mut done: HashSet<String> = match app.registry.all_pv_names() {
        Ok(names) => names.into_iter().collect(),
        Err(_) => HashSet::new(),
    };
    let mut iv = tokio::time::interval(period);
    loop {
        iv.tick().await;
        // Names deleted from the engine may be archived again later.
        let live: HashSet<String> = app.engine.names().into_iter().collect();
        done.retain(|n| live.contains(n));
        if let Err(e) = app.sync_catalogue(&mut done).await {
            warn!("catalogue sync failed: {e}");
        }
    }
}

async fn blocking<T: Send + 'static, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, MgmtError>
where
    E: Into<MgmtError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(MgmtError::Task(e.to_string())),
    }
}
