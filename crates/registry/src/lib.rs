//! The PV catalogue of the archiver: what the Java EPICS Archiver Appliance keeps in its
//! `PVTypeInfo`, `PVAliases` and `ArchivePVRequests` tables.
//!
//! # Overview
//!
//! * [`PvTypeInfo`] — everything known about one archived PV (type, element count,
//!   `DBR_CTRL` metadata, sampling, stores, appliance…), read and written in the Java
//!   appliance's exact JSON (every scalar a string, `"NaN"`, ISO instants with
//!   milliseconds, nulls omitted, unknown keys kept). [`PvTypeInfo::new_for_archiving`]
//!   builds one with the Java workflow's defaults.
//! * [`Registry`] — the catalogue operations: type infos, name listings with a glob or
//!   regex and a limit (Java `getAllPVs`), paused PVs, aliases (an alias never has its
//!   own type info), pending archive requests that survive a restart, counts. It
//!   assumes nothing about where the catalogue lives, so a PostgreSQL backend shared by
//!   a cluster can implement it later.
//! * [`SqliteRegistry`] — the default backend: one embedded SQLite file
//!   (`<data dir>/registry.sqlite`), WAL, busy timeout, numbered [`migrations`], safe to
//!   share between threads.
//! * [`names`] — PV-name normalisation (`.VAL`, `ca://`/`pva://`), `PV.FIELD` splitting,
//!   validation with Java's character set, and globs.
//! * [`RegistryError`] — every failure, typed, naming the operation and the PV.
//!
//! Nothing here is async: the engine and the HTTP layer call the registry from a
//! blocking thread.
//!
//! # Example
//!
//! ```
//! use archiver_pb::{PayloadType, Timestamp};
//! use archiver_registry::{
//!     Limit, NamePattern, PvTypeInfo, Registry, SamplingMethod, SqliteRegistry,
//! };
//!
//! let registry = SqliteRegistry::open_in_memory()?;
//! let mut info = PvTypeInfo::new_for_archiving(
//!     "ABC:DEF",
//!     PayloadType::ScalarDouble,
//!     1,
//!     SamplingMethod::Monitor,
//!     1.0,
//!     vec!["pb://localhost?name=STS&rootFolder=/arch/sts&partitionGranularity=PARTITION_HOUR".into()],
//!     Timestamp::new(1_418_309_398, 523_000_000),
//! )?;
//! info.set_units("mA");
//! registry.put_type_info(&info)?;
//! registry.add_alias("ABC:OLD", "ABC:DEF")?;
//!
//! let found = registry.get_type_info_for_name("ABC:OLD")?.expect("stored");
//! assert_eq!(found.to_json_value()["units"], "mA");
//! assert_eq!(
//!     registry.get_all_pvs(&NamePattern::Glob("ABC:*".into()), Limit::default())?,
//!     ["ABC:DEF", "ABC:OLD"]
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod error;
pub mod instant;
pub mod javanum;
pub mod migrations;
pub mod names;
pub mod pattern;
pub mod pvtypeinfo;
pub mod registry;
pub mod sqlite;

pub use crate::error::{NameError, RegistryError, TypeInfoError};
pub use crate::pattern::{
    Limit, MATCH_TIME_LIMIT, MatchBudget, NameMatcher, NamePattern, NameScan, PATTERN_SIZE_LIMIT,
};
pub use crate::pvtypeinfo::{
    CtrlLimits, DEFAULT_APPLIANCE_IDENTITY, PvTypeInfo, SamplingMethod, UnknownSamplingMethod,
};
pub use crate::registry::{Alias, ArchiveRequest, PvTimes, Registry, RegistryCounts};
pub use crate::sqlite::SqliteRegistry;
