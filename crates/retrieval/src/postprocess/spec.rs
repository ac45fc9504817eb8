//! Post-processor specs: the `pv=op_N(PV)` / `pv=op(PV,a,b)` function syntax and the `pp=`
//! parameter (Java `DataRetrievalServlet`), and the registry of operators with Java's
//! prefix lookup (`PostProcessors.findPostProcessor`).

use archiver_registry::javanum::{parse_f32, parse_f64};

use crate::error::RetrievalError;

/// The Java default interval of the binning operators, seconds
/// (`PostProcessors.DEFAULT_SUMMARIZING_INTERVAL`), also `nth`'s default `n`.
pub const DEFAULT_INTERVAL: u32 = 900;

/// Where `usereduced` switches from sparse to raw data: two weeks (Java `TwoWeekRaw`,
/// `2 * 7 * PARTITION_DAY`).
pub const TWO_WEEKS_SECS: i64 = 14 * 86_400;

/// The default number of points of `optimized` and `optimLastSample`.
pub const DEFAULT_POINTS: u32 = 1000;

/// The default `ADEL` of `deadBand`.
pub const DEFAULT_ADEL: f64 = 1.0;

/// The default number of standard deviations of `ignoreflyers` and `flyers`.
pub const DEFAULT_DEVIATIONS: f32 = 3.0;

/// The statistic a summarizing operator computes per bin (Java `SummaryStatsPostProcessor`
/// subclasses, commons-math `SummaryStatistics` / `DescriptiveStatistics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stat {
    /// `mean`: `SummaryStatistics.getMean()`.
    Mean,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `count`: values that are not NaN; an empty bin after data is 0.
    Count,
    /// `std`: sample standard deviation (n − 1); 0 for one value.
    Std,
    /// `variance`: sample variance (n − 1).
    Variance,
    /// `popvariance`: population variance (n).
    PopVariance,
    /// `jitter`: std / mean.
    Jitter,
    /// `median`: `DescriptiveStatistics.getPercentile(50)`, the legacy estimator.
    Median,
    /// `kurtosis`: bias-corrected, NaN for fewer than 4 values.
    Kurtosis,
    /// `skewness`: bias-corrected, NaN for fewer than 3 values.
    Skewness,
    /// `linear`: linear interpolation at the bin centre, else the bin's first value.
    Linear,
    /// `loess`: LOESS smoothing (bandwidth 0.3, 2 robustness iterations) and a cubic
    /// spline evaluated at the bin centre, else the bin's first value.
    Loess,
    /// `errorbar`: the mean, with field value `stdz` = std.
    ErrorBar,
    /// `stats`: the vector `[mean, std, min, max, count]`.
    Stats,
}

/// An operator of the Java registry, with its arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// A summarizing operator over epoch-aligned bins of `interval` seconds; `fill`: empty
    /// bins after the first repeat the previous bin (Java default), else they are omitted
    /// (the `…Sample` variants).
    Summary {
        /// What is computed per bin.
        stat: Stat,
        /// Bin width, seconds (≥ 1).
        interval: u32,
        /// Fill empty bins (false for `…Sample`).
        fill: bool,
    },
    /// `firstSample_N`: the first sample of each bin, as it is.
    FirstSample {
        /// Bin width, seconds.
        interval: u32,
    },
    /// `lastSample_N`: the last sample of each bin, with its own timestamp.
    LastSample {
        /// Bin width, seconds.
        interval: u32,
    },
    /// `firstFill_N`: the first sample of each bin at the bin centre, filled.
    FirstFill {
        /// Bin width, seconds.
        interval: u32,
    },
    /// `lastFill_N`: the last sample of each bin at the bin centre, filled.
    LastFill {
        /// Bin width, seconds.
        interval: u32,
    },
    /// `ncount`: one `DBR_SCALAR_INT` sample at `from`: the number of samples in
    /// `[from, to]`.
    NCount,
    /// `nth_n`: every n-th sample in `[from, to]`.
    Nth {
        /// Keep one sample in `n` (≥ 1).
        n: u32,
    },
    /// `optimized_N` (`last: false`) or `optimLastSample_N` (`last: true`).
    Optimized {
        /// Points wanted (≥ 1).
        points: u32,
        /// `optimLastSample`: a sixth element, the last value, and its own fill rule.
        last: bool,
        /// Fill empty bins (false for `…Sample`).
        fill: bool,
    },
    /// `caplotbinning_N`: Channel Archiver plot binning.
    CaPlotBinning {
        /// Bin width, seconds.
        interval: u32,
    },
    /// Java `TwoWeekRaw` (`twoweek`, internal: not in the registry, applied by
    /// `usereduced=true`): `firstSample` with the default interval before `cutoff`, raw
    /// samples from it on.
    TwoWeek {
        /// Where the raw data begin (two weeks before the request).
        cutoff: archiver_time::Timestamp,
    },
    /// `deadBand_ADEL`.
    DeadBand {
        /// The dead band (`ADEL`).
        adel: f64,
    },
    /// `ignoreflyers_N_S` (`keep_flyers: false`) and `flyers_N_S` (`true`).
    Flyers {
        /// Bin width, seconds.
        interval: u32,
        /// Standard deviations (a Java `float`).
        deviations: f32,
        /// Keep the flyers (`flyers`) instead of the others (`ignoreflyers`).
        keep_flyers: bool,
    },
}

/// The most bins a binning post-processor may produce for one PV over a request's range
/// (`(to - from) / interval`): the bins of an interval operator stream out one by one, but a
/// client asking `mean_1` over centuries would still keep the server busy for hours.
pub const MAX_BINS: u64 = 10_000_000;

/// The most points `optimized_N` / `optimLastSample_N` may ask for: it holds its bins until
/// it knows whether the raw samples (at most N) are the answer.
pub const MAX_OPTIMIZED_POINTS: u64 = 1_000_000;

impl Op {
    /// The number of bins this operator produces over `[from, to]` and the limit for it,
    /// or `None` for operators whose output is bounded by their input (`nth`, `ncount`,
    /// `deadBand`, the no-fill `…Sample` variants, `firstSample`, `lastSample`, flyers).
    pub fn bins(
        &self,
        from: archiver_time::Timestamp,
        to: archiver_time::Timestamp,
    ) -> Option<(u64, u64)> {
        let span = u64::try_from(to.secs.saturating_sub(from.secs)).unwrap_or(0);
        let per = |interval: u32| span / u64::from(interval.max(1)) + 2;
        match *self {
            // Operators that fill empty bins: their output grows with the range.
            Op::Summary {
                interval,
                fill: true,
                ..
            }
            | Op::FirstFill { interval }
            | Op::LastFill { interval }
            | Op::CaPlotBinning { interval } => Some((per(interval), MAX_BINS)),
            Op::Optimized { points, .. } => Some((u64::from(points), MAX_OPTIMIZED_POINTS)),
            // At most one output per input sample (empty bins are left out): bounded by
            // the data, not the range.
            Op::Summary { fill: false, .. }
            | Op::FirstSample { .. }
            | Op::LastSample { .. }
            | Op::Flyers { .. }
            | Op::TwoWeek { .. }
            | Op::NCount
            | Op::Nth { .. }
            | Op::DeadBand { .. } => None,
        }
    }
}

/// What the registry knows of a key: how its arguments are read.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Summary(Stat, bool),
    FirstSample,
    LastSample,
    FirstFill,
    LastFill,
    NCount,
    Nth,
    Optimized { last: bool, fill: bool },
    CaPlot,
    DeadBand,
    Flyers(bool),
}

/// The Java registry in its order (the first key that is a prefix of the spec wins; each
/// `FillNoFillSupport` operator registers `<name>Sample`, the no-fill variant, first).
const REGISTRY: &[(&str, Kind)] = &[
    ("firstSample", Kind::FirstSample),
    ("meanSample", Kind::Summary(Stat::Mean, false)),
    ("mean", Kind::Summary(Stat::Mean, true)),
    ("jitterSample", Kind::Summary(Stat::Jitter, false)),
    ("jitter", Kind::Summary(Stat::Jitter, true)),
    ("stdSample", Kind::Summary(Stat::Std, false)),
    ("std", Kind::Summary(Stat::Std, true)),
    ("ignoreflyers", Kind::Flyers(false)),
    ("flyers", Kind::Flyers(true)),
    ("linearSample", Kind::Summary(Stat::Linear, false)),
    ("linear", Kind::Summary(Stat::Linear, true)),
    ("loessSample", Kind::Summary(Stat::Loess, false)),
    ("loess", Kind::Summary(Stat::Loess, true)),
    ("medianSample", Kind::Summary(Stat::Median, false)),
    ("median", Kind::Summary(Stat::Median, true)),
    ("varianceSample", Kind::Summary(Stat::Variance, false)),
    ("variance", Kind::Summary(Stat::Variance, true)),
    ("popvarianceSample", Kind::Summary(Stat::PopVariance, false)),
    ("popvariance", Kind::Summary(Stat::PopVariance, true)),
    ("kurtosisSample", Kind::Summary(Stat::Kurtosis, false)),
    ("kurtosis", Kind::Summary(Stat::Kurtosis, true)),
    ("skewnessSample", Kind::Summary(Stat::Skewness, false)),
    ("skewness", Kind::Summary(Stat::Skewness, true)),
    ("firstFill", Kind::FirstFill),
    ("lastFill", Kind::LastFill),
    ("lastSample", Kind::LastSample),
    ("maxSample", Kind::Summary(Stat::Max, false)),
    ("max", Kind::Summary(Stat::Max, true)),
    ("minSample", Kind::Summary(Stat::Min, false)),
    ("min", Kind::Summary(Stat::Min, true)),
    ("countSample", Kind::Summary(Stat::Count, false)),
    ("count", Kind::Summary(Stat::Count, true)),
    ("ncount", Kind::NCount),
    ("nth", Kind::Nth),
    ("statsSample", Kind::Summary(Stat::Stats, false)),
    ("stats", Kind::Summary(Stat::Stats, true)),
    (
        "optimLastSampleSample",
        Kind::Optimized {
            last: true,
            fill: false,
        },
    ),
    (
        "optimLastSample",
        Kind::Optimized {
            last: true,
            fill: true,
        },
    ),
    (
        "optimizedSample",
        Kind::Optimized {
            last: false,
            fill: false,
        },
    ),
    (
        "optimized",
        Kind::Optimized {
            last: false,
            fill: true,
        },
    ),
    ("caplotbinning", Kind::CaPlot),
    ("deadBand", Kind::DeadBand),
    ("errorbarSample", Kind::Summary(Stat::ErrorBar, false)),
    ("errorbar", Kind::Summary(Stat::ErrorBar, true)),
];

/// The registry's names for error messages.
const KNOWN: &str = "firstSample, meanSample, mean, jitterSample, jitter, stdSample, std, \
ignoreflyers, flyers, linearSample, linear, loessSample, loess, medianSample, median, \
varianceSample, variance, popvarianceSample, popvariance, kurtosisSample, kurtosis, \
skewnessSample, skewness, firstFill, lastFill, lastSample, maxSample, max, minSample, min, \
countSample, count, ncount, nth, statsSample, stats, optimLastSampleSample, optimLastSample, \
optimizedSample, optimized, caplotbinning, deadBand, errorbarSample, errorbar";

/// The names of the registry, in lookup order (for documentation and error messages).
pub fn registry_names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|(k, _)| *k)
}

/// A parsed post-processor spec: the text as the client sent it (`mean_600`) and the
/// operator it names.
#[derive(Debug, Clone, PartialEq)]
pub struct PostProcessorSpec {
    /// The spec as sent (`op` or `op_arg1[_arg2]`).
    pub text: String,
    /// The operator and its arguments.
    pub op: Op,
}

fn bad_arg(spec: &str, message: String) -> RetrievalError {
    RetrievalError::BadPostProcessorArgument {
        spec: spec.to_string(),
        message,
    }
}

/// Java `Integer.parseInt` of argument `index` (1-based after the name), `default` when
/// absent; must be at least 1 (Java divides by it).
fn positive_int(
    spec: &str,
    args: &[&str],
    index: usize,
    default: u32,
) -> Result<u32, RetrievalError> {
    let Some(text) = args.get(index) else {
        return Ok(default);
    };
    let v: i64 = text
        .parse()
        .map_err(|_| bad_arg(spec, format!("{text:?} is not an integer")))?;
    if v < 1 || v > i64::from(i32::MAX) {
        return Err(bad_arg(
            spec,
            format!("{v} is out of range (1 to {})", i32::MAX),
        ));
    }
    Ok(v as u32)
}

/// Java `Double.parseDouble` (or `Float.parseFloat` when `single`) of argument `index`,
/// `default` when absent; must be finite.
fn finite(
    spec: &str,
    args: &[&str],
    index: usize,
    default: f64,
    single: bool,
) -> Result<f64, RetrievalError> {
    let Some(text) = args.get(index) else {
        return Ok(default);
    };
    let v = if single {
        parse_f32(text).map(f64::from)
    } else {
        parse_f64(text)
    }
    .ok_or_else(|| bad_arg(spec, format!("{text:?} is not a number")))?;
    if !v.is_finite() {
        return Err(bad_arg(spec, format!("{text:?} is not a finite number")));
    }
    Ok(v)
}

impl PostProcessorSpec {
    /// Parses a spec as Java reads one: the operator is the first registry key that is a
    /// prefix of `text` (so `mean600` is `mean` with the default interval, `meanSample_60`
    /// is the no-fill mean), the arguments are the `_`-separated words after the first
    /// (Java `userarg.split("_")`, empty trailing words dropped).
    ///
    /// Errors (400): [`RetrievalError::UnknownPostProcessor`] when no key matches (Java
    /// silently answers the raw data instead), [`RetrievalError::BadPostProcessorArgument`]
    /// for an argument that does not parse or is out of range (Java: 404 or 500).
    pub fn parse(text: &str) -> Result<Self, RetrievalError> {
        let Some((key, kind)) = REGISTRY.iter().find(|(k, _)| text.starts_with(k)) else {
            return Err(RetrievalError::UnknownPostProcessor {
                spec: text.to_string(),
                known: KNOWN,
            });
        };
        let _ = key;
        let mut args: Vec<&str> = text.split('_').collect();
        while args.len() > 1 && args.last().is_some_and(|a| a.is_empty()) {
            args.pop();
        }
        let op = match *kind {
            Kind::Summary(stat, fill) => Op::Summary {
                stat,
                interval: positive_int(text, &args, 1, DEFAULT_INTERVAL)?,
                fill,
            },
            Kind::FirstSample => Op::FirstSample {
                interval: positive_int(text, &args, 1, DEFAULT_INTERVAL)?,
            },
            Kind::LastSample => Op::LastSample {
                interval: positive_int(text, &args, 1, DEFAULT_INTERVAL)?,
            },
            Kind::FirstFill => Op::FirstFill {
                interval: positive_int(text, &args, 1, DEFAULT_INTERVAL)?,
            },
            Kind::LastFill => Op::LastFill {
                interval: positive_int(text, &args, 1, DEFAULT_INTERVAL)?,
            },
            Kind::NCount => Op::NCount,
            Kind::Nth => Op::Nth {
                n: positive_int(text, &args, 1, DEFAULT_INTERVAL)?,
            },
            Kind::Optimized { last, fill } => Op::Optimized {
                points: positive_int(text, &args, 1, DEFAULT_POINTS)?,
                last,
                fill,
            },
            Kind::CaPlot => Op::CaPlotBinning {
                interval: positive_int(text, &args, 1, DEFAULT_INTERVAL)?,
            },
            Kind::DeadBand => Op::DeadBand {
                adel: finite(text, &args, 1, DEFAULT_ADEL, false)?,
            },
            Kind::Flyers(keep_flyers) => Op::Flyers {
                interval: positive_int(text, &args, 1, DEFAULT_INTERVAL)?,
                deviations: finite(text, &args, 2, f64::from(DEFAULT_DEVIATIONS), true)? as f32,
                keep_flyers,
            },
        };
        Ok(PostProcessorSpec {
            text: text.to_string(),
            op,
        })
    }

    /// Java's `usereduced=true` without a post-processor: `TwoWeekRaw` (the
    /// `DefaultUseReducedPostProcessor` of the shipped installation properties) for a
    /// request made at `now`: `firstSample` before two weeks ago, raw after.
    pub fn use_reduced(now: archiver_time::Timestamp) -> Self {
        PostProcessorSpec {
            text: "twoweek".to_string(),
            op: Op::TwoWeek {
                cutoff: archiver_time::Timestamp::new(now.secs - TWO_WEEKS_SECS, now.nanos),
            },
        }
    }

    /// True when the operator reads sample values as numbers (everything but
    /// `firstSample`, `lastSample`, `firstFill`, `lastFill`, `nth` and `ncount`).
    pub fn needs_numbers(&self) -> bool {
        !matches!(
            self.op,
            Op::FirstSample { .. }
                | Op::TwoWeek { .. }
                | Op::LastSample { .. }
                | Op::FirstFill { .. }
                | Op::LastFill { .. }
                | Op::Nth { .. }
                | Op::NCount
        )
    }
}

/// Splits the function syntax of a `pv` parameter as Java does: `op(PV,a,b)` → the PV
/// name `PV` and the spec `op_a_b` (`mean_600(PV)` → `PV`, `mean_600`). `None` when
/// `pv` has no `(`. A `(` without a `)` is a 400 (Java: "Unbalanced paran"); so is a
/// second `(` (`mean_600(max_60(PV))`: nested post-processors).
pub fn split_function_syntax(pv: &str) -> Result<Option<(&str, String)>, RetrievalError> {
    if !pv.contains('(') {
        return Ok(None);
    }
    if !pv.contains(')') {
        return Err(RetrievalError::UnbalancedParenthesis(pv.to_string()));
    }
    if pv.matches('(').count() > 1 {
        return Err(RetrievalError::NestedPostProcessor(pv.to_string()));
    }
    if pv.matches(')').count() > 1 {
        return Err(RetrievalError::UnbalancedParenthesis(pv.to_string()));
    }
    // Java `pvName.split("[(,)]")`: trailing empty words are dropped.
    let mut words: Vec<&str> = pv.split(['(', ',', ')']).collect();
    while words.last().is_some_and(|w| w.is_empty()) {
        words.pop();
    }
    let op = words.first().copied().unwrap_or("");
    let name = words.get(1).copied().unwrap_or("");
    let mut spec = op.to_string();
    for w in words.iter().skip(2) {
        spec.push('_');
        spec.push_str(w);
    }
    Ok(Some((name, spec)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;

    fn op(text: &str) -> Op {
        PostProcessorSpec::parse(text).expect(text).op
    }

    #[test]
    fn prefix_lookup_in_java_order() {
        assert_eq!(
            op("mean_600"),
            Op::Summary {
                stat: Stat::Mean,
                interval: 600,
                fill: true
            }
        );
        assert_eq!(
            op("meanSample_60"),
            Op::Summary {
                stat: Stat::Mean,
                interval: 60,
                fill: false
            }
        );
        // A prefix match: `mean600` is `mean` with the default interval.
        assert_eq!(
            op("mean600"),
            Op::Summary {
                stat: Stat::Mean,
                interval: 900,
                fill: true
            }
        );
        assert_eq!(op("firstSample"), Op::FirstSample { interval: 900 });
        assert_eq!(op("lastSample_7"), Op::LastSample { interval: 7 });
        assert_eq!(op("lastFill_7"), Op::LastFill { interval: 7 });
        assert_eq!(op("ncount"), Op::NCount);
        assert_eq!(op("nth"), Op::Nth { n: 900 });
        assert_eq!(op("nth_5"), Op::Nth { n: 5 });
        assert_eq!(
            op("optimized_160"),
            Op::Optimized {
                points: 160,
                last: false,
                fill: true
            }
        );
        assert_eq!(
            op("optimLastSample"),
            Op::Optimized {
                points: 1000,
                last: true,
                fill: true
            }
        );
        assert_eq!(
            op("optimLastSampleSample_10"),
            Op::Optimized {
                points: 10,
                last: true,
                fill: false
            }
        );
        assert_eq!(
            op("ignoreflyers_60_2.5"),
            Op::Flyers {
                interval: 60,
                deviations: 2.5,
                keep_flyers: false
            }
        );
        assert_eq!(
            op("flyers"),
            Op::Flyers {
                interval: 900,
                deviations: 3.0,
                keep_flyers: true
            }
        );
        assert_eq!(op("deadBand_2.0"), Op::DeadBand { adel: 2.0 });
        assert_eq!(op("deadBand"), Op::DeadBand { adel: 1.0 });
        assert_eq!(op("caplotbinning_10"), Op::CaPlotBinning { interval: 10 });
        assert_eq!(
            op("stats_60"),
            Op::Summary {
                stat: Stat::Stats,
                interval: 60,
                fill: true
            }
        );
        assert_eq!(
            op("errorbarSample_60"),
            Op::Summary {
                stat: Stat::ErrorBar,
                interval: 60,
                fill: false
            }
        );
        assert_eq!(
            op("popvariance_60"),
            Op::Summary {
                stat: Stat::PopVariance,
                interval: 60,
                fill: true
            }
        );
        // `std` is not a prefix of `stats`; `stdSample` is the no-fill std.
        assert_eq!(
            op("stdSample_60"),
            Op::Summary {
                stat: Stat::Std,
                interval: 60,
                fill: false
            }
        );
        // Trailing underscores are dropped as Java's split drops them.
        assert_eq!(op("nth_5_"), Op::Nth { n: 5 });
    }

    #[test]
    fn every_registered_name_parses_to_itself() {
        for name in registry_names() {
            let spec = PostProcessorSpec::parse(name).expect(name);
            assert_eq!(spec.text, name);
        }
        assert_eq!(registry_names().count(), 44);
        assert_eq!(KNOWN, registry_names().collect::<Vec<_>>().join(", "));
        // Java number syntax for the real arguments.
        assert_eq!(op("deadBand_2d"), Op::DeadBand { adel: 2.0 });
    }

    #[test]
    fn unknown_and_bad_specs_are_400_naming_them() {
        let e = PostProcessorSpec::parse("rms_60").expect_err("unknown");
        assert_eq!(e.class(), ErrorClass::BadRequest);
        assert!(e.to_string().contains("rms_60"), "{e}");
        for bad in [
            "mean_x",
            "mean_0",
            "mean_-5",
            "nth_0",
            "optimized_0",
            "deadBand_NaN",
            "mean_99999999999",
        ] {
            let e = PostProcessorSpec::parse(bad).expect_err(bad);
            assert_eq!(e.class(), ErrorClass::BadRequest, "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn function_syntax_as_java_splits_it() {
        assert_eq!(split_function_syntax("A:B").unwrap(), None);
        assert_eq!(
            split_function_syntax("mean_600(A:B)").unwrap(),
            Some(("A:B", "mean_600".to_string()))
        );
        assert_eq!(
            split_function_syntax("ignoreflyers(A:B,60,2)").unwrap(),
            Some(("A:B", "ignoreflyers_60_2".to_string()))
        );
        assert_eq!(
            split_function_syntax("ncount(ca://A:B.VAL)").unwrap(),
            Some(("ca://A:B.VAL", "ncount".to_string()))
        );
        assert_eq!(
            split_function_syntax("mean()").unwrap(),
            Some(("", "mean".to_string()))
        );
        let e = split_function_syntax("mean_600(A:B").expect_err("unbalanced");
        assert_eq!(e.class(), ErrorClass::BadRequest);
        let e = split_function_syntax("mean_600(A:B))").expect_err("one ) too many");
        assert!(matches!(e, RetrievalError::UnbalancedParenthesis(_)), "{e}");
        let e = split_function_syntax("mean_600(max_60(A:B))").expect_err("nested");
        assert!(matches!(e, RetrievalError::NestedPostProcessor(_)), "{e}");
        assert_eq!(e.class(), ErrorClass::BadRequest);
    }
}
