//! Bounded fuzzing in CI: arbitrary bytes given to the line decoder, the header decoder,
//! the file reader (iteration and binary search) and the writer's repair-on-open never
//! panic. The coverage-guided fuzz targets in `fuzz/` run the same code for longer.

use std::io::Cursor;

use archiver_pb::codec::{decode_header_line, encode_header_line};
use archiver_pb::{
    LineDecoder, PayloadInfo, PayloadType, PbReader, PbWriter, Sample, Timestamp, Value,
};
use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        // Mostly protobuf-looking bytes: keys of fields 1-9 and small lengths.
        prop::collection::vec(
            prop::sample::select(vec![
                0x08u8, 0x10, 0x18, 0x19, 0x1A, 0x1D, 0x20, 0x3A, 0x40, 0x48, 0x0A, 0x1B, 0x01,
                0x02, 0x03, 0x80, 0xFF, 0x00, 0x05
            ]),
            0..200
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn line_decoder_never_panics(line in bytes(), t in 0i64..15) {
        let ty = PayloadType::from_number(t).expect("type");
        let mut d = LineDecoder::new(ty, 2020);
        let mut s = Sample::new(Timestamp::default(), Value::zero(ty));
        let _ = d.decode(&line, &mut s);
        let _ = d.decode_time(&line);
        let _ = decode_header_line(&line);
    }

    #[test]
    fn reader_never_panics(body in bytes(), raw in bytes(), t in 0i64..15, probe in any::<u32>()) {
        // Arbitrary bytes as a whole file.
        if let Ok(mut r) = PbReader::new(Cursor::new(raw)) {
            while let Ok(Some(_)) = r.next_sample() {}
        }
        // A valid header followed by arbitrary bytes.
        let ty = PayloadType::from_number(t).expect("type");
        let mut file = Vec::new();
        encode_header_line(&PayloadInfo::new(ty, "F:Z", 2020), &mut file);
        file.extend_from_slice(&body);
        let mut r = PbReader::new(Cursor::new(file.clone())).expect("valid header");
        r.set_max_line(64);
        let mut n = 0;
        while let Ok(Some(_)) = r.next_sample() {
            n += 1;
        }
        prop_assert!(n <= body.len());
        let mut r = PbReader::new(Cursor::new(file)).expect("valid header");
        let target = Timestamp::new(archiver_pb::time::start_of_year(2020) + i64::from(probe % 400), 0);
        prop_assert!(r.seek_to_time(target).is_ok());
        while let Ok(Some(_)) = r.next_sample() {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever follows a valid header, the writer either refuses to open or leaves a file
    /// that reads back with no torn tail and accepts a newer sample.
    #[test]
    fn writer_repair_never_panics_and_leaves_a_clean_file(body in bytes()) {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("f.pb");
        let mut file = Vec::new();
        encode_header_line(&PayloadInfo::new(PayloadType::ScalarDouble, "F:Z", 2020), &mut file);
        file.extend_from_slice(&body);
        std::fs::write(&path, &file).expect("write");
        if let Ok(mut w) = PbWriter::open(&path, "F:Z", PayloadType::ScalarDouble, 2020) {
            let next = Timestamp::new(archiver_pb::time::start_of_year(2021) - 1, 0);
            let s = Sample::new(next, Value::ScalarDouble(1.0));
            let c = w.append([&s]).expect("append");
            prop_assert_eq!(c.written, u64::from(w.last_timestamp() == Some(next)));
            drop(w);
            let mut r = PbReader::open(&path).expect("reopen");
            let mut last = None;
            while let Some(s) = r.next_sample().expect("read") {
                last = Some(s.time);
            }
            prop_assert!(!r.torn_tail());
            prop_assert_eq!(last, Some(next));
        }
    }
}
