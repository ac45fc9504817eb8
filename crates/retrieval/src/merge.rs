//! The merge/dedup rule of the Java appliance's retrieval (`MergeDedupConsumer`).

use archiver_pb::{Sample, Timestamp};

/// Where a merged sample comes from: which source stream, and the stored line it was
/// decoded from. Java reads a PV as a list of streams (one per partition file of each
/// store, then the engine's buffer); pbraw frames each in its own chunk and copies the
/// stored lines verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// Identifies the source stream within the PV's response: it changes at every file
    /// (partition) of every store, and for the live buffer. Streams are read oldest first.
    pub stream: u32,
    /// The stored line (escaped, without its newline) the sample was decoded from.
    /// `None` for a sample built in memory (the live buffer, a post-processor's).
    pub line: Option<&'a [u8]>,
    /// The year the line's time is relative to (the `year` of its file's header);
    /// meaningless without a line.
    pub year: i32,
}

impl Origin<'_> {
    /// The stream of samples that come from no file (the live buffer, tools, tests).
    pub const MEMORY: Origin<'static> = Origin {
        stream: u32::MAX,
        line: None,
        year: 0,
    };
}

/// Applies the Java retrieval rule to samples pushed in time order, source after source.
///
/// * At most one sample at or before `from`: the latest one seen before anything was
///   emitted; it is emitted just before the first sample after `from` (or at
///   [`MergeDedup::finish`] when there is none).
/// * Then the samples in `(from, to]`; later ones are dropped.
/// * Dedup, as Java's: after a change of source stream ([`MergeDedup::push_from`]),
///   samples not newer than the last one emitted are dropped (the overlap of a file
///   moved by ETL, or of a file and the buffer being written) until the first newer
///   one; within a stream, samples pass unchecked. [`MergeDedup::push`] (no stream)
///   checks every sample.
#[derive(Debug, Clone)]
pub struct MergeDedup {
    from: Timestamp,
    to: Timestamp,
    before: Option<Sample>,
    /// The stored line and stream of `before`.
    before_line: Vec<u8>,
    before_has_line: bool,
    before_stream: u32,
    before_year: i32,
    last: Option<Timestamp>,
    /// Something was emitted in the current span.
    span_emitted: bool,
    /// The stream of the last sample offered.
    stream: Option<u32>,
    deduping: bool,
    /// The last sample offered was emitted as it came (not held, not dropped).
    passed: bool,
}

impl MergeDedup {
    /// A merge for the range `[from, to]`.
    pub fn new(from: Timestamp, to: Timestamp) -> Self {
        MergeDedup {
            from,
            to,
            before: None,
            before_line: Vec::new(),
            before_has_line: false,
            before_stream: 0,
            before_year: 0,
            last: None,
            span_emitted: false,
            stream: None,
            deduping: false,
            passed: false,
        }
    }

    /// Goes on with the next time span of a request of several (Java `timeranges`;
    /// ascending, not overlapping): the sample held for the current span is emitted
    /// (as [`MergeDedup::finish_from`]), then the rule starts again for `[from, to]`
    /// (one sample at or before `from`, the latest, then `(from, to]`) without sending
    /// again what was sent: a sample not newer than the last one emitted is dropped.
    pub fn next_span<E>(
        &mut self,
        from: Timestamp,
        to: Timestamp,
        emit: &mut impl FnMut(&Sample, Origin<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.emit_before(emit)?;
        self.from = from;
        self.to = to;
        self.span_emitted = false;
        Ok(())
    }

    /// Offers a sample, checking it against the last one emitted whatever its stream;
    /// calls `emit` for each sample that belongs in the response, in order.
    pub fn push<E>(
        &mut self,
        s: &Sample,
        emit: &mut impl FnMut(&Sample) -> Result<(), E>,
    ) -> Result<(), E> {
        self.deduping = true;
        self.push_from(s, Origin::MEMORY, &mut |x: &Sample, _: Origin<'_>| emit(x))
    }

    /// Offers a sample of the source stream `origin.stream`; calls `emit` for each
    /// sample that belongs in the response, in order, with its origin (the sample held
    /// as the one at or before `from` keeps its own, its line copied: nothing is
    /// allocated per sample once that copy has grown to the longest such line).
    pub fn push_from<E>(
        &mut self,
        s: &Sample,
        origin: Origin<'_>,
        emit: &mut impl FnMut(&Sample, Origin<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.passed = false;
        if self.stream != Some(origin.stream) {
            self.stream = Some(origin.stream);
            // Java starts deduping at every stream boundary once something was emitted.
            if self.last.is_some() {
                self.deduping = true;
            }
        }
        if s.time > self.to {
            return Ok(());
        }
        if s.time <= self.from {
            // The latest; of equal times, the later one of the same stream (as Java),
            // the first one across streams (a later source's copy is a duplicate).
            let newer = |b: &Sample| {
                s.time > b.time || (s.time == b.time && origin.stream == self.before_stream)
            };
            if !self.span_emitted && self.before.as_ref().is_none_or(newer) {
                match self.before.as_mut() {
                    Some(b) => b.clone_from(s),
                    None => self.before = Some(s.clone()),
                }
                self.before_line.clear();
                self.before_has_line = origin.line.is_some();
                if let Some(line) = origin.line {
                    self.before_line.extend_from_slice(line);
                }
                self.before_stream = origin.stream;
                self.before_year = origin.year;
            }
            return Ok(());
        }
        if self.deduping {
            if self.last.is_some_and(|last| s.time <= last) {
                return Ok(());
            }
            self.deduping = false;
        }
        self.emit_before(emit)?;
        emit(s, origin)?;
        self.last = Some(s.time);
        self.span_emitted = true;
        self.passed = true;
        Ok(())
    }

    /// True when the last sample offered ([`MergeDedup::push_from`]) was emitted as it
    /// came: the merge is passing its stream through, so the samples that follow it in
    /// the same stream up to `to` would all be emitted unchecked (Java's rule within a
    /// stream), and may be taken in bulk ([`MergeDedup::passed_through`]).
    pub(crate) fn passed_last(&self) -> bool {
        self.passed
    }

    /// The samples after the last one offered, of the same stream, up to `last` (≤ `to`),
    /// were taken in bulk: the merge goes on as if it had emitted them.
    pub(crate) fn passed_through(&mut self, last: Timestamp) {
        self.last = Some(self.last.map_or(last, |l| l.max(last)));
    }

    /// Emits the held sample at or before `from`, if any.
    fn emit_before<E>(
        &mut self,
        emit: &mut impl FnMut(&Sample, Origin<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(b) = self.before.take() {
            if self.last.is_some_and(|last| b.time <= last) {
                // Already sent (the value in effect at a later span's start).
                return Ok(());
            }
            self.last = Some(b.time);
            self.span_emitted = true;
            let origin = Origin {
                stream: self.before_stream,
                line: self.before_has_line.then_some(&self.before_line[..]),
                year: self.before_year,
            };
            emit(&b, origin)?;
        }
        Ok(())
    }

    /// Ends the response: a lone sample at or before `from` is emitted now.
    pub fn finish<E>(&mut self, emit: &mut impl FnMut(&Sample) -> Result<(), E>) -> Result<(), E> {
        self.emit_before(&mut |x: &Sample, _: Origin<'_>| emit(x))
    }

    /// [`MergeDedup::finish`], with the held sample's origin.
    pub fn finish_from<E>(
        &mut self,
        emit: &mut impl FnMut(&Sample, Origin<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.emit_before(emit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::Value;

    fn s(secs: i64) -> Sample {
        Sample::new(Timestamp::new(secs, 0), Value::ScalarInt(secs as i32))
    }

    fn run(from: i64, to: i64, sources: &[&[i64]]) -> Vec<i64> {
        let mut m = MergeDedup::new(Timestamp::new(from, 0), Timestamp::new(to, 0));
        let mut out = Vec::new();
        let mut emit = |x: &Sample| -> Result<(), ()> {
            out.push(x.time.secs);
            Ok(())
        };
        for src in sources {
            for &t in *src {
                m.push(&s(t), &mut emit).ok();
            }
        }
        m.finish(&mut emit).ok();
        out
    }

    #[test]
    fn java_rule() {
        // One sample at or before from, then (from, to].
        assert_eq!(
            run(10, 20, &[&[1, 5, 9, 11, 15, 20, 21]]),
            vec![9, 11, 15, 20]
        );
        assert_eq!(run(10, 20, &[&[1, 10, 11]]), vec![10, 11]);
        // Nothing after from: the last value before still shows.
        assert_eq!(run(10, 20, &[&[1, 5]]), vec![5]);
        // Overlap between a file and the buffer is dropped.
        assert_eq!(run(0, 100, &[&[1, 2, 3], &[2, 3, 4]]), vec![1, 2, 3, 4]);
        // The buffer may hold the sample before from.
        assert_eq!(run(10, 20, &[&[1, 2], &[8, 12]]), vec![8, 12]);
        assert_eq!(run(10, 20, &[],), Vec::<i64>::new());
    }

    /// Runs `sources` (each one stream of times) through `push_from`; gives each emitted
    /// time with its stream.
    fn run_streams(from: i64, to: i64, sources: &[&[i64]]) -> Vec<(i64, u32)> {
        let mut m = MergeDedup::new(Timestamp::new(from, 0), Timestamp::new(to, 0));
        let mut out = Vec::new();
        let mut emit = |x: &Sample, o: Origin<'_>| -> Result<(), ()> {
            out.push((x.time.secs, o.stream));
            Ok(())
        };
        for (k, src) in sources.iter().enumerate() {
            let origin = Origin {
                stream: k as u32,
                line: None,
                year: 0,
            };
            for &t in *src {
                m.push_from(&s(t), origin, &mut emit).ok();
            }
        }
        m.finish_from(&mut emit).ok();
        out
    }

    #[test]
    fn dedup_only_across_stream_boundaries() {
        // Within a stream nothing is checked (Java emits a file's lines as they are).
        assert_eq!(
            run_streams(0, 100, &[&[1, 5, 3, 7]]),
            vec![(1, 0), (5, 0), (3, 0), (7, 0)]
        );
        // At a boundary, samples not newer than the last one are dropped until the
        // first newer one; then the stream passes unchecked.
        assert_eq!(
            run_streams(0, 100, &[&[1, 2, 3], &[2, 3, 4, 3, 5]]),
            vec![(1, 0), (2, 0), (3, 0), (4, 1), (3, 1), (5, 1)]
        );
        // The same through `push` (no stream): every sample checked.
        assert_eq!(run(0, 100, &[&[1, 5, 3, 7]]), vec![1, 5, 7]);
        // The sample before `from` keeps its stream; of equal times across streams the
        // first is kept (a later source's copy is a duplicate), within one the last.
        assert_eq!(
            run_streams(10, 20, &[&[5, 8], &[8, 12]]),
            vec![(8, 0), (12, 1)]
        );
        assert_eq!(run_streams(10, 20, &[&[5, 8], &[9]]), vec![(9, 1)]);
        assert_eq!(run_streams(10, 20, &[&[5, 8, 8]]), vec![(8, 0)]);
    }

    #[test]
    fn the_held_sample_keeps_its_stored_line() {
        let mut m = MergeDedup::new(Timestamp::new(10, 0), Timestamp::new(20, 0));
        let mut out: Vec<(i64, Option<Vec<u8>>, i32)> = Vec::new();
        let mut emit = |x: &Sample, o: Origin<'_>| -> Result<(), ()> {
            out.push((x.time.secs, o.line.map(<[u8]>::to_vec), o.year));
            Ok(())
        };
        let file = |line: &'static [u8]| Origin {
            stream: 1,
            line: Some(line),
            year: 2024,
        };
        m.push_from(&s(5), file(b"five"), &mut emit).ok();
        m.push_from(&s(9), file(b"nine"), &mut emit).ok();
        m.push_from(&s(15), Origin::MEMORY, &mut emit).ok();
        m.finish_from(&mut emit).ok();
        assert_eq!(out, vec![(9, Some(b"nine".to_vec()), 2024), (15, None, 0)]);
    }

    #[test]
    fn spans_apply_the_rule_each_with_the_value_in_effect_at_its_start() {
        let mut m = MergeDedup::new(Timestamp::new(10, 0), Timestamp::new(20, 0));
        let mut out = Vec::new();
        let mut emit = |x: &Sample, _: Origin<'_>| -> Result<(), ()> {
            out.push(x.time.secs);
            Ok(())
        };
        for t in [5, 9, 15, 21] {
            m.push_from(&s(t), Origin::MEMORY, &mut emit).ok();
        }
        // Second span [30, 40]: 25 and 28 are before it, 28 is in effect at 30.
        m.next_span(Timestamp::new(30, 0), Timestamp::new(40, 0), &mut emit)
            .ok();
        for t in [25, 28, 35, 41] {
            m.push_from(&s(t), Origin::MEMORY, &mut emit).ok();
        }
        // Third span [50, 60]: nothing newer than 35 before it, nothing in it.
        m.next_span(Timestamp::new(50, 0), Timestamp::new(60, 0), &mut emit)
            .ok();
        m.push_from(&s(35), Origin::MEMORY, &mut emit).ok();
        // Fourth span [70, 80]: only a sample before it; emitted at the end.
        m.next_span(Timestamp::new(70, 0), Timestamp::new(80, 0), &mut emit)
            .ok();
        m.push_from(&s(65), Origin::MEMORY, &mut emit).ok();
        m.finish_from(&mut emit).ok();
        assert_eq!(out, vec![9, 15, 28, 35, 65]);
    }
}
