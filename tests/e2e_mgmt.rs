//! End to end: the management calls of issue 11's third round through the real
//! `archiver serve` binary archiving a real EPICS IOC: an alias or `PV.FIELD` asked for
//! is the archived PV (archivePV, getPVStatus), getAllPVs lists archived PVs and aliases,
//! and the configured policy file is re-read when it changes (a broken edit keeps the
//! policies in force and says why).

#![allow(clippy::unwrap_used)]

#[path = "../crates/ca/tests/common/mod.rs"]
mod common;
mod support;

use common::Ioc;
use serde_json::{Value as Json, json};
use support::{Archiver, enc};

/// Writes `text` to `path` with a modification time `secs` after the epoch, so the
/// change is seen however coarse the file system's clock.
fn write_policy(path: &std::path::Path, text: &str, secs: u64) {
    std::fs::write(path, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .unwrap();
}

fn policy_names(a: &Archiver) -> Vec<String> {
    let v = a.json("/mgmt/bpl/getPolicyList");
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn aliases_fields_name_lists_and_a_changed_policy_file_through_the_binary() {
    let ioc = Ioc::start("M3");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policies.toml");
    write_policy(
        &policy,
        "[[policy]]\nname = \"slow\"\ndescription = \"Every 5 s\"\nsampling_period = 5.0\n",
        1_000,
    );
    let a = Archiver::start_with(
        dir.path(),
        ioc.port,
        ioc.beacon_port,
        &format!("[engine]\nwrite_period_secs = 1.0\n[policy]\nfile = {policy:?}\n"),
    );
    let ai = ioc.pv("AI");
    let r = a.json(&format!("/mgmt/bpl/archivePV?pv={}&policy=slow", enc(&ai)));
    assert_eq!(r[0]["status"], "Archive request submitted", "{r}");
    a.wait_until(15.0, "AI being archived and recorded", |a| {
        a.status(&ai)["status"] == "Being archived"
            && a.get(&format!("/mgmt/bpl/getPVTypeInfo?pv={}", enc(&ai))).0 == 200
    });
    assert_eq!(a.status(&ai)["samplingPeriod"], "5.0");

    // An alias of the archived PV: archivePV answers for the PV, no new PV.
    let alias = format!("{ai}:OLDNAME");
    a.json(&format!(
        "/mgmt/bpl/addAlias?pv={}&aliasname={}",
        enc(&ai),
        enc(&alias)
    ));
    let r = a.json(&format!("/mgmt/bpl/archivePV?pv={}", enc(&alias)));
    assert_eq!(r, json!([{"pvName": ai, "status": "Already submitted"}]));
    // PV.DRVH: a stream field the ai lacks joins its archive fields.
    let r = a.json(&format!("/mgmt/bpl/archivePV?pv={}.DRVH", enc(&ai)));
    assert_eq!(r, json!([{"pvName": ai, "status": "Already submitted"}]));
    let info = a.json(&format!("/mgmt/bpl/getPVTypeInfo?pv={}", enc(&ai)));
    assert!(
        info["archiveFields"]
            .as_array()
            .unwrap()
            .contains(&json!("DRVH")),
        "{info}"
    );
    // getPVStatus of PV.HIHI and of the alias: the PV's status under the name asked.
    for asked in [format!("{ai}.HIHI"), alias.clone()] {
        let s = a.status(&asked);
        assert_eq!(s["pvName"], json!(asked), "{s}");
        assert_eq!(s["pvNameOnly"], json!(ai), "{s}");
    }
    a.wait_until(15.0, "AI being archived again", |a| {
        a.status(&ai)["status"] == "Being archived"
    });
    // getAllPVs: the archived PV, then the alias; a PV still in its request is not listed.
    a.json("/mgmt/bpl/archivePV?pv=M3:NOBODY:SERVES:THIS");
    let all = a.json("/mgmt/bpl/getAllPVs");
    assert_eq!(all, json!([ai, alias]));

    // The policy file changes: the next call uses it.
    write_policy(
        &policy,
        "[[policy]]\nname = \"fast\"\ndescription = \"Every 0.5 s\"\nsampling_period = 0.5\n",
        2_000,
    );
    // ("default" is always there: the Java defaults, unless the file redefines it.)
    assert_eq!(policy_names(&a), ["fast", "default"]);
    let li = ioc.pv("LI");
    a.json(&format!("/mgmt/bpl/archivePV?pv={}&policy=fast", enc(&li)));
    assert_eq!(a.status(&li)["samplingPeriod"], "0.5");
    // A broken edit keeps the policies in force; getPolicyText says why first.
    write_policy(
        &policy,
        "[[policy]]\nname = \"fast\"\nsampling_period = \"often\"\n",
        3_000,
    );
    assert_eq!(policy_names(&a), ["fast", "default"]);
    let (status, text) = a.get("/mgmt/bpl/getPolicyText");
    assert_eq!(status, 200);
    assert!(text.starts_with("# the policy file"), "{text}");
    assert!(text.contains("policies.toml"), "{text}");
    let (status, body) = a.get("/mgmt/bpl/reapplyPolicies?pv=*");
    assert_eq!(status, 400, "{body}");
    let v: Json = serde_json::from_str(&body).unwrap();
    assert!(v.to_string().contains("sampling_period"), "{v}");

    // ChannelFinder's calls: the version string it splits, a POST JSON status list.
    let v = a.json("/mgmt/bpl/getVersions");
    let mgmt = v["mgmt_version"].as_str().unwrap();
    assert_eq!(
        mgmt.split("Archiver Appliance Version ").count(),
        2,
        "{mgmt}"
    );
    let (status, body) = a.post(
        "/mgmt/bpl/getPVStatus",
        &serde_json::to_string(&[&ai, &li]).unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    let st: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(st[0]["pvName"], json!(ai), "{st}");
    assert_eq!(st[1]["pvName"], json!(li), "{st}");

    // The IOC is killed: its PVs are reported disconnected and lost, still archived.
    a.wait_until(15.0, "LI being archived", |a| {
        a.status(&li)["status"] == "Being archived"
    });
    let mut ioc = ioc;
    ioc.kill();
    a.wait_until(30.0, "AI and LI reported disconnected", |a| {
        let r = a.json("/mgmt/bpl/getCurrentlyDisconnectedPVs");
        let names: Vec<&str> = r
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["pvName"].as_str())
            .collect();
        names.contains(&ai.as_str()) && names.contains(&li.as_str())
    });
    let s = a.status(&ai);
    assert_eq!(s["status"], "Being archived", "{s}");
    assert_eq!(s["connectionState"], "false", "{s}");
    let lost = a.json("/mgmt/bpl/getLostConnectionsReport");
    assert!(
        lost.as_array()
            .unwrap()
            .iter()
            .any(|o| o["pvName"] == json!(ai)),
        "{lost}"
    );
}

/// The fourth round's fixes through the binary and a real IOC: the writer's last write in
/// getPVStatus/getPVDetails, an operator's changeArchivalParameters kept by
/// reapplyPolicies, getStorageMetrics/getApplianceProperties/getMetaGets, and deletePV of
/// a JSON list removing the PVs' aliases.
#[test]
fn last_write_operator_period_storage_metrics_and_a_list_delete_through_the_binary() {
    let ioc = Ioc::start("M4");
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policies.toml");
    write_policy(
        &policy,
        "[[policy]]\nname = \"every2\"\nsampling_period = 2.0\n\
         [[rule]]\npolicy = \"every2\"\npv = \"M4*\"\n",
        1_000,
    );
    let a = Archiver::start_with(
        dir.path(),
        ioc.port,
        ioc.beacon_port,
        &format!("[engine]\nwrite_period_secs = 1.0\n[policy]\nfile = {policy:?}\n"),
    );
    let (ai, li) = (ioc.pv("AI"), ioc.pv("LI"));
    a.json(&format!("/mgmt/bpl/archivePV?pv={},{}", enc(&ai), enc(&li)));
    a.json("/mgmt/bpl/archivePV?pv=M4:NOBODY:SERVES:THIS");
    a.wait_until(20.0, "AI and LI recorded and written to the STS", |a| {
        [&ai, &li].iter().all(|pv| {
            let s = a.status(pv);
            s["status"] == "Being archived" && s["lastRotateLogs"] != "Never"
        }) && a.get(&format!("/mgmt/bpl/getPVTypeInfo?pv={}", enc(&ai))).0 == 200
    });
    let details = a.json(&format!("/mgmt/bpl/getPVDetails?pv={}", enc(&ai)));
    let pushed = details
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "What did we last push the data to the short term store?")
        .unwrap();
    assert!(
        pushed["value"].as_str().unwrap().ends_with(" UTC"),
        "{pushed}"
    );
    // Disk use from the files: per store in the details, per PV in the report (Java's
    // shape, bytes and MB), the PV without data last.
    let line = |name: &str| {
        details
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .map(|d| d["value"].as_str().unwrap().to_string())
    };
    let sts_bytes: u64 = line("Space consumed in STS (bytes)")
        .unwrap()
        .parse()
        .unwrap();
    assert!(sts_bytes > 0, "{details}");
    assert_ne!(line("Partition files in STS").unwrap(), "0", "{details}");
    assert!(line("Total space consumed by this PV (bytes)").is_some());
    let bps: f64 = line("Bytes per sample in STS").unwrap().parse().unwrap();
    // At least a time stamp and a double; the first sample also carries the archive
    // fields' values, so there is no useful upper bound on a file of a few samples.
    assert!(bps >= 10.0 && bps <= sts_bytes as f64, "{details}");
    let consumed = a.json("/mgmt/bpl/getPVsByStorageConsumed?limit=-1");
    let rows = consumed.as_array().unwrap();
    let ai_row = rows.iter().find(|r| r["pvName"] == json!(ai)).unwrap();
    let ai_bytes: u64 = ai_row["storageConsumed"].as_str().unwrap().parse().unwrap();
    assert!(ai_bytes >= sts_bytes, "{consumed}");
    assert_eq!(ai_row["instance"], "appliance0", "{consumed}");
    assert!(ai_row["storageConsumedInMB"].is_string(), "{consumed}");
    assert_eq!(
        rows.last().unwrap()["pvName"],
        "M4:NOBODY:SERVES:THIS",
        "{consumed}"
    );
    assert_eq!(rows.last().unwrap()["storageConsumed"], "0", "{consumed}");
    // Per store (Java's getStorageMetricsForAppliance shape, plus files and bytes used).
    let stores = a.json("/mgmt/bpl/getStorageMetricsForAppliance?appliance=appliance0");
    let names: Vec<&str> = stores
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["STS", "MTS", "LTS"], "{stores}");
    let sts = &stores[0];
    assert!(sts["total_space"].is_string() && sts["available_space_percent"].is_string());
    let used: u64 = sts["used_bytes"].as_str().unwrap().parse().unwrap();
    assert!(used >= ai_bytes, "{stores}");
    assert_ne!(sts["files"], "0", "{stores}");

    // The operator's period outlives a re-application of the policy (its rule says 2 s).
    let info = a.json(&format!("/mgmt/bpl/getPVTypeInfo?pv={}", enc(&ai)));
    assert_eq!(a.status(&ai)["samplingPeriod"], "2.0", "{info}");
    let r = a.json(&format!(
        "/mgmt/bpl/changeArchivalParameters?pv={}&samplingperiod=7",
        enc(&ai)
    ));
    assert_eq!(r["status"], "ok", "{r}");
    let r = a.json(&format!("/mgmt/bpl/reapplyPolicies?pv={}", enc(&ai)));
    assert_eq!(r[0]["status"], "unchanged", "{r}");
    assert_eq!(a.status(&ai)["samplingPeriod"], "7.0");

    // The three calls that answered 404.
    let m = a.json("/mgmt/bpl/getStorageMetrics");
    assert_eq!(m[0]["capacityUtilized"], "N/A", "{m}");
    assert_eq!(m[0]["pvCount"], "3", "{m}");
    let p = a.json("/mgmt/bpl/getApplianceProperties");
    assert!(p["minimum_sampling_period"].is_string(), "{p}");
    let g = a.json("/mgmt/bpl/getMetaGets");
    assert_eq!(g[0]["pvName"], "M4:NOBODY:SERVES:THIS", "{g}");
    assert_eq!(g[0]["isScheduled"], "true", "{g}");

    // Every read-only call through the binary answers 200 with its body (JSON but for
    // getPolicyText), never a 404 or 500.
    let pv = enc(&ai);
    for call in [
        format!("getPVStatus?pv={pv}"),
        format!("getPVTypeInfo?pv={pv}"),
        format!("getPVDetails?pv={pv}"),
        format!("getStoresForPV?pv={pv}"),
        format!("archivedPVs?pv={pv}"),
        format!("unarchivedPVs?pv={pv}"),
        "getTypeInfoKeys".into(),
        "getAllAliases".into(),
        "getAllExpandedPVNames".into(),
        "getAllPVs?pv=M4*".into(),
        "getAllNamedFlags".into(),
        "getNamedFlag?name=SOMEFLAG".into(),
        "exportConfig".into(),
        "getApplianceInfo".into(),
        "getAppliancesInCluster".into(),
        "getVersions".into(),
        "getPolicyList".into(),
        "getApplianceMetrics".into(),
        "getApplianceMetricsForAppliance?appliance=appliance0".into(),
        "getInstanceMetrics".into(),
        "getNeverConnectedPVs".into(),
        "getCurrentlyDisconnectedPVs".into(),
        "getEventRateReport?limit=10".into(),
        "getStorageRateReport?limit=10".into(),
        "getRecentlyAddedPVs?limit=10".into(),
        "getRecentlyModifiedPVs?limit=10".into(),
        "getLostConnectionsReport?limit=10".into(),
        "getSilentPVsReport?limit=10".into(),
        "getPVsByDroppedEventsTimestamp?limit=10".into(),
        "getPVsByDroppedEventsBuffer?limit=10".into(),
        "getPVsByDroppedEventsTypeChange?limit=10".into(),
        "getPVsByDroppedEventsRateLimit?limit=10".into(),
        "getSlowChangingPVsWithDroppedEvents?limit=10".into(),
        "getPausedPVsReport".into(),
        "getArchivedWaveforms".into(),
        "getTimeSpanReport".into(),
        "getPVsByStorageConsumed?limit=10".into(),
    ] {
        a.json(&format!("/mgmt/bpl/{call}"));
    }
    let (status, text) = a.get("/mgmt/bpl/getPolicyText");
    assert_eq!(status, 200);
    assert!(text.contains("every2"), "{text}");

    // deletePV of a JSON list (paused first): the PVs and their aliases go.
    let alias = format!("{ai}:ALIAS");
    a.json(&format!(
        "/mgmt/bpl/addAlias?pv={}&aliasname={}",
        enc(&ai),
        enc(&alias)
    ));
    a.json(&format!(
        "/mgmt/bpl/pauseArchivingPV?pv={},{}",
        enc(&ai),
        enc(&li)
    ));
    let (status, body) = a.post(
        "/mgmt/bpl/deletePV?deleteData=true",
        &serde_json::to_string(&[&ai, &li]).unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    let r: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(r["status"], "ok", "{r}");
    for pv in [&ai, &li, &alias] {
        assert_eq!(a.status(pv)["status"], "Not being archived", "{pv}");
    }
    let aliases = a.json("/mgmt/bpl/getAllAliases");
    assert!(!aliases.to_string().contains(&alias), "{aliases}");
}
