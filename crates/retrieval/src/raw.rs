//! `getData.raw` (pbraw): PlainPB lines over HTTP, framed as the Java appliance frames
//! them (`PBRAWResponse`) and its clients (Phoebus, aapy, the Grafana plugin,
//! `epicsarchiver-retrieval-client`) read them.
//!
//! ```text
//! PayloadInfo(type, pvname, year, elementCount, headers)\n   ← first line, no empty line before
//! sample\n sample\n ...                                         ← the last one ends in \n
//! \n PayloadInfo(...)\n sample\n ...                           ← a new chunk
//! ```
//!
//! * Every header carries the PV's name as requested (`pvname`), its type, the year of
//!   its samples, the element count and the headers of the response (`EGU`, `PREC`,
//!   `ENUM_n`, ...; empty values never listed).
//! * A new chunk (an empty line, then a header) starts at every source stream of a PV
//!   (each partition file of each store, then the live buffer: Java's one stream per
//!   source), at every UTC year, when the type of the samples changes, and at every PV.
//!   Post-processed samples come as one stream: chunks at years and type changes only.
//! * Stored samples are copied verbatim: the escaped line of the file, as it is
//!   ([`Encoder::sample_from`] with a line), when it is relative to the chunk's year
//!   (always, for a file that holds one year as partitions do); the live buffer's and a
//!   post-processor's samples are encoded. Nothing is allocated per sample.
//! * Differences from Java's bytes, none of which a client sees: Java writes every
//!   stream's header eagerly (so a file whose samples are all duplicates, or a store
//!   without data, leaves a chunk without samples) and writes the first header twice
//!   (once for the stream, once more with the year of the first event); here a chunk is
//!   written when it has a sample. Within one stream, samples are not checked against
//!   each other (as Java); the chunk's type is the stored type of its file.
//! * A PV without samples still gets its header (for the year of `from`), so that
//!   clients learn its type; a disconnected PV ends with a chunk without samples whose
//!   header adds `cnxlostepsecs` ([`Encoder::connection_lost`]), as the Java engine's
//!   answer for a disconnected PV.

use archiver_pb::codec::{encode_header_line, encode_line};
use archiver_pb::time::start_of_year;
use archiver_pb::{FieldValue, PayloadInfo, PayloadType, Sample};

use crate::encode::Encoder;
use crate::merge::Origin;
use crate::plan::StreamDesc;

/// The stream of samples given without an origin ([`Encoder::sample`]: post-processed).
const PROCESSED: u32 = u32::MAX - 1;

/// What one chunk holds: samples of one source stream, one year, one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    stream: u32,
    year: i32,
    payload_type: PayloadType,
}

/// Builds a pbraw body for one or more PVs.
#[derive(Debug, Default)]
pub struct RawResponse {
    out: Vec<u8>,
    /// The header of the current PV (its `year` and `type` set per chunk).
    header: Option<PayloadInfo>,
    /// The chunk being written, `None` before the PV's first.
    chunk: Option<Chunk>,
    /// The UTC year `[year_start, year_end)` (epoch seconds) of the last sample, so that
    /// most samples need no calendar arithmetic.
    year: i32,
    year_start: i64,
    year_end: i64,
    scratch: Vec<u8>,
    /// Some header has been written (a later one is preceded by an empty line).
    started: bool,
    /// A header has been written for the current PV.
    pv_headed: bool,
    /// The year of the header of a PV without samples (the year of `from`), for
    /// [`Encoder::end_pv`].
    year_if_empty: i32,
}

impl RawResponse {
    /// An empty response.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a PV: its samples are `payload_type`, with these headers (EGU, PREC...).
    pub fn begin_pv(
        &mut self,
        pv: &str,
        payload_type: PayloadType,
        element_count: i32,
        headers: Vec<FieldValue>,
    ) {
        self.header = Some(PayloadInfo {
            payload_type,
            pv_name: pv.to_string(),
            year: 0,
            element_count: Some(element_count),
            headers: headers.into_iter().filter(|h| !h.val.is_empty()).collect(),
        });
        self.chunk = None;
        self.pv_headed = false;
    }

    /// Writes the header of a new chunk: an empty line first unless it is the body's
    /// first line.
    fn write_header(&mut self, year: i32, payload_type: PayloadType, extra: Option<&FieldValue>) {
        let Some(h) = self.header.as_mut() else {
            return;
        };
        if self.started {
            self.out.push(b'\n');
        }
        self.started = true;
        self.pv_headed = true;
        h.year = year;
        h.payload_type = payload_type;
        match extra {
            None => encode_header_line(h, &mut self.out),
            Some(field) => {
                let mut with = h.clone();
                with.headers.retain(|x| x.name != field.name);
                with.headers.push(field.clone());
                encode_header_line(&with, &mut self.out);
            }
        }
    }

    /// The UTC year of `secs`.
    #[inline]
    fn year_of(&mut self, secs: i64) -> i32 {
        if secs < self.year_start || secs >= self.year_end {
            self.year = archiver_pb::time::year_of(secs);
            self.year_start = start_of_year(self.year);
            self.year_end = start_of_year(self.year.saturating_add(1));
        }
        self.year
    }

    /// Appends a sample of the current PV as one stream (post-processed samples):
    /// re-headed at a year change, and when the sample's type is not the header's, so
    /// that the client decodes it as what it is.
    pub fn sample(&mut self, s: &Sample) {
        self.sample_from(
            s,
            Origin {
                stream: PROCESSED,
                line: None,
                year: 0,
            },
        );
    }

    /// Appends a sample of the current PV from the source stream `origin.stream`: a new
    /// chunk when the stream, the year or the type changes; the stored line copied as it
    /// is when there is one for the sample's year, else the sample encoded.
    #[inline]
    pub fn sample_from(&mut self, s: &Sample, origin: Origin<'_>) {
        let year = self.year_of(s.time.secs);
        let chunk = Chunk {
            stream: origin.stream,
            year,
            payload_type: s.value.payload_type(),
        };
        if self.chunk != Some(chunk) {
            self.write_header(year, chunk.payload_type, None);
            self.chunk = Some(chunk);
        }
        match origin.line {
            Some(line) if origin.year == year => {
                self.out.extend_from_slice(line);
                self.out.push(b'\n');
            }
            // A sample always fits its own year, so encoding cannot fail.
            _ => {
                let _ = encode_line(s, year, &mut self.out, &mut self.scratch);
            }
        }
    }

    /// After the PV's samples: it is disconnected since `lost_at_secs`; a chunk without
    /// samples for `year` whose header adds `cnxlostepsecs` (Java's engine answer).
    pub fn connection_lost(&mut self, lost_at_secs: i64, year: i32) {
        let Some(ty) = self.header.as_ref().map(|h| h.payload_type) else {
            return;
        };
        let ty = self.chunk.map_or(ty, |c| c.payload_type);
        let field = FieldValue::new("cnxlostepsecs", lost_at_secs.to_string());
        self.write_header(year, ty, Some(&field));
        self.chunk = None;
    }

    /// Ends the current PV; a PV without samples still gets its header (for `year`), so
    /// that clients learn its type.
    pub fn end_pv(&mut self, year_if_empty: i32) {
        if !self.pv_headed {
            let ty = self
                .header
                .as_ref()
                .map_or(PayloadType::ScalarDouble, |h| h.payload_type);
            self.write_header(year_if_empty, ty, None);
        }
        self.header = None;
        self.chunk = None;
    }

    /// Bytes written and not yet taken.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Takes the bytes written so far (to send them while the rest is produced); the
    /// response goes on where it was.
    pub fn take(&mut self) -> Vec<u8> {
        let cap = self.out.capacity();
        std::mem::replace(&mut self.out, Vec::with_capacity(cap))
    }

    /// The rest of the body (all of it if nothing was taken).
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

impl Encoder for RawResponse {
    fn begin_pv(&mut self, desc: &StreamDesc) {
        RawResponse::begin_pv(
            self,
            &desc.name,
            desc.payload_type,
            i32::try_from(desc.element_count).unwrap_or(i32::MAX),
            desc.headers.clone(),
        );
        self.year_if_empty = desc.from.year();
    }

    fn sample(&mut self, s: &Sample) {
        RawResponse::sample(self, s);
    }

    fn sample_from(&mut self, s: &Sample, origin: Origin<'_>) {
        RawResponse::sample_from(self, s, origin);
    }

    /// Yes when the sample's stored line went verbatim into the current chunk (same
    /// stream, the file's year): the lines after it in its file belong to that chunk.
    fn takes_lines(&self, origin: Origin<'_>) -> bool {
        origin.line.is_some()
            && self
                .chunk
                .is_some_and(|c| c.stream == origin.stream && c.year == origin.year)
    }

    fn lines(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn connection_lost(&mut self, lost_at_secs: i64, year: i32) {
        RawResponse::connection_lost(self, lost_at_secs, year);
    }

    fn end_pv(&mut self) {
        RawResponse::end_pv(self, self.year_if_empty);
    }

    fn end(&mut self) {}

    fn pending(&self) -> usize {
        RawResponse::pending(self)
    }

    fn take(&mut self) -> Vec<u8> {
        RawResponse::take(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::time::start_of_year;
    use archiver_pb::{PbReader, Timestamp, Value};

    #[test]
    fn year_change_starts_a_new_chunk() {
        let mut r = RawResponse::new();
        r.begin_pv(
            "A:B",
            PayloadType::ScalarDouble,
            1,
            vec![FieldValue::new("EGU", "mm")],
        );
        r.sample(&Sample::new(
            Timestamp::new(start_of_year(2017) - 1, 0),
            Value::ScalarDouble(1.0),
        ));
        r.sample(&Sample::new(
            Timestamp::new(start_of_year(2017), 0),
            Value::ScalarDouble(2.0),
        ));
        r.end_pv(2017);
        let body = r.finish();
        let chunks: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
        // header, sample, empty, header, sample, "" after the final newline
        assert_eq!(chunks.len(), 6);
        assert!(chunks[2].is_empty());
        let first = PbReader::new(std::io::Cursor::new(&body[..])).expect("header");
        assert_eq!(first.header().year, 2016);
        assert_eq!(first.header().element_count, Some(1));
        assert_eq!(first.header().header("EGU"), Some("mm"));
        assert_eq!(body.last(), Some(&b'\n'));
    }

    /// Writes two PVs over a year change, taking the bytes every `every` samples.
    fn body_taken_every(every: usize) -> Vec<u8> {
        let mut r = RawResponse::new();
        let mut out = Vec::new();
        let y = start_of_year(2017);
        for pv in ["A:B", "C:D"] {
            r.begin_pv(pv, PayloadType::ScalarDouble, 1, Vec::new());
            for k in -3..3 {
                r.sample(&Sample::new(
                    Timestamp::new(y + k, 0),
                    Value::ScalarDouble(1.0),
                ));
                if every > 0 && ((k + 3) as usize).is_multiple_of(every) {
                    out.extend(r.take());
                }
            }
            r.end_pv(2017);
        }
        out.extend(r.finish());
        out
    }

    #[test]
    fn taking_pieces_gives_the_same_body() {
        let whole = body_taken_every(0);
        assert_eq!(body_taken_every(1), whole);
        assert_eq!(body_taken_every(2), whole);
        // three headers after the first, each after an empty line
        assert_eq!(whole.windows(2).filter(|w| w == b"\n\n").count(), 3);
    }
}
