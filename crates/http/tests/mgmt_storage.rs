//! The storage endpoints (`consolidateDataForPV`, `deletePVData`) over a fake appliance:
//! what reaches the appliance, the JSON answer, and the 400/404 of bad requests.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use archiver_appliance::{
    ApplianceApi, ApplianceError, ArchiveSpec, Archived, DeleteCounts, EtlCounts, PvStatus,
    StorageOpsError,
};
use archiver_http::mgmt_router;
use archiver_time::Timestamp;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// Remembers the storage calls; knows the PV `A:B` and the stores `MTS`, `LTS`.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl ApplianceApi for Fake {
    fn identity(&self) -> &str {
        "fake"
    }
    async fn archive(&self, _: Vec<ArchiveSpec>) -> Result<Vec<Archived>, ApplianceError> {
        Ok(Vec::new())
    }
    async fn pause(&self, _: &str) -> Result<(), ApplianceError> {
        Ok(())
    }
    async fn resume(&self, _: &str) -> Result<(), ApplianceError> {
        Ok(())
    }
    async fn delete(&self, _: &str, _: bool) -> Result<usize, ApplianceError> {
        Ok(0)
    }
    fn status(&self, _: &str) -> Option<PvStatus> {
        None
    }
    fn catalogue(&self) -> Arc<dyn archiver_registry::Registry> {
        Arc::new(archiver_registry::SqliteRegistry::open_in_memory().unwrap())
    }
    fn all_status(&self) -> Vec<PvStatus> {
        Vec::new()
    }
    fn names(&self) -> Vec<String> {
        vec!["A:B".into(), "C:D".into()]
    }
    async fn consolidate(&self, pv: &str, store: &str) -> Result<EtlCounts, StorageOpsError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("consolidate {pv} {store}"));
        if pv != "A:B" && pv != "C:D" {
            return Err(StorageOpsError::UnknownPv(pv.into()));
        }
        if store != "MTS" && store != "LTS" {
            return Err(StorageOpsError::UnknownStore {
                store: store.into(),
                known: "MTS, LTS".into(),
            });
        }
        Ok(EtlCounts {
            files_moved: 3,
            samples_moved: 30,
            bytes_moved: 300,
            ..EtlCounts::default()
        })
    }
    async fn delete_data_range(
        &self,
        pv: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<DeleteCounts, StorageOpsError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("delete {pv} {} {}", from.secs, to.secs));
        Ok(DeleteCounts {
            files_removed: 1,
            files_rewritten: 2,
            samples_deleted: 42,
        })
    }
}

async fn get(fake: &Arc<Fake>, uri: &str) -> (StatusCode, Value) {
    send(fake, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post(fake: &Arc<Fake>, uri: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::post(uri)
        .header(axum::http::header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_string()))
        .unwrap();
    send(fake, req).await
}

async fn send(fake: &Arc<Fake>, req: Request<Body>) -> (StatusCode, Value) {
    let resp = mgmt_router(fake.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn consolidate_data_for_pv_answers_what_moved_and_names_bad_stores() {
    let fake = Arc::new(Fake::default());
    let (st, v) = get(
        &fake,
        "/mgmt/bpl/consolidateDataForPV?pv=A:B.VAL&storage=LTS",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["pvName"], "A:B");
    assert_eq!(v["storage"], "LTS");
    assert_eq!(
        (v["filesMoved"].as_u64(), v["samplesMoved"].as_u64()),
        (Some(3), Some(30))
    );
    let (st, v) = get(&fake, "/mgmt/bpl/consolidateDataForPV?pv=A:B&storage=STS").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("MTS, LTS"), "{v}");
    let (st, _) = get(&fake, "/mgmt/bpl/consolidateDataForPV?pv=X:Y&storage=LTS").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = get(&fake, "/mgmt/bpl/consolidateDataForPV?pv=A:B").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("storage"), "{v}");
}

#[tokio::test]
async fn delete_pv_data_parses_the_range_and_answers_the_counts() {
    let fake = Arc::new(Fake::default());
    let (st, v) = get(
        &fake,
        "/mgmt/bpl/deletePVData?pv=A:B&from=2024-01-01T00:00:00Z&to=2024-01-02T00:00:00.000Z",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["samplesDeleted"], 42);
    assert_eq!(
        (v["filesRemoved"].as_u64(), v["filesRewritten"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        fake.calls.lock().unwrap().last().unwrap(),
        "delete A:B 1704067200 1704153600"
    );
    for (uri, what) in [
        (
            "/mgmt/bpl/deletePVData?pv=A:B&from=yesterday&to=2024-01-02T00:00:00Z",
            "from",
        ),
        (
            "/mgmt/bpl/deletePVData?pv=A:B&from=2024-01-02T00:00:00Z",
            "to",
        ),
        (
            "/mgmt/bpl/deletePVData?from=2024-01-01T00:00:00Z&to=2024-01-02T00:00:00Z",
            "pv",
        ),
    ] {
        let (st, v) = get(&fake, uri).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{uri}");
        assert!(v["message"].as_str().unwrap().contains(what), "{uri}: {v}");
    }
}

/// Both calls take their PVs as the other management calls do (repeated `pv`, comma
/// lists, globs, JSON/text/form bodies) and act on every one, answering a list of one
/// object per PV in Java's list shape; an unknown PV of a list is its `validation`.
#[tokio::test]
async fn both_calls_act_on_every_pv_of_a_list_or_body() {
    let range = "from=2024-01-01T00:00:00Z&to=2024-01-02T00:00:00Z";
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("a list: {v}"))
            .iter()
            .map(|o| o["pvName"].as_str().unwrap().to_string())
            .collect()
    };
    let requests: Vec<(&str, Option<(&str, String)>)> = vec![
        ("pv=A:B&pv=C:D", None),
        ("pv=A:B,C:D", None),
        ("pv=*", None),
        (
            "",
            Some(("application/json", r#"["A:B", "C:D"]"#.to_string())),
        ),
        (
            "",
            Some((
                "application/json",
                r#"[{"pv": "A:B"}, {"pv": "C:D"}]"#.to_string(),
            )),
        ),
        ("", Some(("text/plain", "A:B\nC:D\n".to_string()))),
        (
            "",
            Some((
                "application/x-www-form-urlencoded",
                "pv=A:B,C:D".to_string(),
            )),
        ),
    ];
    for (query, body) in requests {
        for (call, extra) in [
            ("deletePVData", range),
            ("consolidateDataForPV", "storage=LTS"),
        ] {
            let fake = Arc::new(Fake::default());
            let uri = format!("/mgmt/bpl/{call}?{extra}&{query}");
            let (st, v) = match &body {
                None => get(&fake, &uri).await,
                Some((ct, b)) => post(&fake, &uri, ct, b).await,
            };
            assert_eq!(st, StatusCode::OK, "{uri} {body:?}: {v}");
            assert_eq!(names(&v), ["A:B", "C:D"], "{uri} {body:?}");
            assert!(v[1]["status"] == "ok", "{v}");
            assert_eq!(fake.calls.lock().unwrap().len(), 2, "{uri} {body:?}");
        }
    }
    let fake = Arc::new(Fake::default());
    let (st, v) = get(
        &fake,
        "/mgmt/bpl/consolidateDataForPV?storage=MTS&pv=A:B,X:Y",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (&v[0]["status"], &v[0]["filesMoved"]),
        (&"ok".into(), &3.into())
    );
    assert_eq!(v[1]["pvName"], "X:Y");
    assert!(v[1]["validation"].as_str().unwrap().contains("X:Y"), "{v}");
    let (st, v) = get(
        &fake,
        &format!("/mgmt/bpl/deletePVData?{range}&pv=A:B&pv=C:D"),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        (&v[0]["samplesDeleted"], &v[1]["samplesDeleted"]),
        (&42.into(), &42.into())
    );
}
