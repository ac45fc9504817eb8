//! The writer over a `FileIo` that fails on demand: a short write is rolled back; when the
//! rollback fails too, it is retried before the next append, so the file still ends with a
//! complete line and holds every sample once.

use std::io::{self, Cursor};

use archiver_pb::time::start_of_year;
use archiver_pb::{FileIo, PayloadType, PbReader, PbWriter, Sample, Timestamp, Value};

/// A file in memory; `short_writes` appends write half and fail, `failing_set_len`
/// `set_len` calls fail.
#[derive(Debug, Default)]
struct Flaky {
    data: Vec<u8>,
    short_writes: usize,
    failing_set_len: usize,
}

impl FileIo for Flaky {
    fn len(&self) -> io::Result<u64> {
        Ok(self.data.len() as u64)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = (offset as usize).min(self.data.len());
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Ok(n)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        if self.short_writes > 0 {
            self.short_writes -= 1;
            self.data.extend_from_slice(&data[..data.len() / 2]);
            return Err(io::Error::from_raw_os_error(28));
        }
        self.data.extend_from_slice(data);
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if self.failing_set_len > 0 {
            self.failing_set_len -= 1;
            return Err(io::Error::other("set_len failed"));
        }
        self.data.resize(len as usize, 0);
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn s(k: i64) -> Sample {
    Sample::new(
        Timestamp::new(start_of_year(2020) + k, 0),
        Value::ScalarDouble(k as f64),
    )
}

fn decode(bytes: &[u8]) -> (Vec<Sample>, bool) {
    let mut r = PbReader::new(Cursor::new(bytes)).expect("header");
    let mut out = Vec::new();
    while let Some(x) = r.next_sample().expect("read") {
        out.push(x.clone());
    }
    (out, r.torn_tail())
}

#[test]
fn a_short_write_whose_rollback_fails_is_cut_before_the_next_append() {
    let mut w = PbWriter::from_file(
        Flaky::default(),
        "mem",
        "A:B",
        PayloadType::ScalarDouble,
        2020,
    )
    .expect("open");
    let first: Vec<Sample> = (0..5).map(s).collect();
    w.append(&first).expect("append");
    let clean_len = w.len();

    // A short write whose rollback fails.
    let second: Vec<Sample> = (5..10).map(s).collect();
    let mut w = PbWriter::from_file(
        Flaky {
            data: bytes_of(w),
            short_writes: 1,
            failing_set_len: 1,
        },
        "mem",
        "A:B",
        PayloadType::ScalarDouble,
        2020,
    )
    .expect("reopen");
    let err = w.append(&second).expect_err("short write");
    assert!(err.to_string().contains("mem"), "{err}");
    // The rollback failed too: the next append cuts the partial bytes first.
    assert_eq!(w.len(), clean_len);
    assert_eq!(w.last_timestamp(), Some(s(4).time));
    assert_eq!(w.append(&second).expect("retry").written, 5);
    let (samples, torn) = decode(&bytes_of(w));
    assert_eq!(samples, (0..10).map(s).collect::<Vec<_>>());
    assert!(!torn);
}

fn bytes_of(w: PbWriter<Flaky>) -> Vec<u8> {
    w.into_file().data
}
