//! `/retrieval/data/getData.{json,raw}` over the retrieval pipeline
//! ([`archiver_retrieval::Retrieval`], built once at start-up and held in the
//! [`RetrievalState`]): this module only reads the parameters (through [`BplRequest`], as
//! every endpoint: the query string of a GET or POST, and a form body of a POST, as Java's
//! `DataRetrievalServlet` reads them), runs the pipeline on a blocking thread and turns its
//! pieces into a streamed body.
//!
//! The first piece decides the status: an error before any byte (bad parameters, an
//! unknown PV, a file that cannot be read) is a proper 400/404/500, and a body that fits
//! one piece goes out whole, with its length. An error after the status line has gone out
//! cuts the connection, so a client sees a truncated response, never a short valid one. A
//! client that goes away stops the reading.

use archiver_retrieval::{DataRequest, ErrorClass, PIECES_QUEUED, RetrievalError};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ApiResult};
use crate::extract::BplRequest;
use crate::state::RetrievalState;

pub use archiver_retrieval::{Format, normalize_name};

/// `GET` / `POST /retrieval/data/getData.json`: `pv` (a name, or a post-processor in the
/// function syntax `mean_600(PV)` / `mean(PV,600)`), `pp` (a post-processor spec, when
/// `pv` is a plain name), `from`, `to` (ISO 8601; absent `to` is now, absent `from` a day
/// before `to`) in the query string or a form body. An unknown post-processor is a 400
/// naming it (Java answers the raw data).
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

async fn get_data(state: RetrievalState, p: &BplRequest, format: Format) -> ApiResult<Response> {
    let pv = p.required("pv")?;
    let req = DataRequest::parse_with_pp(
        pv,
        p.get("pp"),
        p.get("from"),
        p.get("to"),
        state.clock.now(),
    )
    .map_err(|e| api_error(e, pv))?;
    let retrieval = state.retrieval;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(PIECES_QUEUED);
    let producer_req = req.clone();
    tokio::task::spawn_blocking(move || {
        let mut sink = |bytes: Vec<u8>, last: bool| {
            let piece = if last {
                Piece::Last(bytes)
            } else {
                Piece::More(bytes)
            };
            tx.blocking_send(piece)
                .map_err(|_| RetrievalError::ClientGone)
        };
        match retrieval.run(&producer_req, format, &mut sink) {
            Ok(done) if done.skipped_lines > 0 => tracing::warn!(
                pv = %producer_req.pv,
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
        Some(Piece::More(first)) => axum::body::Body::from_stream(Pieces {
            first: Some(first),
            rest: rx,
        }),
        Some(Piece::Failed(e)) => return Err(api_error(e, &req.pv)),
        None => {
            return Err(ApiError::internal(format!("reading {} stopped", req.pv)));
        }
    };
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
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
