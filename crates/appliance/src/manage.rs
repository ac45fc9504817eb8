//! The management operations beyond archive/pause/resume/delete (spec §3): change the
//! archival parameters, abort a request, rename a PV (its data copied under the new name),
//! append an old PV's data to a new one and alias it, edit the archive fields, import a
//! `PVTypeInfo`. Each keeps the engine and the catalogue in step, as the operations of
//! [`Appliance`] do.
//!
//! A refusal that Java answers with `{"validation": "..."}` (a PV that must be paused
//! first, a name that exists already) is [`ApplianceError::Validation`] with Java's
//! message; an unknown PV is [`ApplianceError::UnknownPv`].

use archiver_engine::{PvConfig, PvMeta, PvState, PvStatus, SamplingMethod};
use archiver_pb::{Sample, Timestamp};
use archiver_registry::{PvTypeInfo, RegistryError};
use archiver_storage::DataStores;

use crate::appliance::{Appliance, USER_METHOD_FIELD, USER_PERIOD_FIELD, newest_stored};
use crate::error::{ApplianceError, blocking};
use crate::policy::{SamplingPeriod, to_registry_method};

/// Samples copied per append when data moves to a new name.
const COPY_BATCH: usize = 8192;

/// The engine's display metadata from a catalogue entry (the limits in the engine's
/// order: upper/lower display, upper alarm, upper warning, lower warning, lower alarm,
/// upper/lower control).
pub fn meta_from_type_info(info: &PvTypeInfo) -> PvMeta {
    let l = info.limits;
    PvMeta {
        egu: info.units.clone().unwrap_or_default(),
        prec: info.precision as i16,
        limits: [
            l.upper_display,
            l.lower_display,
            l.upper_alarm,
            l.upper_warning,
            l.lower_warning,
            l.lower_alarm,
            l.upper_ctrl,
            l.lower_ctrl,
        ],
        labels: Vec::new(),
        known: true,
    }
}

/// Copies every sample of `from` in every store to `to` (same store), oldest first.
/// Returns the number of samples copied; samples the files refuse (not newer than what
/// `to` holds there) are not counted.
fn copy_data(stores: &DataStores, from: &str, to: &str) -> Result<u64, ApplianceError> {
    let mut copied = 0u64;
    for tier in stores.tiers() {
        let mut q = tier
            .query(from, Timestamp::new(0, 0), Timestamp::new(i64::MAX / 4, 0))
            .map_err(|e| ApplianceError::Storage(e.to_string()))?;
        let mut batch: Vec<Sample> = Vec::with_capacity(COPY_BATCH);
        let mut ty = None;
        loop {
            let next = q
                .next_sample()
                .map_err(|e| ApplianceError::Storage(e.to_string()))?
                .cloned();
            let header_ty = q.header().map(|h| h.payload_type);
            let flush = next.is_none() || batch.len() >= COPY_BATCH || header_ty != ty;
            if flush && !batch.is_empty() {
                if let Some(t) = ty {
                    let c = tier
                        .append(to, t, &batch)
                        .map_err(|e| ApplianceError::Storage(e.to_string()))?;
                    copied += c.written;
                }
                batch.clear();
            }
            match next {
                Some(s) => {
                    ty = header_ty;
                    batch.push(s);
                }
                None => break,
            }
        }
    }
    Ok(copied)
}

impl Appliance {
    /// The status of `pv` or [`ApplianceError::UnknownPv`].
    fn status_of(&self, pv: &str) -> Result<PvStatus, ApplianceError> {
        self.engine()
            .status(pv)
            .ok_or_else(|| ApplianceError::UnknownPv(pv.to_string()))
    }

    /// Puts `pv` back into the engine with `config` (paused or not), keeping its type,
    /// metadata and the time of its newest stored sample: how a parameter change reaches
    /// the engine (Java's engine also destroys and recreates the channel).
    pub(crate) async fn reconfigure(
        &self,
        old: &PvStatus,
        config: PvConfig,
        paused: bool,
    ) -> Result<(), ApplianceError> {
        let pv = old.name.clone();
        if old.state != PvState::Paused {
            self.engine().pause(&pv).await?;
        }
        self.engine().delete(&pv).await?;
        let stores = self.stores().clone();
        let name = pv.clone();
        let last = blocking(move || Ok::<_, ApplianceError>(newest_stored(&stores, &name))).await?;
        self.engine()
            .restore(&pv, config, old.archived_type, paused, last)?;
        if old.meta.known {
            self.engine().seed_meta(&pv, old.meta.clone());
        }
        Ok(())
    }

    /// Java `changeArchivalParameters`: a new sampling period (and method, if given) for
    /// `pv`, in the engine and the catalogue. A paused PV stays paused. The operator's
    /// choice is recorded as an `archivePV` request's is (`extraFields.userSamplingPeriod`,
    /// and `userSamplingMethod` when a method is given), so that re-applying the policies
    /// keeps it. Returns Java's description.
    ///
    /// # Errors
    ///
    /// [`ApplianceError::UnknownPv`], or the engine or catalogue fails.
    pub async fn change_parameters(
        &self,
        pv: &str,
        method: Option<SamplingMethod>,
        period: SamplingPeriod,
    ) -> Result<String, ApplianceError> {
        let old = self.status_of(pv)?;
        let config = PvConfig {
            method: method.unwrap_or(old.config.method),
            period: period.secs(),
            archive_fields: old.config.archive_fields.clone(),
        };
        let paused = old.state == PvState::Paused;
        self.reconfigure(&old, config.clone(), paused).await?;
        let mut user = vec![(USER_PERIOD_FIELD, period.secs().to_string())];
        if let Some(m) = method {
            user.push((USER_METHOD_FIELD, m.as_str().to_string()));
        }
        self.update_catalogue(pv, user, move |info| {
            info.sampling_method = to_registry_method(config.method);
            info.sampling_period = config.period as f32;
        })
        .await?;
        Ok(format!(
            "Successfully changed the archival parameters for {pv}"
        ))
    }

    /// Applies `edit` to the type info of `pv` (and sets its modification time); for a
    /// PV still in its archive request, rewrites the request's parameters instead. `user`:
    /// settings the operator chose, recorded as an `archivePV` request's own
    /// (`extraFields.userSamplingPeriod`...; in a pending request, its `user` parameters,
    /// which become those extra fields when it connects), so that the policy decided at
    /// connection or re-applied keeps them. False when the catalogue has neither.
    async fn update_catalogue(
        &self,
        pv: &str,
        user: Vec<(&'static str, String)>,
        edit: impl FnOnce(&mut PvTypeInfo) + Send + 'static,
    ) -> Result<bool, ApplianceError> {
        let reg = self.registry().clone();
        let pv = pv.to_string();
        let now = self.clock().now();
        let status = self.engine().status(&pv);
        blocking(move || {
            if let Some(mut info) = reg.get_type_info(&pv)? {
                edit(&mut info);
                for (k, v) in user {
                    info.extra_fields.insert(k.to_string(), v);
                }
                info.modification_time = Some(now);
                reg.put_type_info(&info)?;
                return Ok(true);
            }
            if let (Some(mut req), Some(s)) = (reg.get_archive_request(&pv)?, status) {
                if let Some(o) = req.user_params.as_object_mut() {
                    o.insert("samplingmethod".into(), s.config.method.as_str().into());
                    o.insert("samplingperiod".into(), s.config.period.into());
                    o.insert("archiveFields".into(), s.config.archive_fields.into());
                    let own = o
                        .entry("user")
                        .or_insert_with(|| serde_json::Value::Object(Default::default()));
                    if let Some(own) = own.as_object_mut() {
                        for (k, v) in user {
                            own.insert(k.to_string(), v.into());
                        }
                    }
                }
                reg.add_archive_request(&req)?;
                return Ok(true);
            }
            Ok::<_, RegistryError>(false)
        })
        .await
    }

    /// Java `abortArchivingPV`: drops a request whose PV has not connected yet (still in
    /// the archive workflow, no `PVTypeInfo`). True if it was aborted; false for a PV that
    /// is archived already or unknown.
    ///
    /// # Errors
    ///
    /// The engine or the catalogue fails.
    pub async fn abort(&self, pv: &str) -> Result<bool, ApplianceError> {
        let Some(s) = self.engine().status(pv) else {
            let reg = self.registry().clone();
            let name = pv.to_string();
            return blocking(move || reg.remove_archive_request(&name)).await;
        };
        let reg = self.registry().clone();
        let name = pv.to_string();
        let has_info = blocking(move || reg.get_type_info(&name).map(|i| i.is_some())).await?;
        if has_info || s.state == PvState::Archiving {
            return Ok(false);
        }
        if s.state != PvState::Paused {
            self.engine().pause(pv).await?;
        }
        self.engine().delete(pv).await?;
        let reg = self.registry().clone();
        let name = pv.to_string();
        blocking(move || reg.remove_archive_request(&name)).await?;
        Ok(true)
    }

    /// Java `renamePV`: `pv` (paused, with a type info) is copied to `new_name`: a type
    /// info with the new name (creation time kept, paused) and every sample of every
    /// store. The old PV stays, paused, as in Java (delete it when the copy is checked).
    /// Returns Java's description.
    ///
    /// # Errors
    ///
    /// [`ApplianceError::UnknownPv`]; [`ApplianceError::Validation`] when `pv` is not
    /// paused or `new_name` exists; the engine, catalogue or storage fails.
    pub async fn rename(&self, pv: &str, new_name: &str) -> Result<String, ApplianceError> {
        let info = self.type_info_of(pv).await?;
        if !info.paused {
            return Err(ApplianceError::Validation(format!(
                "Need to pause PV before renaming {pv} to {new_name}"
            )));
        }
        // Java `RenamePVAction`'s two literals, double spaces and trailing space included
        // (scripts compare them): the name archived here, else a type info only.
        if self.engine().status(new_name).is_some() {
            return Err(ApplianceError::Validation(format!(
                "While renaming PV  {pv} to {new_name}, the new name  already exists "
            )));
        }
        if self.has_type_info(new_name).await? {
            return Err(ApplianceError::Validation(format!(
                "While renaming PV  {pv} to {new_name}, the typeinfo for the new name  already \
                 exists "
            )));
        }
        // Checked before any data is copied: a name the catalogue would refuse after the
        // copy left a copy of the data behind, served later under that name.
        let reg = self.registry().clone();
        let asked = new_name.to_string();
        if let Some(real) = blocking(move || reg.resolve_alias(&asked)).await? {
            return Err(ApplianceError::Validation(format!(
                "While renaming PV {pv} to {new_name}: {new_name} is an alias of {real}"
            )));
        }
        if let Some((base, field)) = new_name.split_once('.')
            && self.policy().is_stream_field(field)
        {
            return Err(ApplianceError::Validation(format!(
                "While renaming PV {pv} to {new_name}: {field} is an archive field, so \
                 {new_name} names a field of {base}, not a PV"
            )));
        }
        let mut new_info = info.clone();
        new_info.pv_name = new_name.to_string();
        new_info.chunk_key = archiver_pb::path::chunk_key(new_name).ok();
        new_info.modification_time = Some(self.clock().now());
        new_info.appliance_identity = Some(self.identity().to_string());
        let stores = self.stores().clone();
        let reg = self.registry().clone();
        let (from, to) = (pv.to_string(), new_name.to_string());
        let put = new_info.clone();
        let copied = blocking(move || {
            let n = copy_data(&stores, &from, &to)?;
            reg.put_type_info(&put)?;
            Ok::<_, ApplianceError>(n)
        })
        .await?;
        self.restore_one(&new_info).await?;
        tracing::info!(pv, new_name, copied, "renamed");
        Ok(format!("Successfully renamed PV {pv} to {new_name}"))
    }

    /// Java `appendAndAliasPV`: the samples of `older` (paused) are appended to `newer`'s
    /// files in every store, `older` is deleted (engine, catalogue and files) and becomes
    /// an alias of `newer`. Samples not older than what `newer` holds in a partition are
    /// refused by the file writer (never interleaved). Returns Java's description.
    ///
    /// # Errors
    ///
    /// [`ApplianceError::UnknownPv`] for either name; [`ApplianceError::Validation`] when
    /// `older` is not paused; the engine, catalogue or storage fails.
    pub async fn append_and_alias(
        &self,
        older: &str,
        newer: &str,
    ) -> Result<String, ApplianceError> {
        let old = self.type_info_of(older).await?;
        self.type_info_of(newer).await?;
        if !old.paused {
            return Err(ApplianceError::Validation(format!(
                "PV {older} needs to be paused before appending its data to {newer}"
            )));
        }
        let stores = self.stores().clone();
        let (from, to) = (older.to_string(), newer.to_string());
        blocking(move || copy_data(&stores, &from, &to)).await?;
        self.delete(older, true).await?;
        let reg = self.registry().clone();
        let (alias, real) = (older.to_string(), newer.to_string());
        blocking(move || reg.add_alias(&alias, &real)).await?;
        Ok(format!(
            "Appended data from {older} into {newer} and added an alias {older} for {newer}"
        ))
    }

    /// Java `modifyMetaFields` (`ModifyMetaFieldsAction`): each of `commands` is
    /// `add,F1,F2`, `remove,F1` or `clear`, applied in order to the archive fields of the
    /// paused `pv`. Returns the new list; `clear` empties it, and an emptied list stays
    /// empty (no field archived, also after a restart).
    ///
    /// # Errors
    ///
    /// [`ApplianceError::UnknownPv`]; [`ApplianceError::Validation`] when `pv` is not
    /// paused; [`ApplianceError::BadRequest`] for a command or field name that is not one.
    pub async fn modify_archive_fields(
        &self,
        pv: &str,
        commands: &[String],
    ) -> Result<Vec<String>, ApplianceError> {
        let old = self.status_of(pv)?;
        if old.state != PvState::Paused {
            return Err(ApplianceError::Validation(format!(
                "Please pause the pv {pv} before modifying its meta fields"
            )));
        }
        let mut fields = old.config.archive_fields.clone();
        for command in commands {
            let mut parts = command.split(',').map(str::trim);
            let verb = parts.next().unwrap_or_default();
            let names: Vec<String> = parts.filter(|f| !f.is_empty()).map(String::from).collect();
            if let Some(bad) = names
                .iter()
                .find(|f| !crate::policy::is_archive_field_name(f))
            {
                return Err(ApplianceError::BadRequest(format!(
                    "invalid archive field name {bad:?}"
                )));
            }
            match verb {
                "add" => {
                    for n in names {
                        if !fields.contains(&n) {
                            fields.push(n);
                        }
                    }
                }
                "remove" => fields.retain(|f| !names.contains(f)),
                "clear" => fields.clear(),
                other => {
                    return Err(ApplianceError::BadRequest(format!(
                        "Can't understand command {other:?}: use add,FIELD,... remove,FIELD,... or clear"
                    )));
                }
            }
        }
        self.set_archive_fields(&old, fields, true).await
    }

    /// Java `archivePV` of `PV.FIELD` where `PV` is archived (or in its archive request)
    /// and `FIELD` is archived as part of the stream ([`crate::Policy::is_stream_field`]):
    /// adds `field` to `pv`'s archive fields, in the engine (so it is archived from now
    /// on: Java only updates the type info, and the field waits for the next restart) and
    /// in the catalogue. Nothing changes when `pv` has the field; a paused PV stays paused.
    ///
    /// # Errors
    ///
    /// [`ApplianceError::UnknownPv`]; the engine or catalogue fails.
    pub(crate) async fn add_archive_field(
        &self,
        pv: &str,
        field: &str,
    ) -> Result<(), ApplianceError> {
        let old = self.status_of(pv)?;
        if old.config.archive_fields.iter().any(|f| f == field) {
            return Ok(());
        }
        let mut fields = old.config.archive_fields.clone();
        fields.push(field.to_string());
        let paused = old.state == PvState::Paused;
        self.set_archive_fields(&old, fields, paused).await?;
        tracing::info!(pv, field, "archive field added by archivePV of PV.FIELD");
        Ok(())
    }

    /// Puts `old`'s PV back into the engine with the archive fields `fields` (paused or
    /// not) and records them in the catalogue. Returns the engine's list: an empty one
    /// archives no field (the PV has its stored type, see `Engine::restore`), a PV still
    /// waiting for its type takes the policy's defaults.
    async fn set_archive_fields(
        &self,
        old: &PvStatus,
        fields: Vec<String>,
        paused: bool,
    ) -> Result<Vec<String>, ApplianceError> {
        let config = PvConfig {
            archive_fields: fields,
            ..old.config.clone()
        };
        self.reconfigure(old, config, paused).await?;
        let fields = self.status_of(&old.name)?.config.archive_fields;
        let stored = fields.clone();
        self.update_catalogue(&old.name, Vec::new(), move |info| {
            info.archive_fields = stored
        })
        .await?;
        Ok(fields)
    }

    /// Java `putPVTypeInfo`: stores `info` for `pv`. A new PV (no type info yet, even if
    /// its archive request is pending) needs `create_new` and is forced paused (Java), and
    /// is put into the engine paused: resumeArchivingPV starts it; an existing one needs
    /// `override_existing` and keeps its engine state, taking the new parameters.
    ///
    /// # Errors
    ///
    /// [`ApplianceError::Validation`] when the flags do not allow the write;
    /// [`ApplianceError::BadRequest`] for a type info of another name or with a sampling
    /// period out of range; the catalogue or engine fails.
    pub async fn put_type_info(
        &self,
        pv: &str,
        mut info: PvTypeInfo,
        override_existing: bool,
        create_new: bool,
    ) -> Result<PvTypeInfo, ApplianceError> {
        if info.pv_name != pv {
            return Err(ApplianceError::BadRequest(format!(
                "the type info is for {:?}, not for {pv:?}",
                info.pv_name
            )));
        }
        let cfg = self
            .policy()
            .config_from_type_info(&info)
            .map_err(|e| ApplianceError::BadRequest(e.to_string()))?;
        // Each data store URL must read as one (a typo such as `partitionGranularty`
        // would otherwise surface only when the PV's data is first read or moved). A store
        // name this appliance does not configure is accepted, as for data folders taken
        // over: retrieval reads the configured stores for it.
        for url in &info.data_stores {
            if archiver_storage::blackhole_name(url).is_none() {
                archiver_storage::StoreUrl::parse(url)
                    .map_err(|e| ApplianceError::BadRequest(format!("dataStores: {url:?}: {e}")))?;
            }
        }
        let exists = self.has_type_info(pv).await?;
        if exists && !override_existing {
            return Err(ApplianceError::Validation(format!(
                "PVTypeInfo for {pv} already exists; use override=true to replace it"
            )));
        }
        if !exists && !create_new {
            return Err(ApplianceError::Validation(format!(
                "No PVTypeInfo for {pv}; use createnew=true to create it"
            )));
        }
        let now = self.clock().now();
        info.modification_time = Some(now);
        if info.creation_time.is_none() {
            info.creation_time = Some(now);
        }
        if info.appliance_identity.is_none() {
            info.appliance_identity = Some(self.identity().to_string());
        }
        // Java (`PutPVTypeInfo.readInNewTypeInfo`): a new type info is forced paused,
        // whatever it says; archiving starts with resumeArchivingPV. That holds for a PV
        // still in its archive request too (its request is dropped: the type info
        // replaces it).
        if !exists {
            info.paused = true;
        }
        // The data stores find a PV's files by its name: the chunk key recorded is the
        // name's (a type info copied from another PV carries that PV's key).
        info.chunk_key = archiver_pb::path::chunk_key(pv).ok();
        let reg = self.registry().clone();
        let put = info.clone();
        match self.engine().status(pv) {
            Some(old) if exists => {
                blocking(move || reg.put_type_info(&put)).await?;
                if let Some(cfg) = cfg {
                    self.reconfigure(&old, cfg, info.paused).await?;
                }
            }
            pending => {
                if let Some(old) = pending {
                    // In its archive request: the engine's PV gives way to the type info's.
                    if old.state != PvState::Paused {
                        self.engine().pause(pv).await?;
                    }
                    self.engine().delete(pv).await?;
                }
                blocking(move || {
                    reg.put_type_info(&put)?;
                    reg.remove_archive_request(&put.pv_name)
                })
                .await?;
                self.restore_one(&info).await?;
            }
        }
        Ok(info)
    }

    /// Puts the PV of `info` into the engine as the catalogue describes it (type,
    /// parameters, paused, metadata), as [`Appliance::restore`] does at start-up.
    async fn restore_one(&self, info: &PvTypeInfo) -> Result<(), ApplianceError> {
        let Some(cfg) = self
            .policy()
            .config_from_type_info(info)
            .map_err(|e| ApplianceError::BadRequest(e.to_string()))?
        else {
            return Ok(());
        };
        let stores = self.stores().clone();
        let name = info.pv_name.clone();
        let last = blocking(move || Ok::<_, ApplianceError>(newest_stored(&stores, &name))).await?;
        self.engine()
            .restore(&info.pv_name, cfg, Some(info.dbr_type), info.paused, last)?;
        self.engine()
            .seed_meta(&info.pv_name, meta_from_type_info(info));
        Ok(())
    }

    /// The type info of `pv` or [`ApplianceError::UnknownPv`].
    pub async fn type_info_of(&self, pv: &str) -> Result<PvTypeInfo, ApplianceError> {
        let reg = self.registry().clone();
        let name = pv.to_string();
        blocking(move || reg.get_type_info(&name))
            .await?
            .ok_or_else(|| ApplianceError::UnknownPv(pv.to_string()))
    }

    pub(crate) async fn has_type_info(&self, pv: &str) -> Result<bool, ApplianceError> {
        let reg = self.registry().clone();
        let name = pv.to_string();
        blocking(move || reg.get_type_info(&name).map(|i| i.is_some())).await
    }
}
