//! [`Engine`], the handle the management API and retrieval hold: it adds PVs to the table,
//! asks the actor to start, pause or remove them, and reads status and live buffers
//! straight from the table without going through the actor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use archiver_ca::Client;
use archiver_pb::{PayloadType, Timestamp};
use archiver_storage::Tier;
use tokio::sync::{mpsc, oneshot};

use crate::counters::Counters;
use crate::error::EngineError;
use crate::pv::{
    BufferSnapshot, PvConfig, PvMeta, PvSlot, PvState, PvStatus, PvSummary, PvaTarget, SlotState,
    lock,
};
use crate::writer;
use crate::writer::Unwritten;
use archiver_time::Clock;

use super::Inner;
use super::actor::{self, Cmd};
use super::config::{EngineConfig, buffer_capacity};
use super::fields::MAX_ARCHIVE_FIELDS;

/// How many times [`Engine::shutdown`] tries to write what failed to be written, a
/// second apart.
pub const SHUTDOWN_WRITE_TRIES: u32 = 3;

/// What `archive` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveOutcome {
    /// A new PV: its channel is being created.
    Submitted,
    /// The PV was already archived or requested.
    AlreadySubmitted,
}

/// A handle to the running engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    /// The CA client the engine's channels use (also lent to the appliance for the
    /// controlling PVs of conditional archiving: [`Engine::ca_client`]).
    client: Client,
}

impl Engine {
    /// Starts the engine: its event task and its writer. Must be called in a tokio runtime.
    pub fn start(client: Client, sts: Tier, config: EngineConfig, clock: Arc<dyn Clock>) -> Engine {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let journal = config.journal.clone();
        let inner = Arc::new(Inner {
            slots: RwLock::new(HashMap::new()),
            sts,
            config,
            clock,
            cmd: cmd_tx,
            next_id: AtomicU64::new(1),
            rate: Default::default(),
            write_stats: Default::default(),
            journal: Default::default(),
        });
        if let Some(j) = journal {
            let _ = inner
                .journal
                .set(crate::journal::Journal::start(j, Arc::downgrade(&inner)));
        }
        actor::spawn(inner.clone(), client.clone(), cmd_rx);
        tokio::spawn(writer::run(inner.clone()));
        Engine { inner, client }
    }

    fn slot(&self, pv: &str) -> Option<Arc<PvSlot>> {
        self.inner
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(pv)
            .cloned()
    }

    /// Starts archiving `pv` (returns at once; the channel connects in the background).
    /// `pva://NAME` archives NAME over pvAccess and `pva://NAME#a/b` its member `a.b`
    /// (see [`Engine::uses_pva`]); the PV is stored under the name without `pva://`.
    ///
    /// Errors: [`EngineError::BadName`] for a name that has no chunk key,
    /// [`EngineError::BadPeriod`] for a negative, NaN or infinite period,
    /// [`EngineError::TooManyFields`] beyond 200 archive fields, [`EngineError::ShutDown`].
    /// Any finite non-negative period is accepted (the appliance validates the range);
    /// see [`crate::Sampler::new`] for what extreme ones do.
    pub fn archive(&self, pv: &str, config: PvConfig) -> Result<ArchiveOutcome, EngineError> {
        let auto_fields = config.archive_fields.is_empty();
        self.add(pv, config, None, false, None, auto_fields)
    }

    /// Adds a PV known from the catalogue at start-up, with its stored type, paused or
    /// not, and the time of its newest stored sample. Errors as [`Engine::archive`].
    ///
    /// A PV with a stored type (it has a PVTypeInfo) keeps its archive fields as given:
    /// an empty list archives no field (Java's `PVTypeInfo.archiveFields`, emptied by
    /// `modifyMetaFields?command=clear`). Without a stored type (an archive request not
    /// yet answered) an empty list takes the defaults, as [`Engine::archive`].
    pub fn restore(
        &self,
        pv: &str,
        config: PvConfig,
        archived_type: Option<PayloadType>,
        paused: bool,
        last_stored: Option<Timestamp>,
    ) -> Result<ArchiveOutcome, EngineError> {
        let auto_fields = archived_type.is_none() && config.archive_fields.is_empty();
        self.add(pv, config, archived_type, paused, last_stored, auto_fields)
    }

    /// Whether [`Engine::archive`] would take `pv` with `config`: the checks it makes
    /// before adding anything (a name that is no PV name or no `pva://` target, a period
    /// that is negative or not finite, too many archive fields), so a bulk request can be
    /// refused whole before any of its PVs is archived.
    ///
    /// # Errors
    ///
    /// [`EngineError::BadName`], [`EngineError::BadPeriod`], [`EngineError::TooManyFields`].
    pub fn check(&self, pv: &str, config: &PvConfig) -> Result<(), EngineError> {
        Self::checked(pv, config).map(|_| ())
    }

    fn checked<'a>(
        pv: &'a str,
        config: &PvConfig,
    ) -> Result<(&'a str, Option<PvaTarget>), EngineError> {
        let (pv, pva) = PvaTarget::parse(pv).map_err(EngineError::BadName)?;
        archiver_pb::path::chunk_key(pv).map_err(|e| EngineError::BadName(e.to_string()))?;
        if !config.period.is_finite() || config.period < 0.0 {
            return Err(EngineError::BadPeriod(config.period));
        }
        if config.archive_fields.len() > MAX_ARCHIVE_FIELDS {
            return Err(EngineError::TooManyFields(config.archive_fields.len()));
        }
        Ok((pv, pva))
    }

    fn add(
        &self,
        pv: &str,
        mut config: PvConfig,
        archived_type: Option<PayloadType>,
        paused: bool,
        last_stored: Option<Timestamp>,
        auto_fields: bool,
    ) -> Result<ArchiveOutcome, EngineError> {
        let (pv, pva) = Self::checked(pv, &config)?;
        if auto_fields {
            config.archive_fields = self.inner.config.default_archive_fields.clone();
        }
        let mut slots = self.inner.slots.write().unwrap_or_else(|e| e.into_inner());
        if slots.contains_key(pv) {
            return Ok(ArchiveOutcome::AlreadySubmitted);
        }
        let id = self.inner.next_id.fetch_add(1, Relaxed);
        let capacity = buffer_capacity(&self.inner.config, &config);
        let counters = Counters::default();
        counters
            .added_secs
            .store(self.inner.clock.now().secs, Relaxed);
        let slot = Arc::new(PvSlot {
            name: Arc::from(pv),
            id,
            pva,
            counters,
            catalogued: Default::default(),
            journal: self.inner.journal.get().cloned(),
            journal_declared: Default::default(),
            state: std::sync::Mutex::new(SlotState {
                config,
                // A PV restored with its archived type was archived before this start:
                // it is being archived, its connection not (yet) back, as in Java.
                state: if paused {
                    PvState::Paused
                } else if archived_type.is_some() {
                    PvState::Archiving
                } else {
                    PvState::NeverConnected
                },
                archived_type,
                conn: Default::default(),
                meta: PvMeta::default(),
                buffer: Default::default(),
                in_flight: None,
                unwritten_seg: None,
                in_flight_seg: None,
                capacity,
                last_stored,
                auto_fields,
            }),
        });
        slots.insert(slot.name.clone(), slot.clone());
        drop(slots);
        if !paused {
            self.send(Cmd::Start {
                slot,
                startup: true,
            })?;
        }
        Ok(ArchiveOutcome::Submitted)
    }

    /// True when `pv` (a stored name, without `pva://`) is archived over pvAccess (Java's
    /// `PVTypeInfo.usePVAccess`).
    pub fn uses_pva(&self, pv: &str) -> bool {
        self.slot(pv).is_some_and(|s| s.pva.is_some())
    }

    fn send(&self, cmd: Cmd) -> Result<(), EngineError> {
        self.inner.cmd.send(cmd).map_err(|_| EngineError::ShutDown)
    }

    /// Pauses `pv`: its channel is closed and everything it had in memory is written.
    pub async fn pause(&self, pv: &str) -> Result<(), EngineError> {
        let slot = self
            .slot(pv)
            .ok_or_else(|| EngineError::NotFound(pv.to_string()))?;
        if lock(&slot.state).state == PvState::Paused {
            return Err(EngineError::AlreadyPaused(pv.to_string()));
        }
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Pause {
            id: slot.id,
            reply: tx,
        })?;
        rx.await.map_err(|_| EngineError::ShutDown)?;
        lock(&slot.state).state = PvState::Paused;
        writer::flush_slots(&self.inner, vec![slot]).await;
        Ok(())
    }

    /// Resumes a paused `pv`.
    pub fn resume(&self, pv: &str) -> Result<(), EngineError> {
        let slot = self
            .slot(pv)
            .ok_or_else(|| EngineError::NotFound(pv.to_string()))?;
        {
            let mut st = lock(&slot.state);
            if st.state != PvState::Paused {
                return Err(EngineError::NotPaused(pv.to_string()));
            }
            st.state = if st.conn.first_established_secs == 0 && st.archived_type.is_none() {
                PvState::NeverConnected
            } else {
                PvState::Archiving
            };
        }
        self.send(Cmd::Start {
            slot,
            startup: true,
        })
    }

    /// Removes a paused `pv` from the engine (its files stay).
    pub async fn delete(&self, pv: &str) -> Result<(), EngineError> {
        let slot = self
            .slot(pv)
            .ok_or_else(|| EngineError::NotFound(pv.to_string()))?;
        if lock(&slot.state).state != PvState::Paused {
            return Err(EngineError::NotPaused(pv.to_string()));
        }
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Remove {
            id: slot.id,
            reply: tx,
        })?;
        rx.await.map_err(|_| EngineError::ShutDown)?;
        writer::flush_slots(&self.inner, vec![slot]).await;
        self.inner
            .slots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pv);
        Ok(())
    }

    /// Sets the display metadata of `pv` (EGU, PREC, limits) from the catalogue, unless the
    /// engine has read it from the IOC already: after a restart, a PV whose IOC is not
    /// back shows what was archived. False if the engine does not hold `pv`.
    pub fn seed_meta(&self, pv: &str, meta: PvMeta) -> bool {
        let Some(slot) = self.slot(pv) else {
            return false;
        };
        let mut st = lock(&slot.state);
        if !st.meta.known {
            st.meta = meta;
        }
        true
    }

    /// Records that archiving `pv` was first requested at `secs` (epoch seconds, from the
    /// catalogue at a restore), so that a restart does not reset the request time of a
    /// PV that never connected (`CountersSnapshot::request_secs`). False when the engine
    /// does not hold `pv`.
    pub fn set_requested_at(&self, pv: &str, secs: i64) -> bool {
        let Some(slot) = self.slot(pv) else {
            return false;
        };
        slot.counters.requested_secs.store(secs, Relaxed);
        true
    }

    /// The status of `pv`, if the engine has it.
    pub fn status(&self, pv: &str) -> Option<PvStatus> {
        self.slot(pv).map(|s| s.status())
    }

    /// The status of each of `names` (in order; `None` for a name the engine lacks). The
    /// PV table is read-locked once, only while the slot pointers are copied: a status of
    /// 100 000 names does not queue 100 000 times behind the archive requests and the
    /// start-up restore that write-lock it (the lock prefers writers).
    pub fn statuses<S: AsRef<str>>(&self, names: &[S]) -> Vec<Option<PvStatus>> {
        let slots: Vec<Option<Arc<PvSlot>>> = {
            let table = self.inner.slots.read().unwrap_or_else(|e| e.into_inner());
            names
                .iter()
                .map(|n| table.get(n.as_ref()).cloned())
                .collect()
        };
        slots.into_iter().map(|s| s.map(|s| s.status())).collect()
    }

    /// The status of every PV.
    pub fn all_status(&self) -> Vec<PvStatus> {
        self.inner
            .slots_where(|_| true)
            .iter()
            .map(|s| s.status())
            .collect()
    }

    /// The summary of every PV (any order): the reports' light read, two vectors and no
    /// other allocation (see [`PvSummary`]). The PV table is read-locked only while its
    /// slot pointers are copied (a few ms for 100 000 PVs); the per-PV reads follow
    /// without it. Held for the whole copy, the lock made an archive request, a delete or
    /// the start-up restore (which write-lock the table) wait for it, and every status
    /// lookup queued behind them (the lock prefers writers), for as long as a report's
    /// copy took under start-up's CPU load.
    pub fn summaries(&self) -> Vec<PvSummary> {
        self.inner
            .slots_where(|_| true)
            .iter()
            .map(|s| s.summary())
            .collect()
    }

    /// The status of each PV whose archived type and metadata are known and that is not
    /// marked catalogued ([`Engine::mark_catalogued`]), or of every such PV when `all`:
    /// what the catalogue has yet to record. One pass over a flag per PV, and only those
    /// returned are copied, so the periodic check costs next to nothing once every PV is
    /// recorded (it compared 100,000 names with a set every round before).
    pub fn uncatalogued_status(&self, all: bool) -> Vec<PvStatus> {
        self.inner
            .slots_where(|s| all || !s.catalogued.load(Relaxed))
            .iter()
            .filter(|s| {
                let st = lock(&s.state);
                st.archived_type.is_some() && st.meta.known
            })
            .map(|s| s.status())
            .collect()
    }

    /// Marks the PVs of `names` as recorded in the catalogue (names the engine does not
    /// hold are ignored): [`Engine::uncatalogued_status`] leaves them out until they are
    /// removed and archived again.
    pub fn mark_catalogued<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let slots = self.inner.slots.read().unwrap_or_else(|e| e.into_inner());
        for n in names {
            if let Some(s) = slots.get(n) {
                s.catalogued.store(true, Relaxed);
            }
        }
    }

    /// The names of all PVs, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .map(|k| k.to_string())
            .collect();
        v.sort();
        v
    }

    /// The samples of `pv` still in memory (being written, then buffered), oldest first;
    /// `None` if the engine does not hold `pv` or its type is not known yet.
    ///
    /// The PV's lock is held only to copy the buffered lines (one copy of each chunk's
    /// bytes, no per-sample work); they are decoded after it is released, so a retrieval
    /// never holds up the PV's ingest while it decodes.
    pub fn buffered(&self, pv: &str) -> Option<BufferSnapshot> {
        self.slot(pv)?.buffered()
    }

    /// The writer's flush latency so far (see [`crate::WriteStats`]).
    pub fn write_stats(&self) -> crate::WriteStatsSnapshot {
        self.inner.write_stats.snapshot()
    }

    /// Samples in memory now over every PV, and the most they may hold: `(buffered,
    /// capacity)`, summed. Each PV's lock is taken for a moment (no copy): meant for a
    /// metrics scrape, not for every request.
    pub fn buffer_fill(&self) -> (u64, u64) {
        let slots = self.inner.slots_where(|_| true);
        let (mut used, mut capacity) = (0u64, 0u64);
        for slot in slots {
            let (u, c) = slot.buffer_fill();
            used += u;
            capacity += c;
        }
        (used, capacity)
    }

    /// The CA client of the engine's channels: the appliance monitors controlling PVs
    /// (conditional archiving) on it, beside the engine, not through its event queue.
    pub fn ca_client(&self) -> &Client {
        &self.client
    }

    /// The short-term store.
    pub fn sts(&self) -> &Tier {
        &self.inner.sts
    }

    /// Writes every buffer now; returns what a failed write kept in memory (retried at
    /// the next write period).
    pub async fn flush(&self) -> Unwritten {
        writer::flush_all(&self.inner).await
    }

    /// Stops archiving: every held-back sample is committed, every channel closed, every
    /// buffer written. A write that fails (a full disk, an I/O error) is retried
    /// [`SHUTDOWN_WRITE_TRIES`] times, a second apart; what could still not be written is
    /// returned (and logged per PV), so the caller can say so instead of claiming success.
    pub async fn shutdown(&self) -> Unwritten {
        let (tx, rx) = oneshot::channel();
        if self.send(Cmd::Shutdown { reply: tx }).is_ok() {
            let _ = rx.await;
        }
        let mut left = writer::flush_all(&self.inner).await;
        for _ in 1..SHUTDOWN_WRITE_TRIES {
            if left.samples == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            left = writer::flush_all(&self.inner).await;
        }
        if let Some(j) = self.inner.journal.get().cloned() {
            let sts = self.inner.sts.clone();
            let all_written = left.samples == 0;
            let _ = tokio::task::spawn_blocking(move || j.close(&sts, all_written)).await;
        }
        left
    }

    /// Writes every buffer, then removes the journal segments holding what was written
    /// ([`crate::journal`]): called before data is deleted (deletePV with its data,
    /// deletePVData), so that a crash afterwards cannot replay deleted samples. Without a
    /// journal, only the writing.
    pub async fn journal_checkpoint(&self) {
        writer::flush_all(&self.inner).await;
        if let Some(j) = self.inner.journal.get().cloned() {
            let inner = self.inner.clone();
            let _ = tokio::task::spawn_blocking(move || j.checkpoint(&inner)).await;
        }
    }

    /// The write-ahead journal's counters; `None` without a journal.
    pub fn journal_stats(&self) -> Option<crate::journal::JournalStats> {
        self.inner.journal.get().map(|j| j.stats())
    }
}
