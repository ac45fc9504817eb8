//! `getData.raw` (pbraw): PlainPB lines over HTTP, as the Java appliance and its clients
//! (Phoebus, aapy, the Grafana plugin) frame them.
//!
//! The body starts with a `PayloadInfo` line (type, PV name, year, element count, headers),
//! then one escaped sample per line. When the year changes, a new PV starts, or the type
//! of the samples changes (the stores of a PV whose IOC changed its type; Java starts a
//! chunk per stream for that), an empty line is followed by a new header.

use archiver_pb::codec::{encode_header_line, encode_line};
use archiver_pb::{FieldValue, PayloadInfo, PayloadType, Sample};

use crate::encode::Encoder;
use crate::plan::StreamDesc;

/// Builds a pbraw body for one or more PVs.
#[derive(Debug, Default)]
pub struct RawResponse {
    out: Vec<u8>,
    header: Option<PayloadInfo>,
    year: Option<i32>,
    scratch: Vec<u8>,
    /// Some header has been written (a later one is preceded by an empty line).
    started: bool,
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
            headers,
        });
        self.year = None;
    }

    fn write_header(&mut self, year: i32) {
        let Some(h) = self.header.as_mut() else {
            return;
        };
        if self.started {
            self.out.push(b'\n');
        }
        self.started = true;
        h.year = year;
        encode_header_line(h, &mut self.out);
        self.year = Some(year);
    }

    /// Appends a sample of the current PV (re-heading at a year change, and when the
    /// sample's type is not the header's, so that the client decodes it as what it is).
    pub fn sample(&mut self, s: &Sample) {
        let year = s.time.year();
        let ty = s.value.payload_type();
        if let Some(h) = self.header.as_mut()
            && h.payload_type != ty
        {
            h.payload_type = ty;
            self.year = None;
        }
        if self.year != Some(year) {
            self.write_header(year);
        }
        // A sample always fits its own year, so encoding cannot fail.
        let _ = encode_line(s, year, &mut self.out, &mut self.scratch);
    }

    /// Ends the current PV; a PV without samples still gets its header (for `year`), so
    /// that clients learn its type.
    pub fn end_pv(&mut self, year_if_empty: i32) {
        if self.year.is_none() {
            self.write_header(year_if_empty);
        }
        self.header = None;
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
