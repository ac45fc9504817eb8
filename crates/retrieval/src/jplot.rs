//! `getData.jplot` and `getDataForPVs.jplot` (Java `JPlotResponse`, `application/json`):
//! one series per PV, in the shape of flot-style plotting libraries.
//!
//! ```text
//! [
//! { "label": "PV", "data": [
//! [1418019667601, -0.09],
//! [1418019668000, 1.5] ] }
//!  ]
//! ```
//!
//! Difference from Java, to give valid JSON: the time is epoch milliseconds (Java writes
//! the `ZonedDateTime` text unquoted, `[2014-12-08T06:21:07.601158377Z[UTC], -0.09]`,
//! which no JSON parser reads) and the value is written as in `getData.json`
//! ([`crate::json::value`]: NaN `null`, strings quoted). Only PVs with samples appear; no
//! data at all is `[ \n ]\n`, as Java's.

use archiver_pb::Sample;

use crate::encode::Encoder;
use crate::json::{string, value};
use crate::plan::StreamDesc;
use crate::text::int;

/// Builds a `.jplot` body for one or more PVs.
#[derive(Debug)]
pub struct JplotResponse {
    out: Vec<u8>,
    open_pv: bool,
    need_comma: bool,
    deferred: Option<String>,
}

impl Default for JplotResponse {
    fn default() -> Self {
        Self::new()
    }
}

impl JplotResponse {
    /// An empty response.
    pub fn new() -> Self {
        JplotResponse {
            out: b"[ \n".to_vec(),
            open_pv: false,
            need_comma: false,
            deferred: None,
        }
    }
}

impl Encoder for JplotResponse {
    fn begin_pv(&mut self, desc: &StreamDesc) {
        self.deferred = Some(desc.name.clone());
    }

    fn sample(&mut self, s: &Sample) {
        let o = &mut self.out;
        if let Some(name) = self.deferred.take() {
            if self.open_pv {
                o.extend_from_slice(b" ] } , \n");
            }
            o.extend_from_slice(b"{ \"label\": ");
            string(o, &name);
            o.extend_from_slice(b", \"data\": [ \n");
            self.open_pv = true;
            self.need_comma = false;
        }
        if self.need_comma {
            o.extend_from_slice(b",\n");
        }
        self.need_comma = true;
        o.push(b'[');
        int(o, s.time.secs * 1000 + i64::from(s.time.nanos / 1_000_000));
        o.extend_from_slice(b", ");
        value(o, &s.value);
        o.push(b']');
    }

    fn end_pv(&mut self) {
        self.deferred = None;
    }

    fn end(&mut self) {
        if self.open_pv {
            self.out.extend_from_slice(b" ] } \n");
            self.open_pv = false;
        }
        self.out.extend_from_slice(b" ]\n");
    }

    fn pending(&self) -> usize {
        self.out.len()
    }

    fn take(&mut self) -> Vec<u8> {
        crate::encode::take_keeping_capacity(&mut self.out)
    }
}
