//! `archiver pb generate` run as a user runs it: the files it writes hold exactly the
//! samples of its rule, in the store's partitions; a second run adds nothing; bad
//! arguments are refused with a message; `archiver pb FILE` still reads files.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use archiver_pb::{Granularity, PayloadType, PbReader, Timestamp, Value};
use archiver_registry::{Registry, SqliteRegistry};
use archiver_storage::Tier;

fn archiver(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const ARGS: [&str; 16] = [
    "pb",
    "generate",
    "--pvs",
    "3",
    "--rate",
    "4",
    "--duration",
    "90m",
    "--start",
    "2023-12-31T23:30:00.5Z",
    "--type",
    "int",
    "--prefix",
    "T:GEN:",
    "--store-url",
    "pb://localhost?name=MTS&rootFolder=mts&partitionGranularity=PARTITION_HOUR",
];

#[test]
fn writes_every_sample_of_its_rule_into_the_store_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ARGS.to_vec();
    args.push("--register");
    let out = archiver(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("generated 64800 samples (3 PVs × 21600)"),
        "{stdout}"
    );
    let tier = Tier::new("MTS", dir.path().join("mts"), Granularity::Hour);
    let start = Timestamp::new(1_704_065_400, 500_000_000);
    for i in 0..3 {
        let pv = format!("T:GEN:{i}");
        let parts = tier.partitions(&pv).unwrap();
        // 23:30:00.5 of 2023 to 01:00:00.25 of 2024 (the last of 21,600 samples 0.25 s
        // apart): three hourly files in two years.
        assert_eq!(parts.len(), 3, "{pv}: {parts:?}");
        let mut k = 0i64;
        for p in &parts {
            let mut r = PbReader::open(&p.path).unwrap();
            assert_eq!(r.header().payload_type, PayloadType::ScalarInt);
            assert_eq!(r.header().pv_name, pv);
            while let Some(s) = r.next_sample().unwrap() {
                let ns = k * 250_000_000 + 500_000_000;
                let want =
                    Timestamp::new(start.secs + ns / 1_000_000_000, (ns % 1_000_000_000) as u32);
                assert_eq!(s.time, want, "{pv} sample {k}");
                assert_eq!(s.value, Value::ScalarInt(k as i32), "{pv} sample {k}");
                assert_eq!(s.time.year(), r.header().year, "{pv} sample {k}: year");
                k += 1;
            }
        }
        assert_eq!(k, 21_600, "{pv}");
        let check = Command::new(env!("CARGO_BIN_EXE_archiver"))
            .args(["pb", "--check"])
            .args(parts.iter().map(|p| &p.path))
            .output()
            .unwrap();
        assert!(check.status.success(), "{}", text(&check.stderr));
    }
    // Registered, paused, with the store as given.
    let registry = SqliteRegistry::open(&dir.path().join("registry.sqlite")).unwrap();
    let info = registry
        .get_type_info("T:GEN:2")
        .unwrap()
        .expect("registered");
    assert!(info.paused);
    assert_eq!(info.dbr_type, PayloadType::ScalarInt);
    assert_eq!(info.data_stores, vec![ARGS[15].to_string()]);
    // The same command again: every sample is refused as not newer, nothing is added.
    let again = archiver(&ARGS, dir.path());
    assert!(again.status.success(), "{}", text(&again.stderr));
    let stdout = text(&again.stdout);
    assert!(
        stdout.contains("generated 0 samples") && stdout.contains("64800 refused"),
        "{stdout}"
    );
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, says) in [
        (["--duration", "3x"], "unknown unit"),
        (["--rate", "0"], "--rate 0"),
        (["--type", "blob"], "unknown type"),
        (["--store-url", "pb://localhost?name=X"], "--store-url"),
        (["--start", "yesterday"], "--start"),
    ] {
        let out = archiver(&["pb", "generate", bad[0], bad[1]], dir.path());
        assert!(!out.status.success(), "{bad:?} accepted");
        let err = text(&out.stderr);
        assert!(err.contains(says), "{bad:?}: {err}");
    }
    // --register-store needs --register, and must be a store URL.
    let out = archiver(
        &[
            "pb",
            "generate",
            "--register-store",
            "blackhole://localhost",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--register"),
        "{}",
        text(&out.stderr)
    );
    let out = archiver(
        &[
            "pb",
            "generate",
            "--register",
            "--register-store",
            "pb://localhost?name=X",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--register-store"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn registers_the_stores_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let sts = "pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_HOUR";
    let mts = "pb://localhost?name=MTS&rootFolder=mts&partitionGranularity=PARTITION_DAY";
    let out = archiver(
        &[
            "pb",
            "generate",
            "--pvs",
            "2",
            "--duration",
            "10s",
            "--prefix",
            "T:REG:",
            "--store-url",
            sts,
            "--register",
            "--register-store",
            sts,
            "--register-store",
            mts,
            "--register-store",
            "blackhole://localhost?name=Gone",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let registry = SqliteRegistry::open(&dir.path().join("registry.sqlite")).unwrap();
    let info = registry
        .get_type_info("T:REG:1")
        .unwrap()
        .expect("registered");
    assert_eq!(
        info.data_stores,
        [sts, mts, "blackhole://localhost?name=Gone"]
    );
    assert!(info.paused, "paused: the engine never searches for it");
    drop(registry);
    // --register-archiving: not paused, so that ETL moves its data.
    let active = tempfile::tempdir().unwrap();
    let out = archiver(
        &[
            "pb",
            "generate",
            "--pvs",
            "1",
            "--duration",
            "10s",
            "--prefix",
            "T:ACT:",
            "--register",
            "--register-archiving",
        ],
        active.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let registry = SqliteRegistry::open(&active.path().join("registry.sqlite")).unwrap();
    let info = registry
        .get_type_info("T:ACT:0")
        .unwrap()
        .expect("registered");
    assert!(!info.paused);
    drop(registry);
    // Not into a folder an archiver uses (found by a fresh-user test): refused, nothing
    // written.
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join("archiver.lock"))
        .unwrap();
    held.try_lock().unwrap();
    let out = archiver(
        &[
            "pb",
            "generate",
            "--pvs",
            "1",
            "--duration",
            "10s",
            "--prefix",
            "T:LOCKED:",
            "--store-url",
            sts,
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("archiver.lock"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("sts/T/LOCKED").exists());
}
