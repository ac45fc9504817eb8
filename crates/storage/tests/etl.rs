//! ETL between stores with the Java rules: the current partition never moves, hold and
//! gather, the schedule, year boundaries, idempotent re-runs, the blackhole, the
//! out-of-space policies, many PVs, consolidation. Time is given to each run (the service
//! above passes its clock's "now"), so every test steps through days in microseconds.

use archiver_pb::time::start_of_year;
use archiver_pb::{PayloadType, Sample, Timestamp, Value};
use archiver_storage::testing::{Fault, SimBackend};
use archiver_storage::{
    Backend, ChainStore, DataStores, Etl, EtlMode, EtlPv, OutOfSpacePolicy, Tier,
};

const TY: PayloadType = PayloadType::ScalarDouble;
const PV: &str = "ETL:AI-1";
const H: i64 = 3600;
const D: i64 = 86400;

fn at(secs: i64) -> Timestamp {
    Timestamp::new(secs, 0)
}

fn sample(secs: i64) -> Sample {
    Sample::new(at(secs), Value::ScalarDouble(secs as f64))
}

fn url(name: &str, g: &str, extra: &str) -> String {
    format!(
        "pb://localhost?name={name}&rootFolder=/arch/{}&partitionGranularity={g}{extra}",
        name.to_lowercase()
    )
}

/// STS hourly, MTS daily hold=2 gather=1, LTS yearly (the defaults), plus `more`.
fn stores(sim: &SimBackend, more: &[&str]) -> DataStores {
    let mut urls = vec![
        url("STS", "PARTITION_HOUR", ""),
        url("MTS", "PARTITION_DAY", "&hold=2&gather=1"),
        url("LTS", "PARTITION_YEAR", ""),
    ];
    urls.extend(more.iter().map(|s| s.to_string()));
    DataStores::from_urls(urls, Backend::new(sim.clone())).expect("stores")
}

/// Every sample of `pv` in `tier`, oldest first.
fn read(tier: &Tier, pv: &str) -> Vec<Sample> {
    let mut q = tier
        .query(pv, at(0), at(i64::from(i32::MAX)))
        .expect("query");
    let mut out = Vec::new();
    while let Some(s) = q.next_sample().expect("read") {
        out.push(s.clone());
    }
    out
}

fn starts(tier: &Tier, pv: &str) -> Vec<i64> {
    tier.partitions(pv)
        .expect("list")
        .iter()
        .map(|p| p.start)
        .collect()
}

/// Samples every 10 minutes over `[from, to)`.
fn fill(tier: &Tier, pv: &str, from: i64, to: i64) -> Vec<Sample> {
    let v: Vec<Sample> = (from..to).step_by(600).map(sample).collect();
    tier.append(pv, TY, &v).expect("append");
    v
}

#[test]
fn the_schedule_is_aligned_to_the_source_granularity_capped_at_8_hours_plus_5_minutes() {
    let sim = SimBackend::new();
    let etl = Etl::new(stores(&sim, &[]), OutOfSpacePolicy::default());
    assert_eq!(etl.stages(), 2);
    assert_eq!(etl.stage_period(0), Some(H));
    assert_eq!(etl.stage_period(1), Some(8 * H));
    assert_eq!(etl.stage_period(2), None);
    let t0 = start_of_year(2024) + 10 * D; // a midnight
    assert_eq!(etl.next_run(0, t0), Some(t0 + 5 * 60));
    assert_eq!(etl.next_run(0, t0 + 5 * 60), Some(t0 + H + 5 * 60));
    assert_eq!(etl.next_run(0, t0 + 7 * 60), Some(t0 + H + 5 * 60));
    assert_eq!(etl.next_run(1, t0 + 7 * 60), Some(t0 + 8 * H + 5 * 60));
    assert_eq!(etl.stage_names(1), Some(("MTS", "LTS")));
    // A 5-minute STS before a daily MTS: stage 1 is 8 h, stage 0 5 min; a yearly stage
    // after an 8-hour one stays at 8 h (raised to the earlier stages, capped).
    let five = DataStores::from_urls(
        [
            url("STS", "PARTITION_5MIN", ""),
            url("MTS", "PARTITION_DAY", ""),
        ],
        Backend::new(sim.clone()),
    )
    .expect("stores");
    let etl = Etl::new(five, OutOfSpacePolicy::default());
    assert_eq!(etl.stage_period(0), Some(300));
    assert_eq!(etl.stage_period(1), None);
}

#[test]
fn the_current_partition_never_moves_and_closed_hours_move_into_the_day_file() {
    let sim = SimBackend::new();
    let ds = stores(&sim, &[]);
    let (sts, mts) = (&ds.tiers()[0], &ds.tiers()[1]);
    let day = start_of_year(2024) + 40 * D;
    let written = fill(sts, PV, day, day + 3 * H + 1800); // 3 closed hours and half of one
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    let now = at(day + 3 * H + 1800);
    let c = etl.run_pv(0, PV, now, EtlMode::Scheduled).expect("etl");
    assert_eq!(c.files_moved, 3);
    assert_eq!(c.samples_moved, 18);
    assert_eq!(starts(sts, PV), vec![day + 3 * H], "the current hour stays");
    assert_eq!(starts(mts, PV), vec![day]);
    // Nothing lost, nothing twice, across the two stores.
    let mut both = read(mts, PV);
    both.extend(read(sts, PV));
    assert_eq!(both, written);
    // A re-run at the same time moves nothing.
    let c = etl.run_pv(0, PV, now, EtlMode::Scheduled).expect("etl");
    assert_eq!(c.files_moved, 0);
}

#[test]
fn hold_and_gather_move_in_batches_as_java_does() {
    // MTS daily, hold=2 gather=1: nothing moves until the oldest day's first sample is at
    // or before the last second of the partition before now − 2 days; then the days whose
    // first sample is at or before the last second of the partition before now − 2 days
    // move (hold − gather + 1 = 2): at every midnight exactly one day moves.
    let sim = SimBackend::new();
    let ds = stores(&sim, &[]);
    let (mts, lts) = (&ds.tiers()[1], &ds.tiers()[2]);
    let d0 = start_of_year(2024) + 100 * D;
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    let mut moved_days = Vec::new();
    for day in 0..10 {
        fill(mts, PV, d0 + day * D, d0 + (day + 1) * D);
        // Runs every 8 hours after the day was written.
        for run in 0..3 {
            let now = at(d0 + (day + 1) * D + run * 8 * H + 300);
            let before = starts(mts, PV);
            let c = etl.run_pv(1, PV, now, EtlMode::Scheduled).expect("etl");
            let after = starts(mts, PV);
            for p in before.iter().filter(|p| !after.contains(p)) {
                moved_days.push(((p - d0) / D, day + 1));
            }
            // Two closed days are always kept (hold 2), plus the current one.
            assert!(
                after.len() >= 2.min(day as usize + 1),
                "{after:?} at day {day}"
            );
            assert!(c.files_moved <= 1, "gather=1 moves one day at a time");
        }
    }
    // Day k moves at the first run of day k + 3 (now − 2 days is then in day k + 1, and
    // the partition before it is day k).
    let expect: Vec<(i64, i64)> = (0..8).map(|k| (k, k + 3)).collect();
    assert_eq!(moved_days, expect);
    assert_eq!(read(lts, PV).len(), 8 * 144);
    // Java's testHoldAndGather for hold=7 gather=5 (daily): each run moves 0 or 5 files.
    let sim = SimBackend::new();
    let ds = DataStores::from_urls(
        [
            url("MTS", "PARTITION_DAY", "&hold=7&gather=5"),
            url("LTS", "PARTITION_YEAR", ""),
        ],
        Backend::new(sim.clone()),
    )
    .expect("stores");
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    let mut sizes = Vec::new();
    for day in 0..40 {
        fill(&ds.tiers()[0], PV, d0 + day * D, d0 + (day + 1) * D);
        let listed = etl
            .eligible(0, PV, at(d0 + (day + 1) * D + 10), EtlMode::Scheduled)
            .expect("eligible");
        sizes.push(listed.len());
        etl.run_pv(0, PV, at(d0 + (day + 1) * D + 10), EtlMode::Scheduled)
            .expect("etl");
    }
    assert!(sizes.iter().all(|n| *n == 0 || *n == 5), "{sizes:?}");
    assert!(sizes.contains(&5));
}

#[test]
fn a_year_boundary_splits_into_the_right_day_and_year_files() {
    let sim = SimBackend::new();
    let ds = stores(&sim, &[]);
    let (sts, mts, lts) = (&ds.tiers()[0], &ds.tiers()[1], &ds.tiers()[2]);
    let ny = start_of_year(2025);
    let written = fill(sts, PV, ny - 2 * H, ny + 2 * H);
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    etl.run_pv(0, PV, at(ny + 2 * H + 300), EtlMode::Scheduled)
        .expect("etl");
    assert_eq!(starts(mts, PV), vec![ny - D, ny]);
    // Days later, both days reach the LTS, each into its own year's file.
    etl.run_pv(1, PV, at(ny + 5 * D), EtlMode::Scheduled)
        .expect("etl");
    assert_eq!(starts(lts, PV), vec![start_of_year(2024), ny]);
    let mut all = read(lts, PV);
    all.extend(read(mts, PV));
    all.extend(read(sts, PV));
    assert_eq!(all, written);
}

#[test]
fn a_rerun_after_the_append_but_before_the_delete_stores_nothing_twice() {
    let sim = SimBackend::new();
    let ds = stores(&sim, &[]);
    let (sts, mts) = (&ds.tiers()[0], &ds.tiers()[1]);
    let day = start_of_year(2024) + 7 * D;
    let written = fill(sts, PV, day, day + 2 * H);
    // As if a run had appended the first hour to the MTS and died before deleting it.
    mts.append(PV, TY, &written[..6]).expect("append");
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    let c = etl
        .run_pv(0, PV, at(day + 3 * H), EtlMode::Scheduled)
        .expect("etl");
    assert_eq!(
        (c.files_moved, c.samples_moved, c.samples_skipped),
        (2, 6, 6)
    );
    assert_eq!(read(mts, PV), written);
    assert!(sts.partitions(PV).expect("l").is_empty());
}

#[test]
fn the_blackhole_deletes_what_reaches_it() {
    let sim = SimBackend::new();
    let ds = stores(&sim, &["blackhole://localhost?name=Trash"]);
    assert_eq!(ds.blackhole(), Some("Trash"));
    assert_eq!(
        ds.urls().last().map(String::as_str),
        Some("blackhole://localhost?name=Trash")
    );
    // A PV's dataStores may list it; it resolves to no tier.
    assert_eq!(ds.resolve(&ds.urls()).expect("resolve").len(), 3);
    let lts = &ds.tiers()[2];
    fill(lts, PV, start_of_year(2020), start_of_year(2020) + D);
    fill(lts, PV, start_of_year(2024), start_of_year(2024) + D);
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    assert_eq!(etl.stages(), 3);
    assert_eq!(etl.stage_names(2), Some(("LTS", "Trash")));
    let c = etl
        .run_pv(2, PV, at(start_of_year(2024) + 10 * D), EtlMode::Scheduled)
        .expect("etl");
    assert_eq!(c.files_discarded, 1);
    assert_eq!(starts(lts, PV), vec![start_of_year(2024)]);
    // Nothing may follow the blackhole.
    let err = DataStores::from_urls(
        [
            url("STS", "PARTITION_HOUR", ""),
            "blackhole://localhost".to_string(),
            url("LTS", "PARTITION_YEAR", ""),
        ],
        Backend::new(sim),
    )
    .expect_err("after blackhole");
    assert!(err.to_string().contains("after the blackhole"), "{err}");
}

#[test]
fn out_of_space_policies_delete_or_keep_the_source_as_java_does() {
    let day = start_of_year(2024) + 50 * D;
    for (policy, stage, dropped) in [
        (OutOfSpacePolicy::DeleteSrcIfFirstDest, 0, true),
        (OutOfSpacePolicy::DeleteSrcIfFirstDest, 1, false),
        (OutOfSpacePolicy::DeleteSrc, 1, true),
        (OutOfSpacePolicy::Skip, 0, false),
    ] {
        let sim = SimBackend::new();
        let ds = stores(&sim, &[]);
        let src = &ds.tiers()[stage];
        fill(src, PV, day, day + 2 * H);
        let n = src.partitions(PV).expect("l").len() as u64;
        // Full: less than a file + 1 MiB left.
        sim.set_capacity(Some(sim.used_bytes() + 1000));
        let etl = Etl::new(ds.clone(), policy);
        let c = etl
            .run_pv(stage, PV, at(day + 30 * D), EtlMode::Scheduled)
            .expect("etl");
        let left = src.partitions(PV).expect("l").len() as u64;
        if dropped {
            assert_eq!(
                (c.files_dropped_out_of_space, left),
                (n, 0),
                "{policy:?} {stage}"
            );
        } else {
            // The first file that cannot move ends the PV's run.
            assert_eq!(
                (c.files_skipped_out_of_space, left),
                (1, n),
                "{policy:?} {stage}"
            );
        }
        assert_eq!(c.files_moved, 0);
        assert!(ds.tiers()[stage + 1].partitions(PV).expect("l").is_empty());
        // With room again, a kept file moves.
        sim.set_capacity(None);
        let c = etl
            .run_pv(stage, PV, at(day + 30 * D), EtlMode::Scheduled)
            .expect("etl");
        assert_eq!(c.files_moved, if dropped { 0 } else { n });
    }
    assert_eq!(
        "SKIP_ETL_WHEN_OUT_OF_SPACE".parse::<OutOfSpacePolicy>(),
        Ok(OutOfSpacePolicy::Skip)
    );
    assert!("FILL_THE_DISK".parse::<OutOfSpacePolicy>().is_err());
}

#[test]
fn many_pvs_move_each_its_own_files() {
    let sim = SimBackend::new();
    let ds = stores(&sim, &[]);
    let (sts, mts) = (&ds.tiers()[0], &ds.tiers()[1]);
    let day = start_of_year(2024) + 200 * D;
    let pvs: Vec<String> = (0..300).map(|i| format!("SC:AI:{i}")).collect();
    for pv in &pvs {
        fill(sts, pv, day, day + 3 * H);
    }
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    let all: Vec<EtlPv> = pvs
        .iter()
        .map(|pv| EtlPv {
            pv: pv.clone(),
            chain: None,
        })
        .collect();
    let c = etl.run_stage(0, &all, at(day + 2 * H + 60), EtlMode::Scheduled, &|| false);
    assert_eq!((c.files_moved, c.errors), (600, 0));
    assert_eq!(c.samples_moved, 300 * 12);
    for pv in &pvs {
        assert_eq!(starts(sts, pv), vec![day + 2 * H], "{pv}");
        assert_eq!(read(mts, pv).len(), 12, "{pv}");
    }
    // A stopped run moves nothing more.
    let c = etl.run_stage(0, &all, at(day + 5 * H), EtlMode::Scheduled, &|| true);
    assert_eq!(c, Default::default());
    assert_eq!(
        etl.totals()
            .files_moved
            .load(std::sync::atomic::Ordering::Relaxed),
        600
    );
}

#[test]
fn consolidation_moves_everything_down_to_the_named_store_now() {
    let sim = SimBackend::new();
    let ds = stores(&sim, &[]);
    let (sts, mts, lts) = (&ds.tiers()[0], &ds.tiers()[1], &ds.tiers()[2]);
    let day = start_of_year(2024) + 3 * D;
    let mut written = fill(mts, PV, day - 2 * D, day);
    written.extend(fill(sts, PV, day, day + 90 * 60));
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    let now = at(day + 90 * 60);
    etl.consolidate(PV, None, "LTS", now).expect("consolidate");
    assert!(
        sts.partitions(PV).expect("l").is_empty(),
        "the current hour too"
    );
    assert!(mts.partitions(PV).expect("l").is_empty());
    assert_eq!(read(lts, PV), written);
    // Into the MTS only; an unknown or first store is refused by name.
    fill(sts, PV, day + 2 * H, day + 3 * H);
    etl.consolidate(PV, None, "MTS", at(day + 2 * H))
        .expect("consolidate");
    assert_eq!(read(mts, PV).len(), 6);
    for bad in ["NOPE", "STS"] {
        let e = etl.consolidate(PV, None, bad, now).expect_err("bad store");
        assert!(e.to_string().contains(bad), "{e}");
    }
}

#[test]
fn empty_files_before_the_current_partition_are_removed() {
    let sim = SimBackend::new();
    let ds = stores(&sim, &[]);
    let sts = &ds.tiers()[0];
    let day = start_of_year(2024) + 9 * D;
    let path = sts.file_for(PV, day).expect("path");
    sim.put_file(&path, b"");
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    let c = etl
        .run_pv(0, PV, at(day + 2 * H), EtlMode::Scheduled)
        .expect("etl");
    assert_eq!(c.empty_files_removed, 1);
    assert!(sim.read_file(&path).is_none());
}

#[test]
fn each_pv_moves_along_its_own_data_stores() {
    let sim = SimBackend::new();
    let ds = stores(&sim, &["blackhole://localhost?name=Trash"]);
    let (sts, mts, lts) = (&ds.tiers()[0], &ds.tiers()[1], &ds.tiers()[2]);
    let day = start_of_year(2024) + 20 * D;
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    let chain = |urls: &[&str]| ChainStore::chain(urls);
    let (s_url, l_url) = (
        url("STS", "PARTITION_HOUR", ""),
        url("LTS", "PARTITION_YEAR", ""),
    );
    // Only the STS: nothing moves (its dataStores would not find the data elsewhere).
    fill(sts, "ONLY:STS", day, day + 2 * H);
    let only = chain(&[&s_url]);
    let c = etl
        .run_pv_chain(
            0,
            "ONLY:STS",
            Some(&only),
            at(day + 5 * H),
            EtlMode::Scheduled,
        )
        .expect("etl");
    assert_eq!(c, Default::default());
    assert_eq!(starts(sts, "ONLY:STS").len(), 2);
    // STS then LTS: the STS moves straight into the LTS.
    fill(sts, "SKIP:MTS", day, day + 2 * H);
    let skip = chain(&[&s_url, &l_url]);
    etl.run_pv_chain(
        0,
        "SKIP:MTS",
        Some(&skip),
        at(day + 5 * H),
        EtlMode::Scheduled,
    )
    .expect("etl");
    assert!(starts(mts, "SKIP:MTS").is_empty());
    assert_eq!(read(lts, "SKIP:MTS").len(), 12);
    // STS then a blackhole: deleted.
    fill(sts, "GONE", day, day + 2 * H);
    let gone = chain(&[&s_url, "blackhole://localhost"]);
    let c = etl
        .run_pv_chain(0, "GONE", Some(&gone), at(day + 5 * H), EtlMode::Scheduled)
        .expect("etl");
    assert_eq!(c.files_discarded, 2);
    // A PV whose list ends with the last configured store still meets the configured
    // blackhole (retention).
    let lts_only = chain(&[&l_url]);
    fill(lts, "OLD", start_of_year(2020), start_of_year(2020) + D);
    let c = etl
        .run_pv_chain(2, "OLD", Some(&lts_only), at(day), EtlMode::Scheduled)
        .expect("etl");
    assert_eq!(c.files_discarded, 1);
    // Consolidation follows the chain too.
    fill(sts, "SKIP:MTS", day + 3 * H, day + 4 * H);
    etl.consolidate("SKIP:MTS", Some(&skip), "LTS", at(day + 3 * H))
        .expect("consolidate");
    assert_eq!(read(lts, "SKIP:MTS").len(), 18);
    assert!(
        etl.consolidate("SKIP:MTS", Some(&skip), "MTS", at(day))
            .is_err()
    );
}

/// A toy reduction: every third sample (`every3`), or a failure (`bad`).
#[derive(Debug)]
struct EveryThird;

impl archiver_storage::Reducer for EveryThird {
    fn reduce(
        &self,
        post_processor: &str,
        payload_type: PayloadType,
        input: &[Sample],
        _from: Timestamp,
        _to: Timestamp,
    ) -> Result<(PayloadType, Vec<Sample>), String> {
        match post_processor {
            "every3" => Ok((payload_type, input.iter().step_by(3).cloned().collect())),
            other => Err(format!("no {other}")),
        }
    }
}

#[test]
fn a_store_caching_post_processors_gets_their_reductions_as_files_move_in() {
    let sim = SimBackend::new();
    let ds = DataStores::from_urls(
        [
            url("STS", "PARTITION_HOUR", ""),
            url("MTS", "PARTITION_DAY", "&pp=every3&pp=bad"),
        ],
        Backend::new(sim.clone()),
    )
    .expect("stores");
    let (sts, mts) = (&ds.tiers()[0], &ds.tiers()[1]);
    let day = start_of_year(2024) + 40 * D;
    let written = fill(sts, PV, day, day + 3 * H + 1800);
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default())
        .with_reducer(std::sync::Arc::new(EveryThird));
    let now = at(day + 3 * H + 1800);
    let c = etl.run_pv(0, PV, now, EtlMode::Scheduled).expect("etl");
    assert_eq!(c.files_moved, 3);
    assert_eq!((c.reductions_written, c.reductions_failed), (3, 3));
    // Each moved hour reduced on its own (6 samples an hour: the 1st and 4th).
    let reduced = read(&mts.reduced("every3"), PV);
    let expected: Vec<Sample> = written[..18]
        .chunks(6)
        .flat_map(|hour| hour.iter().step_by(3).cloned())
        .collect();
    assert_eq!(reduced, expected);
    assert_eq!(starts(&mts.reduced("every3"), PV), vec![day]);
    assert!(starts(&mts.reduced("bad"), PV).is_empty());
    // The samples themselves are untouched by the cache beside them.
    assert_eq!(read(mts, PV), written[..18].to_vec());
    // Deleting the PV's data removes its cached reductions too.
    mts.remove_pv_data(PV).expect("remove");
    assert!(starts(&mts.reduced("every3"), PV).is_empty());
    assert!(starts(mts, PV).is_empty());
}

/// `reducedata=<pp>` on a store (Java's `PlainStoragePlugin`): what ETL moves into it is
/// the file's samples reduced by the post-processor, not the raw ones; a re-run after the
/// source came back appends nothing twice; a reduction that fails leaves the file in the
/// source (nothing lost); without a reducer the lines are copied as they are.
#[test]
fn a_store_with_reducedata_gets_the_reduced_samples_instead_of_the_raw_ones() {
    let sim = SimBackend::new();
    let ds = DataStores::from_urls(
        [
            url("STS", "PARTITION_HOUR", ""),
            url("MTS", "PARTITION_DAY", "&reducedata=every3"),
        ],
        Backend::new(sim.clone()),
    )
    .expect("stores");
    let (sts, mts) = (&ds.tiers()[0], &ds.tiers()[1]);
    let day = start_of_year(2024) + 40 * D;
    let written = fill(sts, PV, day, day + 3 * H + 1800);
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default())
        .with_reducer(std::sync::Arc::new(EveryThird));
    let now = at(day + 3 * H + 1800);
    let c = etl.run_pv(0, PV, now, EtlMode::Scheduled).expect("etl");
    assert_eq!(
        (c.files_moved, c.samples_moved, c.errors),
        (3, 6, 0),
        "{c:?}"
    );
    // Each moved hour reduced on its own (6 samples an hour: the 1st and 4th).
    let expected: Vec<Sample> = written[..18]
        .chunks(6)
        .flat_map(|hour| hour.iter().step_by(3).cloned())
        .collect();
    assert_eq!(read(mts, PV), expected);
    assert_eq!(
        read(sts, PV),
        written[18..].to_vec(),
        "the current hour stays"
    );
    // The first hour again in the STS (a crash before its deletion): nothing twice.
    sts.append(PV, TY, &written[..6]).expect("append");
    let c = etl.run_pv(0, PV, now, EtlMode::Scheduled).expect("etl");
    assert_eq!((c.files_moved, c.samples_moved), (1, 0), "{c:?}");
    assert_eq!(read(mts, PV), expected);

    // A post-processor that fails: the files stay where they are.
    let ds = DataStores::from_urls(
        [
            url("STS", "PARTITION_HOUR", ""),
            url("MTS", "PARTITION_DAY", "&reducedata=bad"),
        ],
        Backend::new(SimBackend::new()),
    )
    .expect("stores");
    let (sts, mts) = (&ds.tiers()[0], &ds.tiers()[1]);
    let written = fill(sts, PV, day, day + 3 * H + 1800);
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default())
        .with_reducer(std::sync::Arc::new(EveryThird));
    let err = etl.run_pv(0, PV, now, EtlMode::Scheduled).unwrap_err();
    assert!(err.to_string().contains("reducedata=bad"), "{err}");
    assert_eq!(read(sts, PV), written);
    assert!(read(mts, PV).is_empty());
    // Without a reducer: the raw lines.
    let c = Etl::new(ds.clone(), OutOfSpacePolicy::default())
        .run_pv(0, PV, now, EtlMode::Scheduled)
        .expect("etl");
    assert_eq!(c.files_moved, 3);
    assert_eq!(read(mts, PV), written[..18].to_vec());
}

#[test]
fn a_simulated_year_keeps_few_files_per_pv_in_every_store() {
    // One PV, a sample every 10 minutes for a year (2023), each stage run on its Java
    // schedule (STS at hh:05, MTS every 8 h at +5 min): at every moment the STS holds at
    // most the current and the previous hour, the MTS at most hold + current days, and the
    // LTS one file per year; nothing is lost on the way.
    let sim = SimBackend::new();
    let ds = stores(&sim, &[]);
    let (sts, mts, lts) = (&ds.tiers()[0], &ds.tiers()[1], &ds.tiers()[2]);
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    let y0 = start_of_year(2023);
    let (mut max_sts, mut max_mts, mut written) = (0, 0, 0usize);
    for h in 0..365 * 24 {
        let t = y0 + h * H;
        written += fill(sts, PV, t, t + H).len();
        max_sts = max_sts.max(starts(sts, PV).len());
        // The runs of the hour that follows.
        let next = t + H;
        etl.run_pv(0, PV, at(next + 300), EtlMode::Scheduled)
            .expect("stage 0");
        if next % (8 * H) == 0 {
            etl.run_pv(1, PV, at(next + 300), EtlMode::Scheduled)
                .expect("stage 1");
        }
        max_mts = max_mts.max(starts(mts, PV).len());
    }
    eprintln!("files per PV after a simulated year: STS ≤ {max_sts}, MTS ≤ {max_mts}, LTS 1");
    // (Before each run; in service the current hour's file is there too.)
    assert_eq!(max_sts, 1, "the closed hour moves at hh:05");
    assert!(
        max_mts <= 3,
        "MTS hold=2 gather=1: {max_mts} day files at most"
    );
    assert_eq!(starts(lts, PV), vec![y0]);
    let mut all = read(lts, PV);
    all.extend(read(mts, PV));
    all.extend(read(sts, PV));
    assert_eq!(all.len(), written);
    assert!(all.windows(2).all(|w| w[0].time < w[1].time));
}

/// Named flags set by a test.
#[derive(Debug, Default)]
struct Flags(std::sync::Mutex<Vec<String>>);

impl Flags {
    fn set(&self, name: &str, on: bool) {
        let mut v = self.0.lock().expect("flags");
        v.retain(|n| n != name);
        if on {
            v.push(name.to_string());
        }
    }
}

impl archiver_storage::NamedFlags for Flags {
    fn named_flag(&self, name: &str) -> Option<bool> {
        let v = self.0.lock().expect("flags");
        if v.iter().any(|n| n == "UNREADABLE") {
            return None;
        }
        Some(v.iter().any(|n| n == name))
    }
}

#[test]
fn named_flags_hold_accumulate_or_discard_as_java_does() {
    // The MTS takes data only while IN_MTS is true; the STS gives data only while
    // OUT_STS is true.
    let sim = SimBackend::new();
    let ds = DataStores::from_urls(
        [
            url("STS", "PARTITION_HOUR", "&etlOutofStoreIf=OUT_STS"),
            url("MTS", "PARTITION_DAY", "&etlIntoStoreIf=IN_MTS"),
        ],
        Backend::new(sim.clone()),
    )
    .expect("stores");
    let (sts, mts) = (&ds.tiers()[0], &ds.tiers()[1]);
    let flags = std::sync::Arc::new(Flags::default());
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default()).with_named_flags(flags.clone());
    let day = 20_000 * D;
    let hour = |h: i64| day + h * H;
    let mut written = fill(sts, PV, hour(0), hour(4));
    let run = |h: i64| {
        etl.run_pv(0, PV, at(hour(h) + 300), EtlMode::Scheduled)
            .expect("etl")
    };
    // OUT_STS false (never set): the STS accumulates.
    let c = run(2);
    assert_eq!((c.files_moved, c.files_discarded), (0, 0));
    assert_eq!(starts(sts, PV), [hour(0), hour(1), hour(2), hour(3)]);
    // OUT_STS true but SKIP_MTS_FOR_ETL true: still held.
    flags.set("OUT_STS", true);
    flags.set("SKIP_MTS_FOR_ETL", true);
    let c = run(2);
    assert_eq!((c.files_moved, c.files_discarded), (0, 0));
    assert_eq!(starts(sts, PV).len(), 4);
    // SKIP_MTS_FOR_ETL false, IN_MTS true: hours 0 and 1 move into the MTS day file.
    flags.set("SKIP_MTS_FOR_ETL", false);
    flags.set("IN_MTS", true);
    let c = run(2);
    assert_eq!(c.files_moved, 2);
    assert_eq!(starts(sts, PV), [hour(2), hour(3)]);
    let kept: Vec<Sample> = written.drain(..12).collect();
    assert_eq!(read(mts, PV), kept);
    // Flags that cannot be read hold every move they gate (never a discard).
    flags.set("IN_MTS", false);
    flags.set("UNREADABLE", true);
    let c = run(4);
    assert_eq!((c.files_moved, c.files_discarded), (0, 0));
    assert_eq!(starts(sts, PV), [hour(2), hour(3)]);
    flags.set("UNREADABLE", false);
    // IN_MTS false: moves into the MTS discard the data (Java: "behaves like blackhole").
    let c = run(4);
    assert_eq!(c.files_discarded, 2);
    assert!(starts(sts, PV).is_empty());
    assert_eq!(read(mts, PV), kept, "the MTS keeps what it had");
}

fn etl_pvs(pvs: &[&str]) -> Vec<EtlPv> {
    pvs.iter()
        .map(|pv| EtlPv {
            pv: pv.to_string(),
            chain: None,
        })
        .collect()
}

/// Three PVs with two closed hours and the current one each in the STS.
fn three_pvs(sim: &SimBackend, day: i64) -> DataStores {
    let ds = stores(sim, &[]);
    for pv in ["SYNC:A", "SYNC:B", "SYNC:C"] {
        fill(&ds.tiers()[0], pv, day, day + 3 * H);
    }
    ds
}

/// The numbers of the operations `sync <path>` on the MTS file of `key` in `log`.
fn syncs_of(log: &[String], key: &str) -> Vec<u64> {
    log.iter()
        .filter(|l| l.contains(": sync ") && l.contains(&format!("/arch/mts/{key}:")))
        .filter_map(|l| l.split(':').next()?.parse().ok())
        .collect()
}

#[test]
fn a_pv_whose_sync_fails_in_a_batch_does_not_fail_the_others() {
    // (Found by a fresh-user test: one PV's destination file removed by a consolidation
    // between the batch's copy and its shared sync failed all 199 other PVs.)
    let day = start_of_year(2024) + 200 * D;
    let now = at(day + 2 * H + 60);
    let pvs = etl_pvs(&["SYNC:A", "SYNC:B", "SYNC:C"]);
    // Runs the stage on a new filesystem with every sync of SYNC:B's destination file
    // among `failing` (operation numbers) failing; the operations that sync it.
    let run = |failing: &[u64]| {
        let sim = SimBackend::new();
        let ds = three_pvs(&sim, day);
        let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
        let start = sim.ops();
        for k in failing {
            sim.fail_at(start + k, Fault::Error(std::io::ErrorKind::NotFound));
        }
        let c = etl.run_stage(0, &pvs, now, EtlMode::Scheduled, &|| false);
        let syncs: Vec<u64> = syncs_of(&sim.op_log(), "SYNC/B")
            .iter()
            .map(|n| n - start)
            .collect();
        (sim, ds, etl, c, syncs)
    };
    // Found by failing each sync of SYNC:B's file found so far, until no new one comes.
    let mut failing = run(&[]).4;
    let (sim, ds, etl, c) = loop {
        let (sim, ds, etl, c, syncs) = run(&failing);
        if syncs == failing {
            break (sim, ds, etl, c);
        }
        failing = syncs;
    };
    let (sts, mts) = (&ds.tiers()[0], &ds.tiers()[1]);
    assert_eq!(c.errors, 1, "{c:?}");
    for pv in ["SYNC:A", "SYNC:C"] {
        assert_eq!(starts(sts, pv), vec![day + 2 * H], "{pv} moved");
        assert_eq!(read(mts, pv).len(), 12, "{pv}");
    }
    assert_eq!(
        starts(sts, "SYNC:B"),
        vec![day, day + H, day + 2 * H],
        "SYNC:B kept"
    );
    // The next run moves it (its destination skips what it has).
    sim.clear_faults();
    let c = etl.run_stage(0, &pvs, now, EtlMode::Scheduled, &|| false);
    assert_eq!((c.errors, c.files_moved), (0, 2), "{c:?}");
    assert_eq!(read(mts, "SYNC:B").len(), 12);
    assert_eq!(read(sts, "SYNC:B").len(), 6);
}

#[test]
fn etl_skips_a_pv_being_consolidated_or_deleted_and_they_wait_for_its_batch() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let day = start_of_year(2024) + 200 * D;
    let now = at(day + 2 * H + 60);
    let sim = SimBackend::new();
    let ds = three_pvs(&sim, day);
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    let (sts, mts) = (&ds.tiers()[0], &ds.tiers()[1]);
    // A consolidation or deletion of SYNC:B holds its move lock: the batch leaves it
    // alone and moves the others, then waits for SYNC:B alone.
    let held = ds.lock_pv_moves("SYNC:B").expect("lock");
    let (e2, pvs) = (etl.clone(), etl_pvs(&["SYNC:A", "SYNC:B", "SYNC:C"]));
    let run = std::thread::spawn(move || e2.run_stage(0, &pvs, now, EtlMode::Scheduled, &|| false));
    let moved = |pv: &str| starts(sts, pv) == vec![day + 2 * H];
    let t = std::time::Instant::now();
    while !(moved("SYNC:A") && moved("SYNC:C")) {
        assert!(
            t.elapsed().as_secs() < 10,
            "SYNC:A and SYNC:C move while SYNC:B is held"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(starts(sts, "SYNC:B"), vec![day, day + H, day + 2 * H]);
    assert!(read(mts, "SYNC:B").is_empty());
    // A deletion waits for the lock too (it is not taken from under ETL).
    let (ds2, done) = (ds.clone(), Arc::new(AtomicBool::new(false)));
    let d2 = done.clone();
    let del = std::thread::spawn(move || {
        let c = ds2
            .delete_range("SYNC:B", at(day), at(day + 600))
            .expect("delete");
        d2.store(true, SeqCst);
        c
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!done.load(SeqCst), "the deletion waits");
    assert!(!run.is_finished(), "the run waits for SYNC:B");
    drop(held);
    assert_eq!(del.join().expect("join").samples_deleted, 1);
    let c = run.join().expect("join");
    assert_eq!((c.errors, c.files_moved), (0, 6), "{c:?}");
    // Whichever came first, SYNC:B moved without its deleted sample.
    assert!(moved("SYNC:B"));
    assert_eq!(read(mts, "SYNC:B").len(), 11);
}

#[test]
fn a_batch_ends_at_its_byte_bound_and_deletes_its_sources_before_the_next_copies() {
    // (Found by a fresh-user test: a 300-PV catch-up kept 1.4 GB in both stores for minutes.)
    let day = start_of_year(2024) + 200 * D;
    let now = at(day + 2 * H + 60);
    let names: Vec<String> = (0..10).map(|i| format!("BOUND:{i}")).collect();
    let pvs: Vec<EtlPv> = names
        .iter()
        .map(|pv| EtlPv {
            pv: pv.clone(),
            chain: None,
        })
        .collect();
    let sim = SimBackend::new();
    let ds = stores(&sim, &[]);
    for pv in &names {
        fill(&ds.tiers()[0], pv, day, day + 3 * H);
    }
    // A bound of 1 byte: every file ends its batch.
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default()).with_batch_bytes(1);
    let start = sim.ops();
    let c = etl.run_stage(0, &pvs, now, EtlMode::Scheduled, &|| false);
    assert_eq!(
        (c.files_moved, c.errors, c.samples_moved),
        (20, 0, 120),
        "{c:?}"
    );
    for pv in &names {
        assert_eq!(starts(&ds.tiers()[0], pv), vec![day + 2 * H], "{pv}");
        assert_eq!(read(&ds.tiers()[1], pv).len(), 12, "{pv}");
    }
    // Each PV's sources were deleted before the next PV's copies (without the bound all
    // 10 PVs are copied before any source is deleted).
    let log = &sim.op_log()[start as usize..];
    let ops = |what: &str, file: &str| -> Vec<usize> {
        log.iter()
            .enumerate()
            .filter(|(_, l)| l.contains(&format!(": {what} {file}")))
            .map(|(n, _)| n)
            .collect()
    };
    for i in 0..9 {
        let removed = ops("remove", &format!("/arch/sts/BOUND/{i}:"));
        let next_copied = ops("append", &format!("/arch/mts/BOUND/{}:", i + 1));
        assert_eq!(removed.len(), 2);
        assert!(removed.iter().max() < next_copied.iter().min(), "PV {i}");
    }
}

#[test]
fn a_cut_pv_goes_on_to_its_gather_time_in_the_next_batch() {
    // MTS daily hold=7 gather=5: cut after each file, a run moves the same days.
    let d0 = start_of_year(2024) + 100 * D;
    let moved = |bound: u64| {
        let sim = SimBackend::new();
        let ds = DataStores::from_urls(
            [
                url("MTS", "PARTITION_DAY", "&hold=7&gather=5"),
                url("LTS", "PARTITION_YEAR", ""),
            ],
            Backend::new(sim.clone()),
        )
        .expect("stores");
        for day in 0..12 {
            fill(&ds.tiers()[0], PV, d0 + day * D, d0 + (day + 1) * D);
        }
        let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default()).with_batch_bytes(bound);
        let now = at(d0 + 12 * D + 10);
        let c = etl.run_stage(0, &etl_pvs(&[PV]), now, EtlMode::Scheduled, &|| false);
        (c.files_moved, c.errors, starts(&ds.tiers()[0], PV))
    };
    let whole = moved(u64::MAX);
    assert!(whole.0 > 1, "{whole:?}");
    assert_eq!(moved(1), whole);
    // consolidateDataForPV (its own loop of batches) moves everything whatever the bound.
    let sim = SimBackend::new();
    let ds = stores(&sim, &[]);
    fill(&ds.tiers()[0], PV, d0, d0 + 5 * H);
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default()).with_batch_bytes(1);
    let c = etl
        .consolidate(PV, None, "MTS", at(d0 + 5 * H))
        .expect("consolidate");
    assert_eq!((c.files_moved, c.errors), (5, 0), "{c:?}");
    assert!(starts(&ds.tiers()[0], PV).is_empty());
}

#[test]
fn a_stopped_run_starts_no_new_copy_and_finishes_what_it_copied() {
    // (Found by a fresh-user test: SIGTERM waited 55 s for a 150-PV batch to end.)
    let day = start_of_year(2024) + 200 * D;
    let now = at(day + 2 * H + 60);
    let sim = SimBackend::new();
    let ds = three_pvs(&sim, day);
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    let pvs = etl_pvs(&["SYNC:A", "SYNC:B", "SYNC:C"]);
    // The stop comes while SYNC:A's first file is being copied.
    let asked = std::cell::Cell::new(0);
    let stop = || {
        asked.set(asked.get() + 1);
        asked.get() > 2
    };
    let c = etl.run_stage(0, &pvs, now, EtlMode::Scheduled, &stop);
    assert_eq!((c.files_moved, c.errors), (1, 0), "{c:?}");
    let (sts, mts) = (&ds.tiers()[0], &ds.tiers()[1]);
    assert_eq!(starts(sts, "SYNC:A"), vec![day + H, day + 2 * H]);
    assert_eq!(read(mts, "SYNC:A").len(), 6);
    for pv in ["SYNC:B", "SYNC:C"] {
        assert_eq!(starts(sts, pv).len(), 3, "{pv} untouched");
        assert!(read(mts, pv).is_empty(), "{pv}");
    }
    // The next run goes on where it stopped.
    let c = etl.run_stage(0, &pvs, now, EtlMode::Scheduled, &|| false);
    assert_eq!((c.files_moved, c.errors), (5, 0), "{c:?}");
}

#[test]
fn a_torn_last_line_left_out_by_a_move_is_logged_and_counted() {
    // (Found by a fresh-user test: the writer's open logs its repair, ETL's move did not.)
    use std::sync::atomic::Ordering::Relaxed;
    let day = start_of_year(2024) + 200 * D;
    let sim = SimBackend::new();
    let ds = stores(&sim, &[]);
    let (sts, mts) = (&ds.tiers()[0], &ds.tiers()[1]);
    fill(sts, PV, day, day + 2 * H);
    let first = &sts.partitions(PV).expect("list")[0].path;
    let mut bytes = sim.read_file(first).expect("file");
    bytes.extend_from_slice(b"\x08\x01\x10"); // a line cut by a crash
    sim.put_file(first, &bytes);
    let etl = Etl::new(ds.clone(), OutOfSpacePolicy::default());
    let c = etl
        .run_pv(0, PV, at(day + 2 * H + 60), EtlMode::Scheduled)
        .expect("etl");
    assert_eq!((c.files_moved, c.samples_moved), (2, 12), "{c:?}");
    assert_eq!(read(mts, PV).len(), 12);
    let counters = ds.backend().counters();
    assert_eq!(
        (
            counters.torn_repairs.load(Relaxed),
            counters.torn_bytes.load(Relaxed)
        ),
        (1, 3)
    );
}
