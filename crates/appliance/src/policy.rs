//! The Java appliance's default policy (`policies.py`, spec §4.4 and §4.2) and the one
//! validation of a sampling period.
//!
//! What Java decides in its policy script is data here: the sampling method and period of
//! a request that names none (MONITOR, 1 s), the archive fields of every PV (`HIHI HIGH
//! LOW LOLO LOPR HOPR`), the extra fields of output records (`ao`, `longout` → `DRVH
//! DRVL`) and the data stores written into a new PV's `PVTypeInfo.dataStores` (the URLs
//! of every configured store, STS first: [`Policy::for_stores`]).
//!
//! Every entry point that takes a sampling period from outside — `archivePV`, restore from
//! the catalogue, and later `changeArchivalParameters` and a PVTypeInfo import — goes
//! through [`SamplingPeriod::new`] (or [`SamplingPeriod::parse`] for text), so the range is
//! checked in one place.

use std::collections::BTreeMap;

use archiver_engine::{EngineConfig, PvConfig, SamplingMethod};
use archiver_registry::PvTypeInfo;
use archiver_storage::DataStores;

use crate::site_policy::{PolicyError, PvFacts, SitePolicy};

/// The shortest sampling period other than 0, in seconds (1 ms). Below it the buffer of a
/// PV (sized from write period / sampling period) would be absurd.
pub const MIN_SAMPLING_PERIOD_SECS: f64 = 0.001;

/// The longest sampling period, in seconds: 365 days. Above it the sampler's arithmetic on
/// nanosecond times would overflow, and a `PVTypeInfo` (which keeps the period as a Java
/// `float`) would store infinity.
pub const MAX_SAMPLING_PERIOD_SECS: f64 = 31_536_000.0;

/// A checked sampling period in seconds: `0` (archive every update) or a finite number in
/// [`MIN_SAMPLING_PERIOD_SECS`]`..=`[`MAX_SAMPLING_PERIOD_SECS`]. The only way to build one
/// is [`SamplingPeriod::new`] (or [`SamplingPeriod::parse`]), so holding one proves it was
/// checked.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct SamplingPeriod(f64);

impl SamplingPeriod {
    /// `0`: every update is archived (with MONITOR).
    pub const EVERY_UPDATE: SamplingPeriod = SamplingPeriod(0.0);

    /// The Java default period (`policies.py`: 1 s).
    pub const DEFAULT: SamplingPeriod = SamplingPeriod(1.0);

    /// Checks `secs`.
    ///
    /// # Errors
    ///
    /// [`PeriodError::OutOfRange`] for NaN, infinities, negative numbers, numbers between 0
    /// and 1 ms and numbers above 365 days; the message names the value and the range.
    pub fn new(secs: f64) -> Result<Self, PeriodError> {
        if secs == 0.0 {
            // Also -0.0.
            return Ok(SamplingPeriod::EVERY_UPDATE);
        }
        if (MIN_SAMPLING_PERIOD_SECS..=MAX_SAMPLING_PERIOD_SECS).contains(&secs) {
            Ok(SamplingPeriod(secs))
        } else {
            Err(PeriodError::OutOfRange { value: secs })
        }
    }

    /// Parses a number of seconds as a client sends it (`"1"`, `"0.5"`, `"1e-3"`;
    /// surrounding blanks are ignored) and checks it with [`SamplingPeriod::new`].
    ///
    /// # Errors
    ///
    /// [`PeriodError::NotANumber`] naming the text, or [`PeriodError::OutOfRange`].
    pub fn parse(text: &str) -> Result<Self, PeriodError> {
        let secs: f64 = text.trim().parse().map_err(|_| PeriodError::NotANumber {
            text: text.to_string(),
        })?;
        SamplingPeriod::new(secs)
    }

    /// The period in seconds.
    pub fn secs(self) -> f64 {
        self.0
    }
}

impl std::fmt::Display for SamplingPeriod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} s", self.0)
    }
}

/// Why a sampling period was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PeriodError {
    /// Not a number of seconds at all.
    #[error(
        "samplingperiod {text:?} is not a number of seconds; it must be 0 (every update) or \
         between {MIN_SAMPLING_PERIOD_SECS} and {MAX_SAMPLING_PERIOD_SECS} (365 days)"
    )]
    NotANumber {
        /// The text as received.
        text: String,
    },
    /// A number outside the range (NaN, infinite, negative, too small or too large).
    #[error(
        "samplingperiod {value:?} is out of range; it must be 0 (every update) or between \
         {MIN_SAMPLING_PERIOD_SECS} and {MAX_SAMPLING_PERIOD_SECS} seconds (365 days)"
    )]
    OutOfRange {
        /// The value as received.
        value: f64,
    },
}

/// One PV of an archive request, as a client gives it: what it leaves out comes from the
/// [`Policy`].
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveSpec {
    /// The PV name (already normalised: no `.VAL`, no `ca://`).
    pub pv: String,
    /// The sampling method, if the request names one.
    pub method: Option<SamplingMethod>,
    /// The sampling period, if the request names one.
    pub period: Option<SamplingPeriod>,
    /// Archive fields (`HIHI`...); empty = the policy's.
    pub archive_fields: Vec<String>,
    /// The policy the request names (`policy`); `None` = the site's rules decide.
    pub policy: Option<String>,
    /// The controlling PV the request names (`controllingPV`); wins over the policy's.
    pub controlling_pv: Option<String>,
    /// An alias to add for the PV (`alias`, Java's POST JSON key).
    pub alias: Option<String>,
}

impl ArchiveSpec {
    /// A request for `pv` with every setting from the policy.
    pub fn new(pv: impl Into<String>) -> Self {
        ArchiveSpec {
            pv: pv.into(),
            method: None,
            period: None,
            archive_fields: Vec::new(),
            policy: None,
            controlling_pv: None,
            alias: None,
        }
    }
}

/// What the policy decided for a PV, with the request's own settings applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The policy's name (`PVTypeInfo.policyName`).
    pub policy_name: String,
    /// The engine settings.
    pub config: PvConfig,
    /// The `PVTypeInfo.dataStores` URLs.
    pub data_stores: Vec<String>,
    /// The controlling PV, if any.
    pub controlling_pv: Option<String>,
}

/// One setting of a decided policy: the request's own value, else the named policy's,
/// else the default (Java's `policies.py` fills what a request leaves out the same way).
fn chosen<T>(request: Option<T>, named: Option<T>, default: impl FnOnce() -> T) -> T {
    request.or(named).unwrap_or_else(default)
}

/// The defaults the Java appliance's `policies.py` applies to a PV that is archived
/// without a policy of its own (spec §4.2, §4.4).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Sampling method of a request that names none (Java: MONITOR).
    pub default_method: SamplingMethod,
    /// Sampling period of a request that names none (Java: 1 s).
    pub default_period: SamplingPeriod,
    /// Archive fields of a PV whose request names none (Java: `HIHI HIGH LOW LOLO LOPR
    /// HOPR`).
    pub archive_fields: Vec<String>,
    /// Record types (`RTYP`) that also archive [`Policy::output_record_fields`] (Java:
    /// `ao`, `longout`).
    pub output_record_types: Vec<String>,
    /// The extra archive fields of output records (Java: `DRVH DRVL`).
    pub output_record_fields: Vec<String>,
    /// The data stores of a new PV, in order, as `PVTypeInfo.dataStores` URLs
    /// (`pb://localhost?name=STS&rootFolder=...&partitionGranularity=PARTITION_HOUR`).
    pub data_stores: Vec<String>,
    /// The site's named policies and rules (the policy file; without one, only
    /// `default`, which is the values above).
    pub site: SitePolicy,
    /// Archive a name without `ca://` or `pva://` over pvAccess (Java's
    /// `ArchivePVAction.defaultAccessProtocol = PVA`; default false: CA).
    pub default_pva: bool,
}

/// How a requested name is archived: the name the engine is given (`pva://NAME` for
/// pvAccess, else NAME), the name the PV is stored and known under (NAME: Java strips
/// the prefix), and whether it is pvAccess. `ca://` and `pva://` choose; a bare name takes
/// `default_pva` ([`Policy::default_pva`]).
pub fn protocol_of(requested: &str, default_pva: bool) -> (String, String, bool) {
    const PVA: &str = "pva://";
    if let Some(n) = requested.strip_prefix(PVA) {
        (requested.to_string(), n.to_string(), true)
    } else if let Some(n) = requested.strip_prefix("ca://") {
        (n.to_string(), n.to_string(), false)
    } else if default_pva {
        (format!("{PVA}{requested}"), requested.to_string(), true)
    } else {
        (requested.to_string(), requested.to_string(), false)
    }
}

/// Java's default archive fields (`policies.py`, spec §4.2).
pub const DEFAULT_ARCHIVE_FIELDS: [&str; 6] = ["HIHI", "HIGH", "LOW", "LOLO", "LOPR", "HOPR"];

/// Record types whose PVs also archive [`OUTPUT_RECORD_FIELDS`] (spec §4.2).
pub const OUTPUT_RECORD_TYPES: [&str; 2] = ["ao", "longout"];

/// The extra archive fields of output records (spec §4.2).
pub const OUTPUT_RECORD_FIELDS: [&str; 2] = ["DRVH", "DRVL"];

/// True when `name` can be an archive field: a record field name
/// (`[A-Za-z][A-Za-z0-9_]*`, at most 60 characters) other than `VAL`, which is the PV
/// itself. The one rule for archivePV's `archiveFields` and the configured defaults.
pub fn is_archive_field_name(name: &str) -> bool {
    name.len() <= 60
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name != "VAL"
}

impl Policy {
    /// The Java defaults, writing new PVs to `data_stores`.
    pub fn java_default(data_stores: Vec<String>) -> Self {
        Policy {
            default_method: SamplingMethod::Monitor,
            default_period: SamplingPeriod::DEFAULT,
            archive_fields: DEFAULT_ARCHIVE_FIELDS.map(String::from).to_vec(),
            output_record_types: OUTPUT_RECORD_TYPES.map(String::from).to_vec(),
            output_record_fields: OUTPUT_RECORD_FIELDS.map(String::from).to_vec(),
            data_stores,
            default_pva: false,
            site: SitePolicy::java_default(),
        }
    }

    /// The Java defaults, writing new PVs to every store of `stores`, in their order
    /// (STS, MTS, LTS: the order Java's `dataStores` lists them).
    pub fn for_stores(stores: &DataStores) -> Self {
        Policy::java_default(stores.urls())
    }

    /// True when `field` is archived as part of its PV's stream (Java's
    /// `getFieldsArchivedAsPartOfStream`, `policies.py`: `HIHI HIGH LOW LOLO LOPR HOPR DRVH
    /// DRVL`): one of [`Policy::archive_fields`] or [`Policy::output_record_fields`]. Such
    /// a `PV.FIELD` is not a PV of its own: archivePV adds the field to PV's archive fields
    /// and getPVStatus answers PV's status (Java `ArchivePVAction.archivePV`).
    pub fn is_stream_field(&self, field: &str) -> bool {
        self.archive_fields
            .iter()
            .chain(&self.output_record_fields)
            .any(|f| f == field)
    }

    /// Puts the policy values the engine carries out into `config`: the default archive
    /// fields ([`EngineConfig::default_archive_fields`]) and the extra fields by record
    /// type ([`EngineConfig::record_type_fields`]: each of
    /// [`Policy::output_record_types`] gets [`Policy::output_record_fields`]; none when
    /// either list is empty, and the engine then never reads `.RTYP`). The binary builds
    /// its engine settings through this, so the values in force are this policy's.
    /// The engine reads every PV's `.RTYP` when the site's rules use record types
    /// ([`EngineConfig::read_record_type`]).
    /// (`EngineConfig::default()` holds the same Java defaults for the engine's own tests;
    /// a test here checks that they agree.)
    pub fn apply_to(&self, config: &mut EngineConfig) {
        config.read_record_type = self.site.uses_record_types();
        config.default_archive_fields = self.archive_fields.clone();
        config.record_type_fields = if self.output_record_fields.is_empty() {
            BTreeMap::new()
        } else {
            self.output_record_types
                .iter()
                .map(|rtyp| (rtyp.clone(), self.output_record_fields.clone()))
                .collect()
        };
    }

    /// The engine settings of a request: what it leaves out comes from this policy. Empty
    /// archive fields stay empty: the engine then applies
    /// [`EngineConfig::default_archive_fields`] and, by the PV's record type,
    /// [`EngineConfig::record_type_fields`] (both set by [`Policy::apply_to`]).
    pub fn pv_config(&self, spec: &ArchiveSpec) -> PvConfig {
        PvConfig {
            method: spec.method.unwrap_or(self.default_method),
            period: spec.period.unwrap_or(self.default_period).secs(),
            archive_fields: spec.archive_fields.clone(),
        }
    }

    /// Java's `determinePolicy` for `spec` (see [`crate::site_policy`]): the named policy
    /// the spec asks for or the one the site's rules pick from `facts`, its values filling
    /// what the spec leaves out, and this policy's defaults what the named policy leaves
    /// out.
    ///
    /// # Errors
    ///
    /// [`PolicyError::UnknownPolicy`] when the spec names a policy the site lacks.
    pub fn decide(&self, spec: &ArchiveSpec, facts: &PvFacts<'_>) -> Result<Decided, PolicyError> {
        self.decide_with(&self.site, spec, facts)
    }

    /// [`Policy::decide`] with the site policy `site` (the one in force, which the
    /// appliance re-reads from its file: [`crate::SiteSource`]) instead of
    /// [`Policy::site`].
    ///
    /// # Errors
    ///
    /// As [`Policy::decide`].
    pub fn decide_with(
        &self,
        site: &SitePolicy,
        spec: &ArchiveSpec,
        facts: &PvFacts<'_>,
    ) -> Result<Decided, PolicyError> {
        let named = site.decide(facts, spec.policy.as_deref())?;
        // Empty archive fields in a request are "none asked for".
        let asked_fields = (!spec.archive_fields.is_empty()).then(|| spec.archive_fields.clone());
        Ok(Decided {
            policy_name: named.name.clone(),
            config: PvConfig {
                method: chosen(spec.method, named.method, || self.default_method),
                period: chosen(spec.period, named.period, || self.default_period).secs(),
                archive_fields: chosen(asked_fields, named.archive_fields.clone(), Vec::new),
            },
            // A request names no stores (Java's archivePV takes none).
            data_stores: chosen(None, named.data_stores.clone(), || self.data_stores.clone()),
            controlling_pv: chosen(
                spec.controlling_pv.clone().map(Some),
                named.controlling_pv.clone().map(Some),
                || None,
            ),
        })
    }

    /// The engine settings stored in a type info (restore; later a PVTypeInfo import).
    /// `Ok(None)` for `DONT_ARCHIVE`.
    ///
    /// # Errors
    ///
    /// The stored period is out of range ([`PeriodError`]); the caller decides whether to
    /// refuse the type info (an import) or to fall back to the default (restore).
    pub fn config_from_type_info(
        &self,
        info: &PvTypeInfo,
    ) -> Result<Option<PvConfig>, PeriodError> {
        let method = match info.sampling_method {
            archiver_registry::SamplingMethod::Monitor => SamplingMethod::Monitor,
            archiver_registry::SamplingMethod::Scan => SamplingMethod::Scan,
            archiver_registry::SamplingMethod::DontArchive => return Ok(None),
        };
        let period = SamplingPeriod::new(period_of(info.sampling_period))?;
        Ok(Some(PvConfig {
            method,
            period: period.secs(),
            archive_fields: info.archive_fields.clone(),
        }))
    }
}

/// A stored period (a Java `float`) as the decimal it was written as: `0.1f32` is `0.1`, not
/// its binary value `0.10000000149011612` (which status and re-applied policies showed
/// after a restart). The shortest text that reads back to the same `f32`, read as `f64`.
fn period_of(stored: f32) -> f64 {
    stored.to_string().parse().unwrap_or(f64::from(stored))
}

/// The catalogue's name of an engine sampling method.
pub fn to_registry_method(m: SamplingMethod) -> archiver_registry::SamplingMethod {
    match m {
        SamplingMethod::Monitor => archiver_registry::SamplingMethod::Monitor,
        SamplingMethod::Scan => archiver_registry::SamplingMethod::Scan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_storage::Tier;

    #[test]
    fn the_prefix_or_the_default_chooses_the_protocol() {
        let own = |a: &str, b: &str, p| (a.to_string(), b.to_string(), p);
        assert_eq!(
            protocol_of("pva://A:B", false),
            own("pva://A:B", "A:B", true)
        );
        assert_eq!(protocol_of("ca://A:B", true), own("A:B", "A:B", false));
        assert_eq!(protocol_of("A:B", true), own("pva://A:B", "A:B", true));
        assert_eq!(protocol_of("A:B", false), own("A:B", "A:B", false));
    }

    #[test]
    fn the_range_is_zero_or_a_millisecond_to_a_year() {
        for ok in [0.0, -0.0, 0.001, 0.5, 1.0, 3600.0, 31_536_000.0] {
            assert!(SamplingPeriod::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            1e-30,
            0.000_999,
            31_536_000.5,
            1e300,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let e = SamplingPeriod::new(bad).expect_err("refused");
            assert!(
                matches!(e, PeriodError::OutOfRange { value } if value.to_bits() == bad.to_bits()),
                "{e:?}"
            );
            let msg = e.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(msg.contains("0 (every update)"), "{msg}");
            assert!(msg.contains("0.001 and 31536000 seconds"), "{msg}");
        }
        assert_eq!(SamplingPeriod::new(0.0), Ok(SamplingPeriod::EVERY_UPDATE));
    }

    #[test]
    fn messages_name_the_value() {
        let e = SamplingPeriod::parse("1e-30").expect_err("too small");
        assert!(
            e.to_string()
                .contains("samplingperiod 1e-30 is out of range"),
            "{e}"
        );
        let e = SamplingPeriod::parse("1e300").expect_err("too large");
        assert!(
            e.to_string()
                .contains("samplingperiod 1e300 is out of range"),
            "{e}"
        );
        let e = SamplingPeriod::parse("NaN").expect_err("NaN");
        assert!(e.to_string().contains("NaN"), "{e}");
        let e = SamplingPeriod::parse("inf").expect_err("inf");
        assert!(e.to_string().contains("inf"), "{e}");
        let e = SamplingPeriod::parse("abc").expect_err("text");
        assert!(e.to_string().contains("\"abc\""), "{e}");
        assert_eq!(
            SamplingPeriod::parse(" 2.5 ").map(SamplingPeriod::secs),
            Ok(2.5)
        );
    }

    #[test]
    fn a_request_takes_what_it_leaves_out_from_the_policy() {
        let p = Policy::java_default(vec!["pb://x".into()]);
        let cfg = p.pv_config(&ArchiveSpec::new("A"));
        assert_eq!(cfg.method, SamplingMethod::Monitor);
        assert_eq!(cfg.period, 1.0);
        assert!(cfg.archive_fields.is_empty());
        let spec = ArchiveSpec {
            method: Some(SamplingMethod::Scan),
            period: Some(SamplingPeriod::new(0.25).expect("valid")),
            archive_fields: vec!["HIHI".into()],
            ..ArchiveSpec::new("A")
        };
        let cfg = p.pv_config(&spec);
        assert_eq!(cfg.method, SamplingMethod::Scan);
        assert_eq!(cfg.period, 0.25);
        assert_eq!(cfg.archive_fields, ["HIHI"]);
        let mut ec = EngineConfig::default();
        ec.default_archive_fields.clear();
        ec.record_type_fields.clear();
        p.apply_to(&mut ec);
        assert_eq!(ec.default_archive_fields, DEFAULT_ARCHIVE_FIELDS);
        let drv = OUTPUT_RECORD_FIELDS.map(String::from).to_vec();
        assert_eq!(
            ec.record_type_fields,
            BTreeMap::from([
                ("ao".to_string(), drv.clone()),
                ("longout".to_string(), drv)
            ])
        );
    }

    #[test]
    fn new_pvs_list_every_store_and_the_blackhole() {
        let mut stores = DataStores::new(archiver_storage::Backend::fs());
        stores
            .add(Tier::new("STS", "/a/STS", archiver_pb::Granularity::Hour))
            .expect("add");
        stores.set_blackhole("Gone").expect("blackhole");
        let p = Policy::for_stores(&stores);
        assert_eq!(
            p.data_stores,
            [
                stores.tiers()[0].url(),
                archiver_storage::blackhole_url("Gone")
            ]
        );
    }

    #[test]
    fn a_decision_takes_the_request_then_the_named_policy_then_the_defaults() {
        let mut stores = DataStores::new(archiver_storage::Backend::fs());
        for (name, g) in [
            ("STS", archiver_pb::Granularity::Hour),
            ("MTS", archiver_pb::Granularity::Day),
        ] {
            stores
                .add(Tier::new(name, format!("/a/{name}"), g))
                .expect("add");
        }
        let mut p = Policy::for_stores(&stores);
        p.site = SitePolicy::from_toml(
            "[[policy]]\nname = \"f\"\nsampling_method = \"SCAN\"\nsampling_period = 5\n\
             data_stores = [\"STS\"]\narchive_fields = [\"HIHI\"]\ncontrolling_pv = \"C:ON\"\n\
             [[rule]]\npolicy = \"f\"\npv = \"F:*\"\n",
            &stores,
        )
        .expect("file");
        // Everything from the rule's policy.
        let d = p
            .decide(&ArchiveSpec::new("F:1"), &PvFacts::name("F:1"))
            .expect("decided");
        assert_eq!(d.policy_name, "f");
        assert_eq!(
            (d.config.method, d.config.period),
            (SamplingMethod::Scan, 5.0)
        );
        assert_eq!(d.config.archive_fields, ["HIHI"]);
        assert_eq!(d.data_stores, [stores.tiers()[0].url()]);
        assert_eq!(d.controlling_pv.as_deref(), Some("C:ON"));
        // The request's own settings win.
        let spec = ArchiveSpec {
            method: Some(SamplingMethod::Monitor),
            period: Some(SamplingPeriod::new(0.5).expect("valid")),
            archive_fields: vec!["LOLO".into()],
            controlling_pv: Some("OTHER:ON".into()),
            ..ArchiveSpec::new("F:1")
        };
        let d = p.decide(&spec, &PvFacts::name("F:1")).expect("decided");
        assert_eq!(
            (d.config.method, d.config.period),
            (SamplingMethod::Monitor, 0.5)
        );
        assert_eq!(d.config.archive_fields, ["LOLO"]);
        assert_eq!(d.controlling_pv.as_deref(), Some("OTHER:ON"));
        // No rule matches: `default`, the Java defaults and every store.
        let d = p
            .decide(&ArchiveSpec::new("G:1"), &PvFacts::name("G:1"))
            .expect("decided");
        assert_eq!(d.policy_name, "default");
        assert_eq!(
            (d.config.method, d.config.period),
            (SamplingMethod::Monitor, 1.0)
        );
        assert!(d.config.archive_fields.is_empty(), "the engine's defaults");
        assert_eq!(d.data_stores, p.data_stores);
        assert_eq!(d.controlling_pv, None);
        // A named policy that does not exist.
        let spec = ArchiveSpec {
            policy: Some("nope".into()),
            ..ArchiveSpec::new("F:1")
        };
        assert!(matches!(
            p.decide(&spec, &PvFacts::name("F:1")),
            Err(PolicyError::UnknownPolicy { .. })
        ));
        // The engine reads record types only when a rule uses them.
        let mut ec = EngineConfig::default();
        p.apply_to(&mut ec);
        assert!(!ec.read_record_type);
        p.site =
            SitePolicy::from_toml("[[rule]]\npolicy = \"default\"\nrtyp = [\"ai\"]\n", &stores)
                .expect("file");
        p.apply_to(&mut ec);
        assert!(ec.read_record_type);
    }

    #[test]
    fn the_policy_decides_the_engines_archive_fields() {
        let mut p = Policy::java_default(Vec::new());
        p.archive_fields = vec!["HIHI".into()];
        p.output_record_types = vec!["bo".into(), "mbbo".into()];
        p.output_record_fields = vec!["ZNAM".into()];
        let mut ec = EngineConfig::default();
        p.apply_to(&mut ec);
        assert_eq!(ec.default_archive_fields, ["HIHI"]);
        let znam = vec!["ZNAM".to_string()];
        assert_eq!(
            ec.record_type_fields,
            BTreeMap::from([("bo".to_string(), znam.clone()), ("mbbo".to_string(), znam)])
        );
        // No extra fields: the engine gets none (and never reads .RTYP).
        p.output_record_fields.clear();
        p.apply_to(&mut ec);
        assert!(ec.record_type_fields.is_empty());
    }

    #[test]
    fn the_engines_own_defaults_are_the_policys() {
        // EngineConfig::default() serves the engine's tests; the binary's values come from
        // the policy. They must not drift apart.
        let engine = EngineConfig::default();
        let mut from_policy = EngineConfig::default();
        Policy::java_default(Vec::new()).apply_to(&mut from_policy);
        assert_eq!(
            from_policy.default_archive_fields,
            engine.default_archive_fields
        );
        assert_eq!(from_policy.record_type_fields, engine.record_type_fields);
    }

    #[test]
    fn new_pvs_get_every_configured_store_in_order() {
        let mut stores = DataStores::new(archiver_storage::Backend::fs());
        for (name, g) in [
            ("STS", archiver_pb::Granularity::Hour),
            ("MTS", archiver_pb::Granularity::Day),
        ] {
            stores
                .add(Tier::new(name, format!("/a/{name}"), g))
                .expect("add");
        }
        let p = Policy::for_stores(&stores);
        assert_eq!(
            p.data_stores,
            [
                "pb://localhost?name=STS&rootFolder=/a/STS&partitionGranularity=PARTITION_HOUR",
                "pb://localhost?name=MTS&rootFolder=/a/MTS&partitionGranularity=PARTITION_DAY",
            ]
        );
    }

    #[test]
    fn a_type_info_with_a_bad_period_is_refused_and_dont_archive_is_none() {
        let p = Policy::java_default(Vec::new());
        let mut info = PvTypeInfo::new_for_archiving(
            "A:B",
            archiver_pb::PayloadType::ScalarDouble,
            1,
            archiver_registry::SamplingMethod::Scan,
            2.0,
            Vec::new(),
            archiver_pb::Timestamp::new(1_700_000_000, 0),
        )
        .expect("info");
        let cfg = p
            .config_from_type_info(&info)
            .expect("valid")
            .expect("archived");
        assert_eq!((cfg.method, cfg.period), (SamplingMethod::Scan, 2.0));
        // The decimal the period was given as, not the float's binary value.
        info.sampling_period = 0.1;
        let cfg = p
            .config_from_type_info(&info)
            .expect("valid")
            .expect("archived");
        assert_eq!(cfg.period, 0.1);
        info.sampling_period = f32::INFINITY;
        assert!(p.config_from_type_info(&info).is_err());
        info.sampling_period = 1.0;
        info.sampling_method = archiver_registry::SamplingMethod::DontArchive;
        assert_eq!(p.config_from_type_info(&info), Ok(None));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any number is either refused or kept as it is, inside the documented range.
        #[test]
        fn any_number_is_refused_or_in_range(bits in any::<u64>()) {
            let v = f64::from_bits(bits);
            match SamplingPeriod::new(v) {
                Ok(p) => {
                    prop_assert!(p.secs() == 0.0
                        || (MIN_SAMPLING_PERIOD_SECS..=MAX_SAMPLING_PERIOD_SECS).contains(&p.secs()));
                    prop_assert!(p.secs() == v);
                }
                Err(PeriodError::OutOfRange { value }) => {
                    prop_assert_eq!(value.to_bits(), bits);
                    prop_assert!(v.is_nan() || v < 0.0 || (v > 0.0 && v < MIN_SAMPLING_PERIOD_SECS)
                        || v > MAX_SAMPLING_PERIOD_SECS);
                }
                Err(e) => prop_assert!(false, "{e}"),
            }
        }

        /// Any text parses or is refused with a message; nothing panics.
        #[test]
        fn any_text_parses_or_is_refused(text in ".{0,40}") {
            match SamplingPeriod::parse(&text) {
                Ok(p) => prop_assert!(SamplingPeriod::new(p.secs()).is_ok()),
                Err(e) => prop_assert!(e.to_string().contains("samplingperiod")),
            }
        }

        /// Numbers as clients write them.
        #[test]
        fn numbers_as_text(v in any::<f64>()) {
            let r = SamplingPeriod::parse(&v.to_string());
            prop_assert_eq!(r.is_ok(), SamplingPeriod::new(v).is_ok());
        }
    }
}
