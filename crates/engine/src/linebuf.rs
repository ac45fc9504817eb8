//! A PV's unwritten samples, kept as the PlainPB lines they will be written as.
//!
//! A sample is encoded once, when it is buffered (about 20 bytes for a scalar double,
//! against about 130 for a decoded `Sample` in memory); the writer appends the lines to
//! the files as they are, and retrieval decodes them when asked. Lines are grouped in
//! chunks of one UTC year each, as a line's time is relative to its year.

use std::collections::VecDeque;

use archiver_pb::codec::encode_line;
use archiver_pb::{LineDecoder, PayloadType, Sample, Timestamp, Value};

/// Lines of one year.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunk {
    /// The UTC year of every line.
    pub year: i32,
    /// Escaped lines, each ending in a newline; bytes before `start` are dropped ones.
    bytes: Vec<u8>,
    start: usize,
    /// Lines held.
    pub lines: usize,
}

impl Chunk {
    /// The lines held, newline-terminated.
    pub fn lines_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// Drops the oldest line; false if there is none.
    fn drop_first(&mut self) -> bool {
        let rest = &self.bytes[self.start..];
        let Some(nl) = memchr_newline(rest) else {
            return false;
        };
        self.start += nl + 1;
        self.lines -= 1;
        // Reclaim the dropped front once it is half of the buffer.
        if self.start > self.bytes.len() / 2 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        true
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&x| x == b'\n')
}

/// The bounded line buffer of one PV.
#[derive(Debug, Default)]
pub(crate) struct LineBuffer {
    chunks: VecDeque<Chunk>,
    len: usize,
    last: Option<Timestamp>,
    scratch: Vec<u8>,
    /// Bytes the last [`LineBuffer::take`] held. The next chunk is allocated that large
    /// (plus an eighth): a PV's rate is mostly steady, and growing by doubling would both
    /// copy the lines at each step and hold up to twice their size.
    size_hint: usize,
    /// Bytes of the line the last successful [`LineBuffer::push`] encoded (escaped, with
    /// its newline): what the PV's storage counter adds.
    last_line_len: usize,
}

/// The largest chunk allocated up front from [`LineBuffer::size_hint`]; beyond it the
/// chunk grows as needed.
const MAX_PRESIZE: usize = 256 * 1024;

impl LineBuffer {
    /// Samples held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the line the last successful push encoded.
    pub fn last_line_len(&self) -> usize {
        self.last_line_len
    }

    /// The year and bytes (escaped, with its newline) of the line the last successful
    /// push encoded, while it is still held: what the journal records.
    pub fn last_line(&self) -> Option<(i32, &[u8])> {
        let c = self.chunks.back()?;
        let b = c.lines_bytes();
        b.len()
            .checked_sub(self.last_line_len)
            .map(|start| (c.year, &b[start..]))
    }

    /// Time of the newest sample held.
    pub fn last_time(&self) -> Option<Timestamp> {
        self.last
    }

    /// Encodes and appends `s`; when `capacity` samples are held already, the oldest is
    /// dropped first (returns true then). A sample that cannot be encoded (nanoseconds
    /// out of range) is refused: `Err(())`.
    pub fn push(&mut self, s: &Sample, capacity: usize) -> Result<bool, ()> {
        let year = s.time.year();
        if self.chunks.back().is_none_or(|c| c.year != year) {
            let hint = self.size_hint.min(MAX_PRESIZE);
            self.chunks.push_back(Chunk {
                year,
                bytes: Vec::with_capacity(hint + hint / 8),
                ..Chunk::default()
            });
        }
        let Some(chunk) = self.chunks.back_mut() else {
            return Err(());
        };
        let before = chunk.bytes.len();
        encode_line(s, year, &mut chunk.bytes, &mut self.scratch).map_err(|_| ())?;
        self.last_line_len = chunk.bytes.len().saturating_sub(before);
        chunk.lines += 1;
        self.len += 1;
        self.last = Some(s.time);
        let mut dropped = false;
        while self.len > capacity.max(1) {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.drop_first() {
                self.len -= 1;
                dropped = true;
            }
            if front.lines == 0 {
                self.chunks.pop_front();
            }
        }
        Ok(dropped)
    }

    /// Takes every chunk out, leaving the buffer empty (its last time is kept).
    pub fn take(&mut self) -> Vec<Chunk> {
        self.len = 0;
        self.size_hint = self.chunks.iter().map(|c| c.lines_bytes().len()).sum();
        self.chunks.drain(..).collect()
    }

    /// Puts chunks that could not be written back in front of the newer ones, then drops
    /// the oldest lines beyond `capacity`; returns how many were dropped.
    pub fn put_back(&mut self, chunks: Vec<Chunk>, capacity: usize) -> usize {
        for c in chunks.into_iter().rev() {
            self.len += c.lines;
            match self.chunks.front_mut() {
                Some(f) if f.year == c.year => {
                    let mut merged = c.lines_bytes().to_vec();
                    merged.extend_from_slice(f.lines_bytes());
                    f.bytes = merged;
                    f.start = 0;
                    f.lines += c.lines;
                }
                _ => self.chunks.push_front(c),
            }
        }
        let mut dropped = 0;
        while self.len > capacity.max(1) {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.drop_first() {
                self.len -= 1;
                dropped += 1;
            }
            if front.lines == 0 {
                self.chunks.pop_front();
            }
        }
        dropped
    }

    /// Decodes the lines of `chunks` (samples of type `ty`) and appends them to `out`.
    pub fn decode_into(chunks: &[Chunk], ty: PayloadType, out: &mut Vec<Sample>) {
        for c in chunks {
            let mut d = LineDecoder::new(ty, c.year);
            for line in c.lines_bytes().split(|b| *b == b'\n') {
                if line.is_empty() {
                    continue;
                }
                let mut s = Sample::new(Timestamp::default(), Value::zero(ty));
                if d.decode(line, &mut s).is_ok() {
                    out.push(s);
                }
            }
        }
    }

    /// The chunks held.
    #[cfg(test)]
    pub fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.chunks.iter()
    }

    /// A copy of the lines held, for a reader to decode once the PV's lock is released:
    /// one allocation and one `memcpy` per chunk (usually one), sized to the lines (the
    /// dropped front and spare capacity are not copied). No per-sample work.
    pub fn copy_chunks(&self) -> Vec<Chunk> {
        self.chunks
            .iter()
            .map(|c| Chunk {
                year: c.year,
                bytes: c.lines_bytes().to_vec(),
                start: 0,
                lines: c.lines,
            })
            .collect()
    }

    /// Samples held in `chunks`.
    pub fn count_lines(chunks: &[Chunk]) -> usize {
        chunks.iter().map(|c| c.lines).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::time::start_of_year;

    fn s(secs: i64) -> Sample {
        Sample::new(Timestamp::new(secs, 0), Value::ScalarDouble(secs as f64))
    }

    fn decoded(b: &LineBuffer) -> Vec<i64> {
        let chunks: Vec<Chunk> = b.chunks().cloned().collect();
        let mut out = Vec::new();
        LineBuffer::decode_into(&chunks, PayloadType::ScalarDouble, &mut out);
        out.iter().map(|x| x.time.secs).collect()
    }

    #[test]
    fn bounded_drops_oldest_across_years() {
        let y = start_of_year(2017);
        let mut b = LineBuffer::default();
        for t in [y - 3, y - 2, y - 1, y, y + 1] {
            assert_eq!(b.push(&s(t), 4), Ok(t == y + 1));
        }
        assert_eq!(b.len(), 4);
        assert_eq!(decoded(&b), vec![y - 2, y - 1, y, y + 1]);
        for t in 2..10 {
            b.push(&s(y + t), 4).unwrap();
        }
        assert_eq!(decoded(&b), vec![y + 6, y + 7, y + 8, y + 9]);
        assert_eq!(b.chunks().count(), 1);
        assert_eq!(b.last_time(), Some(Timestamp::new(y + 9, 0)));
    }

    #[test]
    fn a_new_chunk_is_sized_for_the_last_take() {
        let mut b = LineBuffer::default();
        for t in 0..100 {
            b.push(&s(1_000_000_000 + t), 1000).unwrap();
        }
        let taken = b.take();
        let bytes: usize = taken.iter().map(|c| c.lines_bytes().len()).sum();
        assert!(bytes > 100);
        b.push(&s(1_000_000_100), 1000).unwrap();
        let cap = b.chunks().next().map(|c| c.bytes.capacity()).unwrap();
        assert!(
            (bytes..=bytes + bytes / 8 + 64).contains(&cap),
            "capacity {cap} for a take of {bytes} bytes"
        );
        // A quiet period: the next hint follows it down.
        b.take();
        b.push(&s(1_000_000_101), 1000).unwrap();
        let cap = b.chunks().next().map(|c| c.bytes.capacity()).unwrap();
        assert!(cap < bytes, "capacity {cap} after a take of one line");
        assert_eq!(decoded(&b), vec![1_000_000_101]);
    }

    #[test]
    fn a_copy_holds_only_the_lines_and_decodes_alike() {
        let mut b = LineBuffer::default();
        for t in 0..10 {
            b.push(&s(1_000_000_000 + t), 4).unwrap();
        }
        let copy = b.copy_chunks();
        assert_eq!(LineBuffer::count_lines(&copy), 4);
        let held: usize = b.chunks().map(|c| c.lines_bytes().len()).sum();
        assert_eq!(copy.iter().map(|c| c.bytes.len()).sum::<usize>(), held);
        assert!(copy.iter().all(|c| c.start == 0));
        let mut out = Vec::new();
        LineBuffer::decode_into(&copy, PayloadType::ScalarDouble, &mut out);
        assert_eq!(
            out.iter().map(|x| x.time.secs).collect::<Vec<_>>(),
            decoded(&b)
        );
    }

    #[test]
    fn take_and_put_back_keep_order() {
        let mut b = LineBuffer::default();
        for t in 0..5 {
            b.push(&s(1_000_000_000 + t), 100).unwrap();
        }
        let taken = b.take();
        assert!(b.is_empty());
        for t in 5..8 {
            b.push(&s(1_000_000_000 + t), 100).unwrap();
        }
        assert_eq!(b.put_back(taken, 6), 2);
        assert_eq!(
            decoded(&b),
            (2..8).map(|t| 1_000_000_000 + t).collect::<Vec<_>>()
        );
        assert!(
            b.push(
                &Sample::new(
                    Timestamp::new(1_000_000_100, 2_000_000_000),
                    Value::ScalarDouble(0.0)
                ),
                100
            )
            .is_err()
        );
    }
}
