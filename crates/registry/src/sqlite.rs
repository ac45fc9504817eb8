//! [`SqliteRegistry`]: the catalogue in an embedded SQLite file, the default backend.
//!
//! * File `<data dir>/registry.sqlite` ([`SqliteRegistry::open_in_dir`]), any path
//!   ([`SqliteRegistry::open`]) or memory for tests ([`SqliteRegistry::open_in_memory`]).
//! * WAL journal (readers do not block the writer; a crash loses no committed write),
//!   a busy timeout of [`BUSY_TIMEOUT`] so that several handles or processes on one file
//!   wait for each other instead of failing, numbered migrations ([`crate::migrations`]).
//! * Thread safety: one connection behind a `Mutex`. Calls from many threads are
//!   serialised; each call is short (one indexed statement or one small transaction),
//!   and the catalogue is not on the sample hot path. A panic while the lock is held
//!   cannot leave a half-done write (the transaction rolls back on drop), so a
//!   poisoned lock is simply taken over.
//! * No cache: every call reads the file, so two handles (or two processes) on one
//!   file see each other's writes, as a shared database server would.
//! * Type infos are stored as the Java JSON text (`typeInfoJSON`); a row whose JSON does
//!   not read gives [`RegistryError::CorruptTypeInfo`] naming the PV, never a panic.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};
use serde_json::Value;

use crate::error::RegistryError;
use crate::migrations::{self, SQL_NOW};
use crate::pattern::{Limit, MatchBudget, NamePattern};
use crate::pvtypeinfo::PvTypeInfo;
use crate::registry::{Alias, ArchiveRequest, PvTimes, Registry, RegistryCounts};

/// The file name of the catalogue inside the data folder.
pub const REGISTRY_FILE_NAME: &str = "registry.sqlite";

/// How long a call waits for another writer on the same file before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many names a pattern listing reads per lock of the connection.
const MATCH_BATCH: u32 = 4096;

/// The SQLite catalogue. See the module documentation.
#[derive(Debug)]
pub struct SqliteRegistry {
    conn: Mutex<Connection>,
    path: Option<PathBuf>,
}

impl SqliteRegistry {
    /// Opens or creates `<dir>/registry.sqlite`, creating `dir` if needed.
    pub fn open_in_dir(dir: &Path) -> Result<Self, RegistryError> {
        std::fs::create_dir_all(dir).map_err(|source| RegistryError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Self::open(&dir.join(REGISTRY_FILE_NAME))
    }

    /// Opens or creates the catalogue file at `path` and brings its schema up to date.
    ///
    /// # Errors
    ///
    /// Each names `path`, and none changes a byte of an existing file that is not a
    /// catalogue: [`RegistryError::Corrupt`] (garbage, a truncated copy),
    /// [`RegistryError::ForeignSchema`] (another program's database, or the archiver's
    /// tables without their columns), [`RegistryError::SchemaTooNew`],
    /// [`RegistryError::Locked`] (another process held the file for [`BUSY_TIMEOUT`]),
    /// else [`RegistryError::Backend`] (e.g. a read-only file).
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        Self::open_waiting(path, BUSY_TIMEOUT)
    }

    /// [`SqliteRegistry::open`] with another busy timeout (tests of a locked file).
    pub fn open_waiting(path: &Path, busy_timeout: Duration) -> Result<Self, RegistryError> {
        Self::open_checked(path, busy_timeout)
            .map_err(|e| classify_open_error(path, busy_timeout, e))
    }

    fn open_checked(path: &Path, busy_timeout: Duration) -> Result<Self, RegistryError> {
        let op = "open";
        let db = |e: rusqlite::Error| RegistryError::backend(op, None, e);
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(busy_timeout).map_err(db)?;
        // The first read of the file, before anything writes to it (the journal mode
        // below rewrites the header): garbage and foreign databases stop here untouched.
        if let Some(detail) = migrations::foreign_schema(&conn)? {
            return Err(RegistryError::ForeignSchema {
                path: path.to_path_buf(),
                detail,
            });
        }
        let found = migrations::version_of(&conn)?;
        if found > migrations::SCHEMA_VERSION {
            return Err(RegistryError::SchemaTooNew {
                path: path.to_path_buf(),
                found,
                supported: migrations::SCHEMA_VERSION,
            });
        }
        // A page cache of 512 KiB instead of SQLite's 2 MiB: the catalogue is read whole at
        // start and then written a row at a time, which a larger cache does not speed up,
        // and the archiver's resident memory is one of its targets.
        conn.pragma_update(None, "cache_size", -512).map_err(db)?;
        // Returns the mode in force; a file system without shared memory keeps the
        // rollback journal, which is slower but just as safe.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db)?;
        if mode.eq_ignore_ascii_case("wal") {
            // In WAL mode NORMAL never corrupts the file; a power cut may undo the last
            // commits, a process crash loses nothing. It saves an fsync per commit, which
            // bulk archive requests would otherwise pay per PV.
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(db)?;
        }
        Self::finish_open(conn, Some(path.to_path_buf()))
    }

    /// A private catalogue in memory, for tests.
    pub fn open_in_memory() -> Result<Self, RegistryError> {
        let conn = Connection::open_in_memory()
            .map_err(|e| RegistryError::backend("open_in_memory", None, e))?;
        Self::finish_open(conn, None)
    }

    fn finish_open(mut conn: Connection, path: Option<PathBuf>) -> Result<Self, RegistryError> {
        migrations::migrate(&mut conn)?;
        if let Err(detail) = migrations::check_tables(&conn) {
            return Err(RegistryError::ForeignSchema {
                path: migrations::db_path(&conn),
                detail,
            });
        }
        Ok(SqliteRegistry {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The file, `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, RegistryError> {
        migrations::version_of(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Names from `sql` (one text column, sorted) that match `pattern`, at most `limit`.
    /// `sql` takes a name as `?1` and a row count as `?2` and must return at most `?2`
    /// names `>= ?1` in order. The scan starts at the pattern's literal prefix, stops
    /// after it, and reads [`MATCH_BATCH`] names at a time, matching them with the
    /// connection unlocked: a slow pattern holds up no other catalogue call, and gives up
    /// once `budget` is spent ([`RegistryError::PatternTooCostly`]).
    fn matching_names(
        &self,
        op: &'static str,
        sql: &str,
        pattern: &NamePattern,
        limit: Limit,
        budget: MatchBudget,
    ) -> Result<Vec<String>, RegistryError> {
        let matcher = pattern.compile_within(budget)?;
        let prefix = matcher.literal_prefix();
        let mut scan = matcher.scan();
        let mut out = Vec::new();
        if limit.reached(0) {
            return Ok(out);
        }
        let db = |e: rusqlite::Error| RegistryError::backend(op, None, e);
        let mut from = prefix.to_string();
        let mut resumed = false;
        loop {
            let batch: Vec<String> = {
                let conn = self.lock();
                let mut stmt = conn.prepare_cached(sql).map_err(db)?;
                let rows = stmt
                    .query_map(params![from, MATCH_BATCH], |r| r.get(0))
                    .map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)?
            };
            let full = batch.len() == MATCH_BATCH as usize;
            // A batch after the first starts again at the last name of the one before.
            let skip = usize::from(resumed && batch.first() == Some(&from));
            for name in &batch[skip..] {
                if !name.starts_with(prefix) {
                    return Ok(out);
                }
                if scan.is_match(name)? {
                    out.push(name.clone());
                    if limit.reached(out.len()) {
                        return Ok(out);
                    }
                }
            }
            match batch.last() {
                Some(last) if full => {
                    from = last.clone();
                    resumed = true;
                }
                _ => return Ok(out),
            }
        }
    }

    fn string_list(
        &self,
        op: &'static str,
        sql: &str,
        arg: Option<&str>,
    ) -> Result<Vec<String>, RegistryError> {
        let db = |e: rusqlite::Error| RegistryError::backend(op, arg, e);
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(sql).map_err(db)?;
        let rows = stmt
            .query_map(params_from_iter(arg), |r| r.get(0))
            .map_err(db)?;
        rows.collect::<Result<Vec<String>, _>>().map_err(db)
    }

    fn type_info_list(
        &self,
        op: &'static str,
        sql: &str,
        arg: Option<&str>,
    ) -> Result<Vec<PvTypeInfo>, RegistryError> {
        let db = |e: rusqlite::Error| RegistryError::backend(op, arg, e);
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(sql).map_err(db)?;
        let rows = stmt
            .query_map(params_from_iter(arg), |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (pv, json): (String, String) = row.map_err(db)?;
            out.push(decode_type_info(pv, &json)?);
        }
        Ok(out)
    }
}

/// Reads a stored row; the JSON must name the same PV as the row.
fn decode_type_info(pv: String, json: &str) -> Result<PvTypeInfo, RegistryError> {
    match PvTypeInfo::from_json_str(json) {
        Ok(info) if info.pv_name == pv => Ok(info),
        Ok(info) => Err(RegistryError::CorruptTypeInfo {
            source: crate::error::TypeInfoError::InvalidValue {
                key: "pvName",
                value: Value::String(info.pv_name).to_string(),
                expected: "the row's PV name",
            },
            pv,
        }),
        Err(source) => Err(RegistryError::CorruptTypeInfo { pv, source }),
    }
}

fn check_name(op: &'static str, name: &str) -> Result<(), RegistryError> {
    if name.is_empty() {
        Err(RegistryError::EmptyName { op })
    } else {
        Ok(())
    }
}

/// Inserts or replaces one type info inside an open transaction.
fn put_in_tx(tx: &rusqlite::Transaction<'_>, info: &PvTypeInfo) -> Result<(), RegistryError> {
    const OP: &str = "put_type_info";
    let pv = info.pv_name.as_str();
    check_name(OP, pv)?;
    let db = |e: rusqlite::Error| RegistryError::backend(OP, Some(pv), e);
    let real: Option<String> = tx
        .prepare_cached("SELECT realName FROM PVAliases WHERE pvName = ?1")
        .and_then(|mut s| s.query_row([pv], |r| r.get(0)).optional())
        .map_err(db)?;
    if let Some(real) = real {
        return Err(RegistryError::TypeInfoForAlias {
            pv: pv.to_string(),
            real,
        });
    }
    let sql = format!(
        "INSERT INTO PVTypeInfo (pvName, typeInfoJSON, last_modified, paused, applianceIdentity,
                                 creationTime, modificationTime)
         VALUES (?1, ?2, {SQL_NOW}, ?3, ?4, ?5, ?6)
         ON CONFLICT(pvName) DO UPDATE SET
            typeInfoJSON = excluded.typeInfoJSON,
            last_modified = excluded.last_modified,
            paused = excluded.paused,
            applianceIdentity = excluded.applianceIdentity,
            creationTime = excluded.creationTime,
            modificationTime = excluded.modificationTime"
    );
    tx.prepare_cached(&sql)
        .and_then(|mut s| {
            s.execute(params![
                pv,
                info.to_json_string(),
                info.paused,
                info.appliance_identity,
                info.creation_time.map(crate::instant::format_iso_millis),
                info.modification_time
                    .map(crate::instant::format_iso_millis),
            ])
        })
        .map_err(db)?;
    Ok(())
}

impl Registry for SqliteRegistry {
    fn get_type_info(&self, pv: &str) -> Result<Option<PvTypeInfo>, RegistryError> {
        let db = |e: rusqlite::Error| RegistryError::backend("get_type_info", Some(pv), e);
        let json: Option<String> = {
            let conn = self.lock();
            conn.prepare_cached("SELECT typeInfoJSON FROM PVTypeInfo WHERE pvName = ?1")
                .and_then(|mut s| s.query_row([pv], |r| r.get(0)).optional())
                .map_err(db)?
        };
        json.map(|j| decode_type_info(pv.to_string(), &j))
            .transpose()
    }

    fn put_type_info(&self, info: &PvTypeInfo) -> Result<(), RegistryError> {
        self.put_type_infos(std::slice::from_ref(info))
    }

    fn put_type_infos(&self, infos: &[PvTypeInfo]) -> Result<(), RegistryError> {
        let op = if infos.len() == 1 {
            "put_type_info"
        } else {
            "put_type_infos"
        };
        // Row-level failures name their own PV; a batch-level one names none.
        let pv = match infos {
            [one] => Some(one.pv_name.as_str()),
            _ => None,
        };
        let db = |e: rusqlite::Error| RegistryError::backend(op, pv, e);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        for info in infos {
            put_in_tx(&tx, info)?;
        }
        tx.commit().map_err(db)
    }

    fn delete_type_info(&self, pv: &str) -> Result<bool, RegistryError> {
        let conn = self.lock();
        let n = conn
            .execute("DELETE FROM PVTypeInfo WHERE pvName = ?1", [pv])
            .map_err(|e| RegistryError::backend("delete_type_info", Some(pv), e))?;
        Ok(n > 0)
    }

    fn all_pv_names(&self) -> Result<Vec<String>, RegistryError> {
        self.string_list(
            "all_pv_names",
            "SELECT pvName FROM PVTypeInfo ORDER BY pvName",
            None,
        )
    }

    fn matching_pv_names_within(
        &self,
        pattern: &NamePattern,
        limit: Limit,
        budget: MatchBudget,
    ) -> Result<Vec<String>, RegistryError> {
        self.matching_names(
            "matching_pv_names",
            "SELECT pvName FROM PVTypeInfo WHERE pvName >= ?1 ORDER BY pvName LIMIT ?2",
            pattern,
            limit,
            budget,
        )
    }

    fn paused_pv_names(&self) -> Result<Vec<String>, RegistryError> {
        self.string_list(
            "paused_pv_names",
            "SELECT pvName FROM PVTypeInfo WHERE paused = 1 ORDER BY pvName",
            None,
        )
    }

    fn all_type_infos(&self) -> Result<Vec<PvTypeInfo>, RegistryError> {
        self.type_info_list(
            "all_type_infos",
            "SELECT pvName, typeInfoJSON FROM PVTypeInfo ORDER BY pvName",
            None,
        )
    }

    fn type_infos_for_appliance(&self, identity: &str) -> Result<Vec<PvTypeInfo>, RegistryError> {
        self.type_info_list(
            "type_infos_for_appliance",
            "SELECT pvName, typeInfoJSON FROM PVTypeInfo WHERE applianceIdentity = ?1 \
             ORDER BY pvName",
            Some(identity),
        )
    }

    fn add_alias(&self, alias: &str, real: &str) -> Result<(), RegistryError> {
        const OP: &str = "add_alias";
        check_name(OP, alias)?;
        check_name(OP, real)?;
        if alias == real {
            return Err(RegistryError::SelfAlias {
                name: alias.to_string(),
            });
        }
        let db = |e: rusqlite::Error| RegistryError::backend(OP, Some(alias), e);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let has_type_info: Option<i64> = tx
            .query_row("SELECT 1 FROM PVTypeInfo WHERE pvName = ?1", [alias], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        if has_type_info.is_some() {
            return Err(RegistryError::AliasHasTypeInfo {
                alias: alias.to_string(),
                real: real.to_string(),
            });
        }
        let real_of_real: Option<String> = tx
            .query_row(
                "SELECT realName FROM PVAliases WHERE pvName = ?1",
                [real],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        if let Some(real_of_real) = real_of_real {
            return Err(RegistryError::AliasOfAlias {
                alias: alias.to_string(),
                real: real.to_string(),
                real_of_real,
            });
        }
        let aliased_by: Option<String> = tx
            .query_row(
                "SELECT pvName FROM PVAliases WHERE realName = ?1 ORDER BY pvName LIMIT 1",
                [alias],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        if let Some(aliased_by) = aliased_by {
            return Err(RegistryError::AliasIsTarget {
                alias: alias.to_string(),
                real: real.to_string(),
                aliased_by,
            });
        }
        tx.execute(
            &format!(
                "INSERT INTO PVAliases (pvName, realName, last_modified) VALUES (?1, ?2, {SQL_NOW})
                 ON CONFLICT(pvName) DO UPDATE SET
                    realName = excluded.realName, last_modified = excluded.last_modified"
            ),
            [alias, real],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn remove_alias(&self, alias: &str) -> Result<bool, RegistryError> {
        let conn = self.lock();
        let n = conn
            .execute("DELETE FROM PVAliases WHERE pvName = ?1", [alias])
            .map_err(|e| RegistryError::backend("remove_alias", Some(alias), e))?;
        Ok(n > 0)
    }

    fn resolve_alias(&self, alias: &str) -> Result<Option<String>, RegistryError> {
        let conn = self.lock();
        conn.prepare_cached("SELECT realName FROM PVAliases WHERE pvName = ?1")
            .and_then(|mut s| s.query_row([alias], |r| r.get(0)).optional())
            .map_err(|e| RegistryError::backend("resolve_alias", Some(alias), e))
    }

    fn all_aliases(&self) -> Result<Vec<Alias>, RegistryError> {
        let db = |e: rusqlite::Error| RegistryError::backend("all_aliases", None, e);
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT pvName, realName FROM PVAliases ORDER BY pvName")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Alias {
                    alias: r.get(0)?,
                    real_name: r.get(1)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn aliases_of(&self, real: &str) -> Result<Vec<String>, RegistryError> {
        self.string_list(
            "aliases_of",
            "SELECT pvName FROM PVAliases WHERE realName = ?1 ORDER BY pvName",
            Some(real),
        )
    }

    fn matching_aliases_within(
        &self,
        pattern: &NamePattern,
        limit: Limit,
        budget: MatchBudget,
    ) -> Result<Vec<String>, RegistryError> {
        self.matching_names(
            "matching_aliases",
            "SELECT pvName FROM PVAliases WHERE pvName >= ?1 ORDER BY pvName LIMIT ?2",
            pattern,
            limit,
            budget,
        )
    }

    fn add_archive_request(&self, request: &ArchiveRequest) -> Result<(), RegistryError> {
        const OP: &str = "add_archive_request";
        let pv = request.pv_name.as_str();
        check_name(OP, pv)?;
        let conn = self.lock();
        conn.execute(
            &format!(
                "INSERT INTO ArchivePVRequests (pvName, userParams, last_modified)
                 VALUES (?1, ?2, {SQL_NOW})
                 ON CONFLICT(pvName) DO UPDATE SET
                    userParams = excluded.userParams, last_modified = excluded.last_modified"
            ),
            [pv, &request.user_params.to_string()],
        )
        .map_err(|e| RegistryError::backend(OP, Some(pv), e))?;
        Ok(())
    }

    fn add_archive_requests(&self, requests: &[ArchiveRequest]) -> Result<(), RegistryError> {
        const OP: &str = "add_archive_requests";
        for r in requests {
            check_name(OP, &r.pv_name)?;
        }
        let db = |e: rusqlite::Error| RegistryError::backend(OP, None, e);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        {
            let mut stmt = tx
                .prepare(&format!(
                    "INSERT INTO ArchivePVRequests (pvName, userParams, last_modified)
                     VALUES (?1, ?2, {SQL_NOW})
                     ON CONFLICT(pvName) DO UPDATE SET
                        userParams = excluded.userParams, last_modified = excluded.last_modified"
                ))
                .map_err(db)?;
            for r in requests {
                stmt.execute([r.pv_name.as_str(), &r.user_params.to_string()])
                    .map_err(|e| RegistryError::backend(OP, Some(&r.pv_name), e))?;
            }
        }
        tx.commit().map_err(db)
    }

    fn remove_archive_request(&self, pv: &str) -> Result<bool, RegistryError> {
        let conn = self.lock();
        let n = conn
            .execute("DELETE FROM ArchivePVRequests WHERE pvName = ?1", [pv])
            .map_err(|e| RegistryError::backend("remove_archive_request", Some(pv), e))?;
        Ok(n > 0)
    }

    fn get_archive_request(&self, pv: &str) -> Result<Option<ArchiveRequest>, RegistryError> {
        let params: Option<String> = {
            let conn = self.lock();
            conn.prepare_cached("SELECT userParams FROM ArchivePVRequests WHERE pvName = ?1")
                .and_then(|mut s| s.query_row([pv], |r| r.get(0)).optional())
                .map_err(|e| RegistryError::backend("get_archive_request", Some(pv), e))?
        };
        params
            .map(|p| decode_request(pv.to_string(), &p))
            .transpose()
    }

    fn archive_requests(&self) -> Result<Vec<ArchiveRequest>, RegistryError> {
        let db = |e: rusqlite::Error| RegistryError::backend("archive_requests", None, e);
        let rows: Vec<(String, String)> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached("SELECT pvName, userParams FROM ArchivePVRequests ORDER BY pvName")
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)?
        };
        rows.into_iter()
            .map(|(pv, params)| decode_request(pv, &params))
            .collect()
    }

    fn archive_request_times(
        &self,
    ) -> Result<std::collections::HashMap<String, archiver_pb::Timestamp>, RegistryError> {
        let db = |e: rusqlite::Error| RegistryError::backend("archive_request_times", None, e);
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT pvName, last_modified FROM ArchivePVRequests")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(db)?;
        let mut out = std::collections::HashMap::new();
        for row in rows {
            let (pv, at) = row.map_err(db)?;
            // a time that does not parse (edited by hand) is not known: the restart's
            if let Some(t) = crate::instant::parse_iso(&at) {
                out.insert(pv, t);
            }
        }
        Ok(out)
    }

    fn all_pv_times(&self) -> Result<Vec<PvTimes>, RegistryError> {
        let db = |e: rusqlite::Error| RegistryError::backend("all_pv_times", None, e);
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT pvName, creationTime, modificationTime, paused
                 FROM PVTypeInfo ORDER BY pvName",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                let time = |i: usize| -> rusqlite::Result<Option<archiver_pb::Timestamp>> {
                    Ok(r.get::<_, Option<String>>(i)?
                        .as_deref()
                        .and_then(crate::instant::parse_iso))
                };
                Ok(PvTimes {
                    pv_name: r.get(0)?,
                    creation_time: time(1)?,
                    modification_time: time(2)?,
                    paused: r.get::<_, i64>(3)? != 0,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn get_named_flag(&self, name: &str) -> Result<bool, RegistryError> {
        let conn = self.lock();
        let v: Option<i64> = conn
            .prepare_cached("SELECT value FROM NamedFlags WHERE name = ?1")
            .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
            .map_err(|e| RegistryError::backend("get_named_flag", Some(name), e))?;
        Ok(v.is_some_and(|v| v != 0))
    }

    fn set_named_flag(&self, name: &str, value: bool) -> Result<(), RegistryError> {
        let conn = self.lock();
        conn.execute(
            &format!(
                "INSERT INTO NamedFlags (name, value, last_modified) VALUES (?1, ?2, {SQL_NOW}) \
                 ON CONFLICT(name) DO UPDATE SET value = ?2, last_modified = {SQL_NOW}"
            ),
            (name, i64::from(value)),
        )
        .map_err(|e| RegistryError::backend("set_named_flag", Some(name), e))?;
        Ok(())
    }

    fn all_named_flags(&self) -> Result<Vec<(String, bool)>, RegistryError> {
        let db = |e: rusqlite::Error| RegistryError::backend("all_named_flags", None, e);
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT name, value FROM NamedFlags ORDER BY name")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0))
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn counts(&self) -> Result<RegistryCounts, RegistryError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT (SELECT COUNT(*) FROM PVTypeInfo),
                    (SELECT COUNT(*) FROM PVTypeInfo WHERE paused = 1),
                    (SELECT COUNT(*) FROM PVAliases),
                    (SELECT COUNT(*) FROM ArchivePVRequests)",
            [],
            |r| {
                let count = |i: usize| -> rusqlite::Result<u64> {
                    Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or_default())
                };
                Ok(RegistryCounts {
                    pvs: count(0)?,
                    paused: count(1)?,
                    aliases: count(2)?,
                    archive_requests: count(3)?,
                })
            },
        )
        .map_err(|e| RegistryError::backend("counts", None, e))
    }
}

fn decode_request(pv: String, params: &str) -> Result<ArchiveRequest, RegistryError> {
    match serde_json::from_str(params) {
        Ok(user_params) => Ok(ArchiveRequest {
            pv_name: pv,
            user_params,
        }),
        Err(source) => Err(RegistryError::CorruptArchiveRequest { pv, source }),
    }
}

/// An error of [`SqliteRegistry::open`] in the operator's terms: SQLite's "not a
/// database" and "malformed" become [`RegistryError::Corrupt`], "busy" and "locked"
/// [`RegistryError::Locked`], each naming the file; anything else is kept.
fn classify_open_error(path: &Path, waited: Duration, e: RegistryError) -> RegistryError {
    use rusqlite::ErrorCode;
    let code = match &e {
        RegistryError::Backend { source, .. } | RegistryError::Migration { source, .. } => source
            .downcast_ref::<rusqlite::Error>()
            .and_then(|s| s.sqlite_error_code().map(|c| (c, s.to_string()))),
        _ => None,
    };
    match code {
        Some((ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt, detail)) => {
            RegistryError::Corrupt {
                path: path.to_path_buf(),
                detail,
            }
        }
        Some((ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked, _)) => RegistryError::Locked {
            path: path.to_path_buf(),
            waited,
        },
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use archiver_pb::{PayloadType, Timestamp};
    use serde_json::json;

    use super::*;
    use crate::pvtypeinfo::SamplingMethod;

    const PROTOTYPE: &str = include_str!("../tests/data/PVTypeInfoPrototype.json");

    fn info(pv: &str) -> PvTypeInfo {
        PvTypeInfo::new_for_archiving(
            pv,
            PayloadType::ScalarDouble,
            1,
            SamplingMethod::Monitor,
            1.0,
            vec!["pb://localhost?name=STS&rootFolder=/sts".into()],
            Timestamp::new(1_700_000_000, 5_000_000),
        )
        .unwrap()
    }

    fn mem() -> SqliteRegistry {
        SqliteRegistry::open_in_memory().unwrap()
    }

    fn put_all(r: &dyn Registry, names: &[&str]) {
        for n in names {
            r.put_type_info(&info(n)).unwrap();
        }
    }

    #[test]
    fn put_then_get_returns_an_equal_type_info() {
        let r = mem();
        assert_eq!(r.get_type_info("A:B").unwrap(), None);
        let mut a = info("A:B");
        a.set_units("mA");
        r.put_type_info(&a).unwrap();
        let got = r.get_type_info("A:B").unwrap().unwrap();
        assert_eq!(got, a);
        assert!(got.limits.upper_alarm.is_nan());
        assert_eq!(r.get_type_info("A:b").unwrap(), None, "names are exact");
    }

    #[test]
    fn prototype_vector_is_stored_verbatim() {
        let r = mem();
        let proto = PvTypeInfo::from_json_str(PROTOTYPE).unwrap();
        r.put_type_info(&proto).unwrap();
        let got = r.get_type_info(&proto.pv_name).unwrap().unwrap();
        assert_eq!(got, proto);
        let original: Value = serde_json::from_str(PROTOTYPE).unwrap();
        assert_eq!(got.to_json_value(), original);
        let stored: String = r
            .lock()
            .query_row(
                "SELECT typeInfoJSON FROM PVTypeInfo WHERE pvName = ?1",
                [&proto.pv_name],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(serde_json::from_str::<Value>(&stored).unwrap(), original);
    }

    #[test]
    fn put_replaces_and_delete_reports_existence() {
        let r = mem();
        let mut a = info("A:B");
        r.put_type_info(&a).unwrap();
        a.paused = true;
        a.sampling_period = 5.0;
        r.put_type_info(&a).unwrap();
        let got = r.get_type_info("A:B").unwrap().unwrap();
        assert!(got.paused);
        assert_eq!(got.sampling_period, 5.0);
        assert_eq!(r.counts().unwrap().pvs, 1);
        assert!(r.delete_type_info("A:B").unwrap());
        assert!(!r.delete_type_info("A:B").unwrap());
        assert_eq!(r.get_type_info("A:B").unwrap(), None);
    }

    #[test]
    fn empty_names_are_refused() {
        let r = mem();
        let mut a = info("A:B");
        a.pv_name.clear();
        assert!(matches!(
            r.put_type_info(&a),
            Err(RegistryError::EmptyName {
                op: "put_type_info"
            })
        ));
        assert!(matches!(
            r.add_alias("", "A:B"),
            Err(RegistryError::EmptyName { .. })
        ));
        let req = ArchiveRequest {
            pv_name: String::new(),
            user_params: json!({}),
        };
        assert!(matches!(
            r.add_archive_request(&req),
            Err(RegistryError::EmptyName { .. })
        ));
    }

    #[test]
    fn names_are_listed_sorted_and_matched_by_glob_or_regex_with_a_limit() {
        let r = mem();
        put_all(
            &r,
            &[
                "KLYS:2:I", "KLYS:1:I", "BPM:1:X", "KLYS:1:V", "W[0]:A", "W0:A", "A-B",
            ],
        );
        assert_eq!(
            r.all_pv_names().unwrap(),
            [
                "A-B", "BPM:1:X", "KLYS:1:I", "KLYS:1:V", "KLYS:2:I", "W0:A", "W[0]:A"
            ]
        );
        let glob = |g: &str, limit| {
            r.matching_pv_names(&NamePattern::Glob(g.into()), limit)
                .unwrap()
        };
        assert_eq!(
            glob("KLYS*", Limit::All),
            ["KLYS:1:I", "KLYS:1:V", "KLYS:2:I"]
        );
        assert_eq!(glob("KLYS:?:I", Limit::All), ["KLYS:1:I", "KLYS:2:I"]);
        assert_eq!(glob("*:I", Limit::All), ["KLYS:1:I", "KLYS:2:I"]);
        assert_eq!(glob("KLYS*", Limit::AtMost(2)), ["KLYS:1:I", "KLYS:1:V"]);
        assert_eq!(glob("KLYS*", Limit::AtMost(0)), Vec::<String>::new());
        assert_eq!(
            glob("W[0]*", Limit::All),
            ["W[0]:A"],
            "brackets are literal"
        );
        assert_eq!(glob("KLYS", Limit::All), Vec::<String>::new());
        assert_eq!(glob("BPM:1:X", Limit::All), ["BPM:1:X"]);
        let re = |p: &str| {
            r.matching_pv_names(&NamePattern::Regex(p.into()), Limit::All)
                .unwrap()
        };
        assert_eq!(re("KLYS:[12]:I"), ["KLYS:1:I", "KLYS:2:I"]);
        assert_eq!(
            re("KLYS"),
            Vec::<String>::new(),
            "regex matches whole names"
        );
        assert_eq!(re(".*:X|A-B"), ["A-B", "BPM:1:X"]);
        assert_eq!(
            r.matching_pv_names(&NamePattern::All, Limit::AtMost(3))
                .unwrap(),
            ["A-B", "BPM:1:X", "KLYS:1:I"]
        );
        assert!(matches!(
            r.matching_pv_names(&NamePattern::Regex("(".into()), Limit::All),
            Err(RegistryError::InvalidPattern { .. })
        ));
    }

    #[test]
    fn a_pattern_listing_read_in_batches_loses_and_repeats_no_name() {
        let r = mem();
        // Three full batches and a bit, between names the patterns must not list.
        let many = 3 * MATCH_BATCH as usize + 5;
        let mut infos: Vec<PvTypeInfo> = (0..many).map(|i| info(&format!("B:{i:05}"))).collect();
        infos.extend(["A:1", "C:1"].map(info));
        r.put_type_infos(&infos).unwrap();
        let b_names: Vec<String> = (0..many).map(|i| format!("B:{i:05}")).collect();
        let list = |p: NamePattern, l| r.matching_pv_names(&p, l).unwrap();
        assert_eq!(list(NamePattern::Glob("B:*".into()), Limit::All), b_names);
        assert_eq!(
            list(NamePattern::Regex("B:.*7".into()), Limit::All),
            b_names
                .iter()
                .filter(|n| n.ends_with('7'))
                .cloned()
                .collect::<Vec<_>>()
        );
        let all = list(NamePattern::All, Limit::All);
        assert_eq!(all.len(), many + 2);
        assert_eq!((all[0].as_str(), all[many + 1].as_str()), ("A:1", "C:1"));
        assert_eq!(
            list(NamePattern::Glob("B:*".into()), Limit::AtMost(5000)),
            b_names[..5000]
        );
    }

    #[test]
    fn a_listing_gives_up_on_a_pattern_once_its_time_is_spent() {
        let r = mem();
        put_all(&r, &["T:1", "T:2", "T:3"]);
        let spent = || MatchBudget::with_limit(Duration::ZERO);
        let regex = NamePattern::Regex("T:.*".into());
        match r.matching_pv_names_within(&regex, Limit::All, spent()) {
            Err(RegistryError::PatternTooCostly { pattern, reason }) => {
                assert_eq!(pattern, "T:.*");
                assert!(reason.contains("took longer than"), "{reason}");
            }
            other => panic!("expected PatternTooCostly, got {other:?}"),
        }
        let glob = NamePattern::Glob("T:*".into());
        for limit in [Limit::All, Limit::AtMost(1)] {
            assert!(matches!(
                r.get_all_pvs_within(&glob, limit, spent()),
                Err(RegistryError::PatternTooCostly { .. })
            ));
        }
        // Listing every name matches nothing, so it has nothing to give up.
        assert_eq!(
            r.matching_pv_names_within(&NamePattern::All, Limit::All, spent())
                .unwrap(),
            ["T:1", "T:2", "T:3"]
        );
        assert_eq!(r.matching_pv_names(&regex, Limit::All).unwrap().len(), 3);
    }

    #[test]
    fn get_all_pvs_lists_pvs_then_aliases_within_one_limit() {
        let r = mem();
        put_all(&r, &["X:2", "X:1"]);
        r.add_alias("X:OLD", "X:1").unwrap();
        r.add_alias("Y:OLD", "X:2").unwrap();
        let all = |p: NamePattern, l| r.get_all_pvs(&p, l).unwrap();
        assert_eq!(
            all(NamePattern::All, Limit::All),
            ["X:1", "X:2", "X:OLD", "Y:OLD"]
        );
        assert_eq!(
            all(NamePattern::All, Limit::AtMost(3)),
            ["X:1", "X:2", "X:OLD"]
        );
        assert_eq!(all(NamePattern::All, Limit::AtMost(1)), ["X:1"]);
        assert_eq!(
            all(NamePattern::Glob("X:*".into()), Limit::All),
            ["X:1", "X:2", "X:OLD"]
        );
        assert_eq!(
            all(NamePattern::Regex(".*OLD".into()), Limit::default()),
            ["X:OLD", "Y:OLD"]
        );
    }

    #[test]
    fn paused_listing_and_counts_follow_the_stored_flag() {
        let r = mem();
        put_all(&r, &["P:1", "P:2", "P:3"]);
        let mut p = info("P:2");
        p.paused = true;
        r.put_type_info(&p).unwrap();
        assert_eq!(r.paused_pv_names().unwrap(), ["P:2"]);
        r.add_alias("P:ALIAS", "P:1").unwrap();
        r.add_archive_request(&ArchiveRequest {
            pv_name: "Q:1".into(),
            user_params: json!({"samplingperiod": "1.0"}),
        })
        .unwrap();
        assert_eq!(
            r.counts().unwrap(),
            RegistryCounts {
                pvs: 3,
                paused: 1,
                aliases: 1,
                archive_requests: 1
            }
        );
        p.paused = false;
        r.put_type_info(&p).unwrap();
        assert!(r.paused_pv_names().unwrap().is_empty());
        assert_eq!(r.counts().unwrap().paused, 0);
    }

    #[test]
    fn type_infos_are_listed_per_appliance() {
        let r = mem();
        put_all(&r, &["A:1", "A:2"]);
        let mut other = info("B:1");
        other.appliance_identity = Some("appliance1".into());
        r.put_type_info(&other).unwrap();
        let mine: Vec<String> = r
            .type_infos_for_appliance("appliance0")
            .unwrap()
            .into_iter()
            .map(|i| i.pv_name)
            .collect();
        assert_eq!(mine, ["A:1", "A:2"]);
        assert_eq!(r.type_infos_for_appliance("appliance1").unwrap(), [other]);
        assert!(r.type_infos_for_appliance("nobody").unwrap().is_empty());
        assert_eq!(r.all_type_infos().unwrap().len(), 3);
    }

    #[test]
    fn aliases_resolve_list_and_remove() {
        let r = mem();
        put_all(&r, &["REAL:1"]);
        r.add_alias("OLD:1", "REAL:1").unwrap();
        r.add_alias("OLDER:1", "REAL:1").unwrap();
        assert_eq!(r.resolve_alias("OLD:1").unwrap().as_deref(), Some("REAL:1"));
        assert_eq!(r.resolve_alias("REAL:1").unwrap(), None);
        assert_eq!(r.resolve_name("OLD:1").unwrap(), "REAL:1");
        assert_eq!(r.resolve_name("REAL:1").unwrap(), "REAL:1");
        assert_eq!(r.aliases_of("REAL:1").unwrap(), ["OLD:1", "OLDER:1"]);
        assert_eq!(
            r.all_aliases().unwrap(),
            [
                Alias {
                    alias: "OLD:1".into(),
                    real_name: "REAL:1".into()
                },
                Alias {
                    alias: "OLDER:1".into(),
                    real_name: "REAL:1".into()
                },
            ]
        );
        let via_alias = r.get_type_info_for_name("OLD:1").unwrap().unwrap();
        assert_eq!(via_alias.pv_name, "REAL:1");
        assert_eq!(r.get_type_info("OLD:1").unwrap(), None);
        assert_eq!(r.get_type_info_for_name("NOPE").unwrap(), None);
        // Re-pointing an alias replaces its target.
        put_all(&r, &["REAL:2"]);
        r.add_alias("OLD:1", "REAL:2").unwrap();
        assert_eq!(r.resolve_alias("OLD:1").unwrap().as_deref(), Some("REAL:2"));
        assert!(r.remove_alias("OLD:1").unwrap());
        assert!(!r.remove_alias("OLD:1").unwrap());
        assert_eq!(r.resolve_alias("OLD:1").unwrap(), None);
        // An alias may be added before the real PV has a type info.
        r.add_alias("SOON:ALIAS", "SOON:REAL").unwrap();
        assert_eq!(r.get_type_info_for_name("SOON:ALIAS").unwrap(), None);
    }

    #[test]
    fn an_alias_never_has_a_type_info_and_vice_versa() {
        let r = mem();
        put_all(&r, &["REAL", "OTHER"]);
        match r.add_alias("OTHER", "REAL") {
            Err(RegistryError::AliasHasTypeInfo { alias, real }) => {
                assert_eq!((alias.as_str(), real.as_str()), ("OTHER", "REAL"));
            }
            other => panic!("expected AliasHasTypeInfo, got {other:?}"),
        }
        r.add_alias("ALIAS", "REAL").unwrap();
        match r.put_type_info(&info("ALIAS")) {
            Err(RegistryError::TypeInfoForAlias { pv, real }) => {
                assert_eq!((pv.as_str(), real.as_str()), ("ALIAS", "REAL"));
            }
            other => panic!("expected TypeInfoForAlias, got {other:?}"),
        }
        assert_eq!(r.get_type_info("ALIAS").unwrap(), None);
        assert!(matches!(
            r.add_alias("X", "X"),
            Err(RegistryError::SelfAlias { .. })
        ));
        match r.add_alias("X", "ALIAS") {
            Err(RegistryError::AliasOfAlias { real_of_real, .. }) => {
                assert_eq!(real_of_real, "REAL");
            }
            other => panic!("expected AliasOfAlias, got {other:?}"),
        }
        match r.add_alias("REAL", "OTHER") {
            // REAL has a type info: that check comes first.
            Err(RegistryError::AliasHasTypeInfo { .. }) => {}
            other => panic!("expected AliasHasTypeInfo, got {other:?}"),
        }
        r.add_alias("PENDING", "FUTURE").unwrap();
        match r.add_alias("FUTURE", "OTHER") {
            Err(RegistryError::AliasIsTarget { aliased_by, .. }) => {
                assert_eq!(aliased_by, "PENDING");
            }
            other => panic!("expected AliasIsTarget, got {other:?}"),
        }
        assert_eq!(r.counts().unwrap().aliases, 2);
    }

    #[test]
    fn a_batch_put_is_all_or_nothing() {
        let r = mem();
        r.add_alias("ALIAS", "REAL").unwrap();
        let batch = [info("B:1"), info("ALIAS"), info("B:2")];
        assert!(matches!(
            r.put_type_infos(&batch),
            Err(RegistryError::TypeInfoForAlias { .. })
        ));
        assert!(r.all_pv_names().unwrap().is_empty());
        r.put_type_infos(&[info("B:1"), info("B:2")]).unwrap();
        assert_eq!(r.all_pv_names().unwrap(), ["B:1", "B:2"]);
    }

    #[test]
    fn bulk_archive_requests_are_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let r = SqliteRegistry::open(&dir.path().join("r.sqlite")).unwrap();
        let reqs: Vec<ArchiveRequest> = (0..1000)
            .map(|i| ArchiveRequest {
                pv_name: format!("BULK:{i}"),
                user_params: json!({"samplingperiod": "1.0"}),
            })
            .collect();
        r.add_archive_requests(&reqs).unwrap();
        assert_eq!(r.archive_requests().unwrap().len(), 1000);
        // One bad name refuses the whole batch.
        let mut bad = reqs[..2].to_vec();
        bad.push(ArchiveRequest {
            pv_name: String::new(),
            user_params: json!({}),
        });
        assert!(r.add_archive_requests(&bad).is_err());
        assert_eq!(r.counts().unwrap().archive_requests, 1000);
    }

    #[test]
    fn archive_requests_are_recorded_replaced_and_removed() {
        let r = mem();
        let req = |pv: &str, period: &str| ArchiveRequest {
            pv_name: pv.into(),
            user_params: json!({"samplingperiod": period, "samplingmethod": "MONITOR", "alias": null}),
        };
        r.add_archive_request(&req("R:2", "1.0")).unwrap();
        r.add_archive_request(&req("R:1", "1.0")).unwrap();
        r.add_archive_request(&req("R:1", "5.0")).unwrap();
        assert_eq!(
            r.archive_requests().unwrap(),
            [req("R:1", "5.0"), req("R:2", "1.0")]
        );
        assert_eq!(
            r.get_archive_request("R:1").unwrap(),
            Some(req("R:1", "5.0"))
        );
        assert_eq!(r.get_archive_request("R:3").unwrap(), None);
        assert!(r.remove_archive_request("R:1").unwrap());
        assert!(!r.remove_archive_request("R:1").unwrap());
        assert_eq!(r.archive_requests().unwrap(), [req("R:2", "1.0")]);
    }

    /// What a restart reads back as a never-connected PV's request time.
    #[test]
    fn archive_request_times_are_when_the_request_was_recorded() {
        let r = mem();
        let before = archiver_time::Clock::now(&archiver_time::SystemClock).secs;
        r.add_archive_request(&ArchiveRequest {
            pv_name: "R:T".into(),
            user_params: json!({}),
        })
        .unwrap();
        let after = archiver_time::Clock::now(&archiver_time::SystemClock).secs;
        let times = r.archive_request_times().unwrap();
        let t = times.get("R:T").expect("recorded").secs;
        assert!((before..=after).contains(&t), "{before} <= {t} <= {after}");
        // a row whose time does not parse is left out, the others kept
        r.lock()
            .execute(
                "INSERT INTO ArchivePVRequests (pvName, userParams, last_modified) VALUES ('R:X', '{}', 'soon')",
                [],
            )
            .unwrap();
        let times = r.archive_request_times().unwrap();
        assert_eq!((times.len(), times.contains_key("R:X")), (1, false));
    }

    #[test]
    fn corrupt_rows_are_typed_errors_naming_the_pv() {
        let r = mem();
        put_all(&r, &["GOOD"]);
        {
            let conn = r.lock();
            for (pv, json) in [
                ("BAD:JSON", "{\"pvName\": \"BAD:JSON\", "),
                ("BAD:TYPE", r#"{"pvName":"BAD:TYPE","DBRType":"DBR_NOPE"}"#),
                (
                    "BAD:NAME",
                    r#"{"pvName":"SOMETHING:ELSE","DBRType":"DBR_SCALAR_INT"}"#,
                ),
            ] {
                conn.execute(
                    "INSERT INTO PVTypeInfo (pvName, typeInfoJSON, last_modified) VALUES (?1, ?2, 'x')",
                    [pv, json],
                )
                .unwrap();
            }
            conn.execute(
                "INSERT INTO ArchivePVRequests (pvName, userParams, last_modified) VALUES ('REQ', '{oops', 'x')",
                [],
            )
            .unwrap();
        }
        for pv in ["BAD:JSON", "BAD:TYPE", "BAD:NAME"] {
            match r.get_type_info(pv) {
                Err(RegistryError::CorruptTypeInfo { pv: got, .. }) => assert_eq!(got, pv),
                other => panic!("{pv}: expected CorruptTypeInfo, got {other:?}"),
            }
        }
        let msg = r.get_type_info("BAD:TYPE").unwrap_err().to_string();
        assert!(msg.contains("BAD:TYPE") && msg.contains("DBRType"), "{msg}");
        assert!(matches!(
            r.all_type_infos(),
            Err(RegistryError::CorruptTypeInfo { .. })
        ));
        assert!(r.get_type_info("GOOD").unwrap().is_some());
        // Name listings do not read the JSON, and a corrupt row can be deleted.
        assert_eq!(r.all_pv_names().unwrap().len(), 4);
        assert!(r.delete_type_info("BAD:JSON").unwrap());
        match r.get_archive_request("REQ") {
            Err(RegistryError::CorruptArchiveRequest { pv, .. }) => assert_eq!(pv, "REQ"),
            other => panic!("expected CorruptArchiveRequest, got {other:?}"),
        }
        assert!(matches!(
            r.archive_requests(),
            Err(RegistryError::CorruptArchiveRequest { .. })
        ));
    }

    #[test]
    fn pv_times_are_read_from_their_columns_in_name_order() {
        let r = mem();
        let mut a = info("T:B");
        a.creation_time = Some(Timestamp::new(1_700_000_000, 0));
        a.modification_time = Some(Timestamp::new(1_700_000_100, 0));
        a.paused = true;
        let mut b = info("T:A");
        b.creation_time = None;
        b.modification_time = None;
        r.put_type_infos(&[a, b]).unwrap();
        let t = r.all_pv_times().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].pv_name, "T:A");
        assert_eq!(t[0].creation_time, None);
        assert!(!t[0].paused);
        assert_eq!(t[1].creation_time, Some(Timestamp::new(1_700_000_000, 0)));
        assert_eq!(
            t[1].modification_time,
            Some(Timestamp::new(1_700_000_100, 0))
        );
        assert!(t[1].paused);
    }

    #[test]
    fn named_flags_default_to_false_and_are_listed_sorted() {
        let r = mem();
        assert!(!r.get_named_flag("SKIP_MTS_FOR_ETL").unwrap());
        r.set_named_flag("SKIP_MTS_FOR_ETL", true).unwrap();
        r.set_named_flag("A", false).unwrap();
        assert!(r.get_named_flag("SKIP_MTS_FOR_ETL").unwrap());
        r.set_named_flag("SKIP_MTS_FOR_ETL", false).unwrap();
        assert!(!r.get_named_flag("SKIP_MTS_FOR_ETL").unwrap());
        r.set_named_flag("B", true).unwrap();
        assert_eq!(
            r.all_named_flags().unwrap(),
            [
                ("A".to_string(), false),
                ("B".to_string(), true),
                ("SKIP_MTS_FOR_ETL".to_string(), false)
            ]
        );
    }

    #[test]
    fn reopening_the_file_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let proto = PvTypeInfo::from_json_str(PROTOTYPE).unwrap();
        {
            let r = SqliteRegistry::open_in_dir(&data).unwrap();
            assert_eq!(r.path(), Some(data.join(REGISTRY_FILE_NAME).as_path()));
            let mode: String = r
                .lock()
                .query_row("PRAGMA journal_mode", [], |row| row.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            r.put_type_info(&proto).unwrap();
            let mut paused = info("P:1");
            paused.paused = true;
            r.put_type_info(&paused).unwrap();
            r.add_alias("ALIAS:1", "P:1").unwrap();
            r.add_archive_request(&ArchiveRequest {
                pv_name: "REQ:1".into(),
                user_params: json!({"policy": "default"}),
            })
            .unwrap();
        }
        assert!(data.join(REGISTRY_FILE_NAME).is_file());
        let r = SqliteRegistry::open_in_dir(&data).unwrap();
        assert_eq!(r.schema_version().unwrap(), migrations::SCHEMA_VERSION);
        assert_eq!(r.get_type_info(&proto.pv_name).unwrap(), Some(proto));
        assert_eq!(r.paused_pv_names().unwrap(), ["P:1"]);
        assert_eq!(r.resolve_alias("ALIAS:1").unwrap().as_deref(), Some("P:1"));
        assert_eq!(
            r.archive_requests().unwrap(),
            [ArchiveRequest {
                pv_name: "REQ:1".into(),
                user_params: json!({"policy": "default"}),
            }]
        );
        assert_eq!(
            r.counts().unwrap(),
            RegistryCounts {
                pvs: 2,
                paused: 1,
                aliases: 1,
                archive_requests: 1
            }
        );
    }

    #[test]
    fn two_handles_on_one_file_see_each_others_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.sqlite");
        let a = SqliteRegistry::open(&path).unwrap();
        let b = SqliteRegistry::open(&path).unwrap();
        a.put_type_info(&info("FROM:A")).unwrap();
        assert!(b.get_type_info("FROM:A").unwrap().is_some());
        b.add_alias("ALIAS", "FROM:A").unwrap();
        assert!(matches!(
            a.put_type_info(&info("ALIAS")),
            Err(RegistryError::TypeInfoForAlias { .. })
        ));
        assert!(b.delete_type_info("FROM:A").unwrap());
        assert_eq!(a.get_type_info("FROM:A").unwrap(), None);
    }

    #[test]
    fn a_newer_schema_on_disk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REGISTRY_FILE_NAME);
        drop(SqliteRegistry::open(&path).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute("INSERT INTO schema_version VALUES (99, 'future', 'x')", [])
                .unwrap();
        }
        match SqliteRegistry::open(&path) {
            Err(RegistryError::SchemaTooNew { found: 99, .. }) => {}
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_folder_that_cannot_be_created_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        match SqliteRegistry::open_in_dir(&file.join("sub")) {
            Err(RegistryError::Io { path, .. }) => assert_eq!(path, file.join("sub")),
            other => panic!("expected Io, got {other:?}"),
        }
    }

    #[test]
    fn many_threads_share_one_registry() {
        let r: Arc<dyn Registry> = Arc::new(mem());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let name = format!("T{t}:PV{i:02}");
                        r.put_type_info(&info(&name)).unwrap();
                        assert!(r.get_type_info(&name).unwrap().is_some());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(r.counts().unwrap().pvs, 200);
        assert_eq!(
            r.matching_pv_names(&NamePattern::Glob("T3:*".into()), Limit::All)
                .unwrap()
                .len(),
            50
        );
    }
}
