//! Byte-level fixtures of the pbraw framing (Java `PBRAWResponse`, reference §2.5): the
//! expected bodies are written here from Java's rules — a `PayloadInfo` first line
//! (type, the requested name, year, elementCount, headers), an empty line before every
//! later header (each source stream: a partition file of a store, the live buffer; each
//! UTC year; each PV), the stored lines copied verbatim from the files, a newline after
//! the last sample — and the bodies are read back chunk by chunk with `PbReader`.

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
    DataRequest, Disconnected, FixedLive, Format, PIECE, Plan, Producer, Raw, Retrieval,
    RetrievalError, StreamDesc, TypeSource,
};
use archiver_storage::{DataStores, Tier};

fn y() -> i64 {
    start_of_year(2025)
}

/// A double sample `k` seconds after the start of 2025 (negative: 2024); an even `k`
/// has the value of the Java vector, whose bytes hold 0x0A (escaped as 1B 02 in files).
fn s(k: i64) -> Sample {
    let v = if k % 2 == 0 { -0.09 } else { k as f64 };
    let mut v = Sample::new(Timestamp::new(y() + k, 601_158_377), Value::ScalarDouble(v));
    if k % 3 == 0 {
        v.severity = 1;
        v.status = 7;
    }
    v
}

fn headers() -> Vec<FieldValue> {
    vec![FieldValue::new("EGU", "mm"), FieldValue::new("PREC", "3")]
}

/// The header line Java writes for a chunk of `pv` (`PBRAWResponse.buildHeader`).
fn header(pv: &str, year: i32, ty: PayloadType, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut h = headers();
    h.extend(extra.iter().map(|(n, v)| FieldValue::new(*n, *v)));
    let info = PayloadInfo {
        payload_type: ty,
        pv_name: pv.to_string(),
        year,
        element_count: Some(1),
        headers: h,
    };
    let mut out = Vec::new();
    encode_header_line(&info, &mut out);
    out
}

/// The sample lines of the file of `pv` in `tier` holding `secs`, as stored (escaped,
/// each with its newline).
fn stored(tier: &Tier, pv: &str, secs: i64) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(tier.file_for(pv, secs).unwrap()).unwrap();
    let mut lines: Vec<Vec<u8>> = bytes
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    lines.remove(0);
    lines
}

/// A sample encoded as Java encodes a buffered event.
fn encoded(x: &Sample) -> Vec<u8> {
    let mut out = Vec::new();
    encode_line(x, x.time.year(), &mut out, &mut Vec::new()).unwrap();
    out
}

/// Three stores that overlap as ETL leaves them, and a live buffer overlapping the STS.
struct Fixture {
    _dir: tempfile::TempDir,
    lts: Tier,
    mts: Tier,
    sts: Tier,
    buffer: Vec<Sample>,
}

const PV: &str = "F:PV";

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let lts = Tier::new("LTS", dir.path().join("lts"), Granularity::Year);
    let mts = Tier::new("MTS", dir.path().join("mts"), Granularity::Day);
    let sts = Tier::new("STS", dir.path().join("sts"), Granularity::Hour);
    let ty = PayloadType::ScalarDouble;
    // LTS: one 2024 file.
    lts.append(PV, ty, &[s(-100), s(-50), s(-10)]).unwrap();
    // MTS: 2024-12-31 (a copy of the LTS's last sample) and 2025-01-01.
    mts.append(PV, ty, &[s(-10), s(10), s(20)]).unwrap();
    // STS: hour 0 (overlapping the MTS by one sample), hour 1.
    sts.append(PV, ty, &[s(20), s(30), s(3605)]).unwrap();
    let mut last = s(3700);
    last.field_values.push(FieldValue::new("HIHI", "9.5"));
    Fixture {
        _dir: dir,
        lts,
        mts,
        sts,
        buffer: vec![s(3605), last],
    }
}

fn plan(f: &Fixture, name: &str, from: i64, to: i64) -> Plan {
    Plan {
        desc: StreamDesc {
            name: name.to_string(),
            payload_type: PayloadType::ScalarDouble,
            element_count: 1,
            headers: headers(),
            from: Timestamp::new(y() + from, 0),
            to: Timestamp::new(y() + to, 0),
        },
        pv: PV.to_string(),
        stores: vec![f.lts.clone(), f.mts.clone(), f.sts.clone()],
        buffer: f.buffer.clone(),
        source: TypeSource::Catalogue,
        spans: Vec::new(),
        field: None,
        disconnected: None,
        cached: None,
    }
}

fn body_of(plans: &[Plan], piece: usize) -> Vec<u8> {
    let mut body = Vec::new();
    let mut sink = |bytes: Vec<u8>, _| {
        body.extend(bytes);
        Ok::<(), RetrievalError>(())
    };
    let mut p = Producer::new(RawResponse::new(), &mut sink).with_piece_size(piece);
    for plan in plans {
        p.pv(plan, &mut Raw).unwrap();
    }
    p.finish().unwrap();
    body
}

/// The chunks of a pbraw body, each read back as a PlainPB file: its header and samples.
fn chunks(body: &[u8]) -> Vec<(PayloadInfo, Vec<Sample>)> {
    assert_ne!(
        body.first(),
        Some(&b'\n'),
        "no empty line before the first header"
    );
    assert_eq!(body.last(), Some(&b'\n'), "a newline after the last line");
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let (chunk, next) = match rest.windows(2).position(|w| w == b"\n\n") {
            Some(at) => (&rest[..at + 1], Some(&rest[at + 2..])),
            None => (rest, None),
        };
        let mut r = PbReader::new(std::io::Cursor::new(chunk.to_vec())).unwrap();
        let mut samples = Vec::new();
        while let Some(x) = r.next_sample().unwrap() {
            samples.push(x.clone());
        }
        assert_eq!(r.skipped_lines(), 0);
        out.push((r.header().clone(), samples));
        match next {
            Some(n) => rest = n,
            None => return out,
        }
    }
}

#[test]
fn chunks_per_partition_store_year_and_buffer_with_stored_lines_verbatim() {
    let f = fixture();
    let plan = plan(&f, PV, -60, 4000);
    let lts = stored(&f.lts, PV, y() - 100);
    let mts_2025 = stored(&f.mts, PV, y() + 10);
    let sts_0 = stored(&f.sts, PV, y() + 20);
    let sts_1 = stored(&f.sts, PV, y() + 3605);
    assert_eq!(
        (lts.len(), mts_2025.len(), sts_0.len(), sts_1.len()),
        (3, 2, 2, 1)
    );
    // The fixture's doubles hold escaped newlines: verbatim means escaped as stored.
    assert!(lts.concat().windows(2).any(|w| w == [0x1b, 0x02]));

    let mut want = Vec::new();
    // LTS 2024: the sample before `from` (-100), then -50, -10.
    want.extend(header(PV, 2024, PayloadType::ScalarDouble, &[]));
    want.extend(lts.concat());
    // MTS 2024-12-31 holds only -10, already sent: dropped at the source boundary, and
    // its chunk has no sample (Java writes an empty chunk there; clients skip both).
    // MTS 2025-01-01.
    want.push(b'\n');
    want.extend(header(PV, 2025, PayloadType::ScalarDouble, &[]));
    want.extend(mts_2025.concat());
    // STS hour 0: 20 is a duplicate of the MTS's; 30.
    want.push(b'\n');
    want.extend(header(PV, 2025, PayloadType::ScalarDouble, &[]));
    want.extend(sts_0[1].clone());
    // STS hour 1.
    want.push(b'\n');
    want.extend(header(PV, 2025, PayloadType::ScalarDouble, &[]));
    want.extend(sts_1.concat());
    // The live buffer: 3605 is a duplicate; 3700 encoded (with its field value).
    want.push(b'\n');
    want.extend(header(PV, 2025, PayloadType::ScalarDouble, &[]));
    want.extend(encoded(&f.buffer[1]));

    for piece in [1, 7, 100, PIECE] {
        assert_eq!(
            body_of(std::slice::from_ref(&plan), piece),
            want,
            "pieces of {piece}"
        );
    }

    // Read back: the merged samples in order, each chunk under the requested name.
    let got = chunks(&want);
    let times: Vec<Vec<i64>> = got
        .iter()
        .map(|(_, v)| v.iter().map(|x| x.time.secs - y()).collect())
        .collect();
    assert_eq!(
        times,
        vec![
            vec![-100, -50, -10],
            vec![10, 20],
            vec![30],
            vec![3605],
            vec![3700]
        ]
    );
    for (h, _) in &got {
        assert_eq!(h.pv_name, PV);
        assert_eq!(h.element_count, Some(1));
        assert_eq!(h.headers, headers());
    }
    assert_eq!(got[0].0.year, 2024);
    assert_eq!(got[4].1[0], f.buffer[1]);
    assert_eq!(got[0].1[0], s(-100));
}

#[test]
fn an_alias_and_a_second_pv_get_their_own_headers() {
    let f = fixture();
    // Two PVs in one response (getDataForPVs): the second starts with an empty line and
    // its own header; the name is the requested one (an alias stays the alias).
    let first = plan(&f, "OLD:NAME", 15, 25);
    let second = plan(&f, PV, 3600, 3650);
    let body = body_of(&[first, second], PIECE);
    let mut want = Vec::new();
    // 10 (before from), 20 from the MTS; STS 20 deduplicated, no later sample in range.
    want.extend(header("OLD:NAME", 2025, PayloadType::ScalarDouble, &[]));
    want.extend(stored(&f.mts, PV, y() + 10).concat());
    // Second PV: STS hour 0's 30 is the sample before from, in its own chunk, then hour
    // 1's 3605; the buffer's 3605 is a duplicate and 3700 is after `to`.
    want.push(b'\n');
    want.extend(header(PV, 2025, PayloadType::ScalarDouble, &[]));
    want.extend(stored(&f.sts, PV, y() + 20)[1].clone());
    want.push(b'\n');
    want.extend(header(PV, 2025, PayloadType::ScalarDouble, &[]));
    want.extend(stored(&f.sts, PV, y() + 3605).concat());
    assert_eq!(body, want);
}

#[test]
fn a_year_change_inside_one_stream_starts_a_chunk() {
    let f = fixture();
    let mut p = plan(&f, PV, -5, 5);
    p.stores.clear();
    p.buffer = vec![s(-2), s(2)];
    let mut want = header(PV, 2024, PayloadType::ScalarDouble, &[]);
    want.extend(encoded(&s(-2)));
    want.push(b'\n');
    want.extend(header(PV, 2025, PayloadType::ScalarDouble, &[]));
    want.extend(encoded(&s(2)));
    assert_eq!(body_of(&[p], PIECE), want);
}

#[test]
fn a_disconnected_pv_ends_with_a_header_carrying_cnxlostepsecs() {
    let f = fixture();
    let lost = y() + 3800;
    let mut p = plan(&f, PV, 3650, 4000);
    p.disconnected = Some(Disconnected {
        lost_at_secs: lost,
        year: 2025,
    });
    let mut want = header(PV, 2025, PayloadType::ScalarDouble, &[]);
    // 3605 (before from, STS hour 1), then the buffer's 3700.
    want.extend(stored(&f.sts, PV, y() + 3605).concat());
    want.push(b'\n');
    want.extend(header(PV, 2025, PayloadType::ScalarDouble, &[]));
    want.extend(encoded(&f.buffer[1]));
    want.push(b'\n');
    want.extend(header(
        PV,
        2025,
        PayloadType::ScalarDouble,
        &[("cnxlostepsecs", &lost.to_string())],
    ));
    assert_eq!(body_of(std::slice::from_ref(&p), PIECE), want);
    let got = chunks(&want);
    assert_eq!(got.len(), 3);
    assert!(got[2].1.is_empty());
    assert_eq!(
        got[2].0.header("cnxlostepsecs"),
        Some(lost.to_string().as_str())
    );

    // No data at all: the disconnected header is the whole body (Java's engine answer).
    let mut p = plan(&f, PV, 5000, 6000);
    p.stores.clear();
    p.buffer.clear();
    p.disconnected = Some(Disconnected {
        lost_at_secs: lost,
        year: 2026,
    });
    let want = header(
        PV,
        2026,
        PayloadType::ScalarDouble,
        &[("cnxlostepsecs", &lost.to_string())],
    );
    assert_eq!(body_of(&[p], PIECE), want);
    // JSON says nothing of it (as Java's).
    let mut p = plan(&f, PV, 3650, 4000);
    p.disconnected = Some(Disconnected {
        lost_at_secs: lost,
        year: 2025,
    });
    let mut body = Vec::new();
    let mut sink = |bytes: Vec<u8>, _| {
        body.extend(bytes);
        Ok::<(), RetrievalError>(())
    };
    let mut prod = Producer::new(JsonResponse::new(), &mut sink);
    prod.pv(&p, &mut Raw).unwrap();
    prod.finish().unwrap();
    assert!(!String::from_utf8(body).unwrap().contains("cnxlost"));
}

/// JSON and qw `meta` are Java's first stream's header: for a PV disconnected now with
/// nothing in range, the engine's header-only answer, carrying `cnxlostepsecs`, with no
/// data (found by a fresh-user test: the PV was missing from the answer).
#[test]
fn json_meta_of_a_disconnected_pv_without_data_carries_cnxlostepsecs() {
    let f = fixture();
    let lost = y() + 3800;
    let disconnected_plan = || {
        let mut p = plan(&f, PV, 5000, 6000);
        p.stores.clear();
        p.buffer.clear();
        p.disconnected = Some(Disconnected {
            lost_at_secs: lost,
            year: 2025,
        });
        p
    };
    let json = |p: &Plan, qw: bool| {
        let mut body = Vec::new();
        let mut sink = |bytes: Vec<u8>, _| {
            body.extend(bytes);
            Ok::<(), RetrievalError>(())
        };
        if qw {
            let mut prod = Producer::new(archiver_retrieval::qw::QwResponse::new(), &mut sink);
            prod.pv(p, &mut Raw).unwrap();
            prod.finish().unwrap();
        } else {
            let mut prod = Producer::new(JsonResponse::new(), &mut sink);
            prod.pv(p, &mut Raw).unwrap();
            prod.finish().unwrap();
        }
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    };
    for qw in [false, true] {
        let v = json(&disconnected_plan(), qw);
        assert_eq!(v[0]["meta"]["name"], PV, "{v}");
        assert_eq!(v[0]["meta"]["cnxlostepsecs"], lost.to_string(), "{v}");
        assert_eq!(v[0]["data"], serde_json::json!([]), "{v}");
        // Connected and no data: nothing, as before.
        let mut p = disconnected_plan();
        p.disconnected = None;
        assert_eq!(json(&p, qw), serde_json::json!([]));
    }
}

#[test]
fn the_java_vector_is_served_byte_for_byte_under_the_requested_name() {
    // lrm01_raw.pb, written by the Java appliance, as the PV's LTS file for 2014.
    let vector: &[u8] = include_bytes!("../../pb/tests/data/lrm01_raw.pb");
    let dir = tempfile::tempdir().unwrap();
    let lts = Tier::new("LTS", dir.path(), Granularity::Year);
    let pv = "LN-AM{RadMon:2}DoseRate-I";
    let t = 1_418_019_667;
    let path = lts.file_for(pv, t).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vector).unwrap();
    let reg = SqliteRegistry::open_in_memory().unwrap();
    let mut info = PvTypeInfo::new_for_archiving(
        pv,
        PayloadType::ScalarDouble,
        1,
        SamplingMethod::Monitor,
        1.0,
        vec![lts.url()],
        Timestamp::new(t, 0),
    )
    .unwrap();
    info.set_units("mR/h");
    info.set_precision(2.0);
    reg.put_type_info(&info).unwrap();
    reg.add_alias("RADMON:ALIAS", pv).unwrap();
    let retrieval = Retrieval::new(
        Arc::new(reg),
        Arc::new(DataStores::from_tiers([lts]).unwrap()),
        Arc::new(FixedLive::default()),
    );
    let now = Timestamp::new(t + 86_400, 0);
    for name in [pv, "RADMON:ALIAS"] {
        let req = DataRequest::parse(
            &format!("ca://{name}.VAL"),
            Some("2014-12-08T00:00:00Z"),
            Some("2014-12-09T00:00:00Z"),
            now,
        )
        .unwrap();
        let mut body = Vec::new();
        let mut sink = |bytes: Vec<u8>, _| {
            body.extend(bytes);
            Ok::<(), RetrievalError>(())
        };
        retrieval.run(&req, Format::Raw, &mut sink).unwrap();
        // The file's header names the PV as stored; the response's names it as asked.
        let mut want = Vec::new();
        encode_header_line(
            &PayloadInfo {
                payload_type: PayloadType::ScalarDouble,
                pv_name: name.to_string(),
                year: 2014,
                element_count: Some(1),
                headers: vec![FieldValue::new("EGU", "mR/h"), FieldValue::new("PREC", "2")],
            },
            &mut want,
        );
        want.extend_from_slice(&vector[vector.len() - 23..]);
        assert_eq!(body, want, "{name}");
        if name == pv {
            // For the PV itself, the body is the Java file exactly.
            assert_eq!(body, vector);
        }
    }
}

#[test]
fn timeranges_read_each_span_with_the_value_in_effect_at_its_start() {
    let f = fixture();
    let mut p = plan(&f, PV, -60, 4000);
    // [-60, -40] and [25, 3650]: -100 (before -60), -50; then 20 (in effect at 25;
    // from the MTS), 30, 3605. The gap's samples (-10, 10) are not read.
    p.spans = vec![
        (Timestamp::new(y() - 60, 0), Timestamp::new(y() - 40, 0)),
        (Timestamp::new(y() + 25, 0), Timestamp::new(y() + 3650, 0)),
    ];
    let got = chunks(&body_of(&[p], PIECE));
    let times: Vec<i64> = got
        .iter()
        .flat_map(|(_, v)| v.iter().map(|x| x.time.secs - y()))
        .collect();
    assert_eq!(times, vec![-100, -50, 20, 30, 3605]);
}
