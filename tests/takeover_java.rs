//! Taking over a Java appliance's data: a folder laid out as the Java appliance lays it out
//! (STS hourly, MTS daily, LTS yearly files with Java names, written byte-exact by the
//! project's PlainPB writer, plus the Java vector file of a retired PV), a folder of
//! PVTypeInfo documents in the Java shape; `archiver import` puts them in the catalogue
//! (the Java prototype PVTypeInfo exports back to the same content); `archiver serve`
//! pointed at the Java folders serves the old files, appends to the current STS file
//! without rewriting it, runs ETL on them, and serves the retired PV from its file header.

#![allow(clippy::unwrap_used)]

#[path = "../crates/ca/tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;
use std::process::Command;

use archiver_pb::time::start_of_year;
use archiver_pb::{Granularity, PayloadType, Sample, Timestamp, Value};
use archiver_registry::{PvTypeInfo, Registry, SqliteRegistry};
use archiver_storage::Tier;
use common::Ioc;
use support::{Archiver, enc, iso, now_secs};

const PROTOTYPE: &str = include_str!("../crates/registry/tests/data/PVTypeInfoPrototype.json");
const JAVA_VECTOR: &[u8] = include_bytes!("../crates/pb/tests/data/lrm01_raw.pb");
const RETIRED: &str = "LN-AM{RadMon:2}DoseRate-I";

fn samples(from: i64, to: i64, step: usize) -> Vec<Sample> {
    (from..to)
        .step_by(step)
        .map(|s| Sample::new(Timestamp::new(s, 0), Value::ScalarDouble(s as f64)))
        .collect()
}

fn tier(java: &Path, name: &str, g: Granularity) -> Tier {
    Tier::new(name, java.join(name.to_lowercase()), g)
}

fn secs_of(data: &[serde_json::Value]) -> Vec<i64> {
    data.iter().map(|s| s["secs"].as_i64().unwrap()).collect()
}

#[test]
fn a_java_appliances_folders_are_imported_served_appended_and_moved_on() {
    let ioc = Ioc::start("TKO");
    let pv = ioc.pv("AI");
    let dir = tempfile::tempdir().unwrap();
    let (data, java) = (dir.path().join("data"), dir.path().join("java"));
    if now_secs() % 3600 < 3 {
        std::thread::sleep(std::time::Duration::from_secs(4));
    }
    let now = now_secs();
    let (hour, day) = (now / 3600 * 3600, now / 86400 * 86400);
    let year = Timestamp::new(now, 0).year();
    // The Java layout: LTS last year, MTS two closed days, STS three closed hours and the
    // current one.
    let (sts, mts, lts) = (
        tier(&java, "STS", Granularity::Hour),
        tier(&java, "MTS", Granularity::Day),
        tier(&java, "LTS", Granularity::Year),
    );
    let mut old = samples(
        start_of_year(year - 1),
        start_of_year(year - 1) + 100 * 3600,
        3600,
    );
    old.extend(samples(day - 3 * 86400, day - 86400, 600));
    let in_sts = samples(hour - 3 * 3600, hour + 1, 60);
    let mut java_written = old.clone();
    java_written.extend(in_sts.iter().cloned());
    lts.append(&pv, PayloadType::ScalarDouble, &old[..100])
        .unwrap();
    mts.append(&pv, PayloadType::ScalarDouble, &old[100..])
        .unwrap();
    sts.append(&pv, PayloadType::ScalarDouble, &in_sts).unwrap();
    let current = sts.file_for(&pv, hour).unwrap();
    let current_before = std::fs::read(&current).unwrap();
    let java_name = format!(":{}.pb", Granularity::Hour.partition_name(hour));
    assert!(
        current.to_string_lossy().ends_with(&java_name),
        "{current:?}"
    );
    // The retired PV: the Java vector file where Java keeps it.
    let retired_file = java.join("lts/LN/AM{RadMon/2}DoseRate/I:2014.pb");
    std::fs::create_dir_all(retired_file.parent().unwrap()).unwrap();
    std::fs::write(&retired_file, JAVA_VECTOR).unwrap();
    // PVTypeInfo documents as the Java appliance holds them: the prototype (as it is) and
    // one for the IOC's PV, made from it.
    let infos = dir.path().join("typeinfos");
    std::fs::create_dir_all(&infos).unwrap();
    std::fs::write(infos.join("prototype.json"), PROTOTYPE).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(PROTOTYPE).unwrap();
    doc["pvName"] = pv.clone().into();
    std::fs::write(infos.join("ai.json"), serde_json::to_string(&doc).unwrap()).unwrap();

    let j = java.display();
    let config = format!(
        "[engine]\nwrite_period_secs = 1\n[storage]\ndata_stores = [\n\
         \"pb://localhost?name=STS&rootFolder={j}/sts&partitionGranularity=PARTITION_HOUR\",\n\
         \"pb://localhost?name=MTS&rootFolder={j}/mts&partitionGranularity=PARTITION_DAY&hold=2&gather=1\",\n\
         \"pb://localhost?name=LTS&rootFolder={j}/lts&partitionGranularity=PARTITION_YEAR\"]\n"
    );
    std::fs::create_dir_all(&data).unwrap();
    let cfg = data.join("archiver.toml");
    std::fs::write(&cfg, &config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(["import", "--retired", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&data)
        .arg(&infos)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("imported 2 PVTypeInfos"), "{stdout}");
    assert!(stdout.contains("registered 1 retired PVs"), "{stdout}");
    // The summary at the end: what the catalogue holds now and where each PV came from.
    assert!(
        stdout.contains("PVs in the catalogue of")
            && stdout.contains(": 3 PVs in the catalogue")
            && stdout.contains("(2 imported, 0 kept, 1 retired registered)"),
        "{stdout}"
    );
    {
        // The prototype exports back to the same content.
        let reg = SqliteRegistry::open(&data.join("registry.sqlite")).unwrap();
        let back = reg
            .get_type_info("UnitTestNoNamingConvention:inactive1")
            .unwrap()
            .unwrap();
        let want: serde_json::Value = serde_json::from_str(PROTOTYPE).unwrap();
        assert_eq!(back.to_json_value(), want);
        let retired: PvTypeInfo = reg.get_type_info(RETIRED).unwrap().unwrap();
        assert!(retired.paused);
        assert_eq!(retired.dbr_type, PayloadType::ScalarDouble);
        // The Java file's header: EGU mR/h, PREC 2, as a live PV's type info holds them.
        assert_eq!(retired.units.as_deref(), Some("mR/h"));
        assert_eq!(retired.precision, 2.0);
    }
    // A second import keeps what is there.
    let out = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(["import", "--data-dir"])
        .arg(&data)
        .arg(infos.join("ai.json"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("imported 0 PVTypeInfos (1 already present")
    );

    let mut a = Archiver::start_with(&data, ioc.port, ioc.beacon_port, &config);
    // Archiving on top: the current STS file grows from its Java bytes, never rewritten.
    a.wait_until(30.0, "new samples appended to the current STS file", |_| {
        std::fs::read(&current).is_ok_and(|b| b.len() > current_before.len())
    });
    let after = std::fs::read(&current).unwrap();
    assert_eq!(after[..current_before.len()], current_before[..]);
    // ETL (the run at start) moved the closed STS hours on, only the current hour is
    // left; the MTS's older day went on to the LTS (hold=2, gather=1).
    a.wait_until(30.0, "ETL of the closed hours and the old day", |_| {
        sts.partitions(&pv).unwrap().len() == 1
            && mts
                .partitions(&pv)
                .unwrap()
                .iter()
                .all(|p| p.start != day - 3 * 86400)
    });
    // Everything the Java appliance wrote is served, once, in order, then the new samples.
    let got = a.data(&pv, &iso(start_of_year(year - 1)), &iso(now_secs() + 60));
    let secs = secs_of(&got);
    assert!(secs.windows(2).all(|w| w[0] <= w[1]), "in order");
    let want: Vec<i64> = java_written.iter().map(|s| s.time.secs).collect();
    assert_eq!(
        secs[..want.len()],
        want[..],
        "the Java data, each sample once"
    );
    assert!(secs.len() > want.len(), "and the new samples after it");
    // The retired PV, from its file's header.
    let r = a.data(RETIRED, "2014-12-08T00:00:00Z", "2014-12-09T00:00:00Z");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["val"].as_f64(), Some(-0.09));
    let v = a.json(&format!(
        "/retrieval/data/getData.json?pv={}&from=2014-12-08T00:00:00Z&to=2014-12-09T00:00:00Z",
        enc(RETIRED)
    ));
    assert_eq!(
        (&v[0]["meta"]["EGU"], &v[0]["meta"]["PREC"]),
        (&"mR/h".into(), &"2".into()),
        "{v}"
    );
    assert!(a.terminate());
}
