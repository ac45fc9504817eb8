//! `getData.json` / `getData.raw` through the router: a response larger than one piece is
//! streamed (no length, many frames) and holds every sample once, in order; a small one
//! goes out whole with its length.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use archiver_appliance::Appliance;
use archiver_pb::time::start_of_year;
use archiver_pb::{PbReader, Value};
use archiver_registry::SqliteRegistry;
use axum::http::StatusCode;

/// Samples in the file: 100 Hz for 40 minutes, ≈ 17 MB of JSON, ≈ 4 MB of pbraw.
const N: i64 = 240_000;

async fn app(dir: &std::path::Path) -> (Appliance, i64) {
    let t0 = start_of_year(2025) + 3600;
    // Not in the catalogue: the PV is held paused by the engine, its data in its file.
    let samples = support::steady(t0, N, 100);
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    (
        support::holding_file(dir, "T:BIG", &samples, registry).await,
        t0,
    )
}

/// The response's length header (if any), its body frames and the body.
async fn get(state: &Appliance, uri: &str) -> (StatusCode, Option<String>, usize, Vec<u8>) {
    let r = support::get(state, uri).await;
    let len = r
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .map(|v| v.to_str().unwrap().to_string());
    (r.status, len, r.frames, r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_responses_are_streamed_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (state, t0) = app(dir.path()).await;
    let range = format!(
        "from={}&to={}",
        support::iso(t0 - 1),
        support::iso(t0 + N / 100 + 1)
    );

    let (status, len, frames, body) = get(
        &state,
        &format!("/retrieval/data/getData.json?pv=T:BIG&{range}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(len, None, "a streamed body has no length");
    assert!(frames > 10, "{frames} frames for {} bytes", body.len());
    support::assert_json_ramp(&body, N);

    let (status, len, frames, body) = get(
        &state,
        &format!("/retrieval/data/getData.raw?pv=T:BIG&{range}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(len, None);
    assert!(frames > 3, "{frames} frames for {} bytes", body.len());
    let mut r = PbReader::new(std::io::Cursor::new(&body[..])).unwrap();
    assert_eq!(r.header().pv_name, "T:BIG");
    let mut k = 0i64;
    while let Some(s) = r.next_sample().unwrap() {
        assert_eq!(s.value, Value::ScalarDouble(k as f64));
        k += 1;
    }
    assert_eq!(k, N);
    state.engine().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_responses_go_out_whole_with_their_length() {
    let dir = tempfile::tempdir().unwrap();
    let (state, t0) = app(dir.path()).await;
    let (status, len, frames, body) = get(
        &state,
        &format!(
            "/retrieval/data/getData.json?pv=T:BIG&from={}&to={}",
            support::iso(t0 + 10),
            support::iso(t0 + 11)
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(len, Some(body.len().to_string()));
    assert_eq!(frames, 1);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    // The last sample at or before `from` (here the one at `from`), then the 100 after it
    // up to and including `to` (Java's rule).
    assert_eq!(v[0]["data"].as_array().unwrap().len(), 101);

    let (status, ..) = get(&state, "/retrieval/data/getData.json?pv=T:NONE").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    state.engine().shutdown().await;
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        b = &b[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_1_1_a_large_body_is_chunked_and_complete() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (state, t0) = app(dir.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        tokio::spawn(axum::serve(listener, archiver_http::router(state.clone())).into_future());
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /retrieval/data/getData.raw?pv=T:BIG&from={}&to={} HTTP/1.1\r\n\
         Host: 127.0.0.1\r\nConnection: close\r\n\r\n",
        support::iso(t0 - 1),
        support::iso(t0 + N / 100 + 1)
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    conn.read_to_end(&mut resp).await.unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(
        head.contains("content-type: application/x-protobuf"),
        "{head}"
    );
    let body = dechunk(&resp[split + 4..]);
    let mut r = PbReader::new(std::io::Cursor::new(&body[..])).unwrap();
    let mut k = 0i64;
    while let Some(s) = r.next_sample().unwrap() {
        assert_eq!(s.value, Value::ScalarDouble(k as f64));
        k += 1;
    }
    assert_eq!(k, N);
    server.abort();
    state.engine().shutdown().await;
}
