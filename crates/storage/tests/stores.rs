//! Tiers from data store URLs, the configured set of stores, and the per-PV write lock
//! shared by every tier of one backend.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use archiver_pb::time::start_of_year;
use archiver_pb::{Granularity, PayloadType, Sample, Timestamp, Value};
use archiver_storage::testing::SimBackend;
use archiver_storage::{Backend, DataStores, StorageError, Tier, UrlError};

const TY: PayloadType = PayloadType::ScalarDouble;

fn s(secs: i64) -> Sample {
    Sample::new(
        Timestamp::new(start_of_year(2024) + secs, 0),
        Value::ScalarDouble(secs as f64),
    )
}

fn url(name: &str, root: &str, g: &str) -> String {
    format!("pb://localhost?name={name}&rootFolder={root}&partitionGranularity={g}")
}

#[test]
fn a_tier_from_a_url_writes_where_it_says_and_gives_its_url_back() {
    let sim = SimBackend::new();
    let backend = Backend::new(sim.clone());
    let u = "pb://localhost?name=MTS&rootFolder=/arch/mts&partitionGranularity=PARTITION_DAY&hold=2&gather=1&terminator=%23";
    let tier = Tier::from_url(u, &backend).expect("tier");
    assert_eq!(tier.name(), "MTS");
    assert_eq!(tier.root(), std::path::Path::new("/arch/mts"));
    assert_eq!(tier.granularity(), Granularity::Day);
    assert_eq!((tier.store_url().hold, tier.store_url().gather), (2, 1));
    assert_eq!(tier.url(), u);
    tier.append("A:B-C", TY, &[s(0)]).expect("append");
    // The URL's terminator ends the chunk key.
    assert_eq!(
        sim.files(),
        [std::path::PathBuf::from("/arch/mts/A/B/C#2024_01_01.pb")]
    );
    assert_eq!(tier.partitions("A:B-C").expect("list").len(), 1);

    // Tier::new keeps its old URL.
    let plain = Tier::new("STS", "/data/sts", Granularity::Hour);
    assert_eq!(
        plain.url(),
        "pb://localhost?name=STS&rootFolder=/data/sts&partitionGranularity=PARTITION_HOUR"
    );
    assert_eq!(
        Tier::from_url(&plain.url(), &backend).expect("back").url(),
        plain.url()
    );
}

#[test]
fn environment_variables_in_root_folders_expand_and_stay_in_the_url() {
    let backend = Backend::new(SimBackend::new());
    // Cargo sets CARGO_MANIFEST_DIR for the tests it runs.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    let u = url("STS", "${CARGO_MANIFEST_DIR}/sts", "PARTITION_HOUR");
    let tier = Tier::from_url(&u, &backend).expect("tier");
    assert_eq!(
        tier.root(),
        std::path::Path::new(&format!("{manifest}/sts"))
    );
    assert_eq!(
        tier.url(),
        u,
        "the placeholder is written back as configured"
    );

    let unset = url(
        "STS",
        "${ARCHIVER_SURELY_UNSET_VARIABLE_42}",
        "PARTITION_HOUR",
    );
    let err = Tier::from_url(&unset, &backend).expect_err("unset");
    assert!(
        matches!(
            &err,
            StorageError::BadUrl { source: UrlError::UnsetVariable { var }, .. }
                if var == "ARCHIVER_SURELY_UNSET_VARIABLE_42"
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("ARCHIVER_SURELY_UNSET_VARIABLE_42")
    );
}

#[test]
fn bad_urls_are_refused_with_a_message_naming_the_problem() {
    let backend = Backend::new(SimBackend::new());
    for (u, needle) in [
        (
            "pb://localhost?name=STS&rootFolder=/a",
            "partitionGranularity",
        ),
        (
            "pb://localhost?name=STS&rootFolder=/a&partitionGranularity=PARTITION_WEEK",
            "PARTITION_WEEK",
        ),
        ("parquet://localhost?name=STS", "parquet"),
        ("/just/a/folder", "not a data store URL"),
        (
            "pb://localhost?name=STS&rootFolder=/a&partitionGranularity=PARTITION_DAY&hold=1&gather=2",
            "gather=2 is larger than hold=1",
        ),
    ] {
        let err = Tier::from_url(u, &backend).expect_err(u);
        let msg = err.to_string();
        assert!(msg.contains(needle), "{u}: {msg}");
        assert!(msg.contains(u), "the message quotes the URL: {msg}");
    }
}

#[test]
fn data_stores_come_from_configuration_and_resolve_a_pvs_stores_by_name() {
    let sim = SimBackend::new();
    let stores = DataStores::from_urls(
        [
            url("STS", "/arch/sts", "PARTITION_HOUR"),
            url("MTS", "/arch/mts", "PARTITION_DAY"),
            url("LTS", "/arch/lts", "PARTITION_YEAR"),
            url("XTS", "/arch/xts", "PARTITION_MONTH"),
        ],
        Backend::new(sim.clone()),
    )
    .expect("stores");
    let names: Vec<&str> = stores.tiers().iter().map(|t| t.name()).collect();
    assert_eq!(names, ["STS", "MTS", "LTS", "XTS"]);

    // A Java type info's stores (placeholders, another host's folders) map by name.
    let pv_stores = [
        "pb://localhost?name=STS&rootFolder=${ARCHAPPL_SHORT_TERM_FOLDER}&partitionGranularity=PARTITION_HOUR&consolidateOnShutdown=true",
        "pb://localhost?name=LTS&rootFolder=/elsewhere&partitionGranularity=PARTITION_YEAR",
    ];
    let tiers = stores.resolve(&pv_stores).expect("resolve");
    let roots: Vec<_> = tiers.iter().map(|t| t.root().to_path_buf()).collect();
    assert_eq!(
        roots,
        [
            std::path::Path::new("/arch/sts"),
            std::path::Path::new("/arch/lts")
        ]
    );

    let err = stores
        .resolve(&[url("ZTS", "/z", "PARTITION_HOUR")])
        .expect_err("unknown");
    assert!(
        matches!(err, StorageError::UnknownStore { ref name, .. } if name == "ZTS"),
        "{err}"
    );
    let err = stores.resolve(&["nonsense"]).expect_err("bad");
    assert!(matches!(err, StorageError::BadUrl { .. }), "{err}");

    let err = DataStores::from_urls(
        [
            url("STS", "/a", "PARTITION_HOUR"),
            url("STS", "/b", "PARTITION_DAY"),
        ],
        Backend::new(SimBackend::new()),
    )
    .expect_err("duplicate");
    assert!(
        matches!(err, StorageError::DuplicateStore(ref n) if n == "STS"),
        "{err}"
    );
    // Two stores in one folder, or one inside the other, would mix their files.
    for (a, b) in [
        ("/a", "/a"),
        ("/a", "/a/"),
        ("/a", "/a/mts"),
        ("/a/mts", "/a"),
    ] {
        let err = DataStores::from_urls(
            [
                url("STS", a, "PARTITION_HOUR"),
                url("MTS", b, "PARTITION_DAY"),
            ],
            Backend::new(SimBackend::new()),
        )
        .expect_err("shared folder");
        assert!(
            matches!(err, StorageError::SharedStoreFolder { ref first, ref second, .. }
                if first == "STS" && second == "MTS"),
            "{a} {b}: {err}"
        );
        assert!(err.to_string().contains("share a folder"), "{err}");
    }
    // Neighbours are fine.
    DataStores::from_urls(
        [
            url("STS", "/a/sts", "PARTITION_HOUR"),
            url("MTS", "/a/sts2", "PARTITION_DAY"),
        ],
        Backend::new(SimBackend::new()),
    )
    .expect("separate folders");

    // Removing a PV's data covers every tier, through the backend.
    for t in stores.tiers() {
        t.append("A:B", TY, &[s(0), s(90_000)]).expect("append");
        t.append("A:C", TY, &[s(0)]).expect("append");
    }
    // A:B: STS 2 hourly files, MTS 2 daily, LTS 1 yearly, XTS 1 monthly; A:C one each.
    assert_eq!(sim.files().len(), 6 + 4);
    assert_eq!(stores.remove_pv_data("A:B").expect("remove"), 6);
    assert!(
        stores
            .tiers()
            .iter()
            .all(|t| t.partitions("A:B").expect("l").is_empty())
    );
    assert_eq!(sim.files().len(), 4, "A:C is untouched");
    assert_eq!(
        stores
            .get("MTS")
            .expect("mts")
            .remove_pv_data("A:C")
            .expect("rm"),
        1
    );
}

#[test]
fn one_write_lock_per_pv_across_tiers_and_separately_built_tiers() {
    let sim = SimBackend::new();
    let stores = DataStores::from_urls(
        [
            url("STS", "/sts", "PARTITION_HOUR"),
            url("MTS", "/mts", "PARTITION_DAY"),
        ],
        Backend::new(sim),
    )
    .expect("stores");
    let (sts, mts) = (stores.tiers()[0].clone(), stores.tiers()[1].clone());
    {
        // Holding the PV's lock: the *_locked methods write; taking it again is an error,
        // not a deadlock; a lock of another backend is refused.
        let lock = stores.lock_pv("A:B").expect("lock");
        sts.append_locked(&lock, TY, &[s(0)])
            .expect("locked append");
        mts.append_lines_locked(&lock, TY, 2024, b"")
            .expect("locked append");
        let err = mts.append("A:B", TY, &[s(1)]).expect_err("re-entry");
        assert!(matches!(err, StorageError::Lock { .. }), "{err}");
        let other = Tier::with_backend(
            "X",
            "/x",
            Granularity::Hour,
            Backend::new(SimBackend::new()),
        );
        let err = other
            .append_locked(&lock, TY, &[s(1)])
            .expect_err("foreign");
        assert!(matches!(err, StorageError::ForeignLock { .. }), "{err}");
        // Another PV is not blocked.
        let t2 = sts.clone();
        std::thread::spawn(move || t2.append("A:C", TY, &[s(0)]).map(|c| c.written))
            .join()
            .expect("join")
            .expect("other PV");
    }
    assert!(stores.backend().locks().is_empty(), "no entry left behind");

    // Two tiers built separately on the real filesystem share the lock too.
    let dir = tempfile::tempdir().expect("tmp");
    let a = Tier::new("STS", dir.path().join("sts"), Granularity::Hour);
    let b = Tier::new("MTS", dir.path().join("mts"), Granularity::Day);
    let held = a.lock_pv("Q:R").expect("lock");
    let done = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Barrier::new(2));
    let writer = {
        let (done, started) = (done.clone(), started.clone());
        std::thread::spawn(move || {
            started.wait();
            let r = b.append("Q:R", TY, &[s(0)]).map(|c| c.written);
            done.store(true, Ordering::SeqCst);
            r
        })
    };
    started.wait();
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !done.load(Ordering::SeqCst),
        "the other tier waits for the PV's lock"
    );
    drop(held);
    assert_eq!(writer.join().expect("join").expect("written"), 1);
}

#[test]
fn stores_from_tiers_keep_the_first_tiers_backend_and_refuse_a_name_twice() {
    let sim = Backend::new(SimBackend::new());
    let sts = Tier::with_backend("STS", "/sts", Granularity::Hour, sim.clone());
    let lts = Tier::new("LTS", "/lts", Granularity::Year);
    let stores = DataStores::from_tiers([sts, lts]).expect("stores");
    assert!(Arc::ptr_eq(stores.backend().locks(), sim.locks()));
    // The LTS, built on the filesystem, was moved to the first tier's backend.
    let lts = stores.get("LTS").expect("lts");
    assert!(Arc::ptr_eq(lts.backend().locks(), sim.locks()));
    lts.append("A:B", TY, &[s(0)]).expect("append");
    assert!(
        !std::path::Path::new("/lts").exists(),
        "written to the simulation"
    );

    let empty = DataStores::from_tiers([]).expect("empty");
    assert!(empty.tiers().is_empty());
    assert!(Arc::ptr_eq(empty.backend().locks(), Backend::fs().locks()));
    let err = DataStores::from_tiers([
        Tier::new("STS", "/a", Granularity::Hour),
        Tier::new("STS", "/b", Granularity::Day),
    ])
    .expect_err("duplicate");
    assert!(
        matches!(err, StorageError::DuplicateStore(ref n) if n == "STS"),
        "{err}"
    );
}
