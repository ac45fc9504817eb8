//! Reading one PV over a time range (or several) from every source, oldest source first.

use archiver_pb::{PayloadType, Sample, Timestamp};
use archiver_storage::{StorageError, Tier};

use crate::merge::{MergeDedup, Origin};

/// Calls `emit` with the samples of `pv` for `[from, to]` under the Java rule (see
/// [`MergeDedup`]), reading `tiers` in the order given (oldest data first: LTS, MTS, STS)
/// and then `buffer` (the engine's samples not yet written). An error from `emit` stops
/// the reading and is returned (a response whose client has gone, say). Returns how many
/// undecodable lines were skipped in the files.
pub fn for_each_sample<E: From<StorageError>>(
    tiers: &[&Tier],
    pv: &str,
    from: Timestamp,
    to: Timestamp,
    buffer: &[Sample],
    mut sink: impl FnMut(&Sample) -> Result<(), E>,
) -> Result<u64, E> {
    for_each_line(tiers, pv, &[(from, to)], buffer, |s, _| sink(s))
}

/// [`for_each_sample`] with each sample's [`Origin`] (its source stream, and the stored
/// line it was decoded from), over one or more time spans (Java's `timeranges`:
/// ascending, not overlapping; one span is `[from, to]`). Each span is read as Java
/// reads a request's spans, one after the other: every store (its files from the
/// last one at or before the span's start), then the live buffer (from its last sample
/// at or before the span's start to the span's end), through one merge that applies
/// the rule span by span ([`MergeDedup::next_span`]): the value in effect at each
/// span's start (unless already sent), then the span's samples; nothing else of the
/// gaps between spans. Streams are numbered in reading order: one per file of each
/// store (of each span), then the buffer.
///
/// Nothing is allocated per sample: the samples and lines are borrowed from the file
/// readers. An empty `spans` reads nothing.
pub fn for_each_line<E: From<StorageError>>(
    tiers: &[&Tier],
    pv: &str,
    spans: &[(Timestamp, Timestamp)],
    buffer: &[Sample],
    sink: impl FnMut(&Sample, Origin<'_>) -> Result<(), E>,
) -> Result<u64, E> {
    read_lines(tiers, pv, spans, buffer, &mut EachSample(sink))
}

/// What [`read_lines`] hands the merged samples to: one by one, and (when it says it
/// takes them) the stored lines that follow a sample in its file, verbatim, in blocks.
pub(crate) trait LineSink<E> {
    /// A merged sample and its origin.
    fn merged(&mut self, s: &Sample, origin: Origin<'_>) -> Result<(), E>;

    /// Called after [`LineSink::merged`] was given a stored sample that passed the merge
    /// as it is (`origin` is its; `file` is its file's payload type and year): true when
    /// the lines that follow it in its file may be handed over verbatim to
    /// [`LineSink::lines`] instead of one by one.
    fn takes_lines(&mut self, origin: Origin<'_>, file: (PayloadType, i32)) -> bool {
        let _ = (origin, file);
        false
    }

    /// Stored lines (escaped, each ending in its newline) of the file of the sample last
    /// given, following it. A block may end inside a line.
    fn lines(&mut self, bytes: &[u8]) -> Result<(), E> {
        let _ = bytes;
        Ok(())
    }

    /// After the last block of lines of a file (the sink uses up what it holds).
    fn lines_end(&mut self) -> Result<(), E> {
        Ok(())
    }
}

/// A closure taking the samples one by one.
struct EachSample<F>(F);

impl<E, F: FnMut(&Sample, Origin<'_>) -> Result<(), E>> LineSink<E> for EachSample<F> {
    #[inline]
    fn merged(&mut self, s: &Sample, origin: Origin<'_>) -> Result<(), E> {
        (self.0)(s, origin)
    }
}

/// [`for_each_line`] into a [`LineSink`]: when the sink takes the lines after a sample
/// that passed the merge ([`MergeDedup::passed_last`]), the rest of that file up to the
/// span's end is handed over verbatim in blocks, without decoding a line
/// ([`archiver_storage::TierQuery::copy_lines_through`]): Java copies a partition inside
/// the range without looking at its events. That is what the merge would do with them:
/// within one source stream samples pass unchecked, and the file ends the stream.
pub(crate) fn read_lines<E: From<StorageError>>(
    tiers: &[&Tier],
    pv: &str,
    spans: &[(Timestamp, Timestamp)],
    buffer: &[Sample],
    sink: &mut impl LineSink<E>,
) -> Result<u64, E> {
    let Some(first) = spans.first() else {
        return Ok(0);
    };
    let mut merge = MergeDedup::new(first.0, first.1);
    let mut skipped = 0;
    let mut stream: u32 = 0;
    for (k, &(from, to)) in spans.iter().enumerate() {
        if k > 0 {
            merge.next_span(from, to, &mut |s: &Sample, o: Origin<'_>| sink.merged(s, o))?;
        }
        for tier in tiers {
            let mut q = tier.query(pv, from, to)?;
            let base = stream;
            while q.next_sample()?.is_some() {
                let Some(s) = q.current() else { break };
                let origin = Origin {
                    stream: base.saturating_add(q.file_number()),
                    line: Some(q.current_line()),
                    year: q.header().map_or(0, |h| h.year),
                };
                merge.push_from(s, origin, &mut |s: &Sample, o: Origin<'_>| {
                    sink.merged(s, o)
                })?;
                let file = q.header().map(|h| (h.payload_type, h.year));
                if merge.passed_last()
                    && let Some(file) = file
                    && sink.takes_lines(origin, file)
                {
                    let copied = q.copy_lines_through(|b| sink.lines(b))?;
                    sink.lines_end()?;
                    if let Some(last) = copied {
                        merge.passed_through(last);
                    }
                }
            }
            stream = base.saturating_add(q.file_number()).saturating_add(1);
            skipped += q.skipped_lines();
        }
        // The buffer, oldest first: from its last sample at or before `from`.
        let start = buffer.partition_point(|s| s.time <= from).saturating_sub(1);
        let end = buffer.partition_point(|s| s.time <= to);
        let origin = Origin {
            stream,
            line: None,
            year: 0,
        };
        for s in buffer.get(start..end).unwrap_or(&[]) {
            merge.push_from(s, origin, &mut |s: &Sample, o: Origin<'_>| {
                sink.merged(s, o)
            })?;
        }
        stream = stream.saturating_add(1);
    }
    merge.finish_from(&mut |s: &Sample, o: Origin<'_>| sink.merged(s, o))?;
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::time::start_of_year;
    use archiver_pb::{Granularity, PayloadType, Value};

    #[test]
    fn files_then_buffer_without_duplicates() {
        let dir = tempfile::tempdir().expect("tmp");
        let sts = Tier::new("STS", dir.path(), Granularity::Hour);
        let y = start_of_year(2024);
        let s = |k: i64| Sample::new(Timestamp::new(y + k, 0), Value::ScalarDouble(k as f64));
        sts.append("A:B", PayloadType::ScalarDouble, &[s(1), s(2), s(3)])
            .expect("append");
        let buffer = vec![s(3), s(4), s(5)];
        let mut got = Vec::new();
        for_each_sample(
            &[&sts],
            "A:B",
            Timestamp::new(y + 2, 0),
            Timestamp::new(y + 4, 0),
            &buffer,
            |x| {
                got.push(x.time.secs - y);
                Ok::<(), StorageError>(())
            },
        )
        .expect("read");
        assert_eq!(got, vec![2, 3, 4]);
    }

    #[derive(Debug, PartialEq)]
    enum Stop {
        Enough,
        Storage,
    }

    impl From<StorageError> for Stop {
        fn from(_: StorageError) -> Self {
            Stop::Storage
        }
    }

    #[test]
    fn an_error_from_the_sink_stops_the_reading() {
        let dir = tempfile::tempdir().expect("tmp");
        let sts = Tier::new("STS", dir.path(), Granularity::Hour);
        let y = start_of_year(2024);
        let s = |k: i64| Sample::new(Timestamp::new(y + k, 0), Value::ScalarDouble(k as f64));
        let all: Vec<Sample> = (1..100).map(s).collect();
        sts.append("A:B", PayloadType::ScalarDouble, &all)
            .expect("append");
        let mut seen = 0;
        let r = for_each_sample(
            &[&sts],
            "A:B",
            Timestamp::new(y, 0),
            Timestamp::new(y + 1000, 0),
            &[s(100)],
            |_| {
                seen += 1;
                if seen == 10 {
                    Err(Stop::Enough)
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err(Stop::Enough));
        assert_eq!(seen, 10);
    }
}
