//! Optional TLS on the listener (rustls, over the `ring` provider): the binary's
//! `tls_cert` and `tls_key` (PEM files) make it serve HTTPS.
//!
//! [`server_config`] reads the PEM files into a rustls configuration (HTTP/1.1 by ALPN:
//! the server speaks HTTP/1.1 only); [`TlsListener`] is an `axum::serve` listener whose
//! connections are TLS streams. Handshakes run in their own tasks, each bounded by
//! [`HANDSHAKE_TIMEOUT`], so a slow or silent client holds up no other; a failed handshake
//! is logged at DEBUG and the connection dropped. [`crate::ErrorBodies`] wraps it as it
//! wraps a plain listener.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

/// How long a client may take over its TLS handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS configuration that cannot be built; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be read or holds no PEM certificate.
    #[error("tls_cert {path}: {reason}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key file cannot be read or holds no PEM private key.
    #[error("tls_key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refuses the pair (a key that does not match the certificate, say).
    #[error("tls_cert {cert} with tls_key {key}: {reason}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        reason: String,
    },
}

/// The rustls server configuration of the certificate chain in `cert` and the private
/// key in `key` (PEM; PKCS#8, PKCS#1 or SEC1), HTTP/1.1 by ALPN.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cert.to_path_buf(),
            reason: "no PEM certificate in the file".to_string(),
        });
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let pair = |e: tokio_rustls::rustls::Error| TlsError::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason: e.to_string(),
    };
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(pair)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(pair)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener serving TLS over `tcp` (module docs): `axum::serve(TlsListener::new(tcp,
/// config), router)`.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
    max_handshakes: usize,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("tcp", &self.tcp)
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// TLS with `config` ([`server_config`]) over the bound `tcp`.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> Self {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
        }
    }

    /// At most `n` (at least 1) handshakes at a time: beyond, new connections wait in the
    /// listen backlog, so a flood of clients that never finish a handshake holds a bounded
    /// number of sockets (each for at most the handshake timeout). The binary passes its
    /// `max_connections`; default [`DEFAULT_MAX_HANDSHAKES`].
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.max_handshakes = n.max(1);
        self
    }
}

/// Handshakes under way at a time, unless [`TlsListener::max_handshakes`] says otherwise.
pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept(), if self.handshakes.len() < self.max_handshakes => match accepted {
                    Ok((stream, addr)) => {
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => Some((tls, addr)),
                                Ok(Err(e)) => {
                                    tracing::debug!("TLS handshake with {addr} failed: {e}");
                                    None
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake with {addr} timed out");
                                    None
                                }
                            }
                        });
                    }
                    Err(e) => {
                        // As axum's own TCP listener: out of file descriptors and the
                        // like pass; wait a little instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Test support: a self-signed certificate for `localhost` and a rustls client trusting it
/// (this crate's tests, and with the feature `testing` the binary's HTTPS test).
#[cfg(any(test, feature = "testing"))]
#[allow(clippy::unwrap_used)]
pub mod testing {
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    /// A self-signed certificate for `localhost`, written as `cert.pem` and `key.pem` (PEM)
    /// in `dir`: their paths and the certificate (DER). Panics on failure (tests only).
    pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
        (cert, key, c.cert.der().clone())
    }

    /// A rustls client (ring, default protocol versions) trusting only `der`.
    pub fn client_trusting(der: CertificateDer<'static>) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(der).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(client))
    }

    /// A TLS connection of `client` to `addr`, for the name `localhost`. Panics on failure.
    pub async fn connect(
        client: &TlsConnector,
        addr: SocketAddr,
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let name = ServerName::try_from("localhost").unwrap();
        client
            .connect(name, TcpStream::connect(addr).await.unwrap())
            .await
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{client_trusting, connect, self_signed};
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TLS server set up in `dir`: a loopback listener, the server configuration of a
    /// self-signed certificate for `localhost`, and a rustls client trusting only it.
    struct Fixture {
        tcp: TcpListener,
        addr: std::net::SocketAddr,
        config: Arc<ServerConfig>,
        client: tokio_rustls::TlsConnector,
    }

    impl Fixture {
        async fn new(dir: &Path) -> Fixture {
            let (cert, key, der) = self_signed(dir);
            let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
            Fixture {
                addr: tcp.local_addr().unwrap(),
                tcp,
                config: server_config(&cert, &key).unwrap(),
                client: client_trusting(der),
            }
        }
    }

    fn ping_router() -> axum::Router {
        axum::Router::new().route("/ping", axum::routing::get(|| async { "Pong" }))
    }

    /// A real HTTPS request: a rustls client trusting the self-signed certificate gets the
    /// router's answer over [`TlsListener`] (through [`crate::ErrorBodies`], as the binary
    /// serves it); a plain-HTTP request on the same port gets no HTTP answer.
    #[tokio::test]
    async fn a_request_over_tls_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture::new(dir.path()).await;
        let (addr, client) = (f.addr, f.client);
        tokio::spawn(async move {
            axum::serve(
                crate::ErrorBodies(TlsListener::new(f.tcp, f.config)),
                ping_router(),
            )
            .await
            .unwrap();
        });
        let mut tls = connect(&client, addr).await;
        tls.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("Pong"), "{answer}");

        // Plain HTTP on the TLS port: no HTTP answer.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let _ = plain.read_to_end(&mut got).await;
        assert!(!String::from_utf8_lossy(&got).contains("Pong"));
    }

    /// The limits of `server::serve` hold over TLS too: an idle connection (handshake done,
    /// no request) is closed after the header timeout; with one connection allowed, a
    /// second gets the 503 over TLS; and a client that never starts its handshake does not
    /// stop a later one (handshakes run beside the accept loop).
    #[tokio::test]
    async fn tls_connections_get_the_same_limits() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture::new(dir.path()).await;
        let (addr, client) = (f.addr, f.client);
        let limits = crate::server::ConnLimits {
            header_read_timeout: Duration::from_millis(300),
            body_read_timeout: Duration::from_millis(300),
            max_connections: 1,
        };
        tokio::spawn(crate::server::serve(
            crate::ErrorBodies(TlsListener::new(f.tcp, f.config).max_handshakes(4)),
            ping_router(),
            limits,
            std::future::pending(),
        ));
        // a silent TCP client first: it never sends a ClientHello
        let _silent = TcpStream::connect(addr).await.unwrap();
        let t0 = std::time::Instant::now();
        let mut idle = connect(&client, addr).await;
        let mut got = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut got)).await;
        assert!(closed.is_ok(), "the idle TLS connection stayed open");
        assert!(t0.elapsed() >= Duration::from_millis(250));
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
        // one connection allowed: hold it, the next one gets the 503
        let mut held = connect(&client, addr).await;
        held.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = held.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let mut over = connect(&client, addr).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), over.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = self_signed(dir.path());
        let missing = dir.path().join("none.pem");
        let e = server_config(&missing, &key).unwrap_err().to_string();
        assert!(e.contains("tls_cert") && e.contains("none.pem"), "{e}");
        let e = server_config(&cert, &cert).unwrap_err().to_string();
        assert!(e.contains("tls_key"), "{e}");
        let e = server_config(&key, &key).unwrap_err().to_string();
        assert!(e.contains("tls_cert"), "{e}");
    }
}
