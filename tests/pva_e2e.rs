//! End to end over pvAccess: the real `archiver serve` binary given
//! `archivePV?pv=pva://NAME` for records of a real IOC served over pvAccess; the values
//! read back through retrieval (getData.json) with exact values, time stamps and alarms,
//! the type info marked `usePVAccess`, a restart of the archiver restoring the PVs over
//! pvAccess, and `default_protocol = "pva"` archiving a bare name over pvAccess.

#![allow(clippy::unwrap_used)]

mod pva_support;
mod support;

use archiver_pb::PayloadType;
use archiver_registry::{Registry, SqliteRegistry};
use serde_json::{Value as Json, json};
use support::{Archiver, iso, now_secs};

/// The PV's samples of the last 10 minutes; none while it has not connected yet (polled
/// right after archivePV: the first poll may come before the pvAccess connection).
fn data(a: &Archiver, pv: &str) -> Vec<Json> {
    a.data_so_far(pv, &iso(now_secs() - 600), &iso(now_secs() + 60))
}

#[test]
fn archive_pva_names_and_read_them_back() {
    let mut ioc = pva_support::Server::start("pva_ioc.py", "PX");
    // the archiver's PVA client reads EPICS_PVA_*; this test is the only one in its
    // process, and no other thread reads the environment meanwhile
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("EPICS_PVA_ADDR_LIST", format!("127.0.0.1:{}", ioc.udp));
        std::env::set_var("EPICS_PVA_AUTO_ADDR_LIST", "NO");
    }
    let dir = tempfile::tempdir().unwrap();
    let t0 = now_secs() - 60;
    ioc.cmd(&format!("set AI 12.625 {t0}.25 1"));
    ioc.cmd(&format!("set MBBI 2 {} 2", t0 + 1));
    ioc.cmd(&format!("set WF 1,2.5 {}.5", t0 + 2));

    let mut a = Archiver::start(dir.path(), 1, 1, 1.0);
    let (status, body) = a.post(
        "/mgmt/bpl/archivePV",
        &json!([{"pv": "pva://PX:AI"}, {"pv": "pva://PX:MBBI"}, {"pv": "pva://PX:WF"}]).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let v: Json = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pvName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["PX:AI", "PX:MBBI", "PX:WF"], "{body}");

    a.wait_until(20.0, "the PVs archiving with data", |a| {
        ["PX:AI", "PX:MBBI", "PX:WF"].iter().all(|pv| {
            let s = a.status(pv);
            s["status"] == "Being archived" && !data(a, pv).is_empty()
        })
    });
    let d = data(&a, "PX:AI");
    assert_eq!(d[0]["val"], json!(12.625), "{d:?}");
    assert_eq!(
        (d[0]["secs"].as_i64(), d[0]["nanos"].as_i64()),
        (Some(t0), Some(250_000_000))
    );
    assert_eq!(d[0]["severity"], json!(1));
    let d = data(&a, "PX:MBBI");
    assert_eq!(
        (d[0]["val"].clone(), d[0]["severity"].clone()),
        (json!(2), json!(2))
    );
    let d = data(&a, "PX:WF");
    assert_eq!(d[0]["val"], json!([1.0, 2.5]));

    // more values, through the engine to the files and back
    ioc.cmd(&format!("set AI -3.5 {}.75", t0 + 3));
    a.wait_until(10.0, "the second value", |a| data(a, "PX:AI").len() >= 2);
    let d = data(&a, "PX:AI");
    assert_eq!(d[1]["val"], json!(-3.5));
    assert_eq!(d[1]["nanos"], json!(750_000_000));

    // the type info (the catalogue syncs every 2 s) says pvAccess, with the IOC's
    // metadata; read from the catalogue once the archiver has stopped
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(a.terminate());
    let reg = SqliteRegistry::open(&dir.path().join("registry.sqlite")).unwrap();
    let info = reg
        .get_type_info("PX:AI")
        .unwrap()
        .expect("a type info for PX:AI");
    assert_eq!(info.use_pv_access, Some(true));
    assert_eq!(info.dbr_type, PayloadType::ScalarDouble);
    let json = info.to_json_string();
    assert!(json.contains("\"mm\""), "{json}");
    let enum_info = reg.get_type_info("PX:MBBI").unwrap().unwrap();
    assert_eq!(enum_info.dbr_type, PayloadType::ScalarEnum);
    drop(reg);

    // a restart restores them over pvAccess; with default_protocol = "pva" (Java's
    // defaultAccessProtocol) a bare name is archived over pvAccess too (the archiver's CA
    // client searches a port nobody serves)
    ioc.cmd(&format!("set LI 77 {}.0", t0 + 5));
    let a = Archiver::start_with(
        dir.path(),
        1,
        1,
        "[engine]\nwrite_period_secs = 1\ndefault_protocol = \"pva\"\n",
    );
    let (status, body) = a.post("/mgmt/bpl/archivePV", &json!([{"pv": "PX:LI"}]).to_string());
    assert_eq!(status, 200, "{body}");
    a.wait_until(20.0, "the bare name archived over pvAccess", |a| {
        data(a, "PX:LI").iter().any(|s| s["val"] == json!(77))
    });
    ioc.cmd(&format!("set AI 8.25 {}.0", t0 + 4));
    a.wait_until(20.0, "the value after the restart", |a| {
        data(a, "PX:AI").iter().any(|s| s["val"] == json!(8.25))
    });
    let d = data(&a, "PX:AI");
    assert_eq!(
        d.iter().filter(|s| s["val"] == json!(-3.5)).count(),
        1,
        "{d:?}"
    );
}
