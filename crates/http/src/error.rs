//! The one error type of every handler: client errors carry their message; server errors
//! are logged and answered with a generic message. The body is
//! `{"status": "error", "message": "..."}`.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An HTTP error response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is wrong; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// 404: the PV (or other thing) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 413: the request body is larger than the server accepts (see
    /// [`crate::MAX_BODY_BYTES`]).
    #[error("{0}")]
    TooLarge(String),
    /// 408: the client stopped sending its request body (see
    /// [`crate::server::ConnLimits::body_read_timeout`]).
    #[error("{0}")]
    RequestTimeout(String),
    /// 405: the call exists but not with this HTTP method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 500: something failed on our side (logged).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 with `msg`.
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    /// A 404 with `msg`.
    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError::NotFound(msg.into())
    }

    /// A 500 from any error.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    /// The 413 of a body over [`crate::MAX_BODY_BYTES`].
    pub fn body_too_large() -> Self {
        ApiError::TooLarge(format!(
            "request body is larger than {} MiB, the most this server accepts; \
             send the list in several requests",
            crate::MAX_BODY_BYTES >> 20
        ))
    }
}

/// The 400 of a name pattern refused as too costly (`RegistryError::PatternTooCostly`'s
/// `message`), logged as a warning at powers of two of the refusals since start, so that
/// an operator sees them without a flood of them flooding the log.
pub(crate) fn pattern_too_costly(message: String) -> ApiError {
    static REFUSED: AtomicU64 = AtomicU64::new(0);
    let refused = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
    if refused.is_power_of_two() {
        tracing::warn!(
            refused,
            "refused a too costly name pattern, {refused} so far (logged at powers of two): \
             {message}"
        );
    }
    ApiError::BadRequest(message)
}

/// The JSON body of an error.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            ApiError::MethodNotAllowed(m) => (StatusCode::METHOD_NOT_ALLOWED, m),
            ApiError::RequestTimeout(m) => (StatusCode::REQUEST_TIMEOUT, m),
            ApiError::Internal(m) => {
                tracing::error!("internal error: {m}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the server log".to_string(),
                )
            }
        };
        let body = serde_json::to_vec(&ErrorBody {
            status: "error",
            message: &msg,
        })
        .unwrap_or_else(|_| b"{\"status\":\"error\"}".to_vec());
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// Handler results.
pub type ApiResult<T> = Result<T, ApiError>;
