//! The last stage before the socket: an [`Encoder`] turns samples into the bytes of one
//! response format; the [`crate::Producer`] takes those bytes in pieces.

use archiver_pb::Sample;

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

    /// Ends the current PV.
    fn end_pv(&mut self);

    /// Ends the response (closing brackets...). Call once, after the last PV.
    fn end(&mut self);

    /// Bytes written and not yet taken.
    fn pending(&self) -> usize;

    /// Takes the bytes written so far; the response goes on where it was.
    fn take(&mut self) -> Vec<u8>;
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
}

impl Format {
    /// Every format served, in the order of Java's table.
    pub const ALL: [Format; 6] = [
        Format::Raw,
        Format::Json,
        Format::Qw,
        Format::Jplot,
        Format::Csv,
        Format::Txt,
    ];

    /// The format of a `getData.<ext>` extension, `None` for one not served (Java's `svg`,
    /// `flx`, `mat` are not).
    pub fn from_extension(ext: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.extension() == ext)
    }

    /// The extension of the format (`json`, `raw`, `csv`, `txt`, `qw`, `jplot`).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Raw => "raw",
            Format::Csv => "csv",
            Format::Txt => "txt",
            Format::Qw => "qw",
            Format::Jplot => "jplot",
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
