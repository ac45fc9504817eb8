//! Arbitrary bytes as a whole file, and as the body after a valid header: the reader never
//! panics, iterates to the end, and binary search never panics either.
#![no_main]

use std::io::Cursor;

use archiver_pb::codec::encode_header_line;
use archiver_pb::time::start_of_year;
use archiver_pb::{PayloadInfo, PayloadType, PbReader, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = PbReader::new(Cursor::new(data)) {
        while let Ok(Some(_)) = r.next_sample() {}
    }
    let (ty, body) = match data.split_first() {
        Some((t, rest)) => (PayloadType::ALL[usize::from(*t) % 15], rest),
        None => (PayloadType::ScalarDouble, data),
    };
    let mut file = Vec::new();
    encode_header_line(&PayloadInfo::new(ty, "FUZZ:PV", 2020), &mut file);
    file.extend_from_slice(body);
    let mut r = PbReader::new(Cursor::new(&file[..])).expect("valid header");
    r.set_max_line(256);
    while let Ok(Some(_)) = r.next_sample() {}
    for probe in [0i64, 1, 100, 1_000_000] {
        let mut r = PbReader::new(Cursor::new(&file[..])).expect("valid header");
        let _ = r.seek_to_time(Timestamp::new(start_of_year(2020) + probe, 0));
        while let Ok(Some(_)) = r.next_sample() {}
    }
});
