//! End to end: the real `archiver serve` binary with several data stores from its
//! configuration file (`[storage] data_stores`, relative root folders under the data
//! directory): a PV whose data lie in two stores is served from both, one whose
//! `dataStores` name a store of another host from the configured ones, and deleting it
//! with its data empties every store. No IOC: the PVs are in the catalogue, paused.

#![allow(clippy::unwrap_used)]

mod support;

use archiver_pb::{Granularity, PayloadType, Sample, Timestamp, Value};
use archiver_registry::{PvTypeInfo, Registry, SamplingMethod, SqliteRegistry};
use archiver_storage::Tier;
use support::{Archiver, iso};

const CONFIG: &str = r#"
[engine]
write_period_secs = 1

[storage]
# The files counted below must stay where they are: no ETL (tests/etl_*.rs cover it).
etl = false
data_stores = [
  "pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_HOUR",
  "pb://localhost?name=MTS&rootFolder=tiers/mts&partitionGranularity=PARTITION_DAY",
]
"#;

#[test]
fn configured_stores_are_read_and_emptied_by_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let t0 = support::now_secs() - 3 * 86_400;
    let samples: Vec<Sample> = (0..100)
        .map(|k| {
            Sample::new(
                Timestamp::new(t0 + k * 3600, 0),
                Value::ScalarDouble(k as f64),
            )
        })
        .collect();
    // Older half in the MTS, newer half in the STS, where the configuration says they are.
    let sts = Tier::new("STS", data.join("sts"), Granularity::Hour);
    let mts = Tier::new("MTS", data.join("tiers/mts"), Granularity::Day);
    mts.append("E2E:TIERS", PayloadType::ScalarDouble, &samples[..50])
        .unwrap();
    sts.append("E2E:TIERS", PayloadType::ScalarDouble, &samples[50..])
        .unwrap();
    sts.append("E2E:FOREIGN", PayloadType::ScalarDouble, &samples)
        .unwrap();
    {
        let registry = SqliteRegistry::open(&data.join("registry.sqlite")).unwrap();
        let info = |pv: &str, stores: Vec<String>| {
            let mut i = PvTypeInfo::new_for_archiving(
                pv,
                PayloadType::ScalarDouble,
                1,
                SamplingMethod::Monitor,
                1.0,
                stores,
                Timestamp::new(t0, 0),
            )
            .unwrap();
            i.paused = true;
            i
        };
        registry
            .put_type_infos(&[
                // As Java writes them: placeholders for the folders.
                info(
                    "E2E:TIERS",
                    vec![
                        "pb://localhost?name=STS&rootFolder=${ARCHAPPL_SHORT_TERM_FOLDER}&partitionGranularity=PARTITION_HOUR".into(),
                        "pb://localhost?name=MTS&rootFolder=${ARCHAPPL_MEDIUM_TERM_FOLDER}&partitionGranularity=PARTITION_DAY".into(),
                    ],
                ),
                info(
                    "E2E:FOREIGN",
                    vec!["pb://localhost?name=STS_HOST2&rootFolder=/gone&partitionGranularity=PARTITION_HOUR".into()],
                ),
            ])
            .unwrap();
    }
    // No IOC: the CA client searches a port nobody serves.
    let a = Archiver::start_with(data, 9, 0, CONFIG);
    let (from, to) = (iso(t0 - 1), iso(t0 + 100 * 3600));
    for pv in ["E2E:TIERS", "E2E:FOREIGN"] {
        let got = a.data(pv, &from, &to);
        let values: Vec<f64> = got.iter().map(|s| s["val"].as_f64().unwrap()).collect();
        let want: Vec<f64> = (0..100).map(|k| k as f64).collect();
        assert_eq!(values, want, "{pv}");
    }
    let files =
        sts.partitions("E2E:TIERS").unwrap().len() + mts.partitions("E2E:TIERS").unwrap().len();
    assert!(files > 50, "{files} files");
    let (status, body) = a.get("/mgmt/bpl/deletePV?pv=E2E:TIERS&deleteData=true");
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        reply["desc"],
        format!("Deleted PV E2E:TIERS and {files} data files")
    );
    assert!(
        mts.partitions("E2E:TIERS").unwrap().is_empty(),
        "the MTS is emptied too"
    );
    assert!(sts.partitions("E2E:TIERS").unwrap().is_empty());
    assert_eq!(
        sts.partitions("E2E:FOREIGN").unwrap().len(),
        100,
        "untouched"
    );
}

/// A second archiver whose data_stores name a running archiver's STS folder starts with a
/// warning naming the store and the folder (found by a fresh-user test: no word at all),
/// and so does the first when restarted while the second runs; alone, no warning.
#[test]
fn a_store_folder_used_by_another_archiver_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    let sts = a_data.join("sts");
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let warned = |name: &str| {
        let text = std::fs::read_to_string(log(name)).unwrap();
        text.contains("another archiver process is using the folder of data store STS")
            && text.contains(&sts.display().to_string())
    };
    let mut a = Archiver::start_demo_logging(&a_data, "", &log("a1"));
    assert!(!warned("a1"));
    let config = format!(
        "[storage]\netl = false\ndata_stores = [\"pb://localhost?name=STS&rootFolder={}\
         &partitionGranularity=PARTITION_HOUR\"]\n",
        sts.display()
    );
    let mut b = Archiver::start_demo_logging(&b_data, &config, &log("b"));
    assert!(warned("b"), "{:?}", std::fs::read_to_string(log("b")));
    // The first, restarted while the second runs, sees it too.
    assert!(a.terminate());
    let mut a = Archiver::start_demo_logging(&a_data, "", &log("a2"));
    assert!(warned("a2"), "{:?}", std::fs::read_to_string(log("a2")));
    assert!(b.terminate());
    assert!(a.terminate());
    // Alone again: no warning.
    let mut a = Archiver::start_demo_logging(&a_data, "", &log("a3"));
    assert!(!warned("a3"), "a restart alone must not warn");
    assert!(a.terminate());
}

/// One archiver per data folder: a second `serve` on the same folder refuses to start
/// (it would write the same files and catalogue), naming the folder; once the first has
/// stopped, the folder can be used again.
#[test]
fn a_second_archiver_on_the_same_data_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut first = Archiver::start_with(data, 9, 0, "");
    // Given relative (from the folder above): taken as the absolute folder, which the
    // stores' root folders in every PV's dataStores then name (a fresh-user test found
    // `rootFolder=d1/sts`).
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.file_name().unwrap())
        .current_dir(data.parent().unwrap())
        .env("EPICS_CA_ADDR_LIST", "127.0.0.1:9")
        .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run a second archiver");
    assert!(!second.status.success(), "{second:?}");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "another archiver is already using the data folder {}",
            data.display()
        )),
        "{stderr}"
    );
    assert!(first.terminate(), "the first archiver stops cleanly");
    let mut again = Archiver::start_with(data, 9, 0, "");
    assert!(again.terminate());
}
