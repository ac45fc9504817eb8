//! The [`Registry`] trait: the catalogue operations every backend provides.
//!
//! The trait never assumes the catalogue lives in this process. A later PostgreSQL
//! backend shared by a cluster of appliances must be able to implement it, so:
//!
//! * every method can fail ([`RegistryError::Backend`] for a lost connection, a lock
//!   timeout…) and returns owned data — nothing borrows a connection or a cache;
//! * implementations do not cache across calls: another appliance may have written in
//!   between, and a read returns what the catalogue holds now;
//! * each method is one round trip or one transaction, so checks such as "an alias has
//!   no type info" hold against concurrent writers; batch forms
//!   ([`Registry::put_type_infos`]) exist where callers would otherwise loop;
//! * listings are sorted by name (byte order) and take a [`Limit`], and patterns are data
//!   ([`NamePattern`]) a server can evaluate;
//! * [`Registry::type_infos_for_appliance`] lets each appliance load only its own PVs.
//!
//! Methods are blocking; async callers run them on a blocking thread.

use serde_json::Value;

use crate::error::RegistryError;
use crate::pattern::{Limit, MatchBudget, NamePattern};
use crate::pvtypeinfo::PvTypeInfo;

/// An alias and the real PV name it stands for (table `PVAliases`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Alias {
    /// The alias (`PVAliases.pvName`).
    pub alias: String,
    /// The real PV name (`PVAliases.realName`).
    pub real_name: String,
}

/// A pending archive request (table `ArchivePVRequests`): kept until the workflow
/// finishes or aborts, so requests survive a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveRequest {
    /// The PV to archive.
    pub pv_name: String,
    /// The user's parameters as given to `archivePV` (sampling period and method,
    /// policy, controlling PV, alias, appliance…), as JSON.
    pub user_params: Value,
}

/// The times and paused flag of one type info: what the catalogue reports (recently
/// added, recently modified, paused PVs) read, without decoding whole type infos.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvTimes {
    /// The PV name.
    pub pv_name: String,
    /// `creationTime`, if recorded.
    pub creation_time: Option<archiver_pb::Timestamp>,
    /// `modificationTime`, if recorded.
    pub modification_time: Option<archiver_pb::Timestamp>,
    /// `paused`.
    pub paused: bool,
}

/// How much the catalogue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegistryCounts {
    /// PVs with a type info.
    pub pvs: u64,
    /// Of those, the paused ones.
    pub paused: u64,
    /// Aliases.
    pub aliases: u64,
    /// Pending archive requests.
    pub archive_requests: u64,
}

/// The PV catalogue: type infos, aliases and pending archive requests.
///
/// Names are used exactly as given: normalise them first
/// ([`crate::names::normalize_channel_name`]). An alias never has its own type info and
/// a name with a type info is never an alias; both directions are refused with a typed
/// error.
pub trait Registry: Send + Sync {
    /// The type info stored under exactly `pv` (no alias resolution).
    fn get_type_info(&self, pv: &str) -> Result<Option<PvTypeInfo>, RegistryError>;

    /// Stores (inserts or replaces) `info` under `info.pv_name`. Refused with
    /// [`RegistryError::TypeInfoForAlias`] when that name is an alias.
    fn put_type_info(&self, info: &PvTypeInfo) -> Result<(), RegistryError>;

    /// Stores several type infos in one transaction: all or none.
    fn put_type_infos(&self, infos: &[PvTypeInfo]) -> Result<(), RegistryError>;

    /// Deletes the type info of `pv`; true if there was one. Aliases pointing to `pv`
    /// are left alone (see [`Registry::aliases_of`]).
    fn delete_type_info(&self, pv: &str) -> Result<bool, RegistryError>;

    /// Every PV name with a type info, sorted.
    fn all_pv_names(&self) -> Result<Vec<String>, RegistryError>;

    /// PV names with a type info that match `pattern`, sorted, at most `limit`, within a
    /// budget of its own ([`MatchBudget::start`]).
    fn matching_pv_names(
        &self,
        pattern: &NamePattern,
        limit: Limit,
    ) -> Result<Vec<String>, RegistryError> {
        self.matching_pv_names_within(pattern, limit, MatchBudget::start())
    }

    /// [`Registry::matching_pv_names`] within `budget` (one request's, shared by its
    /// patterns); [`RegistryError::PatternTooCostly`] once it is spent.
    fn matching_pv_names_within(
        &self,
        pattern: &NamePattern,
        limit: Limit,
        budget: MatchBudget,
    ) -> Result<Vec<String>, RegistryError>;

    /// Names of the paused PVs, sorted.
    fn paused_pv_names(&self) -> Result<Vec<String>, RegistryError>;

    /// Every type info, sorted by name (for export and reports).
    fn all_type_infos(&self) -> Result<Vec<PvTypeInfo>, RegistryError>;

    /// The type infos whose `applianceIdentity` is `identity`, sorted by name: what one
    /// appliance of a cluster archives.
    fn type_infos_for_appliance(&self, identity: &str) -> Result<Vec<PvTypeInfo>, RegistryError>;

    /// Makes `alias` stand for `real` (replacing an earlier target of `alias`). Refused
    /// when `alias` has a type info, when `alias == real`, and when aliases would chain
    /// (`real` is an alias, or some alias points to `alias`). `real` need not have a
    /// type info yet: the archive workflow adds the alias before the type info.
    fn add_alias(&self, alias: &str, real: &str) -> Result<(), RegistryError>;

    /// Removes `alias`; true if it existed.
    fn remove_alias(&self, alias: &str) -> Result<bool, RegistryError>;

    /// The real name `alias` stands for, `None` if it is not an alias.
    fn resolve_alias(&self, alias: &str) -> Result<Option<String>, RegistryError>;

    /// Every alias, sorted by alias.
    fn all_aliases(&self) -> Result<Vec<Alias>, RegistryError>;

    /// The aliases of the real name `real`, sorted.
    fn aliases_of(&self, real: &str) -> Result<Vec<String>, RegistryError>;

    /// Aliases that match `pattern`, sorted, at most `limit`, within a budget of its own.
    fn matching_aliases(
        &self,
        pattern: &NamePattern,
        limit: Limit,
    ) -> Result<Vec<String>, RegistryError> {
        self.matching_aliases_within(pattern, limit, MatchBudget::start())
    }

    /// [`Registry::matching_aliases`] within `budget`.
    fn matching_aliases_within(
        &self,
        pattern: &NamePattern,
        limit: Limit,
        budget: MatchBudget,
    ) -> Result<Vec<String>, RegistryError>;

    /// Records (or replaces) a pending archive request.
    fn add_archive_request(&self, request: &ArchiveRequest) -> Result<(), RegistryError>;

    /// Records (or replaces) many pending requests, all or nothing where the backend
    /// has transactions (the default records them one by one).
    fn add_archive_requests(&self, requests: &[ArchiveRequest]) -> Result<(), RegistryError> {
        requests
            .iter()
            .try_for_each(|r| self.add_archive_request(r))
    }

    /// Removes the pending request for `pv`; true if there was one.
    fn remove_archive_request(&self, pv: &str) -> Result<bool, RegistryError>;

    /// The pending request for `pv`.
    fn get_archive_request(&self, pv: &str) -> Result<Option<ArchiveRequest>, RegistryError>;

    /// Every pending request, sorted by PV name.
    fn archive_requests(&self) -> Result<Vec<ArchiveRequest>, RegistryError>;

    /// When each pending request was recorded (its row's `last_modified`, as Java's
    /// `ArchivePVRequests` table keeps it), by PV name: the request time a restart must
    /// not reset (`getNeverConnectedPVs`). The default knows none.
    fn archive_request_times(
        &self,
    ) -> Result<std::collections::HashMap<String, archiver_pb::Timestamp>, RegistryError> {
        Ok(std::collections::HashMap::new())
    }

    /// The creation and modification times and the paused flag of every type info,
    /// sorted by name. The default decodes every type info; a backend can read the three
    /// keys alone.
    fn all_pv_times(&self) -> Result<Vec<PvTimes>, RegistryError> {
        Ok(self
            .all_type_infos()?
            .into_iter()
            .map(|i| PvTimes {
                pv_name: i.pv_name,
                creation_time: i.creation_time,
                modification_time: i.modification_time,
                paused: i.paused,
            })
            .collect())
    }

    /// The named flag `name` (Java `getNamedFlag`): false when it was never set.
    fn get_named_flag(&self, name: &str) -> Result<bool, RegistryError>;

    /// Sets the named flag `name` to `value` (Java `setNamedFlag`).
    fn set_named_flag(&self, name: &str, value: bool) -> Result<(), RegistryError>;

    /// Every named flag ever set and its value, sorted by name (Java `getAllNamedFlags`).
    fn all_named_flags(&self) -> Result<Vec<(String, bool)>, RegistryError>;

    /// How many PVs, paused PVs, aliases and pending requests the catalogue holds.
    fn counts(&self) -> Result<RegistryCounts, RegistryError>;

    /// Java `getAllPVs`: matching PV names (sorted), then matching aliases (sorted),
    /// at most `limit` in all, within a budget of its own.
    fn get_all_pvs(
        &self,
        pattern: &NamePattern,
        limit: Limit,
    ) -> Result<Vec<String>, RegistryError> {
        self.get_all_pvs_within(pattern, limit, MatchBudget::start())
    }

    /// [`Registry::get_all_pvs`] within `budget` (one request's, shared by its patterns).
    fn get_all_pvs_within(
        &self,
        pattern: &NamePattern,
        limit: Limit,
        budget: MatchBudget,
    ) -> Result<Vec<String>, RegistryError> {
        let mut names = self.matching_pv_names_within(pattern, limit, budget)?;
        if !limit.reached(names.len()) {
            let left = limit.minus(names.len());
            names.extend(self.matching_aliases_within(pattern, left, budget)?);
        }
        Ok(names)
    }

    /// The real name for `name`: what it aliases, or `name` itself.
    fn resolve_name(&self, name: &str) -> Result<String, RegistryError> {
        Ok(self
            .resolve_alias(name)?
            .unwrap_or_else(|| name.to_string()))
    }

    /// The type info for `name` or, if `name` is an alias, for its real name.
    fn get_type_info_for_name(&self, name: &str) -> Result<Option<PvTypeInfo>, RegistryError> {
        if let Some(info) = self.get_type_info(name)? {
            return Ok(Some(info));
        }
        match self.resolve_alias(name)? {
            Some(real) => self.get_type_info(&real),
            None => Ok(None),
        }
    }
}
