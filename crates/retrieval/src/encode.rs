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

/// The response formats served (`getData.<ext>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `getData.json`: [`crate::json::JsonResponse`].
    Json,
    /// `getData.raw` (pbraw): [`crate::raw::RawResponse`].
    Raw,
}

impl Format {
    /// The format of a `getData.<ext>` extension, `None` for one not served.
    pub fn from_extension(ext: &str) -> Option<Format> {
        match ext {
            "json" => Some(Format::Json),
            "raw" => Some(Format::Raw),
            _ => None,
        }
    }

    /// The extension of the format (`json`, `raw`).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Raw => "raw",
        }
    }

    /// The `Content-Type` of the format (Java `DataRetrievalServlet.mimeresponses`).
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Raw => "application/x-protobuf",
        }
    }
}
