//! The connection loop: [`serve`] answers a [`Router`] on a listener (plain TCP or
//! [`crate::tls::TlsListener`], each wrapped in [`crate::ErrorBodies`]) under the limits of
//! [`ConnLimits`], so that slow or numerous clients cannot hold the server:
//!
//! * **Request head**: hyper's HTTP/1 `header_read_timeout` (with tokio's timer): a client
//!   that has not sent a whole request head within [`ConnLimits::header_read_timeout`] is
//!   disconnected. The timer also runs while a keep-alive connection waits for its next
//!   request, so it is the idle timeout of keep-alive connections too.
//! * **Request body**: tower-http's `RequestBodyTimeoutLayer`: a body that sends no data
//!   for [`ConnLimits::body_read_timeout`] fails; the extractor answers 408 (a body over
//!   [`crate::MAX_BODY_BYTES`] is refused with 413 by the body limit of [`crate::app`]).
//! * **Connections**: at most [`ConnLimits::max_connections`] are served at once; one more
//!   gets a quick `503` with a JSON body and `Retry-After: 1` (at most [`BUSY_ANSWERS`]
//!   such answers are under way at a time, each for at most half a second reading the
//!   request line and a second writing; beyond that the connection is closed at once), so
//!   a flood costs a bounded number of tasks, buffers and file descriptors. `GET /health`
//!   is answered `200` even then (the request line is read first): the process is alive,
//!   and a liveness probe must not restart it because of a flood; `/ready` answers the 503
//!   (no room for more).
//!
//! axum's own `axum::serve` sets no timer, so none of the timeouts exists there; this
//! loop is the same as its (hyper-util's `TowerToHyperService` over the router, hyper's
//! connection, a graceful shutdown that lets requests under way finish) with the limits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// The limits of [`serve`] (module docs). The binary reads them from the configuration
/// (`header_read_timeout_secs`, `body_read_timeout_secs`, `max_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Time to send a whole request head, and the longest idle wait of a keep-alive
    /// connection. Default 30 s (hyper's default; Tomcat's `connectionTimeout` under the
    /// Java appliance is 20 s).
    pub header_read_timeout: Duration,
    /// Longest pause between two pieces of a request body. Default 30 s.
    pub body_read_timeout: Duration,
    /// Connections served at once; more get a 503. Default 1024.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// At most this many `503` answers to connections over the limit are written at a time.
pub const BUSY_ANSWERS: usize = 256;

/// How long writing a `503` to a connection over the limit may take.
const BUSY_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The head of the answer to `GET /health` on a connection over
/// [`ConnLimits::max_connections`] ([`HEALTH_BODY`] follows it but for a `HEAD`): the
/// route's own answer (`crate::ops`).
const HEALTH_OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
    connection: close\r\ncontent-length: 15\r\n\r\n";

/// The body of [`HEALTH_OK`].
const HEALTH_BODY: &[u8] = b"{\"status\":\"ok\"}";

/// How long a connection over the limit has to send its request line.
const BUSY_HEAD_TIMEOUT: Duration = Duration::from_millis(500);

/// The most bytes of a request read, over the limit, to find its request line.
const BUSY_HEAD_BYTES: usize = 1024;

/// The answer to a connection over [`ConnLimits::max_connections`].
fn busy_response() -> Vec<u8> {
    let body = serde_json::json!({
        "status": "error",
        "message": "too many connections: this server serves a limited number at once \
                    (max_connections); retry in a moment",
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` under `limits` until `shutdown` completes; then stops
/// accepting and waits for the connections' requests under way to finish (the caller
/// bounds that wait, as with `axum::serve`).
///
/// # Errors
///
/// None today (the listener retries failed accepts itself); the `Result` is the shape of
/// `axum::serve`'s.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    L: Listener,
    L::Io: Unpin,
{
    let router = router.layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout));
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let busy = Arc::new(Semaphore::new(BUSY_ANSWERS));
    let busy_answer: Arc<[u8]> = busy_response().into();
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut refused: u64 = 0;
    loop {
        let (io, _addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused,
                    "a connection over max_connections ({}) was answered 503; {refused} so \
                     far (logged at powers of two)",
                    limits.max_connections
                );
            }
            if let Ok(slot) = busy.clone().try_acquire_owned() {
                let answer = busy_answer.clone();
                tokio::spawn(async move {
                    answer_busy(io, &answer).await;
                    drop(slot);
                });
            }
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTP connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answers a connection over the limit: reads its request line for at most
/// [`BUSY_HEAD_TIMEOUT`], then writes, for at most [`BUSY_WRITE_TIMEOUT`], [`HEALTH_OK`] to
/// a `GET`/`HEAD` of `/health` and `busy` (the 503) to anything else (also to a client
/// that sent no request line in time).
async fn answer_busy<T: AsyncRead + AsyncWrite + Unpin>(mut io: T, busy: &[u8]) {
    let mut head = [0u8; BUSY_HEAD_BYTES];
    let mut n = 0;
    let _ = tokio::time::timeout(BUSY_HEAD_TIMEOUT, async {
        while n < head.len() && !head[..n].contains(&b'\n') {
            match io.read(&mut head[n..]).await {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
    })
    .await;
    let (answer, body): (&[u8], &[u8]) = match health_check(&head[..n]) {
        Some(HealthCheck::Get) => (HEALTH_OK, HEALTH_BODY),
        Some(HealthCheck::Head) => (HEALTH_OK, b""),
        None => (busy, b""),
    };
    let _ = tokio::time::timeout(BUSY_WRITE_TIMEOUT, async {
        io.write_all(answer).await?;
        io.write_all(body).await?;
        io.shutdown().await
    })
    .await;
}

/// A liveness probe's request: `GET /health` or `HEAD /health` (no body in the answer).
enum HealthCheck {
    Get,
    Head,
}

/// The health check whose request line `head` starts with (with or without a query).
fn health_check(head: &[u8]) -> Option<HealthCheck> {
    let line = head.split(|&b| b == b'\n').next()?;
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next()?, parts.next()?);
    if target.split(|&b| b == b'?').next() != Some(b"/health".as_slice()) {
        return None;
    }
    match method {
        b"GET" => Some(HealthCheck::Get),
        b"HEAD" => Some(HealthCheck::Head),
        _ => None,
    }
}
