//! A full disk under the short-term store, with the real binary (`archiver demo`, its
//! own IOC, 10 updates a second of every PV): the store's folder is a 4 MiB tmpfs that the
//! test fills up, keeps full for several write periods, then empties.
//!
//! Expected, and checked: while full, the log says so (rate-limited), getPVStatus shows
//! `writeErrors` and `lastWriteError`, getPVDetails the last write error, /metrics
//! `archiver_store_write_errors_total{store="STS",reason="out_of_space"}` and
//! `archiver_store_failing_pvs`; every file passes `archiver pb --check` during the
//! outage and after it; when space returns the writes resume by themselves, the errors
//! clear, and the PV's samples have no hole: nothing received during the outage is lost.
//!
//! Needs a tmpfs mount, so root: elsewhere the test says so and checks nothing; the same
//! path runs without root, on the storage crate's injected ENOSPC, in
//! `crates/engine/tests/writer_disk_full.rs` and `crates/storage/tests/faults.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Archiver, enc, iso, now_secs};

/// A tmpfs of `size` mounted on a new folder `dir`; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with the file `dir/filler` until a write fails with
/// ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x55u8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    path
}

/// The value of the one sample line of `/metrics` whose name is `name` and whose labels
/// include every `labels` pair (0 when absent).
fn metric(a: &Archiver, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (status, body) = a.get("/metrics");
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn counter(status: &serde_json::Value, key: &str) -> u64 {
    status[key]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A waveform of 16 doubles, 10 a second: about 1.5 KB/s, so that it needs a new tmpfs page
/// every few seconds (a PV writing less keeps appending into its last page for a while).
const PV: &str = "DEMO:WF";

#[test]
fn a_full_store_is_reported_and_ingest_resumes_without_a_hole_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("sts"), "4m") else {
        eprintln!(
            "SKIPPED: mounting a tmpfs is not permitted here (not root?); the injected \
             ENOSPC tests of crates/engine and crates/storage cover the writer"
        );
        return;
    };
    let data = dir.path().join("data");
    let log = dir.path().join("archiver.log");
    let config = format!(
        "[engine]\nwrite_period_secs = 1\n[storage]\netl = false\ndata_stores = [\
         \"pb://localhost?name=STS&rootFolder={}&partitionGranularity=PARTITION_HOUR\", \
         \"pb://localhost?name=MTS&rootFolder=mts&partitionGranularity=PARTITION_DAY\"]\n",
        fs.0.display()
    );
    let mut a = Archiver::start_demo_logging(&data, &config, &log);
    let start = now_secs();
    a.wait_until(30.0, "DEMO:WF written", |a| {
        counter(&a.status(PV), "eventsWritten") > 10
    });

    // The disk fills up.
    let filler = fill(&fs.0);
    a.wait_until(40.0, "write errors in getPVStatus", |a| {
        counter(&a.status(PV), "writeErrors") >= 3
    });
    let status = a.status(PV);
    let last = status["lastWriteError"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(last.contains("out_of_space"), "{status}");
    assert!(last.contains("No space left on device"), "{last}");
    assert!(counter(&status, "samplesInMemory") > 0, "{status}");
    let details = a.json(&format!("/mgmt/bpl/getPVDetails?pv={}", enc(PV)));
    let row = details
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "Last write error")
        .cloned()
        .unwrap_or_default();
    assert!(
        row["value"]
            .as_str()
            .unwrap_or_default()
            .contains("out_of_space"),
        "{details}"
    );
    let sts = [("store", "STS"), ("reason", "out_of_space")];
    assert!(metric(&a, "archiver_store_write_errors_total", &sts) >= 3.0);
    assert!(metric(&a, "archiver_store_failing_pvs", &[("store", "STS")]) >= 1.0);
    // Every file is whole while the disk is full (a failed append is cut back).
    support::check_pb_files(&fs.0);

    // Space returns: the writes resume by themselves and the error clears.
    std::fs::remove_file(&filler).unwrap();
    a.wait_until(20.0, "the error clears", |a| {
        a.status(PV).get("lastWriteError").is_none()
            && metric(a, "archiver_store_failing_pvs", &[("store", "STS")]) == 0.0
    });
    let errors = counter(&a.status(PV), "writeErrors");
    let end = now_secs();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        counter(&a.status(PV), "writeErrors"),
        errors,
        "no new errors"
    );
    support::check_pb_files(&fs.0);

    // No hole: 10 updates a second, each archived; consecutive samples 0.1 s apart, and
    // the whole time from before the outage to after it is there.
    let samples = a.data(PV, &iso(start - 5), &iso(end));
    let times: Vec<f64> = samples
        .iter()
        .map(|s| s["secs"].as_f64().unwrap() + s["nanos"].as_f64().unwrap_or(0.0) * 1e-9)
        .collect();
    assert!(times.len() > 50, "{} samples", times.len());
    let widest = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(
        widest < 0.5,
        "a hole of {widest} s in {} samples",
        times.len()
    );
    assert!(*times.last().unwrap() >= (end - 2) as f64);
    let status = a.status(PV);
    for k in ["droppedEventsBuffer", "droppedEventsClient"] {
        assert_eq!(counter(&status, k), 0, "{k}: {status}");
    }
    assert!(a.terminate());
    support::check_pb_files(&fs.0);

    // The log said it, and not once per PV per write period: the 1st, 2nd, 4th... failure
    // of a PV, at most 20 lines a minute in all.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text
        .lines()
        .filter(|l| l.contains("No space left on device"))
        .count();
    assert!(lines >= 1, "{text}");
    assert!(lines <= 40, "{lines} lines about the full disk:\n{text}");
}
