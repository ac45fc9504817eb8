//! Engine settings ([`EngineConfig`]), including the archive-field policy values, and the
//! rule that sizes a PV's buffer from them.
//!
//! The policy *values* (which fields are archived when a request names none, which extra
//! fields which record types get) are the appliance's decision (Java: `policies.py`;
//! `archiver_appliance::Policy::apply_to` sets them); the engine only carries them out.
//! [`EngineConfig::default`] holds the same Java defaults, for the engine's own tests and
//! tools (a test of the appliance checks that the two agree).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::pv::PvConfig;

use super::fields::{DEFAULT_ARCHIVE_FIELDS, OUTPUT_RECORD_FIELDS, OUTPUT_RECORD_TYPES};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How often buffers are written to the short-term store (Java `secondsToBuffer`).
    pub write_period: Duration,
    /// Allowed difference between IOC and server clocks (`server_ioc_drift_secs`).
    pub drift_secs: i64,
    /// Archive fields of a PV when the request names none (Java's default policy:
    /// `HIHI HIGH LOW LOLO LOPR HOPR`). A PV monitors at most 254 fields in all (archive,
    /// runtime and extra fields); any beyond are not monitored (logged).
    pub default_archive_fields: Vec<String>,
    /// Extra archive fields by record type: when a request names no archive fields, the
    /// engine reads `PV.RTYP` on the first connection and appends the fields listed here
    /// for that record type (exact, case-sensitive match) after the defaults. Java's
    /// default policy (`policies.py`): `ao` and `longout` add `DRVH` and `DRVL`. Empty: the
    /// engine does not read `.RTYP` at all.
    pub record_type_fields: BTreeMap<String, Vec<String>>,
    /// Record types whose PVs keep [`EngineConfig::default_archive_fields`] when their
    /// request names no fields (Java's default policy, `policies.py`: `ai calc calcout
    /// longin dfanout sub`, and the output records `ao longout`): a PV of another record
    /// type (a `stringin`, a `waveform`, an `mbbi`...) stops archiving them once its
    /// `.RTYP` is read. Empty: every record type keeps them (and `.RTYP` is read only for
    /// the fields above).
    pub default_fields_record_types: Vec<String>,
    /// Read `PV.RTYP` on the first connection of every PV (not only of those that get
    /// the fields above), for the status ([`crate::ConnState::record_type`]): the site
    /// policy's rules on record types need it. Default false.
    pub read_record_type: bool,
    /// Buffer bound for a PV archived at every event (period 0).
    pub max_buffer_samples: usize,
    /// Capacity of the shared CA event queue.
    pub queue_capacity: usize,
    /// How often held-back samples are checked for the end of their period.
    pub tick: Duration,
    /// Called (on a blocking thread) after each write period's flush; the binary trims
    /// the C heap there, when the period's buffers have just been released.
    pub after_write: Option<fn()>,
    /// The storage-rate guard (off by default): the most bytes a PV may write to the
    /// short-term store per hour; beyond it, samples are dropped and counted
    /// (`Counters::dropped_rate_limit`).
    pub rate_limit: crate::writer::RateLimit,
    /// The pvAccess client of `pva://` PVs; `None`: from the `EPICS_PVA_*` environment
    /// (read when the first `pva://` PV starts).
    pub pva: Option<archiver_pva::ClientConfig>,
    /// The write-ahead journal (`None`, the default here: none; `archiver serve` has one).
    pub journal: Option<crate::journal::JournalConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            write_period: Duration::from_secs(10),
            drift_secs: 1800,
            default_archive_fields: DEFAULT_ARCHIVE_FIELDS.map(String::from).to_vec(),
            record_type_fields: OUTPUT_RECORD_TYPES
                .iter()
                .map(|rtyp| {
                    (
                        (*rtyp).to_string(),
                        OUTPUT_RECORD_FIELDS.map(String::from).to_vec(),
                    )
                })
                .collect(),
            default_fields_record_types: crate::engine::fields::DEFAULT_FIELD_RECORD_TYPES
                .map(String::from)
                .to_vec(),
            read_record_type: false,
            max_buffer_samples: 100_000,
            rate_limit: Default::default(),
            queue_capacity: 1 << 16,
            tick: Duration::from_millis(200),
            after_write: None,
            pva: None,
            journal: None,
        }
    }
}

/// The buffer bound of a PV, in samples: at least 4, at most
/// `max(config.max_buffer_samples, 4)`.
///
/// Java: `round(writePeriod / samplingPeriod) + 1`, at least 2; with our decimation at most
/// one sample per period is stored, so this bounds MONITOR and SCAN alike. Twice that, so
/// that a slow write does not drop what the next period brings.
///
/// Any `f64` is safe here (defence in depth; the appliance validates periods first): a
/// period that is 0, negative or NaN sizes the buffer as for every event (the maximum); a
/// tiny positive one (`1e-30`) saturates at the maximum; a huge or infinite one gives the
/// minimum.
pub(crate) fn buffer_capacity(config: &EngineConfig, pv: &PvConfig) -> usize {
    let max = config.max_buffer_samples.max(4);
    if pv.period.is_nan() || pv.period <= 0.0 {
        return max;
    }
    let per_write = (config.write_period.as_secs_f64() / pv.period)
        .round()
        .max(1.0);
    // Capped before the cast (a float-to-int cast saturates, but the + 1 and * 2 would not).
    let per_write = if per_write < max as f64 {
        per_write as usize
    } else {
        max
    };
    per_write.saturating_add(1).saturating_mul(2).clamp(4, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::SamplingMethod;

    fn capacity(period: f64) -> usize {
        let config = EngineConfig {
            write_period: Duration::from_secs(10),
            max_buffer_samples: 1000,
            ..EngineConfig::default()
        };
        let pv = PvConfig {
            method: SamplingMethod::Monitor,
            period,
            archive_fields: Vec::new(),
        };
        buffer_capacity(&config, &pv)
    }

    #[test]
    fn buffer_holds_two_write_periods_of_samples() {
        // 10 s / 1 s = 10 per write; (10 + 1) * 2.
        assert_eq!(capacity(1.0), 22);
        assert_eq!(capacity(0.1), 202);
        // Every event: the configured maximum.
        assert_eq!(capacity(0.0), 1000);
        // Slower than the write period: the minimum.
        assert_eq!(capacity(60.0), 4);
    }

    #[test]
    fn any_period_sizes_the_buffer_without_overflow() {
        // Too small to count: as many samples as allowed.
        assert_eq!(capacity(1e-30), 1000);
        assert_eq!(capacity(f64::MIN_POSITIVE), 1000);
        assert_eq!(capacity(5e-324), 1000);
        // Far beyond the write period: the minimum.
        assert_eq!(capacity(1e300), 4);
        assert_eq!(capacity(f64::MAX), 4);
        assert_eq!(capacity(f64::INFINITY), 4);
        // Not a period: as for every event.
        assert_eq!(capacity(f64::NAN), 1000);
        assert_eq!(capacity(-1.0), 1000);
        assert_eq!(capacity(f64::NEG_INFINITY), 1000);
        // A maximum beyond what the arithmetic can hold saturates instead of wrapping.
        let config = EngineConfig {
            max_buffer_samples: usize::MAX,
            ..EngineConfig::default()
        };
        let pv = PvConfig {
            method: SamplingMethod::Scan,
            period: 1e-30,
            archive_fields: Vec::new(),
        };
        assert_eq!(buffer_capacity(&config, &pv), usize::MAX);
    }

    #[test]
    fn default_policy_is_javas() {
        let c = EngineConfig::default();
        assert_eq!(
            c.default_archive_fields,
            ["HIHI", "HIGH", "LOW", "LOLO", "LOPR", "HOPR"]
        );
        let drv = vec!["DRVH".to_string(), "DRVL".to_string()];
        assert_eq!(c.record_type_fields.get("ao"), Some(&drv));
        assert_eq!(c.record_type_fields.get("longout"), Some(&drv));
        assert_eq!(c.record_type_fields.len(), 2);
    }
}
