/*!
Retrieval: turning stored and buffered samples into the Java appliance's responses.

# Brief overview

* [`MergeDedup`] — the Java `MergeDedupConsumer` rule over sources read oldest first (the
  storage tiers, then the engine's unflushed buffer): at most one sample at or before
  `from` (the latest), then every sample in `(from, to]`, dropping samples not newer than
  the last one emitted (the overlap between a file and the buffer being written).
* [`for_each_sample`] — one PV over a range from the tiers then the engine buffer.
* [`time`] — ISO-8601 instants as clients send them (`2024-01-01T00:00:00Z`,
  `…T00:00:00.123456Z`, `…T00:00:00.000-07:00`).
* [`json`] — `getData.json` in the Java shape (`[{"meta":{…},"data":[{secs,val,nanos,
  severity,status,fields?}]}]`), with valid JSON where Java's is not (NaN → `null`).
* [`raw`] — `getData.raw` (pbraw): a `PayloadInfo` line, sample lines, and an empty line plus
  a new header at every year change.
*/
#![deny(missing_docs)]

mod collect;
pub mod json;
mod merge;
pub mod raw;
pub mod time;

pub use crate::collect::for_each_sample;
pub use crate::merge::MergeDedup;
