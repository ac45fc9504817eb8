//! The write-ahead journal: every sample the engine buffers, appended in batches to one
//! sequential file for all PVs, so that a crash (kill -9, power loss) loses only what had
//! not reached the journal, not the write period's worth of buffered samples the Java
//! appliance loses. Not a Java format: a journal is this archiver's own, read only by
//! [`replay`] at the next start.
//!
//! # Files
//!
//! A journal is a folder of segments, `<16 decimal digits>.journal`, numbered from 1 in the
//! order written. A segment starts with the 8 bytes [`MAGIC`], then frames:
//!
//! ```text
//! frame   = payload length (u32 LE) | CRC-32 of the payload (u32 LE) | payload
//! payload = record*
//! record  = b'P' | id (u32 LE) | name length (u16 LE) | name (UTF-8)         a PV's id
//!         | b'S' | id (u32 LE) | payload type (u8) | year (i32 LE)
//!                | line length (u32 LE) | line                              one sample
//! ```
//!
//! A line is the sample's PlainPB line exactly as it goes into the partition file (escaped,
//! newline-terminated, time relative to `year`; see `archiver_pb::codec`). A PV's id is
//! declared (`P`) in a segment before its first sample there, so each segment reads on its
//! own. A crash can leave the last frame torn (short, or its CRC wrong): reading stops
//! there; everything before it is intact.
//!
//! # Replay and trimming
//!
//! [`replay`] appends each segment's samples, PV by PV in order, to the short-term store
//! through the same all-or-nothing append as the engine's writer. A partition file refuses
//! a sample not newer than its last one, so samples the writer had stored before the crash
//! are refused (counted in [`ReplayReport::already_stored`]), never stored twice. Then the
//! store's filesystem is synced and the segments are removed.
//!
//! While running, the engine removes a segment once none of its samples is only in memory
//! (each PV's buffer remembers the segment of its oldest unwritten sample) and the store's
//! filesystem has been synced after those writes: a removed segment's samples are durable
//! in their partition files.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use archiver_pb::{PayloadType, Timestamp};

use crate::error::StorageError;
use crate::tier::Tier;

/// The first 8 bytes of every segment.
pub const MAGIC: &[u8; 8] = b"ARCJRNL1";

/// Record tag: a PV's id and name.
const TAG_PV: u8 = b'P';
/// Record tag: one sample of a declared PV.
const TAG_SAMPLE: u8 = b'S';
/// Bytes of a frame's header (length and CRC).
const FRAME_HEADER: usize = 8;
/// Frames larger than this are taken for garbage (a torn length) when reading.
pub const MAX_FRAME: usize = 256 * 1024 * 1024;

/// Errors of the journal's files.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An operation on a journal file or its folder failed.
    #[error("journal {}: {action}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was tried ("create the folder", "write", "sync"...).
        action: &'static str,
        /// Why.
        source: io::Error,
    },
    /// Syncing the store the samples were replayed into failed: the segments are kept.
    #[error("journal: the replayed samples could not be made durable, segments kept: {0}")]
    Store(#[from] StorageError),
    /// A segment does not start with [`MAGIC`].
    #[error("journal {}: not a journal segment (its first bytes are not {MAGIC:?})", path.display())]
    NotASegment {
        /// The file.
        path: PathBuf,
    },
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Appends records to a frame's payload. The engine keeps one, under a lock, and hands
/// its bytes to the writer thread in batches; no allocation once it has grown to a batch's
/// size.
#[derive(Debug, Default)]
pub struct RecordBuf {
    bytes: Vec<u8>,
}

impl RecordBuf {
    /// Declares `id` as the PV `name` (names longer than 65,535 bytes are cut there; PV
    /// names are far shorter).
    pub fn declare(&mut self, id: u32, name: &str) {
        let name = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
        self.bytes.push(TAG_PV);
        self.bytes.extend_from_slice(&id.to_le_bytes());
        self.bytes
            .extend_from_slice(&(name.len() as u16).to_le_bytes());
        self.bytes.extend_from_slice(name);
    }

    /// Records one sample of PV `id`: its encoded `line` (newline-terminated) of type `ty`
    /// in the UTC year `year`.
    pub fn sample(&mut self, id: u32, ty: PayloadType, year: i32, line: &[u8]) {
        self.bytes.push(TAG_SAMPLE);
        self.bytes.extend_from_slice(&id.to_le_bytes());
        self.bytes.push(ty.number());
        self.bytes.extend_from_slice(&year.to_le_bytes());
        self.bytes
            .extend_from_slice(&(line.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(line);
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The records held.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }
}

/// The path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.journal"))
}

/// The segments in `dir`, oldest first: (number, path, length). An absent folder has none.
///
/// # Errors
///
/// [`JournalError::Io`] if the folder cannot be listed.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf, u64)>, JournalError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir, "list the folder")(e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(io_err(dir, "list the folder"))?;
        let name = e.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".journal"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        out.push((seq, e.path(), len));
    }
    out.sort_by_key(|s| s.0);
    Ok(out)
}

/// An open segment being appended to.
#[derive(Debug)]
pub struct SegmentWriter {
    file: File,
    path: PathBuf,
    seq: u64,
    len: u64,
}

impl SegmentWriter {
    /// Creates segment `seq` in `dir` (which must exist), writes its [`MAGIC`] and syncs
    /// the folder, so that the new name survives a power loss.
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] naming the file.
    pub fn create(dir: &Path, seq: u64) -> Result<SegmentWriter, JournalError> {
        let path = segment_path(dir, seq);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path, "create"))?;
        file.write_all(MAGIC).map_err(io_err(&path, "write"))?;
        sync_dir(dir)?;
        Ok(SegmentWriter {
            file,
            path,
            seq,
            len: MAGIC.len() as u64,
        })
    }

    /// The segment's number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when only the magic is written.
    pub fn is_empty(&self) -> bool {
        self.len <= MAGIC.len() as u64
    }

    /// Appends `payload` as one frame (one `write` of header and payload together when it
    /// fits `scratch`'s capacity). A failed write is cut back to the frame's start, so the
    /// segment still ends with a whole frame; if even that fails, the error says so and
    /// the caller must not append to this segment again.
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] naming the file (`ENOSPC` included).
    pub fn append_frame(
        &mut self,
        payload: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Result<(), JournalError> {
        if payload.is_empty() {
            return Ok(());
        }
        scratch.clear();
        scratch.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        scratch.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        scratch.extend_from_slice(payload);
        match self.file.write_all(scratch) {
            Ok(()) => {
                self.len += scratch.len() as u64;
                Ok(())
            }
            Err(e) => {
                let cut = self.file.set_len(self.len);
                let action = if cut.is_ok() {
                    "write (the frame was cut off again)"
                } else {
                    "write (the torn frame could not be cut off: segment closed)"
                };
                Err(JournalError::Io {
                    path: self.path.clone(),
                    action,
                    source: e,
                })
            }
        }
    }

    /// Makes what was appended durable (`fdatasync`).
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] naming the file.
    pub fn sync(&self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(io_err(&self.path, "sync"))
    }
}

/// `fsync` of the folder `dir`.
fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "sync the folder"))
}

/// One record read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// `id` is the PV `name` in this segment.
    Pv {
        /// The PV's id in this segment.
        id: u32,
        /// Its name.
        name: &'a str,
    },
    /// A sample of PV `id`.
    Sample {
        /// The PV's id.
        id: u32,
        /// The payload type of its partition files.
        ty: PayloadType,
        /// The UTC year its line's time is relative to.
        year: i32,
        /// The encoded line, newline-terminated.
        line: &'a [u8],
    },
}

/// The records of one segment's bytes, in order; stops at the first torn or damaged frame
/// ([`SegmentRecords::torn_at`] says where).
#[derive(Debug)]
pub struct SegmentRecords<'a> {
    bytes: &'a [u8],
    /// Offset of the next frame.
    next_frame: usize,
    /// The current frame's unread records.
    frame: &'a [u8],
    torn_at: Option<usize>,
    /// The frame reading stopped at was whole but damaged (its CRC or records wrong), not
    /// cut short by the end of the file.
    damaged: bool,
}

impl<'a> SegmentRecords<'a> {
    /// Reads `bytes`, a whole segment.
    ///
    /// # Errors
    ///
    /// `None` if `bytes` does not start with [`MAGIC`].
    pub fn new(bytes: &'a [u8]) -> Option<SegmentRecords<'a>> {
        bytes.starts_with(MAGIC).then_some(SegmentRecords {
            bytes,
            next_frame: MAGIC.len(),
            frame: &[],
            torn_at: None,
            damaged: false,
        })
    }

    /// True when reading stopped at a whole frame that is damaged (a bad CRC, records that
    /// do not parse): bytes in the middle of the segment changed, not a crash mid-write.
    pub fn damaged(&self) -> bool {
        self.damaged
    }

    /// The byte offset of a torn or damaged frame reading stopped at, if any (`None` also
    /// while reading is not finished).
    pub fn torn_at(&self) -> Option<usize> {
        self.torn_at
    }

    /// The next frame's payload, or `None` at the end or at a bad frame.
    fn next_frame(&mut self) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.next_frame..)?;
        if rest.is_empty() {
            return None;
        }
        let header = rest.get(..FRAME_HEADER);
        let frame = header.and_then(|h| {
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let payload = rest.get(FRAME_HEADER..FRAME_HEADER.checked_add(len)?)?;
            (len <= MAX_FRAME && crc32fast::hash(payload) == crc).then_some(payload)
        });
        match frame {
            Some(p) => {
                self.next_frame += FRAME_HEADER + p.len();
                Some(p)
            }
            None => {
                // Whole but wrong (vs. running past the end: the frame being written at a
                // crash).
                self.damaged = header.is_some_and(|h| {
                    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
                    len <= MAX_FRAME && FRAME_HEADER + len <= rest.len()
                });
                self.torn_at = Some(self.next_frame);
                self.next_frame = self.bytes.len();
                None
            }
        }
    }
}

/// Splits `n` bytes off the front of `b`.
fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Some(head)
}

fn take_u32(b: &mut &[u8]) -> Option<u32> {
    take(b, 4).map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

impl<'a> Iterator for SegmentRecords<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        loop {
            if self.frame.is_empty() {
                self.frame = self.next_frame()?;
                continue;
            }
            let at = self.next_frame;
            let mut b = self.frame;
            let record = (|| {
                let tag = *take(&mut b, 1)?.first()?;
                let id = take_u32(&mut b)?;
                match tag {
                    TAG_PV => {
                        let n = take(&mut b, 2).map(|x| u16::from_le_bytes([x[0], x[1]]))?;
                        let name = std::str::from_utf8(take(&mut b, n as usize)?).ok()?;
                        Some(Record::Pv { id, name })
                    }
                    TAG_SAMPLE => {
                        let ty = PayloadType::from_number(i64::from(*take(&mut b, 1)?.first()?))?;
                        let year = take_u32(&mut b)? as i32;
                        let n = take_u32(&mut b)? as usize;
                        let line = take(&mut b, n)?;
                        Some(Record::Sample { id, ty, year, line })
                    }
                    _ => None,
                }
            })();
            match record {
                Some(r) => {
                    self.frame = b;
                    return Some(r);
                }
                // A frame whose CRC matched but whose records do not parse: written by
                // something else. Stop, as at a torn frame.
                None => {
                    self.damaged = true;
                    self.torn_at = Some(at);
                    self.frame = &[];
                    self.next_frame = self.bytes.len();
                    return None;
                }
            }
        }
    }
}

/// What [`replay`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Segments read (and removed).
    pub segments: u64,
    /// Samples read from them.
    pub samples: u64,
    /// Samples appended to the store: what the crash would otherwise have lost.
    pub written: u64,
    /// Samples not newer than the PV's newest stored sample (the writer had stored them
    /// before the crash; ETL may have moved them on since).
    pub already_stored: u64,
    /// Samples of PVs the catalogue no longer holds (deleted before the crash), left out.
    pub not_archived: u64,
    /// Samples whose append failed (an I/O error, logged); their segment is kept for the
    /// next start.
    pub failed: u64,
    /// Samples the partition files refused for good (another type since a changeTypeForPV,
    /// a time outside the line's year, a PV declared nowhere): left out, logged.
    pub refused: u64,
    /// Segments that were not journal segments (renamed `<name>.unreadable`, logged).
    pub unreadable: u64,
    /// PVs with samples written.
    pub pvs: u64,
    /// Segments that ended in a torn or damaged frame (expected once after a crash: the
    /// frame being written).
    pub torn: u64,
}

/// Replays every segment in `dir` into `sts`, then syncs `sts`'s filesystem and removes
/// the segments replayed; returns what it did and the number the next segment should
/// take. `newest_stored(pv)` is `None` for a PV the catalogue no longer holds (deleted
/// before the crash: its samples are left out), else the time of its newest sample in any
/// store (samples not newer are left out: stored before the crash, perhaps moved on by
/// ETL since). A segment some of whose samples could not be appended (logged, counted in
/// [`ReplayReport::failed`]) is kept, to be replayed again at the next start.
///
/// # Errors
///
/// [`JournalError`] if the folder cannot be listed or a segment read or removed;
/// [`StorageError`] failures of single PVs are counted, not returned.
pub fn replay(
    dir: &Path,
    sts: &Tier,
    newest_stored: &dyn Fn(&str) -> Option<Option<Timestamp>>,
) -> Result<(ReplayReport, u64), JournalError> {
    let mut report = ReplayReport::default();
    let segs = segments(dir)?;
    let next_seq = segs.last().map_or(1, |s| s.0 + 1);
    let mut done = Vec::new();
    let mut bytes = Vec::new();
    for (_, path, _) in &segs {
        bytes.clear();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_err(path, "read"))?;
        let Some(mut records) = SegmentRecords::new(&bytes) else {
            if bytes.len() < MAGIC.len() {
                // Created, then the crash came before its magic was written: empty.
                done.push(path.clone());
                continue;
            }
            // Not ours (or its first bytes damaged): set aside for the operator, never
            // replayed nor removed, and never a reason not to start.
            let aside = path.with_extension("journal.unreadable");
            tracing::error!(
                segment = %path.display(),
                "journal: {}; renamed to {} and left out",
                JournalError::NotASegment { path: path.clone() },
                aside.display()
            );
            std::fs::rename(path, &aside).map_err(io_err(path, "rename aside"))?;
            report.unreadable += 1;
            continue;
        };
        report.segments += 1;
        let failed_before = report.failed;
        replay_segment(&mut records, sts, newest_stored, &mut report);
        if let Some(at) = records.torn_at() {
            report.torn += 1;
            if records.damaged() {
                // Not a crash mid-write: the bytes after it are kept for the operator.
                let aside = path.with_extension("journal.damaged");
                tracing::warn!(
                    segment = %path.display(),
                    "journal: a damaged frame at byte {at} of {} (bytes changed on disk, \
                     not a crash mid-write): what precedes it is replayed, the {} bytes from \
                     it on are unreadable; the segment is kept as {}",
                    bytes.len(),
                    bytes.len() - at,
                    aside.display()
                );
                if report.failed == failed_before {
                    std::fs::rename(path, &aside).map_err(io_err(path, "rename aside"))?;
                    report.unreadable += 1;
                }
                continue;
            }
            tracing::info!(
                segment = %path.display(),
                "journal: segment ends in a torn frame at byte {at} (the frame being \
                 written at the crash); what precedes it is replayed"
            );
        }
        if report.failed == failed_before {
            done.push(path.clone());
        }
    }
    if !done.is_empty() {
        // The replayed samples are durable before their journal goes.
        sts.sync_filesystem()?;
        for p in &done {
            std::fs::remove_file(p).map_err(io_err(p, "remove"))?;
        }
        sync_dir(dir)?;
    }
    Ok((report, next_seq))
}

/// Splits off the lines (of type `ty` in `year`, in time order) at the front of `lines`
/// that are not newer than `newest`: (how many, the rest). A line whose time cannot be
/// decoded is kept (the append refuses it, counted).
fn split_not_newer(
    ty: PayloadType,
    year: i32,
    lines: &[u8],
    newest: Option<Timestamp>,
) -> (u64, &[u8]) {
    let Some(newest) = newest else {
        return (0, lines);
    };
    let mut decoder = archiver_pb::LineDecoder::new(ty, year);
    let (mut at, mut older) = (0, 0);
    while let Some(len) = memchr::memchr(b'\n', &lines[at..]) {
        match decoder.decode_time(&lines[at..at + len]) {
            Ok(t) if t <= newest => {
                older += 1;
                at += len + 1;
            }
            _ => break,
        }
    }
    (older, &lines[at..])
}

/// One PV's samples of a segment: runs of lines of one type and year, in order.
#[derive(Default)]
struct PvLines {
    runs: Vec<(PayloadType, i32, Vec<u8>, u64)>,
}

fn replay_segment(
    records: &mut SegmentRecords<'_>,
    sts: &Tier,
    newest_stored: &dyn Fn(&str) -> Option<Option<Timestamp>>,
    report: &mut ReplayReport,
) {
    let mut names: HashMap<u32, &str> = HashMap::new();
    let mut by_pv: HashMap<&str, PvLines> = HashMap::new();
    let mut unknown_ids = 0u64;
    for r in records.by_ref() {
        match r {
            Record::Pv { id, name } => {
                names.insert(id, name);
            }
            Record::Sample { id, ty, year, line } => {
                report.samples += 1;
                let Some(name) = names.get(&id) else {
                    unknown_ids += 1;
                    continue;
                };
                let pv = by_pv.entry(name).or_default();
                match pv.runs.last_mut() {
                    Some(run) if run.0 == ty && run.1 == year => {
                        run.2.extend_from_slice(line);
                        run.3 += 1;
                    }
                    _ => pv.runs.push((ty, year, line.to_vec(), 1)),
                }
            }
        }
    }
    if unknown_ids > 0 {
        tracing::warn!("journal: {unknown_ids} samples of undeclared PVs left out");
        report.refused += unknown_ids;
    }
    for (name, pv) in by_pv {
        let n: u64 = pv.runs.iter().map(|r| r.3).sum();
        let Some(newest) = newest_stored(name) else {
            report.not_archived += n;
            continue;
        };
        let mut wrote = false;
        let result: Result<(), StorageError> = (|| {
            let lock = sts.lock_pv(name)?;
            for (ty, year, lines, _) in &pv.runs {
                let (older, lines) = split_not_newer(*ty, *year, lines, newest);
                report.already_stored += older;
                if lines.is_empty() {
                    continue;
                }
                let c = sts.append_lines_locked(&lock, *ty, *year, lines)?;
                report.written += c.written;
                report.already_stored += c.not_newer;
                // Refused for another reason (another type, another year...): as the
                // writer does, counted and left out; they could never be written.
                let refused = c.refused() - c.not_newer;
                if refused > 0 {
                    tracing::warn!(
                        pv = name,
                        "journal: {refused} samples refused by the partition files (of \
                         another type or year than the file's), left out"
                    );
                }
                report.refused += refused;
                wrote |= c.written > 0;
            }
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(
                pv = name,
                "journal: replay failed, kept for the next start: {e}"
            );
            report.failed += n;
        }
        report.pvs += u64::from(wrote);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(k: u8) -> Vec<u8> {
        vec![b'a' + k, b'\n']
    }

    /// A segment with samples 1..=n (seconds after 1_700_000_000) of each PV.
    fn segment_of(dir: &Path, seq: u64, pvs: &[(&str, i64)]) {
        let mut w = SegmentWriter::create(dir, seq).expect("create");
        let mut buf = RecordBuf::default();
        let (mut line, mut scratch) = (Vec::new(), Vec::new());
        for (id, (pv, n)) in pvs.iter().enumerate() {
            buf.declare(id as u32, pv);
            for k in 1..=*n {
                let s = archiver_pb::Sample::new(
                    Timestamp::new(1_700_000_000 + k, 0),
                    archiver_pb::Value::ScalarDouble(k as f64),
                );
                line.clear();
                archiver_pb::codec::encode_line(&s, 2023, &mut line, &mut scratch).expect("encode");
                buf.sample(id as u32, PayloadType::ScalarDouble, 2023, &line);
            }
        }
        w.append_frame(buf.as_bytes(), &mut scratch).expect("frame");
    }

    /// Replay writes what the stores do not hold, leaves out what they do (even when it is
    /// in another store: `newest_stored`) and the samples of deleted PVs, removes the
    /// segments; a segment whose samples cannot be written is kept for the next start.
    #[test]
    fn replay_writes_only_what_is_missing_and_keeps_a_segment_it_could_not_write() {
        let dir = tempfile::tempdir().expect("tmp");
        let jdir = dir.path().join("journal");
        std::fs::create_dir_all(&jdir).expect("mkdir");
        segment_of(&jdir, 3, &[("A:OLD", 5), ("B:DELETED", 2), ("C:NEW", 4)]);
        let sts = Tier::new(
            "STS",
            dir.path().join("sts"),
            archiver_pb::Granularity::Hour,
        );
        let newest = |pv: &str| match pv {
            "A:OLD" => Some(Some(Timestamp::new(1_700_000_002, 0))),
            "B:DELETED" => None,
            _ => Some(None),
        };
        let (r, next) = replay(&jdir, &sts, &newest).expect("replay");
        assert_eq!(next, 4);
        assert_eq!(
            (
                r.samples,
                r.written,
                r.already_stored,
                r.not_archived,
                r.failed,
                r.pvs
            ),
            (11, 3 + 4, 2, 2, 0, 2),
            "{r:?}"
        );
        assert_eq!(
            sts.last_time("A:OLD").expect("read"),
            Some(Timestamp::new(1_700_000_005, 0))
        );
        assert_eq!(sts.last_time("B:DELETED").expect("read"), None);
        assert!(segments(&jdir).expect("list").is_empty());
        // Replayed twice (a crash during the first replay): nothing stored twice.
        segment_of(&jdir, 4, &[("C:NEW", 4)]);
        let (r, _) = replay(&jdir, &sts, &|_| Some(None)).expect("replay");
        assert_eq!((r.written, r.already_stored), (0, 4), "{r:?}");

        // A file that is no segment: set aside, the others replayed.
        std::fs::write(segment_path(&jdir, 6), b"garbage, not a journal").expect("write");
        segment_of(&jdir, 7, &[("E:Y", 2)]);
        let (r, next) = replay(&jdir, &sts, &|_| Some(None)).expect("replay");
        assert_eq!((r.unreadable, r.written, next), (1, 2, 8), "{r:?}");
        assert!(jdir.join("0000000000000006.journal.unreadable").exists());
        assert!(segments(&jdir).expect("list").is_empty());

        // A store that cannot be written: counted, the segment kept.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"a file").expect("write");
        let bad = Tier::new("STS", blocker.join("sts"), archiver_pb::Granularity::Hour);
        segment_of(&jdir, 5, &[("D:X", 3)]);
        let (r, _) = replay(&jdir, &bad, &|_| Some(None)).expect("replay");
        assert_eq!((r.written, r.failed), (0, 3), "{r:?}");
        assert_eq!(
            segments(&jdir).expect("list").len(),
            1,
            "kept for the next start"
        );
    }

    /// Found by a fresh-user test: a byte changed in the middle of a segment was reported
    /// as the torn frame of a crash and the segment, with the samples after it, deleted.
    #[test]
    fn a_damaged_frame_mid_segment_was_taken_for_a_torn_tail_and_deleted() {
        let dir = tempfile::tempdir().expect("tmp");
        let jdir = dir.path().join("journal");
        std::fs::create_dir_all(&jdir).expect("mkdir");
        segment_of(&jdir, 1, &[("A:ONE", 3)]);
        let path = segment_path(&jdir, 1);
        let mut bytes = std::fs::read(&path).expect("read");
        let whole = bytes.clone();
        // A second frame after the first, then a byte of the first frame's payload changed.
        bytes.extend_from_slice(&whole[MAGIC.len()..]);
        bytes[MAGIC.len() + FRAME_HEADER + 3] ^= 0x40;
        std::fs::write(&path, &bytes).expect("write");
        let sts = Tier::new(
            "STS",
            dir.path().join("sts"),
            archiver_pb::Granularity::Hour,
        );
        let (r, _) = replay(&jdir, &sts, &|_| Some(None)).expect("replay");
        assert_eq!((r.torn, r.unreadable), (1, 1), "{r:?}");
        assert!(
            jdir.join("0000000000000001.journal.damaged").exists(),
            "kept for the operator"
        );
    }

    #[test]
    fn records_read_back_in_order_and_a_torn_tail_stops_reading() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut w = SegmentWriter::create(dir.path(), 7).expect("create");
        let mut buf = RecordBuf::default();
        let mut scratch = Vec::new();
        buf.declare(1, "A:B");
        buf.sample(1, PayloadType::ScalarDouble, 2026, &line(0));
        w.append_frame(buf.as_bytes(), &mut scratch).expect("frame");
        buf.clear();
        buf.sample(1, PayloadType::ScalarDouble, 2027, &line(1));
        w.append_frame(buf.as_bytes(), &mut scratch).expect("frame");
        let good = w.len();
        buf.clear();
        buf.sample(1, PayloadType::ScalarDouble, 2027, &line(2));
        w.append_frame(buf.as_bytes(), &mut scratch).expect("frame");
        let path = segment_path(dir.path(), 7);
        assert_eq!(segments(dir.path()).expect("list")[0].0, 7);
        // A torn last frame: one byte short.
        let full = std::fs::read(&path).expect("read");
        let torn = &full[..full.len() - 1];
        let mut r = SegmentRecords::new(torn).expect("magic");
        let got: Vec<_> = r.by_ref().collect();
        assert_eq!(
            got,
            vec![
                Record::Pv { id: 1, name: "A:B" },
                Record::Sample {
                    id: 1,
                    ty: PayloadType::ScalarDouble,
                    year: 2026,
                    line: b"a\n"
                },
                Record::Sample {
                    id: 1,
                    ty: PayloadType::ScalarDouble,
                    year: 2027,
                    line: b"b\n"
                },
            ]
        );
        assert_eq!(r.torn_at(), Some(good as usize));
        // A flipped bit in a payload: its CRC fails, reading stops at that frame.
        let mut bad = full.clone();
        bad[MAGIC.len() + FRAME_HEADER + 2] ^= 1;
        let mut r = SegmentRecords::new(&bad).expect("magic");
        assert_eq!(r.by_ref().count(), 0);
        assert_eq!(r.torn_at(), Some(MAGIC.len()));
        assert!(
            r.damaged(),
            "a whole frame with a bad CRC is damage, not a torn tail"
        );
        let mut r = SegmentRecords::new(torn).expect("magic");
        r.by_ref().count();
        assert!(
            !r.damaged(),
            "a frame cut by the end of the file is a torn tail"
        );
        assert!(SegmentRecords::new(b"garbage!").is_none());
    }
}
