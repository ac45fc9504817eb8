//! PlainPB codec throughput on one core, with prost (protobuf's standard Rust codec) as the
//! baseline in the same run.
//!
//! Run: `cargo bench -p archiver-pb --bench codec`. Prints a table of samples/s (best of
//! several rounds) and the ratio to the baseline.

use std::hint::black_box;
use std::io::Cursor;
use std::time::{Duration, Instant};

use archiver_pb::codec::{encode_header_line, encode_line, encode_sample};
use archiver_pb::time::start_of_year;
use archiver_pb::{LineDecoder, PayloadInfo, PayloadType, PbReader, Sample, Timestamp, Value};

#[derive(Clone, PartialEq, prost::Message)]
struct ProstScalarDouble {
    #[prost(uint32, required, tag = "1")]
    secondsintoyear: u32,
    #[prost(uint32, required, tag = "2")]
    nano: u32,
    #[prost(double, required, tag = "3")]
    val: f64,
    #[prost(int32, optional, tag = "4")]
    severity: Option<i32>,
    #[prost(int32, optional, tag = "5")]
    status: Option<i32>,
}

const N: usize = 2_000_000;
const ROUNDS: usize = 5;
const YEAR: i32 = 2024;

/// Best time of `ROUNDS` runs of `f`, as samples per second for `n` samples.
fn rate(n: usize, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        f();
        best = best.min(t0.elapsed());
    }
    n as f64 / best.as_secs_f64()
}

fn main() {
    let y0 = start_of_year(YEAR);
    let samples: Vec<Sample> = (0..N)
        .map(|k| {
            let mut s = Sample::new(
                Timestamp::new(y0 + (k / 10) as i64, (k % 10) as u32 * 100_000_000 + 12_345),
                Value::ScalarDouble((k as f64 * 0.001).sin() * 100.0),
            );
            if k % 100 == 0 {
                s.severity = 1;
                s.status = 3;
            }
            s
        })
        .collect();

    // Ours: encode + escape into one reused buffer.
    let mut buf = Vec::with_capacity(N * 24);
    let mut scratch = Vec::new();
    let enc = rate(N, || {
        buf.clear();
        for s in &samples {
            encode_line(s, YEAR, &mut buf, &mut scratch).expect("encode");
        }
        black_box(&buf);
    });
    let escaped_lines = buf.clone();

    // Baseline: prost encode (no escaping) into one reused buffer.
    let prost_msgs: Vec<ProstScalarDouble> = samples
        .iter()
        .map(|s| ProstScalarDouble {
            secondsintoyear: (s.time.secs - y0) as u32,
            nano: s.time.nanos,
            val: match s.value {
                Value::ScalarDouble(v) => v,
                _ => 0.0,
            },
            severity: (s.severity != 0).then_some(s.severity),
            status: (s.status != 0).then_some(s.status),
        })
        .collect();
    let mut pbuf = Vec::with_capacity(N * 24);
    let prost_enc = rate(N, || {
        pbuf.clear();
        for m in &prost_msgs {
            prost::Message::encode_length_delimited(m, &mut pbuf).expect("prost encode");
        }
        black_box(&pbuf);
    });

    // Ours: split lines + unescape + decode into one reused sample.
    let mut decoder = LineDecoder::new(PayloadType::ScalarDouble, YEAR);
    let mut sample = Sample::new(Timestamp::default(), Value::ScalarDouble(0.0));
    let dec = rate(N, || {
        let mut sum = 0.0;
        for line in escaped_lines.split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            decoder.decode(line, &mut sample).expect("decode");
            if let Value::ScalarDouble(v) = sample.value {
                sum += v;
            }
        }
        black_box(sum);
    });

    // Baseline: prost decode of the (unescaped, length-delimited) same messages.
    let prost_dec = rate(N, || {
        let mut cur = &pbuf[..];
        let mut sum = 0.0;
        while !cur.is_empty() {
            let m: ProstScalarDouble =
                prost::Message::decode_length_delimited(&mut cur).expect("prost decode");
            sum += m.val;
        }
        black_box(sum);
    });

    // Ours: the whole file reader over an in-memory file.
    let mut file = Vec::new();
    encode_header_line(
        &PayloadInfo::new(PayloadType::ScalarDouble, "BENCH:PV", YEAR),
        &mut file,
    );
    file.extend_from_slice(&escaped_lines);
    let reader = rate(N, || {
        let mut r = PbReader::new(Cursor::new(&file[..])).expect("header");
        let mut n = 0usize;
        while let Some(s) = r.next_sample().expect("read") {
            n += black_box(s).severity as usize;
        }
        black_box(n);
    });

    // Encode without escaping, to show what escaping costs.
    let mut raw = Vec::with_capacity(N * 24);
    let enc_raw = rate(N, || {
        raw.clear();
        for s in &samples {
            encode_sample(s, YEAR, &mut raw).expect("encode");
        }
        black_box(&raw);
    });

    let bytes_per_sample = escaped_lines.len() as f64 / N as f64;
    println!("PlainPB codec, ScalarDouble, {N} samples, best of {ROUNDS}, one core");
    println!("{:<44} {:>14} {:>10}", "operation", "samples/s", "vs prost");
    let row = |name: &str, v: f64, base: f64| {
        println!("{name:<44} {:>12.1} M {:>9.2}x", v / 1e6, v / base);
    };
    row("encode + escape (encode_line)", enc, prost_enc);
    row("encode, no escape (encode_sample)", enc_raw, prost_enc);
    row("prost encode (baseline)", prost_enc, prost_enc);
    row("split + unescape + decode (LineDecoder)", dec, prost_dec);
    row("file reader, in memory (PbReader)", reader, prost_dec);
    row("prost decode (baseline)", prost_dec, prost_dec);
    println!("bytes per sample on disk (incl. newline): {bytes_per_sample:.2}");
}
