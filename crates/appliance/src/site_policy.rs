//! The site policy file: what the Java appliance's `policies.py` decides (spec §4.4), as
//! TOML data instead of a Jython script.
//!
//! A site names its **policies** (`[[policy]]`: sampling method and period, data stores,
//! archive fields, controlling PV; `getPolicyList` lists them with their descriptions) and
//! gives **rules** (`[[rule]]`) that pick a policy for a PV from its name (glob or regex),
//! record type (`RTYP`), element count and measured event rate. [`SitePolicy::decide`] is
//! Java's `determinePolicy`:
//!
//! 1. a policy the request names (`archivePV?policy=NAME`) is used as it is (Java's
//!    default `policies.py` does the same); a name the file does not define is refused;
//! 2. otherwise the rules are tried **in file order and the first that matches wins**; a
//!    rule matches when every condition it gives holds; a condition on a fact that is not
//!    known yet (the record type or event rate of a PV that has not connected) does not
//!    hold;
//! 3. no rule matches: the policy `default`.
//!
//! What a policy leaves out comes from the Java defaults ([`crate::Policy`]: MONITOR at
//! 1 s, every configured store, the `[engine]` default archive fields); what an
//! `archivePV` request gives (`samplingperiod`, `samplingmethod`, `controllingPV`) wins
//! over the policy, as in Java.
//!
//! # The file
//!
//! ```toml
//! # A policy: every key but `name` is optional.
//! [[policy]]
//! name = "default"                      # used when no rule matches
//! description = "MONITOR at 1 s, kept in every store"
//!
//! [[policy]]
//! name = "fast"
//! description = "Fast PVs: every update, short-term and medium-term stores only"
//! sampling_method = "MONITOR"           # MONITOR or SCAN
//! sampling_period = 0.1                 # seconds: 0 (every update) or 0.001 ..= 31536000
//! data_stores = ["STS", "MTS"]          # names of configured stores; must start with the
//!                                       # first (the engine writes there); a blackhole
//!                                       # store may end the list; default: all
//! archive_fields = ["HIHI", "LOLO"]     # default: [engine] default_archive_fields
//!
//! [[policy]]
//! name = "beam"
//! description = "Archived only while the beam is on"
//! sampling_method = "SCAN"
//! sampling_period = 10
//! controlling_pv = "BEAM:ON"            # paused while BEAM:ON is 0
//!
//! # Rules, first match wins. Each condition is optional; a rule with none matches every PV.
//! [[rule]]
//! policy = "fast"
//! pv = "LINAC:BPM*:X"                   # a glob (* and ?), or instead:
//! # regex = "LINAC:BPM[0-9]+:(X|Y)"     # a regex matching the whole name
//! rtyp = ["ai", "calc"]                 # record types
//! min_element_count = 1
//! max_element_count = 1
//! min_event_rate = 5.0                  # events per second, as measured by the engine
//! # max_event_rate = 100.0
//!
//! [[rule]]
//! policy = "beam"
//! regex = "RF:.*:(FWD|REV)"
//! ```
//!
//! A policy named `default` need not be written: without one, `default` is the Java
//! defaults. Every value is checked when the file is read ([`SitePolicy::from_toml`]);
//! the error names the policy or rule and the value.
//!
//! # When rules are evaluated
//!
//! At `archivePV` the PV has not connected: only its name (and the policy a request names)
//! is known, so rules on `rtyp`, element counts or event rates do not match then. They take
//! effect when the policies are **re-applied** (`reapplyPolicies`,
//! [`crate::Appliance::reapply_policies`]), which uses what the engine has learnt (element
//! count, event rate since the PV was added) and the catalogue's `extraFields.RTYP`.

use archiver_engine::SamplingMethod;
use archiver_registry::{NameMatcher, NamePattern};
use archiver_storage::{DataStores, Tier, blackhole_url};
use serde::Deserialize;

use crate::policy::{SamplingPeriod, is_archive_field_name};

/// The name of the policy used when no rule matches.
pub const DEFAULT_POLICY: &str = "default";

/// One named policy: what it sets; `None` = the Java default.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NamedPolicy {
    /// The name a request may give (`archivePV?policy=`), and `policyName` of the PVs it
    /// decided.
    pub name: String,
    /// The text `getPolicyList` shows.
    pub description: String,
    /// MONITOR or SCAN.
    pub method: Option<SamplingMethod>,
    /// Sampling period.
    pub period: Option<SamplingPeriod>,
    /// `PVTypeInfo.dataStores` URLs, first store first.
    pub data_stores: Option<Vec<String>>,
    /// Archive fields.
    pub archive_fields: Option<Vec<String>>,
    /// The controlling PV (conditional archiving).
    pub controlling_pv: Option<String>,
}

/// What is known of a PV when its policy is decided. A condition on a fact that is `None`
/// does not hold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PvFacts<'a> {
    /// The PV name.
    pub pv: &'a str,
    /// Its record type (`RTYP`).
    pub rtyp: Option<&'a str>,
    /// Its native element count.
    pub element_count: Option<u32>,
    /// Events per second, as measured.
    pub event_rate: Option<f64>,
}

impl<'a> PvFacts<'a> {
    /// Only the name known (an archive request).
    pub fn name(pv: &'a str) -> Self {
        PvFacts {
            pv,
            ..PvFacts::default()
        }
    }
}

/// A rule: conditions on [`PvFacts`] and the policy they pick.
#[derive(Debug, Clone)]
struct Rule {
    /// Index into [`SitePolicy::policies`].
    policy: usize,
    name: Option<(NamePattern, NameMatcher)>,
    rtyp: Vec<String>,
    min_element_count: Option<u32>,
    max_element_count: Option<u32>,
    min_event_rate: Option<f64>,
    max_event_rate: Option<f64>,
}

impl Rule {
    fn matches(&self, f: &PvFacts<'_>) -> bool {
        fn within<T: PartialOrd + Copy>(v: Option<T>, min: Option<T>, max: Option<T>) -> bool {
            if min.is_none() && max.is_none() {
                return true;
            }
            v.is_some_and(|v| min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m))
        }
        self.name.as_ref().is_none_or(|(_, m)| m.is_match(f.pv))
            && (self.rtyp.is_empty() || f.rtyp.is_some_and(|r| self.rtyp.iter().any(|x| x == r)))
            && within(
                f.element_count,
                self.min_element_count,
                self.max_element_count,
            )
            && within(f.event_rate, self.min_event_rate, self.max_event_rate)
    }
}

/// The site's policies and rules (see the module documentation). The one built without a
/// file ([`SitePolicy::java_default`]) has one policy, `default`, and no rule.
#[derive(Debug, Clone)]
pub struct SitePolicy {
    text: String,
    policies: Vec<NamedPolicy>,
    rules: Vec<Rule>,
}

impl PartialEq for SitePolicy {
    fn eq(&self, other: &Self) -> bool {
        // The rules are compiled from the text.
        self.text == other.text && self.policies == other.policies
    }
}

impl Default for SitePolicy {
    fn default() -> Self {
        SitePolicy::java_default()
    }
}

/// Why a policy file was refused, or a requested policy is unknown.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// The file is not TOML of the documented shape.
    #[error("policy file: {0}")]
    Syntax(String),
    /// A value is wrong; the message names the policy or rule and the value.
    #[error("policy file: {0}")]
    Invalid(String),
    /// A request names a policy the site does not define.
    #[error("policy {name:?} does not exist; the policies are {known}")]
    UnknownPolicy {
        /// The name requested.
        name: String,
        /// The names defined, comma-separated.
        known: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    policy: Vec<PolicyToml>,
    #[serde(default)]
    rule: Vec<RuleToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyToml {
    name: String,
    #[serde(default)]
    description: String,
    sampling_method: Option<String>,
    sampling_period: Option<f64>,
    data_stores: Option<Vec<String>>,
    archive_fields: Option<Vec<String>>,
    controlling_pv: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    policy: String,
    pv: Option<String>,
    regex: Option<String>,
    #[serde(default)]
    rtyp: Vec<String>,
    min_element_count: Option<u32>,
    max_element_count: Option<u32>,
    min_event_rate: Option<f64>,
    max_event_rate: Option<f64>,
}

/// The description of the built-in `default` policy.
const DEFAULT_DESCRIPTION: &str =
    "The Java appliance's default policy: MONITOR at 1 s, every configured store";

impl SitePolicy {
    /// No file: the one policy `default` (the Java defaults), no rule.
    pub fn java_default() -> Self {
        SitePolicy {
            text: String::new(),
            policies: vec![NamedPolicy {
                name: DEFAULT_POLICY.to_string(),
                description: DEFAULT_DESCRIPTION.to_string(),
                ..NamedPolicy::default()
            }],
            rules: Vec::new(),
        }
    }

    /// Reads a policy file's `text` (see the module documentation); store names are
    /// resolved against `stores`.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Syntax`] for text that is not TOML of the documented keys;
    /// [`PolicyError::Invalid`] naming the policy or rule for a duplicate or empty name, a
    /// method that is not MONITOR or SCAN, a period out of range, an unknown store or a
    /// list that does not start with the first store, a bad archive field, controlling PV
    /// or pattern, a rule with both `pv` and `regex` or naming an unknown policy.
    pub fn from_toml(text: &str, stores: &DataStores) -> Result<Self, PolicyError> {
        let file: FileToml =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let bad = |m: String| Err(PolicyError::Invalid(m));
        let mut policies: Vec<NamedPolicy> = Vec::with_capacity(file.policy.len() + 1);
        for p in file.policy {
            let at = format!("policy {:?}", p.name);
            if p.name.trim().is_empty() || p.name != p.name.trim() {
                return bad(format!(
                    "{at}: a policy name must be non-empty, without blanks around it"
                ));
            }
            if policies.iter().any(|q| q.name == p.name) {
                return bad(format!("{at} is defined twice"));
            }
            let method = match p.sampling_method.as_deref() {
                None => None,
                Some(m) => match SamplingMethod::parse(m) {
                    Some(m) => Some(m),
                    None => {
                        return bad(format!(
                            "{at}: sampling_method {m:?} is not MONITOR or SCAN"
                        ));
                    }
                },
            };
            let period = match p.sampling_period {
                None => None,
                Some(s) => Some(
                    SamplingPeriod::new(s)
                        .map_err(|e| PolicyError::Invalid(format!("{at}: {e}")))?,
                ),
            };
            let data_stores = match p.data_stores {
                None => None,
                Some(names) => Some(
                    store_urls(&names, stores)
                        .map_err(|m| PolicyError::Invalid(format!("{at}: {m}")))?,
                ),
            };
            if let Some(f) = p
                .archive_fields
                .iter()
                .flatten()
                .find(|f| !is_archive_field_name(f))
            {
                return bad(format!("{at}: archive field {f:?} is not a field name"));
            }
            // The archivePV parameter's check (Java's PV name characters), so that a
            // typo is refused at load, not found when no PV is ever resumed.
            if let Some(c) = &p.controlling_pv {
                let checked = archiver_registry::names::validate_pv_name(c)
                    .map_err(|e| e.to_string())
                    .and_then(|()| {
                        archiver_pb::path::chunk_key(c)
                            .map(drop)
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = checked {
                    return bad(format!("{at}: controlling_pv {c:?} is not a PV name: {e}"));
                }
            }
            policies.push(NamedPolicy {
                name: p.name,
                description: p.description,
                method,
                period,
                data_stores,
                archive_fields: p.archive_fields,
                controlling_pv: p.controlling_pv,
            });
        }
        if !policies.iter().any(|p| p.name == DEFAULT_POLICY) {
            policies.push(SitePolicy::java_default().policies.remove(0));
        }
        let mut rules = Vec::with_capacity(file.rule.len());
        for (i, r) in file.rule.into_iter().enumerate() {
            let at = format!("rule {} (policy {:?})", i + 1, r.policy);
            let Some(policy) = policies.iter().position(|p| p.name == r.policy) else {
                return bad(format!("{at}: no policy of that name is defined"));
            };
            let pattern = match (r.pv, r.regex) {
                (Some(_), Some(_)) => return bad(format!("{at}: give pv or regex, not both")),
                (Some(g), None) => Some(NamePattern::Glob(g)),
                (None, Some(re)) => Some(NamePattern::Regex(re)),
                (None, None) => None,
            };
            let name = match pattern {
                None => None,
                Some(p) => {
                    let m = p
                        .compile()
                        .map_err(|e| PolicyError::Invalid(format!("{at}: {e}")))?;
                    Some((p, m))
                }
            };
            for (min, max, what) in [
                (r.min_event_rate, r.max_event_rate, "event_rate"),
                (
                    r.min_element_count.map(f64::from),
                    r.max_element_count.map(f64::from),
                    "element_count",
                ),
            ] {
                if min.is_some_and(|v| !v.is_finite()) || max.is_some_and(|v| !v.is_finite()) {
                    return bad(format!("{at}: {what} bounds must be finite numbers"));
                }
                if let (Some(a), Some(b)) = (min, max)
                    && a > b
                {
                    return bad(format!("{at}: min_{what} {a} is above max_{what} {b}"));
                }
            }
            rules.push(Rule {
                policy,
                name,
                rtyp: r.rtyp,
                min_element_count: r.min_element_count,
                max_element_count: r.max_element_count,
                min_event_rate: r.min_event_rate,
                max_event_rate: r.max_event_rate,
            });
        }
        Ok(SitePolicy {
            text: text.to_string(),
            policies,
            rules,
        })
    }

    /// True when the file has rules (without any, every PV gets `default` or the policy
    /// its request names, and nothing needs deciding again).
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// True when a rule has an `rtyp` condition (the engine must then read every PV's
    /// record type).
    pub fn uses_record_types(&self) -> bool {
        self.rules.iter().any(|r| !r.rtyp.is_empty())
    }

    /// The policy file's text (`getPolicyText`; empty without a file).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every policy, in file order (`default` last when the file has none).
    pub fn policies(&self) -> &[NamedPolicy] {
        &self.policies
    }

    /// The policy called `name`.
    pub fn get(&self, name: &str) -> Option<&NamedPolicy> {
        self.policies.iter().find(|p| p.name == name)
    }

    /// Java's `determinePolicy`: the policy `requested` names, else the first rule that
    /// matches `facts`, else `default` (see the module documentation).
    ///
    /// # Errors
    ///
    /// [`PolicyError::UnknownPolicy`] when `requested` names no policy.
    pub fn decide(
        &self,
        facts: &PvFacts<'_>,
        requested: Option<&str>,
    ) -> Result<&NamedPolicy, PolicyError> {
        if let Some(name) = requested {
            return self.get(name).ok_or_else(|| PolicyError::UnknownPolicy {
                name: name.to_string(),
                known: self
                    .policies
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let chosen = self
            .rules
            .iter()
            .find(|r| r.matches(facts))
            .map_or_else(|| self.get(DEFAULT_POLICY), |r| self.policies.get(r.policy));
        // `default` always exists (from_toml adds it) and rule indices are valid.
        Ok(chosen.unwrap_or(&self.policies[0]))
    }
}

/// The URLs of the stores `names`, which must be configured and start with the first
/// configured store.
fn store_urls(names: &[String], stores: &DataStores) -> Result<Vec<String>, String> {
    let tiers = stores.tiers();
    let first = tiers.first().map(Tier::name).unwrap_or_default();
    if names.first().map(String::as_str) != Some(first) {
        return Err(format!(
            "data_stores {names:?} must start with {first:?}, the store the engine writes to"
        ));
    }
    let mut urls = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        if names.iter().filter(|m| *m == n).count() > 1 {
            return Err(format!("data store {n:?} is listed twice"));
        }
        if stores.blackhole() == Some(n.as_str()) {
            // Java's BlackholeStoragePlugin ends a chain: nothing can follow it.
            if i + 1 != names.len() {
                return Err(format!(
                    "data store {n:?} is the blackhole store; it can only be the last"
                ));
            }
            urls.push(blackhole_url(n));
            continue;
        }
        let Some(t) = tiers.iter().find(|t| t.name() == n) else {
            let mut known: Vec<&str> = tiers.iter().map(Tier::name).collect();
            known.extend(stores.blackhole());
            return Err(format!(
                "data store {n:?} is not configured; the stores are {known:?}"
            ));
        };
        urls.push(t.url());
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores() -> DataStores {
        let mut s = DataStores::new(archiver_storage::Backend::fs());
        for (name, g) in [
            ("STS", archiver_pb::Granularity::Hour),
            ("MTS", archiver_pb::Granularity::Day),
            ("LTS", archiver_pb::Granularity::Year),
        ] {
            s.add(Tier::new(name, format!("/a/{name}"), g))
                .expect("add");
        }
        s
    }

    const EXAMPLE: &str = include_str!("../../../docs/policies.example.toml");

    #[test]
    fn the_example_file_reads_and_decides_as_documented() {
        let site = SitePolicy::from_toml(EXAMPLE, &stores()).expect("example");
        let names: Vec<&str> = site.policies().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["default", "fast", "slow", "waveform", "beam"]);
        let d = |f: PvFacts<'_>| site.decide(&f, None).expect("decide").name.clone();
        // By name alone (an archive request).
        assert_eq!(d(PvFacts::name("LINAC:BPM3:X")), "fast");
        assert_eq!(d(PvFacts::name("RF:CAV1:FWD")), "beam");
        assert_eq!(d(PvFacts::name("OTHER:PV")), "default");
        // The waveform rule needs the element count: unknown at request time.
        assert_eq!(d(PvFacts::name("CAM:IMAGE")), "default");
        let wf = PvFacts {
            element_count: Some(1024),
            ..PvFacts::name("CAM:IMAGE")
        };
        assert_eq!(d(wf), "waveform");
        // The slow rule: temperatures (ai) changing less than once a second.
        let temp = PvFacts {
            rtyp: Some("ai"),
            element_count: Some(1),
            event_rate: Some(0.05),
            ..PvFacts::name("HALL:TEMP1")
        };
        assert_eq!(d(temp), "slow");
        assert_eq!(
            d(PvFacts {
                event_rate: Some(20.0),
                ..temp
            }),
            "default"
        );
        assert_eq!(
            d(PvFacts {
                rtyp: Some("bo"),
                ..temp
            }),
            "default"
        );
        // First match wins: the fast rule is before the waveform rule.
        let fast_wf = PvFacts {
            element_count: Some(16),
            ..PvFacts::name("LINAC:BPM1:X")
        };
        assert_eq!(d(fast_wf), "fast");
        // The policy a request names wins over the rules.
        assert_eq!(
            site.decide(&PvFacts::name("LINAC:BPM3:X"), Some("slow"))
                .expect("named")
                .name,
            "slow"
        );
        let e = site
            .decide(&PvFacts::name("A"), Some("nope"))
            .expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "policy \"nope\" does not exist; the policies are default, fast, slow, waveform, beam"
        );
        // Values resolved: store names to URLs, the period checked.
        let fast = site.get("fast").expect("fast");
        assert_eq!(fast.period.map(SamplingPeriod::secs), Some(0.1));
        assert_eq!(fast.method, Some(SamplingMethod::Monitor));
        assert_eq!(
            fast.data_stores.as_deref(),
            Some(
                &[
                    "pb://localhost?name=STS&rootFolder=/a/STS&partitionGranularity=PARTITION_HOUR"
                        .to_string(),
                    "pb://localhost?name=MTS&rootFolder=/a/MTS&partitionGranularity=PARTITION_DAY"
                        .to_string()
                ][..]
            )
        );
        assert_eq!(
            site.get("beam").and_then(|p| p.controlling_pv.as_deref()),
            Some("BEAM:ON")
        );
        assert_eq!(site.text(), EXAMPLE);
    }

    #[test]
    fn without_a_file_there_is_the_java_default() {
        let site = SitePolicy::java_default();
        let p = site.decide(&PvFacts::name("A:B"), None).expect("default");
        assert_eq!(p.name, "default");
        assert_eq!(
            (p.method, p.period, p.data_stores.clone()),
            (None, None, None)
        );
        // A file without a `default` gets the built-in one, listed last.
        let site = SitePolicy::from_toml("[[policy]]\nname = \"x\"\n", &stores()).expect("ok");
        let names: Vec<&str> = site.policies().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["x", "default"]);
        assert_eq!(
            site.decide(&PvFacts::name("A"), None).expect("d").name,
            "default"
        );
    }

    #[test]
    fn a_rule_on_an_unknown_fact_does_not_match() {
        let text = "[[policy]]\nname = \"p\"\n[[rule]]\npolicy = \"p\"\nmax_event_rate = 1.0\n";
        let site = SitePolicy::from_toml(text, &stores()).expect("ok");
        assert_eq!(
            site.decide(&PvFacts::name("A"), None).expect("d").name,
            "default"
        );
        let f = PvFacts {
            event_rate: Some(0.5),
            ..PvFacts::name("A")
        };
        assert_eq!(site.decide(&f, None).expect("d").name, "p");
        // A rule with no condition matches everything.
        let site = SitePolicy::from_toml(
            "[[policy]]\nname = \"p\"\n[[rule]]\npolicy = \"p\"\n",
            &stores(),
        )
        .expect("ok");
        assert_eq!(site.decide(&PvFacts::name("A"), None).expect("d").name, "p");
    }

    #[test]
    fn a_policy_may_end_its_stores_with_the_blackhole() {
        let mut s = stores();
        s.set_blackhole("Gone").expect("blackhole");
        let site = SitePolicy::from_toml(
            "[[policy]]\nname = \"short\"\ndata_stores = [\"STS\", \"MTS\", \"Gone\"]\n",
            &s,
        )
        .expect("file");
        let p = site.get("short").expect("policy");
        let urls = p.data_stores.clone().expect("stores");
        assert_eq!(urls.len(), 3);
        assert_eq!(urls[2], blackhole_url("Gone"));
        assert_eq!(
            archiver_storage::blackhole_name(&urls[2]).as_deref(),
            Some("Gone")
        );
        let e = SitePolicy::from_toml(
            "[[policy]]\nname = \"bad\"\ndata_stores = [\"STS\", \"Gone\", \"MTS\"]\n",
            &s,
        )
        .expect_err("blackhole not last");
        assert!(e.to_string().contains("can only be the last"), "{e}");
    }

    #[test]
    fn bad_files_are_refused_with_the_place_and_value() {
        let cases: &[(&str, &str)] = &[
            (
                "[[policy]]\nname = \"a\"\nsampling_period = 1e-9\n",
                "policy \"a\": samplingperiod 1e-9 is out of range",
            ),
            (
                "[[policy]]\nname = \"a\"\nsampling_method = \"FAST\"\n",
                "policy \"a\": sampling_method \"FAST\" is not MONITOR or SCAN",
            ),
            (
                "[[policy]]\nname = \"a\"\ndata_stores = [\"MTS\"]\n",
                "must start with \"STS\"",
            ),
            (
                "[[policy]]\nname = \"a\"\ndata_stores = [\"STS\", \"XTS\"]\n",
                "data store \"XTS\" is not configured",
            ),
            (
                "[[policy]]\nname = \"a\"\ndata_stores = [\"STS\", \"STS\"]\n",
                "listed twice",
            ),
            (
                "[[policy]]\nname = \"a\"\narchive_fields = [\"VAL\"]\n",
                "archive field \"VAL\"",
            ),
            (
                "[[policy]]\nname = \"a\"\ncontrolling_pv = \"\"\n",
                "controlling_pv \"\"",
            ),
            (
                "[[policy]]\nname = \"beam\"\ncontrolling_pv = \"BEAM ON\"\n",
                "policy \"beam\": controlling_pv \"BEAM ON\" is not a PV name",
            ),
            (
                "[[policy]]\nname = \"beam\"\ncontrolling_pv = \"BEAM:ON@X\"\n",
                "policy \"beam\": controlling_pv \"BEAM:ON@X\" is not a PV name",
            ),
            (
                "[[policy]]\nname = \"a\"\n[[policy]]\nname = \"a\"\n",
                "policy \"a\" is defined twice",
            ),
            ("[[policy]]\nname = \" \"\n", "non-empty"),
            (
                "[[rule]]\npolicy = \"zz\"\n",
                "rule 1 (policy \"zz\"): no policy of that name",
            ),
            (
                "[[rule]]\npolicy = \"default\"\npv = \"A*\"\nregex = \"A.*\"\n",
                "not both",
            ),
            (
                "[[rule]]\npolicy = \"default\"\nregex = \"a)|(b\"\n",
                "rule 1",
            ),
            (
                "[[rule]]\npolicy = \"default\"\nmin_event_rate = 5.0\nmax_event_rate = 1.0\n",
                "min_event_rate 5 is above max_event_rate 1",
            ),
            (
                "[[rule]]\npolicy = \"default\"\nmin_event_rate = nan\n",
                "finite",
            ),
            (
                "[[rule]]\npolicy = \"default\"\ncolour = \"red\"\n",
                "unknown field",
            ),
            ("not toml", "policy file"),
        ];
        for (text, want) in cases {
            let e = SitePolicy::from_toml(text, &stores()).expect_err(text);
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }
}
