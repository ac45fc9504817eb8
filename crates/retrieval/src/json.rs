//! `getData.json`: the Java appliance's JSON response, streamed into a byte buffer.
//!
//! ```text
//! [
//! { "meta": { "name": "PV", "EGU": "mR/h", "PREC": "2" },
//! "data": [
//! { "secs": 1418019667, "val": -0.09, "nanos": 601158377, "severity": 0, "status": 0 },
//! { "secs": …, "val": …, "nanos": …, "severity": 1, "status": 7, "fields": { "cnxlostepsecs": "0" } }
//! ] }
//! ]
//! ```
//!
//! Key order is Java's. Differences, all to give valid JSON: NaN and infinities are `null`
//! (Java writes `NaN`, which no JSON parser accepts), and meta values are escaped.

use archiver_pb::{FieldValue, Sample, Value};

use crate::encode::Encoder;
use crate::plan::StreamDesc;
use crate::text::{int, list};

/// Room reserved once per sample: the longest scalar sample (`,\n{ "secs": -9223372036854775808,
/// "val": -1.7976931348623157e308, ... }`) fits, so its writes do not grow the buffer.
const SCALAR_SAMPLE_BYTES: usize = 160;

/// Writes `s` as a JSON string (quoted, escaped).
pub fn string(out: &mut Vec<u8>, s: &str) {
    // Writing a str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes `["a","b",...]`.
pub(crate) fn strings(out: &mut Vec<u8>, v: &[String]) {
    out.push(b'[');
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

/// A finite number as serde_json writes it (its own formatter, `zmij`, called directly:
/// the per-number serializer set-up is most of the cost at millions of samples), else
/// `null`.
pub(crate) fn f64_val(out: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(x).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

pub(crate) fn f32_val(out: &mut Vec<u8>, x: f32) {
    if x.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(x).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Writes a sample's value as JSON.
pub fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::ScalarString(s) => string(out, s),
        Value::ScalarShort(x) | Value::ScalarEnum(x) => int(out, *x),
        Value::ScalarFloat(x) => f32_val(out, *x),
        Value::ScalarByte(x) => int(out, *x),
        Value::ScalarInt(x) => int(out, *x),
        Value::ScalarDouble(x) => f64_val(out, *x),
        Value::VectorString(v) => strings(out, v),
        Value::VectorShort(v) | Value::VectorEnum(v) => list(out, v, int),
        Value::VectorFloat(v) => list(out, v, f32_val),
        Value::VectorChar(v) => list(out, v, |o, b| int(o, b as i8)),
        Value::VectorInt(v) => list(out, v, int),
        Value::VectorDouble(v) => list(out, v, f64_val),
        // Java: the decoded structure as an object (ByteBufSampleValue.toJSONString)
        Value::V4GenericBytes(v) => crate::generic::generic_bytes(out, v),
    }
}

/// Builds a `getData.json` body: call [`JsonResponse::begin_pv`] for each PV with data,
/// [`JsonResponse::sample`] for its samples, then [`JsonResponse::finish`]. As an
/// [`Encoder`] (what the pipeline uses), a PV's `meta` is written at its first sample, so
/// that only PVs with data appear (Java's shape: no data at all is `[ \n ]`).
#[derive(Debug)]
pub struct JsonResponse {
    out: Vec<u8>,
    pvs: usize,
    samples_in_pv: usize,
    open_pv: bool,
    /// The PV begun through [`Encoder::begin_pv`] whose `meta` waits for a first sample.
    deferred: Option<(String, Vec<FieldValue>)>,
}

impl Default for JsonResponse {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonResponse {
    /// An empty response.
    pub fn new() -> Self {
        JsonResponse {
            out: b"[ \n".to_vec(),
            pvs: 0,
            samples_in_pv: 0,
            open_pv: false,
            deferred: None,
        }
    }

    /// Starts the object of one PV with its `meta` (name first, then `headers`).
    pub fn begin_pv(&mut self, name: &str, headers: &[(String, String)]) {
        self.write_meta(name, headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }

    fn write_meta<'a>(&mut self, name: &str, headers: impl Iterator<Item = (&'a str, &'a str)>) {
        self.end_pv();
        self.deferred = None;
        if self.pvs > 0 {
            self.out.extend_from_slice(b",\n");
        }
        self.out.extend_from_slice(b"{ \"meta\": { \"name\": ");
        string(&mut self.out, name);
        for (k, v) in headers {
            self.out.extend_from_slice(b" , ");
            string(&mut self.out, k);
            self.out.extend_from_slice(b": ");
            string(&mut self.out, v);
        }
        self.out.extend_from_slice(b" },\n\"data\": [ \n");
        self.pvs += 1;
        self.samples_in_pv = 0;
        self.open_pv = true;
    }

    /// Appends one sample to the current PV.
    pub fn sample(&mut self, s: &Sample) {
        if let Some((name, headers)) = self.deferred.take() {
            self.write_meta(
                &name,
                headers.iter().map(|f| (f.name.as_str(), f.val.as_str())),
            );
        }
        // The constant parts in as few writes as can be: the separator with the opening,
        // and the alarm of most samples (none) as one piece.
        let open: &[u8] = if self.samples_in_pv > 0 {
            b",\n{ \"secs\": "
        } else {
            b"{ \"secs\": "
        };
        self.samples_in_pv += 1;
        let o = &mut self.out;
        o.reserve(SCALAR_SAMPLE_BYTES);
        o.extend_from_slice(open);
        int(o, s.time.secs);
        o.extend_from_slice(b", \"val\": ");
        value(o, &s.value);
        o.extend_from_slice(b", \"nanos\": ");
        int(o, s.time.nanos);
        if s.severity == 0 && s.status == 0 {
            o.extend_from_slice(b", \"severity\": 0, \"status\": 0");
        } else {
            o.extend_from_slice(b", \"severity\": ");
            int(o, s.severity);
            o.extend_from_slice(b", \"status\": ");
            int(o, s.status);
        }
        if !s.field_values.is_empty() {
            o.extend_from_slice(b", \"fields\": { ");
            for (i, f) in s.field_values.iter().enumerate() {
                if i > 0 {
                    o.extend_from_slice(b", ");
                }
                string(o, &f.name);
                o.extend_from_slice(b": ");
                string(o, &f.val);
            }
            o.extend_from_slice(b" }");
        }
        o.extend_from_slice(b" }");
    }

    fn end_pv(&mut self) {
        if self.open_pv {
            self.out.extend_from_slice(b"\n] }");
            self.open_pv = false;
        }
    }

    /// Bytes written and not yet taken.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Takes the bytes written so far (to send them while the rest is produced); the
    /// response goes on where it was.
    pub fn take(&mut self) -> Vec<u8> {
        crate::encode::take_keeping_capacity(&mut self.out)
    }

    /// The rest of the body (all of it if nothing was taken).
    pub fn finish(mut self) -> Vec<u8> {
        Encoder::end(&mut self);
        self.out
    }
}

impl Encoder for JsonResponse {
    fn begin_pv(&mut self, desc: &StreamDesc) {
        self.end_pv();
        self.deferred = Some((desc.name.clone(), desc.headers.clone()));
    }

    fn sample(&mut self, s: &Sample) {
        JsonResponse::sample(self, s);
    }

    /// Java's `meta` is the header of the PV's first stream; the engine's answer for a
    /// disconnected PV is a header-only stream carrying `cnxlostepsecs`, first when
    /// nothing else is in range: a PV without samples then shows its `meta` with
    /// `cnxlostepsecs` and no data. After samples the `meta` went out already (Java's
    /// came from a store's header, without it).
    fn connection_lost(&mut self, lost_at_secs: i64, _year: i32) {
        if let Some((name, mut headers)) = self.deferred.take() {
            headers.push(FieldValue::new("cnxlostepsecs", lost_at_secs.to_string()));
            self.write_meta(
                &name,
                headers.iter().map(|f| (f.name.as_str(), f.val.as_str())),
            );
        }
    }

    fn end_pv(&mut self) {
        self.deferred = None;
        JsonResponse::end_pv(self);
    }

    fn end(&mut self) {
        Encoder::end_pv(self);
        // No PV with data: Java's empty answer exactly, `[ \n ]\n`.
        let close: &[u8] = if self.pvs == 0 { b" ]\n" } else { b"\n ]\n" };
        self.out.extend_from_slice(close);
    }

    fn pending(&self) -> usize {
        JsonResponse::pending(self)
    }

    fn take(&mut self) -> Vec<u8> {
        JsonResponse::take(self)
    }

    fn fork(&self) -> Option<Box<dyn Encoder + Send>> {
        Some(Box::new(JsonResponse {
            out: Vec::new(),
            pvs: self.pvs,
            samples_in_pv: self.samples_in_pv,
            open_pv: self.open_pv,
            deferred: self.deferred.clone(),
        }))
    }

    fn append(&mut self, encoded: &[u8]) {
        self.out.extend_from_slice(encoded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_pb::{FieldValue, Timestamp};

    #[test]
    fn taking_pieces_gives_the_same_body() {
        let build = |every: usize| {
            let mut r = JsonResponse::new();
            let mut out = Vec::new();
            for pv in ["A:B", "C:D"] {
                r.begin_pv(pv, &[("EGU".to_string(), "mm".to_string())]);
                for k in 0..5 {
                    r.sample(&Sample::new(Timestamp::new(k, 0), Value::ScalarDouble(0.5)));
                    if every > 0 && (k as usize).is_multiple_of(every) {
                        assert!(r.pending() > 0);
                        out.extend(r.take());
                        assert_eq!(r.pending(), 0);
                    }
                }
            }
            out.extend(r.finish());
            out
        };
        let whole = build(0);
        assert_eq!(build(1), whole);
        assert_eq!(build(3), whole);
        let v: serde_json::Value = serde_json::from_slice(&whole).expect("valid JSON");
        assert_eq!(v[1]["data"].as_array().map(Vec::len), Some(5));
    }

    #[test]
    fn java_shape_and_valid_json() {
        let mut r = JsonResponse::new();
        r.begin_pv(
            "LN-AM{RadMon:2}DoseRate-I",
            &[("EGU".into(), "mR/h".into()), ("PREC".into(), "2".into())],
        );
        r.sample(&Sample::new(
            Timestamp::new(1_418_019_667, 601_158_377),
            Value::ScalarDouble(-0.09),
        ));
        let mut s = Sample::new(
            Timestamp::new(1_418_019_668, 0),
            Value::ScalarDouble(f64::NAN),
        );
        s.severity = 1;
        s.status = 7;
        s.field_values.push(FieldValue::new("cnxlostepsecs", "0"));
        r.sample(&s);
        let body = r.finish();
        let text = String::from_utf8(body.clone()).expect("utf8");
        assert!(text.contains("{ \"secs\": 1418019667, \"val\": -0.09, \"nanos\": 601158377, \"severity\": 0, \"status\": 0 }"), "{text}");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(v[0]["meta"]["name"], "LN-AM{RadMon:2}DoseRate-I");
        assert_eq!(v[0]["meta"]["EGU"], "mR/h");
        assert_eq!(v[0]["data"][1]["val"], serde_json::Value::Null);
        assert_eq!(v[0]["data"][1]["fields"]["cnxlostepsecs"], "0");
        assert_eq!(v[0]["data"][1]["severity"], 1);
    }

    #[test]
    fn no_data_is_an_empty_array_and_values_render() {
        let body = JsonResponse::new().finish();
        assert_eq!(body, b"[ \n ]\n", "Java's empty answer");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v, serde_json::json!([]));
        let mut out = Vec::new();
        value(&mut out, &Value::VectorFloat(vec![0.1, f32::INFINITY]));
        assert_eq!(out, b"[0.1,null]");
        out.clear();
        value(&mut out, &Value::ScalarString("a\"b".into()));
        assert_eq!(out, b"\"a\\\"b\"");
    }

    proptest::proptest! {
        /// Numbers are written as serde_json writes them (the same bytes as before its
        /// formatter was called directly).
        #[test]
        fn numbers_as_serde_json_writes_them(bits in proptest::prelude::any::<u64>(), b32 in proptest::prelude::any::<u32>()) {
            let x = f64::from_bits(bits);
            let mut out = Vec::new();
            f64_val(&mut out, x);
            let expected = if x.is_finite() { serde_json::to_string(&x).expect("json") } else { "null".into() };
            proptest::prop_assert_eq!(String::from_utf8(out).expect("utf8"), expected);
            let y = f32::from_bits(b32);
            let mut out = Vec::new();
            f32_val(&mut out, y);
            let expected = if y.is_finite() { serde_json::to_string(&y).expect("json") } else { "null".into() };
            proptest::prop_assert_eq!(String::from_utf8(out).expect("utf8"), expected);
        }
    }
}
