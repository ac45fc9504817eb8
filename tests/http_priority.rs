//! The threads answering HTTP run `http_nice` levels below archiving (issue 13, load suite:
//! large retrievals on a saturated machine delayed the reading of the IOCs' circuits).
//! Read from `/proc` of the real binary: every `http` thread at the configured nice value,
//! the main runtime's threads (CA, engine, writer) at the process's.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod support;

use support::Archiver;

/// `(thread name, nice value)` of every thread of process `pid`.
fn threads(pid: u32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        // Fields after the command's closing parenthesis: state is field 3, nice field 19.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let nice: i64 = rest.split(' ').nth(16).unwrap().parse().unwrap();
        out.push((comm.trim().to_string(), nice));
    }
    out
}

#[test]
fn http_threads_run_below_the_archiving_threads() {
    for (config, want) in [("", 10), ("http_nice = 3\n", 3), ("http_nice = 0\n", 0)] {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Archiver::start_with(dir.path(), 9, 0, config);
        // Requests that run on blocking threads too (reports, the PV list).
        for path in [
            "/mgmt/bpl/getAllPVs",
            "/mgmt/bpl/getApplianceMetrics",
            "/mgmt/bpl/getStorageRateReport",
            "/metrics",
        ] {
            assert_eq!(a.get(path).0, 200, "{path}");
        }
        let pid = a.child.as_ref().unwrap().id();
        let all = threads(pid);
        let http: Vec<_> = all.iter().filter(|(n, _)| n == "http").collect();
        let main: Vec<_> = all
            .iter()
            .filter(|(n, _)| n.starts_with("tokio-r"))
            .collect();
        assert!(!http.is_empty() && !main.is_empty(), "{config:?}: {all:?}");
        assert!(
            http.iter().all(|(_, nice)| *nice == want),
            "{config:?}: {all:?}"
        );
        assert!(
            main.iter().all(|(_, nice)| *nice == 0),
            "{config:?}: {all:?}"
        );
        assert!(a.terminate());
    }
}
