//! A small Channel Access server: enough to serve simulated PVs of every native type to
//! real clients (libca, pyepics, this crate's client) and to generate load.
//!
//! It answers UDP searches, accepts TCP circuits, and handles CREATE_CHAN, READ_NOTIFY
//! (and the obsolete READ), WRITE_NOTIFY / WRITE, EVENT_ADD / EVENT_CANCEL,
//! CLEAR_CHANNEL and ECHO; it sends beacons (fast at start-up, then every
//! `beacon_period`). PVs are added with [`Server::add_pv`] and updated through the
//! returned [`Pv`] handle ([`Pv::post`]).

mod conn;
mod pv;
pub mod sim;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

pub use pv::{Pv, PvSpec};

use crate::config::{
    ClientConfig, ClientConfigBuilder, DEFAULT_REPEATER_PORT, DEFAULT_SERVER_PORT, resolve_entry,
};
use crate::error::CaError;
use crate::header::{CA_MINOR, DO_REPLY, Header, cmd, payload_str, push_message};

/// Server configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Interface to bind (TCP and UDP).
    pub bind: Ipv4Addr,
    /// Port for UDP search and TCP; 0 picks a free port (the same number for both).
    pub port: u16,
    /// Where beacons go.
    pub beacon_addrs: Vec<SocketAddr>,
    /// Steady beacon period.
    pub beacon_period: Duration,
    /// Largest accepted request payload.
    pub max_array_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: Ipv4Addr::LOCALHOST,
            port: DEFAULT_SERVER_PORT,
            beacon_addrs: vec![SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                DEFAULT_REPEATER_PORT,
            )],
            beacon_period: Duration::from_secs(15),
            max_array_bytes: crate::config::DEFAULT_MAX_ARRAY_BYTES,
        }
    }
}

impl ServerConfig {
    /// A server on a free loopback port (one number for UDP search and TCP) that sends no
    /// beacons: the in-process IOC of tests and of `archiver demo`. Its clients find it
    /// through [`Server::client_config`].
    pub fn loopback() -> Self {
        ServerConfig {
            port: 0,
            beacon_addrs: Vec::new(),
            ..ServerConfig::default()
        }
    }

    /// Reads EPICS_CAS_SERVER_PORT (else EPICS_CA_SERVER_PORT), EPICS_CAS_INTF_ADDR_LIST
    /// (first entry), EPICS_CAS_BEACON_ADDR_LIST, EPICS_CAS_BEACON_PORT (else
    /// EPICS_CA_REPEATER_PORT), EPICS_CAS_BEACON_PERIOD and EPICS_CA_MAX_ARRAY_BYTES.
    pub fn from_env() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut c = ServerConfig::default();
        if let Some(p) = get("EPICS_CAS_SERVER_PORT")
            .or_else(|| get("EPICS_CA_SERVER_PORT"))
            .and_then(|v| v.trim().parse().ok())
        {
            c.port = p;
        }
        if let Some(ip) =
            get("EPICS_CAS_INTF_ADDR_LIST").and_then(|v| v.split_whitespace().next()?.parse().ok())
        {
            c.bind = ip;
        }
        let bport = get("EPICS_CAS_BEACON_PORT")
            .or_else(|| get("EPICS_CA_REPEATER_PORT"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_REPEATER_PORT);
        c.beacon_addrs = match get("EPICS_CAS_BEACON_ADDR_LIST") {
            Some(list) => list
                .split_whitespace()
                .filter_map(|e| resolve_entry(e, bport))
                .collect(),
            None => vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bport)],
        };
        if let Some(p) = get("EPICS_CAS_BEACON_PERIOD").and_then(|v| v.trim().parse::<f64>().ok()) {
            c.beacon_period = Duration::from_secs_f64(p.max(0.1));
        }
        if let Some(n) =
            get("EPICS_CA_MAX_ARRAY_BYTES").and_then(|v| v.trim().parse::<usize>().ok())
        {
            c.max_array_bytes = n.max(crate::config::MIN_ARRAY_BYTES);
        }
        c
    }
}

/// The PV table.
#[derive(Debug)]
pub(crate) struct Store {
    pvs: RwLock<HashMap<String, Arc<Pv>>>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Monitor updates dropped for slow clients, all connections together.
    dropped: Arc<AtomicU64>,
}

impl Store {
    fn get(&self, name: &str) -> Option<Arc<Pv>> {
        self.pvs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn contains(&self, name: &[u8]) -> bool {
        std::str::from_utf8(name).is_ok_and(|n| {
            self.pvs
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(n)
        })
    }
}

/// A running server; dropping it stops it (open connections end when their clients go).
#[derive(Debug)]
pub struct Server {
    store: Arc<Store>,
    bind: Ipv4Addr,
    port: u16,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds and starts serving (inside a tokio runtime).
    pub async fn start(cfg: ServerConfig) -> Result<Server, CaError> {
        let tcp = TcpListener::bind(SocketAddr::new(IpAddr::V4(cfg.bind), cfg.port)).await?;
        let port = tcp.local_addr()?.port();
        let udp = udp_socket(SocketAddr::new(IpAddr::V4(cfg.bind), port))?;
        let store = Arc::new(Store {
            pvs: RwLock::default(),
            shutdown: tokio::sync::watch::channel(false).0,
            dropped: Arc::default(),
        });
        let max_payload = cfg.max_array_bytes.saturating_add(1024);
        let mut tasks = Vec::new();
        let st = store.clone();
        tasks.push(tokio::spawn(async move {
            let next_id = AtomicU64::new(1);
            loop {
                match tcp.accept().await {
                    Ok((s, _)) => {
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(conn::serve(s, id, st.clone(), max_payload));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "CA server accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
        let udp = Arc::new(udp);
        let st = store.clone();
        let u = udp.clone();
        tasks.push(tokio::spawn(async move { search_loop(u, st, port).await }));
        tasks.push(tokio::spawn(beacon_loop(
            udp,
            cfg.beacon_addrs.clone(),
            cfg.beacon_period,
            port,
        )));
        Ok(Server {
            store,
            bind: cfg.bind,
            port,
            tasks,
        })
    }

    /// The TCP/UDP port in use.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Client settings that search this server and nothing else: its address (loopback
    /// when it listens on every interface) and port as the one search address, without the
    /// automatic address list. Further settings can be added before `build`.
    pub fn client_config(&self) -> ClientConfigBuilder {
        let ip = if self.bind.is_unspecified() {
            Ipv4Addr::LOCALHOST
        } else {
            self.bind
        };
        ClientConfig::builder()
            .addr_list(&format!("{ip}:{}", self.port))
            .auto_addr_list(false)
    }

    /// Adds (or replaces) a PV; returns its handle for posting updates.
    pub fn add_pv(&self, spec: PvSpec) -> Arc<Pv> {
        let pv = Arc::new(Pv::new(spec));
        self.store
            .pvs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pv.name().to_string(), pv.clone());
        pv
    }

    /// Looks up a PV.
    pub fn pv(&self, name: &str) -> Option<Arc<Pv>> {
        self.store.get(name)
    }

    /// Number of PVs served.
    pub fn len(&self) -> usize {
        self.store
            .pvs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Monitor updates dropped so far because a client did not read them fast enough
    /// (its connection's output buffer was full), all connections together.
    pub fn dropped_updates(&self) -> u64 {
        self.store.dropped.load(Ordering::Relaxed)
    }

    /// Whether no PV is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // close every client connection, as a server process exiting would
        self.store.shutdown.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn udp_socket(addr: SocketAddr) -> Result<UdpSocket, CaError> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // like rsrv: several servers may share the search port on one host
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(s.into())?)
}

/// Builds the reply datagram for one search datagram (empty if nothing was found).
pub fn search_reply(data: &[u8], store_has: impl Fn(&[u8]) -> bool, tcp_port: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut seq = 0;
    let mut found_any = false;
    while let Some((h, hl)) = Header::decode(&data[at..]) {
        let Some(end) = (at + hl)
            .checked_add(h.payload_size as usize)
            .filter(|e| *e <= data.len())
        else {
            break;
        };
        let payload = &data[at + hl..end];
        at = end;
        match h.command {
            cmd::VERSION => seq = h.param1,
            cmd::SEARCH if payload.len() > 1 && h.count >= 4 => {
                let name = payload_str(payload);
                if store_has(name) {
                    if !found_any {
                        Header {
                            data_type: 1,
                            count: u32::from(CA_MINOR),
                            param1: seq,
                            ..Header::new(cmd::VERSION)
                        }
                        .encode(&mut out);
                        found_any = true;
                    }
                    let mut minor = [0u8; 8];
                    minor[..2].copy_from_slice(&CA_MINOR.to_be_bytes());
                    let r = Header {
                        data_type: tcp_port,
                        param1: 0xFFFF_FFFF,
                        param2: h.param2,
                        ..Header::new(cmd::SEARCH)
                    };
                    push_message(&mut out, r, &minor);
                } else if h.data_type == DO_REPLY {
                    Header {
                        data_type: DO_REPLY,
                        count: h.count,
                        param1: h.param1,
                        param2: h.param2,
                        ..Header::new(cmd::NOT_FOUND)
                    }
                    .encode(&mut out);
                }
            }
            _ => {}
        }
    }
    out
}

async fn search_loop(udp: Arc<UdpSocket>, store: Arc<Store>, port: u16) {
    let mut buf = vec![0u8; 0x10000];
    loop {
        let Ok((n, from)) = udp.recv_from(&mut buf).await else {
            continue;
        };
        let reply = search_reply(&buf[..n], |name| store.contains(name), port);
        if !reply.is_empty() {
            let _ = udp.send_to(&reply, from).await;
        }
    }
}

async fn beacon_loop(udp: Arc<UdpSocket>, addrs: Vec<SocketAddr>, period: Duration, port: u16) {
    let mut delay = Duration::from_millis(20);
    let mut id: u32 = 0;
    loop {
        let mut b = Vec::with_capacity(16);
        Header {
            data_type: CA_MINOR,
            count: u32::from(port),
            param1: id,
            param2: 0,
            ..Header::new(cmd::RSRV_IS_UP)
        }
        .encode(&mut b);
        for a in &addrs {
            let _ = udp.send_to(&b, a).await;
        }
        id = id.wrapping_add(1);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{DatagramBuilder, UdpMessage, parse_datagram};

    #[test]
    fn answers_only_known_names() {
        let mut b = DatagramBuilder::default();
        let d = b.build([(1, "A"), (2, "B"), (3, "C")]);
        let reply = search_reply(&d[0], |n| n == b"B" || n == b"C", 6000);
        let mut msgs = Vec::new();
        parse_datagram(&reply, "127.0.0.1:6000".parse().expect("addr"), &mut msgs);
        let server: SocketAddr = "127.0.0.1:6000".parse().expect("addr");
        assert_eq!(
            msgs,
            vec![
                UdpMessage::Found {
                    cid: 2,
                    server,
                    minor: 13
                },
                UdpMessage::Found {
                    cid: 3,
                    server,
                    minor: 13
                }
            ]
        );
        assert!(search_reply(&d[0], |_| false, 6000).is_empty());
    }
}
