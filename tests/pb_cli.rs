//! `archiver pb` run as a user runs it, on the Java appliance's file and on damaged files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use archiver_pb::time::start_of_year;
use archiver_pb::{PayloadType, PbWriter, Sample, Timestamp, Value};

fn java_vector() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/pb/tests/data/lrm01_raw.pb")
}

fn archiver(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(args)
        .output()
        .expect("run archiver")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn prints_the_java_file_as_text() {
    let path = java_vector();
    let out = archiver(&["pb", path.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "# pv LN-AM{RadMon:2}DoseRate-I type SCALAR_DOUBLE (6) year 2014 elementCount 1"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("# header EGU=mR/h"), "{stdout}");
    assert!(stdout.contains("# header PREC=2"), "{stdout}");
    assert!(
        stdout.contains("2014-12-08T06:21:07.601158377Z\t-0.09\tseverity=0\tstatus=0"),
        "{stdout}"
    );
}

#[test]
fn prints_the_java_file_as_json() {
    let path = java_vector();
    let out = archiver(&["pb", "--json", path.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["header"]["type"], 6);
    assert_eq!(doc["header"]["pvName"], "LN-AM{RadMon:2}DoseRate-I");
    assert_eq!(doc["header"]["headers"]["EGU"], "mR/h");
    assert_eq!(doc["samples"][0]["time"], "2014-12-08T06:21:07.601158377Z");
    assert_eq!(doc["samples"][0]["val"], -0.09);
    assert_eq!(doc["samples"].as_array().map(Vec::len), Some(1));
}

#[test]
fn json_of_special_floats_is_valid_json() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("f.pb");
    let mut w = PbWriter::open(&path, "F", PayloadType::WaveformFloat, 2020).expect("open");
    let t = Timestamp::new(start_of_year(2020), 0);
    let v = Value::VectorFloat(vec![0.1, f32::NAN, f32::INFINITY]);
    w.append(&[Sample::new(t, v)]).expect("append");
    drop(w);
    let out = archiver(&["pb", "--json", path.to_str().expect("utf8")]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(
        doc["samples"][0]["val"],
        serde_json::json!([0.1, "NaN", "Infinity"])
    );
}

#[test]
fn check_accepts_good_files_and_names_the_first_problem() {
    let ok = archiver(&["pb", "--check", java_vector().to_str().expect("utf8")]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("OK, 1 samples"));

    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("good.pb");
    let mut w = PbWriter::open(&good, "A:B", PayloadType::ScalarInt, 2020).expect("open");
    let s = |k: i64| {
        Sample::new(
            Timestamp::new(start_of_year(2020) + k, 0),
            Value::ScalarInt(k as i32),
        )
    };
    w.append(&[s(1), s(2), s(3)]).expect("append");
    drop(w);
    let bytes = std::fs::read(&good).expect("read");

    // Lines out of order: swap the last two sample lines.
    let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
    let swapped: Vec<u8> = [lines[0], lines[1], lines[3], lines[2]].concat();
    let unordered = dir.path().join("unordered.pb");
    std::fs::write(&unordered, swapped).expect("write");
    // A garbage line.
    let garbage = dir.path().join("garbage.pb");
    std::fs::write(&garbage, [lines[0], lines[1], b"\xff\xff\n"].concat()).expect("write");
    // A torn last line.
    let torn = dir.path().join("torn.pb");
    std::fs::write(&torn, &bytes[..bytes.len() - 2]).expect("write");
    // Not a PlainPB file at all.
    let junk = dir.path().join("junk.pb");
    std::fs::write(&junk, b"hello world\n").expect("write");

    for (path, needle) in [
        (&unordered, "line 4 (byte offset"),
        (&unordered, "is not after the previous sample"),
        (&garbage, "line 3"),
        (&garbage, "does not decode"),
        (&torn, "ends inside a line"),
        (
            &torn,
            &format!(
                "line 4 (byte offset {}): file ends inside a line",
                lines[..3].concat().len()
            ),
        ),
        (&junk, "header line does not decode"),
    ] {
        let out = archiver(&["pb", "--check", path.to_str().expect("utf8")]);
        assert_eq!(out.status.code(), Some(1), "{}", path.display());
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{}: {err}", path.display());
    }
    let missing = archiver(&["pb", "--check", "/nonexistent/x.pb"]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("/nonexistent/x.pb"));
}

/// `archiver pb FILE | head`: the reader closes the pipe after a few lines; the command
/// ends quietly and successfully, as cat or ripgrep do, with no broken-pipe error.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("big.pb");
    let mut w = PbWriter::open(&path, "BIG", PayloadType::ScalarDouble, 2020).expect("open");
    // About 50 bytes of text a sample: far more than a pipe's buffer.
    let samples: Vec<Sample> = (0..50_000)
        .map(|k| {
            Sample::new(
                Timestamp::new(start_of_year(2020) + k, 0),
                Value::ScalarDouble(k as f64),
            )
        })
        .collect();
    w.append(&samples).expect("append");
    drop(w);
    for json in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_archiver"));
        cmd.arg("pb");
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut first = [0u8; 200];
        child
            .stdout
            .take()
            .expect("stdout")
            .read_exact(&mut first)
            .expect("the first lines");
        // The pipe's read end is closed here.
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "json={json}: {:?} {}",
            out.status,
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "json={json}");
    }
}
