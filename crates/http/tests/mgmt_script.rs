//! The management API through the whole router over a real appliance archiving PVs of
//! the project's own CA server (in process): a Java-era script's call sequence (archive
//! 100 PVs, wait for "Being archived", pause, change the period, resume, rename, alias,
//! delete with data) checked literally, ChannelFinder's calls (getVersions,
//! getPolicyList, POST getPVStatus and archivePV with JSON bodies), the catalogue
//! endpoints, getPVDetails' labels, and reports after induced events (a PV that never
//! connects, a server that goes away, a restart with the IOC absent).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use archiver_appliance::{Appliance, ApplianceParts, CancellationToken, Policy, SitePolicy};
use archiver_ca::server::{PvSpec, Server, ServerConfig};
use archiver_ca::{Client, Timestamp, Value};
use archiver_engine::{Engine, EngineConfig};
use archiver_pb::Granularity;
use archiver_registry::{Registry, SqliteRegistry};
use archiver_storage::{Backend, DataStores, Tier};
use archiver_time::SystemClock;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

async fn appliance(
    server: &Server,
    dir: &std::path::Path,
    registry: Arc<SqliteRegistry>,
) -> Appliance {
    appliance_with(server, dir, registry, None, None).await
}

/// [`appliance`] with the site policy file `policy_file` (TOML text) and the engine's
/// `max_buffer_samples`, if given.
async fn appliance_with(
    server: &Server,
    dir: &std::path::Path,
    registry: Arc<SqliteRegistry>,
    policy_file: Option<&str>,
    max_buffer_samples: Option<usize>,
) -> Appliance {
    let client = Client::new(server.client_config().build().unwrap())
        .await
        .unwrap();
    let mut stores = DataStores::new(Backend::fs());
    stores
        .add(Tier::new("STS", dir.join("sts"), Granularity::Hour))
        .unwrap();
    stores
        .add(Tier::new("MTS", dir.join("mts"), Granularity::Day))
        .unwrap();
    let mut policy = Policy::for_stores(&stores);
    if let Some(text) = policy_file {
        policy.site = SitePolicy::from_toml(text, &stores).unwrap();
    }
    let mut cfg = EngineConfig {
        write_period: Duration::from_millis(200),
        ..EngineConfig::default()
    };
    policy.apply_to(&mut cfg);
    if let Some(m) = max_buffer_samples {
        cfg.max_buffer_samples = m;
    }
    let engine = Engine::start(
        client,
        stores.tiers()[0].clone(),
        cfg,
        Arc::new(SystemClock),
    );
    Appliance::new(ApplianceParts {
        engine,
        registry,
        clock: Arc::new(SystemClock),
        identity: Arc::from("appliance0"),
        policy,
        stores,
    })
}

/// Posts a new value to every PV of `names` every 100 ms until dropped.
fn tick(server: &Server, names: Vec<String>) -> tokio::task::JoinHandle<()> {
    let pvs: Vec<_> = names.iter().map(|n| server.pv(n).unwrap()).collect();
    tokio::spawn(async move {
        let mut k = 0.0;
        loop {
            k += 1.0;
            let stamp = Timestamp::now();
            for pv in &pvs {
                pv.post(Value::Double(k), stamp, 0, 0).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

struct Http {
    app: Appliance,
}

impl Http {
    async fn call(&self, req: Request<Body>) -> (StatusCode, Json) {
        let resp = archiver_http::router(self.app.clone())
            .oneshot(req)
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&body).into_owned()));
        (status, json)
    }

    async fn get(&self, uri: &str) -> Json {
        let (status, json) = self
            .call(
                Request::get(uri)
                    .header(header::HOST, "archiver.example:17665")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{uri}: {json}");
        json
    }

    async fn get_status(&self, uri: &str) -> (StatusCode, Json) {
        self.call(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn post_json(&self, uri: &str, body: &str) -> Json {
        let (status, json) = self
            .call(
                Request::post(uri)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{uri}: {json}");
        json
    }

    async fn wait(&self, what: &str, secs: u64, mut f: impl AsyncFnMut(&Http) -> bool) {
        let end = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !f(self).await {
            assert!(
                tokio::time::Instant::now() < end,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn status_of(&self, pv: &str) -> String {
        self.get(&format!("/mgmt/bpl/getPVStatus?pv={pv}")).await[0]["status"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("SCRIPT:PV{i:03}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_java_era_script_and_channelfinder_get_java_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    let pvs = names(100);
    for n in &pvs {
        server.add_pv(PvSpec::new(n, Value::Double(0.0)));
    }
    let _ticker = tick(&server, pvs.clone());
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    let app = appliance(&server, dir.path(), registry.clone()).await;
    let sync = app.spawn_catalogue_sync(Duration::from_millis(200), CancellationToken::new());
    let h = Http { app: app.clone() };

    // ChannelFinder: versions, policies, then a JSON archive request and a JSON status.
    let v = h.get("/mgmt/bpl/getVersions").await;
    let mgmt = v["mgmt_version"].as_str().unwrap();
    let parts: Vec<&str> = mgmt.split("Archiver Appliance Version ").collect();
    assert_eq!(parts.len(), 2, "{mgmt}");
    assert!(!parts[1].is_empty());
    let policies = h.get("/mgmt/bpl/getPolicyList").await;
    assert!(
        policies.as_object().unwrap().contains_key("default"),
        "{policies}"
    );

    // archivePV: the first 50 as ChannelFinder sends them, the rest as a script does.
    let body: Vec<Json> = pvs[..50]
        .iter()
        .map(|p| json!({"pv": p, "samplingMethod": "MONITOR", "samplingPeriod": "1.0"}))
        .collect();
    let r = h
        .post_json("/mgmt/bpl/archivePV", &Json::Array(body).to_string())
        .await;
    assert_eq!(r.as_array().unwrap().len(), 50);
    assert_eq!(
        r[0],
        json!({"pvName": "SCRIPT:PV000", "status": "Archive request submitted"})
    );
    let r = h
        .get(&format!("/mgmt/bpl/archivePV?pv={}", pvs[50..].join(",")))
        .await;
    assert_eq!(r.as_array().unwrap().len(), 50);
    let r = h.get("/mgmt/bpl/archivePV?pv=SCRIPT:PV000").await;
    assert_eq!(
        r,
        json!([{"pvName": "SCRIPT:PV000", "status": "Already submitted"}])
    );
    // A PV no server has.
    h.get("/mgmt/bpl/archivePV?pv=SCRIPT:NOBODY").await;

    // Wait for "Being archived" (POST JSON getPVStatus, as ChannelFinder).
    let list = serde_json::to_string(&pvs).unwrap();
    h.wait("every PV being archived", 30, async |h| {
        let r = h.post_json("/mgmt/bpl/getPVStatus", &list).await;
        r.as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "Being archived" && s["connectionState"] == "true")
    })
    .await;
    let r = h.get("/mgmt/bpl/getPVStatus?pv=SCRIPT:PV001").await;
    assert_eq!(r[0]["pvName"], "SCRIPT:PV001");
    assert_eq!(r[0]["appliance"], "appliance0");
    assert_eq!(r[0]["samplingPeriod"], "1.0");
    assert_eq!(r[0]["isMonitored"], "true");

    // The never-connecting PV is in its report with Java's keys.
    let r = h.get("/mgmt/bpl/getNeverConnectedPVs").await;
    assert_eq!(r.as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r[0]["pvName"], "SCRIPT:NOBODY");
    for k in [
        "requestTime",
        "startOfWorkflow",
        "currentState",
        "appliance",
    ] {
        assert!(r[0][k].is_string(), "{k} in {r}");
    }
    assert_ne!(r[0]["requestTime"], "Never");
    // Not paused while it never connected (Java's PauseArchivingPV finds no appliance for
    // it): a validation pointing to abortArchivingPV; status and paused report agree.
    let r = h.get("/mgmt/bpl/pauseArchivingPV?pv=SCRIPT:NOBODY").await;
    let msg = r["validation"].as_str().unwrap_or_default();
    assert!(msg.starts_with("Unable to pause PV SCRIPT:NOBODY"), "{r}");
    assert!(msg.contains("abortArchivingPV"), "{r}");
    let r = h.get("/mgmt/bpl/getPVStatus?pv=SCRIPT:NOBODY").await;
    assert_ne!(r[0]["status"], "Paused", "{r}");
    let r = h.get("/mgmt/bpl/getPausedPVsReport").await;
    assert!(!r.to_string().contains("SCRIPT:NOBODY"), "{r}");
    // A glob in getPVStatus lists the PVs still waiting to connect (getAllPVs, as Java's,
    // does not), `limit` keeping the first ones.
    h.get("/mgmt/bpl/archivePV?pv=SCRIPT:NOBODY2").await;
    let r = h.get("/mgmt/bpl/getAllPVs?pv=SCRIPT:NOB*").await;
    assert_eq!(r, json!([]));
    let r = h.get("/mgmt/bpl/getPVStatus?pv=SCRIPT:NOB*").await;
    let names: Vec<&str> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pvName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["SCRIPT:NOBODY", "SCRIPT:NOBODY2"], "{r}");
    let r = h.get("/mgmt/bpl/getPVStatus?pv=SCRIPT:NOB*&limit=1").await;
    assert_eq!(r.as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r[0]["pvName"], "SCRIPT:NOBODY");
    let (code, r) = h
        .get_status("/mgmt/bpl/getPVStatus?pv=SCRIPT:NOB*&limit=x")
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(r.to_string().contains("limit must be an integer"), "{r}");
    // abortArchivingPV takes a list as pauseArchivingPV does: one answer a PV.
    let r = h
        .post_json(
            "/mgmt/bpl/abortArchivingPV",
            r#"["SCRIPT:NOBODY2", "SCRIPT:PV000", "bad name"]"#,
        )
        .await;
    assert_eq!(
        r[0],
        json!({"pvName": "SCRIPT:NOBODY2", "status": "ok", "desc": "Aborted request for archiving PV SCRIPT:NOBODY2"})
    );
    assert_eq!(r[1]["pvName"], "SCRIPT:PV000");
    assert_eq!(r[1]["status"], "no");
    assert_eq!(r[2]["pvName"], "bad name");
    assert!(
        r[2]["validation"]
            .as_str()
            .unwrap()
            .contains("invalid PV name"),
        "{r}"
    );
    assert_eq!(h.status_of("SCRIPT:NOBODY2").await, "Not being archived");
    let r = h.get("/mgmt/bpl/abortArchivingPV?pv=SCRIPT:NOBODY").await;
    assert_eq!(
        r,
        json!({"status": "ok", "desc": "Aborted request for archiving PV SCRIPT:NOBODY"})
    );
    assert_eq!(h.status_of("SCRIPT:NOBODY").await, "Not being archived");
    let r = h.get("/mgmt/bpl/abortArchivingPV?pv=SCRIPT:PV000").await;
    assert_eq!(r["status"], "no");

    // The catalogue has the type infos once the sync ran.
    h.wait("type infos", 10, async |h| {
        h.get("/mgmt/bpl/getTypeInfoKeys")
            .await
            .as_array()
            .unwrap()
            .len()
            == 100
    })
    .await;
    let t = h.get("/mgmt/bpl/getPVTypeInfo?pv=SCRIPT:PV002").await;
    assert_eq!(t["pvName"], "SCRIPT:PV002");
    assert_eq!(t["DBRType"], "DBR_SCALAR_DOUBLE");
    assert_eq!(t["samplingPeriod"], "1.0");
    let stores = h.get("/mgmt/bpl/getStoresForPV?pv=SCRIPT:PV002").await;
    let keys: Vec<&String> = stores.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["STS", "MTS"]);

    // Reports from the engine's counters.
    h.wait("events counted", 10, async |h| {
        let r = h.get("/mgmt/bpl/getEventRateReport?limit=5").await;
        r.as_array().unwrap().len() == 5
            && r[0]["eventRate"].as_str().unwrap().parse::<f64>().unwrap() > 0.0
    })
    .await;
    let r = h.get("/mgmt/bpl/getStorageRateReport?limit=3").await;
    assert_eq!(r.as_array().unwrap().len(), 3);
    for k in [
        "pvName",
        "storageRate_KBperHour",
        "storageRate_MBperDay",
        "storageRate_GBperYear",
    ] {
        assert!(r[0][k].is_string(), "{k} in {r}");
    }
    let r = h.get("/mgmt/bpl/getRecentlyAddedPVs?limit=2").await;
    assert_eq!(r.as_array().unwrap().len(), 2);
    assert_eq!(r[0]["instance"], "appliance0");
    assert!(r[0]["creationTime"].as_str().unwrap().ends_with("UTC"));
    let r = h.get("/mgmt/bpl/getLostConnectionsReport?limit=1").await;
    assert_eq!(r[0]["currentlyConnected"], "Yes");
    let r = h.get("/mgmt/bpl/getCurrentlyDisconnectedPVs").await;
    assert_eq!(r, json!([]));

    // pause, change the period, resume.
    let r = h.get("/mgmt/bpl/pauseArchivingPV?pv=SCRIPT:PV003").await;
    assert_eq!(r, json!({"pvName": "SCRIPT:PV003", "status": "ok"}));
    let r = h.get("/mgmt/bpl/pauseArchivingPV?pv=SCRIPT:PV003").await;
    assert_eq!(
        r,
        json!({"validation": "PV SCRIPT:PV003 is already paused"})
    );
    let r = h
        .get("/mgmt/bpl/changeArchivalParameters?pv=SCRIPT:PV003&samplingperiod=2.5&samplingmethod=SCAN")
        .await;
    assert_eq!(
        r,
        json!({"status": "ok", "desc": "Successfully changed the archival parameters for SCRIPT:PV003"})
    );
    assert_eq!(h.status_of("SCRIPT:PV003").await, "Paused");
    let r = h.get("/mgmt/bpl/getPausedPVsReport").await;
    assert_eq!(r.as_array().unwrap().len(), 1);
    assert_eq!(r[0]["pvName"], "SCRIPT:PV003");
    let t = h.get("/mgmt/bpl/getPVTypeInfo?pv=SCRIPT:PV003").await;
    assert_eq!(t["samplingPeriod"], "2.5");
    assert_eq!(t["samplingMethod"], "SCAN");
    let r = h.get("/mgmt/bpl/resumeArchivingPV?pv=SCRIPT:PV003").await;
    assert_eq!(r, json!({"pvName": "SCRIPT:PV003", "status": "ok"}));
    h.wait("PV003 connected again", 10, async |h| {
        let s = h.get("/mgmt/bpl/getPVStatus?pv=SCRIPT:PV003").await;
        s[0]["status"] == "Being archived" && s[0]["connectionState"] == "true"
    })
    .await;
    let s = h.get("/mgmt/bpl/getPVStatus?pv=SCRIPT:PV003").await;
    assert_eq!(s[0]["samplingPeriod"], "2.5");
    assert_eq!(s[0]["samplingMethod"], "SCAN");
    // Change of an archiving PV: the channel is recreated.
    let r = h
        .get("/mgmt/bpl/changeArchivalParameters?pv=SCRIPT:PV004&samplingperiod=0.5")
        .await;
    assert_eq!(r["status"], "ok");
    assert_eq!(
        h.get("/mgmt/bpl/getPVStatus?pv=SCRIPT:PV004").await[0]["samplingPeriod"],
        "0.5"
    );
    // Bad input: 4xx JSON naming the problem.
    for (uri, code) in [
        (
            "/mgmt/bpl/changeArchivalParameters?pv=SCRIPT:PV004&samplingperiod=-1",
            400,
        ),
        (
            "/mgmt/bpl/changeArchivalParameters?pv=SCRIPT:PV004&samplingperiod=x",
            400,
        ),
        ("/mgmt/bpl/changeArchivalParameters?pv=SCRIPT:PV004", 400),
        (
            "/mgmt/bpl/changeArchivalParameters?pv=SCRIPT:PV004&samplingperiod=1&samplingmethod=OFTEN",
            400,
        ),
        (
            "/mgmt/bpl/changeArchivalParameters?pv=NO:SUCH&samplingperiod=1",
            404,
        ),
        ("/mgmt/bpl/getPVTypeInfo?pv=NO:SUCH", 404),
        ("/mgmt/bpl/getPVDetails?pv=NO:SUCH", 404),
        ("/mgmt/bpl/renamePV?pv=NO:SUCH&newname=X", 404),
        ("/mgmt/bpl/getEventRateReport?limit=ten", 400),
        ("/mgmt/bpl/modifyMetaFields?pv=SCRIPT:PV004", 400),
    ] {
        let (status, body) = h.get_status(uri).await;
        assert_eq!(status.as_u16(), code, "{uri}: {body}");
        assert!(body["message"].is_string(), "{uri}: {body}");
    }

    // rename: a validation while archiving, then after a pause the data is copied.
    let r = h
        .get("/mgmt/bpl/renamePV?pv=SCRIPT:PV005&newname=SCRIPT:NEW005")
        .await;
    assert_eq!(
        r,
        json!({"validation": "Need to pause PV before renaming SCRIPT:PV005 to SCRIPT:NEW005"})
    );
    h.get("/mgmt/bpl/pauseArchivingPV?pv=SCRIPT:PV005").await;
    let r = h
        .get("/mgmt/bpl/renamePV?pv=SCRIPT:PV005&newname=SCRIPT:NEW005")
        .await;
    assert_eq!(
        r,
        json!({"status": "ok", "desc": "Successfully renamed PV SCRIPT:PV005 to SCRIPT:NEW005"})
    );
    let old = archiver_storage::Tier::new("STS", dir.path().join("sts"), Granularity::Hour);
    let count = |pv: &str| {
        let mut q = old
            .query(
                pv,
                archiver_pb::Timestamp::new(0, 0),
                archiver_pb::Timestamp::new(i64::MAX / 4, 0),
            )
            .unwrap();
        let mut n = 0;
        while q.next_sample().unwrap().is_some() {
            n += 1;
        }
        n
    };
    let (a, b) = (count("SCRIPT:PV005"), count("SCRIPT:NEW005"));
    assert!(a > 0 && a == b, "{a} samples, {b} copied");
    assert_eq!(h.status_of("SCRIPT:NEW005").await, "Paused");
    let r = h
        .get("/mgmt/bpl/renamePV?pv=SCRIPT:PV005&newname=SCRIPT:NEW005")
        .await;
    // Java's `RenamePVAction` literal, double spaces and trailing space included.
    assert_eq!(
        r,
        json!({"validation": "While renaming PV  SCRIPT:PV005 to SCRIPT:NEW005, the new name  already exists "})
    );

    // alias
    let r = h
        .get("/mgmt/bpl/addAlias?pv=SCRIPT:PV006&aliasname=SCRIPT:ALIAS6")
        .await;
    assert_eq!(
        r,
        json!({"status": "ok", "desc": "Added an alias SCRIPT:ALIAS6 for PV SCRIPT:PV006"})
    );
    let t = h.get("/mgmt/bpl/getPVTypeInfo?pv=SCRIPT:ALIAS6").await;
    assert_eq!(t["pvName"], "SCRIPT:PV006");
    // Status, pause and resume through the alias act on the PV, as Java's.
    // Java's getPVStatus answers under the name asked for, pvNameOnly naming the PV.
    let st = h.get("/mgmt/bpl/getPVStatus?pv=SCRIPT:ALIAS6").await;
    assert_eq!(st[0]["pvName"], "SCRIPT:ALIAS6", "{st}");
    assert_eq!(st[0]["pvNameOnly"], "SCRIPT:PV006", "{st}");
    // archivePV of the alias is the PV's answer: no new PV.
    let r = h.get("/mgmt/bpl/archivePV?pv=SCRIPT:ALIAS6").await;
    assert_eq!(
        r,
        json!([{"pvName": "SCRIPT:PV006", "status": "Already submitted"}])
    );
    assert!(app.engine().status("SCRIPT:ALIAS6").is_none());
    // archivePV with an alias of another PV is refused, naming both; the alias stays.
    for uri in [
        "/mgmt/bpl/archivePV?pv=SCRIPT:PV007&alias=SCRIPT:ALIAS6",
        "/mgmt/bpl/archivePV?pv=SCRIPT:NEWALIASED&alias=SCRIPT:ALIAS6",
    ] {
        let (status, r) = h.get_status(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {r}");
        assert!(
            r.to_string()
                .contains("SCRIPT:ALIAS6 is already an alias of SCRIPT:PV006"),
            "{r}"
        );
    }
    assert!(app.engine().status("SCRIPT:NEWALIASED").is_none());
    let r = h
        .get("/mgmt/bpl/archivePV?pv=SCRIPT:PV006&alias=SCRIPT:ALIAS6")
        .await;
    assert_eq!(
        r,
        json!([{"pvName": "SCRIPT:PV006", "status": "Already submitted"}])
    );
    let t = h.get("/mgmt/bpl/getPVTypeInfo?pv=SCRIPT:ALIAS6").await;
    assert_eq!(t["pvName"], "SCRIPT:PV006");
    // renamePV to an alias or to PV.FIELD of an archive field is refused before any data
    // is copied (a copy was left behind, served later under the refused name).
    for (new_name, says) in [
        ("SCRIPT:ALIAS6", "is an alias of SCRIPT:PV006"),
        ("SCRIPT:PV006.HIHI", "HIHI is an archive field"),
    ] {
        let r = h
            .get(&format!(
                "/mgmt/bpl/renamePV?pv=SCRIPT:PV005&newname={new_name}"
            ))
            .await;
        assert!(
            r["validation"].as_str().unwrap_or("").contains(says),
            "{new_name}: {r}"
        );
        assert_eq!(count(new_name), 0, "{new_name}: data copied");
    }
    let before = st[0]["status"].clone();
    let p = h.get("/mgmt/bpl/pauseArchivingPV?pv=SCRIPT:ALIAS6").await;
    assert_eq!(p["pvName"], "SCRIPT:PV006", "{p}");
    assert_eq!(h.status_of("SCRIPT:PV006").await, "Paused");
    h.get("/mgmt/bpl/resumeArchivingPV?pv=SCRIPT:ALIAS6").await;
    assert_eq!(json!(h.status_of("SCRIPT:PV006").await), before);
    let r = h.get("/mgmt/bpl/getAllAliases").await;
    assert_eq!(
        r,
        json!([{"aliasName": "SCRIPT:ALIAS6", "srcName": "SCRIPT:PV006"}])
    );
    let label = |d: &Json, name: &str| -> String {
        d.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name:?} in {d}"))["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The resumed PV connects again: wait for it (at once on a quiet machine, not on a
    // loaded one: the details were read before the connection and said "no").
    let mut d = h.get("/mgmt/bpl/getPVDetails?pv=SCRIPT:ALIAS6").await;
    for _ in 0..200 {
        if label(&d, "Is this PV currently connected?") == "yes" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        d = h.get("/mgmt/bpl/getPVDetails?pv=SCRIPT:ALIAS6").await;
    }
    assert_eq!(label(&d, "PV Name"), "SCRIPT:ALIAS6");
    assert_eq!(label(&d, "Alias for "), "SCRIPT:PV006");
    assert_eq!(label(&d, "Is this PV currently connected?"), "yes");
    assert_eq!(label(&d, "Is this PV paused:"), "No");
    assert!(label(&d, "How many events so far?").parse::<u64>().unwrap() > 0);
    assert!(label(&d, "When did we receive the last event?").ends_with("UTC"));
    let r = h
        .get("/mgmt/bpl/removeAlias?pv=SCRIPT:PV006&aliasname=SCRIPT:ALIAS6")
        .await;
    assert_eq!(r["status"], "ok");

    // Named flags, set algebra.
    assert_eq!(
        h.get("/mgmt/bpl/getNamedFlag?name=SKIP_MTS_FOR_ETL").await,
        json!(false)
    );
    h.get("/mgmt/bpl/setNamedFlag?name=SKIP_MTS_FOR_ETL&value=true")
        .await;
    assert_eq!(
        h.get("/mgmt/bpl/getNamedFlag?name=SKIP_MTS_FOR_ETL").await,
        json!(true)
    );
    assert_eq!(
        h.get("/mgmt/bpl/getAllNamedFlags").await,
        json!({"SKIP_MTS_FOR_ETL": true}),
        "Java's NamedFlagsAll writes booleans"
    );
    let r = h
        .post_json("/mgmt/bpl/archivedPVs", r#"["SCRIPT:PV007","NOT:ME"]"#)
        .await;
    assert_eq!(r, json!(["SCRIPT:PV007"]));
    let r = h
        .post_json("/mgmt/bpl/unarchivedPVs", r#"["SCRIPT:PV007","NOT:ME"]"#)
        .await;
    assert_eq!(r, json!(["NOT:ME"]));
    let mut listed: Vec<&String> = pvs.iter().filter(|p| *p != "SCRIPT:PV008").collect();
    listed.push(&pvs[0]);
    let r = h
        .post_json(
            "/mgmt/bpl/archivedPVsNotInList",
            &serde_json::to_string(&listed).unwrap(),
        )
        .await;
    assert_eq!(r, json!(["SCRIPT:NEW005", "SCRIPT:PV008"]));

    // modifyMetaFields needs a pause; then the fields change in status and type info.
    let r = h
        .get("/mgmt/bpl/modifyMetaFields?pv=SCRIPT:PV009&command=add,ADEL")
        .await;
    assert!(r["validation"].is_string(), "{r}");
    h.get("/mgmt/bpl/pauseArchivingPV?pv=SCRIPT:PV009").await;
    let r = h
        .get("/mgmt/bpl/modifyMetaFields?pv=SCRIPT:PV009&command=clear")
        .await;
    // Cleared: no field at all (Java's ModifyMetaFieldsAction).
    assert_eq!(r, json!({"pvName": "SCRIPT:PV009", "fields": ""}));
    let r = h
        .get("/mgmt/bpl/modifyMetaFields?pv=SCRIPT:PV009&command=add,ADEL,MDEL,HIHI,LOLO")
        .await;
    assert_eq!(
        r,
        json!({"pvName": "SCRIPT:PV009", "fields": "ADEL,MDEL,HIHI,LOLO"})
    );
    let r = h
        .get("/mgmt/bpl/modifyMetaFields?pv=SCRIPT:PV009&command=remove,HIHI,LOLO")
        .await;
    assert_eq!(r, json!({"pvName": "SCRIPT:PV009", "fields": "ADEL,MDEL"}));
    let t = h.get("/mgmt/bpl/getPVTypeInfo?pv=SCRIPT:PV009").await;
    assert_eq!(t["archiveFields"], json!(["ADEL", "MDEL"]));
    assert_eq!(
        h.get("/mgmt/bpl/getPVStatus?pv=SCRIPT:PV009").await[0]["archiveFields"],
        "ADEL,MDEL"
    );

    // delete with data: refused while archiving (Java's validation), then done.
    let r = h
        .get("/mgmt/bpl/deletePV?pv=SCRIPT:PV010&deleteData=true")
        .await;
    assert_eq!(
        r,
        json!({"validation": "We will not stop archiving PV SCRIPT:PV010 if it is not paused. Please pause recording first."})
    );
    h.get("/mgmt/bpl/pauseArchivingPV?pv=SCRIPT:PV010").await;
    let r = h
        .get("/mgmt/bpl/deletePV?pv=SCRIPT:PV010&deleteData=true")
        .await;
    assert_eq!(r["status"], "ok");
    assert_eq!(r["pvName"], "SCRIPT:PV010");
    assert_eq!(count("SCRIPT:PV010"), 0);
    assert_eq!(h.status_of("SCRIPT:PV010").await, "Not being archived");
    let (status, _) = h
        .get_status("/mgmt/bpl/getPVTypeInfo?pv=SCRIPT:PV010")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Appliance info from the request's host.
    let i = h.get("/mgmt/bpl/getApplianceInfo").await;
    assert_eq!(i["identity"], "appliance0");
    assert_eq!(i["mgmtURL"], "http://archiver.example:17665/mgmt/bpl");
    assert_eq!(
        i["dataRetrievalURL"],
        "http://archiver.example:17665/retrieval"
    );
    let c = h.get("/mgmt/bpl/getAppliancesInCluster").await;
    assert_eq!(c[0]["identity"], "appliance0");
    let m = h.get("/mgmt/bpl/getApplianceMetrics").await;
    assert_eq!(m[0]["pvCount"], "100");
    assert_eq!(m[0]["pausedPVCount"], "3");

    // Export, delete, import: the type info comes back (paused, as Java forces).
    let export = h.get("/mgmt/bpl/exportConfig").await;
    assert_eq!(export.as_array().unwrap().len(), 100);
    let one: Vec<Json> = export
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["pvName"] == "SCRIPT:PV009")
        .cloned()
        .collect();
    h.get("/mgmt/bpl/deletePV?pv=SCRIPT:PV009").await;
    assert_eq!(h.status_of("SCRIPT:PV009").await, "Not being archived");
    let r = h
        .post_json(
            "/mgmt/bpl/importConfig",
            &Json::Array(one.clone()).to_string(),
        )
        .await;
    assert_eq!(r, json!({"appliance": "appliance0", "errorPVs": []}));
    assert_eq!(h.status_of("SCRIPT:PV009").await, "Paused");
    // Java's ImportConfigForAppliance: an existing PV is skipped (listed in errorPVs, not
    // restarted), another appliance's too; a new one starts in its type info's state.
    let mut fresh = one[0].clone();
    fresh["pvName"] = json!("SCRIPT:IMPORTED");
    fresh["paused"] = json!("false");
    let mut foreign = one[0].clone();
    foreign["pvName"] = json!("SCRIPT:FOREIGN");
    foreign["applianceIdentity"] = json!("appliance7");
    let r = h
        .post_json(
            "/mgmt/bpl/importConfigForAppliance",
            &json!([one[0], fresh, foreign]).to_string(),
        )
        .await;
    assert_eq!(
        r,
        json!({"appliance": "appliance0", "errorPVs": ["SCRIPT:PV009", "SCRIPT:FOREIGN"]})
    );
    assert_eq!(h.status_of("SCRIPT:PV009").await, "Paused");
    assert_eq!(h.status_of("SCRIPT:IMPORTED").await, "Being archived");
    assert_eq!(h.status_of("SCRIPT:FOREIGN").await, "Not being archived");
    h.get("/mgmt/bpl/pauseArchivingPV?pv=SCRIPT:IMPORTED").await;
    h.get("/mgmt/bpl/deletePV?pv=SCRIPT:IMPORTED").await;

    // The IOC goes away: every archiving PV is reported disconnected, still being archived.
    drop(server);
    h.wait("disconnections", 30, async |h| {
        h.get("/mgmt/bpl/getCurrentlyDisconnectedPVs")
            .await
            .as_array()
            .unwrap()
            .len()
            == 97
    })
    .await;
    let r = h.get("/mgmt/bpl/getCurrentlyDisconnectedPVs").await;
    for k in [
        "pvName",
        "instance",
        "connectionLostAt",
        "noConnectionAsOfEpochSecs",
        "hostName",
        "commandThreadID",
        "lastKnownEvent",
    ] {
        assert!(r[0][k].is_string(), "{k} in {r}");
    }
    assert_eq!(h.status_of("SCRIPT:PV001").await, "Being archived");
    // Consolidating a PV being archived is refused as Java refuses it.
    let r = h
        .get("/mgmt/bpl/consolidateDataForPV?pv=SCRIPT:PV001&storage=LTS")
        .await;
    assert_eq!(
        r["validation"],
        "Cannot consolidate unless PV SCRIPT:PV001 is paused."
    );
    let r = h.get("/mgmt/bpl/getLostConnectionsReport?limit=1").await;
    assert_eq!(r[0]["currentlyConnected"], "No");
    // At least the loss of the server (a reconnection to the dying server, then its
    // loss, counts twice: seen under load).
    let lost: u64 = r[0]["lostConnections"].as_str().unwrap().parse().unwrap();
    assert!(lost >= 1, "{r}");

    app.shutdown(sync).await.unwrap();

    // Restart with the IOC still absent: archived PVs are "Being archived", not
    // connected, with their metadata from the catalogue.
    let server2 = Server::start(ServerConfig::loopback()).await.unwrap();
    let app2 = appliance(&server2, dir.path(), registry.clone()).await;
    app2.restore().await.unwrap();
    let h2 = Http { app: app2.clone() };
    let s = h2.get("/mgmt/bpl/getPVStatus?pv=SCRIPT:PV001").await;
    assert_eq!(s[0]["status"], "Being archived");
    assert_eq!(s[0]["connectionState"], "false");
    assert_eq!(s[0]["dbrType"], "DBR_SCALAR_DOUBLE");
    assert!(
        app2.engine().status("SCRIPT:PV001").unwrap().meta.known,
        "metadata from the catalogue"
    );
    assert_eq!(h2.status_of("SCRIPT:PV003").await, "Being archived");
    assert_eq!(h2.status_of("SCRIPT:PV009").await, "Paused");
}

/// The site policy file of the policy tests.
const POLICIES: &str = r#"
[[policy]]
name = "fast"
description = "Fast PVs, short-term store only"
sampling_period = 0.5
data_stores = ["STS"]

[[policy]]
name = "wave"
description = "Waveforms every 2 s"
sampling_method = "SCAN"
sampling_period = 2
data_stores = ["STS"]

[[policy]]
name = "beam"
description = "Only while CTL:ON is not 0"
controlling_pv = "CTL:ON"

[[policy]]
name = "busy"
description = "Busy PVs every 2 s"
sampling_method = "SCAN"
sampling_period = 2
data_stores = ["STS"]

[[rule]]
policy = "fast"
pv = "POL:FAST*"

[[rule]]
policy = "wave"
min_element_count = 2

[[rule]]
policy = "busy"
min_event_rate = 5

[[policy]]
name = "analog"
description = "Analog inputs every 5 s"
sampling_period = 5

[[rule]]
policy = "analog"
rtyp = ["ai"]
"#;

/// The samples of `pv` in the store `tier`.
fn stored(app: &Appliance, tier: usize, pv: &str) -> usize {
    let t = &app.stores().tiers()[tier];
    let mut q = t
        .query(
            pv,
            archiver_pb::Timestamp::new(0, 0),
            archiver_pb::Timestamp::new(i64::MAX / 4, 0),
        )
        .unwrap();
    let mut n = 0;
    while q.next_sample().unwrap().is_some() {
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_policies_decide_at_archive_time_and_are_reapplied_keeping_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    let scalars = ["POL:FAST1", "POL:NAMED", "POL:OTHER", "POL:FAST9"];
    for n in scalars {
        server.add_pv(PvSpec::new(n, Value::Double(0.0)));
    }
    server.add_pv(PvSpec::new("POL:WAVE", Value::DoubleArray(vec![0.0; 8])));
    // An `ai` record: its RTYP field is served as a PV of its own.
    server.add_pv(PvSpec::new("POL:TEMP", Value::Double(21.5)));
    server.add_pv(PvSpec::new(
        "POL:TEMP.RTYP",
        Value::String(archiver_ca::CaString::new("ai")),
    ));
    let wave = server.pv("POL:WAVE").unwrap();
    let _ticker = tick(&server, scalars.iter().map(|s| s.to_string()).collect());
    let _wave_ticker = tokio::spawn(async move {
        let mut k = 0.0;
        loop {
            k += 1.0;
            wave.post(Value::DoubleArray(vec![k; 8]), Timestamp::now(), 0, 0)
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    let app = appliance_with(&server, dir.path(), registry, Some(POLICIES), None).await;
    let sync = app.spawn_catalogue_sync(Duration::from_millis(200), CancellationToken::new());
    let h = Http { app: app.clone() };

    // The policies, as ChannelFinder and the UI read them.
    let list = h.get("/mgmt/bpl/getPolicyList").await;
    assert_eq!(
        list,
        json!({"fast": "Fast PVs, short-term store only", "wave": "Waveforms every 2 s",
               "beam": "Only while CTL:ON is not 0", "busy": "Busy PVs every 2 s",
               "analog": "Analog inputs every 5 s",
               "default": "The Java appliance's default policy: MONITOR at 1 s, every configured store"})
    );
    let (status, text) = h.get_status("/mgmt/bpl/getPolicyText").await;
    assert_eq!(
        (status, text),
        (StatusCode::OK, Json::String(POLICIES.to_string()))
    );

    // Refusals before anything is archived: an unknown policy, another appliance.
    let (status, e) = h
        .get_status("/mgmt/bpl/archivePV?pv=POL:OTHER,POL:FAST1&policy=nope")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        e.to_string().contains("policy \\\"nope\\\" does not exist"),
        "{e}"
    );
    let (status, e) = h
        .get_status("/mgmt/bpl/archivePV?pv=POL:OTHER&appliance=appliance7")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(e.to_string().contains("appliance7"), "{e}");
    let (status, e) = h
        .call(
            Request::post("/mgmt/bpl/archivePV")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!([{"pv": "POL:OTHER", "alias": "POL:FAST1"}, {"pv": "POL:FAST1"}])
                        .to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        e.to_string()
            .contains("Cannot add alias POL:FAST1 for POL:OTHER: POL:FAST1 is a PV being archived"),
        "{e}"
    );
    assert_eq!(h.status_of("POL:OTHER").await, "Not being archived");

    // Archive: by rule (name glob), by name of policy, by default with an alias; our own
    // appliance name is accepted. The waveform's element count is not known yet.
    let r = h
        .post_json(
            "/mgmt/bpl/archivePV",
            &json!([
                {"pv": "POL:FAST1"},
                {"pv": "POL:NAMED", "policy": "fast", "appliance": "appliance0"},
                {"pv": "POL:OTHER", "alias": "POL:OTHER_ALIAS"},
                {"pv": "POL:WAVE", "samplingperiod": "1"},
                {"pv": "POL:TEMP"},
            ])
            .to_string(),
        )
        .await;
    assert_eq!(r.as_array().unwrap().len(), 5, "{r}");
    for pv in [
        "POL:FAST1",
        "POL:NAMED",
        "POL:OTHER",
        "POL:WAVE",
        "POL:TEMP",
    ] {
        h.wait(pv, 20, async |h| {
            h.get_status(&format!("/mgmt/bpl/getPVTypeInfo?pv={pv}"))
                .await
                .0
                == StatusCode::OK
        })
        .await;
    }
    let sts_only = json!([app.stores().tiers()[0].url()]);
    let all_stores = json!([app.stores().tiers()[0].url(), app.stores().tiers()[1].url()]);
    let info = |pv: &'static str| {
        let h = &h;
        async move { h.get(&format!("/mgmt/bpl/getPVTypeInfo?pv={pv}")).await }
    };
    let t = info("POL:FAST1").await;
    assert_eq!(
        (&t["policyName"], &t["samplingPeriod"], &t["dataStores"]),
        (&json!("fast"), &json!("0.5"), &sts_only)
    );
    let t = info("POL:NAMED").await;
    assert_eq!(
        (&t["policyName"], &t["samplingPeriod"]),
        (&json!("fast"), &json!("0.5"))
    );
    assert_eq!(t["extraFields"]["policyRequested"], "fast");
    let t = info("POL:OTHER").await;
    assert_eq!(
        (&t["policyName"], &t["dataStores"]),
        (&json!("default"), &all_stores)
    );
    // The waveform's policy is decided again once its element count is known (as Java
    // decides after reading the metadata), keeping the period its request gave.
    h.wait("the waveform policy", 20, async |h| {
        h.get("/mgmt/bpl/getPVTypeInfo?pv=POL:WAVE").await["policyName"] == "wave"
    })
    .await;
    let t = info("POL:WAVE").await;
    assert_eq!(
        (
            &t["samplingPeriod"],
            &t["samplingMethod"],
            &t["dataStores"],
            &t["extraFields"]["userSamplingPeriod"]
        ),
        (&json!("1.0"), &json!("SCAN"), &sts_only, &json!("1")),
        "{t}"
    );
    let s = h.get("/mgmt/bpl/getPVStatus?pv=POL:WAVE").await;
    assert_eq!(
        (&s[0]["samplingMethod"], &s[0]["samplingPeriod"]),
        (&json!("SCAN"), &json!("1.0"))
    );
    // The record type read on connection decides too (and is kept in extraFields).
    h.wait("the analog policy", 20, async |h| {
        h.get("/mgmt/bpl/getPVTypeInfo?pv=POL:TEMP").await["policyName"] == "analog"
    })
    .await;
    let t = info("POL:TEMP").await;
    assert_eq!(
        (&t["samplingPeriod"], &t["extraFields"]["RTYP"]),
        (&json!("5.0"), &json!("ai"))
    );
    let aliases = h.get("/mgmt/bpl/getAllAliases").await;
    assert!(aliases.to_string().contains("POL:OTHER_ALIAS"), "{aliases}");
    let d = h.get("/mgmt/bpl/getPVDetails?pv=POL:FAST1").await;
    assert!(
        d.as_array()
            .unwrap()
            .contains(&json!({"name": "Policy name:", "value": "fast", "source": "mgmt"})),
        "{d}"
    );

    // getTimeSpanReport: keyed by name, creation and last event as epoch seconds.
    let r = h
        .get("/mgmt/bpl/getTimeSpanReport?regex=POL:(FAST|NAMED).*")
        .await;
    let m = r.as_object().unwrap();
    assert_eq!(
        m.keys().collect::<Vec<_>>(),
        ["POL:FAST1", "POL:NAMED"],
        "{r}"
    );
    let first = h
        .get("/mgmt/bpl/getTimeSpanReport?regex=POL:(FAST|NAMED).*&limit=1")
        .await;
    let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["POL:FAST1"], "limit");
    let row = &m["POL:FAST1"];
    assert_eq!(
        (&row["pvName"], &row["paused"]),
        (&json!("POL:FAST1"), &json!("false"))
    );
    let created: i64 = row["creationTS"].as_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - 60..=now).contains(&created), "{row}");
    let last: i64 = row["lastEvent"].as_str().unwrap().parse().unwrap();
    assert!((now - 60..=now + 1).contains(&last), "{row}");

    // POL:OTHER has data, one file in MTS too (as ETL would have moved it).
    h.wait("stored samples", 20, async |h| {
        stored(&h.app, 0, "POL:OTHER") >= 3
    })
    .await;
    app.stores().tiers()[1]
        .append(
            "POL:OTHER",
            archiver_pb::PayloadType::ScalarDouble,
            &[archiver_pb::Sample::new(
                archiver_pb::Timestamp::new(1_700_000_000, 0),
                archiver_pb::Value::ScalarDouble(1.0),
            )],
        )
        .unwrap();
    // Its event rate (10 a second) is measured over some seconds before re-applying.
    h.wait("two seconds of events", 20, async |h| {
        let c = h.app.engine().status("POL:OTHER").unwrap().counters;
        h.app.clock().now().secs - c.added_secs >= 2
    })
    .await;

    // A dry run mistyped is refused, never applied.
    let (status, body) = h
        .get_status("/mgmt/bpl/reapplyPolicies?pv=POL:*&dryrun=yes")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Dry run: what would change, nothing changed.
    let r = h
        .get("/mgmt/bpl/reapplyPolicies?pv=POL:*&dryrun=true")
        .await;
    let by_pv = |r: &Json, pv: &str| {
        r.as_array()
            .unwrap()
            .iter()
            .find(|x| x["pvName"] == pv)
            .cloned()
            .unwrap()
    };
    let w = by_pv(&r, "POL:OTHER");
    assert_eq!(
        (&w["status"], &w["policy"], &w["previousPolicy"]),
        (&json!("would change"), &json!("busy"), &json!("default")),
        "{r}"
    );
    assert_eq!(
        w["changes"],
        json!([
            "samplingMethod: MONITOR -> SCAN",
            "samplingPeriod: 1 -> 2",
            "policyName: default -> busy"
        ]),
        "the MTS file keeps MTS in dataStores"
    );
    assert_eq!(
        by_pv(&r, "POL:FAST1")["status"],
        "unchanged",
        "first rule wins"
    );
    assert_eq!(
        by_pv(&r, "POL:NAMED")["status"],
        "unchanged",
        "the named policy is kept"
    );
    assert_eq!(
        by_pv(&r, "POL:WAVE")["status"],
        "unchanged",
        "the requested period is kept"
    );
    assert_eq!(info("POL:OTHER").await["policyName"], "default");

    // Re-applied: the engine and the catalogue take the policy, every sample is kept.
    let before = stored(&app, 0, "POL:OTHER");
    let r = h.get("/mgmt/bpl/reapplyPolicies?pv=POL:OTHER").await;
    assert_eq!(r[0]["status"], "changed", "{r}");
    let s = h.get("/mgmt/bpl/getPVStatus?pv=POL:OTHER").await;
    assert_eq!(
        (&s[0]["samplingMethod"], &s[0]["samplingPeriod"]),
        (&json!("SCAN"), &json!("2.0"))
    );
    let t = info("POL:OTHER").await;
    assert_eq!(
        (
            &t["policyName"],
            &t["samplingPeriod"],
            &t["samplingMethod"],
            &t["dataStores"]
        ),
        (&json!("busy"), &json!("2.0"), &json!("SCAN"), &all_stores)
    );
    assert!(stored(&app, 0, "POL:OTHER") >= before);
    assert_eq!(stored(&app, 1, "POL:OTHER"), 1);
    h.wait("archiving again", 20, async |h| {
        h.status_of("POL:OTHER").await == "Being archived"
            && stored(&h.app, 0, "POL:OTHER") > before
    })
    .await;
    // Again: nothing left to change.
    let r = h.get("/mgmt/bpl/reapplyPolicies?pv=POL:OTHER").await;
    assert_eq!(r[0]["status"], "unchanged", "{r}");
    // An operator's changeArchivalParameters is recorded as a request's own period: the
    // policy re-applied keeps it (its rule says 2 s).
    let r = h
        .get("/mgmt/bpl/changeArchivalParameters?pv=POL:OTHER&samplingperiod=3")
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(
        info("POL:OTHER").await["extraFields"]["userSamplingPeriod"],
        "3"
    );
    let r = h.get("/mgmt/bpl/reapplyPolicies?pv=POL:OTHER").await;
    assert_eq!(r[0]["status"], "unchanged", "{r}");
    assert_eq!(info("POL:OTHER").await["samplingPeriod"], "3.0");
    // The same for a PV still waiting to connect: the policy decided at its connection
    // (its rule says 0.5 s) keeps the operator's period.
    h.get("/mgmt/bpl/archivePV?pv=POL:FAST7").await;
    let r = h
        .get("/mgmt/bpl/changeArchivalParameters?pv=POL:FAST7&samplingperiod=4")
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    server.add_pv(PvSpec::new("POL:FAST7", Value::Double(0.0)));
    h.wait("POL:FAST7 recorded", 20, async |h| {
        h.get_status("/mgmt/bpl/getPVTypeInfo?pv=POL:FAST7").await.0 == StatusCode::OK
    })
    .await;
    let t = info("POL:FAST7").await;
    assert_eq!(
        (
            &t["samplingPeriod"],
            &t["extraFields"]["userSamplingPeriod"]
        ),
        (&json!("4.0"), &json!("4")),
        "{t}"
    );
    // An unknown PV is skipped with the reason.
    let r = h.get("/mgmt/bpl/reapplyPolicies?pv=POL:NOPE").await;
    assert_eq!(r[0]["status"], "skipped", "{r}");

    // A type info put by putPVTypeInfo is kept as given when its PV connects, even when
    // a rule matches its name (Java decides policies in the archivePV workflow only).
    let mut t = h.get("/mgmt/bpl/getPVTypeInfo?pv=POL:OTHER").await;
    t["pvName"] = json!("POL:FAST9");
    t["samplingMethod"] = json!("SCAN");
    t["samplingPeriod"] = json!("7.0");
    let r = h
        .post_json(
            "/mgmt/bpl/putPVTypeInfo?pv=POL:FAST9&createnew=true",
            &t.to_string(),
        )
        .await;
    assert_eq!(r["samplingPeriod"], "7.0", "{r}");
    h.get("/mgmt/bpl/resumeArchivingPV?pv=POL:FAST9").await;
    h.wait("POL:FAST9 connected and recorded", 20, async |h: &Http| {
        let d = h.get("/mgmt/bpl/getPVStatus?pv=POL:FAST9").await;
        d[0]["connectionState"] == "true"
    })
    .await;
    // Past a few catalogue rounds (200 ms each).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let t = h.get("/mgmt/bpl/getPVTypeInfo?pv=POL:FAST9").await;
    assert_eq!(
        (&t["samplingMethod"], &t["samplingPeriod"]),
        (&json!("SCAN"), &json!("7.0")),
        "{t}"
    );

    app.shutdown(sync).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controlling_pv_pauses_and_resumes_its_pvs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    for n in ["CTL:A", "CTL:B", "CTL:C"] {
        server.add_pv(PvSpec::new(n, Value::Double(0.0)));
    }
    let ctl = server.add_pv(PvSpec::new("CTL:ON", Value::Long(1)));
    let _ticker = tick(
        &server,
        vec!["CTL:A".into(), "CTL:B".into(), "CTL:C".into()],
    );
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    let app = appliance_with(&server, dir.path(), registry.clone(), Some(POLICIES), None).await;
    let sync = app.spawn_catalogue_sync(Duration::from_millis(200), CancellationToken::new());
    let h = Http { app: app.clone() };

    // By parameter, and by policy.
    h.get("/mgmt/bpl/archivePV?pv=CTL:A,CTL:C&controllingPV=CTL:ON")
        .await;
    h.get("/mgmt/bpl/archivePV?pv=CTL:B&policy=beam").await;
    let state = |pv: &'static str| {
        let h = &h;
        async move { h.get(&format!("/mgmt/bpl/getPVStatus?pv={pv}")).await[0].clone() }
    };
    for pv in ["CTL:A", "CTL:B", "CTL:C"] {
        h.wait("enabled", 20, async |h| {
            let s = h.get(&format!("/mgmt/bpl/getPVStatus?pv={pv}")).await;
            s[0]["status"] == "Being archived" && s[0]["controllingPVState"] == "enabled"
        })
        .await;
    }
    let s = state("CTL:B").await;
    assert_eq!(
        (&s["controllingPV"], &s["controllingPVTransitions"]),
        (&json!("CTL:ON"), &json!("0"))
    );
    // An operator pauses C: the controlling PV does not resume it later.
    h.get("/mgmt/bpl/pauseArchivingPV?pv=CTL:C").await;

    // 0: paused, the transition visible.
    ctl.post(Value::Long(0), Timestamp::now(), 0, 0).unwrap();
    for pv in ["CTL:A", "CTL:B"] {
        h.wait("paused by the controlling PV", 20, async |h| {
            let s = h.get(&format!("/mgmt/bpl/getPVStatus?pv={pv}")).await;
            s[0]["status"] == "Paused" && s[0]["controllingPVState"] == "disabled"
        })
        .await;
    }
    let s = state("CTL:A").await;
    assert_eq!(s["controllingPVTransitions"], "1");
    assert_ne!(s["controllingPVLastTransition"], "Never");
    let stored_while_paused = app.engine().status("CTL:A").unwrap().counters.events_stored;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.engine().status("CTL:A").unwrap().counters.events_stored,
        stored_while_paused,
        "nothing archived while the controlling PV is 0"
    );
    let d = h.get("/mgmt/bpl/getPVDetails?pv=CTL:A").await;
    let details = d.as_array().unwrap();
    for (name, value) in [
        ("Controlling PV", "CTL:ON"),
        ("Does the controlling PV enable archiving?", "disabled"),
        ("Is engine currently archiving this?", "no"),
        ("Controlling PV transitions", "1"),
    ] {
        assert!(
            details.contains(&json!({"name": name, "value": value, "source": "pv"})),
            "{name}: {d}"
        );
    }
    // The catalogue does not record the controlling PV's pause as the operator's.
    h.wait("type info", 20, async |h| {
        h.get_status("/mgmt/bpl/getPVTypeInfo?pv=CTL:A").await.0 == StatusCode::OK
    })
    .await;
    let t = h.get("/mgmt/bpl/getPVTypeInfo?pv=CTL:A").await;
    assert_eq!(
        (&t["paused"], &t["controllingPV"]),
        (&json!("false"), &json!("CTL:ON"))
    );

    // Non-zero: resumed, archiving again; the operator's pause stays.
    ctl.post(Value::Long(5), Timestamp::now(), 0, 0).unwrap();
    for pv in ["CTL:A", "CTL:B"] {
        h.wait("resumed by the controlling PV", 20, async |h| {
            let s = h.get(&format!("/mgmt/bpl/getPVStatus?pv={pv}")).await;
            s[0]["status"] == "Being archived" && s[0]["controllingPVTransitions"] == "2"
        })
        .await;
    }
    h.wait("archiving again", 20, async |h| {
        h.app
            .engine()
            .status("CTL:A")
            .unwrap()
            .counters
            .events_stored
            > stored_while_paused
    })
    .await;
    assert_eq!(h.status_of("CTL:C").await, "Paused");
    h.wait("recorded", 20, async |h| {
        h.get_status("/mgmt/bpl/getPVTypeInfo?pv=CTL:B").await.0 == StatusCode::OK
    })
    .await;
    app.shutdown(sync).await.unwrap();

    // A restart while the controlling PV is 0: the controlled PVs are restored from the
    // catalogue (controllingPV kept there) and paused again by it; C stays the operator's.
    ctl.post(Value::Long(0), Timestamp::now(), 0, 0).unwrap();
    let app2 = appliance_with(&server, dir.path(), registry, Some(POLICIES), None).await;
    app2.restore().await.unwrap();
    let h2 = Http { app: app2.clone() };
    for pv in ["CTL:A", "CTL:B"] {
        h2.wait("paused after the restart", 20, async |h| {
            let s = h.get(&format!("/mgmt/bpl/getPVStatus?pv={pv}")).await;
            s[0]["status"] == "Paused"
                && s[0]["controllingPV"] == "CTL:ON"
                && s[0]["controllingPVState"] == "disabled"
        })
        .await;
    }
    assert_eq!(h2.status_of("CTL:C").await, "Paused");
    ctl.post(Value::Long(1), Timestamp::now(), 0, 0).unwrap();
    h2.wait("resumed after the restart", 20, async |h| {
        h.status_of("CTL:A").await == "Being archived"
    })
    .await;
    assert_eq!(
        h2.status_of("CTL:C").await,
        "Paused",
        "the operator's pause"
    );
    let sync2 = app2.spawn_catalogue_sync(Duration::from_millis(200), CancellationToken::new());
    app2.shutdown(sync2).await.unwrap();
}

/// The value of the first stored sample of `pv` in the first store.
fn first_stored(app: &Appliance, pv: &str) -> archiver_pb::Value {
    let mut q = app.stores().tiers()[0]
        .query(
            pv,
            archiver_pb::Timestamp::new(0, 0),
            archiver_pb::Timestamp::new(i64::MAX / 4, 0),
        )
        .unwrap();
    q.next_sample().unwrap().unwrap().value.clone()
}

/// The PV names of a report.
async fn report(h: &Http, name: &str) -> Vec<String> {
    h.get(&format!("/mgmt/bpl/{name}"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pvName"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_after_induced_events_and_a_type_change_rewritten_by_change_type_for_pv() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    let future = server.add_pv(PvSpec::new("IND:FUTURE", Value::Double(0.0)));
    let burst = server.add_pv(PvSpec::new("IND:BURST", Value::Double(0.0)));
    server.add_pv(PvSpec::new("IND:TYPE", Value::Double(0.0)));
    let ticker = tick(&server, vec!["IND:TYPE".into()]);
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    // Buffers of 10 samples: a PV archived at every update overflows in a burst.
    let app = appliance_with(&server, dir.path(), registry.clone(), None, Some(10)).await;
    let sync = app.spawn_catalogue_sync(Duration::from_millis(200), CancellationToken::new());
    let h = Http { app: app.clone() };
    h.get("/mgmt/bpl/archivePV?pv=IND:FUTURE,IND:TYPE").await;
    h.get("/mgmt/bpl/archivePV?pv=IND:BURST&samplingperiod=0")
        .await;
    for pv in ["IND:FUTURE", "IND:BURST", "IND:TYPE"] {
        h.wait("connected", 20, async |h| {
            let s = h.get(&format!("/mgmt/bpl/getPVStatus?pv={pv}")).await;
            s[0]["connectionState"] == "true" && s[0]["dbrType"] == "DBR_SCALAR_DOUBLE"
        })
        .await;
    }

    // A time stamp a day ahead: dropped by the time stamp filter.
    let ahead = std::time::SystemTime::now() + Duration::from_secs(86_400);
    future
        .post(Value::Double(1.0), Timestamp::from_system(ahead), 0, 0)
        .unwrap();
    // A burst of 200 updates within one write period: the buffer keeps 10.
    for k in 0..200 {
        burst
            .post(Value::Double(f64::from(k)), Timestamp::now(), 0, 0)
            .unwrap();
    }
    h.wait("dropped time stamps and overflows", 20, async |h| {
        report(h, "getPVsByDroppedEventsTimestamp").await == ["IND:FUTURE"]
            && report(h, "getPVsByDroppedEventsBuffer").await == ["IND:BURST"]
    })
    .await;
    let r = h.get("/mgmt/bpl/getPVsByDroppedEventsTimestamp").await;
    assert_eq!(r[0]["eventsDropped"], "1", "{r}");
    let r = h.get("/mgmt/bpl/getPVsByDroppedEventsBuffer").await;
    let overflowed: u64 = r[0]["eventsDropped"].as_str().unwrap().parse().unwrap();
    assert!(overflowed > 0, "{r}");
    assert!(
        report(&h, "getPVsByDroppedEventsTypeChange")
            .await
            .is_empty()
    );

    // The record changes type (the IOC restarts with IND:TYPE a long) while we restart.
    h.wait("stored doubles", 20, async |h| {
        stored(&h.app, 0, "IND:TYPE") >= 3
    })
    .await;
    h.wait("type info", 20, async |h| {
        h.get_status("/mgmt/bpl/getPVTypeInfo?pv=IND:TYPE").await.0 == StatusCode::OK
    })
    .await;
    ticker.abort();
    app.shutdown(sync).await.unwrap();
    drop(server);
    let before = stored(&app, 0, "IND:TYPE");
    assert_eq!(
        first_stored(&app, "IND:TYPE").payload_type(),
        archiver_pb::PayloadType::ScalarDouble
    );

    let server2 = Server::start(ServerConfig::loopback()).await.unwrap();
    let long = server2.add_pv(PvSpec::new("IND:TYPE", Value::Long(0)));
    let _long_ticker = tokio::spawn(async move {
        let mut k = 0;
        loop {
            k += 1;
            long.post(Value::Long(k), Timestamp::now(), 0, 0).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let app2 = appliance(&server2, dir.path(), registry.clone()).await;
    app2.restore().await.unwrap();
    let sync2 = app2.spawn_catalogue_sync(Duration::from_millis(200), CancellationToken::new());
    let h2 = Http { app: app2.clone() };
    h2.wait("type change drops", 20, async |h| {
        report(h, "getPVsByDroppedEventsTypeChange").await == ["IND:TYPE"]
    })
    .await;

    // changeTypeForPV: refused while archiving (Java's validation), then done when paused.
    let r = h2
        .get("/mgmt/bpl/changeTypeForPV?pv=IND:TYPE&newtype=DBR_SCALAR_INT")
        .await;
    assert_eq!(
        r,
        json!({"validation": "Need to pause PV before changing type for IND:TYPE"})
    );
    let (status, _) = h2
        .get_status("/mgmt/bpl/changeTypeForPV?pv=IND:TYPE&newtype=DBR_SCALAR_LONG")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    h2.get("/mgmt/bpl/pauseArchivingPV?pv=IND:TYPE").await;
    let r = h2
        .get("/mgmt/bpl/changeTypeForPV?pv=IND:TYPE&newtype=DBR_SCALAR_INT")
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["dropped"], "0", "{r}");
    assert_eq!(r["samples"], before.to_string(), "{r}");
    assert_eq!(stored(&app2, 0, "IND:TYPE"), before, "every sample kept");
    assert!(matches!(
        first_stored(&app2, "IND:TYPE"),
        archiver_pb::Value::ScalarInt(_)
    ));
    let t = h2.get("/mgmt/bpl/getPVTypeInfo?pv=IND:TYPE").await;
    assert_eq!(
        (&t["DBRType"], &t["paused"]),
        (&json!("DBR_SCALAR_INT"), &json!("true"))
    );

    // Resumed: the longs are archived now, no more type-change drops.
    h2.get("/mgmt/bpl/resumeArchivingPV?pv=IND:TYPE").await;
    h2.wait("archiving the new type", 20, async |h| {
        stored(&h.app, 0, "IND:TYPE") > before + 2
    })
    .await;
    let s = h2.get("/mgmt/bpl/getPVStatus?pv=IND:TYPE").await;
    assert_eq!(s[0]["dbrType"], "DBR_SCALAR_INT");
    assert_eq!(s[0]["droppedEventsTypeChange"], "0", "{s}");
    app2.shutdown(sync2).await.unwrap();
}

/// Names as Java reads them: `PV.FIELD` for a stream field is the PV (archivePV adds the
/// field to its archive fields, getPVStatus answers its status), another field is a PV of
/// its own; getAllPVs lists archived PVs then aliases, never a PV still in its request;
/// getAllExpandedPVNames lists Java's placeholder, each PV with `.VAL` and its fields,
/// the aliases, then the requests, and never `PV.FIELD.FIELD`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_aliases_and_name_lists_follow_java() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    let pvs = ["NAMES:A", "NAMES:B", "NAMES:A.DESC"]
        .map(String::from)
        .to_vec();
    for n in &pvs {
        server.add_pv(PvSpec::new(n, Value::Double(0.0)));
    }
    let _ticker = tick(&server, pvs.clone());
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    let app = appliance(&server, dir.path(), registry.clone()).await;
    let sync = app.spawn_catalogue_sync(Duration::from_millis(200), CancellationToken::new());
    let h = Http { app: app.clone() };

    let r = h.get("/mgmt/bpl/archivePV?pv=NAMES:A,NAMES:A.DESC").await;
    assert_eq!(r[1]["pvName"], "NAMES:A.DESC", "not a stream field: a PV");
    h.wait("NAMES:A being archived", 30, async |h| {
        h.status_of("NAMES:A").await == "Being archived"
            && h.status_of("NAMES:A.DESC").await == "Being archived"
    })
    .await;
    h.wait("the type infos", 10, async |h| {
        h.get_status("/mgmt/bpl/getPVTypeInfo?pv=NAMES:A.DESC")
            .await
            .0
            == StatusCode::OK
    })
    .await;
    // A new PV asked for with a stream field: the PV is archived, the field with it.
    let r = h.get("/mgmt/bpl/archivePV?pv=NAMES:B.HIHI").await;
    assert_eq!(
        r,
        json!([{"pvName": "NAMES:B", "status": "Archive request submitted"}])
    );
    assert!(app.engine().status("NAMES:B.HIHI").is_none());
    let b = app.engine().status("NAMES:B").unwrap();
    assert!(b.config.archive_fields.contains(&"HIHI".to_string()));
    // A PV in its archive request: not in getAllPVs, in the expanded names' tail.
    h.get("/mgmt/bpl/archivePV?pv=NAMES:NOBODY").await;

    // archivePV of PV.DRVH (a stream field it lacks): added to the PV, no new PV.
    let before = h.get("/mgmt/bpl/getPVTypeInfo?pv=NAMES:A").await;
    assert!(
        !before["archiveFields"]
            .as_array()
            .unwrap()
            .contains(&json!("DRVH"))
    );
    let r = h.get("/mgmt/bpl/archivePV?pv=NAMES:A.DRVH").await;
    assert_eq!(
        r,
        json!([{"pvName": "NAMES:A", "status": "Already submitted"}])
    );
    assert!(app.engine().status("NAMES:A.DRVH").is_none());
    let after = h.get("/mgmt/bpl/getPVTypeInfo?pv=NAMES:A").await;
    assert!(
        after["archiveFields"]
            .as_array()
            .unwrap()
            .contains(&json!("DRVH")),
        "{after}"
    );
    h.wait("NAMES:A archiving again", 30, async |h| {
        h.status_of("NAMES:A").await == "Being archived"
    })
    .await;
    // Through an alias too (and a field it has: nothing changes).
    h.get("/mgmt/bpl/addAlias?pv=NAMES:A&aliasname=NAMES:ALIAS")
        .await;
    let r = h.get("/mgmt/bpl/archivePV?pv=NAMES:ALIAS.HIHI").await;
    assert_eq!(
        r,
        json!([{"pvName": "NAMES:A", "status": "Already submitted"}])
    );

    // getPVStatus of PV.FIELD (an archive field) and of ALIAS.FIELD: the PV's status.
    for asked in ["NAMES:A.HIHI", "NAMES:A.DRVH", "NAMES:ALIAS.LOLO"] {
        let st = h.get(&format!("/mgmt/bpl/getPVStatus?pv={asked}")).await;
        assert_eq!(st[0]["pvName"], asked, "{st}");
        assert_eq!(st[0]["pvNameOnly"], "NAMES:A", "{st}");
        assert_eq!(st[0]["status"], "Being archived", "{st}");
    }
    // A field that is not archived is not the PV.
    assert_eq!(h.status_of("NAMES:A.EGU").await, "Not being archived");

    // getAllPVs: archived PVs (sorted), then aliases; no request.
    let all = h.get("/mgmt/bpl/getAllPVs").await;
    assert_eq!(all, json!(["NAMES:A", "NAMES:A.DESC", "NAMES:ALIAS"]));
    let all = h.get("/mgmt/bpl/getAllPVs?pv=NAMES:A*&limit=2").await;
    assert_eq!(all, json!(["NAMES:A", "NAMES:A.DESC"]));

    // getAllExpandedPVNames, in Java's order.
    let fields_of_a: Vec<String> = app
        .engine()
        .status("NAMES:A")
        .unwrap()
        .config
        .archive_fields;
    let mut expect = vec![
        "EPICS:Archiver:Appliance".to_string(),
        "NAMES:A".into(),
        "NAMES:A.VAL".into(),
    ];
    expect.extend(fields_of_a.iter().map(|f| format!("NAMES:A.{f}")));
    expect.extend(
        ["NAMES:A.DESC", "NAMES:ALIAS", "NAMES:ALIAS.VAL"]
            .iter()
            .map(|s| s.to_string()),
    );
    let expanded = h.get("/mgmt/bpl/getAllExpandedPVNames").await;
    let got: Vec<String> = serde_json::from_value(expanded).unwrap();
    // NAMES:B may have connected meanwhile (then it is an archived PV).
    let tail: Vec<&str> = got.iter().rev().take(2).map(String::as_str).collect();
    assert_eq!(tail, ["NAMES:NOBODY.VAL", "NAMES:NOBODY"], "{got:?}");
    let without_b: Vec<String> = got
        .iter()
        .filter(|n| !n.starts_with("NAMES:B") && !n.starts_with("NAMES:NOBODY"))
        .cloned()
        .collect();
    assert_eq!(without_b, expect);
    assert!(!got.iter().any(|n| n.matches('.').count() > 1), "{got:?}");

    // putPVTypeInfo with createnew: the new type info is paused whatever it says (Java),
    // and resumeArchivingPV starts it.
    let mut t = h.get("/mgmt/bpl/getPVTypeInfo?pv=NAMES:A").await;
    t["pvName"] = json!("NAMES:NEW");
    t["paused"] = json!(false);
    let (code, r) = h
        .call(
            Request::post("/mgmt/bpl/putPVTypeInfo?pv=NAMES:NEW")
                .body(Body::from(t.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        r["validation"].as_str().unwrap().contains("createnew"),
        "{r}"
    );
    // A data store URL with a typo is a 400 naming it, not a surprise at the first read.
    let mut typo = t.clone();
    typo["dataStores"] =
        json!(["pb://localhost?name=STS&rootFolder=/x&partitionGranularty=PARTITION_HOUR"]);
    let (code, r) = h
        .call(
            Request::post("/mgmt/bpl/putPVTypeInfo?pv=NAMES:NEW&createnew=true")
                .body(Body::from(typo.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{r}");
    assert!(r.to_string().contains("partitionGranularty"), "{r}");
    let r = h
        .post_json(
            "/mgmt/bpl/putPVTypeInfo?pv=NAMES:NEW&createnew=true",
            &t.to_string(),
        )
        .await;
    assert_eq!(r["paused"], "true", "{r}");
    assert_eq!(
        r["chunkKey"], "NAMES/NEW:",
        "the files are found by the name"
    );
    assert_eq!(h.status_of("NAMES:NEW").await, "Paused");
    h.get("/mgmt/bpl/resumeArchivingPV?pv=NAMES:NEW").await;
    h.wait("NAMES:NEW archived after its resume", 30, async |h| {
        h.status_of("NAMES:NEW").await == "Being archived"
    })
    .await;
    // A PV still in its archive request: the type info replaces the request, paused.
    t["pvName"] = json!("NAMES:NOBODY");
    let r = h
        .post_json(
            "/mgmt/bpl/putPVTypeInfo?pv=NAMES:NOBODY&createnew=true",
            &t.to_string(),
        )
        .await;
    assert_eq!(r["paused"], "true", "{r}");
    assert_eq!(h.status_of("NAMES:NOBODY").await, "Paused");
    assert!(
        registry
            .get_archive_request("NAMES:NOBODY")
            .unwrap()
            .is_none()
    );

    sync.stop().await;
    app.engine().shutdown().await;
}

/// The policy file is re-read when it changes: getPolicyList and archivePV use the new
/// policies at once; a broken edit keeps the policies in force, getPolicyList still
/// answers them (200) with a `Warning` naming the file and the problem, getPolicyText
/// leads with it and reapplyPolicies is refused with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_file_is_re_read_when_it_changes_and_a_broken_one_keeps_the_policies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    server.add_pv(PvSpec::new("FILE:A", Value::Double(0.0)));
    let path = dir.path().join("policies.toml");
    // Each write gets its own modification time, however coarse the file system's clock.
    let write = |text: &str, secs: u64| {
        std::fs::write(&path, text).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    };
    let first = "[[policy]]\nname = \"slow\"\ndescription = \"Slow\"\nsampling_period = 10.0\n";
    write(first, 1_000);
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    let app = appliance_with(&server, dir.path(), registry, Some(first), None)
        .await
        .with_policy_file(path.clone());
    let h = Http { app: app.clone() };
    let list = h.get("/mgmt/bpl/getPolicyList").await;
    assert!(list.as_object().unwrap().contains_key("slow"), "{list}");

    write(
        "[[policy]]\nname = \"fast\"\ndescription = \"Fast\"\nsampling_period = 0.5\n",
        2_000,
    );
    let list = h.get("/mgmt/bpl/getPolicyList").await;
    assert!(list.as_object().unwrap().contains_key("fast"), "{list}");
    assert!(!list.as_object().unwrap().contains_key("slow"), "{list}");
    h.get("/mgmt/bpl/archivePV?pv=FILE:A&policy=fast").await;
    assert_eq!(app.engine().status("FILE:A").unwrap().config.period, 0.5);

    write(
        "[[policy]]\nname = \"fast\"\nsampling_period = \"often\"\n",
        3_000,
    );
    let resp = archiver_http::router(app.clone())
        .oneshot(
            Request::get("/mgmt/bpl/getPolicyList")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let warning = resp.headers()[header::WARNING]
        .to_str()
        .unwrap()
        .to_string();
    assert!(warning.contains(&path.display().to_string()), "{warning}");
    assert!(warning.contains("sampling_period"), "{warning}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let list: Json = serde_json::from_slice(&body).unwrap();
    assert!(list.as_object().unwrap().contains_key("fast"), "{list}");
    let (_, text) = h.get_status("/mgmt/bpl/getPolicyText").await;
    let text = text.as_str().unwrap();
    assert!(text.starts_with("# the policy file"), "{text}");
    assert!(
        text.contains("sampling_period = 0.5"),
        "the text in force: {text}"
    );
    let (code, r) = h.get_status("/mgmt/bpl/reapplyPolicies?pv=FILE:A").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{r}");
    assert!(r.to_string().contains("policies.toml"), "{r}");

    // A controlling PV that is no PV name is refused at load the same way, naming the
    // file, the policy and the value.
    write(
        "[[policy]]\nname = \"beam\"\ncontrolling_pv = \"BEAM ON\"\n",
        3_500,
    );
    let list = h.get("/mgmt/bpl/getPolicyList").await;
    assert!(list.as_object().unwrap().contains_key("fast"), "{list}");
    let (_, text) = h.get_status("/mgmt/bpl/getPolicyText").await;
    let text = text.as_str().unwrap();
    let first_line = text.lines().next().unwrap_or_default();
    for want in [
        "policies.toml",
        "policy \"beam\"",
        "controlling_pv \"BEAM ON\"",
    ] {
        assert!(first_line.contains(want), "{want}: {text}");
    }

    // Mended: taken again, the warning gone.
    write("[[policy]]\nname = \"mended\"\n", 4_000);
    let resp = archiver_http::router(app.clone())
        .oneshot(
            Request::get("/mgmt/bpl/getPolicyList")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(resp.headers().get(header::WARNING).is_none());
    let list = h.get("/mgmt/bpl/getPolicyList").await;
    assert!(list.as_object().unwrap().contains_key("mended"), "{list}");
    app.engine().shutdown().await;
}

/// modifyMetaFields applies every `command` in order (Java's `ModifyMetaFieldsAction`),
/// and a list emptied by `clear` stays empty in the engine and across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modify_meta_fields_applies_every_command_and_a_cleared_list_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback()).await.unwrap();
    server.add_pv(PvSpec::new("META:A", Value::Double(0.0)));
    let _ticker = tick(&server, vec!["META:A".into()]);
    let registry = Arc::new(SqliteRegistry::open_in_memory().unwrap());
    let app = appliance(&server, dir.path(), registry.clone()).await;
    let sync = app.spawn_catalogue_sync(Duration::from_millis(200), CancellationToken::new());
    let h = Http { app: app.clone() };
    h.get("/mgmt/bpl/archivePV?pv=META:A").await;
    h.wait("archived", 20, async |h| {
        h.get_status("/mgmt/bpl/getPVTypeInfo?pv=META:A").await.0 == StatusCode::OK
    })
    .await;
    h.get("/mgmt/bpl/pauseArchivingPV?pv=META:A").await;
    let r = h
        .get("/mgmt/bpl/modifyMetaFields?pv=META:A&command=clear&command=add,ADEL&command=add,MDEL")
        .await;
    assert_eq!(r, json!({"pvName": "META:A", "fields": "ADEL,MDEL"}));
    let r = h
        .get("/mgmt/bpl/modifyMetaFields?pv=META:A&command=clear&command=add,ADEL")
        .await;
    assert_eq!(r, json!({"pvName": "META:A", "fields": "ADEL"}));
    let r = h
        .get("/mgmt/bpl/modifyMetaFields?pv=META:A&command=clear")
        .await;
    assert_eq!(r, json!({"pvName": "META:A", "fields": ""}));
    h.get("/mgmt/bpl/resumeArchivingPV?pv=META:A").await;
    assert_eq!(
        h.get("/mgmt/bpl/getPVStatus?pv=META:A").await[0]["archiveFields"],
        ""
    );
    assert_eq!(
        h.get("/mgmt/bpl/getPVTypeInfo?pv=META:A").await["archiveFields"],
        json!([])
    );
    app.shutdown(sync).await.unwrap();

    let app2 = appliance(&server, dir.path(), registry).await;
    app2.restore().await.unwrap();
    let h2 = Http { app: app2.clone() };
    assert_eq!(
        h2.get("/mgmt/bpl/getPVStatus?pv=META:A").await[0]["archiveFields"],
        "",
        "a cleared list is not re-filled by the defaults at a restart"
    );
    assert!(
        app2.engine()
            .status("META:A")
            .unwrap()
            .config
            .archive_fields
            .is_empty()
    );
}
