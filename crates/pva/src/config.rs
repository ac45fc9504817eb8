//! Client configuration: the EPICS_PVA_* environment as a struct.
//!
//! Tests build a [`ClientConfig`] directly (it is plain data with public fields);
//! binaries use [`ClientConfig::from_env`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::error::PvaError;

/// Default UDP search/beacon port (EPICS_PVA_BROADCAST_PORT).
pub const DEFAULT_BROADCAST_PORT: u16 = 5076;
/// Default TCP server port (EPICS_PVA_SERVER_PORT).
pub const DEFAULT_SERVER_PORT: u16 = 5075;
/// Largest assembled message accepted (a hostile server cannot make us buffer more).
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Resolved client configuration.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Explicit search destinations (EPICS_PVA_ADDR_LIST), resolved; entries without a
    /// port use [`ClientConfig::broadcast_port`].
    pub addr_list: Vec<SocketAddr>,
    /// Add the interface broadcast addresses (EPICS_PVA_AUTO_ADDR_LIST, default YES).
    pub auto_addr_list: bool,
    /// UDP search port (EPICS_PVA_BROADCAST_PORT, default 5076).
    pub broadcast_port: u16,
    /// TCP port assumed when a search reply carries none (EPICS_PVA_SERVER_PORT, 5075).
    pub server_port: u16,
    /// Dead-connection timeout (EPICS_PVA_CONN_TMO, default 30 s): a connection silent
    /// this long is closed; echoes are sent every `conn_tmo * 3 / 8` (1–15 s, as pvxs).
    pub conn_tmo: Duration,
    /// Largest message (after joining segments) accepted.
    pub max_message: usize,
    /// Longest interval between searches of an unresolved name.
    pub max_search_period: Duration,
    /// Capacity (values) of the queues made by [`crate::Client::channel`].
    pub queue_capacity: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            addr_list: Vec::new(),
            auto_addr_list: true,
            broadcast_port: DEFAULT_BROADCAST_PORT,
            server_port: DEFAULT_SERVER_PORT,
            conn_tmo: Duration::from_secs(30),
            max_message: DEFAULT_MAX_MESSAGE,
            max_search_period: Duration::from_secs(30),
            queue_capacity: 1024,
        }
    }
}

impl ClientConfig {
    /// Reads EPICS_PVA_ADDR_LIST, EPICS_PVA_AUTO_ADDR_LIST, EPICS_PVA_BROADCAST_PORT,
    /// EPICS_PVA_SERVER_PORT and EPICS_PVA_CONN_TMO.
    ///
    /// Errors: an unparsable port, timeout or address-list entry (named in the message).
    pub fn from_env() -> Result<Self, PvaError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// As [`ClientConfig::from_env`] with an explicit variable lookup (for tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, PvaError> {
        let mut c = ClientConfig::default();
        let port = |k: &str, d: u16| -> Result<u16, PvaError> {
            match get(k) {
                Some(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse()
                    .map_err(|_| PvaError::InvalidArgument(format!("{k}={v}: not a port"))),
                _ => Ok(d),
            }
        };
        c.broadcast_port = port("EPICS_PVA_BROADCAST_PORT", DEFAULT_BROADCAST_PORT)?;
        c.server_port = port("EPICS_PVA_SERVER_PORT", DEFAULT_SERVER_PORT)?;
        if let Some(v) = get("EPICS_PVA_AUTO_ADDR_LIST") {
            c.auto_addr_list = !v.trim().eq_ignore_ascii_case("no");
        }
        if let Some(v) = get("EPICS_PVA_CONN_TMO").filter(|v| !v.trim().is_empty()) {
            let s: f64 = v.trim().parse().map_err(|_| {
                PvaError::InvalidArgument(format!("EPICS_PVA_CONN_TMO={v}: not a number"))
            })?;
            if !(s.is_finite() && s > 0.0) {
                return Err(PvaError::InvalidArgument(format!(
                    "EPICS_PVA_CONN_TMO={v}: must be positive"
                )));
            }
            c.conn_tmo = Duration::from_secs_f64(s.max(1.0));
        }
        if let Some(v) = get("EPICS_PVA_ADDR_LIST") {
            c.addr_list = parse_addr_list(&v, c.broadcast_port)?;
        }
        Ok(c)
    }

    /// Every search destination with whether it is a broadcast address: the address list,
    /// plus the interface broadcast addresses when [`ClientConfig::auto_addr_list`] is on.
    pub fn search_destinations(&self) -> Vec<(SocketAddr, bool)> {
        let mut out: Vec<(SocketAddr, bool)> = self
            .addr_list
            .iter()
            .map(|a| (*a, is_broadcast(a.ip())))
            .collect();
        if self.auto_addr_list {
            if let Ok(ifs) = if_addrs::get_if_addrs() {
                for i in ifs {
                    if let if_addrs::IfAddr::V4(if_addrs::Ifv4Addr {
                        broadcast: Some(b), ..
                    }) = i.addr
                    {
                        out.push((SocketAddr::new(IpAddr::V4(b), self.broadcast_port), true));
                    }
                }
            }
            out.push((
                SocketAddr::new(IpAddr::V4(Ipv4Addr::BROADCAST), self.broadcast_port),
                true,
            ));
        }
        out.sort();
        out.dedup();
        out
    }
}

fn is_broadcast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_broadcast() || v.octets()[3] == 255,
        IpAddr::V6(_) => false,
    }
}

/// Parses a whitespace-separated `host[:port]` list; entries without a port get
/// `default_port`.
///
/// Errors: an entry that does not resolve.
pub fn parse_addr_list(list: &str, default_port: u16) -> Result<Vec<SocketAddr>, PvaError> {
    let mut out = Vec::new();
    for item in list.split_whitespace() {
        let with_port = if item.contains(':') {
            item.to_string()
        } else {
            format!("{item}:{default_port}")
        };
        let addr = with_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.find(|a| a.is_ipv4()))
            .ok_or_else(|| {
                PvaError::InvalidArgument(format!("EPICS_PVA_ADDR_LIST entry {item:?}"))
            })?;
        out.push(addr);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_read_with_defaults() {
        let c = ClientConfig::from_vars(|k| match k {
            "EPICS_PVA_ADDR_LIST" => Some("127.0.0.1 127.0.0.2:6000".into()),
            "EPICS_PVA_AUTO_ADDR_LIST" => Some("NO".into()),
            "EPICS_PVA_BROADCAST_PORT" => Some("5999".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            c.addr_list,
            vec![
                "127.0.0.1:5999".parse().unwrap(),
                "127.0.0.2:6000".parse().unwrap()
            ]
        );
        assert!(!c.auto_addr_list);
        assert_eq!(c.server_port, 5075);
        assert_eq!(c.search_destinations().len(), 2);
        let e = ClientConfig::from_vars(|k| (k == "EPICS_PVA_SERVER_PORT").then(|| "x".into()))
            .unwrap_err();
        assert!(e.to_string().contains("EPICS_PVA_SERVER_PORT"), "{e}");
    }
}
