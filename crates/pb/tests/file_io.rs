//! Writer and reader against real files: torn-line repair, refused samples, binary search
//! in a 1,000,000-sample file, and garbage in the middle of a file.

use std::fs::{self, OpenOptions};
use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use archiver_pb::time::start_of_year;
use archiver_pb::{PayloadType, PbReader, PbWriter, Sample, Timestamp, Value, WriteError};

const PV: &str = "TEST:PV-1";
const YEAR: i32 = 2016;

fn t(k: i64) -> Timestamp {
    // One sample per second, at 0.25 s past the second.
    Timestamp::new(start_of_year(YEAR) + 1000 + k, 250_000_000)
}

fn dbl(k: i64) -> Sample {
    Sample::new(t(k), Value::ScalarDouble(k as f64 * 0.5 - 3.0))
}

fn read_all(path: &std::path::Path) -> (Vec<Sample>, u64, bool) {
    let mut r = PbReader::open(path).expect("open");
    let mut out = Vec::new();
    while let Some(s) = r.next_sample().expect("read") {
        out.push(s.clone());
    }
    (out, r.skipped_lines(), r.torn_tail())
}

#[test]
fn torn_last_line_is_repaired_on_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("TEST/PV/1:2016.pb");
    let samples: Vec<Sample> = (0..10).map(dbl).collect();
    let mut w = PbWriter::open(&path, PV, PayloadType::ScalarDouble, YEAR).expect("open");
    assert_eq!(w.append(&samples).expect("append").written, 10);
    let good_len = fs::metadata(&path).expect("meta").len();
    drop(w);

    // A crash in the middle of writing sample 10: half of its line is on disk.
    let mut line = Vec::new();
    archiver_pb::codec::encode_line(&dbl(10), YEAR, &mut line, &mut Vec::new()).expect("enc");
    let mut f = OpenOptions::new().append(true).open(&path).expect("open");
    f.write_all(&line[..line.len() / 2]).expect("write");
    drop(f);
    let (before, _, torn) = read_all(&path);
    assert_eq!(before.len(), 10);
    assert!(torn, "reader reports the torn tail");

    let mut w = PbWriter::open(&path, PV, PayloadType::ScalarDouble, YEAR).expect("reopen");
    assert_eq!(w.repaired_bytes(), (line.len() / 2) as u64);
    assert_eq!(w.last_timestamp(), Some(t(9)));
    assert_eq!(fs::metadata(&path).expect("meta").len(), good_len);
    assert_eq!(w.append(&[dbl(10), dbl(11)]).expect("append").written, 2);
    drop(w);
    let (after, skipped, torn) = read_all(&path);
    assert_eq!(after, (0..12).map(dbl).collect::<Vec<_>>());
    assert_eq!((skipped, torn), (0, false));
}

#[test]
fn undecodable_complete_tail_lines_are_cut_back_to_last_good_sample() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("x.pb");
    let mut w = PbWriter::open(&path, PV, PayloadType::ScalarDouble, YEAR).expect("open");
    w.append(&[dbl(0), dbl(1)]).expect("append");
    drop(w);
    let mut f = OpenOptions::new().append(true).open(&path).expect("open");
    f.write_all(b"\x08garbage\n\xff\xff\n").expect("write");
    drop(f);
    let w = PbWriter::open(&path, PV, PayloadType::ScalarDouble, YEAR).expect("reopen");
    assert_eq!(w.last_timestamp(), Some(t(1)));
    assert_eq!(w.repaired_bytes(), 12);
}

#[test]
fn torn_header_is_rewritten_and_header_mismatch_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("x.pb");
    fs::write(&path, b"\x08\x06\x12\x05TE").expect("write");
    let mut w = PbWriter::open(&path, PV, PayloadType::ScalarDouble, YEAR).expect("open");
    assert_eq!(w.repaired_bytes(), 6);
    w.append(&[dbl(0)]).expect("append");
    drop(w);
    assert_eq!(read_all(&path).0, vec![dbl(0)]);

    for (pv, ty, year) in [
        ("OTHER:PV", PayloadType::ScalarDouble, YEAR),
        (PV, PayloadType::ScalarInt, YEAR),
        (PV, PayloadType::ScalarDouble, YEAR + 1),
    ] {
        let err = PbWriter::open(&path, pv, ty, year).expect_err("mismatch");
        assert!(matches!(err, WriteError::HeaderMismatch { .. }), "{err}");
        assert!(err.to_string().contains("refusing to append"), "{err}");
    }
    // The refused opens changed nothing.
    assert_eq!(read_all(&path).0, vec![dbl(0)]);
}

#[test]
fn out_of_order_wrong_year_and_wrong_type_are_refused_and_counted() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("x.pb");
    let mut w = PbWriter::open(&path, PV, PayloadType::ScalarDouble, YEAR).expect("open");
    let mut dup_time = dbl(3);
    dup_time.value = Value::ScalarDouble(99.0);
    let next_year = Sample::new(
        Timestamp::new(start_of_year(YEAR + 1), 0),
        Value::ScalarDouble(1.0),
    );
    let wrong_type = Sample::new(t(20), Value::ScalarInt(1));
    let bad_nanos = Sample::new(
        Timestamp::new(t(21).secs, 1_000_000_000),
        Value::ScalarDouble(1.0),
    );
    let batch = [
        dbl(1),
        dbl(3),
        dbl(2),
        dup_time,
        dbl(4),
        next_year,
        wrong_type,
        bad_nanos,
        dbl(0),
    ];
    let c = w.append(&batch).expect("append");
    assert_eq!(
        (
            c.written,
            c.not_newer,
            c.other_year,
            c.wrong_type,
            c.invalid
        ),
        (3, 3, 1, 1, 1)
    );
    assert_eq!(c.refused(), 6);
    drop(w);
    // The rule holds across a reopen: the last time comes from the file.
    let mut w = PbWriter::open(&path, PV, PayloadType::ScalarDouble, YEAR).expect("reopen");
    let c = w.append(&[dbl(4), dbl(2), dbl(5)]).expect("append");
    assert_eq!((c.written, c.not_newer), (1, 2));
    assert_eq!(w.totals().not_newer, 2);
    drop(w);
    assert_eq!(read_all(&path).0, vec![dbl(1), dbl(3), dbl(4), dbl(5)]);
}

/// Counts the bytes read through it, to show the search does not read the whole file.
struct Counting<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[test]
fn binary_search_in_a_million_sample_file() {
    const N: i64 = 1_000_000;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("big.pb");
    let mut w = PbWriter::open(&path, PV, PayloadType::ScalarDouble, YEAR).expect("open");
    // Even k only: two seconds apart, so there are gaps "between" samples.
    let samples: Vec<Sample> = (0..N).map(|k| dbl(2 * k)).collect();
    for chunk in samples.chunks(100_000) {
        assert_eq!(w.append(chunk).expect("append").written, chunk.len() as u64);
    }
    drop(w);
    let file_len = fs::metadata(&path).expect("meta").len();

    let first = |target: Timestamp| -> (Option<Timestamp>, u64) {
        let file = fs::File::open(&path).expect("open");
        let mut r = PbReader::new(Counting {
            inner: file,
            read: 0,
        })
        .expect("header");
        r.seek_to_time(target).expect("seek");
        let got = r.next_sample().expect("read").map(|s| s.time);
        (got, r.into_inner().read)
    };
    let before = Timestamp::new(t(0).secs - 100, 0);
    let cases = [
        (before, Some(t(0))),
        (t(0), Some(t(0))),
        (t(1), Some(t(2))),
        (Timestamp::new(t(0).secs, 250_000_001), Some(t(2))),
        (Timestamp::new(t(0).secs, 249_999_999), Some(t(0))),
        (t(2 * 123_457), Some(t(2 * 123_457))),
        (t(2 * 123_457 + 1), Some(t(2 * 123_458))),
        (t(2 * 500_000 - 1), Some(t(2 * 500_000))),
        (t(2 * (N - 1)), Some(t(2 * (N - 1)))),
        (t(2 * (N - 1) - 1), Some(t(2 * (N - 1)))),
        (t(2 * (N - 1) + 1), None),
        (Timestamp::new(start_of_year(YEAR + 1), 0), None),
    ];
    for (target, want) in cases {
        let (got, bytes_read) = first(target);
        assert_eq!(got, want, "first sample >= {target}");
        assert!(
            bytes_read < file_len / 20,
            "search for {target} read {bytes_read} of {file_len} bytes"
        );
    }
    // And after seeking, iteration continues in order.
    let mut r = PbReader::open(&path).expect("open");
    r.seek_to_time(t(2 * (N - 3))).expect("seek");
    let mut rest = Vec::new();
    while let Some(s) = r.next_sample().expect("read") {
        rest.push(s.time);
    }
    assert_eq!(rest, vec![t(2 * (N - 3)), t(2 * (N - 2)), t(2 * (N - 1))]);
}

#[test]
fn garbage_line_in_the_middle_costs_one_sample() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("x.pb");
    let mut w = PbWriter::open(&path, PV, PayloadType::ScalarDouble, YEAR).expect("open");
    w.append(&(0..2000).map(dbl).collect::<Vec<_>>())
        .expect("append");
    drop(w);
    // Replace the bytes of sample 1000's line (not its newline) with garbage.
    let bytes = fs::read(&path).expect("read");
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let (s, e) = (starts[1001], starts[1002] - 1); // line 0 is the header
    let mut damaged = bytes.clone();
    for b in &mut damaged[s..e] {
        *b = 0xFF;
    }
    // And a second kind: an empty line and a line of plain text.
    damaged.splice(
        starts[1500]..starts[1500],
        b"\nnot a sample\n".iter().copied(),
    );
    fs::write(&path, &damaged).expect("write");

    let (samples, skipped, _) = read_all(&path);
    let want: Vec<Sample> = (0..2000).filter(|&k| k != 1000).map(dbl).collect();
    assert_eq!(samples, want);
    assert_eq!(skipped, 3);

    // Binary search still lands right around the damage.
    for k in [999, 1000, 1001, 1498, 1499, 1500] {
        let mut r = PbReader::new(Cursor::new(damaged.clone())).expect("header");
        r.seek_to_time(t(k)).expect("seek");
        let want = if k == 1000 { t(1001) } else { t(k) };
        assert_eq!(r.next_sample().expect("read").map(|s| s.time), Some(want));
    }
}

#[test]
fn every_type_survives_a_file_roundtrip() {
    let dir = tempfile::tempdir().expect("tmp");
    for ty in PayloadType::ALL {
        let path = dir.path().join(format!("{ty}.pb"));
        let values = match ty {
            PayloadType::ScalarString => vec![Value::ScalarString("a\nb\r\x1b".into())],
            PayloadType::WaveformString => vec![Value::VectorString(vec!["x".into(), "\n".into()])],
            _ => vec![Value::zero(ty)],
        };
        let samples: Vec<Sample> = values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let mut s = Sample::new(t(i as i64), v);
                s.severity = 2;
                s.status = 3;
                s.field_values = vec![archiver_pb::FieldValue::new("cnxlostepsecs", "0")];
                s.field_actual_change = Some(true);
                s
            })
            .collect();
        let mut w = PbWriter::open(&path, PV, ty, YEAR).expect("open");
        assert_eq!(
            w.append(&samples).expect("append").written,
            samples.len() as u64
        );
        drop(w);
        assert_eq!(read_all(&path).0, samples, "{ty}");
    }
}

#[test]
fn last_sample_at_or_before() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("x.pb");
    let mut w = PbWriter::open(&path, PV, PayloadType::ScalarDouble, YEAR).expect("open");
    w.append(&(0..5000).map(|k| dbl(2 * k)).collect::<Vec<_>>())
        .expect("append");
    drop(w);
    let at = |target: Timestamp| {
        let mut r = PbReader::open(&path).expect("open");
        let found = r.seek_to_last_at_or_before(target).expect("seek");
        (found, r.next_sample().expect("read").map(|s| s.time))
    };
    assert_eq!(at(t(5)), (true, Some(t(4))));
    assert_eq!(at(t(4)), (true, Some(t(4))));
    assert_eq!(at(t(2 * 3000 + 1)), (true, Some(t(2 * 3000))));
    assert_eq!(at(Timestamp::new(t(0).secs - 5, 0)), (false, Some(t(0))));
    assert_eq!(at(t(0)), (true, Some(t(0))));
    assert_eq!(at(t(20_000)), (true, Some(t(2 * 4999))));
    // With a torn tail and a garbage line just before the answer.
    let mut bytes = fs::read(&path).expect("read");
    let last_line = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("newline")
        + 1;
    bytes[last_line] = 0x07; // wire type 7: the last sample no longer decodes
    bytes.extend_from_slice(b"\x08\x01");
    fs::write(&path, &bytes).expect("write");
    assert_eq!(at(t(20_000)), (true, Some(t(2 * 4998))));
}

#[test]
fn encoded_lines_are_appended_verbatim_with_the_same_rules() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("x.pb");
    let mut lines = Vec::new();
    let mut scratch = Vec::new();
    for k in [1, 2, 2, 0, 3] {
        archiver_pb::codec::encode_line(&dbl(k), YEAR, &mut lines, &mut scratch).expect("enc");
    }
    lines.extend_from_slice(b"\xff\xff\n");
    let mut w = PbWriter::open(&path, PV, PayloadType::ScalarDouble, YEAR).expect("open");
    let c = w.append_lines(YEAR, &lines).expect("append");
    assert_eq!((c.written, c.not_newer, c.invalid), (3, 2, 1));
    let c = w.append_lines(YEAR + 1, &lines).expect("append");
    assert_eq!((c.written, c.other_year), (0, 6));
    drop(w);
    assert_eq!(read_all(&path).0, vec![dbl(1), dbl(2), dbl(3)]);
    // The bytes on disk are the lines given, not re-encoded.
    let mut one = Vec::new();
    archiver_pb::codec::encode_line(&dbl(3), YEAR, &mut one, &mut scratch).expect("enc");
    assert!(fs::read(&path).expect("read").ends_with(&one));
}

/// A file of samples 0..n in memory (header + lines), and the byte offset of each line.
fn file_in_memory(n: i64) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::new();
    let info = archiver_pb::PayloadInfo::new(PayloadType::ScalarDouble, PV, YEAR);
    archiver_pb::codec::encode_header_line(&info, &mut bytes);
    let mut offsets = Vec::new();
    let mut scratch = Vec::new();
    for k in 0..n {
        offsets.push(bytes.len());
        archiver_pb::codec::encode_line(&dbl(k), YEAR, &mut bytes, &mut scratch).expect("enc");
    }
    (bytes, offsets)
}

/// Reads samples up to `first_k` one by one, then copies the lines through `to` in blocks.
/// `copy_lines_through` after sample `first_k`: the time of the last line copied with the
/// lines handed over (their newlines counted), the bytes, and the samples read after.
fn copy_after(
    bytes: &[u8],
    first_k: i64,
    to: Timestamp,
) -> (Option<(Timestamp, u64)>, Vec<u8>, Vec<Sample>) {
    let mut r = PbReader::new(Cursor::new(bytes.to_vec())).expect("header");
    for _ in 0..=first_k {
        r.next_sample().expect("read").expect("a sample");
    }
    let mut copied = Vec::new();
    let got = r
        .copy_lines_through(to, |block| {
            copied.extend_from_slice(block);
            Ok::<(), ()>(())
        })
        .expect("copy")
        .map(|last| (last, archiver_pb::reader::count_newlines(&copied)));
    let mut rest = Vec::new();
    while let Some(s) = r.next_sample().expect("read") {
        rest.push(s.clone());
    }
    (got, copied, rest)
}

#[test]
fn copy_lines_through_hands_over_the_stored_bytes_up_to_to() {
    // Enough lines for several blocks.
    let n = 40_000;
    let (bytes, offsets) = file_in_memory(n);
    assert!(bytes.len() > 2 * archiver_pb::reader::COPY_BLOCK);
    let line = |k: i64| {
        &bytes[offsets[k as usize]..offsets.get(k as usize + 1).copied().unwrap_or(bytes.len())]
    };
    // The whole rest of the file: its last line is before `to`.
    let (got, copied, rest) = copy_after(&bytes, 4, t(n + 5));
    assert_eq!(got, Some((t(n - 1), (n - 5) as u64)));
    assert_eq!(copied, &bytes[offsets[5]..]);
    assert!(rest.is_empty());
    // Up to the last line at or before `to` (binary search); the reader goes on after it.
    let (got, copied, rest) = copy_after(&bytes, 0, t(30_000));
    assert_eq!(got, Some((t(30_000), 30_000)));
    assert_eq!(copied, &bytes[offsets[1]..offsets[30_001]]);
    assert_eq!(rest.first(), Some(&dbl(30_001)));
    assert_eq!(rest.len() as i64, n - 30_001);
    // `to` between two samples.
    let (got, copied, _) = copy_after(&bytes, 0, Timestamp::new(t(7).secs, 0));
    assert_eq!(got, Some((t(6), 6)));
    assert_eq!(copied.len(), (1..=6).map(|k| line(k).len()).sum::<usize>());
    // Nothing after the current sample is at or before `to`: nothing, the reader stays.
    let (got, copied, rest) = copy_after(&bytes, 10, t(10));
    assert_eq!(got, None);
    assert!(copied.is_empty());
    assert_eq!(rest.first(), Some(&dbl(11)));
    // At the end of the file: nothing.
    let (got, _, _) = copy_after(&bytes, n - 1, t(n + 5));
    assert_eq!(got, None);
}

#[test]
fn copy_lines_through_leaves_a_torn_tail_and_stops_at_the_sink() {
    let (mut bytes, offsets) = file_in_memory(100);
    let whole = bytes.len();
    // Half a line being written.
    let mut line = Vec::new();
    archiver_pb::codec::encode_line(&dbl(100), YEAR, &mut line, &mut Vec::new()).expect("enc");
    bytes.extend_from_slice(&line[..line.len() / 2]);
    let (got, copied, _) = copy_after(&bytes, 0, t(1000));
    assert_eq!(got, Some((t(99), 99)));
    assert_eq!(copied, &bytes[offsets[1]..whole]);
    // A sink error stops the copy and is returned.
    let mut r = PbReader::new(Cursor::new(bytes.clone())).expect("header");
    r.next_sample().expect("read");
    let e = r.copy_lines_through(t(1000), |_| Err("stop"));
    assert!(
        matches!(e, Err(archiver_pb::CopyError::Sink("stop"))),
        "{e:?}"
    );
}

#[test]
fn newlines_are_counted_across_runs_and_remainders() {
    use archiver_pb::reader::count_newlines;
    // Every length around the run (255 × 32) and lane (32) boundaries, newlines dense
    // (a counter of 255 in every lane) and sparse.
    for len in [0, 1, 31, 32, 33, 8159, 8160, 8161, 20_000, 65_537] {
        let dense = vec![b'\n'; len];
        assert_eq!(count_newlines(&dense), len as u64, "dense {len}");
        let sparse: Vec<u8> = (0..len)
            .map(|i| if i % 7 == 3 { b'\n' } else { b'x' })
            .collect();
        let want = sparse.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(count_newlines(&sparse), want, "sparse {len}");
    }
}
