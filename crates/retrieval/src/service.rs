//! [`Retrieval`]: the pipeline as one value a server (or a tool) holds.

use std::sync::Arc;

use archiver_registry::Registry;

use archiver_pb::{PayloadType, Sample, Timestamp, Value};

use crate::collect::for_each_sample;
use crate::csv::CsvResponse;
use crate::encode::{Encoder, Format};
use crate::error::RetrievalError;
use crate::field::FieldValues;
use crate::jplot::JplotResponse;
use crate::json::JsonResponse;
use crate::mat::MatResponse;
use crate::plan::{DataRequest, LiveSource, Plan, StoreResolver, StreamDesc, TypeSource, plan};
use crate::postprocess::{PostProcessor, Raw, build};
use crate::produce::{PieceSink, Produced, Producer};
use crate::qw::QwResponse;
use crate::raw::RawResponse;
use crate::txt::TextResponse;

/// The name of the Java connectivity check: `getData.<ext>?pv=ArchApplPingPV` answers ten
/// synthetic `DBR_SCALAR_DOUBLE` samples without looking the name up
/// ([`ping_plan`]).
pub const PING_PV: &str = "ArchApplPingPV";

/// Runs `$body` with `$enc` bound to a new encoder of `$format`.
macro_rules! with_encoder {
    ($format:expr, |$enc:ident| $body:expr) => {
        match $format {
            Format::Json => {
                let $enc = JsonResponse::new();
                $body
            }
            Format::Raw => {
                let $enc = RawResponse::new();
                $body
            }
            Format::Csv => {
                let $enc = CsvResponse::new();
                $body
            }
            Format::Txt => {
                let $enc = TextResponse::new();
                $body
            }
            Format::Qw => {
                let $enc = QwResponse::new();
                $body
            }
            Format::Jplot => {
                let $enc = JplotResponse::new();
                $body
            }
            Format::Mat => {
                let $enc = MatResponse::new();
                $body
            }
        }
    };
}

/// The post-processor of one PV of a request: the request's (`pp`), or the identity for
/// the raw data; for a `PV.FIELD` plan, the field's values first ([`FieldValues`]).
fn post_processor(
    req: &DataRequest,
    plan: &Plan,
) -> Result<Box<dyn PostProcessor>, RetrievalError> {
    let inner: Box<dyn PostProcessor> = match &req.pp {
        None => Box::new(Raw),
        Some(spec) => {
            if let Some((bins, max)) = spec.op.bins(req.from, req.to)
                && bins > max
            {
                return Err(RetrievalError::TooManyBins {
                    spec: spec.text.clone(),
                    bins,
                    max,
                });
            }
            build(spec)
        }
    };
    Ok(match &plan.field {
        Some(field) => Box::new(FieldValues::new(field.clone(), inner)),
        None => inner,
    })
}

/// The plan of Java's connectivity check (`pv=ArchApplPingPV`, [`PING_PV`]), alone
/// or among the PVs of `getDataForPVs`: ten `DBR_SCALAR_DOUBLE` samples
/// `0.0, 0.1, ... 0.9` named `ArchApplPingPV`, whatever the request's range. Java stamps
/// all ten with the first second of the current year; here they are one second apart
/// from it (so that JSON clients see ten distinct samples).
pub fn ping_plan(now: Timestamp) -> Plan {
    let start = archiver_time::calendar::start_of_year(now.year());
    let buffer = (0..10)
        .map(|i| {
            Sample::new(
                Timestamp::new(start + i, 0),
                Value::ScalarDouble(0.1 * i as f64),
            )
        })
        .collect();
    Plan {
        desc: StreamDesc {
            name: PING_PV.to_string(),
            payload_type: PayloadType::ScalarDouble,
            element_count: 1,
            headers: Vec::new(),
            from: Timestamp::new(start, 0),
            to: Timestamp::new(start + 9, 0),
        },
        pv: PING_PV.to_string(),
        stores: Vec::new(),
        buffer,
        source: TypeSource::Live,
        spans: Vec::new(),
        field: None,
        disconnected: None,
        cached: None,
    }
}

/// Everything a retrieval reads: the catalogue (type infos, aliases), the stores its
/// `dataStores` URLs resolve to, and the live source (the engine's unwritten samples).
/// Cheap to clone. Every method blocks (catalogue and files); servers call them on a
/// blocking thread.
#[derive(Clone)]
pub struct Retrieval {
    catalogue: Arc<dyn Registry>,
    stores: Arc<dyn StoreResolver>,
    live: Arc<dyn LiveSource>,
}

impl std::fmt::Debug for Retrieval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrieval").finish_non_exhaustive()
    }
}

impl Retrieval {
    /// A retrieval over these sources.
    pub fn new(
        catalogue: Arc<dyn Registry>,
        stores: Arc<dyn StoreResolver>,
        live: Arc<dyn LiveSource>,
    ) -> Self {
        Retrieval {
            catalogue,
            stores,
            live,
        }
    }

    /// Plans `req`: see [`crate::plan()`]. The name [`PING_PV`] plans Java's
    /// connectivity check ([`ping_plan`]) whatever the catalogue holds.
    pub fn plan(&self, req: &DataRequest) -> Result<Plan, RetrievalError> {
        if req.pv == PING_PV {
            return Ok(ping_plan(req.now));
        }
        plan(
            req,
            self.catalogue.as_ref(),
            self.stores.as_ref(),
            self.live.as_ref(),
        )
    }

    /// Plans `req` and streams it in `format` into `sink`: its raw data, or what its
    /// post-processor ([`DataRequest::pp`]) makes of them. A planning error
    /// (400/404 material) comes before any piece; an error after the first piece means a
    /// truncated body.
    pub fn run(
        &self,
        req: &DataRequest,
        format: Format,
        sink: &mut dyn PieceSink,
    ) -> Result<Produced, RetrievalError> {
        let plan = self.plan(req)?;
        let mut pp = post_processor(req, &plan)?;
        with_encoder!(format, |enc| {
            let mut producer = Producer::new(enc, sink);
            producer.pv(&plan, pp.as_mut())?;
            producer.finish()
        })
    }

    /// The catalogue (type infos, aliases) this retrieval reads.
    pub fn catalogue(&self) -> &dyn Registry {
        self.catalogue.as_ref()
    }

    /// The live source (the engine's unwritten samples and metadata).
    pub fn live(&self) -> &dyn LiveSource {
        self.live.as_ref()
    }

    /// Plans every request of `reqs` (any failure, such as an unknown PV, is returned
    /// before any piece: Java's `getDataForPVs` answers 404 for the whole request), then
    /// streams them one after the other, in order, in `format` into `sink` (Java
    /// `getDataForPVs`). Every plan, with its snapshot of the live buffer, is held until
    /// the end.
    pub fn run_many(
        &self,
        reqs: &[DataRequest],
        format: Format,
        sink: &mut dyn PieceSink,
    ) -> Result<Produced, RetrievalError> {
        let plans = reqs
            .iter()
            .map(|r| self.plan(r))
            .collect::<Result<Vec<_>, _>>()?;
        // Every post-processor is checked (bins within limits) before the first byte.
        let mut pps = plans
            .iter()
            .zip(reqs)
            .map(|(p, r)| post_processor(r, p))
            .collect::<Result<Vec<_>, _>>()?;
        with_encoder!(format, |enc| {
            let mut producer = Producer::new(enc, sink);
            for (p, pp) in plans.iter().zip(pps.iter_mut()) {
                producer.pv(p, pp.as_mut())?;
            }
            producer.finish()
        })
    }

    /// The sample of `pv` in effect at `at` (the latest at or before it, from the stores
    /// and the live buffer; Java `GetDataAtTime`), if it is not older than `oldest`, with
    /// what the response says about the PV. Errors as [`Retrieval::plan`]
    /// (an unknown PV is [`RetrievalError::NotFound`]). A `PV.FIELD` served from archive
    /// fields has no value here (`None`): the field rides on a few samples only.
    pub fn value_at(
        &self,
        pv: &str,
        at: Timestamp,
        oldest: Timestamp,
    ) -> Result<Option<(Plan, Sample)>, RetrievalError> {
        let req = DataRequest::range(crate::plan::normalize_name(pv), at, at, at);
        let plan = self.plan(&req)?;
        if plan.field.is_some() {
            return Ok(None);
        }
        let tiers: Vec<&archiver_storage::Tier> = plan.stores.iter().collect();
        let mut found: Option<Sample> = None;
        for_each_sample(&tiers, &plan.pv, at, at, &plan.buffer, |s| {
            if found.as_ref().is_none_or(|f| f.time < s.time) {
                found = Some(s.clone());
            }
            Ok::<(), RetrievalError>(())
        })?;
        Ok(found
            .filter(|s| s.time >= oldest && s.time <= at)
            .map(|s| (plan, s)))
    }

    /// Plans `req` and streams it through `pp` and `encoder` into `sink`.
    pub fn run_with<E: Encoder, P: PostProcessor + ?Sized>(
        &self,
        req: &DataRequest,
        encoder: E,
        pp: &mut P,
        sink: &mut dyn PieceSink,
    ) -> Result<Produced, RetrievalError> {
        let plan = self.plan(req)?;
        let mut producer = Producer::new(encoder, sink);
        producer.pv(&plan, pp)?;
        producer.finish()
    }
}
