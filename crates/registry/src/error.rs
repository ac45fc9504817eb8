//! The errors of the registry: names, `PVTypeInfo` JSON, and catalogue operations.

use std::path::PathBuf;

/// A PV or channel name that the Java appliance would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("empty PV name")]
    Empty,
    /// The name is longer than [`crate::names::MAX_PV_NAME_LEN`] bytes.
    #[error("PV name of {len} bytes is too long (at most {max} bytes: {start:?}...)")]
    TooLong {
        /// The name's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
        /// The first characters of the name.
        start: String,
    },
    /// A character outside `[a-zA-Z0-9_\-+:\[\]<>;/,#{}^]` (or a misplaced dot).
    #[error(
        "invalid character {ch:?} at position {position} in PV name {name:?} \
         (allowed: letters, digits and _-+:[]<>;/,#{{}}^, then an optional .FIELD)"
    )]
    InvalidChar {
        /// The whole name.
        name: String,
        /// The offending character.
        ch: char,
        /// Its position in characters (not bytes) from the start of the name.
        position: usize,
    },
    /// A pvAccess member path (after `#`) written with dots: members are separated by `/`.
    #[error(
        "the member path {path:?} of PV name {name:?} has a '.': members are separated by \
         '/' (#{})",
        path.replace('.', "/")
    )]
    DottedMemberPath {
        /// The whole name.
        name: String,
        /// The path after `#`.
        path: String,
    },
    /// The part after the dot is not a field name `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("invalid field {field:?} in PV name {name:?} (expected [a-zA-Z_][a-zA-Z0-9_]*)")]
    InvalidField {
        /// The whole name.
        name: String,
        /// The text after the dot.
        field: String,
    },
    /// A modifier that is neither a `{…}` channel filter nor an `[n:m]` range.
    #[error("invalid field modifier {modifier:?} in PV name {name:?}")]
    InvalidModifier {
        /// The whole name.
        name: String,
        /// The modifier text.
        modifier: String,
    },
    /// The name ends with a dot.
    #[error("PV name {name:?} ends with '.'")]
    TrailingDot {
        /// The whole name.
        name: String,
    },
}

/// A `PVTypeInfo` that cannot be read from JSON or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypeInfoError {
    /// The text is not JSON.
    #[error("PVTypeInfo is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON is not an object.
    #[error("PVTypeInfo JSON is not an object")]
    NotAnObject,
    /// A required key (`pvName`, `DBRType`) is absent or null.
    #[error("PVTypeInfo has no {key:?}")]
    Missing {
        /// The Java key name.
        key: &'static str,
    },
    /// A key holds a value of the wrong kind or text that does not parse.
    #[error("PVTypeInfo key {key:?} has invalid value {value} (expected {expected})")]
    InvalidValue {
        /// The Java key name.
        key: &'static str,
        /// The offending value, as JSON text.
        value: String,
        /// What was expected, e.g. `a Java float such as "1.0"`.
        expected: &'static str,
    },
    /// The PV name of a new type info is not a valid channel name.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The PV name cannot be mapped to a storage key.
    #[error("PV name has no chunk key: {0}")]
    ChunkKey(#[from] archiver_pb::path::PathError),
}

/// The error of every [`Registry`](crate::Registry) operation. Each variant says which
/// operation and, where there is one, which PV.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The database failed (I/O, lock timeout, constraint, lost connection…).
    #[error("registry {op}{} failed: {source}", for_pv(.pv))]
    Backend {
        /// The operation, e.g. `put_type_info`.
        op: &'static str,
        /// The PV (or alias) concerned, if any.
        pv: Option<String>,
        /// The backend's error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A stored `PVTypeInfo` cannot be read: the row is kept, the caller decides.
    #[error("stored PVTypeInfo of {pv:?} is corrupt: {source}")]
    CorruptTypeInfo {
        /// The row's PV name.
        pv: String,
        /// What is wrong with it.
        source: TypeInfoError,
    },
    /// A stored archive request's user parameters are not JSON.
    #[error("stored archive request of {pv:?} is corrupt: {source}")]
    CorruptArchiveRequest {
        /// The row's PV name.
        pv: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// `add_alias` for a name that has its own `PVTypeInfo`.
    #[error("cannot make {alias:?} an alias of {real:?}: {alias:?} has its own PVTypeInfo")]
    AliasHasTypeInfo {
        /// The would-be alias.
        alias: String,
        /// The real name it was to point to.
        real: String,
    },
    /// `put_type_info` for a name that is an alias.
    #[error("cannot store a PVTypeInfo for {pv:?}: it is an alias of {real:?}")]
    TypeInfoForAlias {
        /// The name of the type info.
        pv: String,
        /// The real name the alias points to.
        real: String,
    },
    /// `add_alias` whose target is itself an alias: aliases do not chain.
    #[error(
        "cannot make {alias:?} an alias of {real:?}: {real:?} is itself an alias of {real_of_real:?}"
    )]
    AliasOfAlias {
        /// The would-be alias.
        alias: String,
        /// The target, an alias.
        real: String,
        /// What the target points to.
        real_of_real: String,
    },
    /// `add_alias` for a name that other aliases point to: aliases do not chain.
    #[error("cannot make {alias:?} an alias of {real:?}: {aliased_by:?} is an alias of {alias:?}")]
    AliasIsTarget {
        /// The would-be alias.
        alias: String,
        /// The target.
        real: String,
        /// An existing alias that points to `alias`.
        aliased_by: String,
    },
    /// `add_alias(x, x)`.
    #[error("cannot make {name:?} an alias of itself")]
    SelfAlias {
        /// The name.
        name: String,
    },
    /// An empty PV or alias name.
    #[error("registry {op}: empty PV name")]
    EmptyName {
        /// The operation.
        op: &'static str,
    },
    /// A name pattern (glob or regex) that does not compile. The message shows the
    /// pattern as given, cut after 200 characters.
    #[error(
        "invalid name pattern {}: {reason}",
        crate::names::quoted_excerpt(pattern)
    )]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// Why it does not compile.
        reason: String,
    },
    /// A name pattern too costly to match: its compiled program would be larger than
    /// [`crate::pattern::PATTERN_SIZE_LIMIT`], or one listing matched names against it
    /// for longer than [`crate::pattern::MATCH_TIME_LIMIT`]. The message shows at most
    /// the first 200 characters of the pattern.
    #[error(
        "name pattern {} is too costly: {reason}",
        crate::names::quoted_excerpt(pattern)
    )]
    PatternTooCostly {
        /// The pattern as given.
        pattern: String,
        /// What made it too costly.
        reason: String,
    },
    /// The database was written by a newer version of the archiver.
    #[error(
        "the registry file {} has schema version {found}, newer than this build supports \
         ({supported}); it was left as it is: upgrade the archiver",
        .path.display()
    )]
    SchemaTooNew {
        /// The catalogue file (`:memory:` for a catalogue in memory).
        path: PathBuf,
        /// The version in `schema_version`.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// A schema migration failed; the database is left at the previous version.
    #[error("registry migration {version} ({description}) failed: {source}")]
    Migration {
        /// The migration's number.
        version: u32,
        /// What it does.
        description: &'static str,
        /// The backend's error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The catalogue file is damaged or is not an SQLite database (garbage bytes, a
    /// truncated copy). It is never replaced or repaired: the operator decides.
    #[error(
        "the registry file {} is damaged or is not an SQLite database ({detail}); it was \
         left as it is: restore it from a backup, or move it away to start with an empty \
         catalogue (the PVs must then be archived or imported again)",
        .path.display()
    )]
    Corrupt {
        /// The catalogue file.
        path: PathBuf,
        /// SQLite's words for what is wrong.
        detail: String,
    },
    /// The catalogue file is an SQLite database of something else: tables that are not
    /// the archiver's, or the archiver's tables without their columns.
    #[error(
        "the registry file {} is not an archiver catalogue ({detail}); it was left as it \
         is: give the archiver another --data-dir, or move the file away",
        .path.display()
    )]
    ForeignSchema {
        /// The catalogue file.
        path: PathBuf,
        /// What was found instead, e.g. `tables foo, bar and no schema_version`.
        detail: String,
    },
    /// Another process held a lock on the catalogue file for longer than the busy
    /// timeout ([`crate::sqlite::BUSY_TIMEOUT`]) while it was opened.
    #[error(
        "the registry file {} is locked by another process (waited {:?}): another \
         archiver, or a tool such as sqlite3 in a transaction, has it open; stop that \
         process (`fuser -v {}` names it) and start again",
        .path.display(),
        .waited,
        .path.display()
    )]
    Locked {
        /// The catalogue file.
        path: PathBuf,
        /// How long the open waited for the lock.
        waited: std::time::Duration,
    },
    /// The registry's folder cannot be created.
    #[error("cannot create registry folder {}: {source}", .path.display())]
    Io {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl RegistryError {
    /// A [`RegistryError::Backend`] for `op` on `pv`.
    pub fn backend(
        op: &'static str,
        pv: Option<&str>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        RegistryError::Backend {
            op,
            pv: pv.map(str::to_string),
            source: source.into(),
        }
    }
}

fn for_pv(pv: &Option<String>) -> String {
    pv.as_ref()
        .map(|p| format!(" for {p:?}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_operation_and_the_pv() {
        let e = RegistryError::backend("put_type_info", Some("A:B"), "disk full");
        assert_eq!(
            e.to_string(),
            "registry put_type_info for \"A:B\" failed: disk full"
        );
        let e = RegistryError::backend("all_pv_names", None, "locked");
        assert_eq!(e.to_string(), "registry all_pv_names failed: locked");
        let e = RegistryError::TypeInfoForAlias {
            pv: "OLD".into(),
            real: "NEW".into(),
        };
        assert!(e.to_string().contains("\"OLD\"") && e.to_string().contains("alias of \"NEW\""));
    }

    #[test]
    fn errors_are_send_sync_static() {
        fn check<E: std::error::Error + Send + Sync + 'static>() {}
        check::<RegistryError>();
        check::<TypeInfoError>();
        check::<NameError>();
    }
}
