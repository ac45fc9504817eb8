//! `archiver pb generate`: synthetic archived data (N PVs × rate × duration) written as
//! PlainPB into a data store through [`archiver_storage::Tier`], for tests, benchmarks and
//! trying retrieval without an IOC (issue 10, "a data generator").
//!
//! PV `i` is named `<prefix><i>` (`GEN:0`, `GEN:1`, ...). Sample `k` of every PV has the
//! time stamp `start + k / rate` (rounded to the nanosecond) and a value derived from `k`
//! only, so a reader can check every sample: the counter `k` for the numeric types
//! (wrapping for `short` and `byte`), `k % 4` for `enum`, the text `k` for `string`.
//! Severity and status are 0. Samples go to the store in batches, one partition file open
//! per batch and partition, as the engine's writer appends; a sample not newer than what
//! a file already holds is refused by the store and counted, so running the same command
//! twice adds nothing.
//!
//! With `--register`, every PV is also put in the catalogue of `--data-dir`
//! (`registry.sqlite`, paused, `dataStores` = the store URL as given), so that
//! `archiver serve --data-dir` with that store configured serves them at once. ETL leaves
//! a paused PV's data where it is: `--register-archiving` registers them archiving, so
//! that ETL moves them (benchmarks and tests of ETL).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use archiver_pb::{PayloadType, Sample, Timestamp, Value};
use archiver_registry::{PvTypeInfo, Registry, SamplingMethod, SqliteRegistry};
use archiver_storage::{Backend, StoreUrl, Tier, blackhole_name};

/// Samples per PV appended in one call to the store.
const BATCH: u64 = 65_536;

/// Arguments of `archiver pb generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Number of PVs.
    #[arg(long, default_value_t = 1)]
    pub pvs: u32,
    /// Samples per second of each PV (e.g. 10, 0.5).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Time span of the data: a number with a unit s, m, h, d, w or y (365 days), e.g.
    /// `1d`, `90m`, `1y`; a bare number is seconds.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub duration: u64,
    /// Time of the first sample (ISO 8601, e.g. `2023-01-01T00:00:00Z`); default: now
    /// minus the duration, in whole seconds.
    #[arg(long)]
    pub start: Option<String>,
    /// PV names are this prefix followed by 0, 1, ...
    #[arg(long, default_value = "GEN:")]
    pub prefix: String,
    /// Value type: double, float, int, short, byte, enum or string.
    #[arg(long = "type", default_value = "double", value_parser = parse_type)]
    pub payload_type: PayloadType,
    /// The data store, as in `[storage] data_stores`
    /// (`pb://localhost?name=LTS&rootFolder=lts&partitionGranularity=PARTITION_YEAR`); a
    /// relative `rootFolder` is a folder of `--data-dir`.
    #[arg(
        long,
        default_value = "pb://localhost?name=STS&rootFolder=sts&partitionGranularity=PARTITION_HOUR"
    )]
    pub store_url: String,
    /// The archiver's data folder (relative root folders and `--register` use it).
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
    /// Also put each PV in the catalogue of `--data-dir` (paused, its `dataStores` the
    /// store URL), so that `archiver serve` serves it. Run it while no archiver uses the
    /// folder.
    #[arg(long)]
    pub register: bool,
    /// With `--register`: the registered PVs' `dataStores`, first store first (repeat the
    /// flag; `pb://` or `blackhole://` URLs as in `[storage] data_stores`). Default: the
    /// `--store-url` alone, so that ETL leaves the data where it is.
    #[arg(long = "register-store", requires = "register")]
    pub register_stores: Vec<String>,
    /// With `--register`: register the PVs archiving, not paused. `archiver serve` then
    /// searches for them, and ETL moves their data down their `dataStores` (it leaves a
    /// paused PV's data where it is, as Java does).
    #[arg(long, requires = "register")]
    pub register_archiving: bool,
}

/// Parses `1d`, `90m`, `3600`, `1y` into seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let mult = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 7.0 * 86_400.0,
        "y" => 365.0 * 86_400.0,
        other => return Err(format!("unknown unit {other:?} (use s, m, h, d, w or y)")),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 1d, 90m, 3600"))?;
    let secs = n * mult;
    if !(secs.is_finite() && secs > 0.0 && secs <= 100.0 * 366.0 * 86_400.0) {
        return Err(format!(
            "{text:?}: the duration must be above 0 and at most 100 years"
        ));
    }
    Ok(secs.round() as u64)
}

fn parse_type(text: &str) -> Result<PayloadType, String> {
    Ok(match text {
        "double" => PayloadType::ScalarDouble,
        "float" => PayloadType::ScalarFloat,
        "int" => PayloadType::ScalarInt,
        "short" => PayloadType::ScalarShort,
        "byte" => PayloadType::ScalarByte,
        "enum" => PayloadType::ScalarEnum,
        "string" => PayloadType::ScalarString,
        other => {
            return Err(format!(
                "unknown type {other:?} (double, float, int, short, byte, enum, string)"
            ));
        }
    })
}

/// The value of sample `k` of a PV of type `ty` (see the module documentation).
pub fn value_of(ty: PayloadType, k: u64) -> Value {
    match ty {
        PayloadType::ScalarFloat => Value::ScalarFloat(k as f32),
        PayloadType::ScalarInt => Value::ScalarInt(k as i32),
        PayloadType::ScalarShort => Value::ScalarShort(k as i16),
        PayloadType::ScalarByte => Value::ScalarByte(k as i8),
        PayloadType::ScalarEnum => Value::ScalarEnum((k % 4) as i16),
        PayloadType::ScalarString => Value::ScalarString(k.to_string()),
        _ => Value::ScalarDouble(k as f64),
    }
}

/// Runs `archiver pb generate`; prints one summary line.
pub fn run(args: &GenerateArgs) -> Result<i32> {
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 1e6) {
        bail!("--rate {}: must be above 0 and at most 1e6 Hz", args.rate);
    }
    if args.pvs == 0 {
        bail!("--pvs must be at least 1");
    }
    let count = (args.duration as f64 * args.rate).floor() as u64;
    let start = match &args.start {
        Some(s) => {
            archiver_time::parse_iso8601(s).map_err(|e| anyhow::anyhow!("--start {s:?}: {e}"))?
        }
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_secs();
            Timestamp::new((now - args.duration.min(now)) as i64, 0)
        }
    };
    // It writes into the data folder (and its catalogue with --register): not while an
    // archiver uses it (a fresh-user test wrote into a running server's folder).
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let _lock = crate::serve::lock_data_dir(&args.data_dir)?;
    let tier = tier(&args.store_url, args)?;
    let names: Vec<String> = (0..args.pvs)
        .map(|i| format!("{}{i}", args.prefix))
        .collect();
    let start_ns = i128::from(start.secs) * 1_000_000_000 + i128::from(start.nanos);
    let step_ns = 1e9 / args.rate;
    let began = Instant::now();
    let (mut written, mut refused) = (0u64, 0u64);
    let mut batch: Vec<Sample> = Vec::with_capacity(BATCH as usize);
    let mut k0 = 0u64;
    while k0 < count {
        let k1 = (k0 + BATCH).min(count);
        for name in &names {
            batch.clear();
            batch.extend((k0..k1).map(|k| {
                let ns = start_ns + (k as f64 * step_ns).round() as i128;
                let time = Timestamp::new(
                    ns.div_euclid(1_000_000_000) as i64,
                    ns.rem_euclid(1_000_000_000) as u32,
                );
                Sample::new(time, value_of(args.payload_type, k))
            }));
            let c = tier
                .append(name, args.payload_type, &batch)
                .with_context(|| format!("{name}: cannot write to {}", tier.root().display()))?;
            written += c.written;
            refused += c.not_newer + c.other_year + c.wrong_type + c.invalid;
        }
        k0 = k1;
    }
    if args.register {
        register(args, &names, start)?;
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "generated {written} samples ({} PVs × {count}) into {} ({}) in {secs:.1} s \
         ({:.1} M samples/s); {refused} refused (not newer than the stored data)",
        names.len(),
        tier.name(),
        tier.root().display(),
        written as f64 / secs.max(1e-9) / 1e6,
    );
    Ok(0)
}

/// The tier of `url`, a relative root folder taken under `--data-dir`.
fn tier(url: &str, args: &GenerateArgs) -> Result<Tier> {
    let bad = || format!("--store-url {url:?}");
    let parsed = StoreUrl::parse(url).with_context(bad)?;
    let expanded = parsed.expand_root_folder_from_env().with_context(bad)?;
    let root = args.data_dir.join(expanded);
    Ok(Tier::from_store_url(parsed, root, &Backend::fs()))
}

fn register(args: &GenerateArgs, names: &[String], start: Timestamp) -> Result<()> {
    let data_stores = if args.register_stores.is_empty() {
        vec![args.store_url.clone()]
    } else {
        for url in &args.register_stores {
            if blackhole_name(url).is_none() {
                StoreUrl::parse(url).with_context(|| format!("--register-store {url:?}"))?;
            }
        }
        args.register_stores.clone()
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let path = args.data_dir.join("registry.sqlite");
    let registry = SqliteRegistry::open(&path)
        .with_context(|| format!("cannot open the catalogue {}", path.display()))?;
    let infos = names
        .iter()
        .map(|name| {
            let mut info = PvTypeInfo::new_for_archiving(
                name,
                args.payload_type,
                1,
                SamplingMethod::Monitor,
                (1.0 / args.rate) as f32,
                data_stores.clone(),
                start,
            )
            .with_context(|| format!("PV name {name:?}"))?;
            info.paused = !args.register_archiving;
            Ok(info)
        })
        .collect::<Result<Vec<_>>>()?;
    registry
        .put_type_infos(&infos)
        .with_context(|| format!("cannot write the catalogue {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert_eq!(parse_duration("90m"), Ok(5_400));
        assert_eq!(parse_duration("3600"), Ok(3_600));
        assert_eq!(parse_duration("1y"), Ok(31_536_000));
        assert_eq!(parse_duration("0.5h"), Ok(1_800));
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("-1d").is_err());
        assert!(parse_duration("d").is_err());
    }

    #[test]
    fn values() {
        assert_eq!(
            value_of(PayloadType::ScalarDouble, 7),
            Value::ScalarDouble(7.0)
        );
        assert_eq!(value_of(PayloadType::ScalarEnum, 7), Value::ScalarEnum(3));
        assert_eq!(
            value_of(PayloadType::ScalarShort, 70_000),
            Value::ScalarShort(4_464)
        );
    }
}
