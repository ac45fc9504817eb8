//! Property tests: every payload type round-trips through our codec and is encoded exactly
//! as protobuf itself (prost, from the `EPICSEvent.proto` field definitions) encodes it;
//! escaping round-trips and never leaves a newline; partitions contain their instants.

use archiver_pb::codec::{decode_payload_info, encode_payload_info, encode_sample};
use archiver_pb::escape::{escape_into, unescape_into};
use archiver_pb::time::{seconds_in_year, start_of_year};
use archiver_pb::{
    FieldValue, Granularity, LineDecoder, PayloadInfo, PayloadType, Sample, Timestamp, Value,
};
use proptest::prelude::*;

/// Prost definitions of `EPICSEvent.proto` (proto2), as the oracle for wire bytes.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FieldValue {
        #[prost(string, required, tag = "1")]
        pub name: String,
        #[prost(string, required, tag = "2")]
        pub val: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PayloadInfo {
        #[prost(int32, required, tag = "1")]
        pub r#type: i32,
        #[prost(string, required, tag = "2")]
        pub pvname: String,
        #[prost(int32, required, tag = "3")]
        pub year: i32,
        #[prost(int32, optional, tag = "4")]
        pub element_count: Option<i32>,
        #[prost(message, repeated, tag = "15")]
        pub headers: Vec<FieldValue>,
    }

    macro_rules! sample_message {
        ($name:ident, $($val:tt)*) => {
            #[derive(Clone, PartialEq, prost::Message)]
            pub struct $name {
                #[prost(uint32, required, tag = "1")]
                pub secondsintoyear: u32,
                #[prost(uint32, required, tag = "2")]
                pub nano: u32,
                $($val)*
                #[prost(int32, optional, tag = "4")]
                pub severity: Option<i32>,
                #[prost(int32, optional, tag = "5")]
                pub status: Option<i32>,
                #[prost(uint32, optional, tag = "6")]
                pub repeatcount: Option<u32>,
                #[prost(message, repeated, tag = "7")]
                pub fieldvalues: Vec<FieldValue>,
                #[prost(bool, optional, tag = "8")]
                pub fieldactualchange: Option<bool>,
                #[prost(uint32, optional, tag = "9")]
                pub user_tag: Option<u32>,
            }
        };
    }
    sample_message!(ScalarString, #[prost(string, required, tag = "3")] pub val: String,);
    sample_message!(ScalarShort, #[prost(sint32, required, tag = "3")] pub val: i32,);
    sample_message!(ScalarFloat, #[prost(float, required, tag = "3")] pub val: f32,);
    sample_message!(ScalarByte, #[prost(bytes = "vec", required, tag = "3")] pub val: Vec<u8>,);
    sample_message!(ScalarInt, #[prost(sfixed32, required, tag = "3")] pub val: i32,);
    sample_message!(ScalarDouble, #[prost(double, required, tag = "3")] pub val: f64,);
    sample_message!(VectorString, #[prost(string, repeated, tag = "3")] pub val: Vec<String>,);
    sample_message!(VectorShort, #[prost(sint32, repeated, packed = "true", tag = "3")] pub val: Vec<i32>,);
    sample_message!(VectorFloat, #[prost(float, repeated, packed = "true", tag = "3")] pub val: Vec<f32>,);
    sample_message!(VectorChar, #[prost(bytes = "vec", required, tag = "3")] pub val: Vec<u8>,);
    sample_message!(VectorInt, #[prost(sfixed32, repeated, packed = "true", tag = "3")] pub val: Vec<i32>,);
    sample_message!(VectorDouble, #[prost(double, repeated, packed = "true", tag = "3")] pub val: Vec<f64>,);
}

/// The bytes prost writes for `s` in a file of `year`.
fn prost_bytes(s: &Sample, year: i32) -> Vec<u8> {
    use prost::Message;
    let siy = (s.time.secs - start_of_year(year)) as u32;
    let fv: Vec<proto::FieldValue> = s
        .field_values
        .iter()
        .map(|f| proto::FieldValue {
            name: f.name.clone(),
            val: f.val.clone(),
        })
        .collect();
    let sev = (s.severity != 0).then_some(s.severity);
    let st = (s.status != 0).then_some(s.status);
    macro_rules! enc {
        ($msg:ident, $val:expr) => {
            proto::$msg {
                secondsintoyear: siy,
                nano: s.time.nanos,
                val: $val,
                severity: sev,
                status: st,
                repeatcount: s.repeat_count,
                fieldvalues: fv,
                fieldactualchange: s.field_actual_change,
                user_tag: s.user_tag,
            }
            .encode_to_vec()
        };
    }
    let shorts = |v: &Vec<i16>| v.iter().map(|&x| i32::from(x)).collect::<Vec<_>>();
    match &s.value {
        Value::ScalarString(v) => enc!(ScalarString, v.clone()),
        Value::ScalarShort(v) | Value::ScalarEnum(v) => enc!(ScalarShort, i32::from(*v)),
        Value::ScalarFloat(v) => enc!(ScalarFloat, *v),
        Value::ScalarByte(v) => enc!(ScalarByte, vec![*v as u8]),
        Value::ScalarInt(v) => enc!(ScalarInt, *v),
        Value::ScalarDouble(v) => enc!(ScalarDouble, *v),
        Value::VectorString(v) => enc!(VectorString, v.clone()),
        Value::VectorShort(v) | Value::VectorEnum(v) => enc!(VectorShort, shorts(v)),
        Value::VectorFloat(v) => enc!(VectorFloat, v.clone()),
        Value::VectorChar(v) | Value::V4GenericBytes(v) => enc!(VectorChar, v.clone()),
        Value::VectorInt(v) => enc!(VectorInt, v.clone()),
        Value::VectorDouble(v) => enc!(VectorDouble, v.clone()),
    }
}

fn value_of(t: PayloadType) -> BoxedStrategy<Value> {
    let s = ".{0,12}";
    let n = 0..40usize;
    match t {
        PayloadType::ScalarString => s.prop_map(Value::ScalarString).boxed(),
        PayloadType::ScalarShort => any::<i16>().prop_map(Value::ScalarShort).boxed(),
        PayloadType::ScalarFloat => any::<f32>().prop_map(Value::ScalarFloat).boxed(),
        PayloadType::ScalarEnum => any::<i16>().prop_map(Value::ScalarEnum).boxed(),
        PayloadType::ScalarByte => any::<i8>().prop_map(Value::ScalarByte).boxed(),
        PayloadType::ScalarInt => any::<i32>().prop_map(Value::ScalarInt).boxed(),
        PayloadType::ScalarDouble => any::<f64>().prop_map(Value::ScalarDouble).boxed(),
        PayloadType::WaveformString => prop::collection::vec(s, n)
            .prop_map(Value::VectorString)
            .boxed(),
        PayloadType::WaveformShort => prop::collection::vec(any::<i16>(), n)
            .prop_map(Value::VectorShort)
            .boxed(),
        PayloadType::WaveformFloat => prop::collection::vec(any::<f32>(), n)
            .prop_map(Value::VectorFloat)
            .boxed(),
        PayloadType::WaveformEnum => prop::collection::vec(any::<i16>(), n)
            .prop_map(Value::VectorEnum)
            .boxed(),
        PayloadType::WaveformByte => prop::collection::vec(any::<u8>(), n)
            .prop_map(Value::VectorChar)
            .boxed(),
        PayloadType::WaveformInt => prop::collection::vec(any::<i32>(), n)
            .prop_map(Value::VectorInt)
            .boxed(),
        PayloadType::WaveformDouble => prop::collection::vec(any::<f64>(), n)
            .prop_map(Value::VectorDouble)
            .boxed(),
        PayloadType::V4GenericBytes => prop::collection::vec(any::<u8>(), n)
            .prop_map(Value::V4GenericBytes)
            .boxed(),
    }
}

/// A year, a sample of type `t` inside it, and the year.
fn sample_of(t: PayloadType) -> impl Strategy<Value = (i32, Sample)> {
    (1970i32..2200)
        .prop_flat_map(move |year| {
            (
                Just(year),
                0..seconds_in_year(year),
                0u32..1_000_000_000,
                value_of(t),
                prop_oneof![Just(0), -5i32..5, any::<i32>()],
                prop_oneof![Just(0), 0i32..25, any::<i32>()],
                prop::option::of(any::<u32>()),
                prop::collection::vec(("[A-Za-z]{0,8}", ".{0,10}"), 0..3),
                prop::option::of(any::<bool>()),
                prop::option::of(any::<u32>()),
            )
        })
        .prop_map(
            move |(year, siy, nanos, value, severity, status, rc, fv, fac, tag)| {
                let mut s = Sample::new(Timestamp::new(start_of_year(year) + siy, nanos), value);
                s.severity = severity;
                s.status = status;
                s.repeat_count = rc;
                s.field_values = fv.into_iter().map(|(n, v)| FieldValue::new(n, v)).collect();
                s.field_actual_change = fac;
                s.user_tag = if t == PayloadType::V4GenericBytes {
                    tag
                } else {
                    None
                };
                (year, s)
            },
        )
}

fn check_type(t: PayloadType, year: i32, s: &Sample) -> Result<(), TestCaseError> {
    let mut ours = Vec::new();
    encode_sample(s, year, &mut ours).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        &ours,
        &prost_bytes(s, year),
        "wire bytes differ from protobuf's"
    );
    // Through an escaped line and back.
    let mut line = Vec::new();
    archiver_pb::codec::encode_line(s, year, &mut line, &mut Vec::new())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(line.last(), Some(&b'\n'));
    prop_assert!(!line[..line.len() - 1].contains(&b'\n'));
    let mut back = Sample::new(Timestamp::default(), Value::zero(PayloadType::ScalarDouble));
    LineDecoder::new(t, year)
        .decode(&line[..line.len() - 1], &mut back)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(back.time, s.time);
    prop_assert_eq!(back.value.payload_type(), t);
    let mut again = Vec::new();
    encode_sample(&back, year, &mut again).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&again, &ours, "decode then encode changed the bytes");
    // Equal as values too, where NaN does not defeat ==.
    let has_nan = format!("{:?}", s.value).contains("NaN");
    if !has_nan {
        prop_assert_eq!(&back, s);
    }
    Ok(())
}

macro_rules! roundtrip_tests {
    ($($name:ident => $t:expr),* $(,)?) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            $(
                #[test]
                fn $name((year, s) in sample_of($t)) {
                    check_type($t, year, &s)?;
                }
            )*
        }
    };
}

roundtrip_tests! {
    roundtrip_scalar_string => PayloadType::ScalarString,
    roundtrip_scalar_short => PayloadType::ScalarShort,
    roundtrip_scalar_float => PayloadType::ScalarFloat,
    roundtrip_scalar_enum => PayloadType::ScalarEnum,
    roundtrip_scalar_byte => PayloadType::ScalarByte,
    roundtrip_scalar_int => PayloadType::ScalarInt,
    roundtrip_scalar_double => PayloadType::ScalarDouble,
    roundtrip_waveform_string => PayloadType::WaveformString,
    roundtrip_waveform_short => PayloadType::WaveformShort,
    roundtrip_waveform_float => PayloadType::WaveformFloat,
    roundtrip_waveform_enum => PayloadType::WaveformEnum,
    roundtrip_waveform_byte => PayloadType::WaveformByte,
    roundtrip_waveform_int => PayloadType::WaveformInt,
    roundtrip_waveform_double => PayloadType::WaveformDouble,
    roundtrip_v4_generic_bytes => PayloadType::V4GenericBytes,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn header_roundtrip_and_matches_protobuf(
        t in 0i64..15,
        pv in ".{0,40}",
        year in -10i32..3000,
        ec in prop::option::of(any::<i32>()),
        headers in prop::collection::vec(("[A-Z]{1,6}", ".{0,10}"), 0..4),
    ) {
        use prost::Message;
        let info = PayloadInfo {
            payload_type: PayloadType::from_number(t).expect("0..15"),
            pv_name: pv,
            year,
            element_count: ec,
            headers: headers.into_iter().map(|(n, v)| FieldValue::new(n, v)).collect(),
        };
        let mut ours = Vec::new();
        encode_payload_info(&info, &mut ours);
        let theirs = proto::PayloadInfo {
            r#type: t as i32,
            pvname: info.pv_name.clone(),
            year,
            element_count: ec,
            headers: info.headers.iter().map(|h| proto::FieldValue { name: h.name.clone(), val: h.val.clone() }).collect(),
        }.encode_to_vec();
        prop_assert_eq!(&ours, &theirs);
        prop_assert_eq!(decode_payload_info(&ours).ok(), Some(info));
    }

    #[test]
    fn escaping_roundtrips_and_hides_newlines(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut escaped = Vec::new();
        escape_into(&bytes, &mut escaped);
        prop_assert!(!escaped.contains(&0x0A));
        prop_assert!(!escaped.contains(&0x0D));
        let mut back = Vec::new();
        unescape_into(&escaped, &mut back).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, bytes);
    }

    #[test]
    fn escaping_biased_to_special_bytes(bytes in prop::collection::vec(prop::sample::select(vec![0x0Au8, 0x0D, 0x1B, 0x01, 0x02, 0x03, 0x41]), 0..100)) {
        let mut escaped = Vec::new();
        escape_into(&bytes, &mut escaped);
        prop_assert!(!escaped.contains(&0x0A));
        let mut back = Vec::new();
        unescape_into(&escaped, &mut back).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, bytes);
    }

    #[test]
    fn partition_contains_its_instant(
        secs in -5_000_000_000i64..10_000_000_000,
        g in prop::sample::select(Granularity::ALL.to_vec()),
    ) {
        let (start, end) = (g.partition_start(secs), g.partition_end(secs));
        prop_assert!(start <= secs && secs < end, "{} {} {}", start, secs, end);
        prop_assert_eq!(g.partition_start(end), end);
        prop_assert_eq!(g.partition_end(start), end);
        prop_assert_eq!(g.previous_boundary(end), start);
        prop_assert_eq!(g.next_boundary(secs), end);
        // Never straddles a year.
        prop_assert_eq!(Timestamp::new(start, 0).year(), Timestamp::new(end - 1, 0).year());
        let name = g.partition_name(secs);
        prop_assert_eq!(g.parse_partition_name(&name), Ok(start));
        prop_assert_eq!(g.partition_name(end - 1), name);
        if secs >= 0 {
            prop_assert!(end - start <= g.approx_seconds());
        }
    }
}

/// The instants the issue names: a leap day and the last nanosecond of a leap year.
#[test]
fn year_end_and_leap_year_instants() {
    let leap_day = archiver_pb::time::UtcDateTime {
        year: 2012,
        month: 2,
        day: 29,
        hour: 0,
        minute: 0,
        second: 0,
    }
    .to_epoch_secs();
    let last = Timestamp::new(start_of_year(2017) - 1, 999_999_999);
    assert_eq!(last.to_string(), "2016-12-31T23:59:59.999999999Z");
    for (t, year) in [(Timestamp::new(leap_day, 0), 2012), (last, 2016)] {
        for g in Granularity::ALL {
            let (start, end) = (g.partition_start(t.secs), g.partition_end(t.secs));
            assert!(start <= t.secs && t.secs < end);
            assert_eq!(g.parse_partition_name(&g.partition_name(t.secs)), Ok(start));
        }
        let s = Sample::new(t, Value::ScalarDouble(1.5));
        check_type(PayloadType::ScalarDouble, year, &s).expect("roundtrip");
    }
    assert_eq!(Granularity::Day.partition_name(leap_day), "2012_02_29");
    assert_eq!(
        Granularity::Year.partition_end(last.secs),
        start_of_year(2017)
    );
    // The next nanosecond is in the next year and the next file.
    let mut out = Vec::new();
    let next = Sample::new(
        Timestamp::new(start_of_year(2017), 0),
        Value::ScalarDouble(1.0),
    );
    assert!(encode_sample(&next, 2016, &mut out).is_err());
    assert!(encode_sample(&next, 2017, &mut out).is_ok());
}

#[test]
fn clone_from_gives_an_equal_sample_whatever_was_there() {
    use archiver_pb::{FieldValue, Sample, Timestamp, Value};
    let t = Timestamp::new(1_700_000_000, 5);
    let mut with_fields = Sample::new(t, Value::ScalarDouble(1.5));
    with_fields.severity = 2;
    with_fields.status = 3;
    with_fields.repeat_count = Some(4);
    with_fields.field_values.push(FieldValue::new("HIHI", "9"));
    with_fields.field_actual_change = Some(true);
    let samples = [
        Sample::new(t, Value::ScalarDouble(-0.25)),
        Sample::new(t, Value::ScalarInt(-7)),
        Sample::new(t, Value::ScalarShort(3)),
        Sample::new(t, Value::ScalarEnum(1)),
        Sample::new(t, Value::ScalarFloat(2.5)),
        Sample::new(t, Value::ScalarByte(-2)),
        Sample::new(t, Value::ScalarString("s".into())),
        Sample::new(t, Value::VectorDouble(vec![1.0, 2.0])),
        with_fields,
    ];
    // Every sample copied over every other: equal to the source each time (a scalar over
    // one with field values drops them; a waveform over a scalar, and back).
    for dst in &samples {
        for src in &samples {
            let mut d = dst.clone();
            d.clone_from(src);
            assert_eq!(&d, src, "{dst:?} <- {src:?}");
        }
    }
}
