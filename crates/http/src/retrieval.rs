//! `/retrieval/data/*` over the retrieval pipeline ([`archiver_retrieval::Retrieval`],
//! built once at start-up and held in the [`RetrievalState`]): `getData.<ext>` (one PV),
//! `getDataForPVs.<ext>` (several), `getDataAtTime` (the value of each PV at one instant).
//! This module only reads the parameters (through [`BplRequest`], as every endpoint: the
//! query string of a GET or POST, and a form, JSON or text body of a POST), runs the
//! pipeline on a blocking thread and turns its pieces into a streamed body.
//!
//! The first piece decides the status: an error before any byte (bad parameters, an
//! unknown PV, a file that cannot be read) is a proper 400/404/500, and a body that fits
//! one piece goes out whole, with its length. An error after the status line has gone out
//! cuts the connection, so a client sees a truncated response, never a short valid one. A
//! client that goes away stops the reading. `donotchunk` (any value but `false`, as Java)
//! collects the whole body first and sends it with its length.
//!
//! The content type is the format's, exactly as Java's ([`Format::content_type`]: nothing
//! appended; the compression layer adds none).

use archiver_pb::Timestamp;
use archiver_retrieval::{
    DataRequest, ErrorClass, PIECES_QUEUED, PieceSink, PostProcessorSpec, Produced, Retrieval,
    RetrievalError,
};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ApiResult};
use crate::extract::BplRequest;
use crate::state::RetrievalState;

pub use archiver_retrieval::{Format, normalize_name};

/// `GET` / `POST /retrieval/data/getData.json`: `pv` (a name, or a post-processor in the
/// function syntax `mean_600(PV)` / `mean(PV,600)`; `PV.FIELD` serves an archive field
/// from the values carried on the PV's samples), `pp` (a post-processor spec, when
/// `pv` is a plain name), `from`, `to` (ISO 8601; absent `to` is now, absent `from` a day
/// before `to`), `timeranges` (start,end pairs replacing `from`/`to`),
/// `fetchLatestMetadata` (`true`: the engine's metadata now in the headers) in the query
/// string or a form body. An unknown post-processor is a 400 naming it (Java answers the
/// raw data).
pub async fn get_data_json(
    State(state): State<RetrievalState>,
    req: BplRequest,
) -> ApiResult<Response> {
    get_data(state, &req, Format::Json).await
}

/// `GET` / `POST /retrieval/data/getData.raw`: the parameters of [`get_data_json`].
pub async fn get_data_raw(
    State(state): State<RetrievalState>,
    req: BplRequest,
) -> ApiResult<Response> {
    get_data(state, &req, Format::Raw).await
}

/// `GET` / `POST /retrieval/data/{call}`: the data calls by name, as Java's
/// `DataRetrievalServlet` dispatches them:
///
/// * `getData.<ext>`, `<ext>` one of [`Format::ALL`] (`raw json qw jplot csv txt`): one PV
///   (`pv`, `pp`, `from`, `to`, `timeranges`, `fetchLatestMetadata`, `donotchunk`: see
///   [`get_data_json`]); `pv=ArchApplPingPV` is Java's connectivity check
///   (planned by [`Retrieval::plan`], alone or among other PVs);
/// * `getDataForPVs.<ext>`, `<ext>` one of `raw json qw jplot`: every `pv` value (each one
///   name, as Java's `getParameterValues`) and the names of a JSON or text body, over one
///   range; any unknown PV is a 404 for the whole request, as Java's;
/// * `getDataAtTime` (or `getDataAtTime.json`): see [`get_data_at_time`].
///
/// Errors: 400 for another call or extension (naming it and what is served), bad
/// parameters; 404 for an unknown PV.
pub async fn data_call(
    State(state): State<RetrievalState>,
    Path(call): Path<String>,
    req: BplRequest,
) -> ApiResult<Response> {
    let (method, ext) = match call.split_once('.') {
        Some((m, e)) => (m, Some(e)),
        None => (call.as_str(), None),
    };
    match method {
        "getData" => get_data(state, &req, format_of(ext, false)?).await,
        "getDataForPVs" => get_data_for_pvs(state, &req, format_of(ext, true)?).await,
        "getDataAtTime" => match ext {
            None | Some("json") => get_data_at_time(state, &req).await,
            Some(e) => Err(ApiError::bad(format!(
                "getDataAtTime answers JSON only; '.{e}' is not served"
            ))),
        },
        _ => Err(ApiError::bad(format!(
            "\"{method}\" is not a valid API method; use getData.<ext>, getDataForPVs.<ext> \
             or getDataAtTime"
        ))),
    }
}

/// The format of an extension, or a 400 naming it and the formats served.
fn format_of(ext: Option<&str>, multi: bool) -> ApiResult<Format> {
    let served = || {
        Format::ALL
            .iter()
            .filter(|f| !multi || f.multi_pv())
            .map(|f| f.extension())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(ext) = ext else {
        return Err(ApiError::bad(format!(
            "no format: add one of the extensions {}",
            served()
        )));
    };
    match Format::from_extension(ext) {
        Some(f) if !multi || f.multi_pv() => Ok(f),
        Some(_) => Err(ApiError::bad(format!(
            "format '{ext}' serves one PV; getDataForPVs serves {}",
            served()
        ))),
        None => Err(ApiError::bad(format!(
            "format '{ext}' is not served; use one of {}",
            served()
        ))),
    }
}

/// The response to a failed retrieval; `pv` names the request in a 500's log line.
fn api_error(e: RetrievalError, pv: &str) -> ApiError {
    match e.class() {
        ErrorClass::BadRequest => ApiError::bad(e.to_string()),
        ErrorClass::NotFound => ApiError::not_found(e.to_string()),
        ErrorClass::Internal | ErrorClass::ClientGone => {
            ApiError::internal(format!("reading {pv}: {e}"))
        }
    }
}

/// Java's `donotchunk`: any value but `false` asks for the whole body at once.
fn do_not_chunk(p: &BplRequest) -> bool {
    p.get("donotchunk").is_some_and(|v| v != "false")
}

/// The request for `pv` (one name of the request) with the common parameters: `pp`,
/// `from`, `to`, `timeranges` (a comma list of ISO-8601 start,end pairs, ascending;
/// overrides `from`/`to`), `fetchLatestMetadata` (`true`: the engine's metadata now in
/// the headers; any other value: no, as Java), `usereduced` (`true` and no post-processor
/// asked for: Java's `TwoWeekRaw`, [`PostProcessorSpec::use_reduced`]),
/// `retiredPVTemplate` (where to look for the files of a PV not in the catalogue,
/// [`DataRequest::retired_template`]). 400 for bad times
/// or time ranges.
pub fn data_request(p: &BplRequest, pv: &str, now: Timestamp) -> ApiResult<DataRequest> {
    let mut req = DataRequest::parse_with_pp(pv, p.get("pp"), p.get("from"), p.get("to"), now)
        .and_then(|r| r.with_time_ranges(p.get("timeranges")))
        .map_err(|e| api_error(e, pv))?;
    req.fetch_latest_metadata = p
        .get("fetchLatestMetadata")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    req.retired_template = p
        .get("retiredPVTemplate")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if req.pp.is_none()
        && p.get("usereduced")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        req.pp = Some(PostProcessorSpec::use_reduced(now));
    }
    Ok(req)
}

async fn get_data(state: RetrievalState, p: &BplRequest, format: Format) -> ApiResult<Response> {
    let pv = p.required("pv")?;
    let now = state.clock.now();
    let req = data_request(p, pv, now)?;
    let label = req.pv.clone();
    stream(&state, format, do_not_chunk(p), label, move |r, sink| {
        r.run(&req, format, sink)
    })
    .await
}

/// The PV names of `getDataForPVs`: each `pv` value (a comma list, as the form body
/// `pv=A,B` of the other calls, unless it holds a post-processor's arguments
/// `op(PV,a,b)`), then the names of a JSON or text body.
pub fn multi_names(p: &BplRequest) -> ApiResult<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for v in p.params().all("pv") {
        if v.contains('(') {
            names.push(v.trim().to_string());
        } else {
            names.extend(v.split(',').map(|n| n.trim().to_string()));
        }
    }
    names.retain(|v| !v.is_empty());
    names.extend(p.body_names().iter().map(|e| e.pv.clone()));
    if names.is_empty() {
        return Err(ApiError::bad(
            "missing required parameter 'pv' (repeat it for each PV, or POST a list of PVs)",
        ));
    }
    Ok(names)
}

async fn get_data_for_pvs(
    state: RetrievalState,
    p: &BplRequest,
    format: Format,
) -> ApiResult<Response> {
    let names = multi_names(p)?;
    let now = state.clock.now();
    let reqs = names
        .iter()
        .map(|pv| data_request(p, pv, now))
        .collect::<ApiResult<Vec<_>>>()?;
    let label = format!("{} PVs", reqs.len());
    stream(&state, format, do_not_chunk(p), label, move |r, sink| {
        r.run_many(&reqs, format, sink)
    })
    .await
}

/// Runs `job` on a blocking thread and answers with its pieces in `format` (see the
/// module); `label` names the request in log lines.
async fn stream<F>(
    state: &RetrievalState,
    format: Format,
    whole: bool,
    label: String,
    job: F,
) -> ApiResult<Response>
where
    F: FnOnce(&Retrieval, &mut dyn PieceSink) -> Result<Produced, RetrievalError> + Send + 'static,
{
    let retrieval = state.retrieval.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(PIECES_QUEUED);
    let job_label = label.clone();
    tokio::task::spawn_blocking(move || {
        let mut sink = ChannelSink(tx.clone());
        match job(&retrieval, &mut sink) {
            Ok(done) if done.skipped_lines > 0 => tracing::warn!(
                pv = %job_label,
                skipped = done.skipped_lines,
                "undecodable lines skipped while reading"
            ),
            Ok(_) | Err(RetrievalError::ClientGone) => {}
            Err(e) => {
                let _ = tx.blocking_send(Piece::Failed(e));
            }
        }
    });
    let body = match rx.recv().await {
        Some(Piece::Last(all)) => axum::body::Body::from(all),
        Some(Piece::More(first)) if whole => {
            let mut all = first;
            loop {
                match rx.recv().await {
                    Some(Piece::More(b)) => all.extend(b),
                    Some(Piece::Last(b)) => {
                        all.extend(b);
                        break;
                    }
                    Some(Piece::Failed(e)) => return Err(api_error(e, &label)),
                    None => return Err(ApiError::internal(format!("reading {label} stopped"))),
                }
            }
            axum::body::Body::from(all)
        }
        Some(Piece::More(first)) => axum::body::Body::from_stream(Pieces {
            first: Some(first),
            rest: rx,
        }),
        Some(Piece::Failed(e)) => return Err(api_error(e, &label)),
        None => {
            return Err(ApiError::internal(format!("reading {label} stopped")));
        }
    };
    let mut response = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    if whole {
        // Not compressed either: gzip would stream it in chunks again.
        response.extensions_mut().insert(crate::WholeBody);
    }
    Ok(response)
}

/// Days in a Java `java.time.Period` text (`P1D`, `P2W`, `P1Y2M3D`, `-P1D`), counting a
/// month as 31 days and a year as 366 (the window is a search bound: a longer one only
/// looks further back). `None` when it does not parse or is negative.
pub fn period_days(text: &str) -> Option<i64> {
    let t = text.trim();
    let rest = t.strip_prefix('+').unwrap_or(t);
    let rest = rest.strip_prefix('P').or_else(|| rest.strip_prefix('p'))?;
    if rest.is_empty() {
        return None;
    }
    let mut days: i64 = 0;
    let mut num = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' => num.push(c),
            'Y' | 'y' | 'M' | 'm' | 'W' | 'w' | 'D' | 'd' => {
                let n: i64 = num.parse().ok()?;
                num.clear();
                let per = match c.to_ascii_uppercase() {
                    'Y' => 366,
                    'M' => 31,
                    'W' => 7,
                    _ => 1,
                };
                days = days.checked_add(n.checked_mul(per)?)?;
            }
            _ => return None,
        }
    }
    num.is_empty().then_some(days)
}

/// `POST /retrieval/data/getDataAtTime` (and GET): the value of each PV at one instant
/// (Java `GetDataAtTime`, used by save/restore tools). Parameters: `at` (ISO 8601; absent:
/// now), `searchPeriod` (a `java.time.Period`, default `P1D`: how far before `at` a value
/// is looked for; as Java, the search reaches `searchPeriod` plus 31 days back),
/// `includeProxies` (true/false; accepted, there are no proxied appliances here). The PVs:
/// a JSON list (or text) body and/or `pv` values.
///
/// The answer is a JSON object keyed by the names as requested, in request order:
/// `{"PV": {"secs": 1418019667, "nanos": 601158377, "val": -0.09, "severity": 0,
/// "status": 0, "meta": {"DBRType": "DBR_SCALAR_DOUBLE", "EGU": "mR/h", "PREC": "2"}}}`
/// (values as in `getData.json`, waveforms as arrays); `meta` also has `"source":"engine"`
/// when the value comes from the engine's buffer rather than a store, as in Java. A PV that is unknown, or has no
/// value in the window, is left out (`{}` when none has one, or for an empty list), as Java's.
pub async fn get_data_at_time(state: RetrievalState, p: &BplRequest) -> ApiResult<Response> {
    let names = p.names_or_empty_list()?;
    let at = match p.get("at").filter(|v| !v.trim().is_empty()) {
        None => state.clock.now(),
        Some(v) => archiver_time::parse_iso8601(v)
            .map_err(|e| ApiError::bad(format!("parameter 'at': {e}")))?,
    };
    let period = p.get("searchPeriod").unwrap_or("P1D");
    let days = period_days(period).ok_or_else(|| {
        ApiError::bad(format!(
            "parameter 'searchPeriod': {period:?} is not a java.time.Period such as P1D, P2W, P1M"
        ))
    })?;
    p.flag("includeProxies", false)?;
    let window = days.saturating_add(31).saturating_mul(86_400);
    let oldest = Timestamp::new(at.secs.saturating_sub(window), at.nanos);
    let retrieval = state.retrieval.clone();
    let body = tokio::task::spawn_blocking(move || at_time_body(&retrieval, &names, at, oldest))
        .await
        .map_err(ApiError::internal)??;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The JSON body of [`get_data_at_time`].
fn at_time_body(
    retrieval: &Retrieval,
    names: &[String],
    at: Timestamp,
    oldest: Timestamp,
) -> ApiResult<Vec<u8>> {
    use archiver_retrieval::json::{string, value};
    let mut out = Vec::with_capacity(64 * names.len() + 2);
    out.push(b'{');
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name.as_str()) {
            continue;
        }
        let found = match retrieval.value_at(name, at, oldest) {
            Ok(found) => found,
            Err(e) if matches!(e.class(), ErrorClass::NotFound | ErrorClass::BadRequest) => None,
            Err(e) => return Err(api_error(e, name)),
        };
        let Some((plan, s)) = found else { continue };
        if out.len() > 1 {
            out.push(b',');
        }
        string(&mut out, name);
        out.extend_from_slice(b":{\"secs\":");
        out.extend_from_slice(s.time.secs.to_string().as_bytes());
        out.extend_from_slice(b",\"nanos\":");
        out.extend_from_slice(s.time.nanos.to_string().as_bytes());
        out.extend_from_slice(b",\"val\":");
        value(&mut out, &s.value);
        out.extend_from_slice(b",\"severity\":");
        out.extend_from_slice(s.severity.to_string().as_bytes());
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(s.status.to_string().as_bytes());
        out.extend_from_slice(b",\"meta\":{\"DBRType\":");
        string(&mut out, &format!("DBR_{}", s.value.payload_type().name()));
        // Java marks a value taken from the engine's buffer (not yet in a store).
        if plan.buffer.iter().any(|b| b.time == s.time) {
            out.extend_from_slice(b",\"source\":\"engine\"");
        }
        for h in &plan.desc.headers {
            out.push(b',');
            string(&mut out, &h.name);
            out.push(b':');
            string(&mut out, &h.val);
        }
        out.extend_from_slice(b"}}");
    }
    out.push(b'}');
    Ok(out)
}

/// A part of a response body, from the producing thread.
enum Piece {
    /// More follows.
    More(Vec<u8>),
    /// The end of the body.
    Last(Vec<u8>),
    /// The retrieval failed (before the first piece: the response is an error).
    Failed(RetrievalError),
}

/// The pieces of a response, to the connection's queue; gone once the connection's end
/// of the queue is dropped (the client went away, before or during the body).
struct ChannelSink(tokio::sync::mpsc::Sender<Piece>);

impl PieceSink for ChannelSink {
    fn piece(&mut self, bytes: Vec<u8>, last: bool) -> Result<(), RetrievalError> {
        let piece = if last {
            Piece::Last(bytes)
        } else {
            Piece::More(bytes)
        };
        self.0
            .blocking_send(piece)
            .map_err(|_| RetrievalError::ClientGone)
    }

    fn gone(&self) -> bool {
        self.0.is_closed()
    }
}

/// The body after its first piece. A failure after the status line has gone out ends the
/// body with an error: the connection is cut.
struct Pieces {
    first: Option<Vec<u8>>,
    rest: tokio::sync::mpsc::Receiver<Piece>,
}

impl futures_core::Stream for Pieces {
    type Item = Result<axum::body::Bytes, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(first.into())));
        }
        self.rest.poll_recv(cx).map(|piece| {
            piece.map(|p| match p {
                Piece::More(b) | Piece::Last(b) => Ok(b.into()),
                Piece::Failed(e) => {
                    tracing::error!("response cut: {e}");
                    Err(std::io::Error::other(e.to_string()))
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize_name("ca://A:B.VAL"), "A:B");
        assert_eq!(normalize_name("pva://A:B"), "A:B");
        assert_eq!(normalize_name("X:BUILD.VALA"), "X:BUILD.VALA");
        assert_eq!(normalize_name(" A "), "A");
    }

    #[test]
    fn search_periods_read_as_java_periods() {
        assert_eq!(period_days("P1D"), Some(1));
        assert_eq!(period_days("P2W"), Some(14));
        assert_eq!(period_days("P1Y2M3D"), Some(366 + 62 + 3));
        assert_eq!(period_days("+P0D"), Some(0));
        for bad in [
            "",
            "P",
            "1D",
            "P1",
            "P1H",
            "-P1D",
            "PT1H",
            "P99999999999999999999D",
        ] {
            assert_eq!(period_days(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn errors_map_to_their_status() {
        use axum::http::StatusCode;
        let status = |e| api_error(e, "A:B").into_response().status();
        assert_eq!(
            status(RetrievalError::NotFound { pv: "A:B".into() }),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(RetrievalError::EmptyName("ca://".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(RetrievalError::Storage(
                archiver_storage::StorageError::DuplicateStore("STS".into())
            )),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
