//! The first stage of a retrieval: what was asked ([`DataRequest`]), and what to read to
//! answer it ([`Plan`]): the PV's real name, its type and headers, its stores oldest
//! first, and the live source's samples not yet stored.
//!
//! The type and headers come from the catalogue's `PVTypeInfo` (Java
//! `RemotableEventStreamDesc.mergeFrom`), so a PV that the engine does not hold (paused
//! then restarted, deleted from the engine, files copied into a store with a catalogue
//! entry) is served from its files. Only a PV not yet in the catalogue (archived seconds
//! ago; the catalogue sync runs every few seconds) takes them from the [`LiveSource`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use archiver_pb::{FieldValue, PayloadType, Sample, Timestamp};
use archiver_registry::names::{split_field, strip_protocol, strip_val_suffix};
use archiver_registry::{PvTypeInfo, Registry, RegistryError};
use archiver_storage::Tier;

use crate::error::RetrievalError;
use crate::postprocess::PostProcessorSpec;
use crate::postprocess::spec::split_function_syntax;
use archiver_time::parse_iso8601;

/// Strips what the Java appliance strips from a retrieval name: surrounding spaces, a
/// `ca://` or `pva://` prefix and a trailing `.VAL` (only as a suffix: `X:BUILD.VALA`
/// stays; Java issue #356). A `PV.FIELD` name is kept as it is.
pub fn normalize_name(name: &str) -> &str {
    let (_, name) = strip_protocol(name.trim());
    strip_val_suffix(name)
}

/// One PV over one time range, as a client asked for it (`getData?pv=…&from=…&to=…`).
#[derive(Debug, Clone, PartialEq)]
pub struct DataRequest {
    /// The PV name, normalized ([`normalize_name`]); an alias is resolved by the plan.
    pub pv: String,
    /// Start of the range.
    pub from: Timestamp,
    /// End of the range (inclusive).
    pub to: Timestamp,
    /// The post-processor asked for (`op_N(PV)`, `op(PV,a,b)` or `pp=`), `None` for the
    /// raw data.
    pub pp: Option<PostProcessorSpec>,
    /// The time spans to read, ascending and not overlapping: `[from, to]` alone, or
    /// those of Java's `timeranges` ([`DataRequest::with_time_ranges`]; `from` and `to`
    /// are then the first start and the last end). Empty means `[from, to]`.
    pub spans: Vec<(Timestamp, Timestamp)>,
    /// `fetchLatestMetadata=true`: the live source's metadata now
    /// ([`LiveSource::latest_metadata`]) over the catalogue's headers (Java merges the
    /// engine's `getMetadata` into the headers).
    pub fetch_latest_metadata: bool,
    /// When the request was made: the year of the chunk that says a PV is disconnected.
    pub now: Timestamp,
    /// Java's `retiredPVTemplate`: for a PV neither the catalogue nor the live source
    /// knows (a retired PV with files left), the PV whose `PVTypeInfo`'s `dataStores`
    /// say where to look; `None`: the default stores.
    pub retired_template: Option<String>,
}

/// How far past `now` a request without `to` reaches (Java `DataRetrievalServlet`:
/// `end = now + 1 hour`), so that samples stamped slightly ahead by an IOC's clock are
/// served.
pub const DEFAULT_TO_AHEAD_SECS: i64 = 3600;

impl DataRequest {
    /// Reads the parameters of `getData` without `pp`: see [`DataRequest::parse_with_pp`].
    pub fn parse(
        pv: &str,
        from: Option<&str>,
        to: Option<&str>,
        now: Timestamp,
    ) -> Result<Self, RetrievalError> {
        DataRequest::parse_with_pp(pv, None, from, to, now)
    }

    /// Reads the parameters of `getData`: `pv` as sent, `pp` (a post-processor spec,
    /// `mean_600`; absent or empty: none), `from` and `to` as ISO-8601 text (absent or
    /// empty: `to` = `now` + 1 hour, `from` = `to` − 1 day, as Java's
    /// `DataRetrievalServlet`).
    ///
    /// `pv` may use the function syntax, which wins over `pp` as in Java's
    /// `DataRetrievalServlet`: `op_N(PV)` → spec `op_N`, `op(PV,a,b)` → spec `op_a_b`
    /// ([`crate::postprocess::spec::split_function_syntax`]); the name inside is then
    /// normalized. The spec names an operator by Java's prefix lookup
    /// ([`PostProcessorSpec::parse`]).
    ///
    /// Errors, all [`crate::ErrorClass::BadRequest`]: a time that does not parse (naming
    /// the parameter), `to` before `from`, a name that is empty once normalized, a `(`
    /// without `)`, an unknown post-processor (Java silently answers the raw data) or a
    /// bad argument, each naming the spec.
    pub fn parse_with_pp(
        pv: &str,
        pp: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        now: Timestamp,
    ) -> Result<Self, RetrievalError> {
        let (name_param, spec_text) = match split_function_syntax(pv)? {
            Some((inner, spec)) => (inner, Some(spec)),
            None => (pv, pp.filter(|p| !p.trim().is_empty()).map(str::to_string)),
        };
        let name = normalize_name(name_param);
        if name.is_empty() {
            return Err(RetrievalError::EmptyName(pv.to_string()));
        }
        let pp = spec_text
            .as_deref()
            .map(PostProcessorSpec::parse)
            .transpose()?;
        let to = time_param("to", to)?
            .unwrap_or(Timestamp::new(now.secs + DEFAULT_TO_AHEAD_SECS, now.nanos));
        let from = time_param("from", from)?.unwrap_or(Timestamp::new(to.secs - 86_400, to.nanos));
        if to < from {
            return Err(RetrievalError::ToBeforeFrom { from, to });
        }
        Ok(DataRequest {
            pv: name.to_string(),
            from,
            to,
            pp,
            spans: vec![(from, to)],
            fetch_latest_metadata: false,
            now,
            retired_template: None,
        })
    }

    /// A request for `pv` (normalized by the caller) over `[from, to]`, raw data.
    pub fn range(pv: impl Into<String>, from: Timestamp, to: Timestamp, now: Timestamp) -> Self {
        DataRequest {
            pv: pv.into(),
            from,
            to,
            pp: None,
            spans: vec![(from, to)],
            fetch_latest_metadata: false,
            now,
            retired_template: None,
        }
    }

    /// Applies Java's `timeranges` parameter (absent or empty: the request is left as
    /// it is): a comma list of ISO-8601 instants, an even number of them, read as
    /// pairs `start,end`, each `start <= end`, each pair starting no earlier than the
    /// previous one ends. The pairs replace `[from, to]`: `from` becomes the first
    /// start and `to` the last end (Java `DataRetrievalServlet.parseTimeRanges`).
    ///
    /// Errors, [`RetrievalError::BadTimeRanges`] (400): an odd count, a time that does
    /// not parse (naming it), a reversed pair, overlapping pairs.
    pub fn with_time_ranges(mut self, text: Option<&str>) -> Result<Self, RetrievalError> {
        let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
            return Ok(self);
        };
        let times = text
            .split(',')
            .map(|t| {
                parse_iso8601(t.trim()).map_err(|e| {
                    RetrievalError::BadTimeRanges(format!("cannot parse time {t:?}: {e}"))
                })
            })
            .collect::<Result<Vec<Timestamp>, _>>()?;
        if times.len() % 2 != 0 {
            return Err(RetrievalError::BadTimeRanges(format!(
                "need an even number of times (start,end pairs); there are {}",
                times.len()
            )));
        }
        let mut spans: Vec<(Timestamp, Timestamp)> = Vec::with_capacity(times.len() / 2);
        for pair in times.chunks_exact(2) {
            let (start, end) = (pair[0], pair[1]);
            if end < start {
                return Err(RetrievalError::BadTimeRanges(format!(
                    "end {end} is before start {start}"
                )));
            }
            if let Some(&(_, prev_end)) = spans.last()
                && start < prev_end
            {
                return Err(RetrievalError::BadTimeRanges(format!(
                    "start {start} is before the previous end {prev_end}"
                )));
            }
            spans.push((start, end));
        }
        if let (Some(first), Some(last)) = (spans.first(), spans.last()) {
            self.from = first.0;
            self.to = last.1;
        }
        self.spans = spans;
        Ok(self)
    }
}

fn time_param(
    param: &'static str,
    text: Option<&str>,
) -> Result<Option<Timestamp>, RetrievalError> {
    text.filter(|v| !v.is_empty())
        .map(|v| {
            parse_iso8601(v).map_err(|e| RetrievalError::BadTime {
                param,
                message: e.to_string(),
            })
        })
        .transpose()
}

/// What a response tells about one PV before its samples (Java `EventStreamDesc`): the
/// JSON `meta` object, the pbraw `PayloadInfo` header.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDesc {
    /// The name shown to the client: the requested name, normalized (an alias stays the
    /// alias, as in Java).
    pub name: String,
    /// The type of the samples (DBR type). A post-processor may change it.
    pub payload_type: PayloadType,
    /// Elements per sample (1 for scalars).
    pub element_count: u32,
    /// Headers in order (`EGU`, `PREC`, ...); empty values are never listed.
    pub headers: Vec<FieldValue>,
    /// Start of the requested range.
    pub from: Timestamp,
    /// End of the requested range (inclusive).
    pub to: Timestamp,
}

/// Where the type and headers of a plan came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeSource {
    /// The catalogue's `PVTypeInfo`.
    Catalogue,
    /// The live source: the PV is not in the catalogue yet.
    Live,
    /// The PV's own files (the newest partition's header): a retired PV, in neither the
    /// catalogue nor the live source ([`DataRequest::retired_template`]).
    Files,
}

/// Everything needed to stream one PV: produced by [`plan`], consumed by
/// [`crate::Producer::pv`].
#[derive(Debug, Clone)]
pub struct Plan {
    /// What the response says about the PV.
    pub desc: StreamDesc,
    /// The name the samples are stored under (the real name of an alias).
    pub pv: String,
    /// The stores to read, oldest data first (LTS, MTS, STS).
    pub stores: Vec<Tier>,
    /// The live source's samples not yet in the stores, oldest first (read after the
    /// stores; the merge drops the overlap).
    pub buffer: Vec<Sample>,
    /// Where `desc`'s type and headers came from.
    pub source: TypeSource,
    /// The time spans to read ([`DataRequest::spans`]); empty: `[desc.from, desc.to]`.
    pub spans: Vec<(Timestamp, Timestamp)>,
    /// The archive field the response is made of, for a request of `PV.FIELD` where
    /// `FIELD` is one of the PV's archive fields ([`crate::field`]); `None` for the PV's
    /// own values.
    pub field: Option<String>,
    /// The PV is disconnected and the request's range reaches into the time since
    /// ([`LiveSource::disconnected_since`]): the response says so (pbraw: a last chunk
    /// whose header carries `cnxlostepsecs`).
    pub disconnected: Option<Disconnected>,
    /// Reductions cached by ETL for the request's post-processor (a store's `pp=`):
    /// read as they are instead of computing them; `None`: none applies.
    pub cached: Option<CachedReduction>,
}

/// The stores whose cached reduction of the requested post-processor (Java
/// `PlainStoragePlugin`: `pp=` files written by ETL) answers the older part of a request:
/// their `<key><partition>.<post-processor>` files up to `until` are sent as they are;
/// the rest of the request (at and after `until`, from the other stores and the live
/// buffer) goes through the post-processor. A store is used only when it has such files
/// for the PV (else Java, and this, compute at request time).
#[derive(Debug, Clone)]
pub struct CachedReduction {
    /// The reduced views of those stores ([`Tier::reduced`]), oldest data first.
    pub tiers: Vec<Tier>,
    /// The end of their newest cached partition: where the computed part begins.
    pub until: Timestamp,
    /// The type and element count of the cached samples (of the newest cached file):
    /// the type the response declares.
    pub payload_type: PayloadType,
    /// See `payload_type`.
    pub element_count: u32,
}

impl Plan {
    /// The time spans to read: [`Plan::spans`], or `[desc.from, desc.to]`.
    pub fn read_spans(&self) -> std::borrow::Cow<'_, [(Timestamp, Timestamp)]> {
        if self.spans.is_empty() {
            std::borrow::Cow::Owned(vec![(self.desc.from, self.desc.to)])
        } else {
            std::borrow::Cow::Borrowed(&self.spans)
        }
    }
}

/// A PV disconnected now, as a response tells it (Java: the engine's header-only chunk
/// with `cnxlostepsecs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected {
    /// When the connection was lost (epoch seconds).
    pub lost_at_secs: i64,
    /// The year of the chunk that says so (the current year, as Java's).
    pub year: i32,
}

/// What the live source (the archiving engine) knows of a PV it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveDesc {
    /// The type samples are archived as; `None` until the PV has connected once.
    pub payload_type: Option<PayloadType>,
    /// Elements per sample from the server (1 for scalars).
    pub element_count: u32,
    /// Headers (`EGU`, `PREC`) from the PV's `DBR_CTRL` metadata, once known.
    pub headers: Vec<FieldValue>,
}

/// The samples that are archived but not yet in a store, and the type of a PV that is not
/// yet in the catalogue. The engine implements it (through `Engine::buffered` and
/// `Engine::status`); retrieval does not depend on the engine. Methods may take short
/// locks; they are called from a blocking thread.
pub trait LiveSource: Send + Sync {
    /// What the live source knows of `pv` (a real PV name), `None` when it does not hold it.
    fn describe(&self, pv: &str) -> Option<LiveDesc>;

    /// The samples of `pv` in memory and not yet in a store (being written, then
    /// buffered), oldest first; empty when there are none or `pv` is not held.
    fn buffered(&self, pv: &str) -> Vec<Sample>;

    /// When `pv` lost its connection (epoch seconds), if it is held and disconnected
    /// now after having been connected (Java sends `cnxlostepsecs` only for a loss time
    /// that is not 0). `None` by default.
    fn disconnected_since(&self, pv: &str) -> Option<i64> {
        let _ = pv;
        None
    }

    /// The latest metadata of `pv` as headers, for `fetchLatestMetadata=true` (Java: the
    /// engine's `getMetadata`: `EGU`, `PREC`, limits, `ENUM_n`, ...). By default the
    /// headers of [`LiveSource::describe`]; empty when `pv` is not held.
    fn latest_metadata(&self, pv: &str) -> Vec<FieldValue> {
        self.describe(pv).map(|d| d.headers).unwrap_or_default()
    }
}

/// A live source that holds nothing: retrieval from the stores alone (tools, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLiveSource;

impl LiveSource for NoLiveSource {
    fn describe(&self, _pv: &str) -> Option<LiveDesc> {
        None
    }

    fn buffered(&self, _pv: &str) -> Vec<Sample> {
        Vec::new()
    }
}

/// A live source with fixed answers: the PVs it holds (by real name) and their unwritten
/// samples. For tools and tests that run the pipeline without an engine.
#[derive(Debug, Clone, Default)]
pub struct FixedLive {
    /// What [`LiveSource::describe`] answers, by PV.
    pub held: HashMap<String, LiveDesc>,
    /// What [`LiveSource::buffered`] answers, by PV (none: empty).
    pub buffers: HashMap<String, Vec<Sample>>,
    /// What [`LiveSource::disconnected_since`] answers, by PV (none: connected).
    pub disconnected: HashMap<String, i64>,
}

impl LiveSource for FixedLive {
    fn describe(&self, pv: &str) -> Option<LiveDesc> {
        self.held.get(pv).cloned()
    }

    fn buffered(&self, pv: &str) -> Vec<Sample> {
        self.buffers.get(pv).cloned().unwrap_or_default()
    }

    fn disconnected_since(&self, pv: &str) -> Option<i64> {
        self.disconnected.get(pv).copied()
    }
}

/// A `dataStores` URL that names no store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreUrlError(pub String);

/// Turns the `dataStores` URLs of a `PVTypeInfo`
/// (`pb://localhost?name=STS&rootFolder=…&partitionGranularity=PARTITION_HOUR`) into the
/// stores to read. [`archiver_storage::DataStores`] implements it (see [`crate::stores`]):
/// a URL names a configured store by its `name`.
pub trait StoreResolver: Send + Sync {
    /// The store `url` names; an error when it names none (the plan then reads the
    /// default stores, see [`plan`]).
    fn resolve(&self, url: &str) -> Result<Tier, StoreUrlError>;

    /// The stores of a PV whose `PVTypeInfo` lists none, names none of ours, or that is not
    /// in the catalogue yet, oldest data first.
    fn default_stores(&self) -> Vec<Tier>;
}

/// Store URLs already logged as naming no store (so each is logged once per process),
/// bounded: past [`MAX_WARNED`] distinct URLs the rest are not logged.
static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// How many distinct unresolved store URLs are remembered (and logged).
const MAX_WARNED: usize = 256;

/// True the first time `url` is seen here (of the first [`MAX_WARNED`] distinct URLs).
fn first_sight(url: &str) -> bool {
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    warned.len() < MAX_WARNED && !warned.contains(url) && warned.insert(url.to_string())
}

/// Logs, once per URL, that a PV's `dataStores` URL names no store here.
fn warn_unresolved(pv: &str, url: &str, reason: &StoreUrlError) {
    if first_sight(url) {
        tracing::warn!(
            pv,
            url,
            "{reason}; PVs listing this data store are read from the default stores \
             (logged once per store URL)"
        );
    }
}

/// Headers from a `PVTypeInfo`, as Java's `mergeFrom` adds them: `EGU` (when not empty)
/// and `PREC` as an integer string.
fn catalogue_headers(info: &PvTypeInfo) -> Vec<FieldValue> {
    let mut headers = Vec::with_capacity(2);
    if let Some(egu) = info.units.as_deref().filter(|u| !u.is_empty()) {
        headers.push(FieldValue::new("EGU", egu));
    }
    // Java `Integer.toString(precision.intValue())`: NaN gives 0, as `as` does.
    headers.push(FieldValue::new("PREC", (info.precision as i32).to_string()));
    headers
}

/// Whether a header carries an enum label (`ENUM_0`, `ENUM_1`, ...).
pub fn is_enum_label(name: &str) -> bool {
    name.strip_prefix("ENUM_")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Adds the enum labels of an enum PV planned from the catalogue: the `ENUM_n` headers of
/// the live source (the engine reads them with `DBR_CTRL_ENUM`; the catalogue's
/// `PVTypeInfo`, as Java's, holds none). Java sends them with `fetchLatestMetadata=true`
/// (from the engine's `getMetadata`); here an enum PV always carries them while the
/// engine holds it, since clients (aapy) read them to show state names.
fn add_enum_labels(desc: &mut StreamDesc, real: &str, live: &dyn LiveSource) {
    if !matches!(
        desc.payload_type,
        PayloadType::ScalarEnum | PayloadType::WaveformEnum
    ) {
        return;
    }
    if let Some(found) = live.describe(real) {
        desc.headers.extend(
            found
                .headers
                .into_iter()
                .filter(|h| is_enum_label(&h.name) && !h.val.is_empty()),
        );
    }
}

/// The error of a failed catalogue lookup of `pv`.
fn lookup(pv: &str) -> impl FnOnce(RegistryError) -> RetrievalError + '_ {
    move |source| RetrievalError::Catalogue {
        pv: pv.to_string(),
        source,
    }
}

/// Plans `req`: resolves the name (the name itself, then as an alias; Java
/// `PVNames.determineAppropriatePVTypeInfo` without fields), takes type, element count
/// and headers from the catalogue or, for a PV not yet there, from `live`, resolves the
/// stores (the `PVTypeInfo`'s `dataStores`, read in reverse order so that the oldest data
/// comes first; none listed or not in the catalogue: `stores.default_stores()`; a URL that
/// names no store here, as those of a Java data folder taken over from another appliance
/// with its own store names may: the default stores instead, logged once per URL, so
/// that the PV is still served from whatever this appliance holds of it), and
/// takes the live buffer now, before any file is read, so that a sample written while
/// the files are read is found in one or the other.
///
/// Errors: [`RetrievalError::NotFound`] when nobody knows the PV,
/// [`RetrievalError::NeverConnected`] when only the live source does and without a type,
/// [`RetrievalError::Catalogue`].
pub fn plan(
    req: &DataRequest,
    catalogue: &dyn Registry,
    stores: &dyn StoreResolver,
    live: &dyn LiveSource,
) -> Result<Plan, RetrievalError> {
    let name = req.pv.as_str();
    let (real, info, field) = resolve(catalogue, name)?;
    let (desc, tiers, source) = match info {
        Some(info) => {
            let mut tiers: Vec<Tier> = Vec::with_capacity(info.data_stores.len());
            let mut add = |tier: Tier| {
                // Two URLs may name one folder (a fallback, two names): read it once.
                if !tiers.iter().any(|t| t.root() == tier.root()) {
                    tiers.push(tier);
                }
            };
            for url in info.data_stores.iter().rev() {
                if archiver_storage::blackhole_name(url).is_some() {
                    continue; // retention: nothing is kept there
                }
                match stores.resolve(url) {
                    Ok(tier) => add(tier),
                    Err(e) => {
                        warn_unresolved(&real, url, &e);
                        stores.default_stores().into_iter().for_each(&mut add);
                    }
                }
            }
            if tiers.is_empty() {
                tiers = stores.default_stores();
            }
            let (payload_type, element_count) = match field {
                Some(_) => (crate::field::field_type(info.dbr_type), 1),
                None => (info.dbr_type, info.element_count.max(1)),
            };
            let desc = StreamDesc {
                name: name.to_string(),
                payload_type,
                element_count,
                headers: catalogue_headers(&info),
                from: req.from,
                to: req.to,
            };
            (desc, tiers, TypeSource::Catalogue)
        }
        None => match live.describe(&real) {
            Some(found) => {
                let payload_type =
                    found
                        .payload_type
                        .ok_or_else(|| RetrievalError::NeverConnected {
                            pv: name.to_string(),
                        })?;
                let desc = StreamDesc {
                    name: name.to_string(),
                    payload_type,
                    element_count: found.element_count.max(1),
                    headers: found.headers,
                    from: req.from,
                    to: req.to,
                };
                (desc, stores.default_stores(), TypeSource::Live)
            }
            None => retired(req, &real, catalogue, stores)?,
        },
    };
    let mut desc = desc;
    if source == TypeSource::Catalogue {
        add_enum_labels(&mut desc, &real, live);
    }
    if req.fetch_latest_metadata {
        merge_headers(&mut desc.headers, live.latest_metadata(&real));
    }
    let disconnected = live
        .disconnected_since(&real)
        .filter(|&lost| lost != 0 && lost <= req.to.secs)
        .map(|lost_at_secs| Disconnected {
            lost_at_secs,
            year: req.now.year(),
        });
    let buffer = live.buffered(&real);
    let tiers = skip_flagged_stores(tiers, catalogue);
    let (tiers, cached) = match (&req.pp, &field) {
        (Some(spec), None) => split_cached(tiers, &real, &spec.text, req.from, req.to)?,
        _ => (tiers, None),
    };
    Ok(Plan {
        desc,
        pv: real,
        stores: tiers,
        buffer,
        source,
        spans: req.spans.clone(),
        field,
        disconnected,
        cached,
    })
}

/// `tiers` without those the named flag `SKIP_<store>_FOR_RETRIEVAL` leaves out (Java's
/// `DataRetrievalServlet`: an operator hides a store, a RAM disk being rebuilt, say, from
/// retrieval). A flag that cannot be read counts as not set: retrieval then reads the
/// store, as it does without flags.
fn skip_flagged_stores(tiers: Vec<Tier>, catalogue: &dyn Registry) -> Vec<Tier> {
    tiers
        .into_iter()
        .filter(|t| {
            !catalogue
                .get_named_flag(&format!("SKIP_{}_FOR_RETRIEVAL", t.name()))
                .unwrap_or(false)
        })
        .collect()
}

/// Takes out of `tiers` (oldest data first) the oldest ones whose cached reduction
/// `post_processor` answers for `pv` over `[from, to]`, as a [`CachedReduction`]: a store
/// qualifies when its URL lists the post-processor in `pp=` and every partition of the PV
/// it holds in the range has its reduction (a reduction missing for some partition, a
/// `pp=` added after those were moved, say, means computing at request time, as when none
/// exists). Only a run of qualifying stores from the oldest counts, so that the computed
/// part (from [`CachedReduction::until`] on) never skips older data of another store.
fn split_cached(
    tiers: Vec<Tier>,
    pv: &str,
    post_processor: &str,
    from: Timestamp,
    to: Timestamp,
) -> Result<(Vec<Tier>, Option<CachedReduction>), RetrievalError> {
    let caches = |t: &Tier| {
        t.cached_post_processors()
            .iter()
            .any(|p| p == post_processor)
    };
    if !tiers.first().is_some_and(caches) {
        return Ok((tiers, None));
    }
    let in_range = |p: &archiver_storage::Partition| p.start <= to.secs && p.end > from.secs;
    let mut cached = Vec::new();
    let mut until = None;
    let mut taken = 0;
    for tier in &tiers {
        if !caches(tier) {
            break;
        }
        let view = tier.reduced(post_processor);
        let reduced: Vec<archiver_storage::Partition> =
            view.partitions(pv)?.into_iter().filter(in_range).collect();
        let raw = tier.partitions(pv)?;
        if reduced.is_empty()
            || raw
                .iter()
                .filter(|p| in_range(p))
                .any(|p| !reduced.iter().any(|r| r.start == p.start))
        {
            break;
        }
        let end = reduced.iter().map(|p| p.end).max();
        until = until.max(end);
        cached.push(view);
        taken += 1;
    }
    let Some(end) = until else {
        return Ok((tiers, None));
    };
    let mut shape = None;
    for view in cached.iter().rev() {
        if let Some((info, count)) = view.latest_payload(pv)? {
            shape = Some((info.payload_type, count));
            break;
        }
    }
    let Some((payload_type, element_count)) = shape else {
        return Ok((tiers, None));
    };
    let rest = tiers.into_iter().skip(taken).collect();
    Ok((
        rest,
        Some(CachedReduction {
            tiers: cached,
            until: Timestamp::new(end, 0),
            payload_type,
            element_count,
        }),
    ))
}

/// Plans a PV neither the catalogue nor the live source knows, from its files (Java
/// `retiredPVTemplate`): the stores are those of the template PV's `PVTypeInfo` when the
/// request names one (a template the catalogue does not have is
/// [`RetrievalError::UnknownRetiredTemplate`], 404, as Java's answer), else the default stores; the type, element count
/// and headers come from the newest partition of the newest store that has one (Java takes
/// the type from the last event of an ETL destination). [`RetrievalError::NotFound`] when
/// no store has a file of the PV.
fn retired(
    req: &DataRequest,
    real: &str,
    catalogue: &dyn Registry,
    stores: &dyn StoreResolver,
) -> Result<(StreamDesc, Vec<Tier>, TypeSource), RetrievalError> {
    let not_found = || RetrievalError::NotFound { pv: req.pv.clone() };
    let template = match req.retired_template.as_deref() {
        // Java: an unknown template leaves the PV without a type: 404.
        Some(t) => Some(
            catalogue
                .get_type_info(normalize_name(t))
                .map_err(lookup(t))?
                .ok_or_else(|| RetrievalError::UnknownRetiredTemplate {
                    pv: req.pv.clone(),
                    template: t.to_string(),
                })?,
        ),
        None => None,
    };
    let mut tiers: Vec<Tier> = Vec::new();
    if let Some(info) = &template {
        for url in info.data_stores.iter().rev() {
            if let Ok(tier) = stores.resolve(url)
                && !tiers.iter().any(|t| t.root() == tier.root())
            {
                tiers.push(tier);
            }
        }
    }
    if tiers.is_empty() {
        tiers = stores.default_stores();
    }
    let mut found = None;
    for tier in tiers.iter().rev() {
        match tier.latest_payload(real) {
            Ok(Some(p)) => {
                found = Some(p);
                break;
            }
            Ok(None) => {}
            // A name that cannot be a file name here (it escapes the folder): nobody's.
            Err(archiver_storage::StorageError::BadName { .. }) => return Err(not_found()),
            Err(e) => return Err(RetrievalError::from(e)),
        }
    }
    let (info, element_count) = found.ok_or_else(not_found)?;
    let desc = StreamDesc {
        name: req.pv.clone(),
        payload_type: info.payload_type,
        element_count,
        headers: info.headers,
        from: req.from,
        to: req.to,
    };
    Ok((desc, tiers, TypeSource::Files))
}

/// Puts `latest` over `headers`: a name already there takes the new value (in place),
/// a new name is appended; empty values are dropped (Java `mergeFrom` with the engine's
/// metadata: `putAll`, then empty values not sent).
fn merge_headers(headers: &mut Vec<FieldValue>, latest: Vec<FieldValue>) {
    for h in latest {
        match headers.iter_mut().find(|x| x.name == h.name) {
            Some(x) => x.val = h.val,
            None => headers.push(h),
        }
    }
    headers.retain(|h| !h.val.is_empty());
}

/// Finds the `PVTypeInfo` a retrieval name stands for (Java
/// `PVNames.determineAppropriatePVTypeInfo`): the real PV name, its type info (`None`
/// when the catalogue has none: the live source may know the name) and the archive field
/// to serve. A name without a field: the name, then the name as an alias. `PV.FIELD`: the
/// PV when `FIELD` is one of its archive fields (served from the field values), then
/// `PV.FIELD` archived as a PV of its own, then the PV as an alias with that archive
/// field, then `PV.FIELD` as an alias.
fn resolve(
    catalogue: &dyn Registry,
    name: &str,
) -> Result<(String, Option<PvTypeInfo>, Option<String>), RetrievalError> {
    let info_of = |pv: &str| catalogue.get_type_info(pv).map_err(lookup(pv));
    let alias_of = |pv: &str| catalogue.resolve_alias(pv).map_err(lookup(pv));
    let archives = |info: &PvTypeInfo, field: &str| info.archive_fields.iter().any(|f| f == field);
    let (base, field) = split_field(name);
    if let Some(field) = field.filter(|f| !f.is_empty()) {
        if let Some(info) = info_of(base)?.filter(|i| archives(i, field)) {
            return Ok((info.pv_name.clone(), Some(info), Some(field.to_string())));
        }
        if let Some(info) = info_of(name)? {
            return Ok((info.pv_name.clone(), Some(info), None));
        }
        if let Some(real) = alias_of(base)?
            && let Some(info) = info_of(&real)?.filter(|i| archives(i, field))
        {
            return Ok((real, Some(info), Some(field.to_string())));
        }
    } else if let Some(info) = info_of(name)? {
        return Ok((info.pv_name.clone(), Some(info), None));
    }
    match alias_of(name)? {
        Some(real) => {
            let info = info_of(&real)?;
            Ok((real, info, None))
        }
        None => Ok((name.to_string(), None, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::time::start_of_year;
    use archiver_pb::{Granularity, Value};
    use archiver_registry::{SamplingMethod, SqliteRegistry};
    use archiver_storage::DataStores;

    use crate::ErrorClass;

    fn now() -> Timestamp {
        Timestamp::new(start_of_year(2025) + 7200, 5)
    }

    fn req(pv: &str) -> DataRequest {
        DataRequest::parse(pv, None, None, now()).expect("request")
    }

    fn stores(dir: &std::path::Path) -> DataStores {
        DataStores::from_tiers([
            Tier::new("STS", dir.join("sts"), Granularity::Hour),
            Tier::new("MTS", dir.join("mts"), Granularity::Day),
            Tier::new("LTS", dir.join("lts"), Granularity::Year),
        ])
        .expect("stores")
    }

    fn names(p: &Plan) -> Vec<&str> {
        p.stores.iter().map(Tier::name).collect()
    }

    fn info(pv: &str, urls: &[&str]) -> PvTypeInfo {
        let mut i = PvTypeInfo::new_for_archiving(
            pv,
            PayloadType::ScalarFloat,
            1,
            SamplingMethod::Monitor,
            1.0,
            urls.iter().map(|u| u.to_string()).collect(),
            now(),
        )
        .expect("type info");
        i.set_units("mm");
        i.set_precision(3.0);
        i
    }

    #[test]
    fn names_lose_prefix_and_val_suffix_only() {
        assert_eq!(normalize_name("ca://A:B.VAL"), "A:B");
        assert_eq!(normalize_name("pva://A:B"), "A:B");
        assert_eq!(normalize_name("X:BUILD.VALA"), "X:BUILD.VALA");
        assert_eq!(normalize_name("A:B.HIHI"), "A:B.HIHI");
        assert_eq!(normalize_name(" A "), "A");
    }

    #[test]
    fn request_parameters() {
        let r = req("ca://A:B.VAL");
        assert_eq!(r.pv, "A:B");
        assert_eq!(r.to, Timestamp::new(now().secs + 3600, 5));
        assert_eq!(r.from, Timestamp::new(now().secs + 3600 - 86_400, 5));
        let r = DataRequest::parse("A", Some(""), Some("2025-01-01T00:00:10Z"), now())
            .expect("empty from is absent");
        assert_eq!(r.to.secs, start_of_year(2025) + 10);
        let bad = |pv: &str, from: Option<&str>, to: Option<&str>| {
            let e = DataRequest::parse(pv, from, to, now()).expect_err("refused");
            assert_eq!(e.class(), ErrorClass::BadRequest, "{e}");
            e.to_string()
        };
        assert!(bad("A", Some("yesterday"), None).contains("'from'"));
        assert!(bad("A", None, Some("soon")).contains("'to'"));
        assert!(
            bad(
                "A",
                Some("2025-01-02T00:00:00Z"),
                Some("2025-01-01T00:00:00Z")
            )
            .contains("before")
        );
        assert!(bad("rms_600(A)", None, None).contains("rms_600"));
        assert!(bad("mean_x(A)", None, None).contains("mean_x"));
        assert!(bad("mean_600(A", None, None).contains("unbalanced"));
        assert!(bad("mean_600()", None, None).contains("names no PV"));
        // The function syntax (which wins over `pp`), `pp`, and an empty `pp`.
        let pp = |pv: &str, pp: Option<&str>| {
            DataRequest::parse_with_pp(pv, pp, None, None, now()).expect("request")
        };
        let r = pp("mean_600(ca://A:B.VAL)", Some("max_60"));
        assert_eq!(
            (r.pv.as_str(), r.pp.expect("pp").text.as_str()),
            ("A:B", "mean_600")
        );
        let r = pp("mean(A:B,600)", None);
        assert_eq!(r.pp.expect("pp").text, "mean_600");
        let r = pp("A:B", Some("firstSample_3600"));
        assert_eq!(r.pp.expect("pp").text, "firstSample_3600");
        assert_eq!(pp("A:B", Some(" ")).pp, None);
        assert_eq!(pp("A:B", None).pp, None);
        let e = DataRequest::parse_with_pp("A:B", Some("bogus"), None, None, now())
            .expect_err("unknown pp");
        assert!(e.to_string().contains("\"bogus\""), "{e}");
        assert!(bad("ca://", None, None).contains("names no PV"));
    }

    #[test]
    fn a_catalogued_pv_is_planned_without_the_live_source() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = SqliteRegistry::open_in_memory().expect("registry");
        let stores = stores(dir.path());
        // Java lists the stores newest first: STS, MTS, LTS.
        reg.put_type_info(&info(
            "A:B",
            &[
                "pb://localhost?name=STS&rootFolder=/x&partitionGranularity=PARTITION_HOUR",
                "pb://localhost?name=MTS&rootFolder=/y&partitionGranularity=PARTITION_DAY",
                "pb://localhost?name=LTS&rootFolder=/z&partitionGranularity=PARTITION_YEAR",
            ],
        ))
        .expect("put");
        let p = plan(&req("A:B"), &reg, &stores, &NoLiveSource).expect("plan");
        assert_eq!(p.source, TypeSource::Catalogue);
        assert_eq!(p.pv, "A:B");
        assert_eq!(p.desc.name, "A:B");
        assert_eq!(p.desc.payload_type, PayloadType::ScalarFloat);
        assert_eq!(p.desc.element_count, 1);
        assert_eq!(
            p.desc.headers,
            vec![FieldValue::new("EGU", "mm"), FieldValue::new("PREC", "3")]
        );
        assert_eq!(names(&p), ["LTS", "MTS", "STS"], "oldest data first");
        assert!(p.buffer.is_empty());
    }

    #[test]
    fn store_urls_naming_no_store_fall_back_to_the_default_stores() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = SqliteRegistry::open_in_memory().expect("registry");
        let sts = "pb://localhost?name=STS&rootFolder=/x&partitionGranularity=PARTITION_HOUR";
        let foreign =
            "pb://localhost?name=XSTS&rootFolder=/other/host&partitionGranularity=PARTITION_HOUR";
        let mut i = info("A:B", &[foreign, "parquet://localhost"]);
        i.units = Some(String::new());
        reg.put_type_info(&i).expect("put");
        let p = plan(&req("A:B"), &reg, &stores(dir.path()), &NoLiveSource).expect("plan");
        // Every configured store, each once, oldest data first.
        assert_eq!(names(&p), ["LTS", "MTS", "STS"]);
        // An empty EGU is not listed.
        assert_eq!(p.desc.headers, vec![FieldValue::new("PREC", "3")]);
        // One known store and one foreign: still each store once, in order.
        reg.put_type_info(&info("E:F", &[sts, foreign]))
            .expect("put");
        let p = plan(&req("E:F"), &reg, &stores(dir.path()), &NoLiveSource).expect("plan");
        assert_eq!(names(&p), ["LTS", "MTS", "STS"]);
        // No stores listed at all: the default ones.
        reg.put_type_info(&info("C:D", &[])).expect("put");
        let p = plan(&req("C:D"), &reg, &stores(dir.path()), &NoLiveSource).expect("plan");
        assert_eq!(names(&p), ["LTS", "MTS", "STS"]);
        // Each unresolved URL is logged the first time only.
        assert!(!first_sight(foreign), "already logged by the plans above");
        let fresh = "pb://localhost?name=NEVER_SEEN_BEFORE";
        assert!(first_sight(fresh));
        assert!(!first_sight(fresh));
    }

    #[test]
    fn known_store_urls_read_only_their_stores() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = SqliteRegistry::open_in_memory().expect("registry");
        reg.put_type_info(&info(
            "A:B",
            &["pb://localhost?name=STS&rootFolder=/x&partitionGranularity=PARTITION_HOUR"],
        ))
        .expect("put");
        let p = plan(&req("A:B"), &reg, &stores(dir.path()), &NoLiveSource).expect("plan");
        assert_eq!(names(&p), ["STS"]);
        assert_eq!(p.stores[0].root(), dir.path().join("sts"));
        // A blackhole store (retention) holds nothing to read, and is no unknown store.
        reg.put_type_info(&info(
            "G:H",
            &[
                "pb://localhost?name=STS&rootFolder=/x&partitionGranularity=PARTITION_HOUR",
                &archiver_storage::blackhole_url("Gone"),
            ],
        ))
        .expect("put");
        let p = plan(&req("G:H"), &reg, &stores(dir.path()), &NoLiveSource).expect("plan");
        assert_eq!(names(&p), ["STS"]);
    }

    #[test]
    fn a_store_flagged_skip_for_retrieval_is_not_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = SqliteRegistry::open_in_memory().expect("registry");
        reg.put_type_info(&info("A:B", &[])).expect("put");
        reg.set_named_flag("SKIP_MTS_FOR_RETRIEVAL", true)
            .expect("flag");
        let p = plan(&req("A:B"), &reg, &stores(dir.path()), &NoLiveSource).expect("plan");
        assert_eq!(names(&p), ["LTS", "STS"]);
        reg.set_named_flag("SKIP_MTS_FOR_RETRIEVAL", false)
            .expect("flag");
        let p = plan(&req("A:B"), &reg, &stores(dir.path()), &NoLiveSource).expect("plan");
        assert_eq!(names(&p), ["LTS", "MTS", "STS"]);
    }

    #[test]
    fn an_alias_reads_the_real_pv_and_shows_the_requested_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = SqliteRegistry::open_in_memory().expect("registry");
        reg.put_type_info(&info("REAL:PV", &[])).expect("put");
        reg.add_alias("OLD:NAME", "REAL:PV").expect("alias");
        let mut live = FixedLive::default();
        let s = Sample::new(now(), Value::ScalarFloat(1.5));
        live.buffers.insert("REAL:PV".into(), vec![s.clone()]);
        let p = plan(&req("ca://OLD:NAME.VAL"), &reg, &stores(dir.path()), &live).expect("plan");
        assert_eq!(p.pv, "REAL:PV");
        assert_eq!(p.desc.name, "OLD:NAME");
        assert_eq!(p.source, TypeSource::Catalogue);
        assert_eq!(p.buffer, vec![s]);
    }

    #[test]
    fn a_pv_not_yet_catalogued_takes_its_type_from_the_live_source() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = SqliteRegistry::open_in_memory().expect("registry");
        let mut live = FixedLive::default();
        live.held.insert(
            "NEW:PV".into(),
            LiveDesc {
                payload_type: Some(PayloadType::WaveformDouble),
                element_count: 8,
                headers: vec![FieldValue::new("EGU", "V")],
            },
        );
        live.held.insert(
            "SILENT:PV".into(),
            LiveDesc {
                payload_type: None,
                element_count: 0,
                headers: Vec::new(),
            },
        );
        let stores = stores(dir.path());
        let p = plan(&req("NEW:PV"), &reg, &stores, &live).expect("plan");
        assert_eq!(p.source, TypeSource::Live);
        assert_eq!(p.desc.payload_type, PayloadType::WaveformDouble);
        assert_eq!(p.desc.element_count, 8);
        assert_eq!(p.desc.headers, vec![FieldValue::new("EGU", "V")]);
        assert_eq!(names(&p), ["LTS", "MTS", "STS"], "the default stores");

        let e = plan(&req("SILENT:PV"), &reg, &stores, &live).expect_err("no type");
        assert!(matches!(e, RetrievalError::NeverConnected { .. }), "{e}");
        assert_eq!(e.class(), ErrorClass::NotFound);
        let e = plan(&req("NO:PV"), &reg, &stores, &live).expect_err("unknown");
        assert_eq!(e.to_string(), "Unable to find typeinfo for pv NO:PV");
        assert_eq!(e.class(), ErrorClass::NotFound);
    }

    #[test]
    fn a_retired_pv_is_planned_from_its_files_in_the_stores_of_its_template() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = SqliteRegistry::open_in_memory().expect("registry");
        let stores = stores(dir.path());
        // Files of a PV the catalogue no longer has, in the MTS only.
        let mts = StoreResolver::resolve(
            &stores,
            "pb://localhost?name=MTS&rootFolder=/x&partitionGranularity=PARTITION_DAY",
        )
        .expect("mts");
        let wave = Sample::new(now(), Value::VectorDouble(vec![1.0, 2.0, 3.0]));
        mts.append("GONE:WAVE", PayloadType::WaveformDouble, &[wave])
            .expect("append");
        let p = plan(&req("GONE:WAVE"), &reg, &stores, &NoLiveSource).expect("plan");
        assert_eq!(p.source, TypeSource::Files);
        assert_eq!(p.desc.payload_type, PayloadType::WaveformDouble);
        assert_eq!(p.desc.element_count, 3);
        assert_eq!(names(&p), ["LTS", "MTS", "STS"], "the default stores");

        // retiredPVTemplate: the template's dataStores say where to look.
        reg.put_type_info(&info(
            "TPL:LTS",
            &["pb://localhost?name=LTS&rootFolder=/x&partitionGranularity=PARTITION_YEAR"],
        ))
        .expect("put");
        reg.put_type_info(&info(
            "TPL:MTS",
            &["pb://localhost?name=MTS&rootFolder=/x&partitionGranularity=PARTITION_DAY"],
        ))
        .expect("put");
        let mut r = req("GONE:WAVE");
        r.retired_template = Some("TPL:MTS".into());
        let p = plan(&r, &reg, &stores, &NoLiveSource).expect("plan");
        assert_eq!(names(&p), ["MTS"]);
        r.retired_template = Some("TPL:LTS".into());
        let e = plan(&r, &reg, &stores, &NoLiveSource).expect_err("not in the LTS");
        assert_eq!(e.class(), ErrorClass::NotFound);
        // A template the catalogue does not have: 404 naming it (Java: no typeinfo, 404),
        // not the default stores (where the files are).
        r.retired_template = Some("NO:SUCH:TPL".into());
        let e = plan(&r, &reg, &stores, &NoLiveSource).expect_err("unknown template");
        assert_eq!(e.class(), ErrorClass::NotFound);
        assert!(
            matches!(&e, RetrievalError::UnknownRetiredTemplate { template, .. } if template == "NO:SUCH:TPL"),
            "{e}"
        );
        assert!(e.to_string().contains("NO:SUCH:TPL"), "{e}");
        // A PV the catalogue has ignores the template (Java looks at it only without one).
        let mut r = req("TPL:MTS");
        r.retired_template = Some("NO:SUCH:TPL".into());
        plan(&r, &reg, &stores, &NoLiveSource).expect("a known PV");
        // A name that would escape the store's folder is nobody's.
        let e = plan(&req("../../etc/passwd"), &reg, &stores, &NoLiveSource).expect_err("bad");
        assert_eq!(e.class(), ErrorClass::NotFound);
    }

    #[test]
    fn an_enum_pv_carries_the_live_sources_labels() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = SqliteRegistry::open_in_memory().expect("registry");
        let mut e = info("E:NUM", &[]);
        e.dbr_type = PayloadType::ScalarEnum;
        reg.put_type_info(&e).expect("put");
        reg.put_type_info(&info("F:LT", &[])).expect("put");
        let mut live = FixedLive::default();
        let labels = vec![
            FieldValue::new("EGU", "ignored"),
            FieldValue::new("ENUM_0", "Off"),
            FieldValue::new("ENUM_1", ""),
            FieldValue::new("ENUM_2", "On"),
            FieldValue::new("ENUM_X", "not a label"),
        ];
        for pv in ["E:NUM", "F:LT"] {
            live.held.insert(
                pv.into(),
                LiveDesc {
                    payload_type: Some(PayloadType::ScalarEnum),
                    element_count: 1,
                    headers: labels.clone(),
                },
            );
        }
        let stores = stores(dir.path());
        let p = plan(&req("E:NUM"), &reg, &stores, &live).expect("plan");
        assert_eq!(
            p.desc.headers,
            vec![
                FieldValue::new("EGU", "mm"),
                FieldValue::new("PREC", "3"),
                FieldValue::new("ENUM_0", "Off"),
                FieldValue::new("ENUM_2", "On"),
            ]
        );
        // Not an enum in the catalogue: no labels.
        let p = plan(&req("F:LT"), &reg, &stores, &live).expect("plan");
        assert!(p.desc.headers.iter().all(|h| !h.name.starts_with("ENUM")));
        // Not held by the engine: the catalogue's headers alone.
        let p = plan(&req("E:NUM"), &reg, &stores, &NoLiveSource).expect("plan");
        assert_eq!(p.desc.headers.len(), 2);
        assert!(is_enum_label("ENUM_12") && !is_enum_label("ENUM_") && !is_enum_label("ENUMS"));
    }

    #[test]
    fn time_ranges_replace_from_and_to_or_are_refused() {
        let base = |t: Option<&str>| {
            DataRequest::parse("A", None, None, now()).and_then(|r| r.with_time_ranges(t))
        };
        let r = base(None).expect("none");
        assert_eq!(r.spans, vec![(r.from, r.to)]);
        assert_eq!(base(Some(" ")).expect("empty").spans.len(), 1);
        let r = base(Some(
            "2025-01-01T00:00:00Z,2025-01-01T01:00:00Z,2025-01-01T01:00:00Z,2025-01-02T00:00:00.5Z",
        ))
        .expect("two spans");
        let y = start_of_year(2025);
        assert_eq!(
            r.spans,
            vec![
                (Timestamp::new(y, 0), Timestamp::new(y + 3600, 0)),
                (
                    Timestamp::new(y + 3600, 0),
                    Timestamp::new(y + 86_400, 500_000_000)
                ),
            ]
        );
        assert_eq!((r.from, r.to), (r.spans[0].0, r.spans[1].1));
        for (bad, says) in [
            ("2025-01-01T00:00:00Z", "even number"),
            ("2025-01-01T00:00:00Z,soon", "\"soon\""),
            ("2025-01-02T00:00:00Z,2025-01-01T00:00:00Z", "before start"),
            (
                "2025-01-01T00:00:00Z,2025-01-01T02:00:00Z,2025-01-01T01:00:00Z,2025-01-01T03:00:00Z",
                "previous end",
            ),
        ] {
            let e = base(Some(bad)).expect_err(bad);
            assert_eq!(e.class(), ErrorClass::BadRequest, "{bad}");
            assert!(e.to_string().contains(says), "{bad}: {e}");
            assert!(e.to_string().contains("timeranges"), "{e}");
        }
    }

    #[test]
    fn a_field_of_a_pv_is_served_from_its_archive_fields() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = SqliteRegistry::open_in_memory().expect("registry");
        let mut i = info("A:B", &[]);
        i.archive_fields = vec!["HIHI".into(), "LOLO".into()];
        i.dbr_type = PayloadType::WaveformFloat;
        i.element_count = 4;
        reg.put_type_info(&i).expect("put");
        reg.put_type_info(&info("A:B.DESC", &[])).expect("put");
        reg.add_alias("OLD:B", "A:B").expect("alias");
        let stores = stores(dir.path());
        let p = plan(&req("A:B.HIHI"), &reg, &stores, &NoLiveSource).expect("field");
        assert_eq!(p.pv, "A:B");
        assert_eq!(p.field.as_deref(), Some("HIHI"));
        assert_eq!(p.desc.name, "A:B.HIHI");
        assert_eq!(
            (p.desc.payload_type, p.desc.element_count),
            (PayloadType::ScalarFloat, 1)
        );
        // A field archived as its own PV.
        let p = plan(&req("A:B.DESC"), &reg, &stores, &NoLiveSource).expect("own pv");
        assert_eq!((p.pv.as_str(), p.field.as_deref()), ("A:B.DESC", None));
        // Through an alias of the PV.
        let p = plan(&req("OLD:B.LOLO"), &reg, &stores, &NoLiveSource).expect("alias");
        assert_eq!(
            (p.pv.as_str(), p.field.as_deref(), p.desc.name.as_str()),
            ("A:B", Some("LOLO"), "OLD:B.LOLO")
        );
        // Not an archive field: unknown.
        let e = plan(&req("A:B.HIGH"), &reg, &stores, &NoLiveSource).expect_err("no field");
        assert_eq!(e.class(), ErrorClass::NotFound);
        // The PV itself.
        let p = plan(&req("A:B"), &reg, &stores, &NoLiveSource).expect("pv");
        assert_eq!((p.field, p.desc.element_count), (None, 4));
    }

    #[test]
    fn latest_metadata_and_the_connection_come_from_the_live_source() {
        let dir = tempfile::tempdir().expect("tmp");
        let reg = SqliteRegistry::open_in_memory().expect("registry");
        reg.put_type_info(&info("A:B", &[])).expect("put");
        let mut live = FixedLive::default();
        live.held.insert(
            "A:B".into(),
            LiveDesc {
                payload_type: Some(PayloadType::ScalarFloat),
                element_count: 1,
                headers: vec![
                    FieldValue::new("PREC", "5"),
                    FieldValue::new("HIHI", "10.0"),
                    FieldValue::new("EGU", ""),
                ],
            },
        );
        let lost = now().secs - 95;
        live.disconnected.insert("A:B".into(), lost);
        let stores = stores(dir.path());
        // Without fetchLatestMetadata: the catalogue's headers.
        let p = plan(&req("A:B"), &reg, &stores, &live).expect("plan");
        assert_eq!(
            p.desc.headers,
            vec![FieldValue::new("EGU", "mm"), FieldValue::new("PREC", "3")]
        );
        assert_eq!(
            p.disconnected,
            Some(Disconnected {
                lost_at_secs: lost,
                year: 2025
            })
        );
        // With it: the live values over the catalogue's, new ones added, empty dropped.
        let mut r = req("A:B");
        r.fetch_latest_metadata = true;
        let p = plan(&r, &reg, &stores, &live).expect("plan");
        assert_eq!(
            p.desc.headers,
            vec![
                FieldValue::new("PREC", "5"),
                FieldValue::new("HIHI", "10.0")
            ]
        );
        // A range that ends before the loss says nothing of it.
        let early = DataRequest::parse(
            "A:B",
            None,
            Some(&Timestamp::new(lost - 1, 0).to_string()),
            now(),
        )
        .expect("request");
        assert_eq!(
            plan(&early, &reg, &stores, &live)
                .expect("plan")
                .disconnected,
            None
        );
        // A loss time of 0 (never lost) says nothing either.
        live.disconnected.insert("A:B".into(), 0);
        assert_eq!(
            plan(&req("A:B"), &reg, &stores, &live)
                .expect("plan")
                .disconnected,
            None
        );
    }

    proptest::proptest! {
        /// Any `pv` parameter is a request or a 400, never a panic; a request's name is
        /// not empty.
        #[test]
        fn any_pv_parameter_is_a_request_or_a_bad_request(pv in "\\PC{0,40}", prefixed in 0..3u8) {
            let pv = match prefixed {
                0 => pv,
                1 => format!("ca://{pv}.VAL"),
                _ => format!("pva://{pv}"),
            };
            match DataRequest::parse(&pv, None, None, now()) {
                Ok(r) => {
                    proptest::prop_assert!(!r.pv.is_empty());
                    proptest::prop_assert!(r.from <= r.to);
                }
                Err(e) => proptest::prop_assert_eq!(e.class(), ErrorClass::BadRequest),
            }
        }

        /// Well-formed times give `from <= to` or a 400 naming the reversed range.
        #[test]
        fn ranges_are_ordered_or_refused(a in 0i64..4_000_000_000, b in 0i64..4_000_000_000) {
            let iso = |s: i64| Timestamp::new(s, 0).to_string();
            match DataRequest::parse("A:B", Some(&iso(a)), Some(&iso(b)), now()) {
                Ok(r) => proptest::prop_assert!(a <= b && r.from.secs == a && r.to.secs == b),
                Err(e) => {
                    proptest::prop_assert!(a > b);
                    let reversed = matches!(e, RetrievalError::ToBeforeFrom { .. });
                    proptest::prop_assert!(reversed, "{}", e);
                }
            }
        }
    }
}
