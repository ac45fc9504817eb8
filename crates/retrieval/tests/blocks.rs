//! The stored lines inside a request's range decoded in parts on two threads (the
//! producer's block path): raw data in json, csv and qw is byte for byte the body the
//! sample-by-sample path gives (an encoder that refuses to fork), and a post-processor
//! emits exactly what it emits over the merged samples read one by one — over files of
//! many parts, values that escape, an undecodable line, two stores, a live buffer and
//! ranges that start and end inside files.

#![allow(clippy::unwrap_used)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use archiver_pb::time::start_of_year;
use archiver_pb::{FieldValue, Granularity, PayloadType, Sample, Timestamp, Value};
use archiver_retrieval::csv::CsvResponse;
use archiver_retrieval::json::JsonResponse;
use archiver_retrieval::postprocess::{Binning, Runs, build};
use archiver_retrieval::qw::QwResponse;
use archiver_retrieval::{
    Emit, Encoder, Origin, Plan, PostProcessor, PostProcessorSpec, Produced, Producer, Raw,
    RetrievalError, StreamDesc, TypeSource, for_each_sample,
};
use archiver_storage::Tier;

const PV: &str = "BLOCK:PV";

fn y() -> i64 {
    start_of_year(2025)
}

/// Sample `k`: 1 Hz from the start of 2025, values whose bytes need escaping now and
/// then, some with an alarm.
fn s(k: i64) -> Sample {
    let v = match k % 11 {
        0 => f64::from_bits(0x400A_1B0D_0000_0000 ^ k as u64),
        5 => f64::NAN,
        _ => k as f64 * 0.1,
    };
    let mut x = Sample::new(
        Timestamp::new(y() + k, (k % 7) as u32),
        Value::ScalarDouble(v),
    );
    if k % 13 == 0 {
        x.severity = 2;
        x.status = 3;
    }
    x
}

struct Fixture {
    _dir: tempfile::TempDir,
    stores: Vec<Tier>,
    buffer: Vec<Sample>,
}

/// MTS (days): the first 2.5 days, with a line that does not decode inside the first
/// day's file (the header is line 0); STS (hours): the hour after, overlapping the MTS by 100 s; the buffer
/// overlaps the STS's end.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mts = Tier::new("MTS", dir.path().join("mts"), Granularity::Day);
    let sts = Tier::new("STS", dir.path().join("sts"), Granularity::Hour);
    let ty = PayloadType::ScalarDouble;
    let range = |a: i64, b: i64| (a..b).map(s).collect::<Vec<_>>();
    mts.append(PV, ty, &range(0, 216_000)).unwrap();
    // The sample of second 40 000 overwritten by bytes that do not decode (an
    // unterminated varint), the newlines left where they are.
    let first = &mts.partitions(PV).unwrap()[0].path;
    let mut bytes = std::fs::read(first).unwrap();
    let mut lines = bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i)
        .skip(40_000);
    let (a, b) = (lines.next().unwrap() + 1, lines.next().unwrap());
    bytes[a..b].fill(0xFF);
    std::fs::write(first, bytes).unwrap();
    sts.append(PV, ty, &range(215_900, 219_600)).unwrap();
    Fixture {
        _dir: dir,
        stores: vec![mts, sts],
        buffer: range(219_500, 219_700),
    }
}

fn plan(f: &Fixture, from: i64, to: i64) -> Plan {
    let t = |k: i64| s(k).time;
    Plan {
        desc: StreamDesc {
            name: PV.to_string(),
            payload_type: PayloadType::ScalarDouble,
            element_count: 1,
            headers: Vec::new(),
            from: t(from),
            to: t(to),
        },
        pv: PV.to_string(),
        stores: f.stores.clone(),
        buffer: f.buffer.clone(),
        source: TypeSource::Catalogue,
        spans: Vec::new(),
        field: None,
        disconnected: None,
        cached: None,
    }
}

const RANGES: [(i64, i64); 3] = [(-10, 300_000), (12_345, 150_001), (215_950, 219_650)];

/// An encoder that forks as the format does (`fork`, counting the parts appended) or
/// refuses to (every sample one by one).
struct Forking<E> {
    inner: E,
    fork: bool,
    appended: Rc<Cell<u64>>,
}

impl<E: Encoder> Encoder for Forking<E> {
    fn begin_pv(&mut self, desc: &StreamDesc) {
        self.inner.begin_pv(desc);
    }
    fn sample(&mut self, s: &Sample) {
        self.inner.sample(s);
    }
    fn sample_from(&mut self, s: &Sample, origin: Origin<'_>) {
        self.inner.sample_from(s, origin);
    }
    fn fork(&self) -> Option<Box<dyn Encoder + Send>> {
        if self.fork { self.inner.fork() } else { None }
    }
    fn append(&mut self, encoded: &[u8]) {
        self.appended.set(self.appended.get() + 1);
        self.inner.append(encoded);
    }
    fn end_pv(&mut self) {
        self.inner.end_pv();
    }
    fn end(&mut self) {
        self.inner.end();
    }
    fn pending(&self) -> usize {
        self.inner.pending()
    }
    fn take(&mut self) -> Vec<u8> {
        self.inner.take()
    }
}

fn body<E: Encoder>(plan: &Plan, inner: E, fork: bool) -> (Vec<u8>, Produced, u64) {
    let mut out = Vec::new();
    let mut sink = |bytes: Vec<u8>, _| {
        out.extend(bytes);
        Ok::<(), RetrievalError>(())
    };
    let appended = Rc::new(Cell::new(0));
    let enc = Forking {
        inner,
        fork,
        appended: appended.clone(),
    };
    let mut p = Producer::new(enc, &mut sink).with_piece_size(50_000);
    p.pv(plan, &mut Raw).unwrap();
    let done = p.finish().unwrap();
    (out, done, appended.get())
}

#[test]
fn raw_data_in_text_formats_is_the_body_of_the_sample_by_sample_path() {
    let f = fixture();
    for (from, to) in RANGES {
        let p = plan(&f, from, to);
        let check = |name: &str,
                     (a, pa, parts): (Vec<u8>, Produced, u64),
                     (b, pb, none): (Vec<u8>, Produced, u64)| {
            assert_eq!(none, 0, "{name}: no fork, no part");
            assert!(parts >= 2, "{name} {from}..{to}: {parts} parts");
            assert_eq!(pa.samples, pb.samples, "{name} {from}..{to}");
            assert!(
                a == b,
                "{name} {from}..{to}: bodies differ ({} / {} bytes)",
                a.len(),
                b.len()
            );
            // The undecodable line is skipped by both (when in the range).
            assert_eq!(pa.skipped_lines, pb.skipped_lines, "{name}");
        };
        check(
            "json",
            body(&p, JsonResponse::new(), true),
            body(&p, JsonResponse::new(), false),
        );
        check(
            "csv",
            body(&p, CsvResponse::new(), true),
            body(&p, CsvResponse::new(), false),
        );
        check(
            "qw",
            body(&p, QwResponse::new(), true),
            body(&p, QwResponse::new(), false),
        );
    }
    let whole = body(
        &plan(&f, RANGES[0].0, RANGES[0].1),
        JsonResponse::new(),
        true,
    );
    assert_eq!(whole.1.skipped_lines, 1);
    assert_eq!(whole.1.samples, 219_700 - 1);
}

/// Records the samples a producer encodes.
struct Collect(Rc<RefCell<Vec<Sample>>>);

impl Encoder for Collect {
    fn begin_pv(&mut self, _desc: &StreamDesc) {}
    fn sample(&mut self, s: &Sample) {
        self.0.borrow_mut().push(s.clone());
    }
    fn end_pv(&mut self) {}
    fn end(&mut self) {}
    fn pending(&self) -> usize {
        0
    }
    fn take(&mut self) -> Vec<u8> {
        Vec::new()
    }
}

#[test]
fn post_processors_over_parts_emit_what_they_emit_over_samples_one_by_one() {
    let f = fixture();
    for spec in [
        "mean_600",
        "optimized_100",
        "optimized_10000000",
        "firstSample_3600",
        "nth_7",
    ] {
        let spec = PostProcessorSpec::parse(spec).unwrap();
        for (from, to) in RANGES {
            let p = plan(&f, from, to);
            // The pipeline (parts decoded on two threads).
            let got = Rc::new(RefCell::new(Vec::new()));
            let mut sink = |_: Vec<u8>, _| Ok::<(), RetrievalError>(());
            let mut producer = Producer::new(Collect(got.clone()), &mut sink);
            producer.pv(&p, build(&spec).as_mut()).unwrap();
            producer.finish().unwrap();
            // The post-processor over the merged samples, one by one.
            let mut want: Vec<Sample> = Vec::new();
            let mut pp = build(&spec);
            let mut desc = p.desc.clone();
            pp.begin_pv(&mut desc).unwrap();
            let tiers: Vec<&Tier> = p.stores.iter().collect();
            let mut emit = |s: &Sample| {
                want.push(s.clone());
                Ok::<(), RetrievalError>(())
            };
            for_each_sample(&tiers, PV, p.desc.from, p.desc.to, &p.buffer, |s| {
                pp.sample(s, &mut emit)
            })
            .unwrap();
            pp.end_pv(&mut emit).unwrap();
            let got = got.borrow();
            assert!(!want.is_empty());
            // Compared as printed: NaN values are not equal to themselves.
            assert!(
                format!("{:?}", *got) == format!("{want:?}"),
                "{} {from}..{to}: {} / {} samples",
                spec.text,
                got.len(),
                want.len()
            );
        }
    }
}

/// Forwards to a post-processor, counting the parts it took binned.
struct CountRuns {
    inner: Box<dyn PostProcessor>,
    taken: Arc<AtomicU64>,
}

impl PostProcessor for CountRuns {
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        self.inner.begin_pv(desc)
    }
    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        self.inner.sample(s, emit)
    }
    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        self.inner.end_pv(emit)
    }
    fn binning(&self) -> Option<Binning> {
        self.inner.binning()
    }
    fn runs(&mut self, runs: &Runs, emit: &mut Emit<'_>) -> Result<bool, RetrievalError> {
        let taken = self.inner.runs(runs, emit)?;
        self.taken.fetch_add(u64::from(taken), Ordering::Relaxed);
        Ok(taken)
    }
}

/// What `spec` emits for `plan` through the pipeline (and how many parts it took
/// binned), and over the merged samples one by one.
fn both_paths(spec: &PostProcessorSpec, p: &Plan) -> (Vec<Sample>, u64, Vec<Sample>) {
    let got = Rc::new(RefCell::new(Vec::new()));
    let taken = Arc::new(AtomicU64::new(0));
    let mut sink = |_: Vec<u8>, _| Ok::<(), RetrievalError>(());
    let mut producer = Producer::new(Collect(got.clone()), &mut sink);
    let mut pp = CountRuns {
        inner: build(spec),
        taken: taken.clone(),
    };
    producer.pv(p, &mut pp).unwrap();
    producer.finish().unwrap();
    let mut want: Vec<Sample> = Vec::new();
    let mut pp = build(spec);
    let mut desc = p.desc.clone();
    pp.begin_pv(&mut desc).unwrap();
    let tiers: Vec<&Tier> = p.stores.iter().collect();
    let mut emit = |s: &Sample| {
        want.push(s.clone());
        Ok::<(), RetrievalError>(())
    };
    for_each_sample(&tiers, &p.pv, p.desc.from, p.desc.to, &p.buffer, |s| {
        pp.sample(s, &mut emit)
    })
    .unwrap();
    pp.end_pv(&mut emit).unwrap();
    let got = got.borrow().clone();
    (got, taken.load(Ordering::Relaxed), want)
}

/// Sample `k` of the year-boundary fixture: 1 Hz around the start of 2025, values that
/// escape, NaN, alarms, and connection changes (`cnxregainedepsecs`) now and then.
fn around_new_year(k: i64) -> Sample {
    let v = match k % 17 {
        0 => f64::from_bits(0x400A_1B0D_0000_0000 ^ k as u64),
        3 => f64::NAN,
        _ => (k as f64).sin() * 1e3 + 0.1,
    };
    let mut x = Sample::new(
        Timestamp::new(y() + k, (k % 5) as u32),
        Value::ScalarDouble(v),
    );
    if k % 29 == 0 {
        x.severity = 1 + (k % 3) as i32;
        x.status = 3;
    }
    if k % 4999 == 0 {
        x.field_values = vec![
            FieldValue::new("cnxlostepsecs", (y() + k - 5).to_string()),
            FieldValue::new("cnxregainedepsecs", (y() + k).to_string()),
            FieldValue::new("startup", "true"),
        ];
    }
    x
}

#[test]
fn binned_parts_give_bit_for_bit_the_bins_of_the_samples_one_by_one() {
    // LTS (years): the 100 000 s before 2025 and the 100 000 s after, two files; the
    // STS (hours) the 2 000 s after, overlapping by 100 s; the buffer after that.
    let dir = tempfile::tempdir().unwrap();
    let lts = Tier::new("LTS", dir.path().join("lts"), Granularity::Year);
    let sts = Tier::new("STS", dir.path().join("sts"), Granularity::Hour);
    let ty = PayloadType::ScalarDouble;
    let range = |a: i64, b: i64| (a..b).map(around_new_year).collect::<Vec<_>>();
    lts.append(PV, ty, &range(-100_000, 100_000)).unwrap();
    sts.append(PV, ty, &range(99_900, 101_900)).unwrap();
    let f = Fixture {
        _dir: dir,
        stores: vec![lts, sts],
        buffer: range(101_800, 102_000),
    };
    // From inside the first file (the last sample before start in its own bin), from
    // exactly at a sample (no such bin), from before the data; to inside the second
    // file, in the STS, and after everything.
    let ranges = [(-77_777, 88_888), (-50_000, 101_950), (-200_000, 300_000)];
    for spec in [
        "mean_600",
        "mean_3600",
        "mean_86400",
        // Bins longer than a part can be (cut where the lines end, continued).
        "mean_150000",
        "stats_150000",
        "meanSample_7200",
        "min_3600",
        "max_1000",
        "count_3600",
        "countSample_1000",
        "std_3600",
        "variance_5000",
        "popvariance_3600",
        "jitter_3600",
        "errorbar_3600",
        "stats_3600",
        "statsSample_45000",
        "optimized_1000",
        "optimized_100",
        "optimizedSample_150",
        "optimized_10000000",
        "optimLastSample_300",
        "optimLastSampleSample_3000",
        // Not binned by the threads: their samples one by one, as before.
        "median_3600",
        "linear_3600",
    ] {
        let spec = PostProcessorSpec::parse(spec).unwrap();
        let binned = build(&spec).binning().is_some();
        for (from, to) in ranges {
            let mut p = plan(&f, from, to);
            let t = |k: i64| around_new_year(k).time;
            p.desc.from = if from == -50_000 {
                t(from)
            } else {
                Timestamp::new(t(from).secs, 500_000_000)
            };
            let (got, taken, want) = both_paths(&spec, &p);
            assert!(!want.is_empty());
            let raw = spec.text == "optimized_10000000";
            if binned && !raw {
                assert!(
                    taken >= 2,
                    "{} {from}..{to}: {taken} parts binned",
                    spec.text
                );
            } else {
                assert_eq!(taken, 0, "{} {from}..{to}", spec.text);
            }
            // Compared as printed (every bit of each value; NaN is not equal to itself).
            assert!(
                format!("{got:?}") == format!("{want:?}"),
                "{} {from}..{to}: {} / {} samples",
                spec.text,
                got.len(),
                want.len()
            );
        }
    }
}

/// A sink whose client goes away after `after` questions, counting them.
struct LeavingClient {
    asked: Cell<u64>,
    after: u64,
}

impl archiver_retrieval::PieceSink for LeavingClient {
    fn piece(&mut self, _: Vec<u8>, _: bool) -> Result<(), RetrievalError> {
        Ok(())
    }
    fn gone(&self) -> bool {
        self.asked.set(self.asked.get() + 1);
        self.asked.get() > self.after
    }
}

/// A post-processor that emits one bin a day hands no piece over for days of data: the
/// producer still asks, between blocks of stored lines, whether the client is there, and
/// stops once it is gone instead of reading the rest of the range.
#[test]
fn a_client_gone_stops_a_post_processor_that_emits_rarely() {
    let f = fixture();
    let p = plan(&f, RANGES[0].0, RANGES[0].1);
    for spec in ["mean_86400", "ncount", "median_86400", "count_86400"] {
        let spec = PostProcessorSpec::parse(spec).unwrap();
        // A client that stays: every block is asked about, the whole range is produced.
        let mut stays = LeavingClient {
            asked: Cell::new(0),
            after: u64::MAX,
        };
        let mut producer = Producer::new(JsonResponse::new(), &mut stays);
        producer.pv(&p, &mut *build(&spec)).unwrap();
        producer.finish().unwrap();
        let blocks = stays.asked.get();
        assert!(blocks > 4, "{spec:?}: asked {blocks} times");
        // A client that leaves after the second block.
        let mut leaves = LeavingClient {
            asked: Cell::new(0),
            after: 2,
        };
        let mut producer = Producer::new(JsonResponse::new(), &mut leaves);
        let r = producer.pv(&p, &mut *build(&spec));
        assert!(
            matches!(r, Err(RetrievalError::ClientGone)),
            "{spec:?}: {r:?}"
        );
        assert_eq!(
            leaves.asked.get(),
            3,
            "{spec:?}: read on after the client left"
        );
    }
}
