//! Appending samples to a PlainPB file, as the Java appliance does
//! (`PBEventFileWriter`, `AppendDataStateData`).
//!
//! A new file gets a header line (type, PV name, year). An existing file is checked (same
//! PV, type and year) and repaired: a torn last line, left by a crash in the middle of a
//! write, is cut off, back to the end of the last line that decodes. Samples that are not
//! newer than the last one written, or not in the file's year, or of another type, are
//! refused and counted, never written. A failed write (an error, a full disk, a short
//! write) is rolled back to the previous end of the file, so the file always ends with a
//! complete line; if the rollback itself fails, it is tried again before the next append.
//!
//! The file is any [`FileIo`]: [`PbWriter::open`] opens a real file ([`StdFile`]);
//! [`PbWriter::from_file`] takes one from a storage backend.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::codec::{
    DecodeError, EncodeError, LineDecoder, decode_header_line, encode_header_line, encode_line,
};
use crate::io::{FileIo, StdFile};
use crate::reader::MAX_HEADER_LINE;
use crate::sample::{PayloadInfo, Sample, Value};
use crate::time::{Timestamp, seconds_in_year, start_of_year};
use crate::types::PayloadType;

/// How many undecodable complete lines at the end of a file are cut off on open before
/// the writer gives up (Java: 1000).
pub const MAX_REPAIR_LINES: usize = 1000;

/// Lines longer than this at the end of a file are treated as undecodable on open.
const MAX_REPAIR_LINE_BYTES: u64 = 256 * 1024 * 1024;

/// Why a file cannot be opened for appending or appended to.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// An I/O operation on the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The existing header line does not decode.
    #[error("{}: existing header does not decode: {source}", path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: DecodeError,
    },
    /// The existing header is for another PV, type or year.
    #[error(
        "{}: file holds PV {:?}, type {}, year {}; refusing to append PV {:?}, type {}, year {}",
        path.display(), found.pv_name, found.payload_type, found.year,
        expected.pv_name, expected.payload_type, expected.year
    )]
    HeaderMismatch {
        /// The file.
        path: PathBuf,
        /// The header the caller asked for.
        expected: Box<PayloadInfo>,
        /// The header in the file.
        found: Box<PayloadInfo>,
    },
    /// The end of the file is damaged beyond what repair on open may cut off.
    #[error("{}: more than {MAX_REPAIR_LINES} undecodable lines at the end; not repairing", path.display())]
    Unrepairable {
        /// The file.
        path: PathBuf,
    },
}

/// What happened to the samples of one [`PbWriter::append`] call (or, summed, all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendCounts {
    /// Samples written.
    pub written: u64,
    /// Samples refused because their time was not after the last written one.
    pub not_newer: u64,
    /// Samples refused because their time is not in the file's year.
    pub other_year: u64,
    /// Samples refused because their value is not of the file's type.
    pub wrong_type: u64,
    /// Samples refused because they could not be encoded (nanoseconds out of range).
    pub invalid: u64,
}

impl AppendCounts {
    /// Samples refused for any reason.
    pub fn refused(&self) -> u64 {
        self.not_newer + self.other_year + self.wrong_type + self.invalid
    }

    fn add(&mut self, o: &AppendCounts) {
        self.written += o.written;
        self.not_newer += o.not_newer;
        self.other_year += o.other_year;
        self.wrong_type += o.wrong_type;
        self.invalid += o.invalid;
    }
}

/// An open PlainPB file being appended to, through any [`FileIo`] (a real file by
/// default).
pub struct PbWriter<F = StdFile> {
    file: F,
    /// The file's length is unknown after a failed rollback: set it back to `len`
    /// before anything else is written.
    rollback_pending: bool,
    path: PathBuf,
    header: PayloadInfo,
    year_start: i64,
    year_end: i64,
    last: Option<Timestamp>,
    len: u64,
    repaired_bytes: u64,
    totals: AppendCounts,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl<F> fmt::Debug for PbWriter<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PbWriter")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("last", &self.last)
            .field("len", &self.len)
            .field("repaired_bytes", &self.repaired_bytes)
            .field("totals", &self.totals)
            .finish_non_exhaustive()
    }
}

/// Wraps an I/O error on the file at `path`.
fn io_error(path: &Path) -> impl Fn(std::io::Error) -> WriteError + Copy + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl PbWriter<StdFile> {
    /// Opens (creating it and its folders if needed) the real file at `path` for samples
    /// of `pv_name` of type `payload_type` in the UTC year `year`.
    pub fn open(
        path: impl Into<PathBuf>,
        pv_name: &str,
        payload_type: PayloadType,
        year: i32,
    ) -> Result<Self, WriteError> {
        let path = path.into();
        let io_err = io_error(&path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        let file = StdFile::open_append(&path, true).map_err(io_err)?;
        PbWriter::from_file(file, path, pv_name, payload_type, year)
    }
}

impl<F: FileIo> PbWriter<F> {
    /// Takes `file` (open for reading and appending; `path` names it in errors) for
    /// samples of `pv_name` of type `payload_type` in the UTC year `year`: an empty file
    /// (or one holding only a torn header) gets a header line; an existing header is
    /// checked; a torn or undecodable tail is cut off.
    pub fn from_file(
        file: F,
        path: impl Into<PathBuf>,
        pv_name: &str,
        payload_type: PayloadType,
        year: i32,
    ) -> Result<Self, WriteError> {
        let path = path.into();
        let io_err = io_error(&path);
        let expected = PayloadInfo::new(payload_type, pv_name, year);
        let mut writer = PbWriter {
            file,
            rollback_pending: false,
            path: path.clone(),
            header: expected.clone(),
            year_start: start_of_year(year),
            year_end: start_of_year(year) + seconds_in_year(year),
            last: None,
            len: 0,
            repaired_bytes: 0,
            totals: AppendCounts::default(),
            buf: Vec::new(),
            scratch: Vec::new(),
        };
        let len = writer.file.len().map_err(io_err)?;
        match read_header(&writer.file, len).map_err(io_err)? {
            None => {
                // Empty, or only a torn header (a crash while creating it): start afresh.
                if len > 0 {
                    writer.file.set_len(0).map_err(io_err)?;
                }
                writer.repaired_bytes = len;
                encode_header_line(&expected, &mut writer.buf);
                writer.write_buf(None)?;
            }
            Some((header_line, header_len)) => {
                let found =
                    decode_header_line(&header_line).map_err(|source| WriteError::BadHeader {
                        path: path.clone(),
                        source,
                    })?;
                if found.pv_name != expected.pv_name
                    || found.payload_type != expected.payload_type
                    || found.year != expected.year
                {
                    return Err(WriteError::HeaderMismatch {
                        path,
                        expected: Box::new(expected),
                        found: Box::new(found),
                    });
                }
                let (end, last) = last_good_line(&writer.file, &found, header_len, len)
                    .map_err(io_err)?
                    .ok_or_else(|| WriteError::Unrepairable { path: path.clone() })?;
                if end < len {
                    writer.file.set_len(end).map_err(io_err)?;
                    writer.repaired_bytes = len - end;
                }
                writer.len = end;
                writer.last = last;
            }
        }
        Ok(writer)
    }

    /// Appends `samples` in one write. Refused samples are counted in the result and
    /// skipped; on an I/O error nothing of this batch stays in the file.
    pub fn append<'a, I>(&mut self, samples: I) -> Result<AppendCounts, WriteError>
    where
        I: IntoIterator<Item = &'a Sample>,
    {
        let mut counts = AppendCounts::default();
        let last_before = self.last;
        self.buf.clear();
        for s in samples {
            if s.value.payload_type() != self.header.payload_type {
                counts.wrong_type += 1;
            } else if s.time.secs < self.year_start || s.time.secs >= self.year_end {
                counts.other_year += 1;
            } else if self.last.is_some_and(|last| s.time <= last) {
                counts.not_newer += 1;
            } else {
                match encode_line(s, self.header.year, &mut self.buf, &mut self.scratch) {
                    Ok(()) => {
                        self.last = Some(s.time);
                        counts.written += 1;
                    }
                    Err(EncodeError::BadNanos(_) | EncodeError::OutsideYear { .. }) => {
                        counts.invalid += 1;
                    }
                }
            }
        }
        self.write_buf(last_before)?;
        self.totals.add(&counts);
        Ok(counts)
    }

    /// Appends already encoded lines (escaped, each ending in a newline) of samples in the
    /// UTC year `year`, copying the accepted ones verbatim. Only their times are decoded,
    /// to refuse (and count) lines not newer than the last one written, as `append` does.
    /// Lines of another year than the file's are all refused; undecodable ones are
    /// counted as invalid.
    pub fn append_lines(&mut self, year: i32, lines: &[u8]) -> Result<AppendCounts, WriteError> {
        let mut counts = AppendCounts::default();
        let last_before = self.last;
        self.buf.clear();
        let mut decoder = LineDecoder::new(self.header.payload_type, year);
        for line in lines.split_inclusive(|b| *b == b'\n') {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            if body.is_empty() {
                continue;
            }
            if year != self.header.year {
                counts.other_year += 1;
                continue;
            }
            match decoder.decode_time(body) {
                Err(_) => counts.invalid += 1,
                Ok(t) if self.last.is_some_and(|last| t <= last) => counts.not_newer += 1,
                Ok(t) => {
                    self.buf.extend_from_slice(body);
                    self.buf.push(b'\n');
                    self.last = Some(t);
                    counts.written += 1;
                }
            }
        }
        self.write_buf(last_before)?;
        self.totals.add(&counts);
        Ok(counts)
    }

    /// Appends `self.buf`; on failure, sets the file back to its previous end and the
    /// last time to `last_before`.
    fn write_buf(&mut self, last_before: Option<Timestamp>) -> Result<(), WriteError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let io_err = |source| WriteError::Io {
            path: self.path.clone(),
            source,
        };
        if self.rollback_pending {
            self.file.set_len(self.len).map_err(|e| {
                self.last = last_before;
                io_err(e)
            })?;
            self.rollback_pending = false;
        }
        if let Err(source) = self.file.append(&self.buf) {
            // Roll back a partial (short) write so the file ends with a complete line.
            self.rollback_pending = self.file.set_len(self.len).is_err();
            self.last = last_before;
            return Err(io_err(source));
        }
        self.len += self.buf.len() as u64;
        Ok(())
    }

    /// Flushes the file's data to the disk (`fdatasync`).
    pub fn sync(&mut self) -> Result<(), WriteError> {
        self.file.sync_data().map_err(|source| WriteError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// The time of the last sample in the file, if any.
    pub fn last_timestamp(&self) -> Option<Timestamp> {
        self.last
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if the file holds only its header.
    pub fn is_empty(&self) -> bool {
        self.last.is_none()
    }

    /// Bytes cut off the end of the file on open (a torn or undecodable tail).
    pub fn repaired_bytes(&self) -> u64 {
        self.repaired_bytes
    }

    /// Counts over all appends since open.
    pub fn totals(&self) -> AppendCounts {
        self.totals
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's header.
    pub fn header(&self) -> &PayloadInfo {
        &self.header
    }

    /// The file, closing the writer.
    pub fn into_file(self) -> F {
        self.file
    }
}

/// The header line (without newline) and the offset after it, or `None` when the file has
/// no complete header line.
fn read_header(file: &impl FileIo, len: u64) -> io::Result<Option<(Vec<u8>, u64)>> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut at = 0;
    while at < len {
        let n = file.read_at(&mut chunk, at)?;
        if n == 0 {
            return Ok(None);
        }
        at += n as u64;
        if let Some(i) = memchr::memchr(b'\n', &chunk[..n]) {
            line.extend_from_slice(&chunk[..i]);
            let header_len = line.len() as u64 + 1;
            return Ok(Some((line, header_len)));
        }
        line.extend_from_slice(&chunk[..n]);
        if line.len() > MAX_HEADER_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "header line longer than 16 MiB",
            ));
        }
    }
    Ok(None)
}

/// Position of the last newline in `[lo, hi)`, reading backwards.
fn rfind_newline(file: &impl FileIo, lo: u64, hi: u64) -> io::Result<Option<u64>> {
    // Sample lines are short: start with a small read (a writer is opened for every
    // flush of every PV) and grow for long waveform lines.
    let mut chunk = vec![0u8; 512];
    let mut end = hi;
    while end > lo {
        let start = end.saturating_sub(chunk.len() as u64).max(lo);
        let n = (end - start) as usize;
        file.read_exact_at(&mut chunk[..n], start)?;
        if let Some(i) = memchr::memrchr(b'\n', &chunk[..n]) {
            return Ok(Some(start + i as u64));
        }
        end = start;
        if chunk.len() < 64 * 1024 {
            chunk.resize(chunk.len() * 4, 0);
        }
    }
    Ok(None)
}

/// The end offset of the last line that decodes (just after its newline) and its time;
/// `None` if more than [`MAX_REPAIR_LINES`] lines at the end do not decode.
fn last_good_line(
    file: &impl FileIo,
    header: &PayloadInfo,
    header_len: u64,
    len: u64,
) -> io::Result<Option<(u64, Option<Timestamp>)>> {
    let mut decoder = LineDecoder::for_header(header);
    let mut sample = Sample::new(Timestamp::default(), Value::zero(header.payload_type));
    // Cut a torn tail: everything after the last newline.
    let mut end = match rfind_newline(file, header_len, len)? {
        Some(nl) => nl + 1,
        None => header_len,
    };
    let mut line = Vec::new();
    for _ in 0..MAX_REPAIR_LINES {
        if end <= header_len {
            return Ok(Some((header_len, None)));
        }
        let start = match rfind_newline(file, header_len, end - 1)? {
            Some(nl) => nl + 1,
            None => header_len,
        };
        let line_len = end - 1 - start;
        if line_len <= MAX_REPAIR_LINE_BYTES {
            line.resize(line_len as usize, 0);
            file.read_exact_at(&mut line, start)?;
            if decoder.decode(&line, &mut sample).is_ok() {
                return Ok(Some((end, Some(sample.time))));
            }
        }
        end = start;
    }
    Ok(None)
}
