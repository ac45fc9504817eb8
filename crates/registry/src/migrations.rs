//! Numbered schema migrations of the SQLite catalogue.
//!
//! Table `schema_version(version, description, applied_at)` has one row per applied
//! migration; the schema version is the highest. Opening a database applies the missing
//! migrations in order, all in one `BEGIN IMMEDIATE` transaction, so two processes
//! opening the same new file do not both migrate it, and a failed migration leaves the
//! database at the version it had. A database with a version newer than this build
//! knows is refused ([`RegistryError::SchemaTooNew`]) rather than used.
//!
//! Migrations are append-only: a released migration is never edited; a change is a new
//! migration.
//!
//! 1. The three tables of the Java persistence layer, same names and columns:
//!    `PVTypeInfo(pvName, typeInfoJSON, last_modified)`,
//!    `PVAliases(pvName, realName, last_modified)` (pvName is the alias) and
//!    `ArchivePVRequests(pvName, userParams, last_modified)`.
//! 2. Two columns derived from the JSON, kept by `put_type_info`, so that listing paused
//!    PVs and loading one appliance's PVs do not parse every row: `paused` and
//!    `applianceIdentity`, filled from the existing JSON (rows whose JSON is corrupt get
//!    `paused = 0` and no appliance; reading them still reports the corruption).
//! 3. `NamedFlags(name, value, last_modified)`: the Java appliance's named flags
//!    (`getNamedFlag`/`setNamedFlag`), booleans that gate ETL and retrieval; Java keeps
//!    them in memory only, here they survive a restart.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::RegistryError;

/// One schema step.
struct Migration {
    version: u32,
    description: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "Java persistence tables PVTypeInfo, PVAliases, ArchivePVRequests",
        sql: "
            CREATE TABLE PVTypeInfo (
                pvName TEXT NOT NULL PRIMARY KEY,
                typeInfoJSON TEXT NOT NULL,
                last_modified TEXT NOT NULL
            );
            CREATE TABLE PVAliases (
                pvName TEXT NOT NULL PRIMARY KEY,
                realName TEXT NOT NULL,
                last_modified TEXT NOT NULL
            );
            CREATE INDEX PVAliases_realName ON PVAliases(realName);
            CREATE TABLE ArchivePVRequests (
                pvName TEXT NOT NULL PRIMARY KEY,
                userParams TEXT NOT NULL,
                last_modified TEXT NOT NULL
            );
        ",
    },
    Migration {
        version: 2,
        description: "PVTypeInfo.paused and PVTypeInfo.applianceIdentity derived columns",
        sql: "
            ALTER TABLE PVTypeInfo ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE PVTypeInfo ADD COLUMN applianceIdentity TEXT;
            UPDATE PVTypeInfo SET
                paused = CASE WHEN json_valid(typeInfoJSON) THEN
                    (CASE WHEN json_extract(typeInfoJSON, '$.paused') IN ('true', 1)
                          THEN 1 ELSE 0 END)
                    ELSE 0 END,
                applianceIdentity = CASE WHEN json_valid(typeInfoJSON) THEN
                    (CASE WHEN json_type(typeInfoJSON, '$.applianceIdentity') = 'text'
                          THEN json_extract(typeInfoJSON, '$.applianceIdentity') END)
                    END;
            CREATE INDEX PVTypeInfo_paused ON PVTypeInfo(pvName) WHERE paused = 1;
            CREATE INDEX PVTypeInfo_appliance ON PVTypeInfo(applianceIdentity, pvName);
        ",
    },
    Migration {
        version: 3,
        description: "NamedFlags table",
        sql: "
            CREATE TABLE NamedFlags (
                name TEXT NOT NULL PRIMARY KEY,
                value INTEGER NOT NULL,
                last_modified TEXT NOT NULL
            );
        ",
    },
    Migration {
        version: 4,
        description: "PVTypeInfo.creationTime and PVTypeInfo.modificationTime derived columns \
                      (the reports read them without parsing every type info)",
        sql: "
            ALTER TABLE PVTypeInfo ADD COLUMN creationTime TEXT;
            ALTER TABLE PVTypeInfo ADD COLUMN modificationTime TEXT;
            UPDATE PVTypeInfo SET
                creationTime = CASE WHEN json_valid(typeInfoJSON) THEN
                    json_extract(typeInfoJSON, '$.creationTime') END,
                modificationTime = CASE WHEN json_valid(typeInfoJSON) THEN
                    json_extract(typeInfoJSON, '$.modificationTime') END;
        ",
    },
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// SQL for "now" as ISO-8601 UTC with milliseconds, as the rows' `last_modified`.
pub(crate) const SQL_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// Brings the database to [`SCHEMA_VERSION`]; returns the number of migrations applied.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32, RegistryError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Brings the database to `target` (≤ [`SCHEMA_VERSION`]); returns the number applied.
pub(crate) fn migrate_to(conn: &mut Connection, target: u32) -> Result<u32, RegistryError> {
    let db = |e: rusqlite::Error| RegistryError::backend("migrate", None, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version INTEGER NOT NULL PRIMARY KEY,
            description TEXT NOT NULL,
            applied_at TEXT NOT NULL
        );",
    )
    .map_err(db)?;
    let found = version_of(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(RegistryError::SchemaTooNew {
            path: db_path(&tx),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let mut applied = 0;
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > found && m.version <= target)
    {
        let failed = |e: rusqlite::Error| RegistryError::Migration {
            version: m.version,
            description: m.description,
            source: Box::new(e),
        };
        tx.execute_batch(m.sql).map_err(failed)?;
        tx.execute(
            &format!(
                "INSERT INTO schema_version (version, description, applied_at) \
                 VALUES (?1, ?2, {SQL_NOW})"
            ),
            (m.version, m.description),
        )
        .map_err(failed)?;
        applied += 1;
    }
    tx.commit().map_err(db)?;
    Ok(applied)
}

/// The schema version of the database (0 for an empty one).
pub(crate) fn version_of(conn: &Connection) -> Result<u32, RegistryError> {
    let has_table: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| RegistryError::backend("schema_version", None, e))?;
    if has_table.is_none() {
        return Ok(0);
    }
    conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )
    .map_err(|e| RegistryError::backend("schema_version", None, e))
}

/// The file of `conn`, `:memory:` for a database in memory.
pub(crate) fn db_path(conn: &Connection) -> std::path::PathBuf {
    std::path::PathBuf::from(conn.path().filter(|p| !p.is_empty()).unwrap_or(":memory:"))
}

/// The tables of [`SCHEMA_VERSION`] and the columns the catalogue reads and writes.
const TABLES: &[(&str, &str)] = &[
    (
        "PVTypeInfo",
        "pvName, typeInfoJSON, last_modified, paused, applianceIdentity, creationTime, \
         modificationTime",
    ),
    ("PVAliases", "pvName, realName, last_modified"),
    ("ArchivePVRequests", "pvName, userParams, last_modified"),
    ("NamedFlags", "name, value, last_modified"),
];

/// Why the database is not an archiver catalogue that [`migrate`] may bring up to date, or
/// `None` if it is one (or empty). Reads only: run before anything writes to the file, so
/// that a foreign file is left exactly as it was. A database without `schema_version`
/// but with tables belongs to something else (the archiver creates `schema_version` in
/// the transaction that creates its first table).
pub(crate) fn foreign_schema(conn: &Connection) -> Result<Option<String>, RegistryError> {
    if version_of(conn)? > 0 {
        return Ok(None);
    }
    let db = |e: rusqlite::Error| RegistryError::backend("schema_check", None, e);
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .map_err(db)?;
    let tables = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    if tables.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "tables {} and no schema_version table",
        tables.join(", ")
    )))
}

/// Checks that a database at [`SCHEMA_VERSION`] has every table and column the catalogue
/// uses; the error names the first one missing (e.g. `PVAliases: no such table:
/// PVAliases`).
pub(crate) fn check_tables(conn: &Connection) -> Result<(), String> {
    for (table, columns) in TABLES {
        conn.prepare(&format!("SELECT {columns} FROM {table} LIMIT 0"))
            .map_err(|e| format!("{table}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbered_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.description);
        }
        assert_eq!(SCHEMA_VERSION, 4);
    }

    #[test]
    fn fresh_database_gets_every_migration_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(version_of(&conn).unwrap(), 0);
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(version_of(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(migrate(&mut conn).unwrap(), 0, "second run applies nothing");
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, i64::from(SCHEMA_VERSION));
        for table in ["PVTypeInfo", "PVAliases", "ArchivePVRequests"] {
            let n: i64 = conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{table} exists and is empty");
        }
    }

    #[test]
    fn migration_2_derives_columns_from_existing_json() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate_to(&mut conn, 1).unwrap(), 1);
        assert_eq!(version_of(&conn).unwrap(), 1);
        let rows = [
            (
                "P:ON",
                r#"{"pvName":"P:ON","paused":"true","applianceIdentity":"a1"}"#,
            ),
            (
                "P:OFF",
                r#"{"pvName":"P:OFF","paused":"false","applianceIdentity":"a2"}"#,
            ),
            ("P:BOOL", r#"{"pvName":"P:BOOL","paused":true}"#),
            ("P:BAD", "{not json"),
        ];
        for (pv, json) in rows {
            conn.execute(
                "INSERT INTO PVTypeInfo (pvName, typeInfoJSON, last_modified) VALUES (?1, ?2, 'x')",
                (pv, json),
            )
            .unwrap();
        }
        assert_eq!(migrate_to(&mut conn, 2).unwrap(), 1);
        let mut stmt = conn
            .prepare("SELECT pvName, paused, applianceIdentity FROM PVTypeInfo ORDER BY pvName")
            .unwrap();
        let got: Vec<(String, i64, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            got,
            vec![
                ("P:BAD".to_string(), 0, None),
                ("P:BOOL".to_string(), 1, None),
                ("P:OFF".to_string(), 0, Some("a2".to_string())),
                ("P:ON".to_string(), 1, Some("a1".to_string())),
            ]
        );
    }

    #[test]
    fn migration_4_derives_the_times_from_existing_json() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate_to(&mut conn, 3).unwrap(), 3);
        for (pv, json) in [
            (
                "P:T",
                r#"{"pvName":"P:T","creationTime":"2024-01-02T03:04:05.678Z","modificationTime":"2024-02-03T04:05:06.789Z"}"#,
            ),
            ("P:NONE", r#"{"pvName":"P:NONE"}"#),
            ("P:BAD", "{not json"),
        ] {
            conn.execute(
                "INSERT INTO PVTypeInfo (pvName, typeInfoJSON, last_modified) VALUES (?1, ?2, 'x')",
                (pv, json),
            )
            .unwrap();
        }
        assert_eq!(migrate_to(&mut conn, 4).unwrap(), 1);
        let mut stmt = conn
            .prepare(
                "SELECT pvName, creationTime, modificationTime FROM PVTypeInfo ORDER BY pvName",
            )
            .unwrap();
        let got: Vec<(String, Option<String>, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            got,
            vec![
                ("P:BAD".to_string(), None, None),
                ("P:NONE".to_string(), None, None),
                (
                    "P:T".to_string(),
                    Some("2024-01-02T03:04:05.678Z".to_string()),
                    Some("2024-02-03T04:05:06.789Z".to_string())
                ),
            ]
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_version VALUES (?1, 'from the future', 'x')",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
        match migrate(&mut conn) {
            Err(RegistryError::SchemaTooNew {
                found, supported, ..
            }) => {
                assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn failed_migration_rolls_back_and_names_itself() {
        let mut conn = Connection::open_in_memory().unwrap();
        // A table in the way of migration 1.
        conn.execute_batch("CREATE TABLE PVAliases (x TEXT);")
            .unwrap();
        match migrate(&mut conn) {
            Err(RegistryError::Migration { version, .. }) => assert_eq!(version, 1),
            other => panic!("expected Migration error, got {other:?}"),
        }
        assert_eq!(version_of(&conn).unwrap(), 0);
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'PVTypeInfo'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the partial migration was rolled back");
    }
}
