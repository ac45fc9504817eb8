//! The dependency arrows that must never exist (ARCHITECTURE.md, "Arrows that must never
//! exist"), checked on each crate's `[dependencies]` (dev-dependencies may cross: tests of
//! the engine use the CA server, tests of retrieval may build a router...).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

/// The normal dependencies of the crate in `crates/<dir>`.
fn deps(dir: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates")
        .join(dir)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&path).expect("read a crate manifest");
    let manifest: toml::Table = toml::from_str(&text).expect("parse a crate manifest");
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

fn assert_none_of(dir: &str, forbidden: &[&str], why: &str) {
    let d = deps(dir);
    let found: Vec<&String> = d
        .iter()
        .filter(|name| forbidden.contains(&name.as_str()))
        .collect();
    assert!(found.is_empty(), "crates/{dir} depends on {found:?}: {why}");
}

#[test]
fn the_engine_knows_no_http_retrieval_or_appliance() {
    assert_none_of(
        "engine",
        &[
            "archiver-http",
            "archiver-appliance",
            "archiver-retrieval",
            "axum",
        ],
        "the engine is driven through its handle and knows no HTTP",
    );
}

#[test]
fn storage_knows_no_channel_access() {
    assert_none_of(
        "storage",
        &[
            "archiver-ca",
            "archiver-engine",
            "archiver-http",
            "archiver-appliance",
            "archiver-retrieval",
            "archiver-registry",
        ],
        "storage sees PV names, payload types and bytes only",
    );
}

#[test]
fn retrieval_works_without_a_server() {
    assert_none_of(
        "retrieval",
        &[
            "archiver-engine",
            "archiver-ca",
            "archiver-http",
            "archiver-appliance",
            "axum",
            "hyper",
            "tokio",
        ],
        "retrieval is a blocking pipeline usable without a server or an engine",
    );
}

#[test]
fn the_ca_crate_knows_no_storage_format() {
    assert_none_of(
        "ca",
        &["archiver-pb", "archiver-storage", "archiver-engine"],
        "Channel Access knows nothing of PlainPB or storage",
    );
}

#[test]
fn the_appliance_knows_no_http() {
    assert_none_of(
        "appliance",
        &["archiver-http", "axum", "hyper", "tower-http"],
        "HTTP depends on the appliance through ApplianceApi, never the reverse",
    );
}

#[test]
fn http_reaches_the_engine_only_through_the_appliance() {
    assert_none_of(
        "http",
        &["archiver-engine", "archiver-ca", "archiver-storage"],
        "handlers talk to ApplianceApi and Retrieval, so tests can use fakes",
    );
}

#[test]
fn time_is_the_floor_and_pb_sits_on_it() {
    let time: Vec<String> = deps("time")
        .into_iter()
        .filter(|d| d.starts_with("archiver"))
        .collect();
    assert!(time.is_empty(), "archiver-time depends on {time:?}");
    let pb: Vec<String> = deps("pb")
        .into_iter()
        .filter(|d| d.starts_with("archiver"))
        .collect();
    assert_eq!(
        pb,
        vec!["archiver-time".to_string()],
        "archiver-pb depends on {pb:?}"
    );
}
