//! Reading the samples of a time range from the partitions of one PV.

use std::collections::VecDeque;

use archiver_pb::{PayloadInfo, Sample, Timestamp};

use crate::error::StorageError;
use crate::tier::{FileReader, Partition, Tier};

/// How many partitions before `from` are opened to find the last sample at or before it.
const PARTITIONS_LOOKED_BACK: usize = 3;

/// The samples of one PV in one tier for `[from, to]`, in time order: first the last sample
/// at or before `from` (if any), then every sample in `(from, to]`. Files are read one at a
/// time, through the tier's backend; the current sample is borrowed, not copied. Files
/// without a complete header (empty, or cut by a crash while being created) hold no
/// sample and are skipped.
#[derive(Debug)]
pub struct TierQuery {
    tier: Tier,
    pending: VecDeque<Partition>,
    reader: Option<FileReader>,
    path: std::path::PathBuf,
    to: Timestamp,
    skipped: u64,
    /// Files opened for reading so far (the current one included).
    files: u32,
}

impl TierQuery {
    pub(crate) fn new(
        tier: Tier,
        partitions: Vec<Partition>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Self, StorageError> {
        let mut q = TierQuery {
            tier,
            pending: VecDeque::new(),
            reader: None,
            path: std::path::PathBuf::new(),
            to,
            skipped: 0,
            files: 0,
        };
        // Partitions that can hold the answer: starting no later than `to`.
        let relevant: Vec<Partition> = partitions
            .into_iter()
            .filter(|p| p.start <= to.secs)
            .collect();
        // The newest partition starting at or before `from`.
        let anchor = relevant.iter().rposition(|p| p.start <= from.secs);
        let mut first = 0;
        if let Some(i) = anchor {
            // Look for the last sample at or before `from`, going back a few partitions;
            // without one, start at the first sample after `from` in partition i.
            let oldest = i.saturating_sub(PARTITIONS_LOOKED_BACK - 1);
            let mut at_i = None;
            let mut found_in = None;
            for j in (oldest..=i).rev() {
                let Some(mut reader) = q.tier.open_reader(&relevant[j].path)? else {
                    continue;
                };
                let found = reader
                    .seek_to_last_at_or_before(from)
                    .map_err(|e| q.io(&relevant[j], e))?;
                if found {
                    found_in = Some((j, reader));
                    break;
                }
                if j == i {
                    at_i = Some(reader);
                }
            }
            (q.reader, first) = match found_in {
                Some((j, reader)) => {
                    q.path = relevant[j].path.clone();
                    (Some(reader), j + 1)
                }
                None => {
                    q.path = relevant[i].path.clone();
                    (at_i, i + 1)
                }
            };
        }
        q.files = u32::from(q.reader.is_some());
        q.pending = relevant.into_iter().skip(first).collect();
        Ok(q)
    }

    fn io(&self, p: &Partition, source: std::io::Error) -> StorageError {
        StorageError::Io {
            tier: self.tier.name().to_string(),
            path: p.path.clone(),
            source,
        }
    }

    /// The header of the file being read, if any.
    pub fn header(&self) -> Option<&PayloadInfo> {
        self.reader.as_ref().map(|r| r.header())
    }

    /// Lines skipped because they did not decode, over the files read so far.
    pub fn skipped_lines(&self) -> u64 {
        self.skipped + self.reader.as_ref().map_or(0, |r| r.skipped_lines())
    }

    /// The sample the last [`TierQuery::next_sample`] returned (`None` after the end).
    pub fn current(&self) -> Option<&Sample> {
        self.reader.as_ref().map(|r| r.current())
    }

    /// The escaped bytes (no newline) of the stored line that the last
    /// [`TierQuery::next_sample`] returned: the sample verbatim, as written in its file
    /// (relative to the year of [`TierQuery::header`]). Empty before the first sample.
    pub fn current_line(&self) -> &[u8] {
        self.reader.as_ref().map_or(&[], |r| r.current_line())
    }

    /// The number of the file the last sample came from: 1 for the first file read,
    /// then one more at every file (partition) opened. A response that frames its
    /// sources (pbraw: a chunk per file, as Java's one stream per partition) starts a
    /// new one when it changes.
    pub fn file_number(&self) -> u32 {
        self.files
    }

    /// After a sample of the current file ([`TierQuery::next_sample`]): hands the
    /// following stored lines of that file up to the last one at or before the query's
    /// `to`, verbatim, in blocks, without decoding them
    /// (`archiver_pb::PbReader::copy_lines_through`: Java's copy of a partition inside
    /// the range). Returns the time of the last line handed over, `None` when none was. The query goes on after them (the next sample is in a later
    /// file, or after `to`). Errors: reading the file ([`StorageError::Io`]) or the
    /// sink's, which stops the copy.
    pub fn copy_lines_through<E: From<StorageError>>(
        &mut self,
        sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<Option<Timestamp>, E> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(None);
        };
        reader
            .copy_lines_through(self.to, sink)
            .map_err(|e| match e {
                archiver_pb::CopyError::Sink(e) => e,
                archiver_pb::CopyError::Io(source) => E::from(StorageError::Io {
                    tier: self.tier.name().to_string(),
                    path: self.path.clone(),
                    source,
                }),
            })
    }

    /// The next sample, or `None` after the last one at or before `to`.
    pub fn next_sample(&mut self) -> Result<Option<&Sample>, StorageError> {
        loop {
            let reader = match self.reader.as_mut() {
                Some(r) => r,
                None => {
                    let Some(p) = self.pending.pop_front() else {
                        return Ok(None);
                    };
                    let Some(r) = self.tier.open_reader(&p.path)? else {
                        continue;
                    };
                    self.path = p.path;
                    self.files = self.files.saturating_add(1);
                    self.reader.insert(r)
                }
            };
            let advanced = reader.next_sample().map_err(|source| StorageError::Io {
                tier: self.tier.name().to_string(),
                path: self.path.clone(),
                source,
            })?;
            if advanced.is_some() {
                break;
            }
            self.skipped += reader.skipped_lines();
            self.reader = None;
        }
        if self
            .reader
            .as_ref()
            .is_some_and(|r| r.current().time > self.to)
        {
            self.pending.clear();
            self.reader = None;
            return Ok(None);
        }
        Ok(self.reader.as_ref().map(|r| r.current()))
    }
}
