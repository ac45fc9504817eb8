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
        vec!["A:B".into()]
    }
    async fn consolidate(&self, pv: &str, store: &str) -> Result<EtlCounts, StorageOpsError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("consolidate {pv} {store}"));
        if pv != "A:B" {
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
    let resp = mgmt_router(fake.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
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
