//! The tier through the fault-injecting backend: a full disk in the middle of an append, a
//! short write, an error at every operation of an append, and a crash after every number
//! of operations, for both sync policies and every crash image. After each: every file
//! decodes, holds a prefix of the samples in order, each once, no torn line once reopened;
//! and the batch is written exactly once when the fault is gone.

use std::io::{Cursor, ErrorKind};
use std::path::Path;

use archiver_pb::time::start_of_year;
use archiver_pb::{Granularity, PayloadType, PbReader, Sample, Timestamp, Value};
use archiver_storage::testing::{CrashImage, Fault, SimBackend};
use archiver_storage::{Backend, StorageError, SyncPolicy, Tier, WriteFailureReason};

const PV: &str = "SIM:AI-1";
const TY: PayloadType = PayloadType::ScalarDouble;

fn t(secs_into_2024: i64) -> Timestamp {
    Timestamp::new(start_of_year(2024) + secs_into_2024, 250)
}

fn s(secs: i64) -> Sample {
    Sample::new(t(secs), Value::ScalarDouble(secs as f64))
}

/// Batch `b` (0-based): 10 samples 5 min apart, the batches following each other, so
/// every batch from the second on crosses an hour (a new partition, and at batch 0 a new
/// PV folder).
fn batch(b: i64) -> Vec<Sample> {
    (0..10).map(|k| s(3000 + (b * 10 + k) * 300)).collect()
}

fn sts(sim: &SimBackend, policy: SyncPolicy) -> Tier {
    Tier::with_backend(
        "STS",
        "/arch/sts",
        Granularity::Hour,
        Backend::new(sim.clone()),
    )
    .with_sync_policy(policy)
}

/// What the files of PV hold, partition by partition: (samples, skipped lines, torn
/// tails). Files without a complete header count as empty.
fn stored(sim: &SimBackend) -> (Vec<Sample>, u64, usize) {
    let lister = sts(sim, SyncPolicy::OsWriteback);
    let (mut out, mut skipped, mut torn) = (Vec::new(), 0, 0);
    for p in lister.partitions(PV).expect("list") {
        let bytes = sim.read_file(&p.path).expect("file");
        let Ok(mut r) = PbReader::new(Cursor::new(bytes)) else {
            continue;
        };
        while let Some(x) = r.next_sample().expect("read") {
            out.push(x.clone());
        }
        skipped += r.skipped_lines();
        torn += usize::from(r.torn_tail());
    }
    (out, skipped, torn)
}

fn all_files(sim: &SimBackend) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    sim.files()
        .into_iter()
        .map(|p| {
            let b = sim.read_file(&p).expect("file");
            (p, b)
        })
        .collect()
}

fn is_no_space(e: &StorageError) -> bool {
    e.io_error()
        .is_some_and(|e| e.kind() == ErrorKind::StorageFull && e.raw_os_error() == Some(28))
}

#[test]
fn enospc_in_the_middle_of_an_append_keeps_no_torn_line_and_the_retry_writes_once() {
    let sim = SimBackend::new();
    let tier = sts(&sim, SyncPolicy::OsWriteback);
    assert_eq!(tier.append(PV, TY, &batch(0)).expect("a").written, 10);
    let before = all_files(&sim);
    // Room for about half of the next batch: the disk fills in the middle of a line.
    sim.set_capacity(Some(sim.used_bytes() + 111));
    let err = tier.append(PV, TY, &batch(1)).expect_err("disk full");
    assert!(is_no_space(&err), "{err}");
    let (samples, skipped, torn) = stored(&sim);
    assert_eq!(samples, batch(0), "nothing of the failed batch stays");
    assert_eq!((skipped, torn), (0, 0));
    for (path, bytes) in &before {
        assert_eq!(
            sim.read_file(path).as_ref(),
            Some(bytes),
            "{}",
            path.display()
        );
    }
    // Still full: the same again, nothing changes.
    assert!(tier.append(PV, TY, &batch(1)).is_err());
    assert_eq!(stored(&sim).0, batch(0));

    // Space returns: the kept batch is written, once, and counted as written.
    sim.set_capacity(None);
    assert_eq!(tier.append(PV, TY, &batch(1)).expect("retry").written, 10);
    let (samples, skipped, torn) = stored(&sim);
    assert_eq!(samples, [batch(0), batch(1)].concat());
    assert_eq!((skipped, torn), (0, 0));
}

/// A full disk is counted by reason and kept as the PV's last write error, for /metrics
/// and getPVStatus; the PV's next good write clears its error, the count stays; a clone of
/// the tier (the engine's, ETL's) shares the record.
#[test]
fn a_failed_write_is_counted_by_reason_and_kept_as_the_pvs_last_error_until_it_succeeds() {
    let sim = SimBackend::new();
    let tier = sts(&sim, SyncPolicy::OsWriteback);
    let view = tier.clone();
    tier.append(PV, TY, &batch(0)).expect("a");
    assert_eq!(tier.write_failures().by_reason, [0; 4]);
    assert_eq!(tier.last_write_error(PV), None);
    sim.set_capacity(Some(sim.used_bytes()));
    for _ in 0..3 {
        tier.append(PV, TY, &batch(1)).expect_err("full");
    }
    let (mut lines, mut scratch) = (Vec::new(), Vec::new());
    archiver_pb::codec::encode_line(&s(99_000), 2024, &mut lines, &mut scratch).expect("line");
    tier.append_lines("OTHER:PV", TY, 2024, &lines)
        .expect_err("full");
    let counts: Vec<_> = view.write_failures().iter().collect();
    assert_eq!(counts[0], (WriteFailureReason::OutOfSpace, 4), "{counts:?}");
    assert!(counts[1..].iter().all(|(_, n)| *n == 0), "{counts:?}");
    let last = view.last_write_error(PV).expect("a last error");
    assert_eq!(last.reason, WriteFailureReason::OutOfSpace);
    assert!(last.message.contains("STS"), "{}", last.message);
    assert!(last.at_secs > 1_700_000_000);
    assert_eq!(view.failing_pvs(), 2);
    sim.set_capacity(None);
    tier.append(PV, TY, &batch(1)).expect("retry");
    assert_eq!(view.last_write_error(PV), None);
    assert!(view.last_write_error("OTHER:PV").is_some());
    assert_eq!(view.failing_pvs(), 1);
    assert_eq!(
        view.write_failures().by_reason[0],
        4,
        "a count never goes down"
    );
}

#[test]
fn a_short_write_is_rolled_back_for_lines_as_for_samples() {
    let sim = SimBackend::new();
    let tier = sts(&sim, SyncPolicy::EachWrite);
    tier.append(PV, TY, &batch(0)).expect("a");
    let mut lines = Vec::new();
    for x in &batch(1) {
        archiver_pb::codec::encode_line(x, 2024, &mut lines, &mut Vec::new()).expect("enc");
    }
    // Arm every operation of the next append in turn until one is not reached.
    let mut hit = false;
    for k in 0..20 {
        let (ops, fired_before) = (sim.ops(), sim.faults_fired());
        sim.fail_at(ops + k, Fault::ShortWrite);
        let r = tier.append_lines(PV, TY, 2024, &lines);
        let fired = sim.faults_fired() > fired_before;
        sim.clear_faults();
        if !fired {
            // Written when the disk behaves, once.
            assert_eq!(r.expect("no fault").written, 10);
            assert_eq!(stored(&sim).0, [batch(0), batch(1)].concat());
            assert!(hit, "a short write happened");
            return;
        }
        let log = sim.op_log();
        hit |= log[usize::try_from(ops + k).expect("index")].contains("append");
        assert!(r.is_err());
        let (samples, skipped, torn) = stored(&sim);
        assert_eq!(samples, batch(0), "fault at op {}", ops + k);
        assert_eq!((skipped, torn), (0, 0));
    }
    panic!("more than 20 operations");
}

#[test]
fn an_error_at_every_operation_of_an_append_leaves_the_files_as_they_were() {
    for policy in [SyncPolicy::OsWriteback, SyncPolicy::EachWrite] {
        for fault in [
            Fault::Error(ErrorKind::Other),
            Fault::NoSpace,
            Fault::ShortWrite,
        ] {
            let mut reached_end = false;
            for k in 0..200 {
                let sim = SimBackend::new();
                let tier = sts(&sim, policy);
                tier.append(PV, TY, &batch(0)).expect("a");
                let before = stored(&sim).0;
                let first = sim.ops();
                sim.fail_at(first + k, fault);
                // Batch 1 crosses into a new hour: two partitions, one of them new.
                let r = tier.append(PV, TY, &batch(1));
                let ctx = format!("{policy:?} {fault:?} at op {}: {:?}", first + k, r);
                if sim.faults_fired() == 0 {
                    assert_eq!(r.expect("no fault").written, 10, "{ctx}");
                    reached_end = true;
                    break;
                }
                assert!(r.is_err(), "{ctx}");
                let (samples, skipped, torn) = stored(&sim);
                assert_eq!(samples, before, "{ctx}");
                assert_eq!((skipped, torn), (0, 0), "{ctx}");
                // The fault is gone: the retry writes the whole batch, once.
                let c = tier.append(PV, TY, &batch(1)).expect("retry");
                assert_eq!(c.written, 10, "{ctx}");
                assert_eq!(c.refused(), 0, "{ctx}");
                assert_eq!(stored(&sim).0, [batch(0), batch(1)].concat(), "{ctx}");
            }
            assert!(
                reached_end,
                "{policy:?} {fault:?}: more than 200 operations?"
            );
        }
    }
}

/// Appends batches 0..4 until one fails; returns how many were acknowledged.
fn run_batches(tier: &Tier) -> usize {
    (0..4)
        .take_while(|b| tier.append(PV, TY, &batch(*b)).is_ok())
        .count()
}

#[test]
fn a_crash_after_any_number_of_operations_leaves_a_prefix_that_the_next_append_completes() {
    let everything: Vec<Sample> = (0..4).flat_map(batch).collect();
    for policy in [SyncPolicy::OsWriteback, SyncPolicy::EachWrite] {
        for image in [
            CrashImage::PowerLoss,
            CrashImage::PowerLossTorn,
            CrashImage::ProcessCrash,
        ] {
            let mut reached_end = false;
            let mut kept_some = false;
            for n in 0..400 {
                let sim = SimBackend::new();
                sim.fail_at(n, Fault::Crash);
                let acked = run_batches(&sts(&sim, policy));
                if !sim.is_crashed() {
                    assert_eq!(acked, 4);
                    if policy == SyncPolicy::EachWrite {
                        // Durable when acknowledged: a power loss now keeps everything.
                        let after = sim.crash_image(CrashImage::PowerLoss);
                        assert_eq!(stored(&after).0, everything);
                    }
                    reached_end = true;
                    break;
                }
                let ctx = format!("{policy:?} {image:?} crash at op {n}, {acked} batches acked");
                let after = sim.crash_image(image);
                let (samples, skipped, _torn) = stored(&after);
                assert_eq!(skipped, 0, "{ctx}: every line decodes");
                assert_eq!(
                    samples[..],
                    everything[..samples.len()],
                    "{ctx}: a prefix, in order, once"
                );
                let durable = policy == SyncPolicy::EachWrite || image == CrashImage::ProcessCrash;
                if durable {
                    assert!(samples.len() >= acked * 10, "{ctx}: acked batches survive");
                }
                kept_some |= !samples.is_empty();
                // The restarted writer repairs and completes: everything, once, no torn line.
                let restarted = sts(&after, policy);
                for b in 0..4 {
                    restarted.append(PV, TY, &batch(b)).expect("after restart");
                }
                let (samples, skipped, torn) = stored(&after);
                assert_eq!(samples, everything, "{ctx}");
                assert_eq!((skipped, torn), (0, 0), "{ctx}");
            }
            assert!(
                reached_end,
                "{policy:?} {image:?}: more than 400 operations?"
            );
            if policy == SyncPolicy::EachWrite || image == CrashImage::ProcessCrash {
                assert!(kept_some, "{policy:?} {image:?}: some crash kept data");
            }
        }
    }
}

#[test]
fn a_rewrite_is_the_old_file_or_the_new_one_after_any_crash() {
    let encode = |b: std::ops::Range<i64>| {
        let mut out = Vec::new();
        archiver_pb::codec::encode_header_line(
            &archiver_pb::PayloadInfo::new(TY, PV, 2024),
            &mut out,
        );
        for x in b.flat_map(batch) {
            archiver_pb::codec::encode_line(&x, 2024, &mut out, &mut Vec::new()).expect("enc");
        }
        out
    };
    let mut reached_end = false;
    for n in 0..100 {
        let sim = SimBackend::new();
        let tier = sts(&sim, SyncPolicy::OsWriteback);
        let path = tier.file_for(PV, t(3000).secs).expect("path");
        let old = encode(0..1);
        sim.put_file(&path, &old);
        // Whole files of this PV (their times are not checked against the partition).
        let new = encode(0..2);
        sim.fail_at(n, Fault::Crash);
        let lock = tier.lock_pv(PV).expect("lock");
        let r = tier.replace_partition_locked(&lock, t(3000).secs, &new);
        drop(lock);
        if !sim.is_crashed() {
            assert_eq!(r.expect("no crash"), path);
            assert_eq!(sim.read_file(&path), Some(new.clone()));
            // Durable when it returns: a power loss now keeps the new file.
            let after = sim.crash_image(CrashImage::PowerLoss);
            assert_eq!(after.read_file(&path), Some(new.clone()));
            reached_end = true;
            break;
        }
        for image in [CrashImage::PowerLoss, CrashImage::PowerLossTorn] {
            let after = sim.crash_image(image);
            let got = after.read_file(&path);
            assert!(
                got == Some(old.clone()) || got == Some(new.clone()),
                "crash at op {n}, {image:?}: {:?} bytes",
                got.map(|g| g.len())
            );
            // A left-over `.rewrite` file is not a partition.
            assert_eq!(
                sts(&after, SyncPolicy::OsWriteback)
                    .partitions(PV)
                    .expect("l")
                    .len(),
                1
            );
        }
    }
    assert!(reached_end);
    // A rewrite with another PV's contents is refused.
    let sim = SimBackend::new();
    let tier = sts(&sim, SyncPolicy::OsWriteback);
    let lock = tier.lock_pv("OTHER:PV").expect("lock");
    let err = tier
        .replace_partition_locked(&lock, t(0).secs, &encode(0..1))
        .expect_err("other PV");
    assert!(matches!(err, StorageError::OtherPv { .. }), "{err}");
}

#[test]
fn files_without_a_header_read_as_empty_and_are_started_afresh() {
    let sim = SimBackend::new();
    let tier = sts(&sim, SyncPolicy::OsWriteback);
    let path = tier.file_for(PV, t(3000).secs).expect("path");
    sim.put_file(&path, b"");
    let other = tier.file_for(PV, t(7200).secs).expect("path");
    sim.put_file(&other, b"\x08\x06\x12"); // a header cut before its newline
    assert_eq!(tier.last_time(PV).expect("last"), None);
    let mut q = tier.query(PV, t(0), t(100_000)).expect("query");
    assert!(q.next_sample().expect("next").is_none());
    tier.append(PV, TY, &batch(0)).expect("append");
    assert_eq!(stored(&sim).0, batch(0));
    assert_eq!(tier.last_time(PV).expect("last"), Some(batch(0)[9].time));
    assert!(Path::new(&other).starts_with("/arch/sts"));
}
