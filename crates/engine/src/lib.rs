/*!
The archiving engine: from Channel Access monitors to samples in the short-term store.

# Brief overview

* [`Engine`] — the handle: `archive`, `restore`, `pause`, `resume`, `delete`, `status`,
  `buffered`, `flush`, `shutdown`. It owns the PV table; status and live buffers are read
  from it directly (a live buffer is copied under the PV's lock and decoded after it is
  released, so a retrieval never holds up ingest).
* The actor — one task owns every CA channel (one per PV, plus one per archive field
  `PV.FIELD`) and drains one shared, bounded event queue in batches; it applies the
  [`TimestampFilter`], converts values ([`convert`]), samples them ([`Sampler`]: MONITOR,
  decimated MONITOR, SCAN) and annotates them (connection fields `cnxlostepsecs`,
  `cnxregainedepsecs`, `startup`; changed archive fields; the daily dump of all fields)
  before they go, encoded as PlainPB lines, to the PV's bounded buffer. A writer task
  appends every buffer to the short-term [`archiver_storage::Tier`] each write period.
* [`EngineConfig`] — settings, and the archive-field policy values the appliance decides:
  `default_archive_fields` and `record_type_fields` (extra fields by `.RTYP`; by default
  Java's `DRVH`/`DRVL` for `ao` and `longout`). The engine only carries them out.
* Every drop is counted per PV ([`Counters`]): timestamp problems, type changes, buffer
  overflow, client-side drops, writer refusals, disconnects, transient errors.
* Time comes from an injected `archiver_time::Clock`. Any sampling period is safe:
  extreme ones saturate ([`Sampler::new`]), the appliance validates the range.
*/
#![deny(missing_docs)]

pub mod convert;
mod counters;
mod engine;
mod error;
pub mod filter;
mod journal;
mod linebuf;
mod noise;
mod pv;
pub mod sampler;
mod writer;

pub use crate::counters::{
    Counters, CountersSnapshot, WRITE_SECONDS_BUCKETS, WriteStats, WriteStatsSnapshot,
};
pub use crate::engine::{ArchiveOutcome, Engine, EngineConfig, SHUTDOWN_WRITE_TRIES};
pub use crate::error::EngineError;
pub use crate::filter::TimestampFilter;
pub use crate::journal::{JournalConfig, JournalStats, WRITE_EVERY as JOURNAL_WRITE_EVERY};
pub use crate::pv::{BufferSnapshot, ConnState, PvConfig, PvMeta, PvState, PvStatus, PvSummary};
pub use crate::sampler::{Sampler, SamplingMethod};
pub use crate::writer::{RateLimit, Unwritten};
