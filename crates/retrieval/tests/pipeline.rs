//! The retrieval pipeline without a server: catalogue, files in a temp dir and a fake live
//! source, through plan → merge → post-processor → encoder → pieces.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use archiver_pb::codec::{encode_header_line, encode_line};
use archiver_pb::time::start_of_year;
use archiver_pb::{
    FieldValue, Granularity, PayloadInfo, PayloadType, PbReader, Sample, Timestamp, Value,
};
use archiver_registry::{PvTypeInfo, Registry, SamplingMethod, SqliteRegistry};
use archiver_retrieval::json::JsonResponse;
use archiver_retrieval::raw::RawResponse;
use archiver_retrieval::{
    DataRequest, Emit, Encoder, FixedLive, Format, LiveDesc, NoLiveSource, PIECE, Plan,
    PostProcessor, Producer, Raw, Retrieval, RetrievalError, StreamDesc, TypeSource, for_each_line,
    for_each_sample, plan,
};
use archiver_storage::{DataStores, StorageError, Tier};

fn y() -> i64 {
    start_of_year(2025)
}

/// A sample `k` seconds after the start of 2025 (negative: in 2024), with a value that
/// exercises the JSON writer: NaN, infinity, a fraction; some with alarms and fields.
fn sample(k: i64) -> Sample {
    let v = match k.rem_euclid(7) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        _ => k as f64 / 3.0,
    };
    let mut s = Sample::new(
        Timestamp::new(y() + k, (k.rem_euclid(1000) as u32) * 1000),
        Value::ScalarDouble(v),
    );
    if k % 5 == 0 {
        s.severity = 2;
        s.status = 3;
        s.field_values.push(FieldValue::new("cnxlostepsecs", "0"));
        s.field_values
            .push(FieldValue::new("DESC", "a \"quoted\" text"));
    }
    s
}

/// Two tiers that overlap (MTS older, STS newer) around the year change, and a live buffer
/// that overlaps the STS: the fixed data set of the byte-identity tests.
struct Data {
    _dir: tempfile::TempDir,
    mts: Tier,
    sts: Tier,
    buffer: Vec<Sample>,
}

fn data(pv: &str) -> Data {
    let dir = tempfile::tempdir().unwrap();
    let mts = Tier::new("MTS", dir.path().join("mts"), Granularity::Day);
    let sts = Tier::new("STS", dir.path().join("sts"), Granularity::Hour);
    let older: Vec<Sample> = (-4000..-100).step_by(3).map(sample).collect();
    let newer: Vec<Sample> = (-400..3000).map(sample).collect();
    mts.append(pv, PayloadType::ScalarDouble, &older).unwrap();
    sts.append(pv, PayloadType::ScalarDouble, &newer).unwrap();
    let buffer = (2990..3100).map(sample).collect();
    Data {
        _dir: dir,
        mts,
        sts,
        buffer,
    }
}

fn headers() -> Vec<FieldValue> {
    vec![FieldValue::new("EGU", "mm"), FieldValue::new("PREC", "3")]
}

/// Today's `getData.json` producer before the pipeline (the loop of the HTTP handler).
fn json_before(d: &Data, pv: &str, from: Timestamp, to: Timestamp) -> Vec<u8> {
    let headers: Vec<(String, String)> = headers().into_iter().map(|f| (f.name, f.val)).collect();
    let mut out = Vec::new();
    let mut r = JsonResponse::new();
    let mut started = false;
    for_each_sample(&[&d.mts, &d.sts], pv, from, to, &d.buffer, |s| {
        if !started {
            r.begin_pv(pv, &headers);
            started = true;
        }
        r.sample(s);
        if r.pending() >= PIECE {
            out.extend(r.take());
        }
        Ok::<(), StorageError>(())
    })
    .unwrap();
    out.extend(r.finish());
    out
}

/// The `getData.raw` body by Java's framing rule, written directly over the merge
/// ([`for_each_line`]): a header at the first sample of each source stream and year, an
/// empty line before every header but the first, stored lines verbatim, buffered samples
/// encoded, the header alone without samples.
fn raw_before(d: &Data, pv: &str, from: Timestamp, to: Timestamp) -> Vec<u8> {
    let header = |year: i32, out: &mut Vec<u8>| {
        let info = PayloadInfo {
            payload_type: PayloadType::ScalarDouble,
            pv_name: pv.to_string(),
            year,
            element_count: Some(1),
            headers: headers(),
        };
        encode_header_line(&info, out);
    };
    let mut out = Vec::new();
    let mut chunk: Option<(u32, i32)> = None;
    for_each_line(&[&d.mts, &d.sts], pv, &[(from, to)], &d.buffer, |s, o| {
        let year = s.time.year();
        if chunk != Some((o.stream, year)) {
            if !out.is_empty() {
                out.push(b'\n');
            }
            header(year, &mut out);
            chunk = Some((o.stream, year));
        }
        match o.line {
            Some(line) => {
                assert_eq!(o.year, year, "partitions hold one year");
                out.extend_from_slice(line);
                out.push(b'\n');
            }
            None => encode_line(s, year, &mut out, &mut Vec::new()).unwrap(),
        }
        Ok::<(), StorageError>(())
    })
    .unwrap();
    if out.is_empty() {
        header(from.year(), &mut out);
    }
    out
}

/// The whole data set: both tiers, the year change, the buffer.
fn everything() -> (Timestamp, Timestamp) {
    (Timestamp::new(y() - 5000, 0), Timestamp::new(y() + 5000, 0))
}

fn plan_of(d: &Data, pv: &str, from: Timestamp, to: Timestamp) -> Plan {
    Plan {
        desc: StreamDesc {
            name: pv.to_string(),
            payload_type: PayloadType::ScalarDouble,
            element_count: 1,
            headers: headers(),
            from,
            to,
        },
        pv: pv.to_string(),
        stores: vec![d.mts.clone(), d.sts.clone()],
        buffer: d.buffer.clone(),
        source: TypeSource::Catalogue,
        spans: Vec::new(),
        field: None,
        disconnected: None,
        cached: None,
    }
}

/// The body from the pipeline, and its pieces' sizes with their `last` flags.
fn produce<E: Encoder, P: PostProcessor>(
    plan: &Plan,
    encoder: E,
    pp: &mut P,
    piece: usize,
) -> (Vec<u8>, Vec<(usize, bool)>) {
    let mut body = Vec::new();
    let mut pieces = Vec::new();
    let mut sink = |bytes: Vec<u8>, last: bool| {
        pieces.push((bytes.len(), last));
        body.extend(bytes);
        Ok::<(), RetrievalError>(())
    };
    let mut p = Producer::new(encoder, &mut sink).with_piece_size(piece);
    p.pv(plan, pp).unwrap();
    let done = p.finish().unwrap();
    assert_eq!(done.pvs, 1);
    assert_eq!(done.pieces as usize, pieces.len());
    (body, pieces)
}

#[test]
fn json_and_raw_bodies_are_byte_identical_to_the_handler_and_the_java_framing() {
    let pv = "T:SET";
    let d = data(pv);
    let ranges = [
        // Everything: both tiers, the year change, the buffer.
        (y() - 5000, y() + 5000),
        // Starts between samples of the older tier; the sample before `from` shows.
        (y() - 1001, y() + 10),
        // Inside the buffer only.
        (y() + 3050, y() + 3060),
        // After all data: the last sample before `from` alone.
        (y() + 4000, y() + 5000),
        // Before all data: nothing (JSON `[ ]`, pbraw a header only).
        (y() - 9000, y() - 8000),
    ];
    for (from, to) in ranges {
        let (from, to) = (Timestamp::new(from, 0), Timestamp::new(to, 0));
        let plan = plan_of(&d, pv, from, to);
        let json = json_before(&d, pv, from, to);
        let raw = raw_before(&d, pv, from, to);
        for piece in [1, 100, 4096, PIECE] {
            let (body, _) = produce(&plan, JsonResponse::new(), &mut Raw, piece);
            assert_eq!(body, json, "json, {from}..{to}, pieces of {piece}");
            let (body, _) = produce(&plan, RawResponse::new(), &mut Raw, piece);
            assert_eq!(body, raw, "raw, {from}..{to}, pieces of {piece}");
        }
    }
    // The data set is what it claims to be: the year change and alarms are in it.
    let all = json_before(&d, pv, everything().0, everything().1);
    let v: serde_json::Value = serde_json::from_slice(&all).unwrap();
    let n = v[0]["data"].as_array().unwrap().len();
    assert!(n > 3000, "{n} samples");
    assert_eq!(v[0]["meta"]["EGU"], "mm");
    // Chunks: the MTS's 2024-12-31 file, the STS's 23:00 (2024) and 00:00 (2025) files,
    // the buffer (its first samples are the STS's last ones: dropped).
    let raw = raw_before(&d, pv, everything().0, everything().1);
    assert_eq!(raw.windows(2).filter(|w| w == b"\n\n").count(), 3);
}

#[test]
fn pieces_are_bounded_and_only_the_last_is_marked() {
    let pv = "T:SET";
    let d = data(pv);
    let plan = plan_of(&d, pv, everything().0, everything().1);
    for piece in [1000, 10_000] {
        let (body, pieces) = produce(&plan, JsonResponse::new(), &mut Raw, piece);
        assert!(pieces.len() > 10, "{} pieces", pieces.len());
        let (last, rest) = pieces.split_last().unwrap();
        assert!(last.1);
        // A piece goes as soon as it reaches the size: by at most one sample's bytes more.
        assert!(
            rest.iter()
                .all(|&(n, l)| !l && n >= piece && n < piece + 300)
        );
        assert_eq!(pieces.iter().map(|p| p.0).sum::<usize>(), body.len());
    }
}

#[test]
fn a_sink_that_refuses_stops_the_reading() {
    let pv = "T:SET";
    let d = data(pv);
    let plan = plan_of(&d, pv, everything().0, everything().1);
    let mut taken = 0;
    let mut sink = |_: Vec<u8>, _: bool| {
        taken += 1;
        if taken == 3 {
            Err(RetrievalError::ClientGone)
        } else {
            Ok(())
        }
    };
    let mut p = Producer::new(RawResponse::new(), &mut sink).with_piece_size(1000);
    let r = p.pv(&plan, &mut Raw);
    assert!(matches!(r, Err(RetrievalError::ClientGone)), "{r:?}");
    assert_eq!(taken, 3);
}

/// A binning operator shaped like Java's `count_N`: one `DBR_SCALAR_DOUBLE` per bin of
/// `secs`, at the bin's start, emitted when the next bin starts and at the end.
struct CountPerBin {
    secs: i64,
    bin: Option<(i64, f64)>,
    out: Sample,
}

impl CountPerBin {
    fn new(secs: i64) -> Self {
        CountPerBin {
            secs,
            bin: None,
            out: Sample::new(Timestamp::new(0, 0), Value::ScalarDouble(0.0)),
        }
    }

    fn flush(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        if let Some((bin, n)) = self.bin.take() {
            self.out.time = Timestamp::new(bin * self.secs, 0);
            self.out.value = Value::ScalarDouble(n);
            emit.sample(&self.out)?;
        }
        Ok(())
    }
}

impl PostProcessor for CountPerBin {
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        desc.payload_type = PayloadType::ScalarDouble;
        desc.element_count = 1;
        Ok(())
    }

    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let bin = s.time.secs.div_euclid(self.secs);
        match &mut self.bin {
            Some((b, n)) if *b == bin => *n += 1.0,
            _ => {
                self.flush(emit)?;
                self.bin = Some((bin, 1.0));
            }
        }
        Ok(())
    }

    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        self.flush(emit)
    }
}

#[test]
fn a_post_processor_changes_the_type_and_count_of_samples() {
    let dir = tempfile::tempdir().unwrap();
    let sts = Tier::new("STS", dir.path(), Granularity::Hour);
    let t0 = y() + 3600;
    let ints: Vec<Sample> = (0..100)
        .map(|k| Sample::new(Timestamp::new(t0 + k, 0), Value::ScalarInt(k as i32)))
        .collect();
    sts.append("I:PV", PayloadType::ScalarInt, &ints).unwrap();
    let plan = Plan {
        desc: StreamDesc {
            name: "I:PV".into(),
            payload_type: PayloadType::ScalarInt,
            element_count: 1,
            headers: Vec::new(),
            from: Timestamp::new(t0, 0),
            to: Timestamp::new(t0 + 99, 0),
        },
        pv: "I:PV".into(),
        stores: vec![sts],
        buffer: Vec::new(),
        source: TypeSource::Catalogue,
        spans: Vec::new(),
        field: None,
        disconnected: None,
        cached: None,
    };
    let (body, _) = produce(&plan, RawResponse::new(), &mut CountPerBin::new(10), PIECE);
    let mut r = PbReader::new(std::io::Cursor::new(&body[..])).unwrap();
    assert_eq!(r.header().payload_type, PayloadType::ScalarDouble);
    let mut counts = Vec::new();
    while let Some(s) = r.next_sample().unwrap() {
        counts.push(s.value.clone());
    }
    // Bins of 10 s from t0 (a multiple of 10): ten full bins.
    assert_eq!(counts, vec![Value::ScalarDouble(10.0); 10]);
    let (body, _) = produce(&plan, JsonResponse::new(), &mut CountPerBin::new(50), 7);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v[0]["data"][0]["val"], 50.0);
    assert_eq!(v[0]["data"][1]["val"], 50.0);
}

#[test]
fn pbraw_starts_a_new_chunk_when_the_stored_type_is_not_the_catalogue_type() {
    // The IOC changed the PV's type: the files hold ints, the catalogue says double.
    let dir = tempfile::tempdir().unwrap();
    let sts = Tier::new("STS", dir.path(), Granularity::Hour);
    let t0 = y() + 3600;
    sts.append(
        "C:PV",
        PayloadType::ScalarInt,
        &[Sample::new(Timestamp::new(t0, 0), Value::ScalarInt(7))],
    )
    .unwrap();
    let plan = Plan {
        desc: StreamDesc {
            name: "C:PV".into(),
            payload_type: PayloadType::ScalarDouble,
            element_count: 1,
            headers: Vec::new(),
            from: Timestamp::new(t0 - 10, 0),
            to: Timestamp::new(t0 + 10, 0),
        },
        pv: "C:PV".into(),
        stores: vec![sts],
        buffer: vec![Sample::new(
            Timestamp::new(t0 + 1, 0),
            Value::ScalarDouble(2.5),
        )],
        source: TypeSource::Catalogue,
        spans: Vec::new(),
        field: None,
        disconnected: None,
        cached: None,
    };
    let (body, _) = produce(&plan, RawResponse::new(), &mut Raw, PIECE);
    let at = body.windows(2).position(|w| w == b"\n\n").unwrap();
    let chunks = [&body[..at + 1], &body[at + 2..]];
    let read = |chunk: &[u8]| {
        let mut r = PbReader::new(std::io::Cursor::new(chunk.to_vec())).unwrap();
        let ty = r.header().payload_type;
        let s = r.next_sample().unwrap().unwrap().value.clone();
        (ty, s)
    };
    assert_eq!(
        read(chunks[0]),
        (PayloadType::ScalarInt, Value::ScalarInt(7))
    );
    assert_eq!(
        read(chunks[1]),
        (PayloadType::ScalarDouble, Value::ScalarDouble(2.5))
    );
}

fn type_info(pv: &str, sts: &Tier) -> PvTypeInfo {
    let mut i = PvTypeInfo::new_for_archiving(
        pv,
        PayloadType::ScalarDouble,
        1,
        SamplingMethod::Monitor,
        1.0,
        vec![sts.url()],
        Timestamp::new(y(), 0),
    )
    .unwrap();
    i.set_units("mm");
    i.set_precision(3.0);
    i
}

#[test]
fn files_with_a_catalogue_entry_are_served_without_a_live_source() {
    let pv = "T:SET";
    let d = data(pv);
    let reg = SqliteRegistry::open_in_memory().unwrap();
    reg.put_type_info(&type_info(pv, &d.sts)).unwrap();
    let retrieval = Retrieval::new(
        Arc::new(reg),
        Arc::new(DataStores::from_tiers([d.sts.clone()]).unwrap()),
        Arc::new(NoLiveSource),
    );
    let now = Timestamp::new(y() + 10_000, 0);
    let req = DataRequest::parse(pv, Some("2025-01-01T00:00:00Z"), None, now).unwrap();
    let mut body = Vec::new();
    let mut sink = |bytes: Vec<u8>, _| {
        body.extend(bytes);
        Ok(())
    };
    let done = retrieval.run(&req, Format::Json, &mut sink).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v[0]["meta"]["name"], pv);
    assert_eq!(v[0]["meta"]["EGU"], "mm");
    assert_eq!(v[0]["meta"]["PREC"], "3");
    // The sample at `from`, then 1..2999 from the STS (no live buffer here).
    let data = v[0]["data"].as_array().unwrap();
    assert_eq!(data.len(), 3000);
    assert_eq!(done.samples, 3000);
    assert_eq!(data[0]["secs"], y());
    assert_eq!(data[2999]["secs"], y() + 2999);

    let mut body = Vec::new();
    let mut sink = |bytes: Vec<u8>, _| {
        body.extend(bytes);
        Ok(())
    };
    retrieval.run(&req, Format::Raw, &mut sink).unwrap();
    let mut r = PbReader::new(std::io::Cursor::new(&body[..])).unwrap();
    assert_eq!(r.header().pv_name, pv);
    assert_eq!(r.header().header("EGU"), Some("mm"));
    let mut n = 0;
    while r.next_sample().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3000);
}

#[test]
fn a_pv_archived_seconds_ago_is_served_from_the_live_source() {
    let dir = tempfile::tempdir().unwrap();
    let sts = Tier::new("STS", dir.path(), Granularity::Hour);
    let mut live = FixedLive::default();
    live.held.insert(
        "NEW:PV".into(),
        LiveDesc {
            payload_type: Some(PayloadType::ScalarDouble),
            element_count: 1,
            headers: vec![FieldValue::new("EGU", "V")],
        },
    );
    live.buffers
        .insert("NEW:PV".into(), (0..5).map(|k| sample(k * 2 + 2)).collect());
    let retrieval = Retrieval::new(
        Arc::new(SqliteRegistry::open_in_memory().unwrap()),
        Arc::new(DataStores::from_tiers([sts]).unwrap()),
        Arc::new(live),
    );
    let req = DataRequest::parse("NEW:PV", None, None, Timestamp::new(y() + 60, 0)).unwrap();
    let p = retrieval.plan(&req).unwrap();
    assert_eq!(p.source, TypeSource::Live);
    let mut body = Vec::new();
    let mut sink = |bytes: Vec<u8>, _| {
        body.extend(bytes);
        Ok(())
    };
    retrieval.run(&req, Format::Json, &mut sink).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v[0]["meta"]["EGU"], "V");
    assert_eq!(v[0]["data"].as_array().unwrap().len(), 5);

    let unknown = DataRequest::parse("NO:PV", None, None, Timestamp::new(y(), 0)).unwrap();
    let mut sink = |_: Vec<u8>, _| -> Result<(), RetrievalError> { panic!("no piece") };
    let e = retrieval.run(&unknown, Format::Raw, &mut sink).unwrap_err();
    assert!(e.to_string().contains("NO:PV"), "{e}");
    // Planning alone says the same.
    let reg = SqliteRegistry::open_in_memory().unwrap();
    let stores = DataStores::from_tiers([Tier::new("STS", dir.path(), Granularity::Hour)]).unwrap();
    assert!(plan(&unknown, &reg, &stores, &NoLiveSource).is_err());
}

/// An encoder that must hold the whole answer (`.mat`) stops the producer past its limit,
/// before anything is sent, with an error that says so (a 400 at the HTTP edge).
#[test]
fn an_encoder_with_a_sample_limit_stops_the_producer_past_it() {
    struct Limited(archiver_retrieval::json::JsonResponse, u64);
    impl Encoder for Limited {
        fn begin_pv(&mut self, desc: &StreamDesc) {
            Encoder::begin_pv(&mut self.0, desc)
        }
        fn sample(&mut self, s: &Sample) {
            Encoder::sample(&mut self.0, s)
        }
        fn end_pv(&mut self) {
            Encoder::end_pv(&mut self.0)
        }
        fn end(&mut self) {
            Encoder::end(&mut self.0)
        }
        fn pending(&self) -> usize {
            0 // like .mat: nothing is handed over before the end
        }
        fn take(&mut self) -> Vec<u8> {
            Encoder::take(&mut self.0)
        }
        fn max_samples(&self) -> Option<u64> {
            Some(self.1)
        }
    }
    let d = data("A:B");
    let (from, to) = everything();
    let plan = plan_of(&d, "A:B", from, to);
    let mut pieces = 0;
    let mut sink = |_: Vec<u8>, _: bool| {
        pieces += 1;
        Ok::<(), RetrievalError>(())
    };
    let mut p = Producer::new(
        Limited(archiver_retrieval::json::JsonResponse::new(), 3),
        &mut sink,
    );
    let err = p.pv(&plan, &mut Raw).unwrap_err();
    assert!(
        matches!(err, RetrievalError::TooLargeForMat { max: 3 }),
        "{err}"
    );
    assert_eq!(pieces, 0);
    // With room for every sample it completes.
    let mut sink = |_: Vec<u8>, _: bool| Ok::<(), RetrievalError>(());
    let mut p = Producer::new(
        Limited(archiver_retrieval::json::JsonResponse::new(), 1_000_000),
        &mut sink,
    );
    p.pv(&plan, &mut Raw).unwrap();
    assert!(p.finish().unwrap().samples > 3);
}
