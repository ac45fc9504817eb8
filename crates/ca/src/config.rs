//! Client configuration: the EPICS_CA_* environment as a struct with a builder.
//!
//! Tests build a [`ClientConfig`] explicitly; binaries use [`ClientConfig::from_env`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::error::CaError;
use crate::queue::Overflow;

/// Default CA server port (UDP search and TCP).
pub const DEFAULT_SERVER_PORT: u16 = 5064;
/// Default repeater / beacon port.
pub const DEFAULT_REPEATER_PORT: u16 = 5065;
/// Smallest allowed EPICS_CA_MAX_ARRAY_BYTES.
pub const MIN_ARRAY_BYTES: usize = 16384;
/// Array byte limit used when EPICS_CA_MAX_ARRAY_BYTES is not set (libca's
/// EPICS_CA_AUTO_ARRAY_BYTES has no limit; we keep one so a hostile server cannot make
/// us allocate without bound).
pub const DEFAULT_MAX_ARRAY_BYTES: usize = 16 * 1024 * 1024;

/// Resolved client configuration.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Explicit search destinations (EPICS_CA_ADDR_LIST), resolved.
    pub addr_list: Vec<SocketAddr>,
    /// Add interface broadcast addresses (EPICS_CA_AUTO_ADDR_LIST).
    pub auto_addr_list: bool,
    /// Server port for entries without a port (EPICS_CA_SERVER_PORT).
    pub server_port: u16,
    /// Repeater port (EPICS_CA_REPEATER_PORT): where we listen for, or register for, beacons.
    pub repeater_port: u16,
    /// Dead-circuit timeout (EPICS_CA_CONN_TMO).
    pub conn_tmo: Duration,
    /// Largest array payload accepted or requested (EPICS_CA_MAX_ARRAY_BYTES).
    pub max_array_bytes: usize,
    /// Search back-off plateau (EPICS_CA_MAX_SEARCH_PERIOD).
    pub max_search_period: Duration,
    /// Timeout of a single READ_NOTIFY / WRITE_NOTIFY once sent.
    pub request_timeout: Duration,
    /// Capacity of the per-channel queues made by [`crate::Client::channel`].
    pub queue_capacity: usize,
    /// Overflow policy of those queues.
    pub overflow: Overflow,
    /// User name sent in CLIENT_NAME.
    pub user_name: String,
    /// Host name sent in HOST_NAME.
    pub host_name: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            addr_list: Vec::new(),
            auto_addr_list: true,
            server_port: DEFAULT_SERVER_PORT,
            repeater_port: DEFAULT_REPEATER_PORT,
            conn_tmo: Duration::from_secs(30),
            max_array_bytes: DEFAULT_MAX_ARRAY_BYTES,
            max_search_period: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            queue_capacity: 1024,
            overflow: Overflow::DropNewest,
            user_name: std::env::var("USER").unwrap_or_else(|_| "archiver".into()),
            host_name: host_name(),
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl ClientConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ClientConfigBuilder {
        ClientConfigBuilder::default()
    }

    /// Reads EPICS_CA_ADDR_LIST, EPICS_CA_AUTO_ADDR_LIST, EPICS_CA_SERVER_PORT,
    /// EPICS_CA_REPEATER_PORT, EPICS_CA_CONN_TMO, EPICS_CA_MAX_ARRAY_BYTES and
    /// EPICS_CA_MAX_SEARCH_PERIOD from the process environment.
    pub fn from_env() -> Result<Self, CaError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env) with an arbitrary variable lookup.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, CaError> {
        let mut b = ClientConfig::builder();
        let num =
            |k: &str| -> Result<Option<f64>, CaError> {
                match get(k) {
                    None => Ok(None),
                    Some(v) if v.trim().is_empty() => Ok(None),
                    Some(v) => v.trim().parse::<f64>().map(Some).map_err(|_| {
                        CaError::InvalidArgument(format!("{k}={v:?} is not a number"))
                    }),
                }
            };
        if let Some(p) = num("EPICS_CA_SERVER_PORT")? {
            b = b.server_port(p as u16);
        }
        if let Some(p) = num("EPICS_CA_REPEATER_PORT")? {
            b = b.repeater_port(p as u16);
        }
        if let Some(v) = get("EPICS_CA_ADDR_LIST") {
            b = b.addr_list(&v);
        }
        if let Some(v) = get("EPICS_CA_AUTO_ADDR_LIST") {
            b = b.auto_addr_list(!v.to_ascii_lowercase().contains("no"));
        }
        if let Some(t) = num("EPICS_CA_CONN_TMO")? {
            b = b.conn_tmo(Duration::from_secs_f64(t.max(0.1)));
        }
        if let Some(n) = num("EPICS_CA_MAX_ARRAY_BYTES")? {
            b = b.max_array_bytes(n as usize);
        }
        if let Some(t) = num("EPICS_CA_MAX_SEARCH_PERIOD")? {
            b = b.max_search_period(Duration::from_secs_f64(t.max(60.0)));
        }
        b.build()
    }

    /// Every search destination: the address list, plus interface broadcast addresses
    /// (loopback if there are none) when the automatic list is on; duplicates removed.
    pub fn search_addrs(&self) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        if self.auto_addr_list {
            let mut any = false;
            if let Ok(ifs) = if_addrs::get_if_addrs() {
                for i in ifs {
                    if let if_addrs::IfAddr::V4(if_addrs::Ifv4Addr {
                        broadcast: Some(b), ..
                    }) = i.addr
                    {
                        out.push(SocketAddr::new(IpAddr::V4(b), self.server_port));
                        any = true;
                    }
                }
            }
            if !any {
                out.push(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    self.server_port,
                ));
            }
        }
        out.extend(self.addr_list.iter().copied());
        let mut seen = std::collections::HashSet::new();
        out.retain(|a| seen.insert(*a));
        out
    }
}

/// Builder for [`ClientConfig`].
#[derive(Clone, Debug, Default)]
pub struct ClientConfigBuilder {
    cfg: ClientConfig,
    addr_entries: Vec<String>,
}

impl ClientConfigBuilder {
    /// Sets the address list from whitespace-separated `host` / `host:port` entries.
    pub fn addr_list(mut self, list: &str) -> Self {
        self.addr_entries = list.split_whitespace().map(str::to_string).collect();
        self
    }

    /// Turns the automatic (broadcast) address list on or off.
    pub fn auto_addr_list(mut self, on: bool) -> Self {
        self.cfg.auto_addr_list = on;
        self
    }

    /// Server port used for address-list entries without a port.
    pub fn server_port(mut self, port: u16) -> Self {
        self.cfg.server_port = port;
        self
    }

    /// Repeater (beacon) port.
    pub fn repeater_port(mut self, port: u16) -> Self {
        self.cfg.repeater_port = port;
        self
    }

    /// Dead-circuit timeout.
    pub fn conn_tmo(mut self, t: Duration) -> Self {
        self.cfg.conn_tmo = t;
        self
    }

    /// Largest array payload (at least 16384).
    pub fn max_array_bytes(mut self, n: usize) -> Self {
        self.cfg.max_array_bytes = n.max(MIN_ARRAY_BYTES);
        self
    }

    /// Search back-off plateau.
    pub fn max_search_period(mut self, t: Duration) -> Self {
        self.cfg.max_search_period = t;
        self
    }

    /// Timeout of a single read or write request.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.cfg.request_timeout = t;
        self
    }

    /// Capacity and overflow policy of per-channel queues.
    pub fn queue(mut self, capacity: usize, overflow: Overflow) -> Self {
        self.cfg.queue_capacity = capacity.max(1);
        self.cfg.overflow = overflow;
        self
    }

    /// Resolves the address list and returns the configuration.
    pub fn build(mut self) -> Result<ClientConfig, CaError> {
        let port = self.cfg.server_port;
        let mut addrs = Vec::new();
        for e in &self.addr_entries {
            match resolve_entry(e, port) {
                Some(a) => addrs.push(a),
                None => tracing::warn!(entry = %e, "skipping bad EPICS_CA_ADDR_LIST entry"),
            }
        }
        self.cfg.addr_list = addrs;
        Ok(self.cfg)
    }
}

/// Resolves `host` or `host:port` (IPv4) with a default port.
pub fn resolve_entry(entry: &str, default_port: u16) -> Option<SocketAddr> {
    let (host, port) = match entry.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok()?),
        None => (entry, default_port),
    };
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(SocketAddr::new(IpAddr::V4(ip), port));
    }
    (host, port)
        .to_socket_addrs()
        .ok()?
        .find(SocketAddr::is_ipv4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn env_parsing() {
        let vars: HashMap<&str, &str> = [
            ("EPICS_CA_ADDR_LIST", "127.0.0.1 127.0.0.1:5070 bad:entry:x"),
            ("EPICS_CA_AUTO_ADDR_LIST", "NO"),
            ("EPICS_CA_SERVER_PORT", "6000"),
            ("EPICS_CA_CONN_TMO", "2.5"),
            ("EPICS_CA_MAX_ARRAY_BYTES", "100"),
        ]
        .into_iter()
        .collect();
        let c = ClientConfig::from_vars(|k| vars.get(k).map(|s| s.to_string())).expect("valid");
        assert!(!c.auto_addr_list);
        assert_eq!(c.server_port, 6000);
        assert_eq!(c.conn_tmo, Duration::from_millis(2500));
        assert_eq!(c.max_array_bytes, MIN_ARRAY_BYTES);
        let want: Vec<SocketAddr> = vec![
            "127.0.0.1:6000".parse().expect("addr"),
            "127.0.0.1:5070".parse().expect("addr"),
        ];
        assert_eq!(c.addr_list, want);
        assert_eq!(c.search_addrs(), want);
    }

    #[test]
    fn bad_number_is_an_error() {
        let r = ClientConfig::from_vars(|k| (k == "EPICS_CA_CONN_TMO").then(|| "soon".to_string()));
        assert!(matches!(r, Err(CaError::InvalidArgument(_))));
    }

    #[test]
    fn auto_list_includes_something_and_dedups() {
        let c = ClientConfig::builder()
            .addr_list("127.0.0.1 127.0.0.1")
            .build()
            .expect("valid");
        let a = c.search_addrs();
        assert!(!a.is_empty());
        let mut d = a.clone();
        d.dedup();
        assert_eq!(a.len(), d.len());
    }
}
