//! `archiver config check` and `archiver config defaults`, as a user runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn archiver(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_archiver"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run archiver")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_check_prints_the_effective_configuration_or_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archiver.toml");
    let path = file.to_str().unwrap();

    // The reference of every key is itself a valid file.
    let defaults = archiver(&["config", "defaults"], &[]);
    assert!(defaults.status.success());
    std::fs::write(&file, &defaults.stdout).unwrap();
    let out = archiver(&["config", "check", path], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("write_period_secs = 10.0"));

    // File, environment and flags, in that order of strength.
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1\"\n[engine]\nwrite_period_secs = 5\n",
    )
    .unwrap();
    let out = archiver(
        &["config", "check", path, "--data-dir", "/srv/archiver"],
        &[
            ("ARCHIVER_LISTEN", "0.0.0.0:17665"),
            ("ARCHIVER_DATA_DIR", "/ignored"),
            // Bound beyond loopback: management writes need a key (issue 13).
            ("ARCHIVER_API_KEY", "s3cret-key"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The key is never printed.
    assert!(!text(&out.stdout).contains("s3cret-key"));
    let effective: toml::Table = toml::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(effective["listen"].as_str(), Some("0.0.0.0:17665"));
    assert_eq!(effective["data_dir"].as_str(), Some("/srv/archiver"));
    assert_eq!(
        effective["engine"]["write_period_secs"].as_float(),
        Some(5.0)
    );
    assert_eq!(effective["identity"].as_str(), Some("appliance0"));
    let stores = effective["storage"]["data_stores"].as_array().unwrap();
    assert!(
        stores[0]
            .as_str()
            .unwrap()
            .contains("rootFolder=/srv/archiver/sts")
    );

    // A bad key, a bad value: exit 1, the key named.
    for (body, words) in [
        (
            "[engine]\nwrite_perod_secs = 5\n",
            vec!["write_perod_secs", "unknown field"],
        ),
        (
            "[engine]\nmax_buffer_samples = 1\n",
            vec!["engine.max_buffer_samples", "out of range"],
        ),
        (
            "[storage]\nout_of_space = \"PANIC\"\n",
            vec!["storage.out_of_space", "PANIC"],
        ),
    ] {
        std::fs::write(&file, body).unwrap();
        let out = archiver(&["config", "check", path], &[]);
        assert_eq!(out.status.code(), Some(1), "{body}");
        let err = text(&out.stderr);
        for w in words {
            assert!(err.contains(w), "{body}: {err:?} lacks {w:?}");
        }
    }
    let missing = archiver(&["config", "check", "/nonexistent/archiver.toml"], &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("/nonexistent/archiver.toml"));
}

/// A service configured by ARCHIVER_* variables alone (a container) checks them without a
/// file (a fresh-user test found `config check` required one).
#[test]
fn config_check_without_a_file_checks_the_environment() {
    let out = archiver(
        &["config", "check"],
        &[
            ("ARCHIVER_ENGINE_WRITE_PERIOD_SECS", "5"),
            ("ARCHIVER_HTTP_NICE", "3"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("# no file"), "{stdout}");
    let effective: toml::Table = toml::from_str(&stdout).unwrap();
    assert_eq!(
        effective["engine"]["write_period_secs"].as_float(),
        Some(5.0)
    );
    assert_eq!(effective["http_nice"].as_integer(), Some(3));
    // A bad value from a variable: the variable is named (the value alone sent a
    // fresh-user test looking in the file).
    for (var, value, key) in [
        (
            "ARCHIVER_ENGINE_WRITE_PERIOD_SECS",
            "0",
            "write_period_secs",
        ),
        ("ARCHIVER_HTTP_NICE", "-1", "http_nice"),
    ] {
        let bad = archiver(&["config", "check"], &[(var, value)]);
        assert_eq!(bad.status.code(), Some(1));
        let err = text(&bad.stderr);
        assert!(err.contains(key) && err.contains(var), "{err}");
    }
}
