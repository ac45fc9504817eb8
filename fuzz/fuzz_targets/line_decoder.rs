//! Arbitrary bytes as one escaped line of every payload type, and as a header line:
//! decoding never panics, and whatever decodes re-encodes to bytes that decode the same.
#![no_main]

use archiver_pb::codec::{decode_header_line, encode_sample};
use archiver_pb::{LineDecoder, PayloadType, Sample, Timestamp, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_header_line(data);
    for ty in PayloadType::ALL {
        let mut d = LineDecoder::new(ty, 2020);
        let mut s = Sample::new(Timestamp::default(), Value::zero(ty));
        let _ = d.decode_time(data);
        if d.decode(data, &mut s).is_ok() {
            let mut bytes = Vec::new();
            if encode_sample(&s, 2020, &mut bytes).is_ok() {
                let mut again = Sample::new(Timestamp::default(), Value::zero(ty));
                let mut d2 = LineDecoder::new(ty, 2020);
                let mut escaped = Vec::new();
                archiver_pb::escape::escape_into(&bytes, &mut escaped);
                assert!(d2.decode(&escaped, &mut again).is_ok());
                assert_eq!(again.time, s.time);
            }
        }
    }
});
