//! `getData.qw` and `getDataForPVs.qw` (Java `QWResponse`, `application/json`): the shape
//! the Grafana datasource reads in its default mode.
//!
//! ```text
//! [
//! { "meta": { "name": "PV" , "waveform": false , "EGU": "mR/h" , "PREC": "2" },
//! "data": [
//! { "millis": 1418019667601, "val": -0.09 },
//! { "millis": 1418019668000, "val": null, "fields": { "cnxlostepsecs": "0"} }] }
//!  ]
//! ```
//!
//! `millis` = epoch seconds × 1000 + nanoseconds / 10⁶; `meta.waveform` says whether the
//! PV's type is a waveform; headers follow in order. Values as in `getData.json`
//! ([`crate::json::value`]): NaN and infinities are `null` (Java turns only a scalar `NaN`
//! into `null`), strings escaped. Only PVs with samples appear; no data at all is
//! `[ \n ]\n`, as Java's.

use archiver_pb::{FieldValue, Sample};

use crate::encode::Encoder;
use crate::json::{string, value};
use crate::plan::StreamDesc;
use crate::text::int;

/// Builds a `.qw` body for one or more PVs.
#[derive(Debug)]
pub struct QwResponse {
    out: Vec<u8>,
    /// A PV object is open (its `] }` is due).
    open_pv: bool,
    /// The current PV has a sample (the next one is preceded by a comma).
    need_comma: bool,
    /// The PV begun whose `meta` waits for a first sample: name, waveform, headers.
    deferred: Option<(String, bool, Vec<FieldValue>)>,
}

impl Default for QwResponse {
    fn default() -> Self {
        Self::new()
    }
}

impl QwResponse {
    /// An empty response.
    pub fn new() -> Self {
        QwResponse {
            out: b"[ \n".to_vec(),
            open_pv: false,
            need_comma: false,
            deferred: None,
        }
    }

    fn write_meta(&mut self, name: &str, waveform: bool, headers: &[FieldValue]) {
        let o = &mut self.out;
        if self.open_pv {
            o.extend_from_slice(b"] },\n");
        }
        o.extend_from_slice(b"{ \"meta\": { \"name\": ");
        string(o, name);
        o.extend_from_slice(b" , \"waveform\": ");
        o.extend_from_slice(if waveform { b"true" } else { b"false" });
        o.push(b' ');
        for h in headers.iter().filter(|h| !h.val.is_empty()) {
            o.extend_from_slice(b", ");
            string(o, &h.name);
            o.extend_from_slice(b": ");
            string(o, &h.val);
            o.push(b' ');
        }
        o.extend_from_slice(b"},\n\"data\": [ \n");
        self.open_pv = true;
        self.need_comma = false;
    }
}

impl Encoder for QwResponse {
    fn begin_pv(&mut self, desc: &StreamDesc) {
        self.deferred = Some((
            desc.name.clone(),
            desc.payload_type.is_waveform(),
            desc.headers.clone(),
        ));
    }

    fn sample(&mut self, s: &Sample) {
        if let Some((name, waveform, headers)) = self.deferred.take() {
            self.write_meta(&name, waveform, &headers);
        }
        let o = &mut self.out;
        if self.need_comma {
            o.extend_from_slice(b",\n");
        }
        self.need_comma = true;
        o.extend_from_slice(b"{ \"millis\": ");
        int(o, s.time.secs * 1000 + i64::from(s.time.nanos / 1_000_000));
        o.extend_from_slice(b", \"val\": ");
        value(o, &s.value);
        if !s.field_values.is_empty() {
            o.extend_from_slice(b", \"fields\": { ");
            for (i, f) in s.field_values.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                string(o, &f.name);
                o.extend_from_slice(b": ");
                string(o, &f.val);
            }
            o.push(b'}');
        }
        o.extend_from_slice(b" }");
    }

    /// As `getData.json` ([`crate::json::JsonResponse`]): a PV without samples that is
    /// disconnected now shows its `meta` with `cnxlostepsecs` and no data.
    fn connection_lost(&mut self, lost_at_secs: i64, _year: i32) {
        if let Some((name, waveform, mut headers)) = self.deferred.take() {
            headers.push(FieldValue::new("cnxlostepsecs", lost_at_secs.to_string()));
            self.write_meta(&name, waveform, &headers);
        }
    }

    fn end_pv(&mut self) {
        self.deferred = None;
    }

    fn fork(&self) -> Option<Box<dyn Encoder + Send>> {
        Some(Box::new(QwResponse {
            out: Vec::new(),
            open_pv: self.open_pv,
            need_comma: self.need_comma,
            deferred: self.deferred.clone(),
        }))
    }

    fn append(&mut self, encoded: &[u8]) {
        self.out.extend_from_slice(encoded);
    }

    fn end(&mut self) {
        if self.open_pv {
            self.out.extend_from_slice(b"] }\n");
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
