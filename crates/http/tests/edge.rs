//! hyper's own refusals over a real socket: a URI longer than hyper reads (a
//! `getDataForPVs` GET with thousands of `pv=`) is a 414 whose body names the problem, as
//! JSON like every other error; an ordinary request on the same server is untouched.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};

use axum::Router;
use axum::routing::get;

/// Sends `request` on a new connection and reads the answer to the end (the server closes).
fn exchange(port: u16, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uri_too_long_is_a_414_with_a_json_message() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = Router::new().route(
        "/retrieval/data/getDataForPVs.json",
        get(|| async { "[ \n ]\n" }),
    );
    let server = tokio::spawn(async move {
        axum::serve(archiver_http::ErrorBodies(listener), router)
            .await
            .unwrap()
    });

    let answer = tokio::task::spawn_blocking(move || {
        let pvs: String = (0..6000).map(|k| format!("&pv=SOME:LONG:PV:{k:05}")).collect();
        let long = format!(
            "GET /retrieval/data/getDataForPVs.json?from=2025-01-01T00:00:00Z{pvs} HTTP/1.1\r\nhost: x\r\n\r\n"
        );
        assert!(long.len() > 65_534);
        let short = "GET /retrieval/data/getDataForPVs.json?pv=A HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
        (exchange(port, long.as_bytes()), exchange(port, short.as_bytes()))
    })
    .await
    .unwrap();
    let (long, short) = answer;
    assert!(long.starts_with("HTTP/1.1 414 "), "{long}");
    let (head, body) = long.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["status"], "error", "{body}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("URI too long") && msg.contains("POST"),
        "{msg}"
    );
    // An ordinary answer passes untouched.
    assert!(short.starts_with("HTTP/1.1 200 "), "{short}");
    assert!(short.ends_with("[ \n ]\n"), "{short}");
    server.abort();
}
