//! Opening a catalogue file that is not fit to use: garbage, a truncated copy, another
//! program's database, the archiver's tables without their columns, a newer schema, a file
//! locked by another process. Each is refused with an error naming the file, and the file
//! is left byte for byte as it was (never replaced, never "repaired").

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use archiver_pb::PayloadType;
use archiver_registry::{PvTypeInfo, Registry, RegistryError, SamplingMethod, SqliteRegistry};
use archiver_time::Timestamp;

/// A catalogue file holding `n` PVs, closed; returns its path.
fn catalogue(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("registry.sqlite");
    let r = SqliteRegistry::open(&path).unwrap();
    for i in 0..n {
        let info = PvTypeInfo::new_for_archiving(
            &format!("FAULT:PV:{i:05}"),
            PayloadType::ScalarDouble,
            1,
            SamplingMethod::Monitor,
            1.0,
            vec![
                "pb://localhost?name=STS&rootFolder=/arch/sts&partitionGranularity=PARTITION_HOUR"
                    .into(),
            ],
            Timestamp::new(1_700_000_000, 0),
        )
        .unwrap();
        r.put_type_info(&info).unwrap();
    }
    drop(r);
    path
}

/// Opens `path`, which must fail; checks the file's bytes did not change and that the
/// message names the file. Returns the error.
fn refused(path: &Path) -> RegistryError {
    let before = std::fs::read(path).unwrap();
    let err = SqliteRegistry::open_waiting(path, Duration::from_millis(200))
        .expect_err("the open must fail");
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "the file was changed: {err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    err
}

#[test]
fn garbage_bytes_are_refused_as_corrupt_and_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    let garbage: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, garbage).unwrap();
    let err = refused(&path);
    assert!(matches!(err, RegistryError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("left as it is"), "{err}");
}

#[test]
fn a_truncated_catalogue_is_refused_as_corrupt_and_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = catalogue(dir.path(), 2_000);
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 100_000, "{len}");
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 3).unwrap();
    drop(f);
    let err = refused(&path);
    assert!(matches!(err, RegistryError::Corrupt { .. }), "{err}");
}

/// Found by trying it: a database of another program (here a table `foo`) was adopted,
/// the archiver's tables added beside its own.
#[test]
fn another_programs_database_was_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE foo (x); INSERT INTO foo VALUES (1);")
            .unwrap();
    }
    let err = refused(&path);
    assert!(matches!(err, RegistryError::ForeignSchema { .. }), "{err}");
    assert!(err.to_string().contains("foo"), "{err}");
}

#[test]
fn a_catalogue_without_one_of_its_tables_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = catalogue(dir.path(), 3);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("DROP TABLE PVAliases;").unwrap();
    }
    let err = refused(&path);
    assert!(matches!(err, RegistryError::ForeignSchema { .. }), "{err}");
    assert!(err.to_string().contains("PVAliases"), "{err}");
}

/// Found by trying it: a catalogue of a newer archiver was refused only after its header
/// had been rewritten (the journal mode was set before the version was read).
#[test]
fn a_newer_schema_was_rewritten_before_it_was_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = catalogue(dir.path(), 3);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = DELETE; \
             INSERT INTO schema_version VALUES (999, 'from the future', 'now');",
        )
        .unwrap();
    }
    let err = refused(&path);
    assert!(
        matches!(err, RegistryError::SchemaTooNew { found: 999, .. }),
        "{err}"
    );
}

#[test]
fn a_file_locked_by_another_process_is_reported_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = catalogue(dir.path(), 3);
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let err = refused(&path);
    assert!(matches!(err, RegistryError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
    holder.execute_batch("COMMIT;").unwrap();
    drop(holder);
    // Once the other process lets go, the catalogue opens with its PVs.
    let r = SqliteRegistry::open(&path).unwrap();
    assert_eq!(r.counts().unwrap().pvs, 3);
}

#[test]
fn an_empty_file_becomes_a_new_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    std::fs::write(&path, b"").unwrap();
    let r = SqliteRegistry::open(&path).unwrap();
    assert_eq!(r.counts().unwrap().pvs, 0);
}
