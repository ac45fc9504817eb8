//! The last stage before the socket: an [`Encoder`] turns samples into the bytes of one
//! response format; the [`crate::Producer`] takes those bytes in pieces.

use archiver_pb::Sample;

use crate::merge::Origin;
use crate::plan::StreamDesc;

/// Writes samples in one response format (Java `MimeResponse`) into an internal buffer
/// that the producer empties piece by piece. Call order: for each PV
/// [`Encoder::begin_pv`], [`Encoder::sample`] for each sample in time order,
/// [`Encoder::end_pv`]; then [`Encoder::end`] once. [`Encoder::pending`] and
/// [`Encoder::take`] may be called at any point; the concatenation of everything taken
/// is the body.
///
/// Implementations must not allocate per sample beyond the growth of their buffer (the
/// hot path of a retrieval runs through [`Encoder::sample`]).
pub trait Encoder {
    /// Starts the stream of one PV, described by `desc` (after the post-processor has
    /// set the type it emits). A format may write nothing until the first sample (JSON
    /// shows only PVs with data).
    fn begin_pv(&mut self, desc: &StreamDesc);

    /// Appends one sample of the current PV.
    fn sample(&mut self, s: &Sample);

    /// Appends one sample of the current PV read from a source, unchanged (no
    /// post-processor): `origin` says which source stream it comes from and, for a
    /// stored sample, the stored line. A format that frames sources or copies stored
    /// lines (pbraw) uses it; the others write the sample as [`Encoder::sample`] does
    /// (the default).
    fn sample_from(&mut self, s: &Sample, origin: Origin<'_>) {
        let _ = origin;
        self.sample(s);
    }

    /// After [`Encoder::sample_from`] with a stored sample: true when the stored lines
    /// that follow it in its file may be given to [`Encoder::lines`] as they are (pbraw,
    /// when the sample's line was copied into the current chunk); false (the default)
    /// for the formats that need every sample decoded.
    fn takes_lines(&self, origin: Origin<'_>) -> bool {
        let _ = origin;
        false
    }

    /// Stored lines (escaped, each ending in its newline) of the file of the last sample,
    /// following it, verbatim; only after [`Encoder::takes_lines`] said yes.
    fn lines(&mut self, bytes: &[u8]) {
        let _ = bytes;
    }

    /// After the last sample of the current PV, before [`Encoder::end_pv`]: the PV is
    /// disconnected now, since `lost_at_secs` (epoch seconds), and the request's range
    /// reaches into that time; `year` is the current year. A format that can say so
    /// does (pbraw: a chunk without samples whose header carries `cnxlostepsecs`, as
    /// the Java engine answers for a disconnected PV); the others ignore it (the
    /// default; Java's do too).
    fn connection_lost(&mut self, lost_at_secs: i64, year: i32) {
        let _ = (lost_at_secs, year);
    }

    /// Ends the current PV.
    fn end_pv(&mut self);

    /// Ends the response (closing brackets...). Call once, after the last PV.
    fn end(&mut self);

    /// Bytes written and not yet taken.
    fn pending(&self) -> usize;

    /// Takes the bytes written so far; the response goes on where it was.
    fn take(&mut self) -> Vec<u8>;

    /// A copy of this encoder in its current state with nothing pending, to encode on
    /// another thread samples that continue the current PV after a sample already
    /// encoded here; its bytes ([`Encoder::take`]) go into this one by
    /// [`Encoder::append`], in order. `None` (the default) for a format whose bytes for
    /// a sample depend on more than that state (pbraw frames sources; `.mat` counts).
    /// Used to encode a year of one PV on two threads (`crate::block`).
    fn fork(&self) -> Option<Box<dyn Encoder + Send>> {
        None
    }

    /// Appends bytes made by a fork of this encoder ([`Encoder::fork`]), as they are.
    /// Only a format that forks is given any (the default ignores them).
    fn append(&mut self, encoded: &[u8]) {
        let _ = encoded;
    }

    /// The most samples one response may hold, for an encoder that must build the whole
    /// answer before sending it (`.mat`); `None` (the default) for streamed formats. The
    /// producer stops with [`crate::RetrievalError::TooLargeForMat`] past it.
    fn max_samples(&self) -> Option<u64> {
        None
    }
}

/// The response formats served (`getData.<ext>`; Java `DataRetrievalServlet.mimeresponses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `json`: [`crate::json::JsonResponse`].
    Json,
    /// `raw` (pbraw): [`crate::raw::RawResponse`].
    Raw,
    /// `csv`: [`crate::csv::CsvResponse`] (one PV).
    Csv,
    /// `txt`: [`crate::txt::TextResponse`] (one PV).
    Txt,
    /// `qw` (the Grafana datasource's): [`crate::qw::QwResponse`].
    Qw,
    /// `jplot`: [`crate::jplot::JplotResponse`].
    Jplot,
    /// `mat` (MATLAB level 5): [`crate::mat::MatResponse`] (one PV).
    Mat,
}

impl Format {
    /// Every format served, in the order of Java's table.
    pub const ALL: [Format; 7] = [
        Format::Raw,
        Format::Json,
        Format::Qw,
        Format::Jplot,
        Format::Csv,
        Format::Txt,
        Format::Mat,
    ];

    /// The format of a `getData.<ext>` extension, `None` for one not served (Java's `svg`
    /// and `flx` are not).
    pub fn from_extension(ext: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.extension() == ext)
    }

    /// The extension of the format (`json`, `raw`, `csv`, `txt`, `qw`, `jplot`, `mat`).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Raw => "raw",
            Format::Csv => "csv",
            Format::Txt => "txt",
            Format::Qw => "qw",
            Format::Jplot => "jplot",
            Format::Mat => "mat",
        }
    }

    /// The `Content-Type` of the format, exactly as Java's
    /// (`DataRetrievalServlet.mimeresponses`): nothing appended (a widely used Python
    /// display client drops a response whose type is not exactly `application/json`).
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json | Format::Qw | Format::Jplot => "application/json",
            Format::Raw => "application/x-protobuf",
            Format::Csv => "text/csv",
            Format::Txt => "text/plain",
            Format::Mat => "application/matlab",
        }
    }

    /// Whether `getDataForPVs.<ext>` serves the format (Java: `json`, `raw`, `qw`,
    /// `jplot`; the others are single-PV formats).
    pub fn multi_pv(self) -> bool {
        matches!(
            self,
            Format::Json | Format::Raw | Format::Qw | Format::Jplot
        )
    }
}

/// The bytes encoded so far, leaving `out` empty with the same capacity (what every
/// encoder's [`Encoder::take`] does: the next piece reuses no memory of the last, which the
/// connection owns now, but is allocated once at its full size).
pub(crate) fn take_keeping_capacity(out: &mut Vec<u8>) -> Vec<u8> {
    let cap = out.capacity();
    std::mem::replace(out, Vec::with_capacity(cap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::{FieldValue, PayloadType, Timestamp, Value};

    fn encoder(f: Format) -> Box<dyn Encoder> {
        match f {
            Format::Json => Box::new(crate::json::JsonResponse::new()),
            Format::Raw => Box::new(crate::raw::RawResponse::new()),
            Format::Csv => Box::new(crate::csv::CsvResponse::new()),
            Format::Txt => Box::new(crate::txt::TextResponse::new()),
            Format::Qw => Box::new(crate::qw::QwResponse::new()),
            Format::Jplot => Box::new(crate::jplot::JplotResponse::new()),
            Format::Mat => Box::new(crate::mat::MatResponse::new()),
        }
    }

    fn desc(name: &str) -> StreamDesc {
        StreamDesc {
            name: name.into(),
            payload_type: PayloadType::ScalarDouble,
            element_count: 1,
            headers: vec![FieldValue::new("EGU", "a\"b")],
            from: Timestamp::new(1_700_000_000, 0),
            to: Timestamp::new(1_700_000_100, 0),
        }
    }

    /// Three PVs (the middle one without samples), taking the bytes every `every` samples.
    fn body(f: Format, every: usize) -> Vec<u8> {
        let mut e = encoder(f);
        let mut out = Vec::new();
        for (pv, n) in [("A:B", 5), ("EMPTY", 0), ("C:D", 4)] {
            e.begin_pv(&desc(pv));
            for k in 0..n {
                let mut s = Sample::new(
                    Timestamp::new(1_700_000_000 + k, 250_000_000),
                    Value::ScalarDouble(if k == 2 { f64::NAN } else { k as f64 / 8.0 }),
                );
                if k == 1 {
                    s.field_values.push(FieldValue::new("cnxlostepsecs", "0"));
                }
                e.sample(&s);
                if every > 0 && (k as usize).is_multiple_of(every) {
                    out.extend(e.take());
                    assert_eq!(e.pending(), 0);
                }
            }
            e.end_pv();
        }
        e.end();
        out.extend(e.take());
        out
    }

    #[test]
    fn every_format_gives_the_same_body_whatever_the_pieces() {
        for f in Format::ALL {
            let whole = body(f, 0);
            assert_eq!(body(f, 1), whole, "{f:?}");
            assert_eq!(body(f, 3), whole, "{f:?}");
        }
    }

    #[test]
    fn json_formats_are_valid_json_with_the_pvs_that_have_data() {
        for f in [Format::Json, Format::Qw, Format::Jplot] {
            let v: serde_json::Value =
                serde_json::from_slice(&body(f, 0)).unwrap_or_else(|e| panic!("{f:?}: {e}"));
            let pvs = v.as_array().expect("a list");
            assert_eq!(pvs.len(), 2, "{f:?}: only PVs with samples");
        }
        let v: serde_json::Value = serde_json::from_slice(&body(Format::Qw, 0)).expect("qw");
        assert_eq!(v[0]["meta"]["EGU"], "a\"b");
        assert_eq!(v[0]["data"][1]["millis"], 1_700_000_001_250i64);
        assert_eq!(v[0]["data"][1]["fields"]["cnxlostepsecs"], "0");
        assert_eq!(v[0]["data"][2]["val"], serde_json::Value::Null);
        assert_eq!(v[1]["meta"]["name"], "C:D");
        let v: serde_json::Value = serde_json::from_slice(&body(Format::Jplot, 0)).expect("jplot");
        assert_eq!(v[1]["label"], "C:D");
        assert_eq!(
            v[1]["data"][3],
            serde_json::json!([1_700_000_003_250i64, 0.375])
        );
    }

    #[test]
    fn text_formats_write_javas_lines() {
        let csv = String::from_utf8(body(Format::Csv, 0)).expect("utf8");
        let lines: Vec<&str> = csv.split('\n').collect();
        assert_eq!(lines[0], "1700000000,0.0,0,0,250000000");
        assert_eq!(lines[2], "1700000002,NaN,0,0,250000000");
        assert_eq!(
            lines.len(),
            11,
            "9 samples, the final empty line, the split's tail"
        );
        let txt = String::from_utf8(body(Format::Txt, 0)).expect("utf8");
        let lines: Vec<&str> = txt.lines().collect();
        assert_eq!(lines[0], "Beginning data for A:B");
        assert_eq!(lines[1], "Nov/14/2023 22:13:20 UTC\t0.0\t0\t0\t250000000");
        assert_eq!(
            lines[6], "Beginning data for C:D",
            "no line for a PV without data"
        );
        assert_eq!(lines.len(), 11);
        let mut out = Vec::new();
        crate::txt::human_time(&mut out, 0);
        assert_eq!(out, b"Never");
    }

    #[test]
    fn the_format_table_is_javas() {
        for f in Format::ALL {
            assert_eq!(Format::from_extension(f.extension()), Some(f));
        }
        assert_eq!(Format::from_extension("svg"), None);
        assert_eq!(Format::Qw.content_type(), "application/json");
        assert_eq!(Format::Csv.content_type(), "text/csv");
        assert_eq!(Format::Txt.content_type(), "text/plain");
        assert_eq!(Format::Raw.content_type(), "application/x-protobuf");
        assert_eq!(Format::Mat.content_type(), "application/matlab");
        let multi: Vec<&str> = Format::ALL
            .iter()
            .filter(|f| f.multi_pv())
            .map(|f| f.extension())
            .collect();
        assert_eq!(multi, ["raw", "json", "qw", "jplot"]);
    }
}
