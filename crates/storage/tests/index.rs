//! The partition index: a big folder of many PVs' files is listed once for all of their
//! lookups, and any change of the folder (by this tier, another tier object, or anything
//! else) is seen by the next lookup.

use archiver_pb::time::start_of_year;
use archiver_pb::{Granularity, PayloadType, Sample, Timestamp, Value};
use archiver_storage::testing::SimBackend;
use archiver_storage::{Backend, Tier};

const TY: PayloadType = PayloadType::ScalarDouble;

fn s(secs: i64) -> Sample {
    Sample::new(
        Timestamp::new(start_of_year(2024) + secs, 0),
        Value::ScalarDouble(1.0),
    )
}

fn lists(sim: &SimBackend) -> usize {
    sim.op_log()
        .iter()
        .filter(|l| l.contains(": list "))
        .count()
}

#[test]
fn lookups_of_many_pvs_in_one_folder_list_it_once_and_see_every_change() {
    let sim = SimBackend::new();
    let tier = Tier::with_backend("STS", "/sts", Granularity::Hour, Backend::new(sim.clone()));
    let pvs: Vec<String> = (0..200).map(|i| format!("SC:AI:{i}")).collect();
    for pv in &pvs {
        tier.append(pv, TY, &[s(10), s(3610)]).expect("append");
    }
    let before = lists(&sim);
    for pv in &pvs {
        assert_eq!(tier.partitions(pv).expect("list").len(), 2, "{pv}");
    }
    assert_eq!(lists(&sim) - before, 1, "one listing for 200 lookups");
    assert_eq!(tier.index_size(), (1, 400));
    // `SC:AI:1` is a prefix of `SC:AI:10`...: the terminator keeps them apart.
    assert!(tier.partitions("SC:AI:1").expect("l").iter().all(|p| {
        p.path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("1:"))
    }));
    // Another tier object on the same backend (its own index) creates a file: seen.
    let other = Tier::with_backend("STS", "/sts", Granularity::Hour, Backend::new(sim.clone()));
    other.append("SC:AI:7", TY, &[s(7210)]).expect("append");
    assert_eq!(tier.partitions("SC:AI:7").expect("l").len(), 3);
    // A file removed behind the index's back: gone at the next lookup.
    let first = tier.partitions("SC:AI:8").expect("l")[0].path.clone();
    let lock = other.lock_pv("SC:AI:8").expect("lock");
    other.remove_file_locked(&lock, &first).expect("remove");
    drop(lock);
    assert_eq!(tier.partitions("SC:AI:8").expect("l").len(), 1);
    // A PV with no files, and a folder that does not exist.
    assert!(tier.partitions("SC:AI:999").expect("l").is_empty());
    assert!(tier.partitions("NO:SUCH").expect("l").is_empty());
}

#[test]
fn on_a_real_folder_a_settled_listing_is_reused_and_new_files_are_seen() {
    let dir = tempfile::tempdir().expect("tmp");
    let tier = Tier::new("STS", dir.path(), Granularity::Hour);
    for i in 0..100 {
        tier.append(&format!("R:A:{i}"), TY, &[s(10)])
            .expect("append");
    }
    // Settle the folder's time, so the listing is cached.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(tier.partitions("R:A:5").expect("l").len(), 1);
    assert_eq!(tier.index_size().0, 1, "cached once settled");
    let other = Tier::new("STS", dir.path(), Granularity::Hour);
    other.append("R:A:5", TY, &[s(3610)]).expect("append");
    assert_eq!(
        tier.partitions("R:A:5").expect("l").len(),
        2,
        "a new file is seen at once"
    );
}

/// 100,000 PVs rolling over to a new partition, or ETL emptying a folder, change it
/// thousands of times: the files this tier creates and removes are applied to the cached
/// listing, so lookups between them do not list the folder again each time (they did:
/// a restart during ETL took minutes), and a foreign change is still seen at once.
#[test]
fn a_folder_this_tier_keeps_changing_is_not_listed_at_every_lookup() {
    let sim = SimBackend::new();
    let tier = Tier::with_backend("STS", "/sts", Granularity::Hour, Backend::new(sim.clone()));
    let pvs: Vec<String> = (0..300).map(|i| format!("SC:AI:{i}")).collect();
    for pv in &pvs {
        tier.append(pv, TY, &[s(10)]).expect("append");
    }
    assert_eq!(tier.partitions("SC:AI:0").expect("l").len(), 1);
    let before = lists(&sim);
    // Every PV gets a new partition (a file created), each followed by lookups.
    for pv in &pvs {
        tier.append(pv, TY, &[s(3610)]).expect("append");
        assert_eq!(tier.partitions(pv).expect("l").len(), 2, "{pv}");
        assert_eq!(tier.partitions("SC:AI:0").expect("l").len(), 2);
    }
    // ...then loses its first one (ETL's delete after the move).
    for pv in &pvs {
        let first = tier.partitions(pv).expect("l")[0].path.clone();
        let lock = tier.lock_pv(pv).expect("lock");
        tier.remove_file_locked(&lock, &first).expect("remove");
        drop(lock);
        assert_eq!(tier.partitions(pv).expect("l").len(), 1, "{pv}");
    }
    assert_eq!(
        lists(&sim) - before,
        0,
        "600 changes of our own, no listing"
    );
    // A change by someone else after ours: seen at the next lookup.
    let other = Tier::with_backend("STS", "/sts", Granularity::Hour, Backend::new(sim.clone()));
    other.append("SC:AI:5", TY, &[s(7210)]).expect("append");
    assert_eq!(tier.partitions("SC:AI:5").expect("l").len(), 2);
    assert_eq!(lists(&sim) - before, 1);
}
