//! The engine, in five parts:
//!
//! * [`config`] — [`EngineConfig`]: write period, drift, buffer bounds, and the archive-field
//!   policy values (default fields, extra fields by record type) the appliance passes in.
//! * [`handle`] — [`Engine`], the cheap-to-clone handle the management API and retrieval
//!   use. It owns the PV table ([`Inner::slots`]) and sends commands to the actor.
//! * [`actor`] — the one task that owns every CA channel and the sampling state of every PV,
//!   fed by one shared CA event queue and two command queues (their bounds are explained
//!   there).
//! * [`annotate`] — the field values a sample carries: connection marks, changed archive
//!   fields, the daily dump. Pure: (state, event, now) in, field values out.
//! * [`fields`] — the archive-field mechanism: the field limit, the channels on `PV.FIELD`,
//!   reading `PV.RTYP` to add the policy's extra fields.
//!
//! The writer (`crate::writer`) flushes the per-PV buffers to the short-term store every
//! write period; it reaches the PV table through [`Inner`].

mod actor;
mod annotate;
mod config;
mod fields;
mod handle;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use archiver_storage::Tier;
use tokio::sync::mpsc;

use crate::pv::PvSlot;
use archiver_time::Clock;

pub use self::config::EngineConfig;
pub(crate) use self::fields::MAX_ARCHIVE_FIELDS;
pub use self::handle::{ArchiveOutcome, Engine, SHUTDOWN_WRITE_TRIES};

/// What the handle, the actor and the writer share: the PV table, the short-term store,
/// the settings, the clock, and the actor's management queue.
pub(crate) struct Inner {
    /// Every PV the engine holds, by name.
    pub slots: RwLock<HashMap<Arc<str>, Arc<PvSlot>>>,
    /// The short-term store the writer appends to.
    pub sts: Tier,
    /// The settings the engine was started with.
    pub config: EngineConfig,
    /// The server clock.
    pub clock: Arc<dyn Clock>,
    /// Management commands to the actor (why this queue is unbounded: [`actor::Cmd`]).
    cmd: mpsc::UnboundedSender<actor::Cmd>,
    /// The next PV id (ids key the CA channels; never reused).
    next_id: AtomicU64,
    /// What each PV wrote in the current hour, for the storage-rate guard.
    pub rate: crate::writer::RateState,
    /// The writer's flush latency.
    pub write_stats: crate::counters::WriteStats,
    /// The write-ahead journal, when configured (set once, right after the start).
    pub journal: std::sync::OnceLock<Arc<crate::journal::Journal>>,
}

impl Inner {
    /// The slots `keep` selects, copied out so the table's lock is not held while they
    /// are used.
    pub(crate) fn slots_where(&self, keep: impl Fn(&PvSlot) -> bool) -> Vec<Arc<PvSlot>> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|s| keep(s))
            .cloned()
            .collect()
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sts", &self.sts)
            .finish_non_exhaustive()
    }
}
