//! [`Retrieval`]: the pipeline as one value a server (or a tool) holds.

use std::sync::Arc;

use archiver_registry::Registry;

use crate::encode::{Encoder, Format};
use crate::error::RetrievalError;
use crate::json::JsonResponse;
use crate::plan::{DataRequest, LiveSource, Plan, StoreResolver, plan};
use crate::postprocess::{PostProcessor, Raw, build};
use crate::produce::{PieceSink, Produced, Producer};
use crate::raw::RawResponse;

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

    /// Plans `req`: see [`crate::plan()`].
    pub fn plan(&self, req: &DataRequest) -> Result<Plan, RetrievalError> {
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
        match (&req.pp, format) {
            (None, Format::Json) => self.run_with(req, JsonResponse::new(), &mut Raw, sink),
            (None, Format::Raw) => self.run_with(req, RawResponse::new(), &mut Raw, sink),
            (Some(spec), Format::Json) => {
                self.run_with(req, JsonResponse::new(), build(spec).as_mut(), sink)
            }
            (Some(spec), Format::Raw) => {
                self.run_with(req, RawResponse::new(), build(spec).as_mut(), sink)
            }
        }
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
