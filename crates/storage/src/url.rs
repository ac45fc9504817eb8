//! Data store URLs, as a PV's `PVTypeInfo.dataStores` lists them and as the Java
//! appliance's `PlainPBStoragePlugin` reads them (`initialize`, `getURLRepresentation`):
//!
//! ```text
//! pb://localhost?name=STS&rootFolder=/arch/sts&partitionGranularity=PARTITION_HOUR&consolidateOnShutdown=true
//! ```
//!
//! | parameter | meaning | here |
//! |---|---|---|
//! | `name` | the store's identity (STS, MTS, LTS...); required | [`StoreUrl::name`] |
//! | `rootFolder` | its folder; required; may hold `${VAR}` | [`StoreUrl::root_folder`] |
//! | `partitionGranularity` | `PARTITION_5MIN` … `PARTITION_YEAR`; required | [`StoreUrl::granularity`] |
//! | `hold`, `gather` | ETL high/low watermarks in partitions (`hold ≥ gather`) | kept for ETL |
//! | `consolidateOnShutdown` | ETL this store into the next on shutdown | kept for ETL |
//! | `pp` (repeatable) | post-processors cached by ETL | kept for ETL |
//! | `reducedata` | post-processor reducing data moved into this store | kept, not applied (ETL copies the raw data) |
//! | `etlIntoStoreIf`, `etlOutofStoreIf` | named flags gating ETL | ETL ([`crate::NamedFlags`]) |
//! | `terminator` | chunk key terminator (default `:`) | used by the tier |
//! | `compress` | `NONE` (accepted) or `ZIP_PER_PV` (refused) | |
//!
//! Values are form-decoded (`%XX`, and `+` is a space, as Java's `URLDecoder`), so the
//! percent-encoded `rootFolder` of Java's `getURLRepresentation` reads back as written.
//! Unknown parameters are kept, in order, and written back (Java ignores them). Only the
//! `pb` scheme is a [`StoreUrl`]; `blackhole://localhost?name=...` (an ETL destination that
//! discards, for retention) is read by [`blackhole_name`] and configured through
//! [`DataStores`](crate::DataStores); `parquet://`, `pbraw://`, `merge://` and `rtree://`
//! are refused by name.
//!
//! **Environment variables.** Java's default policies write `rootFolder=${ARCHAPPL_SHORT_TERM_FOLDER}`
//! and expand it from the environment (or a system property) when the plugin is built.
//! Here the placeholder is checked when the URL is parsed, kept as written in
//! [`StoreUrl::root_folder`] (so the URL written back, and stored in a PV's type info, stays
//! portable between hosts, as Java's policy files are), and expanded from the process
//! environment when a tier is built ([`Tier::from_url`](crate::Tier::from_url)); an unset
//! variable is an error naming it. Only `${NAME}` in `rootFolder` is expanded; a `$` not
//! followed by `{` is kept as it is.

use std::fmt;

use archiver_pb::Granularity;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

/// Why a data store URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not of the form `scheme://host?query`.
    #[error(
        "not a data store URL (expected pb://localhost?name=...&rootFolder=...&partitionGranularity=...)"
    )]
    NotAUrl,
    /// A scheme other than `pb`.
    #[error("store scheme {0:?} is not supported (only pb://)")]
    UnsupportedScheme(String),
    /// A required parameter is absent.
    #[error("missing parameter {0}")]
    Missing(&'static str),
    /// A required parameter is empty.
    #[error("parameter {0} is empty")]
    Empty(&'static str),
    /// A single-valued parameter appears twice.
    #[error("parameter {0} is given more than once")]
    Duplicate(String),
    /// `partitionGranularity` is not a Java granularity name.
    #[error(
        "partitionGranularity={0:?} is not one of PARTITION_5MIN, PARTITION_15MIN, PARTITION_30MIN, PARTITION_HOUR, PARTITION_DAY, PARTITION_MONTH, PARTITION_YEAR"
    )]
    BadGranularity(String),
    /// `hold` or `gather` is not a non-negative whole number.
    #[error("{param}={value:?} is not a whole number of partitions")]
    BadNumber {
        /// The parameter.
        param: &'static str,
        /// Its value.
        value: String,
    },
    /// `gather` is larger than `hold` (Java: `holdETLForPartions - gatherETLinPartitions`
    /// must not be negative).
    #[error("gather={gather} is larger than hold={hold}")]
    GatherAboveHold {
        /// `hold`.
        hold: u32,
        /// `gather`.
        gather: u32,
    },
    /// A boolean parameter is neither `true` nor `false`.
    #[error("{param}={value:?} is neither true nor false")]
    BadBool {
        /// The parameter.
        param: &'static str,
        /// Its value.
        value: String,
    },
    /// `terminator` is not one character, or one that cannot end a chunk key.
    #[error("terminator={0:?} must be one character other than '/' and NUL")]
    BadTerminator(String),
    /// `compress` other than `NONE`.
    #[error("compress={0:?} is not supported (only NONE)")]
    UnsupportedCompression(String),
    /// `${` without `}`, or with an empty or invalid variable name.
    #[error("rootFolder {0:?} has a ${{...}} placeholder that is not closed or names no variable")]
    BadPlaceholder(String),
    /// `rootFolder` names an environment variable that is not set.
    #[error("rootFolder uses ${{{var}}}, which is not set in the environment")]
    UnsetVariable {
        /// The variable.
        var: String,
    },
}

/// A parsed `pb://` data store URL. [`fmt::Display`] writes it back in a canonical form
/// that parses to the same value (`pb://localhost?name=...`, parameters in Java's order,
/// defaults left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// The store's name (`STS`, `MTS`, `LTS`...).
    pub name: String,
    /// The root folder as written (decoded, `${VAR}` not expanded).
    pub root_folder: String,
    /// The partition granularity.
    pub granularity: Granularity,
    /// ETL waits until the oldest partition is older than this many partitions (0 = move
    /// each partition as soon as it closes).
    pub hold: u32,
    /// ETL then moves this many partitions at a time (≤ `hold`).
    pub gather: u32,
    /// ETL this store into the next one on shutdown.
    pub consolidate_on_shutdown: bool,
    /// Post-processors whose results ETL caches (`pp=`, in order).
    pub post_processors: Vec<String>,
    /// The post-processor that reduces data moved into this store (`reducedata=`): ETL
    /// writes its output instead of the raw samples (`etl` module, with a `Reducer`).
    pub reduce_data: Option<String>,
    /// The named flag that gates ETL into this store (`etlIntoStoreIf=`).
    pub etl_into_store_if: Option<String>,
    /// The named flag that gates ETL out of this store (`etlOutofStoreIf=`).
    pub etl_out_of_store_if: Option<String>,
    /// The chunk key terminator, if not the default `:`.
    pub terminator: Option<char>,
    /// Parameters this crate does not know, in order.
    pub extra: Vec<(String, String)>,
}

/// The characters encoded in a parameter value: those that would end or change it in a
/// query string. `/`, `:`, `$`, `{` and `}` stay readable; non-ASCII is always encoded.
const VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'=')
    .add(b'?');

fn set<T>(slot: &mut Option<T>, key: &str, value: T) -> Result<(), UrlError> {
    if slot.is_some() {
        return Err(UrlError::Duplicate(key.to_string()));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_count(param: &'static str, value: &str) -> Result<u32, UrlError> {
    value.parse().map_err(|_| UrlError::BadNumber {
        param,
        value: value.to_string(),
    })
}

fn parse_bool(param: &'static str, value: &str) -> Result<bool, UrlError> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(UrlError::BadBool {
            param,
            value: value.to_string(),
        })
    }
}

fn required(v: Option<String>, param: &'static str) -> Result<String, UrlError> {
    match v {
        None => Err(UrlError::Missing(param)),
        Some(s) if s.is_empty() => Err(UrlError::Empty(param)),
        Some(s) => Ok(s),
    }
}

/// The name of a `blackhole://` data store URL (Java's `BlackholeStoragePlugin`, an ETL
/// destination that discards what it is given: retention, "keep 5 years"), `None` for a URL
/// of any other scheme. The name is the `name` parameter, `blackhole` without one.
///
/// ```
/// use archiver_storage::blackhole_name;
/// assert_eq!(blackhole_name("blackhole://localhost?name=Trash"), Some("Trash".to_string()));
/// assert_eq!(blackhole_name("blackhole://localhost"), Some("blackhole".to_string()));
/// assert_eq!(blackhole_name("pb://localhost?name=STS"), None);
/// ```
pub fn blackhole_name(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    if !scheme.eq_ignore_ascii_case("blackhole") {
        return None;
    }
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    let name = form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k == "name" && !v.is_empty())
        .map_or_else(|| "blackhole".to_string(), |(_, v)| v.into_owned());
    Some(name)
}

/// The URL of the blackhole store `name`, as [`blackhole_name`] reads it back.
pub fn blackhole_url(name: &str) -> String {
    format!(
        "blackhole://localhost?name={}",
        utf8_percent_encode(name, VALUE)
    )
}

impl StoreUrl {
    /// A URL with the three required parameters and defaults for the rest.
    pub fn new(
        name: impl Into<String>,
        root_folder: impl Into<String>,
        granularity: Granularity,
    ) -> Self {
        StoreUrl {
            name: name.into(),
            root_folder: root_folder.into(),
            granularity,
            hold: 0,
            gather: 0,
            consolidate_on_shutdown: false,
            post_processors: Vec::new(),
            reduce_data: None,
            etl_into_store_if: None,
            etl_out_of_store_if: None,
            terminator: None,
            extra: Vec::new(),
        }
    }

    /// Parses `url`; the error names the problem.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = url.trim().split_once("://").ok_or(UrlError::NotAUrl)?;
        if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(UrlError::NotAUrl);
        }
        if !scheme.eq_ignore_ascii_case("pb") {
            return Err(UrlError::UnsupportedScheme(scheme.to_string()));
        }
        // The host (always localhost in Java's URLs) and any path are ignored, as Java does.
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (_, query) = rest.split_once('?').ok_or(UrlError::Missing("name"))?;

        let (mut name, mut root, mut granularity) = (None, None, None);
        let (mut hold, mut gather, mut consolidate) = (None, None, None);
        let (mut reduce, mut into_if, mut outof_if, mut terminator, mut compress) =
            (None, None, None, None, None);
        let mut pp = Vec::new();
        let mut extra = Vec::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key.is_empty() && value.is_empty() {
                continue; // `&&` or a trailing `&`
            }
            let v = value.into_owned();
            match &*key {
                "name" => set(&mut name, &key, v)?,
                "rootFolder" => set(&mut root, &key, v)?,
                "partitionGranularity" => set(&mut granularity, &key, v)?,
                "hold" => set(&mut hold, &key, parse_count("hold", &v)?)?,
                "gather" => set(&mut gather, &key, parse_count("gather", &v)?)?,
                "consolidateOnShutdown" => set(
                    &mut consolidate,
                    &key,
                    parse_bool("consolidateOnShutdown", &v)?,
                )?,
                "pp" => pp.push(v),
                "reducedata" => set(&mut reduce, &key, v)?,
                "etlIntoStoreIf" => set(&mut into_if, &key, v)?,
                "etlOutofStoreIf" => set(&mut outof_if, &key, v)?,
                "terminator" => {
                    let mut chars = v.chars();
                    let c = match (chars.next(), chars.next()) {
                        (Some(c), None) if c != '/' && c != '\0' => c,
                        _ => return Err(UrlError::BadTerminator(v)),
                    };
                    set(&mut terminator, &key, c)?;
                }
                "compress" => set(&mut compress, &key, v)?,
                _ => extra.push((key.into_owned(), v)),
            }
        }
        let name = required(name, "name")?;
        let root_folder = required(root, "rootFolder")?;
        check_placeholders(&root_folder)?;
        let granularity = required(granularity, "partitionGranularity")?;
        let granularity: Granularity = granularity
            .parse()
            .map_err(|_| UrlError::BadGranularity(granularity))?;
        if let Some(c) = compress.filter(|c| c != "NONE") {
            return Err(UrlError::UnsupportedCompression(c));
        }
        let (hold, gather) = (hold.unwrap_or(0), gather.unwrap_or(0));
        if gather > hold {
            return Err(UrlError::GatherAboveHold { hold, gather });
        }
        Ok(StoreUrl {
            name,
            root_folder,
            granularity,
            hold,
            gather,
            consolidate_on_shutdown: consolidate.unwrap_or(false),
            post_processors: pp,
            reduce_data: reduce,
            etl_into_store_if: into_if,
            etl_out_of_store_if: outof_if,
            terminator,
            extra,
        })
    }

    /// The root folder with every `${VAR}` replaced by `lookup(VAR)`; an unset variable
    /// is an error naming it.
    pub fn expand_root_folder(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<String, UrlError> {
        let mut out = String::with_capacity(self.root_folder.len());
        let mut rest = self.root_folder.as_str();
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| UrlError::BadPlaceholder(self.root_folder.clone()))?;
            let var = &after[..end];
            let value = lookup(var).ok_or_else(|| UrlError::UnsetVariable {
                var: var.to_string(),
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The root folder expanded from the process environment.
    pub fn expand_root_folder_from_env(&self) -> Result<String, UrlError> {
        self.expand_root_folder(|var| std::env::var(var).ok())
    }
}

/// Checks that every `${` has a `}` and names a variable (`[A-Za-z0-9_.]+`, the names
/// of environment variables and Java system properties).
fn check_placeholders(root: &str) -> Result<(), UrlError> {
    let mut rest = root;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| UrlError::BadPlaceholder(root.to_string()))?;
        let var = &after[..end];
        if var.is_empty()
            || !var
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(UrlError::BadPlaceholder(root.to_string()));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let enc = |s: &str| utf8_percent_encode(s, VALUE).to_string();
        write!(
            f,
            "pb://localhost?name={}&rootFolder={}&partitionGranularity={}",
            enc(&self.name),
            enc(&self.root_folder),
            self.granularity.url_name()
        )?;
        if self.hold != 0 {
            write!(f, "&hold={}", self.hold)?;
        }
        if self.gather != 0 {
            write!(f, "&gather={}", self.gather)?;
        }
        if self.consolidate_on_shutdown {
            f.write_str("&consolidateOnShutdown=true")?;
        }
        for pp in &self.post_processors {
            write!(f, "&pp={}", enc(pp))?;
        }
        if let Some(r) = &self.reduce_data {
            write!(f, "&reducedata={}", enc(r))?;
        }
        if let Some(flag) = &self.etl_into_store_if {
            write!(f, "&etlIntoStoreIf={}", enc(flag))?;
        }
        if let Some(flag) = &self.etl_out_of_store_if {
            write!(f, "&etlOutofStoreIf={}", enc(flag))?;
        }
        if let Some(t) = self.terminator {
            write!(f, "&terminator={}", enc(t.encode_utf8(&mut [0; 4])))?;
        }
        for (k, v) in &self.extra {
            write!(f, "&{}={}", enc(k), enc(v))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StoreUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STS: &str = "pb://localhost?name=STS&rootFolder=${ARCHAPPL_SHORT_TERM_FOLDER}&partitionGranularity=PARTITION_HOUR&consolidateOnShutdown=true";

    #[test]
    fn java_default_stores_parse_and_round_trip() {
        let sts = StoreUrl::parse(STS).expect("sts");
        assert_eq!(sts.name, "STS");
        assert_eq!(sts.root_folder, "${ARCHAPPL_SHORT_TERM_FOLDER}");
        assert_eq!(sts.granularity, Granularity::Hour);
        assert!(sts.consolidate_on_shutdown);
        assert_eq!(sts.to_string(), STS);

        let mts = "pb://localhost?name=MTS&rootFolder=${ARCHAPPL_MEDIUM_TERM_FOLDER}&partitionGranularity=PARTITION_DAY&hold=2&gather=1";
        let m = StoreUrl::parse(mts).expect("mts");
        assert_eq!((m.hold, m.gather), (2, 1));
        assert_eq!(m.to_string(), mts);

        let lts = "pb://localhost?name=LTS&rootFolder=/arch/lts&partitionGranularity=PARTITION_YEAR&pp=firstSample&pp=firstSample_3600&reducedata=mean_600&etlIntoStoreIf=f1&etlOutofStoreIf=f2&terminator=%23&custom=x";
        let l = StoreUrl::parse(lts).expect("lts");
        assert_eq!(l.post_processors, ["firstSample", "firstSample_3600"]);
        assert_eq!(l.reduce_data.as_deref(), Some("mean_600"));
        assert_eq!(l.etl_into_store_if.as_deref(), Some("f1"));
        assert_eq!(l.etl_out_of_store_if.as_deref(), Some("f2"));
        assert_eq!(l.terminator, Some('#'));
        assert_eq!(l.extra, [("custom".to_string(), "x".to_string())]);
        assert_eq!(l.to_string(), lts);
        assert_eq!(StoreUrl::parse(&l.to_string()), Ok(l));
    }

    #[test]
    fn percent_encoded_root_folders_decode() {
        // Java's getURLRepresentation encodes the root folder with URLEncoder.
        let u = StoreUrl::parse(
            "pb://localhost?name=STS&rootFolder=%2Fdata%2Fmy+sts%26more%C3%A9&partitionGranularity=PARTITION_5MIN&compress=NONE",
        )
        .expect("parse");
        assert_eq!(u.root_folder, "/data/my sts&moreé");
        assert_eq!(
            u.to_string(),
            "pb://localhost?name=STS&rootFolder=/data/my%20sts%26more%C3%A9&partitionGranularity=PARTITION_5MIN"
        );
        assert_eq!(StoreUrl::parse(&u.to_string()), Ok(u));
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        let base = "rootFolder=/a&partitionGranularity=PARTITION_HOUR";
        let cases: Vec<(String, UrlError)> = vec![
            ("".into(), UrlError::NotAUrl),
            ("/arch/sts".into(), UrlError::NotAUrl),
            (
                format!("parquet://localhost?name=S&{base}"),
                UrlError::UnsupportedScheme("parquet".into()),
            ),
            (
                "blackhole://localhost".into(),
                UrlError::UnsupportedScheme("blackhole".into()),
            ),
            ("pb://localhost".into(), UrlError::Missing("name")),
            (
                "pb://localhost?name=S&partitionGranularity=PARTITION_HOUR".into(),
                UrlError::Missing("rootFolder"),
            ),
            (
                "pb://localhost?name=S&rootFolder=/a".into(),
                UrlError::Missing("partitionGranularity"),
            ),
            (
                format!("pb://localhost?name=&{base}"),
                UrlError::Empty("name"),
            ),
            (
                format!("pb://localhost?name=A&name=B&{base}"),
                UrlError::Duplicate("name".into()),
            ),
            (
                "pb://localhost?name=S&rootFolder=/a&partitionGranularity=HOUR".into(),
                UrlError::BadGranularity("HOUR".into()),
            ),
            (
                format!("pb://localhost?name=S&{base}&hold=-1"),
                UrlError::BadNumber {
                    param: "hold",
                    value: "-1".into(),
                },
            ),
            (
                format!("pb://localhost?name=S&{base}&hold=1&gather=3"),
                UrlError::GatherAboveHold { hold: 1, gather: 3 },
            ),
            (
                format!("pb://localhost?name=S&{base}&consolidateOnShutdown=yes"),
                UrlError::BadBool {
                    param: "consolidateOnShutdown",
                    value: "yes".into(),
                },
            ),
            (
                format!("pb://localhost?name=S&{base}&terminator=ab"),
                UrlError::BadTerminator("ab".into()),
            ),
            (
                format!("pb://localhost?name=S&{base}&terminator=/"),
                UrlError::BadTerminator("/".into()),
            ),
            (
                format!("pb://localhost?name=S&{base}&compress=ZIP_PER_PV"),
                UrlError::UnsupportedCompression("ZIP_PER_PV".into()),
            ),
            (
                "pb://localhost?name=S&rootFolder=${X&partitionGranularity=PARTITION_HOUR".into(),
                UrlError::BadPlaceholder("${X".into()),
            ),
            (
                "pb://localhost?name=S&rootFolder=/a/${}&partitionGranularity=PARTITION_HOUR"
                    .into(),
                UrlError::BadPlaceholder("/a/${}".into()),
            ),
        ];
        for (url, want) in cases {
            let got = StoreUrl::parse(&url);
            assert_eq!(got.as_ref().err(), Some(&want), "{url}");
            // Every message names something.
            assert!(!want.to_string().is_empty());
        }
        assert_eq!(
            UrlError::Missing("rootFolder").to_string(),
            "missing parameter rootFolder"
        );
    }

    #[test]
    fn placeholders_expand_or_name_the_missing_variable() {
        let u = StoreUrl::parse(
            "pb://localhost?name=S&rootFolder=${BASE}/sts-${HOST.NAME}$x&partitionGranularity=PARTITION_HOUR",
        )
        .expect("parse");
        let env = |v: &str| match v {
            "BASE" => Some("/arch".to_string()),
            "HOST.NAME" => Some("h1".to_string()),
            _ => None,
        };
        assert_eq!(u.expand_root_folder(env).as_deref(), Ok("/arch/sts-h1$x"));
        assert_eq!(
            u.expand_root_folder(|_| None),
            Err(UrlError::UnsetVariable { var: "BASE".into() })
        );
        assert_eq!(
            UrlError::UnsetVariable { var: "BASE".into() }.to_string(),
            "rootFolder uses ${BASE}, which is not set in the environment"
        );
    }
}
