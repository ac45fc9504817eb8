//! A tier against real folders: partitioned appends, listing, and the Java query rule.

use archiver_pb::time::start_of_year;
use archiver_pb::{Granularity, PayloadType, Sample, Timestamp, Value};
use archiver_storage::{StorageError, Tier};

const PV: &str = "SIM:AI-1";

fn t(secs_into_2024: i64) -> Timestamp {
    Timestamp::new(start_of_year(2024) + secs_into_2024, 500)
}

fn s(secs: i64) -> Sample {
    Sample::new(t(secs), Value::ScalarDouble(secs as f64))
}

fn collect(tier: &Tier, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
    let mut q = tier.query(PV, from, to).expect("query");
    let mut out = Vec::new();
    while let Some(s) = q.next_sample().expect("next") {
        out.push(s.time);
    }
    out
}

#[test]
fn appends_split_into_hourly_files_with_java_names() {
    let dir = tempfile::tempdir().expect("tmp");
    let tier = Tier::new("STS", dir.path(), Granularity::Hour);
    // 10 min apart over 3 hours, starting 01:00.
    let samples: Vec<Sample> = (0..18).map(|k| s(3600 + k * 600)).collect();
    let c = tier
        .append(PV, PayloadType::ScalarDouble, &samples)
        .expect("append");
    assert_eq!(c.written, 18);
    let names: Vec<String> = tier
        .partitions(PV)
        .expect("list")
        .iter()
        .map(|p| {
            p.path
                .strip_prefix(dir.path())
                .expect("inside")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "SIM/AI/1:2024_01_01_01.pb",
            "SIM/AI/1:2024_01_01_02.pb",
            "SIM/AI/1:2024_01_01_03.pb"
        ]
    );
    // Appending the same samples again writes nothing and counts them.
    let c = tier
        .append(PV, PayloadType::ScalarDouble, &samples)
        .expect("append");
    assert_eq!((c.written, c.not_newer), (0, 18));
    assert_eq!(collect(&tier, t(0), t(100_000)).len(), 18);
}

#[test]
fn query_returns_one_sample_at_or_before_from_then_the_range() {
    let dir = tempfile::tempdir().expect("tmp");
    let tier = Tier::new("STS", dir.path(), Granularity::Hour);
    // Hours 0 and 1 have data; hours 2-4 none; hour 5 has data.
    let mut samples: Vec<Sample> = (0..12).map(|k| s(k * 600)).collect();
    samples.extend((0..6).map(|k| s(5 * 3600 + k * 600)));
    tier.append(PV, PayloadType::ScalarDouble, &samples)
        .expect("append");

    // from between samples: the one before, then (from, to].
    assert_eq!(
        collect(&tier, t(1250), t(2400)),
        vec![t(1200), t(1800), t(2400)]
    );
    // from exactly on a sample: that sample once.
    assert_eq!(collect(&tier, t(1200), t(1900)), vec![t(1200), t(1800)]);
    // from in the gap: the last sample of hour 1, then hour 5.
    assert_eq!(
        collect(&tier, t(3 * 3600), t(5 * 3600 + 600)),
        vec![t(11 * 600), t(5 * 3600), t(5 * 3600 + 600)]
    );
    // from before all data: everything from the start.
    assert_eq!(
        collect(&tier, Timestamp::new(0, 0), t(600)),
        vec![t(0), t(600)]
    );
    // A range after all data still shows the last value.
    assert_eq!(
        collect(&tier, t(9 * 3600), t(10 * 3600)),
        vec![t(5 * 3600 + 3000)]
    );
    // No files at all.
    assert!(
        collect(
            &Tier::new("X", dir.path().join("none"), Granularity::Hour),
            t(0),
            t(1)
        )
        .is_empty()
    );
}

#[test]
fn listing_ignores_other_pvs_and_foreign_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let tier = Tier::new("STS", dir.path(), Granularity::Hour);
    tier.append(PV, PayloadType::ScalarDouble, &[s(0)])
        .expect("append");
    tier.append("SIM:AI-10", PayloadType::ScalarDouble, &[s(0)])
        .expect("append");
    tier.append("SIM:AI-1_X", PayloadType::ScalarDouble, &[s(0)])
        .expect("append");
    std::fs::write(dir.path().join("SIM/AI/1:notapartition.pb"), b"x").expect("write");
    std::fs::write(dir.path().join("SIM/AI/1:2024_01_01.pb"), b"x").expect("write");
    let parts = tier.partitions(PV).expect("list");
    assert_eq!(parts.len(), 1);
    assert!(parts[0].path.ends_with("SIM/AI/1:2024_01_01_00.pb"));
}

#[test]
fn bad_names_are_typed_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let tier = Tier::new("STS", dir.path(), Granularity::Hour);
    for name in ["../x", "/etc/passwd", "a::b", ""] {
        let err = tier
            .append(name, PayloadType::ScalarDouble, &[s(0)])
            .expect_err("refused");
        assert!(matches!(err, StorageError::BadName { .. }), "{err}");
        assert!(tier.query(name, t(0), t(1)).is_err());
    }
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

#[test]
fn encoded_lines_split_into_partitions_like_samples() {
    let dir = tempfile::tempdir().expect("tmp");
    let by_lines = Tier::new("STS", dir.path().join("lines"), Granularity::Hour);
    let by_samples = Tier::new("STS", dir.path().join("samples"), Granularity::Hour);
    let samples: Vec<Sample> = (0..18).map(|k| s(3600 + k * 600)).collect();
    let mut lines = Vec::new();
    let mut scratch = Vec::new();
    for x in &samples {
        archiver_pb::codec::encode_line(x, 2024, &mut lines, &mut scratch).expect("enc");
    }
    let c = by_lines
        .append_lines(PV, PayloadType::ScalarDouble, 2024, &lines)
        .expect("append");
    assert_eq!(c.written, 18);
    by_samples
        .append(PV, PayloadType::ScalarDouble, &samples)
        .expect("append");
    let a = by_lines.partitions(PV).expect("list");
    let b = by_samples.partitions(PV).expect("list");
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            std::fs::read(&x.path).expect("read"),
            std::fs::read(&y.path).expect("read")
        );
    }
    // Undecodable lines are counted once, wherever they are.
    let mut bad = b"\xff\n".to_vec();
    bad.extend_from_slice(&lines);
    bad.extend_from_slice(b"\xff\xff\n");
    let other = Tier::new("STS", dir.path().join("bad"), Granularity::Hour);
    let c = other
        .append_lines(PV, PayloadType::ScalarDouble, 2024, &bad)
        .expect("append");
    assert_eq!((c.written, c.invalid), (18, 2));
    // Again: every line refused as not newer.
    let c = by_lines
        .append_lines(PV, PayloadType::ScalarDouble, 2024, &lines)
        .expect("append");
    assert_eq!((c.written, c.not_newer), (0, 18));
}

#[test]
fn a_torn_last_line_is_cut_on_the_next_append_and_counted() {
    use std::sync::atomic::Ordering::Relaxed;
    let sim = archiver_storage::testing::SimBackend::new();
    let backend = archiver_storage::Backend::new(sim.clone());
    let tier = Tier::with_backend("STS", "/sts", Granularity::Hour, backend.clone());
    tier.append(PV, PayloadType::ScalarDouble, &[s(10)])
        .expect("append");
    let path = tier.file_for(PV, t(10).secs).expect("path");
    let mut bytes = sim.read_file(&path).expect("file");
    bytes.extend_from_slice(b"\x08\x01\x10"); // a crash in the middle of a line
    sim.put_file(&path, &bytes);
    tier.append(PV, PayloadType::ScalarDouble, &[s(20)])
        .expect("append");
    let c = backend.counters();
    assert_eq!(
        (c.torn_repairs.load(Relaxed), c.torn_bytes.load(Relaxed)),
        (1, 3)
    );
    assert_eq!(collect(&tier, t(0), t(100)), vec![t(10), t(20)]);
}
