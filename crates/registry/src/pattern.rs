//! Name patterns and result limits of the name listings (Java `getAllPVs`).
//!
//! A [`NamePattern`] is data (the glob or regex text), not a closure, so that a backend
//! on a database server can translate it into its own query. [`NamePattern::compile`]
//! gives the in-process matcher that every backend can fall back to; it matches the
//! **whole** name, as Java's `Pattern.matcher(name).matches()` and `WildcardFileFilter` do.
//!
//! Regexes use the syntax of the `regex` crate, which is Java's for everything a PV
//! pattern needs (classes, alternation, repetition, anchors); look-around and
//! back-references are not supported and give [`RegistryError::InvalidPattern`].
//!
//! # Cost
//!
//! Patterns come from HTTP queries that anyone who reaches retrieval may send, so their
//! cost is bounded twice ([`RegistryError::PatternTooCostly`] for both):
//!
//! - its compiled program may be at most [`PATTERN_SIZE_LIMIT`] bytes. The `regex`
//!   crate's own default (10 MiB) admits a 580-byte regex of nested stars and a counted
//!   repetition whose match walks the whole program for every byte of a name: 0.36 s
//!   for a 20-byte PV name, 17 s for a 991-byte one (found by the `names_patterns` fuzz
//!   target; RELIABILITY.md). Under 2 MiB the worst we could build costs about 0.1 ms
//!   a name and 25 ms for the longest name, while an alternation of 1,000 PV names
//!   (25 kB of regex text) still compiles;
//! - a listing stops matching names against one pattern after [`MATCH_TIME_LIMIT`]
//!   ([`NameMatcher::scan`]): even 0.1 ms a name is minutes over a catalogue of
//!   millions, and an ordinary pattern needs about a second for a million names.

use std::time::{Duration, Instant};

use regex::{Regex, RegexBuilder};

use crate::error::RegistryError;
use crate::names::{glob_literal_prefix, glob_to_regex};

/// The largest compiled program of a pattern, in bytes (the `regex` crate's
/// `RegexBuilder::size_limit`): 2 MiB, a fifth of the crate's default. See the module's
/// "Cost".
pub const PATTERN_SIZE_LIMIT: usize = 2 << 20;

/// How long one [`NameScan`] (one listing of names against one pattern) may run: 5 s.
/// See the module's "Cost".
pub const MATCH_TIME_LIMIT: Duration = Duration::from_secs(5);

/// Which names a listing returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NamePattern {
    /// Every name.
    #[default]
    All,
    /// A glob: `*` any run of characters, `?` one character, all else literal.
    Glob(String),
    /// A regex that must match the whole name.
    Regex(String),
}

impl NamePattern {
    /// The pattern of Java's `getAllPVs` parameters: `pv` (a glob) wins over `regex`;
    /// neither means every name.
    pub fn from_java_params(pv: Option<&str>, regex: Option<&str>) -> NamePattern {
        match (pv, regex) {
            (Some(glob), _) => NamePattern::Glob(glob.to_string()),
            (None, Some(re)) => NamePattern::Regex(re.to_string()),
            (None, None) => NamePattern::All,
        }
    }

    /// True if `text` is a regex of the accepted syntax (parsed only, not compiled: a
    /// valid regex may still be refused by [`NamePattern::compile`] as too costly).
    pub fn is_valid_regex(text: &str) -> bool {
        regex_syntax::Parser::new().parse(text).is_ok()
    }

    /// The in-process matcher for this pattern.
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidPattern`] for a regex that does not parse or does not
    /// stand on its own; [`RegistryError::PatternTooCostly`] when the compiled program
    /// would be larger than [`PATTERN_SIZE_LIMIT`].
    pub fn compile(&self) -> Result<NameMatcher, RegistryError> {
        let (regex, prefix) = match self {
            NamePattern::All => (None, String::new()),
            NamePattern::Glob(g) => (
                Some(compile_regex(g, &glob_to_regex(g))?),
                glob_literal_prefix(g).to_string(),
            ),
            NamePattern::Regex(r) => {
                // The regex must stand on its own before it is wrapped: `a)|(b` would
                // otherwise become `^(?:a)|(b)$`, which compiles and matches any name
                // starting with `a` (Java's `Pattern.compile` refuses it as unbalanced).
                // Parsed only (the syntax the `regex` crate accepts, its default nesting
                // limit): a second compile cost as much as the first.
                regex_syntax::Parser::new()
                    .parse(r)
                    .map_err(|e| invalid_pattern(r, e))?;
                (
                    Some(compile_regex(r, &format!("^(?:{r})$"))?),
                    String::new(),
                )
            }
        };
        let pattern = match self {
            NamePattern::All => String::new(),
            NamePattern::Glob(p) | NamePattern::Regex(p) => p.clone(),
        };
        Ok(NameMatcher {
            regex,
            prefix,
            pattern,
        })
    }
}

fn compile_regex(pattern: &str, anchored: &str) -> Result<Regex, RegistryError> {
    RegexBuilder::new(anchored)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => RegistryError::PatternTooCostly {
                pattern: pattern.to_string(),
                reason: format!("its compiled program would be larger than {limit} bytes"),
            },
            other => invalid_pattern(pattern, other),
        })
}

fn invalid_pattern(pattern: &str, reason: impl std::fmt::Display) -> RegistryError {
    RegistryError::InvalidPattern {
        pattern: pattern.to_string(),
        reason: reason.to_string(),
    }
}

/// A compiled [`NamePattern`].
#[derive(Debug, Clone)]
pub struct NameMatcher {
    regex: Option<Regex>,
    prefix: String,
    /// The glob or regex as given, for errors.
    pattern: String,
}

impl NameMatcher {
    /// True if `name` matches the whole pattern. One name costs at most what
    /// [`PATTERN_SIZE_LIMIT`] allows; to match many, use [`NameMatcher::scan`].
    pub fn is_match(&self, name: &str) -> bool {
        self.regex.as_ref().is_none_or(|re| re.is_match(name))
    }

    /// A scan of many names (one listing) that gives up after [`MATCH_TIME_LIMIT`].
    pub fn scan(&self) -> NameScan<'_> {
        self.scan_for(MATCH_TIME_LIMIT)
    }

    /// A scan of many names that gives up once `limit` has passed since this call.
    pub fn scan_for(&self, limit: Duration) -> NameScan<'_> {
        NameScan {
            matcher: self,
            started: Instant::now(),
            limit,
            checked: 0,
        }
    }

    /// Text every matching name starts with (`""` when unknown): a sorted backend can
    /// seek to it and stop at the first name without it.
    pub fn literal_prefix(&self) -> &str {
        &self.prefix
    }
}

/// One listing's matching of names against a [`NameMatcher`], bounded in time.
///
/// The clock is read after each name, so a scan overruns its limit by at most one name
/// (bounded by [`PATTERN_SIZE_LIMIT`]). Time spent between calls (reading the names from
/// a database) counts too: the limit is on the listing, not on the regex alone.
#[derive(Debug)]
pub struct NameScan<'a> {
    matcher: &'a NameMatcher,
    started: Instant,
    limit: Duration,
    checked: usize,
}

impl NameScan<'_> {
    /// True if `name` matches the whole pattern.
    ///
    /// # Errors
    ///
    /// [`RegistryError::PatternTooCostly`] once the scan has run longer than its limit
    /// (a pattern matching every name, [`NamePattern::All`], never fails).
    pub fn is_match(&mut self, name: &str) -> Result<bool, RegistryError> {
        let Some(re) = &self.matcher.regex else {
            return Ok(true);
        };
        let hit = re.is_match(name);
        self.checked += 1;
        if self.started.elapsed() > self.limit {
            return Err(RegistryError::PatternTooCostly {
                pattern: self.matcher.pattern.clone(),
                reason: format!(
                    "matching it against {} names took longer than {:?}",
                    self.checked, self.limit
                ),
            });
        }
        Ok(hit)
    }
}

/// How many names a listing returns at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// No limit (Java `limit=-1`).
    All,
    /// At most this many.
    AtMost(usize),
}

impl Limit {
    /// Java `getAllPVs`'s default: 500 names.
    pub const JAVA_DEFAULT: Limit = Limit::AtMost(500);

    /// The Java `limit` parameter: `-1` (or any negative number) means all.
    pub fn from_java(limit: i64) -> Limit {
        usize::try_from(limit).map_or(Limit::All, Limit::AtMost)
    }

    /// True once `count` names have been collected.
    pub fn reached(self, count: usize) -> bool {
        match self {
            Limit::All => false,
            Limit::AtMost(n) => count >= n,
        }
    }

    /// What is left of this limit after `used` names.
    pub fn minus(self, used: usize) -> Limit {
        match self {
            Limit::All => Limit::All,
            Limit::AtMost(n) => Limit::AtMost(n.saturating_sub(used)),
        }
    }
}

impl Default for Limit {
    /// [`Limit::JAVA_DEFAULT`].
    fn default() -> Self {
        Limit::JAVA_DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names() {
        let all = NamePattern::All.compile().unwrap();
        assert!(all.is_match("anything") && all.is_match(""));
        let glob = NamePattern::Glob("KLYS:*:I".into()).compile().unwrap();
        assert!(glob.is_match("KLYS:LI20:I"));
        assert!(!glob.is_match("KLYS:LI20:IX"));
        assert_eq!(glob.literal_prefix(), "KLYS:");
        let re = NamePattern::Regex("KLYS:.*".into()).compile().unwrap();
        assert!(re.is_match("KLYS:1"));
        assert!(!re.is_match("XKLYS:1"), "regex is anchored at the start");
        let alt = NamePattern::Regex("A|B".into()).compile().unwrap();
        assert!(alt.is_match("A") && alt.is_match("B") && !alt.is_match("AB"));
        assert_eq!(alt.literal_prefix(), "");
    }

    #[test]
    fn a_regex_cannot_escape_its_anchors() {
        for r in ["a)|(b", "A)|(.*", ")(", "A)(?:B"] {
            assert!(
                matches!(
                    NamePattern::Regex(r.into()).compile(),
                    Err(RegistryError::InvalidPattern { .. })
                ),
                "{r:?} compiled"
            );
        }
    }

    #[test]
    fn bad_regex_is_a_typed_error() {
        let err = NamePattern::Regex("(unclosed".into())
            .compile()
            .unwrap_err();
        match err {
            RegistryError::InvalidPattern { pattern, .. } => assert_eq!(pattern, "(unclosed"),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The slow unit of the `names_patterns` fuzz target: a 580-byte regex (nested stars
    /// and `{61252}`) whose program the `regex` crate's default limit admits, and whose
    /// match took 0.36 s for a 20-byte PV name.
    const SLOW_REGEX_INPUT: &[u8] = include_bytes!(
        "../../../fuzz/regressions/names_patterns/slow-regex-match-ef1076534f332fee0a21bc429aaf0532f25e0360"
    );

    #[test]
    fn a_regex_whose_match_walks_a_huge_program_is_refused() {
        let text = String::from_utf8_lossy(SLOW_REGEX_INPUT);
        let (regex, _) = text.split_once('\n').unwrap_or((&text, ""));
        assert!(regex.contains("{61252}"), "the committed input changed");
        assert!(NamePattern::is_valid_regex(regex), "it is a valid regex");
        match NamePattern::Regex(regex.to_string()).compile() {
            Err(e @ RegistryError::PatternTooCostly { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("larger than 2097152 bytes"), "{msg}");
                assert!(
                    msg.contains("... (") && msg.len() < 600,
                    "excerpt only: {msg}"
                );
            }
            other => panic!("expected PatternTooCostly, got {other:?}"),
        }
    }

    #[test]
    fn an_alternation_of_a_thousand_pv_names_still_compiles() {
        let names: Vec<String> = (0..1000)
            .map(|i| format!("SR{:02}C-DI:BPM{i:03}:SA:X", i % 30))
            .collect();
        let m = NamePattern::Regex(names.join("|")).compile().unwrap();
        let mut scan = m.scan();
        for n in &names {
            assert!(scan.is_match(n).unwrap(), "{n}");
        }
        assert!(!scan.is_match("SR00C-DI:BPM000:SA:Y").unwrap());
    }

    #[test]
    fn a_scan_gives_up_after_its_time_limit() {
        let m = NamePattern::Glob("A*".into()).compile().unwrap();
        let mut scan = m.scan_for(Duration::ZERO);
        let gave_up = (0..1000)
            .map(|i| scan.is_match(&format!("A{i}")))
            .find_map(Result::err);
        match gave_up {
            Some(RegistryError::PatternTooCostly { pattern, reason }) => {
                assert_eq!(pattern, "A*");
                assert!(reason.contains("took longer than 0ns"), "{reason}");
            }
            other => panic!("expected PatternTooCostly, got {other:?}"),
        }
        let all = NamePattern::All.compile().unwrap();
        let mut scan = all.scan_for(Duration::ZERO);
        assert!((0..1000).all(|i| scan.is_match(&format!("A{i}")).unwrap()));
        let mut scan = m.scan();
        assert!(scan.is_match("AB").unwrap() && !scan.is_match("BA").unwrap());
    }

    #[test]
    fn java_parameters() {
        assert_eq!(
            NamePattern::from_java_params(Some("A*"), Some("B.*")),
            NamePattern::Glob("A*".into())
        );
        assert_eq!(
            NamePattern::from_java_params(None, Some("B.*")),
            NamePattern::Regex("B.*".into())
        );
        assert_eq!(NamePattern::from_java_params(None, None), NamePattern::All);
        assert_eq!(Limit::default(), Limit::AtMost(500));
        assert_eq!(Limit::from_java(-1), Limit::All);
        assert_eq!(Limit::from_java(10), Limit::AtMost(10));
        assert!(Limit::AtMost(2).reached(2) && !Limit::AtMost(2).reached(1));
        assert!(!Limit::All.reached(usize::MAX));
        assert_eq!(Limit::AtMost(5).minus(7), Limit::AtMost(0));
    }
}
