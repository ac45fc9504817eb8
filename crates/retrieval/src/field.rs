//! `PV.FIELD` served from the archive fields carried on the PV's samples (Java
//! `ExtraFieldsPostProcessor`).
//!
//! The engine stores the values of a PV's archive fields (`HIHI`, `LOLO`, `DRVH`, ...)
//! as field values of its samples: the changed ones on the last sample of each write, all
//! of them once a day. A request for `PV.HIHI`, when `HIHI` is one of the PV's archive
//! fields (see [`crate::plan()`]), reads the PV's samples and answers one sample per sample
//! that carries `HIHI`: its time, severity and status, and the field's text read as the
//! PV's scalar type ([`field_type`]). Samples without the field are not answered; a text
//! that does not read as the type is skipped (Java fails the stream).
//!
//! [`FieldValues`] wraps the request's post-processor (the identity for raw data), so
//! `mean_3600(PV.HIHI)` works on the field's values; Java drops the post-processor.

use archiver_pb::{PayloadType, Sample, Value};

use crate::error::RetrievalError;
use crate::plan::StreamDesc;
use crate::postprocess::{Emit, PostProcessor};

/// The type a field of a PV of type `pv_type` is answered as: the PV's scalar type (a
/// waveform's element type; a pvAccess structure's fields as strings).
pub fn field_type(pv_type: PayloadType) -> PayloadType {
    match pv_type {
        PayloadType::WaveformString | PayloadType::V4GenericBytes => PayloadType::ScalarString,
        PayloadType::WaveformShort => PayloadType::ScalarShort,
        PayloadType::WaveformFloat => PayloadType::ScalarFloat,
        PayloadType::WaveformEnum => PayloadType::ScalarEnum,
        PayloadType::WaveformByte => PayloadType::ScalarByte,
        PayloadType::WaveformInt => PayloadType::ScalarInt,
        PayloadType::WaveformDouble => PayloadType::ScalarDouble,
        scalar => scalar,
    }
}

/// The value of a field's text as `ty` (a scalar type, [`field_type`]); `None` when it
/// does not read as one. Numbers read as Java's `Double.parseDouble` reads them (an
/// integer type takes the integral value of `"10"` or `"10.0"`, out-of-range refused).
pub fn field_value(text: &str, ty: PayloadType) -> Option<Value> {
    let t = text.trim();
    let number = || -> Option<f64> {
        match t {
            "NaN" => Some(f64::NAN),
            "Infinity" | "+Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => t.parse::<f64>().ok(),
        }
    };
    let integral = |lo: f64, hi: f64| -> Option<f64> {
        number().filter(|v| v.fract() == 0.0 && *v >= lo && *v <= hi)
    };
    Some(match ty {
        PayloadType::ScalarDouble => Value::ScalarDouble(number()?),
        PayloadType::ScalarFloat => Value::ScalarFloat(number()? as f32),
        PayloadType::ScalarInt => {
            Value::ScalarInt(integral(i32::MIN as f64, i32::MAX as f64)? as i32)
        }
        PayloadType::ScalarShort => {
            Value::ScalarShort(integral(i16::MIN as f64, i16::MAX as f64)? as i16)
        }
        PayloadType::ScalarEnum => {
            Value::ScalarEnum(integral(i16::MIN as f64, i16::MAX as f64)? as i16)
        }
        PayloadType::ScalarByte => {
            Value::ScalarByte(integral(i8::MIN as f64, i8::MAX as f64)? as i8)
        }
        _ => Value::ScalarString(text.to_string()),
    })
}

/// Turns the samples of a PV into the samples of one of its archive fields, then hands
/// them to `inner` (the request's post-processor).
pub struct FieldValues {
    field: String,
    payload_type: PayloadType,
    inner: Box<dyn PostProcessor>,
    out: Sample,
}

impl std::fmt::Debug for FieldValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldValues")
            .field("field", &self.field)
            .field("payload_type", &self.payload_type)
            .finish_non_exhaustive()
    }
}

impl FieldValues {
    /// The values of `field` (`HIHI`), passed through `inner`.
    pub fn new(field: impl Into<String>, inner: Box<dyn PostProcessor>) -> Self {
        FieldValues {
            field: field.into(),
            payload_type: PayloadType::ScalarDouble,
            inner,
            out: Sample::new(Default::default(), Value::ScalarDouble(0.0)),
        }
    }
}

impl PostProcessor for FieldValues {
    /// The samples are the field's type ([`field_type`] of `desc`'s), one element each.
    fn begin_pv(&mut self, desc: &mut StreamDesc) -> Result<(), RetrievalError> {
        self.payload_type = field_type(desc.payload_type);
        desc.payload_type = self.payload_type;
        desc.element_count = 1;
        self.inner.begin_pv(desc)
    }

    fn sample(&mut self, s: &Sample, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        let Some(text) = s
            .field_values
            .iter()
            .find(|f| f.name == self.field)
            .map(|f| f.val.as_str())
        else {
            return Ok(());
        };
        let Some(value) = field_value(text, self.payload_type) else {
            return Ok(());
        };
        self.out.time = s.time;
        self.out.severity = s.severity;
        self.out.status = s.status;
        self.out.value = value;
        self.inner.sample(&self.out, emit)
    }

    fn end_pv(&mut self, emit: &mut Emit<'_>) -> Result<(), RetrievalError> {
        self.inner.end_pv(emit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postprocess::Raw;
    use archiver_pb::{FieldValue, Timestamp};

    #[test]
    fn field_texts_read_as_the_pvs_scalar_type() {
        assert_eq!(
            field_value("10.5", PayloadType::ScalarDouble),
            Some(Value::ScalarDouble(10.5))
        );
        assert_eq!(
            field_value("10.0", PayloadType::ScalarInt),
            Some(Value::ScalarInt(10))
        );
        assert_eq!(field_value("10.5", PayloadType::ScalarInt), None);
        assert_eq!(field_value("300", PayloadType::ScalarByte), None);
        assert_eq!(field_value("x", PayloadType::ScalarDouble), None);
        assert!(matches!(
            field_value("NaN", PayloadType::ScalarDouble),
            Some(Value::ScalarDouble(v)) if v.is_nan()
        ));
        assert_eq!(
            field_value("mm", PayloadType::ScalarString),
            Some(Value::ScalarString("mm".into()))
        );
        assert_eq!(
            field_type(PayloadType::WaveformFloat),
            PayloadType::ScalarFloat
        );
        assert_eq!(field_type(PayloadType::ScalarEnum), PayloadType::ScalarEnum);
    }

    #[test]
    fn only_samples_carrying_the_field_are_answered() {
        let mut pp = FieldValues::new("HIHI", Box::new(Raw));
        let mut desc = StreamDesc {
            name: "A:B.HIHI".into(),
            payload_type: PayloadType::WaveformDouble,
            element_count: 8,
            headers: Vec::new(),
            from: Timestamp::new(0, 0),
            to: Timestamp::new(100, 0),
        };
        pp.begin_pv(&mut desc).expect("begin");
        assert_eq!(
            (desc.payload_type, desc.element_count),
            (PayloadType::ScalarDouble, 1)
        );
        let mut got = Vec::new();
        let mut out = |s: &Sample| -> Result<(), RetrievalError> {
            got.push(s.clone());
            Ok(())
        };
        for k in 0..6 {
            let mut s = Sample::new(Timestamp::new(k, 7), Value::VectorDouble(vec![1.0; 8]));
            s.severity = 1;
            s.status = 3;
            match k {
                1 => s.field_values.push(FieldValue::new("HIHI", "9.5")),
                3 => s.field_values.push(FieldValue::new("LOLO", "1")),
                4 => s.field_values.push(FieldValue::new("HIHI", "bad")),
                5 => {
                    s.field_values.push(FieldValue::new("LOLO", "1"));
                    s.field_values.push(FieldValue::new("HIHI", "12"));
                }
                _ => {}
            }
            pp.sample(&s, &mut out).expect("sample");
        }
        pp.end_pv(&mut out).expect("end");
        let seen: Vec<(i64, Value)> = got.iter().map(|s| (s.time.secs, s.value.clone())).collect();
        assert_eq!(
            seen,
            vec![
                (1, Value::ScalarDouble(9.5)),
                (5, Value::ScalarDouble(12.0))
            ]
        );
        assert!(got.iter().all(|s| s.severity == 1
            && s.status == 3
            && s.time.nanos == 7
            && s.field_values.is_empty()));
    }
}
