//! `getData.csv` (Java `SinglePVCSVResponse`, `text/csv`): one line per sample,
//!
//! ```text
//! 1418019667,-0.09,0,0,601158377
//! ```
//!
//! epoch seconds, the value as Java's `toString` ([`crate::text`]: `1.0E-5`, `NaN`, a
//! waveform as `[1.0,2.0]`, a string as it is, unquoted), severity, status, nanoseconds;
//! then one empty line at the end of the body, as Java's (`SinglePVCSVResponse.close()` calls
//! `out.println()`, and `MergeDedupConsumer.close()` calls it at the end of every response;
//! pinned by the http crate's `csv_and_txt_are_javas_lines`). No data at all: the body is
//! `"\n"`, as Java's.
//! No header line and no PV name: the format is for one PV.

use archiver_pb::Sample;

use crate::encode::Encoder;
use crate::plan::StreamDesc;
use crate::text::{int, value_columns};

/// Builds a `getData.csv` body.
#[derive(Debug, Default)]
pub struct CsvResponse {
    out: Vec<u8>,
}

impl CsvResponse {
    /// An empty response.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Encoder for CsvResponse {
    fn begin_pv(&mut self, _desc: &StreamDesc) {}

    fn sample(&mut self, s: &Sample) {
        let o = &mut self.out;
        int(o, s.time.secs);
        value_columns(o, s, b',');
    }

    fn end_pv(&mut self) {}

    fn fork(&self) -> Option<Box<dyn Encoder + Send>> {
        Some(Box::new(CsvResponse::new()))
    }

    fn append(&mut self, encoded: &[u8]) {
        self.out.extend_from_slice(encoded);
    }

    fn end(&mut self) {
        self.out.push(b'\n');
    }

    fn pending(&self) -> usize {
        self.out.len()
    }

    fn take(&mut self) -> Vec<u8> {
        crate::encode::take_keeping_capacity(&mut self.out)
    }
}
