//! A store caching a post-processor (`pp=mean_3600` in its URL, Java's
//! `PlainStoragePlugin`): ETL writes the reductions with the retrieval's post-processors,
//! and a request of exactly that post-processor reads them (for the part of the range the
//! store holds) instead of computing them, with the same answer.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use archiver_pb::time::start_of_year;
use archiver_pb::{PayloadType, Sample, Timestamp, Value};
use archiver_registry::{PvTypeInfo, Registry, SamplingMethod, SqliteRegistry};
use archiver_retrieval::json::JsonResponse;
use archiver_retrieval::{
    DataRequest, NoLiveSource, PostProcessorReducer, Producer, Retrieval, RetrievalError,
};
use archiver_storage::{Backend, DataStores, Etl, EtlMode, OutOfSpacePolicy};

const PV: &str = "CACHE:AI";

fn urls(dir: &std::path::Path, pp: &str) -> Vec<String> {
    vec![
        format!(
            "pb://localhost?name=STS&rootFolder={}/sts&partitionGranularity=PARTITION_HOUR",
            dir.display()
        ),
        format!(
            "pb://localhost?name=MTS&rootFolder={}/mts&partitionGranularity=PARTITION_DAY{pp}",
            dir.display()
        ),
    ]
}

fn retrieval(dir: &std::path::Path, pp: &str) -> Retrieval {
    let urls = urls(dir, pp);
    let stores = DataStores::from_urls(urls.clone(), Backend::fs()).unwrap();
    let reg = SqliteRegistry::open_in_memory().unwrap();
    let info = PvTypeInfo::new_for_archiving(
        PV,
        PayloadType::ScalarDouble,
        1,
        SamplingMethod::Monitor,
        1.0,
        urls,
        Timestamp::new(0, 0),
    )
    .unwrap();
    reg.put_type_info(&info).unwrap();
    Retrieval::new(Arc::new(reg), Arc::new(stores), Arc::new(NoLiveSource))
}

fn body(r: &Retrieval, req: &DataRequest) -> Vec<u8> {
    let mut out = Vec::new();
    let mut sink = |b: Vec<u8>, _: bool| {
        out.extend(b);
        Ok::<(), RetrievalError>(())
    };
    let plan = r.plan(req).unwrap();
    let mut pp = archiver_retrieval::postprocess::build(req.pp.as_ref().unwrap());
    let mut producer = Producer::new(JsonResponse::new(), &mut sink);
    producer.pv(&plan, pp.as_mut()).unwrap();
    producer.finish().unwrap();
    out
}

#[test]
fn a_cached_reduction_answers_as_the_computed_one_would() {
    let dir = tempfile::tempdir().unwrap();
    let d0 = start_of_year(2024) + 30 * 86_400;
    // Two days and a half at 1 Hz (a sine, so that means differ bin to bin) in the STS.
    let stores = DataStores::from_urls(urls(dir.path(), "&pp=mean_3600"), Backend::fs()).unwrap();
    let samples: Vec<Sample> = (0..(5 * 43_200))
        .map(|k| {
            Sample::new(
                Timestamp::new(d0 + k, 0),
                Value::ScalarDouble((k as f64 / 5000.0).sin()),
            )
        })
        .collect();
    stores.tiers()[0]
        .append(PV, PayloadType::ScalarDouble, &samples)
        .unwrap();
    // ETL at the end: every closed hour moves into the MTS, with its mean_3600.
    let etl = Etl::new(stores.clone(), OutOfSpacePolicy::default())
        .with_reducer(Arc::new(PostProcessorReducer));
    let now = Timestamp::new(d0 + 5 * 43_200, 0);
    let c = etl.run_pv(0, PV, now, EtlMode::Scheduled).unwrap();
    assert_eq!(c.files_moved, 60);
    assert_eq!(c.reductions_written, 60);

    let from = Timestamp::new(d0 - 600, 0);
    // To the last sample: with `to` in a later, empty bin, the computed answer would fill
    // that bin (mean_ fills up to `to`), the cached one not (it sends what ETL wrote, as
    // Java sends its cached streams unwrapped).
    let to = Timestamp::new(d0 + 5 * 43_200 - 1, 0);
    let req = DataRequest::parse_with_pp(PV, Some("mean_3600"), None, None, now)
        .unwrap()
        .with_time_ranges(None)
        .unwrap();
    let req = DataRequest {
        from,
        to,
        spans: vec![(from, to)],
        ..req
    };
    // The store caching mean_3600: its reductions are read, the STS (the current
    // hour) computed.
    let cached = retrieval(dir.path(), "&pp=mean_3600");
    let plan = cached.plan(&req).unwrap();
    let c = plan.cached.as_ref().expect("the cache is used");
    assert_eq!(c.until, Timestamp::new(d0 + 3 * 86_400, 0));
    assert_eq!(plan.stores.len(), 1, "the STS only for the rest");
    // The same stores without `pp=`: everything computed at request time.
    let computed = retrieval(dir.path(), "");
    assert!(computed.plan(&req).unwrap().cached.is_none());
    let a = body(&cached, &req);
    let b = body(&computed, &req);
    let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(v[0]["data"].as_array().unwrap().len(), 60);
    assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());

    // Another post-processor is computed, whatever the cache holds.
    let other = DataRequest {
        pp: Some(archiver_retrieval::PostProcessorSpec::parse("max_3600").unwrap()),
        ..req
    };
    assert!(cached.plan(&other).unwrap().cached.is_none());
}

/// A store with `reducedata=firstSample_3600` (Java's `PlainStoragePlugin` reducedata)
/// keeps, of what ETL moves into it, the retrieval's firstSample of each hour, not the
/// 1 Hz samples; the hour still in the STS is untouched.
#[test]
fn a_store_with_reducedata_keeps_the_post_processed_samples() {
    let dir = tempfile::tempdir().unwrap();
    let d0 = start_of_year(2024) + 30 * 86_400;
    let stores = DataStores::from_urls(
        urls(dir.path(), "&reducedata=firstSample_3600"),
        Backend::fs(),
    )
    .unwrap();
    let samples: Vec<Sample> = (0..4 * 3600)
        .map(|k| Sample::new(Timestamp::new(d0 + k, 0), Value::ScalarDouble(k as f64)))
        .collect();
    let (sts, mts) = (&stores.tiers()[0], &stores.tiers()[1]);
    sts.append(PV, PayloadType::ScalarDouble, &samples).unwrap();
    let etl = Etl::new(stores.clone(), OutOfSpacePolicy::default())
        .with_reducer(Arc::new(PostProcessorReducer));
    let now = Timestamp::new(d0 + 3 * 3600 + 600, 0);
    let c = etl.run_pv(0, PV, now, EtlMode::Scheduled).unwrap();
    assert_eq!(
        (c.files_moved, c.samples_moved, c.errors),
        (3, 3, 0),
        "{c:?}"
    );
    let read = |t: &archiver_storage::Tier| {
        let mut q = t
            .query(
                PV,
                Timestamp::new(0, 0),
                Timestamp::new(i64::from(i32::MAX), 0),
            )
            .unwrap();
        let mut out = Vec::new();
        while let Some(s) = q.next_sample().unwrap() {
            out.push(s.clone());
        }
        out
    };
    let values: Vec<Value> = read(mts).into_iter().map(|s| s.value).collect();
    assert_eq!(
        values,
        [0.0, 3600.0, 7200.0].map(Value::ScalarDouble),
        "the first sample of each hour"
    );
    assert_eq!(read(sts).len(), 3600, "the current hour stays raw");
}
