//! `/retrieval/data/getData.{json,raw}`: one PV over the short-term store and the engine's
//! unflushed buffer, with the Java response shapes.

use archiver_pb::{FieldValue, Timestamp};
use archiver_retrieval::json::JsonResponse;
use archiver_retrieval::raw::RawResponse;
use archiver_retrieval::time::parse_iso8601;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::state::AppState;

/// The formats served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `getData.json`.
    Json,
    /// `getData.raw` (pbraw).
    Raw,
}

/// Strips what the Java appliance strips from a retrieval name: a `ca://` or `pva://`
/// prefix and a trailing `.VAL`.
pub fn normalize_name(name: &str) -> &str {
    let name = name.trim();
    let name = name
        .strip_prefix("ca://")
        .or_else(|| name.strip_prefix("pva://"))
        .unwrap_or(name);
    name.strip_suffix(".VAL").unwrap_or(name)
}

fn time_param(p: &Params, key: &str) -> ApiResult<Option<Timestamp>> {
    p.get(key)
        .filter(|v| !v.is_empty())
        .map(|v| parse_iso8601(v).map_err(|e| ApiError::bad(format!("parameter '{key}': {e}"))))
        .transpose()
}

/// `GET /retrieval/data/getData.json`.
pub async fn get_data_json(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    get_data(app, q, Format::Json).await
}

/// `GET /retrieval/data/getData.raw`.
pub async fn get_data_raw(
    State(app): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    get_data(app, q, Format::Raw).await
}

async fn get_data(app: AppState, q: Option<String>, format: Format) -> ApiResult<Response> {
    let p = Params::parse(q.as_deref());
    let requested = p.required("pv")?;
    if let Some(open) = requested.find('(')
        && requested.ends_with(')')
    {
        return Err(ApiError::bad(format!(
            "post-processor {:?} is not supported yet; request the PV name alone for raw data",
            &requested[..open]
        )));
    }
    let pv = normalize_name(requested).to_string();
    let pv_for_errors = pv.clone();
    let now = app.clock.now();
    let to = time_param(&p, "to")?.unwrap_or(now);
    let from = time_param(&p, "from")?.unwrap_or(Timestamp::new(to.secs - 86_400, to.nanos));
    if to < from {
        return Err(ApiError::bad(format!(
            "'to' ({to}) is before 'from' ({from})"
        )));
    }
    let status = app
        .engine
        .status(&pv)
        .ok_or_else(|| ApiError::not_found(format!("Unable to find typeinfo for pv {pv}")))?;
    let Some(payload_type) = status.archived_type else {
        return Err(ApiError::not_found(format!(
            "PV {pv} has never connected: its type is not known yet and it has no data"
        )));
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    if status.meta.known {
        if !status.meta.egu.is_empty() {
            headers.push(("EGU".into(), status.meta.egu.clone()));
        }
        headers.push(("PREC".into(), status.meta.prec.to_string()));
    }
    let buffer = app
        .engine
        .buffered(&pv)
        .map(|b| b.samples)
        .unwrap_or_default();
    let sts = app.engine.sts().clone();
    let element_count = status.conn.element_count.max(1) as i32;
    let content_type = match format {
        Format::Json => "application/json",
        Format::Raw => "application/x-protobuf",
    };
    // The body is produced on a blocking thread and sent in pieces of about `PIECE` bytes
    // through a short queue: memory stays bounded whatever the time range, and a slow
    // client slows the reading, never the archiving. A client that goes away stops it.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(PIECES_QUEUED);
    let producer = move || {
        let send = |piece: Piece| tx.blocking_send(piece).map_err(|_| Stop::ClientGone);
        let result = match format {
            Format::Json => {
                let mut r = JsonResponse::new();
                let mut started = false;
                archiver_retrieval::for_each_sample(&[&sts], &pv, from, to, &buffer, |s| {
                    if !started {
                        r.begin_pv(&pv, &headers);
                        started = true;
                    }
                    r.sample(s);
                    if r.pending() >= PIECE {
                        send(Piece::More(r.take()))?;
                    }
                    Ok::<(), Stop>(())
                })
                .and_then(|_| send(Piece::Last(r.finish())))
            }
            Format::Raw => {
                let mut r = RawResponse::new();
                let fv = headers
                    .iter()
                    .map(|(k, v)| FieldValue::new(k.clone(), v.clone()))
                    .collect();
                r.begin_pv(&pv, payload_type, element_count, fv);
                archiver_retrieval::for_each_sample(&[&sts], &pv, from, to, &buffer, |s| {
                    r.sample(s);
                    if r.pending() >= PIECE {
                        send(Piece::More(r.take()))?;
                    }
                    Ok::<(), Stop>(())
                })
                .and_then(|_| {
                    r.end_pv(from.year());
                    send(Piece::Last(r.finish()))
                })
            }
        };
        if let Err(Stop::Storage(e)) = result {
            let _ = send(Piece::Failed(e.to_string()));
        }
    };
    tokio::task::spawn_blocking(producer);
    // The first piece decides the status: an error before any byte is sent is a proper
    // error response, and a body that fits one piece goes out whole (with its length).
    let body = match rx.recv().await {
        Some(Piece::Last(all)) => axum::body::Body::from(all),
        Some(Piece::More(first)) => axum::body::Body::from_stream(Pieces {
            first: Some(first),
            rest: rx,
        }),
        Some(Piece::Failed(e)) => {
            return Err(ApiError::internal(format!("reading {pv_for_errors}: {e}")));
        }
        None => {
            return Err(ApiError::internal(format!(
                "reading {pv_for_errors} stopped"
            )));
        }
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// Bytes of response produced before they are handed to the connection.
const PIECE: usize = 256 * 1024;

/// Pieces waiting for the connection: with [`PIECE`], at most ≈ 1 MiB per response.
const PIECES_QUEUED: usize = 4;

/// A part of a response body, from the producing thread.
enum Piece {
    /// More follows.
    More(Vec<u8>),
    /// The end of the body.
    Last(Vec<u8>),
    /// Reading failed after the response had started (or before it).
    Failed(String),
}

/// Why the producer stopped early.
enum Stop {
    /// The client went away (the response was dropped).
    ClientGone,
    /// The files could not be read.
    Storage(archiver_storage::StorageError),
}

impl From<archiver_storage::StorageError> for Stop {
    fn from(e: archiver_storage::StorageError) -> Self {
        Stop::Storage(e)
    }
}

/// The body after its first piece. A failure after the status line has gone out ends the
/// body with an error: the connection is cut, so a client sees a truncated response, not
/// a short valid one.
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
                Piece::Failed(e) => Err(std::io::Error::other(e)),
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
}
