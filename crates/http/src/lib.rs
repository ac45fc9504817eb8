/*!
The HTTP API of the archiver, as the Java EPICS Archiver Appliance serves it, so that
existing clients work unchanged: `/mgmt/bpl/...` for management and `/retrieval/...`
for data (`getData.{json,raw,qw,jplot,csv,txt,mat}`, `getDataForPVs`, `getDataAtTime`)
and the retrieval BPL (`getMatchingPVs`...), on one listener.

# Brief overview

* [`app`] builds the whole axum [`Router`]: the merge of
  * [`mgmt_router`] over a [`SharedAppliance`] (`Arc<dyn ApplianceApi>`, the appliance
    crate's trait: tests drive it with a fake, no engine, no CA), and
  * [`retrieval_router`] over a [`RetrievalState`] (the `archiver_retrieval::Retrieval`
    pipeline built once at start-up: catalogue, data stores, the engine as live source;
    and the clock),

  and the web UI's pages ([`ui`]), wrapped in the tower layers below. [`router`] builds
  the same from an `archiver_appliance::Appliance` alone (its retrieval pipeline and
  clock). Tests drive either without a socket (`tower::ServiceExt::oneshot`).
* [`mgmt`] — handlers by family: `archivePV` ([`mgmt::archive`]); `getPVStatus`,
  `getAllPVs`, `getNeverConnectedPVs` ([`mgmt::status`]); `pauseArchivingPV`,
  `resumeArchivingPV`, `deletePV` ([`mgmt::lifecycle`]). Responses are typed structs
  serialized in the Java key order; `getPVStatus` is written PV by PV into one buffer.
* [`BplRequest`] — the one extractor of every endpoint, management and retrieval: query
  string, form, JSON or text body, merged as Java's servlets see them (rules in
  [`extract`]), so bad input is refused the same way everywhere.
* [`retrieval`] — `/retrieval/data/{call}`: `getData.<ext>` in every format,
  `getDataForPVs.<ext>`, `getDataAtTime`, and the ping PV `ArchApplPingPV`, over the
  pipeline (the PV's stores and the engine's unflushed buffer), streamed in bounded
  pieces (whole with `donotchunk`), with Java's content types exactly.
* [`bpl`] — `/retrieval/bpl/...`: `getMatchingPVs`, `searchForPVsRegex`,
  `areWeArchivingPV`, `getMetadata`, `getVersion`, `filterArchivedPVs`; and
  `/retrieval/ping`.
* [`ui`] — the web UI (management pages and data viewer) under `/mgmt/ui/`, plain
  HTML/CSS/JS compiled into the binary; `/` redirects there.
* [`ApiError`] — every error: 400, 404 and 413 name the problem; 500 is logged.
* [`ops`] — `/metrics` (Prometheus), `/health`, `/ready` over an [`ops::OpsState`]
  (the appliance's figures, read at scrape time, and the retrieval counters that
  [`ops::count_retrieval`] fills); the binary merges [`ops::router`] into [`app`].
* [`auth`] — the API key: [`auth::guard`] wraps a router in the middleware that answers
  401 to a management write ([`auth::WRITE_CALLS`]; reads too when so configured) without
  `Authorization: Bearer <key>`, under an [`auth::Access`]; the binary applies it over
  [`app`] and the operations routes.
* [`tls`] — optional HTTPS: [`tls::server_config`] reads the PEM certificate and key,
  [`tls::TlsListener`] is the listener whose connections are rustls streams.
* [`server::serve`] — the connection loop the binary runs: hyper's HTTP/1 connections
  under [`server::ConnLimits`] (request-head and keep-alive idle timeout, body read
  timeout, a bounded number of connections with a quick 503 beyond it).
* [`ErrorBodies`] ([`edge`]) — the listener wrapper that gives hyper's own refusals
  (414 URI too long, 431, 400 before any handler) the JSON body of an [`ApiError`].

The crate knows no engine: the management API sees PVs through the appliance's trait and
types (`archiver_appliance::PvStatus`... re-exported there), retrieval through the
pipeline; only the tests that run a real appliance start an engine.

# Layers

From the outside in:

1. `TraceLayer` (tower-http): a span and a response event per request, at DEBUG
   (`RUST_LOG=tower_http=debug`); server errors at ERROR.
2. The body limit: [`MAX_BODY_BYTES`] (16 MiB). tower-http's `RequestBodyLimitLayer`
   answers 413 before reading a body whose `Content-Length` is larger; a chunked body
   fails once it passes the limit, and the extractor answers 413. Either way the answer
   is an [`ApiError`] JSON naming the limit. axum's own 2 MiB default is disabled, so
   this is the one limit.
3. Compression: gzip (fastest level: CPU is worth more than bytes on an archiver) of
   `application/json` responses of at least 256 bytes when the request's
   `Accept-Encoding` allows it. A streamed `getData.json` stays streamed: the encoder
   compresses each piece as it comes and flushes whenever the producer has not sent the
   next one, so nothing waits for the end of the body. `getData.raw`
   (`application/x-protobuf`) is never compressed: clients read it as the Java appliance
   sends it. The layer adds `Content-Encoding` only: the `Content-Type` stays exactly
   `application/json` (a widely used Python display client drops any other value).
*/
#![deny(missing_docs)]

pub mod auth;
pub mod bpl;
pub mod edge;
mod error;
pub mod extract;
pub mod mgmt;
pub mod ops;
mod params;
pub mod retrieval;
pub mod server;
mod state;
pub mod tls;
pub mod ui;

use std::sync::Arc;

use archiver_appliance::{Appliance, SharedAppliance};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Extensions, HeaderMap, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

pub use crate::edge::ErrorBodies;
pub use crate::error::{ApiError, ApiResult};
pub use crate::extract::BplRequest;
pub use crate::state::RetrievalState;
pub use archiver_appliance::ApplianceApi;

/// The largest request body accepted: 16 MiB. A bulk `archivePV` of 100 000 PVs as a JSON
/// list of `{"pv": "<name>", "samplingperiod": "1.0", "samplingmethod": "MONITOR"}` takes
/// about 115 bytes a PV with 60-character names, 11.5 MB; a plain list of names less than
/// half of that.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The management routes (`/mgmt/bpl/...`) over `appliance`.
pub fn mgmt_router(appliance: SharedAppliance) -> Router {
    mgmt::router(appliance)
}

/// The retrieval routes (`/retrieval/...`) over `state`: the data calls
/// (`/retrieval/data/getData.<ext>`, `getDataForPVs.<ext>`, `getDataAtTime`:
/// [`retrieval::data_call`]), the retrieval BPL ([`bpl`]) and `/retrieval/ping`.
pub fn retrieval_router(state: RetrievalState) -> Router {
    Router::new()
        .route(
            "/retrieval/data/{call}",
            get(retrieval::data_call).post(retrieval::data_call),
        )
        .route(
            "/retrieval/bpl/getMatchingPVs",
            get(bpl::get_matching_pvs).post(bpl::get_matching_pvs),
        )
        .route(
            "/retrieval/bpl/searchForPVsRegex",
            get(bpl::search_for_pvs_regex).post(bpl::search_for_pvs_regex),
        )
        .route(
            "/retrieval/bpl/areWeArchivingPV",
            get(bpl::are_we_archiving_pv).post(bpl::are_we_archiving_pv),
        )
        .route(
            "/retrieval/bpl/getMetadata",
            get(bpl::get_metadata).post(bpl::get_metadata),
        )
        .route("/retrieval/bpl/getVersion", get(bpl::get_version))
        .route(
            "/retrieval/bpl/filterArchivedPVs",
            get(bpl::filter_archived_pvs).post(bpl::filter_archived_pvs),
        )
        .route("/retrieval/ping", get(bpl::ping))
        .with_state(state)
        .layer(retrieval_cors())
}

/// `Access-Control-Allow-Origin: *` on every retrieval answer, and the answer to a
/// browser's preflight `OPTIONS`: Java's retrieval servlets set that header on their JSON
/// answers (`getData.json`/`.qw`, `getMatchingPVs`, `getDataAtTime`, `filterArchivedPVs`)
/// so that web viewers and Grafana in browser-access mode can read the data from another
/// origin. Retrieval is read-only; management answers carry no such header.
fn retrieval_cors() -> tower_http::cors::CorsLayer {
    use axum::http::Method;
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(tower_http::cors::Any)
}

/// Every endpoint: management over `appliance`, retrieval over `retrieval`, the web UI
/// ([`ui::router`]: `/mgmt/ui/...`, `/` redirects there), with the tracing, body-limit
/// and compression layers.
pub fn app(appliance: SharedAppliance, retrieval: RetrievalState) -> Router {
    with_layers(
        mgmt_router(appliance)
            .merge(retrieval_router(retrieval))
            .merge(ui::router())
            .fallback(no_such_endpoint),
    )
}

/// Any path no route serves: a 404 that names it, in the JSON of every other error (a
/// script calling a Java endpoint this appliance does not serve yet learns which).
async fn no_such_endpoint(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such endpoint: {} (this appliance does not serve it)",
        uri.path()
    ))
}

/// Every endpoint over `appliance`: management through it, retrieval through its pipeline
/// ([`Appliance::retrieval`]: catalogue, data stores, the engine as live source) and its
/// clock, with the layers of [`app`].
pub fn router(appliance: Appliance) -> Router {
    let retrieval = RetrievalState::new(appliance.retrieval(), appliance.clock().clone());
    app(Arc::new(appliance), retrieval)
}

/// Marks a response asked for whole (Java's `donotchunk`): sent with its length, so not
/// compressed (the compression layer would stream it in chunks).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WholeBody;

/// Whether a response is JSON (the compressed kind) and not asked for whole.
fn is_json(_: StatusCode, _: Version, headers: &HeaderMap, extensions: &Extensions) -> bool {
    extensions.get::<WholeBody>().is_none()
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"))
}

/// The 413 of the body limit layer (plain text) as an [`ApiError`] naming the limit, and
/// axum's empty 405 as one naming the methods the call takes.
async fn explain_too_large(resp: Response) -> Response {
    let plain = !resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && plain {
        return ApiError::body_too_large().into_response();
    }
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED && plain {
        // axum's answer has an empty body: say what the call takes (its `Allow` header).
        let takes = match resp
            .headers()
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
        {
            Some(allow) => format!("it takes {allow}"),
            None => "the data and management calls take GET and POST, putPVTypeInfo and \
                     importConfig POST only, as in Java"
                .to_string(),
        };
        let mut answer = ApiError::MethodNotAllowed(format!(
            "this call does not take this HTTP method; {takes}"
        ))
        .into_response();
        if let Some(a) = resp.headers().get(header::ALLOW) {
            answer.headers_mut().insert(header::ALLOW, a.clone());
        }
        return answer;
    }
    resp
}

/// `router` wrapped in the layers of [`app`]: tracing, the body limit, compression (see
/// the crate documentation). Tests wrap [`mgmt_router`] over a fake with it.
pub fn with_layers(router: Router) -> Router {
    router
        .layer(
            CompressionLayer::new()
                .quality(CompressionLevel::Fastest)
                .compress_when(SizeAbove::new(256).and(is_json)),
        )
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(explain_too_large))
        .layer(TraceLayer::new_for_http())
}
