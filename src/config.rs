//! The configuration file (`--config FILE`, TOML). Every key is optional; command-line
//! flags win over the environment, the environment over the file, the file over the
//! embedded defaults (`archiver config defaults` prints every key with its default;
//! `archiver config check FILE` validates a file and prints the effective configuration).
//!
//! # Environment overrides
//!
//! Every key can be set by an environment variable `ARCHIVER_<KEY>` for a top-level key
//! and `ARCHIVER_<SECTION>_<KEY>` for a key of a section, upper case:
//! `ARCHIVER_LISTEN=0.0.0.0:17665` (also `ARCHIVER_SERVER_LISTEN`: the top-level keys are
//! the server's), `ARCHIVER_DATA_DIR=/var/lib/archiver`,
//! `ARCHIVER_ENGINE_WRITE_PERIOD_SECS=5`, `ARCHIVER_STORAGE_ETL=false`,
//! `ARCHIVER_POLICY_FILE=/etc/archiver/policies.toml`. The value is read as a TOML value
//! (`5`, `false`, `["HIHI", "LOLO"]`, `{ "A:B" = 100 }`), and as a string when it is
//! not one (`/var/lib/archiver`). A variable `ARCHIVER_ENGINE_*`, `ARCHIVER_STORAGE_*` or
//! `ARCHIVER_POLICY_*` that names no key is an error naming it, and so is any other
//! `ARCHIVER_*` variable (a typo such as `ARCHIVER_LISTN` must not leave the default in
//! force unnoticed) but the tests' `ARCHIVER_TEST_*` and the benches' `ARCHIVER_CA_BENCH_*`;
//! two variables for one key (`ARCHIVER_LISTEN` and `ARCHIVER_SERVER_LISTEN`) are an error.
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
//! default_protocol = "ca"               # "pva": names without ca:// or pva:// use pvAccess
//! journal = true                        # write-ahead journal (<data_dir>/journal)
//! journal_fsync_secs = 1.0              # what a power cut can lose
//! journal_max_bytes = 1073741824        # beyond it the oldest segments go (logged)
//!
//! [storage]
//! # The data stores, newest data first, as the Java appliance's data store URLs
//! # (PVTypeInfo.dataStores). A relative rootFolder is a folder of data_dir.
//! data_stores = [
//!   "pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_HOUR",
//!   "pb://localhost?name=MTS&rootFolder=mts&partitionGranularity=PARTITION_DAY",
//!   "pb://localhost?name=LTS&rootFolder=/archive/lts&partitionGranularity=PARTITION_YEAR",
//! ]
//! fsync = false                         # true: fdatasync every append (see StorageSection)
//! etl = true                            # move closed partitions down the stores (ETL)
//! out_of_space = "SKIP_ETL_WHEN_OUT_OF_SPACE"  # or Java's two deleting policies
//! max_bytes_per_hour = 50000000         # storage-rate guard per PV (off without it)
//! [storage.pv_max_bytes_per_hour]       # single PVs' limits
//! "SR:NOISY:PV" = 1000000000
//!
//! [policy]
//! file = "/etc/archiver/policies.toml"  # site policies (docs/policies.example.toml)
//! ```
//!
//! # Data stores
//!
//! `storage.data_stores` lists the stores of this appliance as `pb://` URLs (the syntax of
//! `archiver_storage::StoreUrl`: `name`, `rootFolder` and `partitionGranularity` required;
//! `${VAR}` in `rootFolder` is taken from the environment, as Java does). The rules:
//!
//! * **A relative `rootFolder` is a folder of `data_dir`**: `rootFolder=sts` is
//!   `<data_dir>/sts`, and is written so (joined) into the URLs new PVs get. An absolute
//!   one, or one with `${VAR}`, is used as it is (a `${VAR}` whose value is relative is
//!   again taken under `data_dir`, but the URL keeps the placeholder).
//! * **The engine writes to the first store** (the short-term store, STS): list the stores
//!   newest data first (STS, MTS, LTS), as a Java `PVTypeInfo.dataStores` lists them. The
//!   others are read by retrieval and, later, written by ETL.
//! * **New PVs get every store**: a new PV's `PVTypeInfo.dataStores` is this list, in this
//!   order (`archiver_appliance::Policy::data_stores`).
//! * Store names are the stores' identities: a PV whose `dataStores` name a store is read
//!   from the configured store of that name, wherever its URL says the folder is; one
//!   whose `dataStores` name no configured store (a data folder taken over from another
//!   host) is read from every configured store, and the URL is logged once.
//! * `deletePV` with `deleteData=true` removes the PV's files from every store.
//!
//! * A last `blackhole://localhost?name=...` store receives what ETL moves out of the last
//!   `pb://` store and deletes it (retention, as Java's `BlackholeStoragePlugin`).
//!
//! Without `data_stores`, the stores are Java's three defaults under `data_dir`:
//! `STS` (`<data_dir>/sts`, `<sts_granularity>`, `PARTITION_HOUR` by default), `MTS`
//! (`<data_dir>/mts`, `PARTITION_DAY`, `hold=2&gather=1`) and `LTS` (`<data_dir>/lts`,
//! `PARTITION_YEAR`). `sts_granularity` only applies to that default; giving both keys is
//! an error.
//!
//! What is accepted but probably a mistake is logged at WARN when `serve` starts, which
//! then runs on ([`StorageSection::warnings`]): an unknown parameter of a store URL, a
//! store name with white space, a store with coarser partitions than the next one.
//!
//! # ETL
//!
//! With `etl = true` (the default), closed partitions move from each store into the next
//! with the Java rules (`archiver_storage::etl`): STS at hh:05 every hour, later stores
//! every 8 h (their granularity, at most 8 h), `hold`/`gather` from each source's URL.
//! `out_of_space` is Java's `OutOfSpaceHandling`: `DELETE_SRC_STREAMS_IF_FIRST_DEST_WHEN_
//! OUT_OF_SPACE` (default; the STS drops what the MTS has no room for),
//! `DELETE_SRC_STREAMS_WHEN_OUT_OF_SPACE`, `SKIP_ETL_WHEN_OUT_OF_SPACE`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use archiver_engine::RateLimit;
use archiver_pb::Granularity;
use archiver_storage::{
    Backend, DataStores, OutOfSpacePolicy, StoreUrl, SyncPolicy, Tier, blackhole_name,
};
use serde::{Deserialize, Serialize};

/// The default of `http_nice`: HTTP threads 10 nice levels below archiving (a tenth of
/// the CPU share when both want it, under Linux's scheduler), so a flood of large
/// retrievals cannot starve the CA/PVA circuits (issue 13, load suite).
pub const DEFAULT_HTTP_NICE: i32 = 10;

/// The context of an error with keys set by the ARCHIVER_* variables `vars`.
fn overrides_context(vars: &[String]) -> String {
    format!("with the environment overrides {}", vars.join(", "))
}

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
    /// The API key management writes need (`archiver_http::auth`); required when
    /// `listen` is not a loopback address, unless `open_management`.
    pub api_key: Option<String>,
    /// Management writes without a key even when bound beyond loopback (behind an
    /// authenticating proxy, say). Default false.
    pub open_management: Option<bool>,
    /// Retrieval and read-only management calls without the key. Default true (retrieval
    /// clients send no credentials); false needs an `api_key`.
    pub open_retrieval: Option<bool>,
    /// PEM certificate chain of the listener; with `tls_key`, the server speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Seconds a client has to send a whole request head; also the idle time after which
    /// a keep-alive connection is closed (`archiver_http::server::ConnLimits`). Default 30.
    pub header_read_timeout_secs: Option<f64>,
    /// Longest pause, in seconds, between two pieces of a request body (then 408).
    /// Default 30.
    pub body_read_timeout_secs: Option<f64>,
    /// HTTP connections served at once; one more gets a quick 503. Default 1024.
    pub max_connections: Option<usize>,
    /// How much lower than archiving the threads answering HTTP run: a nice increment,
    /// 0 to 19 (Linux). Default 10.
    pub http_nice: Option<i32>,
    /// Engine settings.
    #[serde(default)]
    pub engine: EngineSection,
    /// Storage settings.
    #[serde(default)]
    pub storage: StorageSection,
    /// The site policy file.
    #[serde(default)]
    pub policy: PolicySection,
    /// The ARCHIVER_* variables that set keys ([`FileConfig::layered`]), named in errors.
    #[serde(skip)]
    pub env_overrides: Vec<String>,
}

/// `[policy]`: the site policy file (`archiver_appliance::site_policy`; an example with
/// every key is `docs/policies.example.toml`). Without it the one policy is `default`,
/// the Java appliance's defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// The TOML policy file (a relative path is taken from the working directory).
    pub file: Option<PathBuf>,
}

impl PolicySection {
    /// The site policy: the file read and checked against `stores`, or the Java default.
    /// Errors name the file and the bad value.
    pub fn site_policy(&self, stores: &DataStores) -> Result<archiver_appliance::SitePolicy> {
        let Some(path) = &self.file else {
            return Ok(archiver_appliance::SitePolicy::java_default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the policy file {}", path.display()))?;
        archiver_appliance::SitePolicy::from_toml(&text, stores)
            .with_context(|| format!("policy file {}", path.display()))
    }
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
    /// The protocol of a requested name without `ca://` or `pva://`: `"ca"` (default) or
    /// `"pva"` (Java's `ArchivePVAction.defaultAccessProtocol`).
    pub default_protocol: Option<String>,
    /// The write-ahead journal on (default) or off.
    pub journal: Option<bool>,
    /// Seconds between two syncs of the journal.
    pub journal_fsync_secs: Option<f64>,
    /// Bytes of journal kept at most.
    pub journal_max_bytes: Option<u64>,
}

/// The range of `engine.journal_fsync_secs`.
pub const JOURNAL_FSYNC_SECS: std::ops::RangeInclusive<f64> = 0.01..=60.0;
/// The range of `engine.journal_max_bytes`: 64 MiB (one segment) to 1 TiB.
pub const JOURNAL_MAX_BYTES: std::ops::RangeInclusive<u64> = (64 << 20)..=(1 << 40);

/// The range of `engine.write_period_secs`: 0.1 s to one hour (Java's `secondsToBuffer`
/// is 10 s; a longer period only keeps more in memory and loses more in a crash).
pub const WRITE_PERIOD_SECS: std::ops::RangeInclusive<f64> = 0.1..=3600.0;
/// The range of `engine.server_ioc_drift_secs`: one second to 100 years (Java's default
/// is 30 minutes).
pub const DRIFT_SECS: std::ops::RangeInclusive<i64> = 1..=3_153_600_000;
/// The range of `engine.max_buffer_samples`.
pub const MAX_BUFFER_SAMPLES: std::ops::RangeInclusive<usize> = 10..=100_000_000;

impl EngineSection {
    /// Checks every value against its documented range; the error names the key, the
    /// value and the range.
    pub fn validate(&self) -> Result<()> {
        if let Some(p) = self.write_period_secs {
            anyhow::ensure!(
                WRITE_PERIOD_SECS.contains(&p),
                "engine.write_period_secs = {p} is out of range: it must be between {} and \
                 {} seconds",
                WRITE_PERIOD_SECS.start(),
                WRITE_PERIOD_SECS.end()
            );
        }
        if let Some(s) = self.journal_fsync_secs {
            anyhow::ensure!(
                JOURNAL_FSYNC_SECS.contains(&s),
                "engine.journal_fsync_secs = {s} is out of range: it must be between {} and \
                 {} seconds",
                JOURNAL_FSYNC_SECS.start(),
                JOURNAL_FSYNC_SECS.end()
            );
        }
        if let Some(b) = self.journal_max_bytes {
            anyhow::ensure!(
                JOURNAL_MAX_BYTES.contains(&b),
                "engine.journal_max_bytes = {b} is out of range: it must be between {} and {} \
                 bytes",
                JOURNAL_MAX_BYTES.start(),
                JOURNAL_MAX_BYTES.end()
            );
        }
        if let Some(d) = self.server_ioc_drift_secs {
            anyhow::ensure!(
                DRIFT_SECS.contains(&d),
                "engine.server_ioc_drift_secs = {d} is out of range: it must be between {} \
                 and {} seconds",
                DRIFT_SECS.start(),
                DRIFT_SECS.end()
            );
        }
        if let Some(p) = &self.default_protocol {
            anyhow::ensure!(
                p.eq_ignore_ascii_case("ca") || p.eq_ignore_ascii_case("pva"),
                "engine.default_protocol = {p:?} is not \"ca\" or \"pva\""
            );
        }
        if let Some(m) = self.max_buffer_samples {
            anyhow::ensure!(
                MAX_BUFFER_SAMPLES.contains(&m),
                "engine.max_buffer_samples = {m} is out of range: it must be between {} and {}",
                MAX_BUFFER_SAMPLES.start(),
                MAX_BUFFER_SAMPLES.end()
            );
        }
        for f in self.default_archive_fields.iter().flatten() {
            anyhow::ensure!(
                archiver_appliance::policy::is_archive_field_name(f),
                "engine.default_archive_fields: {f:?} is not a field name (letters, digits \
                 and _, starting with a letter, not VAL)"
            );
        }
        Ok(())
    }
}

/// `[storage]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Partition granularity of the default short-term store (without `data_stores`).
    pub sts_granularity: Option<String>,
    /// The data stores as `pb://` URLs, newest data first; the engine writes to the first
    /// (see the module documentation).
    pub data_stores: Option<Vec<String>>,
    /// `true`: every append is `fdatasync`ed before it counts as written
    /// (`archiver_storage::SyncPolicy::EachWrite`, once per PV and store per write period,
    /// 40–50× the cost of the append, BENCHMARKS.md); default `false`, the Java
    /// appliance's behaviour (`SyncPolicy::OsWriteback`).
    pub fsync: Option<bool>,
    /// `false` turns ETL off (default `true`; see the module documentation).
    pub etl: Option<bool>,
    /// Java's `OutOfSpaceHandling` name (see the module documentation).
    pub out_of_space: Option<String>,
    /// The storage-rate guard: the most bytes any PV may write per hour; beyond it,
    /// samples are dropped and counted (`droppedEventsRateLimit`). Off without it.
    pub max_bytes_per_hour: Option<u64>,
    /// Limits of single PVs (PV name → bytes per hour), over `max_bytes_per_hour`.
    pub pv_max_bytes_per_hour: Option<std::collections::HashMap<String, u64>>,
}

impl StorageSection {
    /// The storage-rate guard's limits. Errors: a limit of 0 (it would drop every sample
    /// of every PV it covers; leave the key out to turn the guard off), a key of
    /// `pv_max_bytes_per_hour` that is no PV name (it would limit nothing).
    pub fn rate_limit(&self) -> Result<RateLimit> {
        anyhow::ensure!(
            self.max_bytes_per_hour != Some(0),
            "storage.max_bytes_per_hour = 0 would drop every sample of every PV: give a \
             limit in bytes per hour, or leave the key out to turn the guard off"
        );
        for (pv, limit) in self.pv_max_bytes_per_hour.iter().flatten() {
            archiver_registry::names::validate_pv_name(pv).map_err(|e| {
                anyhow::anyhow!("storage.pv_max_bytes_per_hour: {pv:?} is not a PV name: {e}")
            })?;
            anyhow::ensure!(
                *limit > 0,
                "storage.pv_max_bytes_per_hour.{pv:?} = 0 would drop every sample of {pv}: \
                 give a limit in bytes per hour, or leave the key out"
            );
        }
        Ok(RateLimit {
            default_bytes_per_hour: self.max_bytes_per_hour,
            per_pv: self.pv_max_bytes_per_hour.clone().unwrap_or_default(),
        })
    }

    /// What is accepted but probably not meant, in the configured `stores` (from
    /// [`StorageSection::data_stores`]): one line per finding, naming the key, the store
    /// and the reason. `archiver serve` logs each at WARN and runs on.
    ///
    /// * a parameter of a store URL that no Java data store knows (`bogus=1`): ignored,
    ///   most likely a misspelling (`partitiongranularity`, `Hold`);
    /// * a store name with white space: names are written into every PV's `dataStores`
    ///   and given to `consolidateDataForPV?storage=` and the `SKIP_<name>_FOR_ETL` flag,
    ///   where a space must be encoded;
    /// * a store whose partitions are coarser than the next store's (an STS of days
    ///   before an MTS of hours): ETL moves whole closed partitions down, so the next
    ///   store gets each day as 24 hour files and the tiers keep more files the older
    ///   the data, the reverse of what tiers are for (Java's stores go hour, day, year).
    pub fn warnings(&self, stores: &DataStores) -> Vec<String> {
        let mut out = Vec::new();
        let key = "storage.data_stores";
        let tiers = stores.tiers();
        for t in tiers {
            let url = t.store_url();
            for (k, v) in &url.extra {
                out.push(format!(
                    "{key}: store {}: unknown parameter {k}={v} is ignored (a data store \
                     URL takes name, rootFolder, partitionGranularity, hold, gather, \
                     consolidateOnShutdown, pp, reducedata, etlIntoStoreIf, etlOutofStoreIf, \
                     terminator, compress)",
                    url.name
                ));
            }
            if url.name.chars().any(char::is_whitespace) {
                out.push(format!(
                    "{key}: store name {:?} contains white space; it is written into every \
                     PV's dataStores and used in consolidateDataForPV?storage= and the \
                     SKIP_<store>_FOR_ETL flag, where it must then be encoded",
                    url.name
                ));
            }
        }
        for w in tiers.windows(2) {
            let (a, b) = (w[0].store_url(), w[1].store_url());
            if a.granularity > b.granularity {
                out.push(format!(
                    "{key}: store {} ({}) has coarser partitions than the next store {} \
                     ({}): ETL moves whole partitions down, so older data ends in more, \
                     smaller files; list stores from the finest granularity to the coarsest",
                    a.name, a.granularity, b.name, b.granularity
                ));
            }
        }
        out
    }

    /// True unless `etl = false`.
    pub fn etl_enabled(&self) -> bool {
        self.etl != Some(false)
    }

    /// The out-of-space policy (Java's default without the key); a bad name is an error
    /// naming it and the three accepted.
    pub fn out_of_space_policy(&self) -> Result<OutOfSpacePolicy> {
        match &self.out_of_space {
            None => Ok(OutOfSpacePolicy::default()),
            Some(s) => s.parse().context("storage.out_of_space"),
        }
    }

    /// The configured data stores over `backend`, relative root folders taken under
    /// `data_dir` (see the module documentation). Errors name the bad URL or key.
    pub fn data_stores(&self, data_dir: &Path, backend: Backend) -> Result<DataStores> {
        let mut stores = self.unsynced_data_stores(data_dir, backend)?;
        if self.fsync == Some(true) {
            let names: Vec<String> = stores
                .tiers()
                .iter()
                .map(|t| t.name().to_string())
                .collect();
            for name in names {
                stores.set_sync_policy(&name, SyncPolicy::EachWrite);
            }
        }
        Ok(stores)
    }

    fn unsynced_data_stores(&self, data_dir: &Path, backend: Backend) -> Result<DataStores> {
        let mut stores = DataStores::new(backend);
        let Some(urls) = &self.data_stores else {
            let granularity: Granularity = match &self.sts_granularity {
                Some(g) => g.parse().context("storage.sts_granularity")?,
                None => Granularity::Hour,
            };
            let sts = Tier::new("STS", data_dir.join("sts"), granularity);
            stores.add(sts)?;
            let mut mts = StoreUrl::new(
                "MTS",
                data_dir.join("mts").display().to_string(),
                Granularity::Day,
            );
            (mts.hold, mts.gather) = (2, 1);
            stores.add(Tier::from_store_url(
                mts,
                data_dir.join("mts"),
                stores.backend(),
            ))?;
            let lts = Tier::new("LTS", data_dir.join("lts"), Granularity::Year);
            stores.add(lts)?;
            return Ok(stores);
        };
        anyhow::ensure!(
            self.sts_granularity.is_none(),
            "storage.sts_granularity applies only to the default store; with \
             storage.data_stores, give partitionGranularity in the STS URL"
        );
        anyhow::ensure!(
            !urls.is_empty(),
            "storage.data_stores is empty; list at least the short-term store, which the \
             engine writes to"
        );
        for text in urls {
            let bad = || format!("storage.data_stores: {text:?}");
            if let Some(name) = blackhole_name(text) {
                stores.set_blackhole(name).with_context(bad)?;
                continue;
            }
            let mut url = StoreUrl::parse(text).with_context(bad)?;
            let expanded = url.expand_root_folder_from_env().with_context(bad)?;
            let root = data_dir.join(&expanded); // an absolute one replaces data_dir
            if !url.root_folder.contains("${") {
                url.root_folder = root.display().to_string();
            }
            let tier = Tier::from_store_url(url, root, stores.backend());
            stores.add(tier).with_context(bad)?;
        }
        Ok(stores)
    }
}

impl FileConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let cfg: FileConfig = toml::from_str(&text)
            .with_context(|| format!("config file {} is not valid", path.display()))?;
        cfg.engine
            .validate()
            .with_context(|| format!("config file {}", path.display()))?;
        // Checked with the rest, before anything starts (a bad `out_of_space` was
        // reported only after HTTP was listening and the PVs restored: found by a
        // fresh-user test).
        cfg.storage
            .out_of_space_policy()
            .with_context(|| format!("config file {}", path.display()))?;
        Ok(cfg)
    }
}

/// Every key of the file: `(section, key)`, `""` for a top-level key. The environment
/// overrides are these (see the module documentation); `archiver config defaults` lists
/// them all, and a test checks that this list, the structs and [`REFERENCE`] agree.
pub const KEYS: &[(&str, &str)] = &[
    ("", "data_dir"),
    ("", "listen"),
    ("", "identity"),
    ("", "api_key"),
    ("", "open_management"),
    ("", "open_retrieval"),
    ("", "tls_cert"),
    ("", "tls_key"),
    ("", "header_read_timeout_secs"),
    ("", "body_read_timeout_secs"),
    ("", "max_connections"),
    ("", "http_nice"),
    ("engine", "write_period_secs"),
    ("engine", "server_ioc_drift_secs"),
    ("engine", "default_archive_fields"),
    ("engine", "max_buffer_samples"),
    ("engine", "default_protocol"),
    ("engine", "journal"),
    ("engine", "journal_fsync_secs"),
    ("engine", "journal_max_bytes"),
    ("storage", "sts_granularity"),
    ("storage", "data_stores"),
    ("storage", "fsync"),
    ("storage", "etl"),
    ("storage", "out_of_space"),
    ("storage", "max_bytes_per_hour"),
    ("storage", "pv_max_bytes_per_hour"),
    ("policy", "file"),
];

/// The prefix of the environment overrides.
pub const ENV_PREFIX: &str = "ARCHIVER_";

/// The commented reference of every key with its default (`archiver config defaults`).
pub const REFERENCE: &str = include_str!("../docs/archiver.reference.toml");

/// The key an environment variable names: `Some(Ok((section, key)))`, `Some(Err(..))`
/// for a variable of a section that names no key of it, `None` for a variable that is
/// not configuration.
fn env_key(var: &str) -> Option<Result<(&'static str, &'static str)>> {
    let lower = var.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
    // `ARCHIVER_SERVER_<KEY>` also names a top-level key (the file has no [server]
    // section; its top-level keys are the server's).
    let rest = match lower.strip_prefix("server_") {
        Some(key) if KEYS.contains(&("", key)) => key.to_string(),
        _ => lower,
    };
    for &(section, key) in KEYS {
        let name = if section.is_empty() {
            key.to_string()
        } else {
            format!("{section}_{key}")
        };
        if rest == name {
            return Some(Ok((section, key)));
        }
    }
    for section in ["engine", "storage", "policy"] {
        if rest.starts_with(&format!("{section}_")) {
            let keys: Vec<String> = KEYS
                .iter()
                .filter(|(s, _)| *s == section)
                .map(|(_, k)| format!("{ENV_PREFIX}{section}_{k}").to_ascii_uppercase())
                .collect();
            return Some(Err(anyhow::anyhow!(
                "environment variable {var} names no key of [{section}]; the keys are {}",
                keys.join(", ")
            )));
        }
    }
    // The test harness's and benches' own variables are not configuration.
    if ["test_", "ca_bench_"].iter().any(|p| rest.starts_with(p)) {
        return None;
    }
    // Anything else is a typo of a key (`ARCHIVER_LISTN`): an error, not a silent default.
    let top: Vec<String> = KEYS
        .iter()
        .filter(|(s, _)| s.is_empty())
        .map(|(_, k)| format!("{ENV_PREFIX}{k}").to_ascii_uppercase())
        .collect();
    Some(Err(anyhow::anyhow!(
        "environment variable {var} names no configuration key; the top-level keys are {}, \
         a section's are ARCHIVER_<SECTION>_<KEY> (ENGINE, STORAGE, POLICY); \
         ARCHIVER_TEST_* variables are the tests'",
        top.join(", ")
    )))
}

/// `text` as a TOML value, or as a string when it is not one.
fn env_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

impl FileConfig {
    /// The configuration of `path` (none: the defaults) with the environment overrides of
    /// the process (see the module documentation). Errors name the file or the variable,
    /// the key and why.
    pub fn layered(path: Option<&Path>) -> Result<Self> {
        Self::layered_from(path, std::env::vars())
    }

    /// [`FileConfig::layered`] with the environment `env`.
    pub fn layered_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table = match path {
            Some(p) => {
                // Checked alone first, so that a bad file is named as such.
                Self::load(p)?;
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                toml::from_str::<toml::Table>(&text)
                    .with_context(|| format!("config file {} is not valid", p.display()))?
            }
            None => toml::Table::new(),
        };
        let mut applied = Vec::new();
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        let mut set_by: Vec<((&str, &str), String)> = Vec::new();
        for (var, text) in env {
            let Some(key) = env_key(&var) else { continue };
            let (section, key) = key?;
            if let Some((_, other)) = set_by.iter().find(|(k, _)| *k == (section, key)) {
                anyhow::bail!(
                    "environment variables {other} and {var} both set {}: keep one",
                    if section.is_empty() {
                        key.to_string()
                    } else {
                        format!("{section}.{key}")
                    }
                );
            }
            set_by.push(((section, key), var.clone()));
            let value = env_value(&text);
            let target = if section.is_empty() {
                &mut table
            } else {
                let entry = table
                    .entry(section)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                match entry {
                    toml::Value::Table(t) => t,
                    _ => anyhow::bail!("{section} is not a section ([{section}])"),
                }
            };
            target.insert(key.to_string(), value);
            applied.push(var);
        }
        if applied.is_empty() {
            return Ok(match path {
                Some(p) => Self::load(p)?,
                None => FileConfig::default(),
            });
        }
        tracing::info!(
            overrides = %applied.join(", "),
            "configuration keys set by the environment"
        );
        let why = || overrides_context(&applied);
        let mut cfg: FileConfig = toml::Table::try_into(table).with_context(why)?;
        cfg.engine.validate().with_context(why)?;
        cfg.env_overrides = applied;
        Ok(cfg)
    }

    /// The data folder: `flag` (`--data-dir`), else `data_dir`, else `./archiver-data`,
    /// made absolute (the stores' root folders go into every PV's `dataStores` and into
    /// exports, which must not depend on where the archiver was started).
    pub fn data_dir(&self, flag: Option<&Path>) -> Result<PathBuf> {
        let dir = flag
            .map(Path::to_path_buf)
            .or(self.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./archiver-data"));
        std::path::absolute(&dir).with_context(|| format!("data dir {}", dir.display()))
    }

    /// The HTTP connection limits: `header_read_timeout_secs` and `body_read_timeout_secs`
    /// (seconds, more than 0 and at most a day), `max_connections` (at least 1); defaults
    /// from [`archiver_http::server::ConnLimits::default`].
    fn conn_limits(&self) -> Result<archiver_http::server::ConnLimits> {
        let mut limits = archiver_http::server::ConnLimits::default();
        let secs = |key: &str, v: f64| -> Result<std::time::Duration> {
            anyhow::ensure!(
                v.is_finite() && v > 0.0 && v <= 86_400.0,
                "{key} = {v}: give seconds, more than 0 and at most 86400"
            );
            Ok(std::time::Duration::from_secs_f64(v))
        };
        if let Some(v) = self.header_read_timeout_secs {
            limits.header_read_timeout = secs("header_read_timeout_secs", v)?;
        }
        if let Some(v) = self.body_read_timeout_secs {
            limits.body_read_timeout = secs("body_read_timeout_secs", v)?;
        }
        if let Some(n) = self.max_connections {
            anyhow::ensure!(
                n >= 1,
                "max_connections = 0: give 1 or more (the HTTP connections served at once)"
            );
            limits.max_connections = n;
        }
        Ok(limits)
    }

    /// The access rule of `api_key`, `open_management`, `open_retrieval` for a server on
    /// `listen`; an error when bound beyond loopback with neither a key nor
    /// `open_management = true`, or with `open_retrieval = false` and no key (issue 13,
    /// "Security").
    fn access(&self, listen: SocketAddr) -> Result<archiver_http::auth::Access> {
        let open_management = self.open_management.unwrap_or(false);
        let open_retrieval = self.open_retrieval.unwrap_or(true);
        let key = self.api_key.as_deref();
        if let Some(k) = key {
            anyhow::ensure!(
                !k.trim().is_empty() && k.trim() == k,
                "api_key: the key must be a non-empty string without surrounding spaces"
            );
        }
        if key.is_none() && !listen.ip().is_loopback() && !open_management {
            anyhow::bail!(
                "listen = {listen} reaches beyond this host, so management calls that change \
                 the archiver need an API key: set api_key in the configuration file (or \
                 ARCHIVER_API_KEY), and clients send it as 'Authorization: Bearer <key>'; or \
                 set open_management = true to allow them without one (behind an \
                 authenticating proxy, say); or listen on 127.0.0.1"
            );
        }
        anyhow::ensure!(
            open_retrieval || key.is_some(),
            "open_retrieval = false needs an api_key (reads would need a key that does not exist)"
        );
        Ok(archiver_http::auth::Access::new(
            key,
            open_management,
            open_retrieval,
        ))
    }

    /// Everything the server runs with, defaults filled in, every value checked (what
    /// `archiver config check` prints). `data_dir` and `listen` are the flags; `path` names
    /// the file in errors. Reads the policy file; touches no data folder.
    pub fn resolve(
        &self,
        data_dir: Option<&Path>,
        listen: Option<SocketAddr>,
        path: Option<&Path>,
    ) -> Result<Resolved> {
        // A bad value set by a variable is named as such (a fresh-user test looked for
        // `http_nice = -1` in a file that said 5).
        let resolved = self.resolve_values(data_dir, listen, path);
        if self.env_overrides.is_empty() {
            return resolved;
        }
        resolved.with_context(|| overrides_context(&self.env_overrides))
    }

    fn resolve_values(
        &self,
        data_dir: Option<&Path>,
        listen: Option<SocketAddr>,
        path: Option<&Path>,
    ) -> Result<Resolved> {
        let data_dir = self.data_dir(data_dir)?;
        let listen = listen
            .or(self.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 17665)));
        let stores = self
            .storage
            .data_stores(&data_dir, Backend::fs())
            .with_context(|| match path {
                Some(p) => format!("config file {}", p.display()),
                None => "the default data store".to_string(),
            })?;
        anyhow::ensure!(!stores.tiers().is_empty(), "no data store is configured");
        // The Java default policy; new PVs list every store, STS first.
        let mut policy = archiver_appliance::Policy::for_stores(&stores);
        policy.site = self.policy.site_policy(&stores)?;
        if let Some(f) = self.engine.default_archive_fields.clone() {
            policy.archive_fields = f;
        }
        policy.default_pva = self
            .engine
            .default_protocol
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("pva"));
        let mut engine = archiver_engine::EngineConfig::default();
        if let Some(p) = self.engine.write_period_secs {
            engine.write_period = std::time::Duration::from_secs_f64(p);
        }
        if let Some(d) = self.engine.server_ioc_drift_secs {
            engine.drift_secs = d;
        }
        policy.apply_to(&mut engine);
        if let Some(m) = self.engine.max_buffer_samples {
            engine.max_buffer_samples = m;
        }
        engine.rate_limit = self.storage.rate_limit()?;
        if self.engine.journal.unwrap_or(true) {
            // Its first segment's number is set at start, after the replay.
            let mut j = archiver_engine::JournalConfig::new(data_dir.join("journal"), 1);
            if let Some(s) = self.engine.journal_fsync_secs {
                j.fsync_interval = std::time::Duration::from_secs_f64(s);
            }
            if let Some(b) = self.engine.journal_max_bytes {
                j.max_bytes = b;
            }
            engine.journal = Some(j);
        }
        if let Some(id) = &self.identity {
            // It names the appliance in every PVTypeInfo and in the ...ForAppliance calls.
            anyhow::ensure!(
                !id.trim().is_empty() && !id.chars().any(char::is_whitespace),
                "identity {id:?}: the appliance's name must be a non-empty word (it is \
                 applianceIdentity in every PVTypeInfo)"
            );
        }
        let access = self.access(listen)?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => anyhow::bail!(
                "tls_cert and tls_key go together: give both (PEM files) to serve HTTPS, or \
                 neither"
            ),
        };
        let conn_limits = self.conn_limits()?;
        let http_nice = self.http_nice.unwrap_or(DEFAULT_HTTP_NICE);
        anyhow::ensure!(
            (0..=19).contains(&http_nice),
            "http_nice = {http_nice}: give 0 (HTTP at the priority of archiving) to 19 (the \
             lowest)"
        );
        Ok(Resolved {
            tls,
            conn_limits,
            http_nice,
            access,
            open_management: self.open_management.unwrap_or(false),
            open_retrieval: self.open_retrieval.unwrap_or(true),
            data_dir,
            listen,
            identity: self
                .identity
                .clone()
                .unwrap_or_else(|| "appliance0".to_string()),
            stores,
            policy,
            engine,
            out_of_space: self.storage.out_of_space_policy()?,
            etl: self.storage.etl_enabled(),
            fsync: self.storage.fsync == Some(true),
            policy_file: self.policy.file.clone(),
        })
    }
}

/// The configuration the server runs with: file, environment and flags, defaults filled
/// in, checked ([`FileConfig::resolve`]).
#[derive(Debug)]
pub struct Resolved {
    /// Who may call what: the API key and what needs it.
    pub access: archiver_http::auth::Access,
    /// `tls_cert`, `tls_key`: HTTPS with these PEM files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `header_read_timeout_secs`, `body_read_timeout_secs`, `max_connections`.
    pub conn_limits: archiver_http::server::ConnLimits,
    /// `http_nice`: the nice increment of the HTTP threads (0..=19).
    pub http_nice: i32,
    /// `open_management` as configured.
    pub open_management: bool,
    /// `open_retrieval` as configured.
    pub open_retrieval: bool,
    /// The data folder (absolute).
    pub data_dir: PathBuf,
    /// The HTTP listener.
    pub listen: SocketAddr,
    /// `applianceIdentity`.
    pub identity: String,
    /// The data stores, STS first.
    pub stores: DataStores,
    /// The archiving policy (Java defaults, site policies).
    pub policy: archiver_appliance::Policy,
    /// The engine's settings.
    pub engine: archiver_engine::EngineConfig,
    /// ETL's out-of-space policy.
    pub out_of_space: OutOfSpacePolicy,
    /// ETL on.
    pub etl: bool,
    /// Every append `fdatasync`ed.
    pub fsync: bool,
    /// The site policy file.
    pub policy_file: Option<PathBuf>,
}

/// [`Resolved`] as the file it amounts to (`archiver config check`).
#[derive(Serialize)]
struct Effective {
    data_dir: String,
    listen: String,
    identity: String,
    /// Never the key itself: whether one is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<&'static str>,
    open_management: bool,
    open_retrieval: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<String>,
    header_read_timeout_secs: f64,
    body_read_timeout_secs: f64,
    max_connections: usize,
    http_nice: i32,
    engine: EffectiveEngine,
    storage: EffectiveStorage,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<EffectivePolicy>,
}

#[derive(Serialize)]
struct EffectiveEngine {
    write_period_secs: f64,
    server_ioc_drift_secs: i64,
    default_archive_fields: Vec<String>,
    max_buffer_samples: usize,
    default_protocol: &'static str,
    journal: bool,
    journal_fsync_secs: f64,
    journal_max_bytes: u64,
}

#[derive(Serialize)]
struct EffectiveStorage {
    data_stores: Vec<String>,
    fsync: bool,
    etl: bool,
    out_of_space: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_bytes_per_hour: Option<u64>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pv_max_bytes_per_hour: std::collections::BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct EffectivePolicy {
    file: String,
}

impl Resolved {
    /// The effective configuration as TOML: every key with the value in force.
    pub fn to_toml(&self) -> Result<String> {
        let limit = &self.engine.rate_limit;
        let effective = Effective {
            data_dir: self.data_dir.display().to_string(),
            listen: self.listen.to_string(),
            identity: self.identity.clone(),
            api_key: self.access.has_key().then_some("(set; not shown)"),
            open_management: self.open_management,
            open_retrieval: self.open_retrieval,
            tls_cert: self.tls.as_ref().map(|t| t.0.display().to_string()),
            tls_key: self.tls.as_ref().map(|t| t.1.display().to_string()),
            header_read_timeout_secs: self.conn_limits.header_read_timeout.as_secs_f64(),
            body_read_timeout_secs: self.conn_limits.body_read_timeout.as_secs_f64(),
            max_connections: self.conn_limits.max_connections,
            http_nice: self.http_nice,
            engine: EffectiveEngine {
                write_period_secs: self.engine.write_period.as_secs_f64(),
                server_ioc_drift_secs: self.engine.drift_secs,
                default_archive_fields: self.engine.default_archive_fields.clone(),
                max_buffer_samples: self.engine.max_buffer_samples,
                default_protocol: if self.policy.default_pva { "pva" } else { "ca" },
                journal: self.engine.journal.is_some(),
                journal_fsync_secs: self.engine.journal.as_ref().map_or(
                    archiver_engine::JournalConfig::new("", 1)
                        .fsync_interval
                        .as_secs_f64(),
                    |j| j.fsync_interval.as_secs_f64(),
                ),
                journal_max_bytes: self
                    .engine
                    .journal
                    .as_ref()
                    .map_or(archiver_engine::JournalConfig::new("", 1).max_bytes, |j| {
                        j.max_bytes
                    }),
            },
            storage: EffectiveStorage {
                data_stores: self.stores.urls(),
                fsync: self.fsync,
                etl: self.etl,
                out_of_space: self.out_of_space.java_name(),
                max_bytes_per_hour: limit.default_bytes_per_hour,
                pv_max_bytes_per_hour: limit.per_pv.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            },
            policy: self.policy_file.as_ref().map(|f| EffectivePolicy {
                file: f.display().to_string(),
            }),
        };
        toml::to_string(&effective).context("cannot write the configuration as TOML")
    }
}

/// `archiver config ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file with the ARCHIVER_* environment overrides and the flags
    /// as `serve` would take them, and print the effective configuration (every key, the
    /// defaults filled in). Without FILE, the defaults with the environment and flags (a
    /// service configured by ARCHIVER_* variables alone). Exits 1 with a message naming
    /// the bad key and why.
    Check {
        /// The configuration file (TOML); none: the defaults.
        file: Option<PathBuf>,
        /// The --data-dir `serve` would get.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The --listen `serve` would get.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<SocketAddr>,
    },
    /// Print a commented reference configuration file: every key with its default.
    Defaults,
}

/// Runs `archiver config ...`.
pub fn run(cmd: &ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Defaults => {
            print!("{REFERENCE}");
            Ok(())
        }
        ConfigCommand::Check {
            file,
            data_dir,
            listen,
        } => {
            let cfg = FileConfig::layered(file.as_deref())?;
            let resolved = cfg.resolve(data_dir.as_deref(), *listen, file.as_deref())?;
            match file {
                Some(f) => println!("# {}: valid; the effective configuration:", f.display()),
                None => println!(
                    "# no file: the defaults with the ARCHIVER_* environment and the flags are \
                     valid; the effective configuration:"
                ),
            }
            print!("{}", resolved.to_toml()?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::time::Duration;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The environment wins over the file, values are TOML or strings, variables that
    /// are not configuration are left alone, and a bad one is named.
    #[test]
    fn environment_overrides_the_file_naming_a_bad_variable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1\"\n[engine]\nwrite_period_secs = 5\nmax_buffer_samples = 50\n",
        )
        .unwrap();
        let cfg = FileConfig::layered_from(
            Some(&file),
            env(&[
                ("ARCHIVER_LISTEN", "0.0.0.0:17665"),
                ("ARCHIVER_DATA_DIR", "/var/lib/archiver"),
                ("ARCHIVER_ENGINE_WRITE_PERIOD_SECS", "2.5"),
                (
                    "ARCHIVER_ENGINE_DEFAULT_ARCHIVE_FIELDS",
                    "[\"HIHI\", \"LOLO\"]",
                ),
                ("ARCHIVER_STORAGE_ETL", "false"),
                (
                    "ARCHIVER_STORAGE_PV_MAX_BYTES_PER_HOUR",
                    "{ \"A:B\" = 100 }",
                ),
                ("ARCHIVER_TEST_PYTHON", "/usr/bin/python3"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.listen, Some("0.0.0.0:17665".parse().unwrap()));
        assert_eq!(cfg.data_dir, Some(PathBuf::from("/var/lib/archiver")));
        assert_eq!(cfg.engine.write_period_secs, Some(2.5));
        assert_eq!(cfg.engine.max_buffer_samples, Some(50), "the file's, kept");
        assert_eq!(
            cfg.engine.default_archive_fields,
            Some(vec!["HIHI".to_string(), "LOLO".to_string()])
        );
        assert!(!cfg.storage.etl_enabled());
        assert_eq!(cfg.storage.rate_limit().unwrap().for_pv("A:B"), Some(100));
        // Without a file: the environment over the defaults.
        let cfg =
            FileConfig::layered_from(None, env(&[("ARCHIVER_IDENTITY", "appliance7")])).unwrap();
        assert_eq!(cfg.identity.as_deref(), Some("appliance7"));
        // The top-level keys also as ARCHIVER_SERVER_<KEY>.
        let cfg = FileConfig::layered_from(None, env(&[("ARCHIVER_SERVER_LISTEN", "0.0.0.0:1")]))
            .unwrap();
        assert_eq!(cfg.listen, Some("0.0.0.0:1".parse().unwrap()));

        for (var, value, words) in [
            (
                "ARCHIVER_ENGINE_WRITE_PERIOD",
                "5",
                vec!["ARCHIVER_ENGINE_WRITE_PERIOD", "names no key of [engine]"],
            ),
            (
                "ARCHIVER_STORAGE_ETL",
                "maybe",
                vec!["ARCHIVER_STORAGE_ETL", "storage.etl", "boolean"],
            ),
            (
                "ARCHIVER_ENGINE_WRITE_PERIOD_SECS",
                "0.001",
                vec!["engine.write_period_secs", "out of range"],
            ),
            (
                "ARCHIVER_LISTEN",
                "nowhere",
                vec!["ARCHIVER_LISTEN", "listen"],
            ),
            // A typo of a top-level key is named, not ignored.
            (
                "ARCHIVER_LISTN",
                "0.0.0.0:17665",
                vec![
                    "ARCHIVER_LISTN",
                    "names no configuration key",
                    "ARCHIVER_LISTEN",
                ],
            ),
            (
                "ARCHIVER_STORAG_ETL",
                "false",
                vec!["ARCHIVER_STORAG_ETL", "names no configuration key"],
            ),
        ] {
            let e = format!(
                "{:#}",
                FileConfig::layered_from(Some(&file), env(&[(var, value)])).unwrap_err()
            );
            for w in words {
                assert!(e.contains(w), "{var}={value}: {e:?} lacks {w:?}");
            }
        }
        // One key set by two variables.
        let e = format!(
            "{:#}",
            FileConfig::layered_from(
                None,
                env(&[
                    ("ARCHIVER_LISTEN", "0.0.0.0:1"),
                    ("ARCHIVER_SERVER_LISTEN", "0.0.0.0:2")
                ])
            )
            .unwrap_err()
        );
        assert!(
            e.contains("ARCHIVER_LISTEN") && e.contains("ARCHIVER_SERVER_LISTEN"),
            "{e}"
        );
        // An empty identity is refused by the resolution (config check, serve).
        let cfg = FileConfig::layered_from(None, env(&[("ARCHIVER_IDENTITY", "\"\"")])).unwrap();
        let e = format!(
            "{:#}",
            cfg.resolve(Some(Path::new("/data")), None, None)
                .unwrap_err()
        );
        assert!(e.contains("identity"), "{e}");
        // The benches' variables are not configuration either.
        FileConfig::layered_from(None, env(&[("ARCHIVER_CA_BENCH_SERVE", "1")])).unwrap();
    }

    /// `http_nice`: 10 by default, 0..=19, anything else refused naming the key.
    #[test]
    fn http_nice_has_a_default_and_a_range() {
        let dir = Path::new("/data");
        let cfg = |text: &str| toml::from_str::<FileConfig>(text).unwrap();
        assert_eq!(
            cfg("").resolve(Some(dir), None, None).unwrap().http_nice,
            10
        );
        let r = cfg("http_nice = 0").resolve(Some(dir), None, None).unwrap();
        assert_eq!(r.http_nice, 0);
        assert!(r.to_toml().unwrap().contains("http_nice = 0"));
        for bad in ["http_nice = -1", "http_nice = 20"] {
            let e = cfg(bad).resolve(Some(dir), None, None).unwrap_err();
            assert!(format!("{e:#}").contains("http_nice"), "{bad}: {e:#}");
        }
    }

    /// The HTTP connection limits: defaults, the keys, and values refused with the key named.
    #[test]
    fn connection_limits_have_defaults_and_refuse_bad_values() {
        let dir = Path::new("/data");
        let cfg = |text: &str| toml::from_str::<FileConfig>(text).unwrap();
        let r = cfg("").resolve(Some(dir), None, None).unwrap();
        assert_eq!(r.conn_limits, archiver_http::server::ConnLimits::default());
        let r =
            cfg("header_read_timeout_secs = 5\nbody_read_timeout_secs = 2.5\nmax_connections = 64")
                .resolve(Some(dir), None, None)
                .unwrap();
        assert_eq!(r.conn_limits.header_read_timeout, Duration::from_secs(5));
        assert_eq!(r.conn_limits.body_read_timeout, Duration::from_millis(2500));
        assert_eq!(r.conn_limits.max_connections, 64);
        assert!(r.to_toml().unwrap().contains("max_connections = 64"));
        for (text, key) in [
            ("header_read_timeout_secs = 0", "header_read_timeout_secs"),
            ("body_read_timeout_secs = -1", "body_read_timeout_secs"),
            ("header_read_timeout_secs = 1e9", "header_read_timeout_secs"),
            ("max_connections = 0", "max_connections"),
        ] {
            let e = cfg(text).resolve(Some(dir), None, None).unwrap_err();
            assert!(format!("{e:#}").contains(key), "{text}: {e:#}");
        }
    }

    /// Bound beyond loopback, the server needs an API key unless management is opened;
    /// `open_retrieval = false` needs a key; the key is never printed (issue 13).
    #[test]
    fn a_server_bound_beyond_loopback_needs_a_key_unless_opened() {
        let dir = Path::new("/data");
        let wide: SocketAddr = "0.0.0.0:17665".parse().unwrap();
        let cfg = |text: &str| toml::from_str::<FileConfig>(text).unwrap();
        let e = cfg("").resolve(Some(dir), Some(wide), None).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("api_key") && e.contains("open_management"),
            "{e}"
        );
        // Loopback: open without a key.
        let r = cfg("").resolve(Some(dir), None, None).unwrap();
        assert!(!r.access.writes_need_key && !r.access.reads_need_key);
        let r = cfg("api_key = \"k3y\"")
            .resolve(Some(dir), Some(wide), None)
            .unwrap();
        assert!(r.access.writes_need_key && !r.access.reads_need_key);
        assert!(!r.to_toml().unwrap().contains("k3y"));
        let r = cfg("open_management = true")
            .resolve(Some(dir), Some(wide), None)
            .unwrap();
        assert!(!r.access.writes_need_key);
        let e = cfg("open_retrieval = false")
            .resolve(Some(dir), None, None)
            .unwrap_err();
        assert!(format!("{e:#}").contains("open_retrieval"));
        let r = cfg("api_key = \"k3y\"\nopen_retrieval = false")
            .resolve(Some(dir), None, None)
            .unwrap();
        assert!(r.access.reads_need_key);
        assert!(
            cfg("api_key = \" \"")
                .resolve(Some(dir), None, None)
                .is_err()
        );
    }

    /// docs/archiver.reference.toml (`archiver config defaults`) is a valid file whose
    /// values are the defaults, and it names every key of [`KEYS`], which are the fields
    /// of the structs.
    #[test]
    fn the_reference_file_lists_every_key_with_its_default() {
        let reference: FileConfig = toml::from_str(REFERENCE).unwrap();
        let dir = Path::new("/data");
        let of = |c: &FileConfig| c.resolve(Some(dir), None, None).unwrap().to_toml().unwrap();
        assert_eq!(of(&reference), of(&FileConfig::default()));
        let mut section = "";
        let mut seen = Vec::new();
        for line in REFERENCE.lines() {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = KEYS.iter().find(|(k, _)| *k == s).map_or("?", |(k, _)| k);
            }
            let line = line.trim_start_matches("# ");
            if let Some((key, _)) = line.split_once(" = ") {
                seen.push((section, key.trim()));
            }
        }
        for &(s, k) in KEYS {
            assert!(seen.contains(&(s, k)), "[{s}] {k} is not in the reference");
        }
        // Every field is a key (adding a field breaks this destructuring until it is
        // listed in KEYS and the reference).
        let FileConfig {
            data_dir: _,
            listen: _,
            identity: _,
            api_key: _,
            open_management: _,
            open_retrieval: _,
            tls_cert: _,
            tls_key: _,
            header_read_timeout_secs: _,
            body_read_timeout_secs: _,
            max_connections: _,
            http_nice: _,
            engine:
                EngineSection {
                    write_period_secs: _,
                    server_ioc_drift_secs: _,
                    default_archive_fields: _,
                    max_buffer_samples: _,
                    default_protocol: _,
                    journal: _,
                    journal_fsync_secs: _,
                    journal_max_bytes: _,
                },
            storage:
                StorageSection {
                    sts_granularity: _,
                    data_stores: _,
                    fsync: _,
                    etl: _,
                    out_of_space: _,
                    max_bytes_per_hour: _,
                    pv_max_bytes_per_hour: _,
                },
            policy: PolicySection { file: _ },
            env_overrides: _,
        } = reference;
        assert_eq!(KEYS.len(), 28);
    }

    #[test]
    fn a_bad_out_of_space_policy_fails_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archiver.toml");
        std::fs::write(&path, "[storage]\nout_of_space = \"PANIC\"\n").unwrap();
        let e = format!("{:#}", FileConfig::load(&path).unwrap_err());
        assert!(
            e.contains("storage.out_of_space") && e.contains("PANIC"),
            "{e}"
        );
        std::fs::write(
            &path,
            "[storage]\nout_of_space = \"SKIP_ETL_WHEN_OUT_OF_SPACE\"\n",
        )
        .unwrap();
        assert!(FileConfig::load(&path).is_ok());
    }

    #[test]
    fn default_protocol_is_ca_or_pva() {
        let ok: EngineSection = toml::from_str("default_protocol = \"PVA\"").unwrap();
        assert!(ok.validate().is_ok());
        let bad: EngineSection = toml::from_str("default_protocol = \"http\"").unwrap();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("default_protocol") && e.contains("http"), "{e}");
    }

    fn storage(toml_text: &str) -> StorageSection {
        let cfg: FileConfig = toml::from_str(toml_text).unwrap();
        cfg.storage
    }

    fn names(stores: &DataStores) -> Vec<&str> {
        stores.tiers().iter().map(Tier::name).collect()
    }

    #[test]
    fn the_policy_file_is_read_and_checked_against_the_stores() {
        let dir = tempfile::tempdir().unwrap();
        let stores = storage("").data_stores(dir.path(), Backend::fs()).unwrap();
        let none: FileConfig = toml::from_str("").unwrap();
        let site = none.policy.site_policy(&stores).unwrap();
        assert_eq!(site, archiver_appliance::SitePolicy::java_default());
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            "[[policy]]\nname = \"fast\"\ndescription = \"Fast\"\nsampling_period = 0.1\n\
             data_stores = [\"STS\"]\n",
        )
        .unwrap();
        let cfg: FileConfig = toml::from_str(&format!(
            "[policy]\nfile = {:?}\n",
            file.display().to_string()
        ))
        .unwrap();
        let site = cfg.policy.site_policy(&stores).unwrap();
        let names: Vec<&str> = site.policies().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["fast", "default"]);
        // A store the configuration lacks: the error names the file and the store.
        std::fs::write(
            &file,
            "[[policy]]\nname = \"x\"\ndata_stores = [\"STS\", \"XTS\"]\n",
        )
        .unwrap();
        let e = format!("{:#}", cfg.policy.site_policy(&stores).unwrap_err());
        assert!(
            e.contains("p.toml") && e.contains("\"XTS\" is not configured"),
            "{e}"
        );
        let missing: FileConfig =
            toml::from_str("[policy]\nfile = \"/nonexistent/p.toml\"\n").unwrap();
        let e = format!("{:#}", missing.policy.site_policy(&stores).unwrap_err());
        assert!(
            e.contains("cannot read the policy file /nonexistent/p.toml"),
            "{e}"
        );
    }

    #[test]
    fn engine_values_out_of_range_are_refused_naming_the_key() {
        let engine = |text: &str| -> EngineSection {
            toml::from_str::<FileConfig>(&format!("[engine]\n{text}\n"))
                .unwrap()
                .engine
        };
        for (text, key) in [
            ("write_period_secs = 1e300", "write_period_secs"),
            ("write_period_secs = inf", "write_period_secs"),
            ("write_period_secs = nan", "write_period_secs"),
            ("write_period_secs = 0.01", "write_period_secs"),
            ("server_ioc_drift_secs = -5", "server_ioc_drift_secs"),
            (
                "server_ioc_drift_secs = 9223372036854775807",
                "server_ioc_drift_secs",
            ),
            ("max_buffer_samples = 0", "max_buffer_samples"),
            (
                "default_archive_fields = [\"bad field!\"]",
                "default_archive_fields",
            ),
            ("default_archive_fields = [\"\"]", "default_archive_fields"),
        ] {
            let e = engine(text).validate().unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        for text in [
            "write_period_secs = 10",
            "write_period_secs = 0.1",
            "server_ioc_drift_secs = 1800",
            "max_buffer_samples = 100000",
            "default_archive_fields = [\"HIHI\", \"DESC\"]",
            "",
        ] {
            engine(text).validate().unwrap();
        }
    }

    #[test]
    fn a_blackhole_store_and_the_etl_keys() {
        let dir = Path::new("/d");
        let s = storage(
            "[storage]\ndata_stores = [\n\
             \"pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_HOUR\",\n\
             \"blackhole://localhost?name=Gone\"]\n",
        );
        let stores = s.data_stores(dir, Backend::fs()).unwrap();
        assert_eq!(
            (names(&stores), stores.blackhole()),
            (vec!["STS"], Some("Gone"))
        );
        assert!(s.etl_enabled());
        assert_eq!(
            s.out_of_space_policy().unwrap(),
            OutOfSpacePolicy::default()
        );
        assert_eq!(s.rate_limit().unwrap(), RateLimit::default());
        let s = storage(
            "[storage]\netl = false\nout_of_space = \"SKIP_ETL_WHEN_OUT_OF_SPACE\"\n\
             max_bytes_per_hour = 1000\n[storage.pv_max_bytes_per_hour]\n\"A:B\" = 5\n",
        );
        let limits = s.rate_limit().unwrap();
        assert_eq!(
            (limits.for_pv("A:B"), limits.for_pv("C:D")),
            (Some(5), Some(1000))
        );
        // A 0 drops everything and a key that is no PV name limits nothing: refused,
        // naming the key (found by a fresh-user test).
        for (text, says) in [
            (
                "[storage]\nmax_bytes_per_hour = 0\n",
                "max_bytes_per_hour = 0",
            ),
            (
                "[storage.pv_max_bytes_per_hour]\n\"BAD PV*\" = 5\n",
                "\"BAD PV*\" is not a PV name",
            ),
            ("[storage.pv_max_bytes_per_hour]\n\"A:B\" = 0\n", "= 0"),
        ] {
            let e = storage(text).rate_limit().unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(!s.etl_enabled());
        assert_eq!(s.out_of_space_policy().unwrap(), OutOfSpacePolicy::Skip);
        let e = storage("[storage]\nout_of_space = \"PANIC\"\n")
            .out_of_space_policy()
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("SKIP_ETL_WHEN_OUT_OF_SPACE"),
            "{e:#}"
        );
        // Nothing after the blackhole.
        let e = storage(
            "[storage]\ndata_stores = [\"blackhole://localhost\", \
             \"pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_HOUR\"]\n",
        )
        .data_stores(dir, Backend::fs())
        .unwrap_err();
        assert!(format!("{e:#}").contains("blackhole"), "{e:#}");
    }

    #[test]
    fn fsync_makes_every_store_sync_each_write() {
        let dir = Path::new("/d");
        let text = "[storage]\nfsync = true\ndata_stores = [\n\
            \"pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_HOUR\",\n\
            \"pb://localhost?name=LTS&rootFolder=lts&partitionGranularity=PARTITION_YEAR\"]\n";
        let s = storage(text).data_stores(dir, Backend::fs()).unwrap();
        assert!(
            s.tiers()
                .iter()
                .all(|t| t.sync_policy() == SyncPolicy::EachWrite)
        );
        for text in ["", "[storage]\nfsync = false\n"] {
            let s = storage(text).data_stores(dir, Backend::fs()).unwrap();
            assert_eq!(s.tiers()[0].sync_policy(), SyncPolicy::OsWriteback);
        }
    }

    #[test]
    fn without_data_stores_the_stores_are_javas_sts_mts_lts_under_the_data_dir() {
        let dir = Path::new("/var/lib/arch");
        let s = storage("").data_stores(dir, Backend::fs()).unwrap();
        assert_eq!(names(&s), ["STS", "MTS", "LTS"]);
        assert_eq!(
            s.urls()[1..],
            [
                "pb://localhost?name=MTS&rootFolder=/var/lib/arch/mts&partitionGranularity=PARTITION_DAY&hold=2&gather=1",
                "pb://localhost?name=LTS&rootFolder=/var/lib/arch/lts&partitionGranularity=PARTITION_YEAR",
            ]
        );
        let sts = &s.tiers()[0];
        assert_eq!(sts.root(), dir.join("sts"));
        assert_eq!(sts.granularity(), Granularity::Hour);
        assert_eq!(
            sts.url(),
            "pb://localhost?name=STS&rootFolder=/var/lib/arch/sts&partitionGranularity=PARTITION_HOUR"
        );
        // An existing file with sts_granularity keeps working.
        let s = storage("[storage]\nsts_granularity = \"PARTITION_DAY\"\n")
            .data_stores(dir, Backend::fs())
            .unwrap();
        assert_eq!(s.tiers()[0].granularity(), Granularity::Day);
        let e = storage("[storage]\nsts_granularity = \"DAILY\"\n")
            .data_stores(dir, Backend::fs())
            .unwrap_err();
        assert!(format!("{e:#}").contains("DAILY"), "{e:#}");
    }

    #[test]
    fn data_stores_in_order_with_relative_folders_under_the_data_dir() {
        let dir = Path::new("/data");
        let s = storage(
            r#"
            [storage]
            data_stores = [
              "pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_HOUR",
              "pb://localhost?name=MTS&rootFolder=tiers/mts&partitionGranularity=PARTITION_DAY&hold=2&gather=1",
              "pb://localhost?name=LTS&rootFolder=/archive/lts&partitionGranularity=PARTITION_YEAR",
            ]
            "#,
        )
        .data_stores(dir, Backend::fs())
        .unwrap();
        assert_eq!(names(&s), ["STS", "MTS", "LTS"]);
        let roots: Vec<&Path> = s.tiers().iter().map(Tier::root).collect();
        assert_eq!(
            roots,
            [
                Path::new("/data/sts"),
                Path::new("/data/tiers/mts"),
                Path::new("/archive/lts")
            ]
        );
        // The URLs new PVs get name the folders as used; ETL parameters are kept.
        assert_eq!(
            s.tiers()[1].url(),
            "pb://localhost?name=MTS&rootFolder=/data/tiers/mts&partitionGranularity=PARTITION_DAY&hold=2&gather=1"
        );
        assert_eq!(s.tiers()[2].granularity(), Granularity::Year);
    }

    #[test]
    fn placeholders_are_kept_in_the_url_and_expanded_for_the_folder() {
        // PATH is set in any test environment; its value is absolute or not, either way
        // the folder is under the data dir only if it is relative.
        let path = std::env::var("PATH").unwrap();
        let s = storage(
            "[storage]\ndata_stores = [\"pb://localhost?name=STS&rootFolder=${PATH}&partitionGranularity=PARTITION_HOUR\"]\n",
        )
        .data_stores(Path::new("/d"), Backend::fs())
        .unwrap();
        assert_eq!(s.tiers()[0].root(), Path::new("/d").join(&path));
        assert_eq!(
            s.tiers()[0].url(),
            "pb://localhost?name=STS&rootFolder=${PATH}&partitionGranularity=PARTITION_HOUR"
        );
    }

    #[test]
    fn bad_store_lists_are_refused_naming_the_problem() {
        let dir = Path::new("/d");
        let err = |text: &str| {
            format!(
                "{:#}",
                storage(text).data_stores(dir, Backend::fs()).unwrap_err()
            )
        };
        let e = err("[storage]\ndata_stores = []\n");
        assert!(e.contains("empty"), "{e}");
        let e = err(
            "[storage]\nsts_granularity = \"PARTITION_DAY\"\ndata_stores = [\"pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_HOUR\"]\n",
        );
        assert!(e.contains("sts_granularity"), "{e}");
        let e = err("[storage]\ndata_stores = [\"pb://localhost?name=STS&rootFolder=sts\"]\n");
        assert!(e.contains("partitionGranularity"), "{e}");
        assert!(e.contains("storage.data_stores"), "{e}");
        let e = err(
            "[storage]\ndata_stores = [\"pb://localhost?name=STS&rootFolder=a&partitionGranularity=PARTITION_HOUR\", \"pb://localhost?name=STS&rootFolder=b&partitionGranularity=PARTITION_DAY\"]\n",
        );
        assert!(e.contains("STS"), "{e}");
        let e = err(
            "[storage]\ndata_stores = [\"pb://localhost?name=STS&rootFolder=${ARCHIVER_TEST_SURELY_UNSET_VAR}&partitionGranularity=PARTITION_HOUR\"]\n",
        );
        assert!(e.contains("ARCHIVER_TEST_SURELY_UNSET_VAR"), "{e}");
    }

    /// Accepted but likely wrong: an unknown URL parameter, a store name with a space, an
    /// STS coarser than the MTS; each is one warning naming the key and the store. A
    /// Java-like configuration has none.
    #[test]
    fn store_warnings_name_unknown_parameters_spaced_names_and_coarser_before_finer() {
        let dir = tempfile::tempdir().unwrap();
        let fine = storage(
            "[storage]\ndata_stores = [\"pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_HOUR\", \
             \"pb://localhost?name=MTS&rootFolder=mts&partitionGranularity=PARTITION_DAY&hold=2&gather=1\", \
             \"blackhole://localhost\"]",
        );
        let stores = fine.data_stores(dir.path(), Backend::fs()).unwrap();
        assert_eq!(fine.warnings(&stores), Vec::<String>::new());
        let odd = storage(
            "[storage]\ndata_stores = [\"pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_DAY&bogus=1\", \
             \"pb://localhost?name=My%20MTS&rootFolder=mts&partitionGranularity=PARTITION_HOUR\"]",
        );
        let stores = odd.data_stores(dir.path(), Backend::fs()).unwrap();
        let w = odd.warnings(&stores);
        assert_eq!(w.len(), 3, "{w:#?}");
        assert!(
            w[0].contains("storage.data_stores: store STS: unknown parameter bogus=1"),
            "{}",
            w[0]
        );
        assert!(w[1].contains("\"My MTS\" contains white space"), "{}", w[1]);
        assert!(
            w[2].contains("store STS (PARTITION_DAY) has coarser partitions than the next store My MTS (PARTITION_HOUR)"),
            "{}",
            w[2]
        );
    }
}
