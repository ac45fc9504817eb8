//! `archiver_http::server::serve` against hostile clients, over real sockets: a request head
//! dribbled, a keep-alive connection left idle, a body that stops arriving, more
//! connections than allowed. Timeouts are short here (the defaults are 30 s).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use archiver_http::BplRequest;
use archiver_http::server::{ConnLimits, serve};
use axum::Router;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start(limits: ConnLimits) -> std::net::SocketAddr {
    let router = Router::new()
        .route("/ping", get(|| async { "Pong" }))
        .route(
            "/names",
            post(|r: BplRequest| async move { format!("{:?}", r.names_or_empty_list()) }),
        );
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(serve(
        archiver_http::ErrorBodies(tcp),
        router,
        limits,
        std::future::pending(),
    ));
    addr
}

fn limits(timeout_ms: u64, max_connections: usize) -> ConnLimits {
    ConnLimits {
        header_read_timeout: Duration::from_millis(timeout_ms),
        body_read_timeout: Duration::from_millis(timeout_ms),
        max_connections,
    }
}

/// A connection to `addr` that has sent `request`.
async fn send(addr: std::net::SocketAddr, request: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    s
}

/// Reads until the server closes the connection (or `within` passes: a failure); returns
/// what it sent and when it closed.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> (String, Duration) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let r = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(r.is_ok(), "still open after {within:?}");
    (String::from_utf8_lossy(&got).into_owned(), t0.elapsed())
}

#[tokio::test]
async fn a_dribbled_request_head_is_cut_off_after_the_header_timeout() {
    let addr = start(limits(300, 16)).await;
    let mut s = send(addr, b"GET /ping HTTP/1.1\r\nHost: x\r\n").await;
    // one more header line every 100 ms: never a whole head
    let dribble = async {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), dribble)
        .await
        .expect("the server closed the connection");
    let (got, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(!got.contains("Pong"), "{got}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let addr = start(limits(300, 16)).await;
    let mut s = send(addr, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (got, after) = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("Pong"),
        "{got}"
    );
    assert!(after >= Duration::from_millis(250), "{after:?}");
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_with_a_message() {
    let addr = start(limits(300, 16)).await;
    let mut s = send(addr, b"POST /names HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nA,B").await;
    let (got, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("body_read_timeout_secs"), "{got}");
}

#[tokio::test]
async fn connections_over_the_limit_get_a_quick_503_and_are_served_once_one_is_free() {
    let addr = start(limits(60_000, 2)).await;
    // two idle connections hold the two places (a request proves each is being served)
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = send(addr, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let (got, after) = read_to_close(&mut third, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(
        got.contains("retry-after: 1") && got.contains("max_connections"),
        "{got}"
    );
    assert!(after < Duration::from_secs(2), "{after:?}");
    // A liveness probe is answered even now (a flood must not get the process restarted);
    // readiness is not.
    for (request, want) in [
        ("GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200"),
        ("GET /health?x=1 HTTP/1.0\r\n\r\n", "HTTP/1.1 200"),
        ("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200"),
        ("GET /ready HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 503"),
        ("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 503"),
    ] {
        let mut s = send(addr, request.as_bytes()).await;
        let (got, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
        assert!(got.starts_with(want), "{request:?}: {got}");
        if request.starts_with("GET") && want.ends_with("200") {
            assert!(got.ends_with("\r\n\r\n{\"status\":\"ok\"}"), "{got}");
        }
        if request.starts_with("HEAD") {
            assert!(
                got.ends_with("\r\n\r\n"),
                "a HEAD answer has no body: {got}"
            );
        }
    }
    drop(held.pop());
    // the freed place is taken by the next connection (poll: the close is seen async)
    let t0 = Instant::now();
    loop {
        let mut s = send(
            addr,
            b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let (got, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
        if got.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(got.starts_with("HTTP/1.1 503"), "{got}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
