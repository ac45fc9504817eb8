/*!
Retrieval: turning stored and buffered samples into the Java appliance's responses, as a
pipeline that works without a server.

# Brief overview

```text
DataRequest ──plan()──▶ Plan ──Producer::pv──▶ stores (oldest first), then live buffer
                                                 │ MergeDedup (Java rule)
                                                 ▼
                                          PostProcessor (Raw, or mean_600...)
                                                 │
                                                 ▼
                                          Encoder (JSON, pbraw) ──pieces──▶ PieceSink
```

* [`DataRequest`] — what a client asked: the normalized PV name ([`normalize_name`]:
  `ca://`/`pva://` and a `.VAL` suffix stripped), `[from, to]`, and the post-processor
  spec of `op_N(PV)`, `op(PV,a,b)` or `pp=` ([`PostProcessorSpec`]).
* [`plan()`] → [`Plan`] — resolves an alias through the catalogue
  (`archiver_registry::Registry`), takes the type, element count and headers (`EGU`,
  `PREC`) from the catalogue's `PVTypeInfo` or, for a PV not yet in the catalogue, from the
  [`LiveSource`]; resolves the `dataStores` URLs to `archiver_storage::Tier`s through a
  [`StoreResolver`] (the configured `archiver_storage::DataStores`, matched by store name:
  [`stores`]; a URL naming no store falls back to the default stores, logged once);
  snapshots the live buffer. The result is a [`StreamDesc`] (what the response says about
  the PV) plus what to read.
* [`MergeDedup`] — the Java `MergeDedupConsumer` rule over sources read oldest first (the
  storage tiers, then the live buffer): at most one sample at or before `from` (the
  latest), then every sample in `(from, to]`; at each change of source stream (a
  partition file, the buffer) samples not newer than the last one emitted are dropped
  until the first newer one (the overlap ETL or the buffer being written leaves), as
  Java's; within a stream nothing is checked. [`for_each_line`] applies it to one PV over
  one or more time spans (Java `timeranges`: [`MergeDedup::next_span`]), giving each
  sample its [`Origin`] (the source stream, the stored line it was decoded from, borrowed
  from the file reader); [`for_each_sample`] without origins.
* [`PostProcessor`] — consumes merged samples in order, emits samples into an
  [`Output`], may change the output type; [`Raw`] is the identity; [`postprocess`] holds
  the Java registry (prefix lookup, `…Sample` no-fill variants, 900 s default), the
  operators (`mean`, `optimized`, `nth`, ...; [`postprocess::build`]) and the
  commons-math definitions they use ([`postprocess::stats`]). An unknown operator is a
  400 naming it (the Java appliance silently answers the raw data).
* [`Encoder`] — one response format ([`Format`]: extension, Java content type, whether
  `getDataForPVs` serves it): [`json::JsonResponse`] (`getData.json` in the Java shape,
  valid JSON where Java's is not), [`raw::RawResponse`] (pbraw exactly as Java frames
  it: a `PayloadInfo` first line with the requested name, an empty line and a new header
  at every source stream, year, type and PV, the stored lines copied verbatim through
  [`Encoder::sample_from`], a last header with `cnxlostepsecs` for a disconnected PV
  through [`Encoder::connection_lost`]),
  [`qw::QwResponse`] (the Grafana datasource's `millis`/`val`), [`jplot::JplotResponse`],
  [`csv::CsvResponse`], [`txt::TextResponse`], [`mat::MatResponse`] (MATLAB level 5).
  The text formats write values as Java's `toString` ([`text`]). Every format gives
  Java's empty answer when there is no data (`[ \n ]\n` for the JSON ones, `\n` for
  csv, nothing for txt, the header alone for pbraw, empty columns for mat).
* [`Producer`] — the one loop: plan → merge → post-processor → encoder → pieces of about
  [`PIECE`] bytes to a [`PieceSink`]; [`PIECES_QUEUED`] is how many a server lets wait.
  Samples are borrowed from the file readers and encoded into the encoder's buffer (or
  their stored lines copied, for the raw data in pbraw): nothing is allocated per sample.
  For pbraw, once a file's first sample has passed the merge as it is, the rest of that
  file up to the end of the range is copied in blocks without decoding a line (Java's copy
  of a partition inside the range; [`Encoder::takes_lines`], `TierQuery::copy_lines_through`).
  For the other formats and for post-processors the same lines are cut at newlines into
  parts of 64 KiB and decoded on two threads (a helper thread and the producer's; the
  module `block`): raw data in json/csv/qw encoded there by forks of the encoder
  ([`Encoder::fork`], [`Encoder::append`]), a post-processor run over the decoded parts in
  order on the producer's thread — or, for the operators of the moments
  ([`PostProcessor::binning`]: `mean`, `stats`, `optimized`, `optimLastSample`, ...), the
  parts cut where a bin ends and binned on both threads, the runs joined in order
  ([`PostProcessor::runs`], [`postprocess::runs`]): bit for bit the sequential result.
  With the identity post-processor ([`PostProcessor::is_identity`]) the samples go to the
  encoder with their origin.
* [`Retrieval`] — catalogue + store resolver + live source as one cloneable value;
  [`Retrieval::run`] plans and produces a request in a [`Format`],
  [`Retrieval::run_many`] several PVs (`getDataForPVs`), [`ping_plan`] Java's
  connectivity check ([`PING_PV`], planned like any PV), [`Retrieval::value_at`] the sample in effect at an
  instant (`getDataAtTime`).
* Enum labels: the plan adds the live source's `ENUM_0`, `ENUM_1`, ... headers to an enum
  PV (the engine reads them with `DBR_CTRL_ENUM`; [`is_enum_label`]).
* From the live source the plan also takes, per request: the latest metadata over the
  catalogue's headers (`fetchLatestMetadata`, [`LiveSource::latest_metadata`]) and
  whether the PV is disconnected now ([`LiveSource::disconnected_since`] →
  [`Plan::disconnected`]).
* `PV.FIELD` ([`field`]): when `FIELD` is one of the PV's archive fields, the plan reads
  the PV and [`field::FieldValues`] answers the field's values carried on its samples
  (Java `ExtraFieldsPostProcessor`), before the request's post-processor.
* [`RetrievalError`] — every failure, with its [`ErrorClass`] (400, 404, 500, or the
  client left).
*/
#![deny(missing_docs)]

mod block;
mod collect;
pub mod csv;
mod encode;
mod error;
pub mod field;
mod generic;
pub mod jplot;
pub mod json;
pub mod mat;
mod merge;
mod plan;
pub mod postprocess;
mod produce;
pub mod qw;
pub mod raw;
pub mod reduce;
mod service;
pub mod stores;
pub mod text;
pub mod txt;

pub use crate::collect::{for_each_line, for_each_sample};
pub use crate::encode::{Encoder, Format};
pub use crate::error::{ErrorClass, RetrievalError};
pub use crate::merge::{MergeDedup, Origin};
pub use crate::plan::{
    CachedReduction, DataRequest, Disconnected, FixedLive, LiveDesc, LiveSource, NoLiveSource,
    Plan, StoreResolver, StoreUrlError, StreamDesc, TypeSource, is_enum_label, normalize_name,
    plan,
};
pub use crate::postprocess::{Emit, Output, PostProcessor, PostProcessorSpec, Raw};
pub use crate::produce::{PIECE, PIECES_QUEUED, PieceSink, Produced, Producer};
pub use crate::reduce::PostProcessorReducer;
pub use crate::service::{PING_PV, Retrieval, ping_plan};
