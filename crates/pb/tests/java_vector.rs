//! `lrm01_raw.pb` was written by the Java appliance (its test data
//! `retrieval/postprocessor/data/test1/lrm01_raw.pb`). We must read it exactly and write
//! the same bytes for the same header and sample.

use archiver_pb::codec::{encode_header_line, encode_line};
use archiver_pb::{FieldValue, PayloadType, PbReader, Sample, Timestamp, Value};

const VECTOR: &[u8] = include_bytes!("data/lrm01_raw.pb");

#[test]
fn java_vector_decodes() {
    let mut r = PbReader::new(std::io::Cursor::new(VECTOR)).expect("header");
    let h = r.header().clone();
    assert_eq!(h.payload_type, PayloadType::ScalarDouble);
    assert_eq!(h.payload_type.number(), 6);
    assert_eq!(h.pv_name, "LN-AM{RadMon:2}DoseRate-I");
    assert_eq!(h.year, 2014);
    assert_eq!(h.element_count, Some(1));
    assert_eq!(
        h.headers,
        vec![FieldValue::new("EGU", "mR/h"), FieldValue::new("PREC", "2")]
    );
    let s = r.next_sample().expect("io").expect("one sample").clone();
    assert_eq!(s.time.to_string(), "2014-12-08T06:21:07.601158377Z");
    assert_eq!(s.value, Value::ScalarDouble(-0.09));
    assert_eq!((s.severity, s.status), (0, 0));
    assert!(s.field_values.is_empty());
    assert!(r.next_sample().expect("io").is_none());
    assert_eq!(r.skipped_lines(), 0);
    assert!(!r.torn_tail());
}

#[test]
fn java_vector_reencodes_byte_for_byte() {
    let mut r = PbReader::new(std::io::Cursor::new(VECTOR)).expect("header");
    let header = r.header().clone();
    let sample = r.next_sample().expect("io").expect("sample").clone();
    let mut out = Vec::new();
    encode_header_line(&header, &mut out);
    let mut scratch = Vec::new();
    encode_line(&sample, header.year, &mut out, &mut scratch).expect("encode");
    assert_eq!(out, VECTOR);
    // The sample line holds two escaped newlines (1B 02) inside the double.
    assert_eq!(out.len(), 84);
}

#[test]
fn sample_built_from_scratch_matches_java_bytes() {
    let s = Sample::new(
        Timestamp::new(1_418_019_667, 601_158_377),
        Value::ScalarDouble(-0.09),
    );
    let mut out = Vec::new();
    encode_line(&s, 2014, &mut out, &mut Vec::new()).expect("encode");
    assert_eq!(out, &VECTOR[VECTOR.len() - 23..]);
}

#[test]
fn the_current_line_is_the_stored_sample_verbatim() {
    let mut r = PbReader::new(std::io::Cursor::new(VECTOR)).expect("header");
    assert!(r.current_line().is_empty(), "nothing read yet");
    let header_len = r.header_len() as usize;
    r.next_sample().expect("io").expect("sample");
    // The escaped bytes between the header's newline and the last newline, 1B 02 kept.
    assert_eq!(r.current_line(), &VECTOR[header_len..VECTOR.len() - 1]);
    assert!(r.current_line().windows(2).any(|w| w == [0x1b, 0x02]));
    assert!(r.next_sample().expect("io").is_none());
    assert!(r.current_line().is_empty(), "no sample, no line");
    // A seek forgets the line until the next sample is read.
    r.seek_to_time(Timestamp::new(0, 0)).expect("seek");
    assert!(r.current_line().is_empty());
    r.next_sample().expect("io").expect("sample again");
    assert_eq!(r.current_line(), &VECTOR[header_len..VECTOR.len() - 1]);
}
