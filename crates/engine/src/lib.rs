/*!
The archiving engine: from Channel Access monitors to samples in the short-term store.

# Brief overview

* [`Engine`] — the handle: `archive`, `pause`, `resume`, `delete`, `status`, `buffered`,
  `shutdown`. Inside, one task owns every CA channel (one per PV, plus one per archive
  field `PV.FIELD`) and drains one shared event queue in batches; it applies the
  [`TimestampFilter`], converts values ([`convert`]), samples them ([`Sampler`]: MONITOR,
  decimated MONITOR, SCAN) and annotates them (connection fields `cnxlostepsecs`,
  `cnxregainedepsecs`, `startup`; changed archive fields; the daily dump of all fields)
  before they go to the PV's bounded buffer. A writer task appends every buffer to the
  short-term [`archiver_storage::Tier`] each write period.
* Every drop is counted per PV ([`Counters`]): timestamp problems, type changes, buffer
  overflow, client-side drops, writer refusals, disconnects, transient errors.
* Time comes from an injected [`Clock`].
*/
#![deny(missing_docs)]

mod clock;
pub mod convert;
mod counters;
mod engine;
mod error;
pub mod filter;
mod linebuf;
mod pv;
pub mod sampler;
mod writer;

pub use crate::clock::{Clock, SystemClock};
pub use crate::counters::{Counters, CountersSnapshot};
pub use crate::engine::{ArchiveOutcome, Engine, EngineConfig};
pub use crate::error::EngineError;
pub use crate::filter::TimestampFilter;
pub use crate::pv::{BufferSnapshot, ConnState, PvConfig, PvMeta, PvState, PvStatus};
pub use crate::sampler::{Sampler, SamplingMethod};
