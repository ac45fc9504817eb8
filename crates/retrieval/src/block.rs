//! Stored lines decoded in parts, on two threads: the lines of a file inside a request's
//! range ([`crate::collect::read_lines`] hands them over in blocks after the first sample
//! that passed the merge) are cut at newlines into parts of about [`PART`] bytes (a
//! PlainPB line is escaped, so a newline always ends a sample), and each part is decoded
//! — and, for raw data in a text format, encoded by a fork of the response's encoder
//! ([`Encoder::fork`]) — by whichever thread is free: a helper thread (started at the
//! first part) or the calling one. The results are used in order, on the calling thread
//! (a post-processor runs over the decoded samples there; encoded bytes are appended to the
//! response). On two cores a year of one PV takes about half the time it takes on one.
//!
//! Hand-written rather than a library's (rayon's ordered parallel iterators want the
//! whole input up front; this takes a stream of blocks, bounded in memory): a helper
//! thread, two channels, a queue of at most [`QUEUED`] parts and recycled buffers.
//! Nothing is allocated per sample: a part's samples and bytes are reused.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;

use archiver_pb::codec::decode_sample_into;
use archiver_pb::escape::ESCAPE;
use archiver_pb::time::start_of_year;
use archiver_pb::{LineDecoder, PayloadType, Sample, Timestamp, Value};

use crate::encode::Encoder;
use crate::error::RetrievalError;
use crate::postprocess::{Binning, Runs, bin_of};

/// Bytes of stored lines per part (a part's JSON is about 4× that: close to a response
/// piece, [`crate::PIECE`]).
pub(crate) const PART: usize = 64 * 1024;

/// Binning mode: the most bytes gathered while looking for the end of a bin; a longer
/// bin is cut where the lines end (see [`Blocks::lines_binned`]). With [`QUEUED`], it
/// bounds the memory of a binned response.
const MAX_PART: usize = 2 * 1024 * 1024;

/// Parts in flight: decoded or being decoded and not yet used. Bounds the memory (each
/// part holds its lines, samples and encoded bytes) while leaving the helper work queued.
const QUEUED: usize = 4;

/// Parts the helper may have queued before the calling thread decodes one itself.
const HELPER_QUEUED: usize = 2;

/// What a part's lines become: samples (for a post-processor) or encoded bytes.
pub(crate) struct Part {
    lines: Vec<u8>,
    /// The file's payload type and year (the lines decode under them).
    file: (PayloadType, i32),
    samples: Vec<Sample>,
    decoded: usize,
    /// The samples binned (binning mode).
    runs: Runs,
    binning: bool,
    bytes: Vec<u8>,
    /// Samples decoded (and encoded).
    pub(crate) count: u64,
    /// Lines that did not decode (skipped, as the file reader skips them).
    pub(crate) skipped: u64,
}

impl Part {
    fn new() -> Self {
        Part {
            lines: Vec::with_capacity(PART + 256),
            file: (PayloadType::ScalarDouble, 0),
            samples: Vec::new(),
            decoded: 0,
            runs: Runs::default(),
            binning: false,
            bytes: Vec::new(),
            count: 0,
            skipped: 0,
        }
    }

    /// The decoded samples (decoding mode), in file order.
    pub(crate) fn samples(&self) -> &[Sample] {
        &self.samples[..self.decoded]
    }

    /// The encoded bytes (encoding mode).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The samples binned (binning mode).
    pub(crate) fn runs(&self) -> Option<&Runs> {
        self.binning.then_some(&self.runs)
    }

    /// Calls `f` with each sample of the part, in order: the decoded ones (decoding
    /// mode), else the lines decoded again, here (binning mode, when the post-processor
    /// wants the samples one by one: rare, a decoder per part).
    pub(crate) fn each_sample(
        &self,
        mut f: impl FnMut(&Sample) -> Result<(), RetrievalError>,
    ) -> Result<(), RetrievalError> {
        if !self.binning {
            return self.samples().iter().try_for_each(f);
        }
        let (t, year) = self.file;
        let year_start = start_of_year(year);
        let mut decoder = LineDecoder::new(t, year);
        let mut sample = empty_sample();
        for (line, escaped) in LinesOf::new(&self.lines) {
            if decode_line(line, escaped, t, year_start, &mut decoder, &mut sample) {
                f(&sample)?;
            }
        }
        Ok(())
    }
}

/// The lines of a part (cut at newlines; the last may lack one), each with whether it
/// holds an escape byte (found for the whole part in one scan: a line without one decodes
/// as it is, most lines, without looking for one line by line).
struct LinesOf<'a> {
    bytes: &'a [u8],
    start: usize,
    newlines: memchr::Memchr<'a>,
    escapes: std::iter::Peekable<memchr::Memchr<'a>>,
}

impl<'a> LinesOf<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LinesOf {
            bytes,
            start: 0,
            newlines: memchr::memchr_iter(b'\n', bytes),
            escapes: memchr::memchr_iter(ESCAPE, bytes).peekable(),
        }
    }
}

impl<'a> Iterator for LinesOf<'a> {
    type Item = (&'a [u8], bool);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let end = match self.newlines.next() {
            Some(end) => end,
            None if self.start < self.bytes.len() => self.bytes.len(),
            None => return None,
        };
        let line = &self.bytes[self.start..end];
        self.start = end + 1;
        let mut escaped = false;
        while self.escapes.next_if(|&e| e < end).is_some() {
            escaped = true;
        }
        Some((line, escaped))
    }
}

/// Decodes a stored line into `sample`: false when it does not decode (skipped, as the
/// file reader skips it).
#[inline]
fn decode_line(
    line: &[u8],
    escaped: bool,
    t: PayloadType,
    year_start: i64,
    decoder: &mut LineDecoder,
    sample: &mut Sample,
) -> bool {
    if escaped {
        decoder.decode(line, sample).is_ok()
    } else {
        decode_sample_into(line, t, year_start, sample).is_ok()
    }
}

/// Decodes (and encodes) parts; one per thread.
struct Worker {
    /// The decoder of the current file (its type and year), with the year's start.
    decoder: Option<((PayloadType, i32), i64, LineDecoder)>,
    /// A fork of the response's encoder (encoding mode).
    encoder: Option<Box<dyn Encoder + Send>>,
    /// The post-processor's binning (binning mode).
    binning: Option<Binning>,
    sample: Sample,
}

impl Worker {
    fn new(encoder: Option<Box<dyn Encoder + Send>>, binning: Option<Binning>) -> Self {
        Worker {
            decoder: None,
            encoder,
            binning,
            sample: empty_sample(),
        }
    }

    fn run(&mut self, part: &mut Part) {
        part.count = 0;
        part.skipped = 0;
        part.decoded = 0;
        part.runs.clear();
        part.binning = self.binning.is_some();
        let (t, year) = part.file;
        let (year_start, decoder) = match &mut self.decoder {
            Some((file, start, d)) if *file == part.file => (*start, d),
            slot => {
                let (_, start, d) =
                    slot.insert((part.file, start_of_year(year), LineDecoder::new(t, year)));
                (*start, d)
            }
        };
        for (line, escaped) in LinesOf::new(&part.lines) {
            let sample = if self.encoder.is_some() || self.binning.is_some() {
                &mut self.sample
            } else {
                if part.samples.len() <= part.decoded {
                    part.samples.push(empty_sample());
                }
                &mut part.samples[part.decoded]
            };
            if !decode_line(line, escaped, t, year_start, decoder, sample) {
                part.skipped += 1;
                continue;
            }
            part.count += 1;
            if let Some(enc) = &mut self.encoder {
                enc.sample(&self.sample);
            } else if let Some(b) = &self.binning {
                part.runs.push(&self.sample, b);
            } else {
                part.decoded += 1;
            }
        }
        if let Some(enc) = &mut self.encoder {
            part.bytes = enc.take();
        }
    }
}

/// The start of the line holding byte `at` of `buf`.
fn line_start(buf: &[u8], at: usize) -> usize {
    memchr::memrchr(b'\n', &buf[..at]).map_or(0, |i| i + 1)
}

fn empty_sample() -> Sample {
    Sample::new(Timestamp::new(0, 0), Value::ScalarDouble(0.0))
}

/// The helper thread and its two channels.
struct Helper {
    parts: Option<Sender<Part>>,
    done: Receiver<Part>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    /// Starts the helper; `None` when no thread can be started (the calling thread then
    /// does all the work).
    fn start(encoder: Option<Box<dyn Encoder + Send>>, binning: Option<Binning>) -> Option<Helper> {
        let (parts_tx, parts_rx) = channel::<Part>();
        let (done_tx, done_rx) = channel::<Part>();
        let thread = std::thread::Builder::new()
            .name("retrieval-decode".into())
            .spawn(move || {
                let mut worker = Worker::new(encoder, binning);
                for mut part in parts_rx {
                    worker.run(&mut part);
                    if done_tx.send(part).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Helper {
            parts: Some(parts_tx),
            done: done_rx,
            thread: Some(thread),
        })
    }

    /// The helper has stopped without handing a part back: only a panic does that.
    fn failed(&mut self) -> ! {
        self.parts = None;
        if let Some(t) = self.thread.take()
            && let Err(panic) = t.join()
        {
            std::panic::resume_unwind(panic);
        }
        unreachable!("the decoding helper stopped without a panic")
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing its queue ends the helper's loop after the part in hand.
        self.parts = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What uses a part, in order, on the calling thread: an error stops the work.
pub(crate) type UsePart<'a> = dyn FnMut(&Part) -> Result<(), RetrievalError> + 'a;

enum Slot {
    /// Given to the helper; its result comes back in order.
    Helper,
    /// Done by the calling thread, waiting for the helper's earlier parts.
    Mine(Part),
}

/// The stored lines of one PV's files, decoded in parts on two threads and used in
/// order: see the module's text. [`Blocks::lines`] for each block of lines (any cut, a
/// line may span two blocks), [`Blocks::flush`] at the end of each file's blocks.
pub(crate) struct Blocks {
    own: Worker,
    /// The encoder fork the helper gets when it starts (encoding mode).
    helper_encoder: Option<Box<dyn Encoder + Send>>,
    /// The binning the helper gets when it starts (binning mode).
    binning: Option<Binning>,
    helper: Option<Helper>,
    started: bool,
    file: (PayloadType, i32),
    /// The start of a line that continues in the next block; in binning mode, every
    /// line not yet in a part.
    carry: Vec<u8>,
    /// A spare buffer for what follows a cut (binning mode).
    rest: Vec<u8>,
    /// The current file's decoder, for the times of lines (binning mode).
    peek: Option<LineDecoder>,
    queue: VecDeque<Slot>,
    spare: Vec<Part>,
}

impl Blocks {
    /// Parts decoded into samples.
    pub(crate) fn decoding() -> Self {
        Self::new(None, None, None)
    }

    /// Parts decoded and binned for a post-processor ([`Part::runs`]).
    pub(crate) fn binning(binning: Binning) -> Self {
        Self::new(None, None, Some(binning))
    }

    /// Parts decoded and encoded by `forks` of the response's encoder (one per thread,
    /// both in the state of the encoder after a sample of the current PV).
    pub(crate) fn encoding(forks: [Box<dyn Encoder + Send>; 2]) -> Self {
        let [a, b] = forks;
        Self::new(Some(a), Some(b), None)
    }

    fn new(
        own: Option<Box<dyn Encoder + Send>>,
        helper: Option<Box<dyn Encoder + Send>>,
        binning: Option<Binning>,
    ) -> Self {
        Blocks {
            own: Worker::new(own, binning),
            binning,
            helper_encoder: helper,
            helper: None,
            started: false,
            file: (PayloadType::ScalarDouble, 0),
            carry: Vec::new(),
            rest: Vec::new(),
            peek: None,
            queue: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// The lines that follow are of a file of this type and year.
    pub(crate) fn file(&mut self, payload_type: PayloadType, year: i32) {
        self.file = (payload_type, year);
        if self.binning.is_some() {
            self.peek = Some(LineDecoder::new(payload_type, year));
        }
    }

    /// Binning mode: the lines are gathered and cut where a bin ends (after at least
    /// [`PART`] bytes), so that a part's first run starts its bin and is computed by the
    /// thread that decodes the part; a bin longer than [`MAX_PART`] bytes is cut where
    /// the lines end (its later parts continue it: the post-processor adds their first
    /// run's values itself). Where the cut falls never changes the result, only who
    /// computes what.
    fn lines_binned(
        &mut self,
        bytes: &[u8],
        use_part: &mut UsePart<'_>,
    ) -> Result<(), RetrievalError> {
        self.carry.extend_from_slice(bytes);
        while let Some(cut) = self.bin_cut() {
            let mut rest = std::mem::take(&mut self.rest);
            rest.extend_from_slice(&self.carry[cut..]);
            self.carry.truncate(cut);
            let mut lines = std::mem::replace(&mut self.carry, rest);
            self.dispatch_taken(&mut lines, use_part)?;
            self.rest = lines;
        }
        Ok(())
    }

    /// Where to cut the gathered lines (binning mode): after the last line of the bin
    /// of the line at [`PART`] bytes, found by bisection on the lines' times (one
    /// decoded time per step); `None` to wait for more lines. A time that does not
    /// decode cuts after that line, as the other modes cut.
    fn bin_cut(&mut self) -> Option<usize> {
        let buf = &self.carry;
        let end = memchr::memrchr(b'\n', buf)? + 1;
        if end <= PART {
            return None;
        }
        let a = line_start(buf, PART);
        let plain = a + memchr::memchr(b'\n', &buf[a..])? + 1;
        let (Some(b), Some(peek)) = (self.binning, self.peek.as_mut()) else {
            return Some(plain);
        };
        let mut bin = |at: usize| {
            let len = memchr::memchr(b'\n', &buf[at..])?;
            let t = peek.decode_time(&buf[at..at + len]).ok()?;
            Some(bin_of(t, b.interval))
        };
        let Some(first) = bin(a) else {
            return Some(plain);
        };
        let (mut lo, mut hi) = (a, line_start(buf, end - 1));
        match bin(hi) {
            None => return Some(plain),
            Some(last) if last == first => return (end >= MAX_PART).then_some(end),
            Some(_) => {}
        }
        // `lo` starts a line of the first bin, `hi` one of another.
        loop {
            let mut mid = line_start(buf, lo + (hi - lo) / 2);
            if mid <= lo {
                mid = lo + memchr::memchr(b'\n', &buf[lo..hi])? + 1;
            }
            if mid >= hi {
                return Some(hi);
            }
            match bin(mid) {
                None => return Some(plain),
                Some(x) if x == first => lo = mid,
                Some(_) => hi = mid,
            }
        }
    }

    /// Takes a block of stored lines (escaped, newline-terminated; the last line may
    /// continue in the next block); hands every part that is ready, in order, to `use_part`.
    pub(crate) fn lines(
        &mut self,
        bytes: &[u8],
        use_part: &mut UsePart<'_>,
    ) -> Result<(), RetrievalError> {
        if self.binning.is_some() {
            return self.lines_binned(bytes, use_part);
        }
        let mut rest = bytes;
        if !self.carry.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                self.carry.extend_from_slice(rest);
                return Ok(());
            };
            let mut carry = std::mem::take(&mut self.carry);
            carry.extend_from_slice(&rest[..=nl]);
            rest = &rest[nl + 1..];
            let r = self.dispatch(&carry, use_part);
            carry.clear();
            self.carry = carry;
            r?;
        }
        while !rest.is_empty() {
            let cut = if rest.len() <= PART {
                memchr::memrchr(b'\n', rest)
            } else {
                memchr::memrchr(b'\n', &rest[..PART])
                    .or_else(|| memchr::memchr(b'\n', &rest[PART..]).map(|i| i + PART))
            };
            let Some(cut) = cut else {
                self.carry.extend_from_slice(rest);
                break;
            };
            self.dispatch(&rest[..=cut], use_part)?;
            rest = &rest[cut + 1..];
        }
        Ok(())
    }

    /// Ends the current file's lines: every part is used before this returns.
    pub(crate) fn flush(&mut self, use_part: &mut UsePart<'_>) -> Result<(), RetrievalError> {
        if !self.carry.is_empty() {
            // A last line without newline (the copy hands whole lines only; kept anyway).
            let carry = std::mem::take(&mut self.carry);
            self.dispatch(&carry, use_part)?;
        }
        self.use_ready(true, use_part)
    }

    fn dispatch(&mut self, lines: &[u8], use_part: &mut UsePart<'_>) -> Result<(), RetrievalError> {
        self.use_ready(false, use_part)?;
        let mut part = self.spare.pop().unwrap_or_else(Part::new);
        part.lines.clear();
        part.lines.extend_from_slice(lines);
        self.send(part, use_part)
    }

    /// [`Blocks::dispatch`] of the bytes of `lines`, taken rather than copied: `lines` is
    /// left with an empty buffer (the spare part's).
    fn dispatch_taken(
        &mut self,
        lines: &mut Vec<u8>,
        use_part: &mut UsePart<'_>,
    ) -> Result<(), RetrievalError> {
        self.use_ready(false, use_part)?;
        let mut part = self.spare.pop().unwrap_or_else(Part::new);
        std::mem::swap(&mut part.lines, lines);
        lines.clear();
        self.send(part, use_part)
    }

    /// Hands a part to the helper, or decodes it here when the helper has enough.
    fn send(&mut self, mut part: Part, use_part: &mut UsePart<'_>) -> Result<(), RetrievalError> {
        part.file = self.file;
        if !self.started {
            self.started = true;
            self.helper = Helper::start(self.helper_encoder.take(), self.binning);
        }
        let at_helper = self
            .queue
            .iter()
            .filter(|s| matches!(s, Slot::Helper))
            .count();
        match &self.helper {
            Some(h) if at_helper < HELPER_QUEUED => {
                if let Some(tx) = &h.parts
                    && let Err(e) = tx.send(part)
                {
                    // Only a stopped (panicked) helper refuses a part.
                    drop(e);
                    if let Some(h) = self.helper.as_mut() {
                        h.failed();
                    }
                }
                self.queue.push_back(Slot::Helper);
            }
            _ => {
                self.own.run(&mut part);
                self.queue.push_back(Slot::Mine(part));
            }
        }
        self.use_ready(false, use_part)?;
        while self.queue.len() > QUEUED {
            self.use_front(true, use_part)?;
        }
        Ok(())
    }

    /// Uses the parts at the front of the queue that are done; with `wait`, all of them.
    fn use_ready(&mut self, wait: bool, use_part: &mut UsePart<'_>) -> Result<(), RetrievalError> {
        while !self.queue.is_empty() {
            if !self.use_front(wait, use_part)? {
                break;
            }
        }
        Ok(())
    }

    /// Uses the front part if it is done (waits for it with `wait`); true when it was.
    fn use_front(
        &mut self,
        wait: bool,
        use_part: &mut UsePart<'_>,
    ) -> Result<bool, RetrievalError> {
        let part = match self.queue.front_mut() {
            None => return Ok(false),
            Some(Slot::Mine(_)) => match self.queue.pop_front() {
                Some(Slot::Mine(p)) => p,
                _ => return Ok(false),
            },
            Some(Slot::Helper) => {
                let Some(h) = self.helper.as_mut() else {
                    return Ok(false);
                };
                let got = if wait {
                    h.done.recv().ok()
                } else {
                    match h.done.try_recv() {
                        Ok(p) => Some(p),
                        Err(TryRecvError::Empty) => return Ok(false),
                        Err(TryRecvError::Disconnected) => None,
                    }
                };
                let Some(p) = got else { h.failed() };
                self.queue.pop_front();
                p
            }
        };
        let r = use_part(&part);
        self.spare.push(part);
        r.map(|()| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::LineDecoder;
    use archiver_pb::codec::encode_line;

    /// A block of the file reader ([`archiver_pb::reader::COPY_BLOCK`]).
    const COPY: usize = archiver_pb::reader::COPY_BLOCK;

    fn lines(n: usize) -> (Vec<u8>, Vec<Sample>) {
        let mut bytes = Vec::new();
        let mut scratch = Vec::new();
        let mut want = Vec::new();
        for k in 0..n {
            // Values whose bytes need escaping now and then (0x0A, 0x1B, 0x0D).
            let v = f64::from_bits(0x0A1B_0D00_0000_0000 ^ k as u64);
            let s = Sample::new(
                Timestamp::new(archiver_pb::time::start_of_year(2024) + k as i64, 0),
                Value::ScalarDouble(v),
            );
            encode_line(&s, 2024, &mut bytes, &mut scratch).expect("encode");
            want.push(s);
            if k == 7 {
                bytes.extend_from_slice(b"not a sample\n");
            }
        }
        (bytes, want)
    }

    #[test]
    fn parts_decode_every_line_in_order_whatever_the_blocks() {
        let (bytes, want) = lines(20_000);
        assert!(bytes.len() > 4 * PART);
        for block in [1, 17, 4096, PART - 1, PART + 3, bytes.len()] {
            let mut blocks = Blocks::decoding();
            blocks.file(PayloadType::ScalarDouble, 2024);
            let mut got = Vec::new();
            let mut skipped = 0;
            let mut use_part = |p: &Part| {
                got.extend_from_slice(p.samples());
                skipped += p.skipped;
                assert_eq!(p.count, p.samples().len() as u64);
                Ok(())
            };
            for b in bytes.chunks(block) {
                blocks.lines(b, &mut use_part).expect("lines");
            }
            blocks.flush(&mut use_part).expect("flush");
            assert_eq!(skipped, 1, "block {block}");
            assert!(got == want, "block {block}: {} samples", got.len());
        }
        // The decoder of the files agrees.
        let mut d = LineDecoder::new(PayloadType::ScalarDouble, 2024);
        let mut s = empty_sample();
        d.decode(
            &bytes[..bytes.iter().position(|&b| b == b'\n').expect("nl")],
            &mut s,
        )
        .expect("decode");
        assert_eq!(s, want[0]);
    }

    #[test]
    fn binned_parts_are_cut_where_a_bin_ends() {
        let (bytes, want) = lines(150_000);
        let y = archiver_pb::time::start_of_year(2024);
        for (interval, block) in [(600, 4096), (3600, PART + 3), (140_000, COPY)] {
            let binning = Binning {
                interval,
                from: Timestamp::new(y - 1, 0),
                to: Timestamp::new(y + 1_000_000, 0),
            };
            let mut blocks = Blocks::binning(binning);
            blocks.file(PayloadType::ScalarDouble, 2024);
            // (first bin, last bin, samples, bytes) of each part.
            let mut parts = Vec::new();
            let mut use_part = |p: &Part| {
                let runs = p.runs().expect("binning mode");
                assert!(runs.inside());
                let (Some(a), Some(b)) = (runs.runs().first(), runs.runs().last()) else {
                    return Ok(());
                };
                let n: u64 = runs.runs().iter().map(|r| r.added).sum();
                assert_eq!(runs.head().len() as u64, a.added);
                parts.push((a.bin, b.bin, n, p.lines.len()));
                Ok(())
            };
            for b in bytes.chunks(block) {
                blocks.lines(b, &mut use_part).expect("lines");
            }
            blocks.flush(&mut use_part).expect("flush");
            let total: u64 = parts.iter().map(|p| p.2).sum();
            assert_eq!(total, want.len() as u64, "interval {interval}");
            assert!(
                parts.len() > 2,
                "interval {interval}: {} parts",
                parts.len()
            );
            for w in parts.windows(2) {
                let ((_, last, _, len), (first, _, _, _)) = (w[0], w[1]);
                // A bin continues in the next part only when it is longer than a part
                // may be.
                assert!(
                    first != last || len >= MAX_PART,
                    "interval {interval}: {w:?}"
                );
                assert!(len > PART / 2, "interval {interval}: {w:?}");
            }
            if interval == 140_000 {
                assert!(parts.iter().any(|p| p.3 >= MAX_PART));
            }
        }
    }

    #[test]
    fn an_error_of_the_user_stops_and_is_returned() {
        let (bytes, _) = lines(20_000);
        let mut blocks = Blocks::decoding();
        blocks.file(PayloadType::ScalarDouble, 2024);
        let mut used = 0;
        let mut use_part = |_: &Part| {
            used += 1;
            if used == 2 {
                Err(RetrievalError::ClientGone)
            } else {
                Ok(())
            }
        };
        let r = bytes
            .chunks(PART)
            .try_for_each(|b| blocks.lines(b, &mut use_part))
            .and_then(|()| blocks.flush(&mut use_part));
        assert!(matches!(r, Err(RetrievalError::ClientGone)), "{r:?}");
        assert_eq!(used, 2);
    }
}
