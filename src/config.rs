//! The configuration file (`--config FILE`, TOML). Every key is optional; command-line
//! flags win over the file, the file over the embedded defaults.
//!
//! ```toml
//! data_dir = "/var/lib/archiver"        # registry and storage tiers
//! listen = "127.0.0.1:17665"            # HTTP (mgmt and retrieval)
//! identity = "appliance0"               # applianceIdentity in PVTypeInfo
//!
//! [engine]
//! write_period_secs = 10                # Java secondsToBuffer
//! server_ioc_drift_secs = 1800          # timestamp filter
//! default_archive_fields = ["HIHI", "HIGH", "LOW", "LOLO", "LOPR", "HOPR"]  # the policy's
//! max_buffer_samples = 100000           # per PV archived at every event
//!
//! [storage]
//! sts_granularity = "PARTITION_HOUR"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// The file's contents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Folder for the registry and the tiers.
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address.
    pub listen: Option<SocketAddr>,
    /// Appliance identity.
    pub identity: Option<String>,
    /// Engine settings.
    #[serde(default)]
    pub engine: EngineSection,
    /// Storage settings.
    #[serde(default)]
    pub storage: StorageSection,
}

/// `[engine]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Seconds between writes of the buffers.
    pub write_period_secs: Option<f64>,
    /// Allowed IOC/server clock difference.
    pub server_ioc_drift_secs: Option<i64>,
    /// Archive fields when a request names none (replaces those of the Java default
    /// policy, `archiver_appliance::Policy::archive_fields`).
    pub default_archive_fields: Option<Vec<String>>,
    /// Buffer bound for PVs archived at every event.
    pub max_buffer_samples: Option<usize>,
}

/// `[storage]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Partition granularity of the short-term store.
    pub sts_granularity: Option<String>,
}

impl FileConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let cfg: FileConfig = toml::from_str(&text)
            .with_context(|| format!("config file {} is not valid", path.display()))?;
        if let Some(p) = cfg.engine.write_period_secs {
            anyhow::ensure!(
                p.is_finite() && p >= 0.1,
                "config file {}: engine.write_period_secs must be at least 0.1",
                path.display()
            );
        }
        Ok(cfg)
    }
}
