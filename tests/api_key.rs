//! Issue 13, "Security": the real binary bound beyond loopback refuses to start without an
//! API key; with one, a management write without the key is 401 and with it 200, reads
//! stay open, and `archiver mgmt` sends the key (`--api-key`). With `tls_cert`/`tls_key`
//! it speaks HTTPS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::{Archiver, http_with};

#[test]
fn serve_bound_wide_without_a_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("ARCHIVER_API_KEY")
        .env("EPICS_CA_ADDR_LIST", "127.0.0.1:1")
        .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("api_key") && err.contains("open_management"),
        "{err}"
    );
}

#[test]
fn with_a_key_writes_need_it_and_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let key = "test-key-0123456789";
    let mut a = Archiver::start_on(dir.path(), "", "0.0.0.0:0", &[("ARCHIVER_API_KEY", key)]);
    let write = "/mgmt/bpl/archivePV?pv=SEC:TEST:PV";
    let (status, body) = http_with(a.port, "GET", write, &[], None);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let bad = format!("Bearer {key}x");
    let (status, _) = http_with(a.port, "GET", write, &[("Authorization", &bad)], None);
    assert_eq!(status, 401);
    // Nothing was archived by the refused calls.
    let before = a.status("SEC:TEST:PV");
    assert_eq!(before["status"], "Not being archived", "{before}");
    let good = format!("Bearer {key}");
    let (status, body) = http_with(a.port, "GET", write, &[("Authorization", &good)], None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let after = a.status("SEC:TEST:PV");
    assert_ne!(after["status"], "Not being archived", "{after}");
    // Retrieval stays open.
    let (status, _) = a.get("/retrieval/bpl/getVersion");
    assert_eq!(status, 200);

    // `archiver mgmt` without the key is refused, with --api-key it goes through.
    let server = format!("127.0.0.1:{}", a.port);
    let mgmt = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_archiver"))
            .args([
                "mgmt",
                "pauseArchivingPV",
                "--pv",
                "SEC:TEST:PV",
                "--server",
            ])
            .arg(&server)
            .args(extra)
            .env_remove("ARCHIVER_API_KEY")
            .output()
            .unwrap()
    };
    let out = mgmt(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("401"), "{err}");
    let out = mgmt(&["--api-key", key]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("401"), "{err}");
    assert!(a.terminate());
}

/// `tls_cert` and `tls_key`: the binary answers over TLS (a rustls client trusting the
/// self-signed certificate made here), and prints an https:// address.
#[test]
fn serve_with_a_certificate_speaks_https() {
    use archiver_http::tls::testing::{client_trusting, connect, self_signed};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = self_signed(dir.path());
    let config = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let mut a = Archiver::start_on(&dir.path().join("data"), &config, "127.0.0.1:0", &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = rt.block_on(async {
        let mut tls = connect(&client_trusting(der), a.addr).await;
        tls.write_all(
            b"GET /retrieval/ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    });
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("Pong"), "{answer}");
    assert!(a.terminate());
}
