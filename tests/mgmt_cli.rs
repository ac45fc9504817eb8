//! `archiver mgmt CALL`: a management call over many PVs of a running archiver (the demo),
//! in batches, with a summary and an exit code that says whether every PV was done.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use support::Archiver;

fn mgmt(a: &Archiver, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .arg("mgmt")
        .args(args)
        .args(["--server", &a.addr.to_string()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_call_over_a_glob_in_batches_sums_up_and_names_what_was_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = Archiver::start_demo(dir.path(), "[engine]\nwrite_period_secs = 1.0\n");
    // The demo's load PVs archived and in the catalogue (getAllPVs lists type infos).
    a.wait_until(30.0, "the demo's load PVs in the catalogue", |a| {
        let all = a.json("/mgmt/bpl/getAllPVs?pv=DEMO:LOAD:*&limit=-1");
        all.as_array().unwrap().len() >= 24
    });
    let total = a.json("/mgmt/bpl/getAllPVs?pv=DEMO:LOAD:*&limit=-1");
    let n = total.as_array().unwrap().len();
    assert!(n > 10, "{total}");

    // Pause every DEMO:LOAD PV, 7 to a request: each one paused, the sum says so.
    let (code, out, err) = mgmt(
        &a,
        &["pauseArchivingPV", "--pv", "DEMO:LOAD:*", "--batch", "7"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("pauseArchivingPV of {n} PVs in ")),
        "{out}"
    );
    assert!(out.contains(&format!("{n} ok")), "{out}");
    for pv in total.as_array().unwrap() {
        assert_eq!(a.status(pv.as_str().unwrap())["status"], "Paused", "{pv}");
    }

    // An unknown store: refused with the server's message naming it.
    let (code, out, err) = mgmt(
        &a,
        &[
            "consolidateDataForPV",
            "--pv",
            "DEMO:LOAD:1",
            "--param",
            "storage=XTS",
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(format!("{out}{err}").contains("XTS"), "{out}{err}");

    // A PV the archiver does not have: refused, named, exit code 1; the others done.
    let (code, out, err) = mgmt(
        &a,
        &[
            "resumeArchivingPV",
            "--pv",
            "DEMO:LOAD:*",
            "--pv",
            "NO:SUCH:PV",
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("{n} ok")) && out.contains("1 refused"),
        "{out}"
    );
    assert!(out.contains("refused NO:SUCH:PV"), "{out}");

    // Bad arguments are named before anything is sent.
    let (code, _, err) = mgmt(&a, &["pause/../x", "--pv", "DEMO:AI"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a management call name"), "{err}");
    let (code, _, err) = mgmt(&a, &["pauseArchivingPV", "--pv", "NOTHING:*"]);
    assert_eq!(code, 1);
    assert!(err.contains("no archived PV matches"), "{err}");
}
