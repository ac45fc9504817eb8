//! The bulk copy of pbraw (Java's copy of a partition inside the range without looking at
//! its events): the stored lines after the first sample of a file that passes the merge
//! go out in blocks, undecoded. These tests pin that the body is byte for byte the one the
//! sample-by-sample path gives (an encoder that refuses the bulk copy), over several
//! partitions of several stores that overlap as ETL leaves them, a live buffer, ranges
//! starting and ending inside files, and several time spans; and that the bulk copy is
//! really taken.

#![allow(clippy::unwrap_used)]

use archiver_pb::time::start_of_year;
use archiver_pb::{Granularity, PayloadType, Sample, Timestamp, Value};
use archiver_retrieval::raw::RawResponse;
use archiver_retrieval::{
    Encoder, Origin, Plan, Produced, Producer, Raw, RetrievalError, StreamDesc, TypeSource,
};
use archiver_storage::Tier;

const PV: &str = "BULK:PV";

fn y() -> i64 {
    start_of_year(2025)
}

/// Sample `k`: 10 Hz from the start of 2025; values that escape (0x0A in their bytes) too.
fn s(k: i64) -> Sample {
    let v = if k % 7 == 0 { -0.09 } else { k as f64 * 0.25 };
    let mut x = Sample::new(
        Timestamp::new(
            y() + k.div_euclid(10),
            k.rem_euclid(10) as u32 * 100_000_000,
        ),
        Value::ScalarDouble(v),
    );
    x.severity = (k % 3) as i32;
    x
}

/// The pbraw encoder, with the bulk copy refused (`bulk = false`: every sample one by
/// one) or allowed, counting the blocks it was given.
struct Counting {
    inner: RawResponse,
    bulk: bool,
    blocks: std::rc::Rc<std::cell::Cell<u64>>,
}

impl Encoder for Counting {
    fn begin_pv(&mut self, desc: &StreamDesc) {
        Encoder::begin_pv(&mut self.inner, desc);
    }
    fn sample(&mut self, s: &Sample) {
        Encoder::sample(&mut self.inner, s);
    }
    fn sample_from(&mut self, s: &Sample, origin: Origin<'_>) {
        Encoder::sample_from(&mut self.inner, s, origin);
    }
    fn takes_lines(&self, origin: Origin<'_>) -> bool {
        self.bulk && self.inner.takes_lines(origin)
    }
    fn lines(&mut self, bytes: &[u8]) {
        self.blocks.set(self.blocks.get() + 1);
        self.inner.lines(bytes);
    }
    fn end_pv(&mut self) {
        Encoder::end_pv(&mut self.inner);
    }
    fn end(&mut self) {
        Encoder::end(&mut self.inner);
    }
    fn pending(&self) -> usize {
        Encoder::pending(&self.inner)
    }
    fn take(&mut self) -> Vec<u8> {
        Encoder::take(&mut self.inner)
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    stores: Vec<Tier>,
    buffer: Vec<Sample>,
}

/// MTS (days) holds hours 0..2 of 2025-01-01 and a 2024 day; STS (hours) holds hours 1..4
/// (hour 1 overlapping the MTS as ETL leaves it); the buffer overlaps the STS's end.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mts = Tier::new("MTS", dir.path().join("mts"), Granularity::Day);
    let sts = Tier::new("STS", dir.path().join("sts"), Granularity::Hour);
    let ty = PayloadType::ScalarDouble;
    let range = |a: i64, b: i64| (a..b).map(s).collect::<Vec<_>>();
    mts.append(PV, ty, &range(-5000, -4000)).unwrap();
    mts.append(PV, ty, &range(0, 2 * 36_000)).unwrap();
    sts.append(PV, ty, &range(36_000 + 10, 4 * 36_000)).unwrap();
    Fixture {
        _dir: dir,
        stores: vec![mts, sts],
        buffer: range(4 * 36_000 - 20, 4 * 36_000 + 50),
    }
}

fn plan(f: &Fixture, spans: &[(i64, i64)]) -> Plan {
    let t = |k: i64| s(k).time;
    Plan {
        desc: StreamDesc {
            name: PV.to_string(),
            payload_type: PayloadType::ScalarDouble,
            element_count: 1,
            headers: Vec::new(),
            from: t(spans[0].0),
            to: t(spans[spans.len() - 1].1),
        },
        pv: PV.to_string(),
        stores: f.stores.clone(),
        buffer: f.buffer.clone(),
        source: TypeSource::Catalogue,
        spans: if spans.len() > 1 {
            spans.iter().map(|&(a, b)| (t(a), t(b))).collect()
        } else {
            Vec::new()
        },
        field: None,
        disconnected: None,
        cached: None,
    }
}

fn body(plan: &Plan, bulk: bool) -> (Vec<u8>, Produced, u64) {
    let mut out = Vec::new();
    let mut sink = |bytes: Vec<u8>, _| {
        out.extend(bytes);
        Ok::<(), RetrievalError>(())
    };
    let blocks = std::rc::Rc::new(std::cell::Cell::new(0));
    let enc = Counting {
        inner: RawResponse::new(),
        bulk,
        blocks: blocks.clone(),
    };
    let mut p = Producer::new(enc, &mut sink).with_piece_size(100_000);
    p.pv(plan, &mut Raw).unwrap();
    let produced = p.finish().unwrap();
    (out, produced, blocks.get())
}

#[test]
fn the_bulk_copy_gives_the_bytes_of_the_sample_by_sample_path() {
    let f = fixture();
    let cases: &[&[(i64, i64)]] = &[
        // everything, from before the 2024 day to after the buffer
        &[(-10_000, 5 * 36_000)],
        // starting and ending inside files (the end found by binary search)
        &[(123, 3 * 36_000 + 77)],
        // starting in the STS/MTS overlap, ending inside the buffer
        &[(36_000 + 5, 4 * 36_000 + 10)],
        // several spans (Java timeranges), each ending inside a file
        &[(100, 20_000), (50_000, 60_000), (100_000, 130_000)],
        // a range inside one file
        &[(200, 300)],
    ];
    for spans in cases {
        let plan = plan(&f, spans);
        let (one_by_one, p1, none) = body(&plan, false);
        let (bulk, p2, blocks) = body(&plan, true);
        assert_eq!(none, 0);
        assert!(blocks > 0, "{spans:?}: the bulk copy was taken");
        assert_eq!(bulk.len(), one_by_one.len(), "{spans:?}");
        assert!(bulk == one_by_one, "{spans:?}: the same bytes");
        assert_eq!(
            p1.samples, p2.samples,
            "{spans:?}: the same samples counted"
        );
        assert!(p1.samples > 50, "{spans:?}");
    }
}
