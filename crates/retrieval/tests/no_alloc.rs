//! The verbatim pbraw path (file bytes to response pieces) allocates nothing per sample:
//! counted with a global allocator that counts calls, so the test fails if a change makes
//! the path allocate per sample (decoding into a new sample, copying a line, a header
//! per sample...). What remains is per file, per chunk and per piece.

#![allow(clippy::unwrap_used)]

#[path = "../../pb/tests/support/counting_alloc.rs"]
mod counting_alloc;

use archiver_pb::time::start_of_year;
use archiver_pb::{FieldValue, Granularity, PayloadType, Sample, Timestamp, Value};
use archiver_retrieval::raw::RawResponse;
use archiver_retrieval::{Plan, Producer, Raw, RetrievalError, StreamDesc, TypeSource};
use archiver_storage::Tier;
use counting_alloc::allocs;

#[test]
fn verbatim_pbraw_allocates_nothing_per_sample() {
    const N: i64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let lts = Tier::new("LTS", dir.path().join("lts"), Granularity::Year);
    let mts = Tier::new("MTS", dir.path().join("mts"), Granularity::Day);
    let y = start_of_year(2025);
    let s = |k: i64| {
        let mut x = Sample::new(
            Timestamp::new(y + k, (k % 1000) as u32),
            Value::ScalarDouble(k as f64 * 0.37),
        );
        x.severity = (k % 3) as i32;
        x
    };
    let all: Vec<Sample> = (0..N).map(s).collect();
    lts.append("A:B", PayloadType::ScalarDouble, &all[..(N / 2) as usize])
        .unwrap();
    // The MTS overlaps the LTS by 10 samples and spans two days (two files).
    mts.append(
        "A:B",
        PayloadType::ScalarDouble,
        &all[(N / 2 - 10) as usize..],
    )
    .unwrap();
    let plan = Plan {
        desc: StreamDesc {
            name: "A:B".into(),
            payload_type: PayloadType::ScalarDouble,
            element_count: 1,
            headers: vec![FieldValue::new("EGU", "mm")],
            from: Timestamp::new(y, 0),
            to: Timestamp::new(y + N + 100, 0),
        },
        pv: "A:B".into(),
        stores: vec![lts, mts],
        buffer: (N - 5..N + 50).map(s).collect(),
        source: TypeSource::Catalogue,
        spans: Vec::new(),
        field: None,
        disconnected: None,
        cached: None,
    };
    let mut bytes = 0usize;
    let mut sink = |b: Vec<u8>, _| {
        bytes += b.len();
        Ok::<(), RetrievalError>(())
    };
    let before = allocs();
    let mut p = Producer::new(RawResponse::new(), &mut sink);
    p.pv(&plan, &mut Raw).unwrap();
    let done = p.finish().unwrap();
    let used = allocs() - before;
    assert_eq!(done.samples, (N + 50) as u64);
    assert!(bytes > 15 * N as usize, "{bytes} bytes");
    // Per file (reader buffers, paths), per chunk header, per piece: a few hundred at
    // most; per sample it would be over 100 000.
    assert!(
        used < 500,
        "{used} allocations for {} samples",
        done.samples
    );
}
