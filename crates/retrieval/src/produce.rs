//! The producer loop, written once for every format and post-processor: stores then live
//! buffer → merge/dedup → post-processor → encoder → pieces of bounded size handed to a
//! [`PieceSink`] (in a server, a short queue to the connection).

use archiver_pb::reader::count_newlines;
use archiver_pb::{PayloadType, Sample, Timestamp};
use archiver_storage::Tier;

use crate::block::{Blocks, Part, UsePart};
use crate::collect::{LineSink, for_each_line, read_lines};
use crate::encode::Encoder;
use crate::error::RetrievalError;
use crate::merge::Origin;
use crate::plan::{Plan, StreamDesc};
use crate::postprocess::{Output, PostProcessor};

/// What a post-processor emits into: the encoder of the PV, begun at the first sample
/// (or at the end of a PV without samples) with the description as the post-processor
/// left it ([`Output::retype`] may change it until then), and the pieces it fills.
struct PvOutput<'a, E> {
    encoder: &'a mut E,
    sink: &'a mut dyn PieceSink,
    piece_size: usize,
    produced: &'a mut Produced,
    desc: StreamDesc,
    begun: bool,
    /// Raw data: the stored lines after a sample that passed the merge are decoded and
    /// encoded in parts on two threads by forks of the encoder ([`Encoder::fork`]),
    /// made at the first such lines; false for a format that does not fork.
    forks: bool,
    blocks: Option<Blocks>,
    /// The lines being handed over are copied as they are (pbraw), not decoded.
    copying: bool,
}

impl<E: Encoder> PvOutput<'_, E> {
    fn begin(&mut self) {
        if !self.begun {
            self.begun = true;
            self.encoder.begin_pv(&self.desc);
        }
    }

    /// A merged sample, unchanged (no post-processor), with its origin.
    #[inline]
    fn sample_from(&mut self, s: &Sample, origin: Origin<'_>) -> Result<(), RetrievalError> {
        if !self.begun {
            self.begin();
        }
        self.encoder.sample_from(s, origin);
        self.counted()
    }

    /// Counts the sample just encoded; hands a piece over when one is full.
    #[inline]
    fn counted(&mut self) -> Result<(), RetrievalError> {
        self.counted_n(1)
    }

    /// Counts `n` samples just encoded; hands a piece over when one is full.
    #[inline]
    fn counted_n(&mut self, n: u64) -> Result<(), RetrievalError> {
        self.produced.samples += n;
        if let Some(max) = self.encoder.max_samples()
            && self.produced.samples > max
        {
            return Err(RetrievalError::TooLargeForMat { max });
        }
        if self.encoder.pending() >= self.piece_size {
            self.sink.piece(self.encoder.take(), false)?;
            self.produced.pieces += 1;
        }
        Ok(())
    }
}

/// Raw data: samples with their origins, and the stored lines in bulk when the encoder
/// copies them ([`Encoder::takes_lines`]).
impl<E: Encoder> LineSink<RetrievalError> for PvOutput<'_, E> {
    #[inline]
    fn merged(&mut self, s: &Sample, origin: Origin<'_>) -> Result<(), RetrievalError> {
        self.sample_from(s, origin)
    }

    fn takes_lines(&mut self, origin: Origin<'_>, file: (PayloadType, i32)) -> bool {
        if !self.begun {
            return false;
        }
        self.copying = self.encoder.takes_lines(origin);
        if self.copying {
            return true;
        }
        if self.blocks.is_none() && self.forks {
            match (self.encoder.fork(), self.encoder.fork()) {
                (Some(a), Some(b)) => self.blocks = Some(Blocks::encoding([a, b])),
                _ => self.forks = false,
            }
        }
        let Some(blocks) = self.blocks.as_mut() else {
            return false;
        };
        blocks.file(file.0, file.1);
        true
    }

    fn lines(&mut self, bytes: &[u8]) -> Result<(), RetrievalError> {
        if self.copying {
            self.encoder.lines(bytes);
            return self.counted_n(count_newlines(bytes));
        }
        self.with_blocks(|blocks, use_part| blocks.lines(bytes, use_part))
    }

    fn lines_end(&mut self) -> Result<(), RetrievalError> {
        if self.copying {
            return Ok(());
        }
        self.with_blocks(|blocks, use_part| blocks.flush(use_part))
    }
}

impl<E: Encoder> PvOutput<'_, E> {
    /// Runs `f` on the blocks (if any) with the use of an encoded part: its bytes appended
    /// to the response, its samples counted.
    fn with_blocks(
        &mut self,
        f: impl FnOnce(&mut Blocks, &mut UsePart<'_>) -> Result<(), RetrievalError>,
    ) -> Result<(), RetrievalError> {
        let Some(mut blocks) = self.blocks.take() else {
            return Ok(());
        };
        let r = f(&mut blocks, &mut |p: &Part| {
            self.produced.skipped_lines += p.skipped;
            // Pieces of the usual size: the part's bytes cut where a piece is full.
            let mut bytes = p.bytes();
            while !bytes.is_empty() {
                let room = self.piece_size.saturating_sub(self.encoder.pending());
                let (now, later) = bytes.split_at(room.clamp(1, bytes.len()));
                self.encoder.append(now);
                bytes = later;
                if !bytes.is_empty() {
                    self.sink.piece(self.encoder.take(), false)?;
                    self.produced.pieces += 1;
                }
            }
            self.counted_n(p.count)
        });
        self.blocks = Some(blocks);
        r
    }
}

/// A post-processor over the merged samples; the stored lines after a sample that passed
/// the merge are decoded in parts on two threads ([`Blocks`]), the post-processor running
/// over them in order on this one — binned there too when the post-processor says how
/// ([`PostProcessor::binning`]: it then joins each part's runs, [`PostProcessor::runs`]).
struct PpLines<'p, 'o, 'a, P: ?Sized, E> {
    pp: &'p mut P,
    out: &'o mut PvOutput<'a, E>,
    blocks: Blocks,
}

impl<P: PostProcessor + ?Sized, E: Encoder> PpLines<'_, '_, '_, P, E> {
    fn with_blocks(
        &mut self,
        f: impl FnOnce(&mut Blocks, &mut UsePart<'_>) -> Result<(), RetrievalError>,
    ) -> Result<(), RetrievalError> {
        let (pp, out) = (&mut *self.pp, &mut *self.out);
        f(&mut self.blocks, &mut |p: &Part| {
            out.produced.skipped_lines += p.skipped;
            if let Some(runs) = p.runs()
                && pp.runs(runs, out)?
            {
                return Ok(());
            }
            p.each_sample(|s| pp.sample(s, out))
        })
    }
}

impl<P: PostProcessor + ?Sized, E: Encoder> LineSink<RetrievalError> for PpLines<'_, '_, '_, P, E> {
    #[inline]
    fn merged(&mut self, s: &Sample, _origin: Origin<'_>) -> Result<(), RetrievalError> {
        self.pp.sample(s, self.out)
    }

    fn takes_lines(&mut self, _origin: Origin<'_>, file: (PayloadType, i32)) -> bool {
        self.blocks.file(file.0, file.1);
        true
    }

    fn lines(&mut self, bytes: &[u8]) -> Result<(), RetrievalError> {
        // Pieces are rare here (a bin a day...): ask whether anyone still listens.
        if self.out.sink.gone() {
            return Err(RetrievalError::ClientGone);
        }
        self.with_blocks(|blocks, use_part| blocks.lines(bytes, use_part))
    }

    fn lines_end(&mut self) -> Result<(), RetrievalError> {
        self.with_blocks(|blocks, use_part| blocks.flush(use_part))
    }
}

impl<E: Encoder> Output for PvOutput<'_, E> {
    #[inline]
    fn sample(&mut self, s: &Sample) -> Result<(), RetrievalError> {
        if !self.begun {
            self.begin();
        }
        self.encoder.sample(s);
        self.counted()
    }

    fn retype(&mut self, payload_type: PayloadType, element_count: u32) {
        if !self.begun {
            self.desc.payload_type = payload_type;
            self.desc.element_count = element_count;
        }
    }
}

/// The parts of `spans` at or after `from` and before `before` (either bound absent: none).
fn clip(
    spans: &[(Timestamp, Timestamp)],
    from: Option<Timestamp>,
    before: Option<Timestamp>,
) -> Vec<(Timestamp, Timestamp)> {
    let last_before = before.map(|b| {
        if b.nanos > 0 {
            Timestamp::new(b.secs, b.nanos - 1)
        } else {
            Timestamp::new(b.secs - 1, 999_999_999)
        }
    });
    spans
        .iter()
        .filter_map(|&(a, b)| {
            let a = from.map_or(a, |f| a.max(f));
            let b = last_before.map_or(b, |l| b.min(l));
            (a <= b).then_some((a, b))
        })
        .collect()
}

/// Bytes of response produced before they are handed to the sink.
pub const PIECE: usize = 256 * 1024;

/// Pieces a server should let wait for the connection: with [`PIECE`], at most ≈ 1 MiB
/// per response, whatever its time range; a slow client slows the reading, never the
/// archiving.
pub const PIECES_QUEUED: usize = 4;

/// Receives the body piece by piece, in order; `last` marks the final piece (which may be
/// empty only when the whole body is). An error (the client went away:
/// [`RetrievalError::ClientGone`]) stops the production and is returned by the producer.
pub trait PieceSink {
    /// Hands over the next piece.
    fn piece(&mut self, bytes: Vec<u8>, last: bool) -> Result<(), RetrievalError>;

    /// Whether nobody will take the pieces any more (the client went away). The producer
    /// asks between blocks of stored lines (about every 256 KiB read) and stops with
    /// [`RetrievalError::ClientGone`]: a post-processor that emits one bin a day over a
    /// year would otherwise read the whole year before it tried to hand a piece over.
    /// Default: never.
    fn gone(&self) -> bool {
        false
    }
}

impl<F> PieceSink for F
where
    F: FnMut(Vec<u8>, bool) -> Result<(), RetrievalError>,
{
    fn piece(&mut self, bytes: Vec<u8>, last: bool) -> Result<(), RetrievalError> {
        self(bytes, last)
    }
}

/// What a production did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Produced {
    /// PVs streamed.
    pub pvs: u64,
    /// Samples encoded (after the post-processor).
    pub samples: u64,
    /// Pieces handed to the sink, the last included.
    pub pieces: u64,
    /// Lines of the files that did not decode and were skipped.
    pub skipped_lines: u64,
}

/// Streams one or more planned PVs through a post-processor into an encoder, handing the
/// bytes to a sink in pieces of about `piece_size` bytes (default [`PIECE`]). Blocking
/// (it reads files); run it on a blocking thread.
///
/// ```
/// # use archiver_retrieval::{Producer, Plan, Raw, RetrievalError, json::JsonResponse};
/// # fn f(plan: &Plan) -> Result<(), RetrievalError> {
/// let mut body = Vec::new();
/// let mut sink = |bytes: Vec<u8>, _last: bool| {
///     body.extend(bytes);
///     Ok::<(), RetrievalError>(())
/// };
/// let mut producer = Producer::new(JsonResponse::new(), &mut sink);
/// producer.pv(plan, &mut Raw)?;
/// producer.finish()?;
/// # Ok(()) }
/// ```
pub struct Producer<'s, E> {
    encoder: E,
    sink: &'s mut dyn PieceSink,
    piece_size: usize,
    produced: Produced,
}

impl<E> std::fmt::Debug for Producer<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("piece_size", &self.piece_size)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

impl<'s, E: Encoder> Producer<'s, E> {
    /// A producer writing with `encoder` into `sink`.
    pub fn new(encoder: E, sink: &'s mut dyn PieceSink) -> Self {
        Producer {
            encoder,
            sink,
            piece_size: PIECE,
            produced: Produced::default(),
        }
    }

    /// Hands pieces of about `bytes` bytes instead of [`PIECE`] (at least 1).
    pub fn with_piece_size(mut self, bytes: usize) -> Self {
        self.piece_size = bytes.max(1);
        self
    }

    /// Streams the PV of `plan` through `pp`: its stores oldest first, then its live
    /// buffer, under the Java merge rule ([`crate::MergeDedup`]), over the plan's spans
    /// ([`Plan::read_spans`]). Errors: reading a file ([`RetrievalError::Storage`]) and
    /// whatever the sink or the post-processor returns (its `begin_pv` refusing the PV
    /// comes before anything is encoded); the pieces already handed over stay handed
    /// over. The encoder begins the PV at its first sample (or at its end), with the
    /// type the post-processor says then.
    ///
    /// With the identity ([`PostProcessor::is_identity`]: raw data) the merged samples
    /// go to [`Encoder::sample_from`] with their origin (source stream, stored line: pbraw
    /// frames the sources and copies the lines); otherwise through `pp` to
    /// [`Encoder::sample`]. A disconnected PV ([`Plan::disconnected`]) is told to the
    /// encoder after its samples ([`Encoder::connection_lost`]).
    pub fn pv<P: PostProcessor + ?Sized>(
        &mut self,
        plan: &Plan,
        pp: &mut P,
    ) -> Result<(), RetrievalError> {
        let mut desc = plan.desc.clone();
        pp.begin_pv(&mut desc)?;
        let mut out = PvOutput {
            encoder: &mut self.encoder,
            sink: &mut *self.sink,
            piece_size: self.piece_size,
            produced: &mut self.produced,
            desc,
            begun: false,
            forks: pp.is_identity(),
            blocks: None,
            copying: false,
        };
        let tiers: Vec<&Tier> = plan.stores.iter().collect();
        let spans = plan.read_spans();
        let mut skipped = 0;
        let spans: std::borrow::Cow<'_, [(Timestamp, Timestamp)]> = match &plan.cached {
            None => spans,
            Some(cached) => {
                // The older part from the stores' cached reductions, as they are.
                let before = clip(&spans, None, Some(cached.until));
                let reduced: Vec<&Tier> = cached.tiers.iter().collect();
                out.retype(cached.payload_type, cached.element_count);
                skipped += for_each_line(&reduced, &plan.pv, &before, &[], |s, _| out.sample(s))?;
                std::borrow::Cow::Owned(clip(&spans, Some(cached.until), None))
            }
        };
        // The stored lines inside the range are decoded (and, raw data in a text
        // format, encoded) in parts on two threads (`crate::block`); pbraw copies them.
        skipped += if spans.is_empty() {
            0
        } else if pp.is_identity() {
            read_lines(&tiers, &plan.pv, &spans, &plan.buffer, &mut out)?
        } else {
            let blocks = pp.binning().map_or_else(Blocks::decoding, Blocks::binning);
            let mut sink = PpLines {
                pp: &mut *pp,
                out: &mut out,
                blocks,
            };
            read_lines(&tiers, &plan.pv, &spans, &plan.buffer, &mut sink)?
        };
        pp.end_pv(&mut out)?;
        out.begin();
        // Ends the helper thread of the blocks, if any, and the borrow of the encoder.
        drop(out);
        if let Some(d) = plan.disconnected {
            self.encoder.connection_lost(d.lost_at_secs, d.year);
        }
        self.encoder.end_pv();
        self.produced.skipped_lines += skipped;
        self.produced.pvs += 1;
        Ok(())
    }
    /// Ends the response and hands over its last piece.
    pub fn finish(mut self) -> Result<Produced, RetrievalError> {
        self.encoder.end();
        self.sink.piece(self.encoder.take(), true)?;
        self.produced.pieces += 1;
        Ok(self.produced)
    }
}
