//! Reading on one thread, post-processing and encoding on another: the two halves of a
//! PV's production, overlapped. The reading half (files, decoding, the Java merge) hands
//! the merged samples over in batches; the other half runs the post-processor and the
//! encoder as [`crate::Producer`] does inline. Used for numeric scalar PVs, whose samples
//! copy without allocating (a sample carrying field values, rare, copies its fields):
//! on a year of 1 Hz data each half is about half of the work, so a request takes about
//! half the time on two cores. Hand-written rather than a library's: it is two threads,
//! two bounded channels of recycled batches, and the error rules below.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use archiver_pb::{Sample, Timestamp};
use archiver_storage::Tier;

use crate::collect::for_each_line;
use crate::error::RetrievalError;
use crate::merge::Origin;

/// Samples per batch.
const BATCH: usize = 4096;

/// Batches in circulation: one filling, one being consumed, one waiting.
const BATCHES: usize = 3;

/// Where a batched sample came from ([`Origin`] with its line as a range of the batch's
/// line bytes).
#[derive(Debug, Clone, Copy)]
struct BatchOrigin {
    stream: u32,
    line: Option<(usize, usize)>,
    year: i32,
}

/// Merged samples with their origins; reused (cleared) once consumed.
#[derive(Debug, Default)]
struct Batch {
    samples: Vec<Sample>,
    origins: Vec<BatchOrigin>,
    lines: Vec<u8>,
}

impl Batch {
    fn with_capacity(n: usize) -> Self {
        Batch {
            samples: Vec::with_capacity(n),
            origins: Vec::with_capacity(n),
            lines: Vec::new(),
        }
    }

    /// Copies a sample in, reusing the allocation of the sample that held its slot
    /// before (`clone_from`), and its stored line when `keep_lines`.
    fn push(&mut self, s: &Sample, origin: Origin<'_>, keep_lines: bool) {
        let line = match origin.line {
            Some(l) if keep_lines => {
                let start = self.lines.len();
                self.lines.extend_from_slice(l);
                Some((start, l.len()))
            }
            _ => None,
        };
        self.origins.push(BatchOrigin {
            stream: origin.stream,
            line,
            year: origin.year,
        });
        let n = self.origins.len();
        if self.samples.len() >= n {
            self.samples[n - 1].clone_from(s);
        } else {
            self.samples.push(s.clone());
        }
    }

    fn len(&self) -> usize {
        self.origins.len()
    }

    /// Empties the batch; the samples stay allocated, to be overwritten.
    fn clear(&mut self) {
        self.origins.clear();
        self.lines.clear();
    }

    fn origin(&self, i: usize) -> Origin<'_> {
        let o = self.origins[i];
        Origin {
            stream: o.stream,
            line: o
                .line
                .and_then(|(start, len)| self.lines.get(start..start + len)),
            year: o.year,
        }
    }
}

/// [`for_each_line`] with the reading on a second thread: `consume` gets every merged
/// sample, in order, on the calling thread. `keep_lines`: the stored lines are copied
/// along (for a response that copies them, pbraw). Returns the lines skipped as
/// undecodable. Errors: the reading's (storage) or `consume`'s, whichever stopped the work
/// first; a panic of the reading thread is resumed here.
pub(crate) fn for_each_line_pipelined(
    tiers: &[&Tier],
    pv: &str,
    spans: &[(Timestamp, Timestamp)],
    buffer: &[Sample],
    keep_lines: bool,
    mut consume: impl FnMut(&Sample, Origin<'_>) -> Result<(), RetrievalError>,
) -> Result<u64, RetrievalError> {
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = sync_channel::<Batch>(BATCHES);
        let (empty_tx, empty_rx) = sync_channel::<Batch>(BATCHES);
        for _ in 0..BATCHES {
            // The channel holds BATCHES: these sends cannot block or fail.
            let _ = empty_tx.send(Batch::with_capacity(BATCH));
        }
        let reader =
            scope.spawn(move || read(tiers, pv, spans, buffer, keep_lines, full_tx, empty_rx));
        let consumed = consume_all(&full_rx, &empty_tx, &mut consume);
        // Unblocks the reader whatever it waits for (a full queue, an empty batch).
        drop(full_rx);
        drop(empty_tx);
        let read = match reader.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        consumed?;
        read
    })
}

/// The reading thread: fills batches and hands them over; stops (with
/// [`RetrievalError::ClientGone`]) when the consumer has gone.
fn read(
    tiers: &[&Tier],
    pv: &str,
    spans: &[(Timestamp, Timestamp)],
    buffer: &[Sample],
    keep_lines: bool,
    full_tx: SyncSender<Batch>,
    empty_rx: Receiver<Batch>,
) -> Result<u64, RetrievalError> {
    let gone = |_| RetrievalError::ClientGone;
    let mut batch = empty_rx.recv().map_err(gone)?;
    let skipped = for_each_line(tiers, pv, spans, buffer, |s, origin| {
        batch.push(s, origin, keep_lines);
        if batch.len() >= BATCH {
            let next = empty_rx.recv().map_err(gone)?;
            full_tx
                .send(std::mem::replace(&mut batch, next))
                .map_err(|_| RetrievalError::ClientGone)?;
        }
        Ok::<(), RetrievalError>(())
    })?;
    if batch.len() > 0 {
        full_tx
            .send(batch)
            .map_err(|_| RetrievalError::ClientGone)?;
    }
    Ok(skipped)
}

/// The consuming side: every batch until the reader is done, or the first error.
fn consume_all(
    full_rx: &Receiver<Batch>,
    empty_tx: &SyncSender<Batch>,
    consume: &mut impl FnMut(&Sample, Origin<'_>) -> Result<(), RetrievalError>,
) -> Result<(), RetrievalError> {
    for mut batch in full_rx.iter() {
        for i in 0..batch.len() {
            consume(&batch.samples[i], batch.origin(i))?;
        }
        batch.clear();
        // The reader may have finished: a batch nobody needs is dropped.
        let _ = empty_tx.send(batch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::time::start_of_year;
    use archiver_pb::{Granularity, PayloadType, Value};
    use archiver_storage::StorageError;

    fn store(dir: &std::path::Path, n: i64) -> (Tier, i64) {
        let sts = Tier::new("STS", dir, Granularity::Hour);
        let y = start_of_year(2024);
        let mut all: Vec<Sample> = (0..n)
            .map(|k| Sample::new(Timestamp::new(y + k, 0), Value::ScalarDouble(k as f64)))
            .collect();
        all[7]
            .field_values
            .push(archiver_pb::FieldValue::new("HIHI", "5"));
        sts.append("A:B", PayloadType::ScalarDouble, &all)
            .expect("append");
        (sts, y)
    }

    #[test]
    fn the_same_samples_origins_and_lines_as_inline() {
        let dir = tempfile::tempdir().expect("tmp");
        let (sts, y) = store(dir.path(), 3 * BATCH as i64 + 17);
        let spans = [(Timestamp::new(y + 5, 0), Timestamp::new(y + 20_000, 0))];
        let live = [Sample::new(
            Timestamp::new(y + 30_000, 0),
            Value::ScalarDouble(-1.0),
        )];
        let mut inline = Vec::new();
        for_each_line(&[&sts], "A:B", &spans, &live, |s, o| {
            inline.push((s.clone(), o.stream, o.line.map(<[u8]>::to_vec)));
            Ok::<(), StorageError>(())
        })
        .expect("inline");
        let mut piped = Vec::new();
        for_each_line_pipelined(&[&sts], "A:B", &spans, &live, true, |s, o| {
            piped.push((s.clone(), o.stream, o.line.map(<[u8]>::to_vec)));
            Ok(())
        })
        .expect("pipelined");
        assert!(inline.len() > 2 * BATCH);
        assert_eq!(piped, inline);
    }

    #[test]
    fn an_error_of_the_consumer_stops_the_reader() {
        let dir = tempfile::tempdir().expect("tmp");
        let (sts, y) = store(dir.path(), 5 * BATCH as i64);
        let spans = [(Timestamp::new(y, 0), Timestamp::new(y + 100_000, 0))];
        let mut seen = 0;
        let r = for_each_line_pipelined(&[&sts], "A:B", &spans, &[], false, |_, o| {
            assert!(o.line.is_none(), "lines are not kept");
            seen += 1;
            if seen == BATCH + 10 {
                Err(RetrievalError::TooLargeForMat { max: 1 })
            } else {
                Ok(())
            }
        });
        assert!(
            matches!(r, Err(RetrievalError::TooLargeForMat { .. })),
            "{r:?}"
        );
        assert_eq!(seen, BATCH + 10);
    }
}
