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

use regex::Regex;

use crate::error::RegistryError;
use crate::names::{glob_literal_prefix, glob_to_regex};

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

    /// The in-process matcher for this pattern.
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
        Ok(NameMatcher { regex, prefix })
    }
}

fn compile_regex(pattern: &str, anchored: &str) -> Result<Regex, RegistryError> {
    Regex::new(anchored).map_err(|e| invalid_pattern(pattern, e))
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
}

impl NameMatcher {
    /// True if `name` matches the whole pattern.
    pub fn is_match(&self, name: &str) -> bool {
        self.regex.as_ref().is_none_or(|re| re.is_match(name))
    }

    /// Text every matching name starts with (`""` when unknown): a sorted backend can
    /// seek to it and stop at the first name without it.
    pub fn literal_prefix(&self) -> &str {
        &self.prefix
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
