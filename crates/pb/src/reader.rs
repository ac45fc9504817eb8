//! Reading PlainPB files: the header, then sample lines in order, with a binary search on
//! byte offsets to start at a time.
//!
//! Reads are buffered and the current sample is reused, so iterating over a file of scalar
//! samples allocates nothing per sample. Lines that do not decode are skipped and counted,
//! never fatal: one bad line costs one sample, not the file. A last line without its newline
//! (a write in progress, or a crash) is not returned and is reported by [`PbReader::torn_tail`].
//!
//! The reader takes any `Read + Seek`: a real file ([`PbReader::open`]), bytes in memory, or
//! a storage backend's file ([`PbReader::from_file`], through [`FileCursor`]).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::codec::{DecodeError, LineDecoder, decode_header_line};
use crate::io::{FileCursor, FileIo};
use crate::sample::{PayloadInfo, Sample, Value};
use crate::time::Timestamp;

/// The default limit on the length of one line (escaped bytes). Longer lines are skipped
/// and counted without being held in memory.
pub const DEFAULT_MAX_LINE: usize = 256 * 1024 * 1024;

/// The limit on the length of the header line.
pub const MAX_HEADER_LINE: usize = 16 * 1024 * 1024;

const READ_CHUNK: usize = 64 * 1024;

/// Below this many bytes, the binary search hands over to a linear scan.
const LINEAR_SCAN_BYTES: u64 = 16 * 1024;

/// How many undecodable lines a backward step skips before giving up.
pub const MAX_BACKWARD_LINES: usize = 1000;

/// Why a file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The underlying reader failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The file has no complete header line.
    #[error("no complete header line (file is empty or was cut inside the header)")]
    NoHeader,
    /// The header line is longer than [`MAX_HEADER_LINE`].
    #[error("header line longer than {MAX_HEADER_LINE} bytes")]
    HeaderTooLong,
    /// The header line does not decode as a `PayloadInfo`.
    #[error("header line does not decode: {0}")]
    BadHeader(#[source] DecodeError),
}

/// The size of the blocks [`PbReader::copy_lines_through`] hands over.
pub const COPY_BLOCK: usize = 256 * 1024;

/// The newlines in `bytes`: byte counters per lane over runs of at most 255 × 32 bytes
/// (so that no counter overflows), which the compiler turns into vector compares and
/// adds; a plain `filter().count()` widens every byte to a 64-bit counter and was most of
/// the CPU of a pbraw copy (perf, BENCHMARKS.md "Retrieval, third round").
pub fn count_newlines(bytes: &[u8]) -> u64 {
    const LANES: usize = 32;
    let mut total = 0u64;
    for run in bytes.chunks(255 * LANES) {
        let mut lanes = [0u8; LANES];
        let mut blocks = run.chunks_exact(LANES);
        for b in &mut blocks {
            for (c, &x) in lanes.iter_mut().zip(b) {
                *c += u8::from(x == b'\n');
            }
        }
        total += lanes.iter().map(|&c| u64::from(c)).sum::<u64>();
        total += blocks.remainder().iter().filter(|&&x| x == b'\n').count() as u64;
    }
    total
}

/// Why [`PbReader::copy_lines_through`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError<E> {
    /// Reading the file failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The sink refused a block.
    #[error("the receiver of the lines stopped the copy")]
    Sink(E),
}

/// One line of a file, escaped, without its newline.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// Byte offset of the line's first byte in the file.
    pub offset: u64,
    /// The escaped bytes.
    pub bytes: &'a [u8],
}

/// A reader of one PlainPB file (or any seekable stream holding one).
#[derive(Debug)]
pub struct PbReader<R> {
    inner: R,
    header: PayloadInfo,
    header_len: u64,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    buf_offset: u64,
    eof: bool,
    discarding: bool,
    max_line: usize,
    torn_tail: bool,
    skipped: u64,
    last_error: Option<(u64, DecodeError)>,
    decoder: LineDecoder,
    sample: Sample,
    /// The range in `buf` of the line [`PbReader::current`] was decoded from (empty
    /// when the reader moved since).
    line: std::ops::Range<usize>,
    probe: Vec<u8>,
}

impl PbReader<File> {
    /// Opens the file at `path` and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ReadError> {
        PbReader::new(File::open(path)?)
    }
}

impl<F: FileIo> PbReader<FileCursor<F>> {
    /// Reads the header of `file`, a file of any storage backend (see [`FileIo`]).
    pub fn from_file(file: F) -> Result<Self, ReadError> {
        PbReader::new(FileCursor::new(file))
    }
}

impl<R: Read + Seek> PbReader<R> {
    /// Reads the header from the start of `inner`.
    pub fn new(mut inner: R) -> Result<Self, ReadError> {
        inner.seek(SeekFrom::Start(0))?;
        let mut reader = PbReader {
            inner,
            header: PayloadInfo::new(crate::PayloadType::ScalarDouble, "", 1970),
            header_len: 0,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            buf_offset: 0,
            eof: false,
            discarding: false,
            max_line: MAX_HEADER_LINE,
            torn_tail: false,
            skipped: 0,
            last_error: None,
            decoder: LineDecoder::new(crate::PayloadType::ScalarDouble, 1970),
            sample: Sample::new(Timestamp::default(), Value::ScalarDouble(0.0)),
            line: 0..0,
            probe: Vec::new(),
        };
        let (offset, range) = match reader.next_range()? {
            Some(found) => found,
            None if reader.skipped > 0 => return Err(ReadError::HeaderTooLong),
            None => return Err(ReadError::NoHeader),
        };
        if offset != 0 {
            return Err(ReadError::HeaderTooLong);
        }
        let header =
            decode_header_line(&reader.buf[range.clone()]).map_err(ReadError::BadHeader)?;
        reader.header_len = (range.end + 1) as u64;
        reader.decoder = LineDecoder::for_header(&header);
        reader.sample = Sample::new(Timestamp::default(), Value::zero(header.payload_type));
        reader.header = header;
        reader.max_line = DEFAULT_MAX_LINE;
        Ok(reader)
    }

    /// Sets the longest line (escaped bytes) that is read; longer ones are skipped.
    pub fn set_max_line(&mut self, max_line: usize) {
        self.max_line = max_line.max(1);
    }

    /// The file's header.
    pub fn header(&self) -> &PayloadInfo {
        &self.header
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Byte offset of the first sample line.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Lines skipped so far because they did not decode or were too long.
    pub fn skipped_lines(&self) -> u64 {
        self.skipped
    }

    /// Offset and error of the last line that did not decode.
    pub fn last_error(&self) -> Option<&(u64, DecodeError)> {
        self.last_error.as_ref()
    }

    /// True when the file ended in a line without newline (not returned).
    pub fn torn_tail(&self) -> bool {
        self.torn_tail
    }

    /// The byte range in `buf` of the next complete line and its file offset.
    fn next_range(&mut self) -> io::Result<Option<(u64, std::ops::Range<usize>)>> {
        self.line = 0..0;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let line_start = self.start;
                self.start += i + 1;
                if self.discarding {
                    self.discarding = false;
                    self.skipped += 1;
                    continue;
                }
                let offset = self.buf_offset + line_start as u64;
                return Ok(Some((offset, line_start..line_start + i)));
            }
            if self.eof {
                if self.start < self.end || self.discarding {
                    self.torn_tail = true;
                    self.start = self.end;
                }
                return Ok(None);
            }
            // Keep the partial line, make room, read more.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.buf_offset += self.start as u64;
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                if self.buf.len() >= self.max_line {
                    // Too long to hold: drop what we have, skip to the next newline.
                    self.buf_offset += self.end as u64;
                    self.end = 0;
                    self.discarding = true;
                } else {
                    let grown = (self.buf.len() * 2).min(self.max_line.max(READ_CHUNK));
                    self.buf.resize(grown, 0);
                }
            }
            let n = loop {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
    }

    /// The next complete line, escaped, without its newline; `None` at the end.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        Ok(self.next_range()?.map(|(offset, r)| Line {
            offset,
            bytes: &self.buf[r],
        }))
    }

    /// The sample returned by the last [`PbReader::next_sample`].
    pub fn current(&self) -> &Sample {
        &self.sample
    }

    /// The escaped bytes (without the newline) of the line that the last
    /// [`PbReader::next_sample`] decoded into [`PbReader::current`]: the stored sample
    /// verbatim, for a response that copies it (pbraw). Empty when no sample was read
    /// since the reader was created or moved (a seek).
    pub fn current_line(&self) -> &[u8] {
        &self.buf[self.line.clone()]
    }

    /// The next sample that decodes; lines that do not are skipped and counted.
    pub fn next_sample(&mut self) -> io::Result<Option<&Sample>> {
        loop {
            let Some((offset, range)) = self.next_range()? else {
                return Ok(None);
            };
            match self
                .decoder
                .decode(&self.buf[range.clone()], &mut self.sample)
            {
                Ok(()) => {
                    self.line = range;
                    return Ok(Some(&self.sample));
                }
                Err(e) => {
                    self.skipped += 1;
                    self.last_error = Some((offset, e));
                }
            }
        }
    }

    /// Positions the reader so that the next sample is the first one with time ≥ `t`
    /// (or the end). Binary search on byte offsets: reads O(log n) small pieces of the
    /// file, then at most a few KiB linearly.
    pub fn seek_to_time(&mut self, t: Timestamp) -> io::Result<()> {
        let file_len = self.inner.seek(SeekFrom::End(0))?;
        // Invariant: `lo` is a line start, and the first line with time ≥ t starts in [lo, hi].
        let (mut lo, mut hi) = (self.header_len, file_len);
        while hi - lo > LINEAR_SCAN_BYTES {
            let mid = lo + (hi - lo) / 2;
            let mut probe_at = self.line_start_at_or_after(mid)?;
            let mut moved = false;
            while let Some(s) = probe_at.filter(|&s| s < hi) {
                let Some(len) = self.read_probe_line(s)? else {
                    break;
                };
                match self.decoder.decode_time(&self.probe) {
                    Ok(ts) if ts >= t => hi = s,
                    Ok(_) => lo = s + len as u64 + 1,
                    Err(_) => {
                        probe_at = Some(s + len as u64 + 1);
                        continue;
                    }
                }
                moved = true;
                break;
            }
            if !moved {
                break; // no decodable line start in [mid, hi): scan [lo, hi) linearly
            }
        }
        self.reposition(lo)?;
        loop {
            let Some((_, range)) = self.next_range()? else {
                return Ok(());
            };
            match self.decoder.decode_time(&self.buf[range.clone()]) {
                Ok(ts) if ts >= t => {
                    self.start = range.start;
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => {
                    self.skipped += 1;
                    self.last_error = Some((self.buf_offset + range.start as u64, e));
                }
            }
        }
    }

    /// Positions the reader at the last sample with time ≤ `t` and returns true; if the
    /// file has no such sample, positions it at the first sample after `t` (as
    /// [`PbReader::seek_to_time`]) and returns false. Binary search, then a backward step
    /// over at most [`MAX_BACKWARD_LINES`] undecodable lines.
    pub fn seek_to_last_at_or_before(&mut self, t: Timestamp) -> io::Result<bool> {
        let after = if t.nanos >= 999_999_999 {
            Timestamp::new(t.secs.saturating_add(1), 0)
        } else {
            Timestamp::new(t.secs, t.nanos + 1)
        };
        self.seek_to_time(after)?;
        let first_after = self.position();
        let mut end = first_after;
        for _ in 0..MAX_BACKWARD_LINES {
            // The line before `end`: from the newline before its own newline, to that newline.
            let Some(nl) = self.rfind_newline(self.header_len, end)? else {
                break;
            };
            if nl < self.header_len {
                break;
            }
            let start = match self.rfind_newline(self.header_len, nl)? {
                Some(prev) => prev + 1,
                None => self.header_len,
            };
            let Some(len) = self.read_probe_line(start)? else {
                end = start;
                continue;
            };
            if self
                .decoder
                .decode(&self.probe[..len], &mut self.sample)
                .is_ok()
                && self.sample.time <= t
            {
                self.reposition(start)?;
                return Ok(true);
            }
            end = start;
        }
        self.reposition(first_after)?;
        Ok(false)
    }

    /// Hands the complete lines after the current position whose samples are at or
    /// before `to` to `sink`, verbatim (escaped, each with its newline), in blocks of
    /// about [`COPY_BLOCK`] bytes, without decoding them: Java's copy of a partition
    /// inside a request's range (`FileBackedPBEventStream` over a whole file). The end is
    /// the file's last complete line when its time is ≤ `to` (one decode), else the last
    /// line ≤ `to` found by binary search ([`PbReader::seek_to_last_at_or_before`]). A
    /// torn last line (no newline) is never handed over. Lines in between are not
    /// looked at: an undecodable one is copied as it is (as Java's copy does), and the
    /// file is taken to be in time order (as the binary search does).
    ///
    /// Returns the time of the last line handed over, or `None` when none was (the reader
    /// is then where it was). The lines are not counted here: a sink that needs their
    /// number counts the newlines of what it takes ([`count_newlines`]; most sinks do not,
    /// and the count was a tenth of the CPU of a binned year). Afterwards the reader is at the
    /// line after the last one handed over; [`PbReader::current`] and
    /// [`PbReader::current_line`] are stale. Errors: reading ([`CopyError::Io`]), or the
    /// sink's ([`CopyError::Sink`]), which stops the copy.
    pub fn copy_lines_through<E>(
        &mut self,
        to: Timestamp,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<Option<Timestamp>, CopyError<E>> {
        let pos = self.position();
        let Some((end, last)) = self.copy_end(pos, to)? else {
            self.reposition(pos)?;
            return Ok(None);
        };
        self.inner.seek(SeekFrom::Start(pos))?;
        if self.buf.len() < COPY_BLOCK {
            self.buf.resize(COPY_BLOCK, 0);
        }
        let mut at = pos;
        while at < end {
            let want = usize::try_from(end - at).map_or(self.buf.len(), |n| n.min(self.buf.len()));
            self.inner.read_exact(&mut self.buf[..want])?;
            sink(&self.buf[..want]).map_err(CopyError::Sink)?;
            at += want as u64;
        }
        self.reposition(end)?;
        Ok(Some(last))
    }

    /// The end (after its newline) and time of the last line in `[pos, file end)` at or
    /// before `to`; `None` when there is none.
    fn copy_end(&mut self, pos: u64, to: Timestamp) -> io::Result<Option<(u64, Timestamp)>> {
        let file_len = self.inner.seek(SeekFrom::End(0))?;
        let Some(nl) = self.rfind_newline(pos, file_len)? else {
            return Ok(None);
        };
        let start = match self.rfind_newline(pos, nl)? {
            Some(prev) => prev + 1,
            None => pos,
        };
        if let Some(len) = self.read_probe_line(start)?
            && let Ok(t) = self.decoder.decode_time(&self.probe[..len])
            && t <= to
        {
            return Ok(Some((nl + 1, t)));
        }
        if !self.seek_to_last_at_or_before(to)? {
            return Ok(None);
        }
        let t = self.sample.time;
        Ok(match self.next_range()? {
            Some((offset, range)) if offset >= pos => Some((offset + range.len() as u64 + 1, t)),
            _ => None,
        })
    }

    /// The file offset of the next line to be read.
    pub fn position(&self) -> u64 {
        self.buf_offset + self.start as u64
    }

    /// Position of the last newline in `[lo, hi)`, reading backwards.
    fn rfind_newline(&mut self, lo: u64, hi: u64) -> io::Result<Option<u64>> {
        let mut chunk = [0u8; 4096];
        let mut end = hi;
        while end > lo {
            let start = end.saturating_sub(chunk.len() as u64).max(lo);
            let n = (end - start) as usize;
            self.inner.seek(SeekFrom::Start(start))?;
            self.inner.read_exact(&mut chunk[..n])?;
            if let Some(i) = memchr::memrchr(b'\n', &chunk[..n]) {
                return Ok(Some(start + i as u64));
            }
            end = start;
        }
        Ok(None)
    }

    /// Moves the sequential reading position to byte `pos` (a line start).
    fn reposition(&mut self, pos: u64) -> io::Result<()> {
        self.line = 0..0;
        self.inner.seek(SeekFrom::Start(pos))?;
        self.buf_offset = pos;
        self.start = 0;
        self.end = 0;
        self.eof = false;
        self.discarding = false;
        self.torn_tail = false;
        Ok(())
    }

    /// The first line start at or after `pos` (≥ the header end), or `None` if none.
    fn line_start_at_or_after(&mut self, pos: u64) -> io::Result<Option<u64>> {
        if pos <= self.header_len {
            return Ok(Some(self.header_len));
        }
        // The line containing byte pos-1 ends at the first newline at or after pos-1.
        let mut at = pos - 1;
        self.inner.seek(SeekFrom::Start(at))?;
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            if let Some(i) = memchr::memchr(b'\n', &chunk[..n]) {
                return Ok(Some(at + i as u64 + 1));
            }
            at += n as u64;
        }
    }

    /// Reads the complete line starting at `pos` into `self.probe`; returns its length, or
    /// `None` if the file ends before its newline or it is longer than the line limit.
    fn read_probe_line(&mut self, pos: u64) -> io::Result<Option<usize>> {
        self.inner.seek(SeekFrom::Start(pos))?;
        self.probe.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.inner.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            if let Some(i) = memchr::memchr(b'\n', &chunk[..n]) {
                self.probe.extend_from_slice(&chunk[..i]);
                return Ok(Some(self.probe.len()));
            }
            self.probe.extend_from_slice(&chunk[..n]);
            if self.probe.len() > self.max_line {
                return Ok(None);
            }
        }
    }
}
