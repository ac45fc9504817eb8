//! One storage tier: a root folder of PlainPB files at one partition granularity.

use std::path::{Path, PathBuf};

use archiver_pb::path::{PB_EXTENSION, chunk_key};
use archiver_pb::{
    AppendCounts, Granularity, LineDecoder, PayloadType, PbReader, PbWriter, Sample, Timestamp,
};

use crate::error::StorageError;
use crate::query::TierQuery;

/// A storage tier (STS, MTS, LTS...).
#[derive(Debug, Clone)]
pub struct Tier {
    name: String,
    root: PathBuf,
    granularity: Granularity,
}

/// One partition file of a PV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Epoch seconds of the partition's start (inclusive).
    pub start: i64,
    /// Epoch seconds of the partition's end (exclusive).
    pub end: i64,
    /// The file.
    pub path: PathBuf,
}

fn add(total: &mut AppendCounts, c: &AppendCounts) {
    total.written += c.written;
    total.not_newer += c.not_newer;
    total.other_year += c.other_year;
    total.wrong_type += c.wrong_type;
    total.invalid += c.invalid;
}

impl Tier {
    /// A tier named `name` (e.g. `STS`) with files under `root`.
    pub fn new(
        name: impl Into<String>,
        root: impl Into<PathBuf>,
        granularity: Granularity,
    ) -> Self {
        Tier {
            name: name.into(),
            root: root.into(),
            granularity,
        }
    }

    /// The tier's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tier's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The tier's partition granularity.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// The Java-style store URL of this tier, as `PVTypeInfo.dataStores` lists it.
    pub fn url(&self) -> String {
        format!(
            "pb://localhost?name={}&rootFolder={}&partitionGranularity={}",
            self.name,
            self.root.display(),
            self.granularity.url_name()
        )
    }

    fn key(&self, pv: &str) -> Result<String, StorageError> {
        chunk_key(pv).map_err(|source| StorageError::BadName {
            tier: self.name.clone(),
            source,
        })
    }

    /// The file holding the partition of `pv` that contains `secs`.
    pub fn file_for(&self, pv: &str, secs: i64) -> Result<PathBuf, StorageError> {
        let mut key = self.key(pv)?;
        key.push_str(&self.granularity.partition_name(secs));
        key.push_str(PB_EXTENSION);
        Ok(self.root.join(key))
    }

    /// Appends `samples` (in time order) of `pv`, of type `ty`, to their partition files:
    /// one open and one write per partition touched. Samples the files refuse (not newer
    /// than the last stored, wrong type) are counted in the result.
    pub fn append(
        &self,
        pv: &str,
        ty: PayloadType,
        samples: &[Sample],
    ) -> Result<AppendCounts, StorageError> {
        let mut total = AppendCounts::default();
        let mut rest = samples;
        while let Some(first) = rest.first() {
            let end = self.granularity.partition_end(first.time.secs);
            let n = rest
                .iter()
                .position(|s| s.time.secs >= end || s.time.secs < first.time.secs)
                .unwrap_or(rest.len())
                .max(1);
            let (batch, tail) = rest.split_at(n);
            rest = tail;
            let c = self.write_partition(pv, ty, first.time.secs, first.time.year(), |w| {
                w.append(batch)
            })?;
            add(&mut total, &c);
        }
        Ok(total)
    }

    /// Appends already encoded lines (escaped, newline-terminated) of samples of `pv` of
    /// type `ty` in the UTC year `year`, in time order, to their partition files, copying
    /// them verbatim (see [`PbWriter::append_lines`]).
    pub fn append_lines(
        &self,
        pv: &str,
        ty: PayloadType,
        year: i32,
        lines: &[u8],
    ) -> Result<AppendCounts, StorageError> {
        let mut total = AppendCounts::default();
        let mut decoder = LineDecoder::new(ty, year);
        // Cut the lines into runs of one partition each (by the time of each line).
        let mut run_start = 0;
        // (seconds of the run's first line, end of its partition)
        let mut run_partition: Option<(i64, i64)> = None;
        let mut pos = 0;
        let flush = |from: usize, to: usize, secs: i64, total: &mut AppendCounts| {
            if from < to {
                let c = self.write_partition(pv, ty, secs, year, |w| {
                    w.append_lines(year, &lines[from..to])
                })?;
                add(total, &c);
            }
            Ok::<(), StorageError>(())
        };
        while pos < lines.len() {
            let end = lines[pos..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(lines.len(), |i| pos + i + 1);
            let body = &lines[pos..end];
            let body = body.strip_suffix(b"\n").unwrap_or(body);
            if let Ok(t) = decoder.decode_time(body) {
                let same = run_partition.is_some_and(|(first, pend)| {
                    t.secs < pend && t.secs >= self.granularity.partition_start(first)
                });
                if !same {
                    if let Some((first, _)) = run_partition {
                        flush(run_start, pos, first, &mut total)?;
                    }
                    run_start = pos;
                    run_partition = Some((t.secs, self.granularity.partition_end(t.secs)));
                }
            } else if run_partition.is_none() {
                // Inside a run the file writer counts it; before any run, nobody else does.
                total.invalid += 1;
            }
            pos = end;
        }
        if let Some((first, _)) = run_partition {
            flush(run_start, lines.len(), first, &mut total)?;
        }
        Ok(total)
    }

    /// Opens the file of the partition of `pv` holding `secs` (a file of `year`) and runs
    /// `append` on it.
    fn write_partition(
        &self,
        pv: &str,
        ty: PayloadType,
        secs: i64,
        year: i32,
        append: impl FnOnce(&mut PbWriter) -> Result<AppendCounts, archiver_pb::WriteError>,
    ) -> Result<AppendCounts, StorageError> {
        let path = self.file_for(pv, secs)?;
        PbWriter::open(&path, pv, ty, year)
            .and_then(|mut w| append(&mut w))
            .map_err(|source| StorageError::Write {
                tier: self.name.clone(),
                source,
            })
    }

    /// The partitions of `pv` in this tier, oldest first, from the files in its folder.
    /// Files whose names do not parse at this granularity are ignored, as in Java.
    pub fn partitions(&self, pv: &str) -> Result<Vec<Partition>, StorageError> {
        let key = self.key(pv)?;
        let (dir, prefix) = match key.rfind('/') {
            Some(i) => (self.root.join(&key[..i]), &key[i + 1..]),
            None => (self.root.clone(), key.as_str()),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StorageError::Io {
                    tier: self.name.clone(),
                    path: dir,
                    source,
                });
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StorageError::Io {
                tier: self.name.clone(),
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(partition) = name
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(PB_EXTENSION))
            else {
                continue;
            };
            if let Ok(start) = self.granularity.parse_partition_name(partition) {
                out.push(Partition {
                    start,
                    end: self.granularity.partition_end(start),
                    path: entry.path(),
                });
            }
        }
        out.sort_by_key(|p| p.start);
        Ok(out)
    }

    /// The time of the newest sample of `pv` in this tier, if any (looks at the newest
    /// few partitions, skipping empty ones).
    pub fn last_time(&self, pv: &str) -> Result<Option<Timestamp>, StorageError> {
        let far = Timestamp::new(i64::MAX / 4, 0);
        for p in self.partitions(pv)?.iter().rev().take(3) {
            let mut r = PbReader::open(&p.path).map_err(|source| StorageError::Read {
                tier: self.name.clone(),
                path: p.path.clone(),
                source,
            })?;
            let io = |source| StorageError::Io {
                tier: self.name.clone(),
                path: p.path.clone(),
                source,
            };
            if r.seek_to_last_at_or_before(far).map_err(io)?
                && let Some(s) = r.next_sample().map_err(io)?
            {
                return Ok(Some(s.time));
            }
        }
        Ok(None)
    }

    /// A query over `[from, to]`: see [`TierQuery`].
    pub fn query(
        &self,
        pv: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<TierQuery, StorageError> {
        TierQuery::new(self.name.clone(), self.partitions(pv)?, from, to)
    }
}
