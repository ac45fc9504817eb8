//! The post-processors on the worked cases of the reference (section 2.8 and the Java
//! tests it lists), through the merge as the pipeline runs them.

use archiver_pb::time::start_of_year;
use archiver_pb::{FieldValue, PayloadType, Sample, Timestamp, Value};

use super::{Output, PostProcessorSpec, build};
use crate::error::{ErrorClass, RetrievalError};
use crate::merge::MergeDedup;
use crate::plan::StreamDesc;

/// What a post-processor emitted, and the type the response would declare.
#[derive(Debug, Default)]
struct Got {
    samples: Vec<Sample>,
    retyped: Option<(PayloadType, u32)>,
}

impl Output for Got {
    fn sample(&mut self, s: &Sample) -> Result<(), RetrievalError> {
        self.samples.push(s.clone());
        Ok(())
    }

    fn retype(&mut self, payload_type: PayloadType, element_count: u32) {
        assert!(self.samples.is_empty(), "retype after a sample");
        self.retyped = Some((payload_type, element_count));
    }
}

fn desc(t: PayloadType, from: Timestamp, to: Timestamp) -> StreamDesc {
    StreamDesc {
        name: "A:B".into(),
        payload_type: t,
        element_count: 1,
        headers: Vec::new(),
        from,
        to,
    }
}

/// Runs `spec` over `samples` (merged with the Java rule for `[from, to]`); returns the
/// declared type and element count, and the samples.
fn run_typed(
    spec: &str,
    t: PayloadType,
    from: Timestamp,
    to: Timestamp,
    samples: &[Sample],
) -> Result<(PayloadType, u32, Vec<Sample>), RetrievalError> {
    run_spec(&PostProcessorSpec::parse(spec)?, t, from, to, samples)
}

/// [`run_typed`] with a spec already built.
fn run_spec(
    spec: &PostProcessorSpec,
    t: PayloadType,
    from: Timestamp,
    to: Timestamp,
    samples: &[Sample],
) -> Result<(PayloadType, u32, Vec<Sample>), RetrievalError> {
    let mut pp = build(spec);
    let mut d = desc(t, from, to);
    pp.begin_pv(&mut d)?;
    let mut got = Got::default();
    let mut merge = MergeDedup::new(from, to);
    for s in samples {
        merge.push(s, &mut |m: &Sample| pp.sample(m, &mut got))?;
    }
    merge.finish(&mut |m: &Sample| pp.sample(m, &mut got))?;
    pp.end_pv(&mut got)?;
    let (t, n) = got.retyped.unwrap_or((d.payload_type, d.element_count));
    Ok((t, n, got.samples))
}

fn run(spec: &str, from: i64, to: i64, samples: &[Sample]) -> Vec<Sample> {
    run_typed(
        spec,
        PayloadType::ScalarDouble,
        Timestamp::new(from, 0),
        Timestamp::new(to, 0),
        samples,
    )
    .expect(spec)
    .2
}

fn d(secs: i64, v: f64) -> Sample {
    Sample::new(Timestamp::new(secs, 0), Value::ScalarDouble(v))
}

fn scalar(s: &Sample) -> f64 {
    match s.value {
        Value::ScalarDouble(v) => v,
        ref other => panic!("not a double: {other:?}"),
    }
}

fn vector(s: &Sample) -> &[f64] {
    match &s.value {
        Value::VectorDouble(v) => v,
        other => panic!("not a vector: {other:?}"),
    }
}

fn secs(v: &[Sample]) -> Vec<i64> {
    v.iter().map(|s| s.time.secs).collect()
}

fn values(v: &[Sample]) -> Vec<f64> {
    v.iter().map(scalar).collect()
}

/// 1 January 2025, 00:00 UTC (a multiple of every interval used here up to a day).
const T: i64 = start_of_year(2025);

/// `OptimizedPostProcessorTest`: 1440 one-minute `DBR_SCALAR_INT` samples (value =
/// index) from 10:00 on 1 June; `optimized_160` over the 24 h gives 161 bins of 540 s,
/// the interior ones with 9 samples, mean (k−1)·9+7, min (k−1)·9+3, max (k−1)·9+11 and
/// the std of 9 consecutive integers; `optimized_10000` gives the 1440 samples.
#[test]
fn optimized_160_over_a_day_of_minutes() {
    let from = start_of_year(2025) + (31 + 28 + 31 + 30 + 31) * 86_400 + 10 * 3600;
    let samples: Vec<Sample> = (0..1440)
        .map(|k| Sample::new(Timestamp::new(from + 60 * k, 0), Value::ScalarInt(k as i32)))
        .collect();
    let (f, t) = (Timestamp::new(from, 0), Timestamp::new(from + 86_400, 0));
    let (ty, n, out) = run_typed("optimized_160", PayloadType::ScalarInt, f, t, &samples).unwrap();
    assert_eq!((ty, n), (PayloadType::WaveformDouble, 5));
    assert_eq!(out.len(), 161);
    let first_bin = from / 540;
    let std9 = (60.0f64 / 8.0).sqrt();
    for (k, s) in out.iter().enumerate() {
        let bin = first_bin + k as i64;
        assert_eq!(s.time, Timestamp::new(bin * 540 + 270, 0), "bin {k}");
        let v = vector(s);
        assert_eq!(v.len(), 5);
        if (1..160).contains(&k) {
            let k = k as f64;
            assert_eq!(v[4], 9.0, "count of bin {k}");
            assert_eq!(v[0], (k - 1.0) * 9.0 + 7.0, "mean of bin {k}");
            assert_eq!(v[2], (k - 1.0) * 9.0 + 3.0, "min of bin {k}");
            assert_eq!(v[3], (k - 1.0) * 9.0 + 11.0, "max of bin {k}");
            assert!((v[1] - std9).abs() < 1e-12, "std of bin {k}: {}", v[1]);
        }
    }
    // The first bin holds minutes 0..2, the last 1434..1439.
    assert_eq!(vector(&out[0])[4], 3.0);
    assert_eq!(vector(&out[160])[4], 6.0);
    assert_eq!(out.iter().map(|s| vector(s)[4]).sum::<f64>(), 1440.0);

    let (ty, n, out) =
        run_typed("optimized_10000", PayloadType::ScalarInt, f, t, &samples).unwrap();
    assert_eq!((ty, n), (PayloadType::ScalarInt, 1));
    assert_eq!(out, samples);
    // Exactly N samples: still the samples; N − 1: the bins.
    let (ty, _, out) = run_typed("optimized_1440", PayloadType::ScalarInt, f, t, &samples).unwrap();
    assert_eq!((ty, out.len()), (PayloadType::ScalarInt, 1440));
    let (ty, _, out) = run_typed(
        "optimizedSample_1439",
        PayloadType::ScalarInt,
        f,
        t,
        &samples,
    )
    .unwrap();
    assert_eq!(ty, PayloadType::WaveformDouble);
    assert!(out.iter().all(|s| vector(s).len() == 5));
    assert_eq!(out.iter().map(|s| vector(s)[4]).sum::<f64>(), 1440.0);
}

/// `nth` streams every n-th sample however many there are: Java stops silently after
/// 2 147 483 (`Nth.MAX_COUNT`), a bound of the memory it collects them in.
#[test]
fn nth_has_no_silent_cap() {
    let n = 2_147_483i64 + 17;
    let samples: Vec<Sample> = (0..n).map(|k| d(T + k, k as f64)).collect();
    let out = run("nth_1", T, T + n, &samples);
    assert_eq!(out.len() as i64, n);
    assert_eq!(scalar(&out[out.len() - 1]), (n - 1) as f64);
}

/// `NthAndNCountProcessorTest`: 86 400 one-minute samples (and duplicates, which the
/// merge drops): `nth_n` gives exactly 86400/n samples, every n-th; a 5-day window gives
/// 7200/n; `ncount` counts them.
#[test]
fn nth_and_ncount_over_86400_samples() {
    let mut samples: Vec<Sample> = Vec::new();
    for k in 0..86_400i64 {
        samples.push(d(T + 60 * k, k as f64));
        if k % 1000 == 1 {
            samples.push(d(T + 60 * k, -1.0));
        }
    }
    let end = T + 60 * 86_399;
    for n in [1usize, 2, 5, 10, 60] {
        let out = run(&format!("nth_{n}"), T, end, &samples);
        assert_eq!(out.len(), 86_400 / n, "nth_{n}");
        let expected: Vec<f64> = (0..86_400).step_by(n).map(|k| k as f64).collect();
        assert!(values(&out) == expected, "nth_{n}: not every n-th");
        // A window of 5 days starting between two samples.
        let from = T + 10 * 86_400 + 30;
        let out = run(&format!("nth_{n}"), from, from + 5 * 86_400, &samples);
        assert_eq!(out.len(), 7200 / n, "nth_{n} over 5 days");
        assert_eq!(scalar(&out[0]), 14_401.0);
    }
    let out = run("ncount", T, end, &samples);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].value, Value::ScalarInt(86_400));
    assert_eq!(out[0].time, Timestamp::new(T, 0));
    let (ty, _, out) = run_typed(
        "ncount",
        PayloadType::ScalarDouble,
        Timestamp::new(T + 30, 123_456_789),
        Timestamp::new(T + 5 * 86_400 + 30, 0),
        &samples,
    )
    .unwrap();
    assert_eq!(ty, PayloadType::ScalarInt);
    assert_eq!(out[0].value, Value::ScalarInt(7200));
    // `from` cut to the millisecond.
    assert_eq!(out[0].time, Timestamp::new(T + 30, 123_000_000));
    // No data at all: still one sample, 0.
    let out = run("ncount", T, end, &[]);
    assert_eq!(out[0].value, Value::ScalarInt(0));
    // The default n is 900.
    assert_eq!(
        run("nth", T, end, &samples).len(),
        86_400usize.div_ceil(900)
    );
}

/// `VariousPostProcessorTest`: 100 Matlab-generated values and a NaN in one bin of
/// 432 000 s: mean 1.0959, median 1.2324, std 1.7370, jitter 1.5851, variance 3.0172
/// (within 1e-3, as the Java test).
#[test]
fn matlab_values_in_one_bin() {
    #[rustfmt::skip]
    let vals = [
        0.1349, -2.3312, 1.2507, 1.5754, -1.2929, 3.3818, 3.3783, 0.9247, 1.6546, 1.3493, 0.6266, 2.4516, -0.1766,
        5.3664, 0.7272, 1.2279, 3.1335, 1.1186, 0.8087, -0.6647, 1.5888, -1.6724, 2.4286, 4.2471, -0.3836, 2.7160,
        3.5080, -2.1875, -1.8819, 2.1423, 0.2002, 2.3800, 2.6312, 2.4238, 3.5805, 2.3372, 3.3817, -1.4049, 0.9604,
        0.6866, -2.2082, 1.5146, -1.1129, 3.8303, -0.6102, 2.0575, 1.4386, -0.8438, -3.3413, 0.8816, -1.0213, 2.2289,
        2.0155, 4.3849, 2.1826, -0.2872, 1.7607, -1.0182, 0.9610, 0.9036, 1.0001, 0.3643, 3.1900, -2.7480, 1.8564,
        2.7913, 2.4619, 2.1557, 1.0806, 2.3542, 2.1378, 0.4887, 0.2451, 0.4082, -1.9503, 0.5320, 1.2369, 1.6296, 3.8870,
        0.2981, 2.2465, 2.5981, 2.8818, -0.9842, 1.4241, 1.4758, -1.0155, -0.4841, 3.1646, 0.7370, 1.7798, 1.1760,
        -0.2709, -0.1191, 1.8873, -0.8998, 2.5624, 2.1379, -0.6434, 0.4688, f64::NAN,
    ];
    let bin = 432_000;
    let start = (T / bin + 1) * bin;
    let samples: Vec<Sample> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| d(start + 10 + 3 * i as i64, *v))
        .collect();
    for (op, expected) in [
        ("mean", 1.0959),
        ("median", 1.2324),
        ("std", 1.7370),
        ("jitter", 1.5851),
        ("variance", 3.0172),
    ] {
        let out = run(&format!("{op}_432000"), start, start + bin - 1, &samples);
        assert_eq!(out.len(), 1, "{op}");
        let got = scalar(&out[0]);
        assert!((got - expected).abs() < 1e-3, "{op}: {got}");
        assert_eq!(out[0].time, Timestamp::new(start + bin / 2, 0));
    }
    let out = run("count_432000", start, start + bin - 1, &samples);
    assert_eq!(vals.len(), 101);
    assert_eq!(scalar(&out[0]), 100.0, "NaN is not counted");
}

/// One bin of known values: every statistic, the bin's highest severity,
/// `connectionChange`, `errorbar`'s `stdz`, the `stats` vector.
#[test]
fn statistics_of_one_bin() {
    let mut samples: Vec<Sample> = [2.0, 4.0, 4.0, f64::NAN, 4.0, 5.0, 5.0, 7.0, 9.0]
        .iter()
        .enumerate()
        .map(|(i, v)| d(T + 1 + i as i64, *v))
        .collect();
    samples[2].severity = 2;
    samples[5].severity = 1;
    samples[4]
        .field_values
        .push(FieldValue::new("cnxregainedepsecs", "123"));
    let one = |op: &str| {
        let out = run(&format!("{op}_60"), T, T + 59, &samples);
        assert_eq!(out.len(), 1, "{op}");
        assert_eq!(out[0].severity, 2, "{op}");
        assert_eq!(out[0].status, 0, "{op}");
        assert_eq!(out[0].time, Timestamp::new(T + 30, 0));
        assert_eq!(out[0].field_value("connectionChange"), Some("true"), "{op}");
        out[0].clone()
    };
    assert_eq!(scalar(&one("mean")), 5.0);
    assert_eq!(scalar(&one("min")), 2.0);
    assert_eq!(scalar(&one("max")), 9.0);
    assert_eq!(scalar(&one("count")), 8.0);
    assert!((scalar(&one("popvariance")) - 4.0).abs() < 1e-12);
    assert!((scalar(&one("variance")) - 32.0 / 7.0).abs() < 1e-12);
    let std = (32.0f64 / 7.0).sqrt();
    assert!((scalar(&one("std")) - std).abs() < 1e-12);
    assert!((scalar(&one("jitter")) - std / 5.0).abs() < 1e-12);
    assert_eq!(scalar(&one("median")), 4.5);
    let e = one("errorbar");
    assert_eq!(scalar(&e), 5.0);
    let stdz: f64 = e.field_value("stdz").unwrap().parse().unwrap();
    assert!((stdz - std).abs() < 1e-12);
    let s = one("stats");
    let v = vector(&s);
    assert_eq!((v[0], v[2], v[3], v[4]), (5.0, 2.0, 9.0, 8.0));
    assert!((v[1] - std).abs() < 1e-12);
    assert!(scalar(&one("kurtosis")).is_finite());
    assert!(scalar(&one("skewness")) > 0.0);
    // A line sampled each second: linear interpolation at the centre is on the line.
    let line: Vec<Sample> = (0..60).map(|k| d(T + k, 2.0 * k as f64)).collect();
    assert_eq!(values(&run("linear_60", T, T + 59, &line)), vec![60.0]);
    // commons-math's loess sums x² of epoch seconds (~3e18): the cancellation costs
    // digits, in Java as here (same formula, same order).
    let l = values(&run("loess_60", T, T + 59, &line));
    assert!((l[0] - 60.0).abs() < 0.01, "{l:?}");
    // Too few points: the first value of the bin.
    assert_eq!(values(&run("linear_60", T, T + 59, &line[..1])), vec![0.0]);
}

/// Fill: an empty bin after the first bin with data repeats the previous bin (`count`:
/// 0) up to `to`'s bin; `…Sample` omits empty bins; an odd interval centres on the half
/// second.
#[test]
fn fill_rules_and_bin_centres() {
    let samples = [d(T + 5, 1.0), d(T + 7, 3.0), d(T + 35, 10.0)];
    let out = run("mean_10", T, T + 59, &samples);
    assert_eq!(
        secs(&out),
        vec![T + 5, T + 15, T + 25, T + 35, T + 45, T + 55]
    );
    assert_eq!(values(&out), vec![2.0, 2.0, 2.0, 10.0, 10.0, 10.0]);
    assert!(out.iter().all(|s| s.time.nanos == 0));
    let out = run("meanSample_10", T, T + 59, &samples);
    assert_eq!(secs(&out), vec![T + 5, T + 35]);
    let out = run("count_10", T, T + 59, &samples);
    assert_eq!(values(&out), vec![2.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    assert_eq!(
        values(&run("countSample_10", T, T + 59, &samples)),
        vec![2.0, 1.0]
    );
    // Data start later than `from`: nothing before the first bin with data.
    let out = run("mean_10", T, T + 59, &samples[2..]);
    assert_eq!(secs(&out), vec![T + 35, T + 45, T + 55]);
    // Odd interval: the centre is at +I/2 s and 500 ms.
    let out = run("meanSample_7", T, T + 13, &[d(T + 1, 1.0), d(T + 8, 2.0)]);
    assert_eq!(
        out.iter().map(|s| s.time).collect::<Vec<_>>(),
        vec![
            Timestamp::new((T / 7) * 7 + 3, 500_000_000),
            Timestamp::new((T / 7 + 1) * 7 + 3, 500_000_000)
        ]
    );
}

/// `DataDrivenPostProcessorTest`: one sample long before the range; `firstSample_7`,
/// `lastSample_7`, `meanSample_7` each give exactly one sample (the last sample before
/// start); the fill variant repeats it up to the end. A sample exactly at `from`
/// replaces it for the summaries.
#[test]
fn last_sample_before_start() {
    let early = vec![d(T - 3600, 4.5)];
    let (from, to) = (T + 10 * 7, T + 20 * 7);
    for op in ["firstSample_7", "lastSample_7", "meanSample_7"] {
        let out = run(op, from, to, &early);
        assert_eq!(out.len(), 1, "{op}");
        assert_eq!(scalar(&out[0]), 4.5, "{op}");
    }
    // firstSample and lastSample keep its own time; the mean is in bin firstBin − 1.
    assert_eq!(
        run("firstSample_7", from, to, &early)[0].time.secs,
        T - 3600
    );
    assert_eq!(run("lastSample_7", from, to, &early)[0].time.secs, T - 3600);
    let first_bin = from / 7;
    let mean = run("meanSample_7", from, to, &early);
    assert_eq!(
        mean[0].time,
        Timestamp::new((first_bin - 1) * 7 + 3, 500_000_000)
    );
    // Filled: bins firstBin − 1 to lastBin.
    let out = run("mean_7", from, to, &early);
    assert_eq!(out.len() as i64, to / 7 - first_bin + 2);
    assert!(values(&out).iter().all(|v| *v == 4.5));
    // Before start and in range: the before sample is its own bin.
    let both = vec![d(T - 3600, 4.5), d(from + 1, 1.0), d(from + 2, 2.0)];
    assert_eq!(
        values(&run("meanSample_7", from, to, &both)),
        vec![4.5, 1.5]
    );
    // A sample exactly at `from`: no before-start bin.
    let at = vec![d(T - 3600, 4.5), d(from, 1.0), d(from + 2, 2.0)];
    assert_eq!(values(&run("meanSample_7", from, to, &at)), vec![1.5]);
    // Its severity does not count.
    let mut sev = both.clone();
    sev[0].severity = 2;
    assert_eq!(run("meanSample_7", from, to, &sev)[0].severity, 0);
}

/// `firstSample`/`lastSample` keep the original samples (by bin number, so a sample of
/// the first bin before `from` is in the first bin); `firstFill`/`lastFill` move them to
/// the bin centre (0 ns) and fill.
#[test]
fn first_and_last_samples_and_fills() {
    let mut samples: Vec<Sample> = [2, 5, 12, 18, 41]
        .iter()
        .map(|&k| d(T + k, k as f64))
        .collect();
    samples[1]
        .field_values
        .push(FieldValue::new("cnxlostepsecs", "1"));
    samples[1].severity = 1;
    let from = T + 3;
    let out = run("firstSample_10", from, T + 59, &samples);
    // The sample at +2 is the before-start sample of the merge, but in the first bin.
    assert_eq!(values(&out), vec![2.0, 12.0, 41.0]);
    let out = run("lastSample_10", from, T + 59, &samples);
    assert_eq!(values(&out), vec![5.0, 18.0, 41.0]);
    assert_eq!(secs(&out), vec![T + 5, T + 18, T + 41]);
    assert!(
        out[0].field_values.is_empty(),
        "no field values, as Java's POJOEvent"
    );
    assert_eq!(out[0].severity, 1);
    let out = run("firstFill_10", from, T + 59, &samples);
    assert_eq!(values(&out), vec![2.0, 12.0, 12.0, 12.0, 41.0, 41.0]);
    assert_eq!(
        secs(&out),
        vec![T + 5, T + 15, T + 25, T + 35, T + 45, T + 55]
    );
    let out = run("lastFill_10", from, T + 59, &samples);
    assert_eq!(values(&out), vec![5.0, 18.0, 18.0, 18.0, 41.0, 41.0]);
    // Any type: strings pass.
    let strings = vec![Sample::new(
        Timestamp::new(T + 1, 0),
        Value::ScalarString("a".into()),
    )];
    let (ty, _, out) = run_typed(
        "lastFill_10",
        PayloadType::ScalarString,
        Timestamp::new(T, 0),
        Timestamp::new(T + 19, 0),
        &strings,
    )
    .unwrap();
    assert_eq!((ty, out.len()), (PayloadType::ScalarString, 2));
}

/// `deadBand_2.0`: the first sample, then those further than 2 from the last emitted
/// (strictly), or with a change of severity or of `cnxlostepsecs`, or NaN.
#[test]
fn dead_band() {
    let mut samples: Vec<Sample> = [0.0, 1.0, 2.0, 2.5, 4.6, 4.0, 4.0, f64::NAN, 3.0, 3.5]
        .iter()
        .enumerate()
        .map(|(i, v)| d(T + i as i64, *v))
        .collect();
    samples[6].severity = 1;
    let out = run("deadBand_2.0", T, T + 100, &samples);
    assert_eq!(secs(&out), vec![T, T + 3, T + 4, T + 6, T + 7, T + 8]);
    // The default ADEL is 1.
    assert_eq!(
        secs(&run("deadBand", T, T + 100, &samples[..3])),
        vec![T, T + 2]
    );
}

/// `ignoreflyers`/`flyers`: per bin, within nσ of the mean or not.
#[test]
fn flyers() {
    let mut vals = [10.0; 20];
    vals[7] = 100.0;
    vals[3] = f64::NAN;
    let samples: Vec<Sample> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| d(T + i as i64, *v))
        .collect();
    let kept = run("ignoreflyers_60_2", T, T + 59, &samples);
    assert_eq!(kept.len(), 18);
    assert!(values(&kept).iter().all(|v| *v == 10.0));
    let out = run("flyers_60_2", T, T + 59, &samples);
    assert_eq!(secs(&out), vec![T + 3, T + 7]);
}

/// `caplotbinning`: 1 sample as is (whole second), 2 as they are, more as four samples
/// (first, min, max, last) at fixed offsets in the bin.
#[test]
fn caplot_binning() {
    let mut samples = vec![
        d(T + 1, 5.0),
        d(T + 12, 1.0),
        d(T + 15, 2.0),
        d(T + 21, 3.0),
        d(T + 22, 9.0),
        d(T + 25, -1.0),
        d(T + 27, 4.0),
    ];
    samples[0].time.nanos = 7;
    samples[4].severity = 2;
    let out = run("caplotbinning_10", T, T + 29, &samples);
    assert_eq!(
        secs(&out),
        vec![T + 1, T + 12, T + 15, T + 20, T + 22, T + 25, T + 27]
    );
    assert_eq!(values(&out), vec![5.0, 1.0, 2.0, 3.0, -1.0, 9.0, 4.0]);
    assert!(out.iter().all(|s| s.time.nanos == 0));
    assert_eq!(out[3].severity, 2);
    assert_eq!(out[0].severity, 0);
}

/// `optimLastSample`: `[mean, std, min, max, count, last]`; an empty bin is
/// `[last, 0, last, last, 0, last]`, up to `to`'s bin.
#[test]
fn optim_last_sample() {
    // 4 bins of 10 s over 40 s; data in bins 0 and 2, more than 4 samples.
    let samples = [
        d(T + 1, 1.0),
        d(T + 2, 3.0),
        d(T + 21, 5.0),
        d(T + 22, f64::NAN),
        d(T + 23, 7.0),
    ];
    let (ty, n, out) = run_typed(
        "optimLastSample_4",
        PayloadType::ScalarDouble,
        Timestamp::new(T, 0),
        Timestamp::new(T + 40, 0),
        &samples,
    )
    .unwrap();
    assert_eq!((ty, n), (PayloadType::WaveformDouble, 6));
    let v: Vec<Vec<f64>> = out.iter().map(|s| vector(s).to_vec()).collect();
    let std2 = 2.0f64.sqrt();
    assert_eq!(v.len(), 5, "bins 0..=4");
    assert_eq!(v[0][..1], [2.0]);
    assert!((v[0][1] - std2).abs() < 1e-12);
    assert_eq!(v[0][2..], [1.0, 3.0, 2.0, 3.0]);
    assert_eq!(v[1], vec![3.0, 0.0, 3.0, 3.0, 0.0, 3.0]);
    assert_eq!(v[2][0], 6.0);
    assert_eq!(v[2][4..], [2.0, 7.0]);
    assert_eq!(v[3], vec![7.0, 0.0, 7.0, 7.0, 0.0, 7.0]);
    assert_eq!(v[4], vec![7.0, 0.0, 7.0, 7.0, 0.0, 7.0]);
    // Few samples: as they are.
    let (ty, _, out) = run_typed(
        "optimLastSample_10",
        PayloadType::ScalarDouble,
        Timestamp::new(T, 0),
        Timestamp::new(T + 40, 0),
        &samples,
    )
    .unwrap();
    assert_eq!((ty, out.len()), (PayloadType::ScalarDouble, 5));
}

/// A numeric operator on strings is a 400 naming the operator; `nth` works on strings;
/// a waveform's first element is its number.
#[test]
fn types() {
    let strings = vec![Sample::new(
        Timestamp::new(T + 1, 0),
        Value::ScalarString("a".into()),
    )];
    let (f, t) = (Timestamp::new(T, 0), Timestamp::new(T + 60, 0));
    for op in [
        "mean_10",
        "optimized",
        "deadBand",
        "flyers",
        "caplotbinning",
    ] {
        let e = run_typed(op, PayloadType::ScalarString, f, t, &strings).expect_err(op);
        assert!(matches!(e, RetrievalError::NotNumeric { .. }), "{op}: {e}");
        assert_eq!(e.class(), ErrorClass::BadRequest);
        assert!(e.to_string().contains(op), "{e}");
    }
    let (_, _, out) = run_typed("nth_1", PayloadType::ScalarString, f, t, &strings).unwrap();
    assert_eq!(out, strings);
    let waves = vec![
        Sample::new(Timestamp::new(T + 1, 0), Value::VectorInt(vec![4, 100])),
        Sample::new(Timestamp::new(T + 2, 0), Value::VectorInt(vec![])),
        Sample::new(Timestamp::new(T + 3, 0), Value::VectorInt(vec![6])),
    ];
    let (ty, _, out) = run_typed("meanSample_60", PayloadType::WaveformInt, f, t, &waves).unwrap();
    assert_eq!(ty, PayloadType::ScalarDouble);
    assert_eq!(values(&out), vec![5.0]);
}

/// Binning allocates per bin, not per sample: a day of 1 Hz samples through `mean_3600`
/// gives 24 bins, and the summaries stream (the first bin is out before the second is
/// read).
#[test]
fn bins_stream() {
    let spec = PostProcessorSpec::parse("mean_3600").unwrap();
    let mut pp = build(&spec);
    let mut dsc = desc(
        PayloadType::ScalarDouble,
        Timestamp::new(T, 0),
        Timestamp::new(T + 86_399, 0),
    );
    pp.begin_pv(&mut dsc).unwrap();
    let mut got = Got::default();
    for k in 0..3601 {
        pp.sample(&d(T + k, 1.0), &mut got).unwrap();
    }
    assert_eq!(got.samples.len(), 1, "the first hour is out");
    for k in 3601..86_400 {
        pp.sample(&d(T + k, 1.0), &mut got).unwrap();
    }
    pp.end_pv(&mut got).unwrap();
    assert_eq!(got.samples.len(), 24);
}

#[test]
fn use_reduced_is_first_sample_before_two_weeks_ago_and_raw_after() {
    // One sample every 100 s over three weeks; the request is made at the end.
    let t0 = start_of_year(2024);
    let end = t0 + 21 * 86_400;
    let samples: Vec<Sample> = (0..21 * 864).map(|k| d(t0 + k * 100, k as f64)).collect();
    let now = Timestamp::new(end, 0);
    let spec = PostProcessorSpec::use_reduced(now);
    let (t, _, got) = run_spec(
        &spec,
        PayloadType::ScalarDouble,
        Timestamp::new(t0, 0),
        now,
        &samples,
    )
    .expect("twoweek");
    assert_eq!(t, PayloadType::ScalarDouble);
    let cutoff = end - 14 * 86_400;
    let (sparse, raw): (Vec<&Sample>, Vec<&Sample>) =
        got.iter().partition(|s| s.time.secs < cutoff);
    // Before the cutoff: the first sample of each 900 s bin (7 days = 672 bins), as they are.
    assert_eq!(sparse.len(), 7 * 96);
    assert!(sparse.iter().all(|s| (s.time.secs - t0) % 900 == 0));
    // From the cutoff on: every sample.
    let expected_raw = samples.iter().filter(|s| s.time.secs >= cutoff).count();
    assert_eq!(raw.len(), expected_raw);
    assert!(got.windows(2).all(|w| w[0].time < w[1].time));
    // Entirely older than two weeks: all sparse; entirely newer: all raw.
    let old = run_spec(
        &spec,
        PayloadType::ScalarDouble,
        Timestamp::new(t0, 0),
        Timestamp::new(t0 + 86_400, 0),
        &samples,
    )
    .expect("old")
    .2;
    assert_eq!(old.len(), 96 + 1);
    let recent = run_spec(
        &spec,
        PayloadType::ScalarDouble,
        Timestamp::new(end - 86_400, 0),
        now,
        &samples,
    )
    .expect("recent")
    .2;
    assert_eq!(recent.len(), 864);
}
