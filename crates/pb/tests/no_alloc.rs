//! The hot paths allocate nothing per sample: encoding scalar samples into a grown buffer,
//! and decoding scalar lines into a reused sample. Counted with a global allocator that
//! counts calls, so the test fails if a change makes either path allocate.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use archiver_pb::codec::encode_line;
use archiver_pb::time::start_of_year;
use archiver_pb::{LineDecoder, PayloadType, Sample, Timestamp, Value};
use counting_alloc::allocs;

fn samples(ty: PayloadType, n: usize) -> Vec<Sample> {
    let y0 = start_of_year(2024);
    (0..n)
        .map(|k| {
            let v = match ty {
                PayloadType::ScalarDouble => Value::ScalarDouble(k as f64 * 0.37 - 10.0),
                PayloadType::ScalarInt => Value::ScalarInt(k as i32 * 7919),
                PayloadType::ScalarShort => Value::ScalarShort(k as i16),
                PayloadType::ScalarEnum => Value::ScalarEnum((k % 4) as i16),
                PayloadType::ScalarFloat => Value::ScalarFloat(k as f32 / 3.0),
                PayloadType::ScalarByte => Value::ScalarByte(k as i8),
                _ => Value::ScalarString(format!("s{k}")),
            };
            let mut s = Sample::new(Timestamp::new(y0 + k as i64, (k * 7) as u32), v);
            s.severity = (k % 3) as i32;
            s
        })
        .collect()
}

#[test]
fn scalar_encode_and_decode_allocate_nothing_per_sample() {
    for ty in PayloadType::ALL.into_iter().filter(|t| t.is_scalar()) {
        let input = samples(ty, 2000);
        let mut out = Vec::with_capacity(1 << 20);
        let mut scratch = Vec::with_capacity(1024);
        // Warm up: grow everything once.
        for s in &input {
            encode_line(s, 2024, &mut out, &mut scratch).expect("encode");
        }
        let mut decoder = LineDecoder::new(ty, 2024);
        let mut sample = Sample::new(Timestamp::default(), Value::zero(ty));
        for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            decoder.decode(line, &mut sample).expect("decode");
        }

        out.clear();
        let before = allocs();
        for s in &input {
            encode_line(s, 2024, &mut out, &mut scratch).expect("encode");
        }
        let encode_allocs = allocs() - before;

        let before = allocs();
        let mut n = 0;
        for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            decoder.decode(line, &mut sample).expect("decode");
            n += 1;
        }
        let decode_allocs = allocs() - before;
        assert_eq!(n, input.len());
        assert_eq!(sample, input[input.len() - 1], "{ty}");
        assert_eq!(
            (encode_allocs, decode_allocs),
            (0, 0),
            "{ty}: allocations for 2000 samples"
        );
    }
}
