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
//! `\d`, `\s` and `\w` are ASCII, as in Java (the `regex` crate's are Unicode's, which
//! made `\w{1,64}` a 3 MiB program, 9 kB in ASCII).
//!
//! # Cost
//!
//! Patterns come from HTTP queries that anyone who reaches retrieval may send, so their
//! cost is bounded twice ([`RegistryError::PatternTooCostly`] for both):
//!
//! - a compiled program may be at most [`PATTERN_SIZE_LIMIT`] bytes. The `regex`
//!   crate's own default (10 MiB) admits a 580-byte regex of nested stars and a counted
//!   repetition whose match walks the whole program for every byte of a name: 0.36 s
//!   for a 20-byte PV name, 17 s for a 991-byte one (found by the `names_patterns` fuzz
//!   target; RELIABILITY.md). Under 2 MiB the worst we could build costs about 0.1 ms
//!   a name and 25 ms for the longest name, while an alternation of 1,000 PV names
//!   (25 kB of regex text) still compiles;
//! - one request may spend at most [`MATCH_TIME_LIMIT`] compiling and matching all its
//!   patterns ([`MatchBudget`], checked before each compile and after each name): even
//!   0.1 ms a name is minutes over a catalogue of millions, so is a list of 20,000 cheap
//!   globs over 30,000 names, while an ordinary pattern needs about 0.1 s for 300,000.

use std::time::{Duration, Instant};

use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_syntax::ast::{
    Ast, ClassAscii, ClassAsciiKind, ClassBracketed, ClassPerl, ClassPerlKind, ClassSet,
    ClassSetItem,
};
use regex_syntax::hir::{Hir, Look};

use crate::error::RegistryError;
use crate::names::{glob_literal_prefix, glob_to_regex};

/// The largest compiled program of a pattern, in bytes (`regex-automata`'s
/// `nfa_size_limit`): 2 MiB, a fifth of the `regex` crate's default. See the module's
/// "Cost".
pub const PATTERN_SIZE_LIMIT: usize = 2 << 20;

/// How long one request may spend compiling and matching name patterns: 5 s. See the
/// module's "Cost".
pub const MATCH_TIME_LIMIT: Duration = Duration::from_secs(5);

/// The time one request may spend on name patterns, shared by every pattern compiled
/// within it ([`NamePattern::compile_within`]) and every scan of those. It runs from its
/// making; copies share the same start.
#[derive(Debug, Clone, Copy)]
pub struct MatchBudget {
    started: Instant,
    limit: Duration,
}

impl MatchBudget {
    /// A budget of [`MATCH_TIME_LIMIT`] from now.
    pub fn start() -> Self {
        Self::with_limit(MATCH_TIME_LIMIT)
    }

    /// A budget of `limit` from now.
    pub fn with_limit(limit: Duration) -> Self {
        MatchBudget {
            started: Instant::now(),
            limit,
        }
    }

    /// [`RegistryError::PatternTooCostly`] naming `pattern` once the budget is spent.
    fn check(&self, pattern: &str, checked: usize) -> Result<(), RegistryError> {
        if self.started.elapsed() <= self.limit {
            return Ok(());
        }
        Err(RegistryError::PatternTooCostly {
            pattern: pattern.to_string(),
            reason: format!(
                "the request's name patterns took longer than {:?} to match (this one \
                 against {checked} name{}); send fewer patterns per request, or simpler ones",
                self.limit,
                if checked == 1 { "" } else { "s" }
            ),
        })
    }
}

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

    /// The in-process matcher for this pattern, with a budget of its own
    /// ([`MatchBudget::start`]).
    ///
    /// # Errors
    ///
    /// [`RegistryError::InvalidPattern`] for a regex that does not parse;
    /// [`RegistryError::PatternTooCostly`] when the compiled program would be larger than
    /// [`PATTERN_SIZE_LIMIT`].
    pub fn compile(&self) -> Result<NameMatcher, RegistryError> {
        self.compile_within(MatchBudget::start())
    }

    /// The in-process matcher for this pattern, its compiling and its scans counted
    /// against `budget` (one request's).
    ///
    /// # Errors
    ///
    /// As [`NamePattern::compile`], and [`RegistryError::PatternTooCostly`] when `budget`
    /// is already spent.
    pub fn compile_within(&self, budget: MatchBudget) -> Result<NameMatcher, RegistryError> {
        let (pattern, text, prefix) = match self {
            NamePattern::All => {
                return Ok(NameMatcher {
                    regex: None,
                    prefix: String::new(),
                    pattern: String::new(),
                    budget,
                });
            }
            NamePattern::Glob(g) => (g, glob_to_regex(g), glob_literal_prefix(g).to_string()),
            // Parsed on its own and anchored as a tree, not as text: `a)|(b` inside
            // `^(?:…)$` would compile and match any name starting with `a` (Java's
            // `Pattern.compile` refuses it as unbalanced).
            NamePattern::Regex(r) => (r, r.clone(), String::new()),
        };
        budget.check(pattern, 0)?;
        Ok(NameMatcher {
            regex: Some(compile_regex(pattern, &text)?),
            prefix,
            pattern: pattern.clone(),
            budget,
        })
    }
}

/// Compiles `text` (the regex of the pattern `shown`) to match whole names, `\d`, `\s`
/// and `\w` as Java's.
fn compile_regex(shown: &str, text: &str) -> Result<Regex, RegistryError> {
    let syntax = |e: regex_syntax::Error| invalid_pattern(shown, syntax_reason(text, &e));
    let mut ast = regex_syntax::ast::parse::Parser::new()
        .parse(text)
        .map_err(|e| syntax(e.into()))?;
    java_perl_classes(&mut ast);
    let hir = regex_syntax::hir::translate::Translator::new()
        .translate(text, &ast)
        .map_err(|e| syntax(e.into()))?;
    let hir = Hir::concat(vec![Hir::look(Look::Start), hir, Hir::look(Look::End)]);
    meta::Builder::new()
        .configure(
            meta::Config::new()
                .nfa_size_limit(Some(PATTERN_SIZE_LIMIT))
                .which_captures(WhichCaptures::None),
        )
        .build_from_hir(&hir)
        .map_err(|e| match e.size_limit() {
            Some(limit) => RegistryError::PatternTooCostly {
                pattern: shown.to_string(),
                reason: format!(
                    "its compiled program would be larger than {limit} bytes; use a simpler \
                     one (fewer nested or counted repetitions, fewer alternatives)"
                ),
            },
            None => invalid_pattern(shown, e.to_string()),
        })
}

/// Makes `\d`, `\s`, `\w` (and their negations, in or out of brackets) ASCII classes, as
/// they are in Java's `Pattern` (without `UNICODE_CHARACTER_CLASS`): `[0-9]`,
/// `[ \t\n\x0B\f\r]`, `[a-zA-Z_0-9]`. The `regex` crate's are Unicode's, which made
/// `\w{1,64}` a 3.05 MiB program (8.9 kB in ASCII). Everything else keeps its meaning
/// (`.`, `[^…]` and `\p{…}` stay Unicode, as in Java). Recursion is bounded by the
/// parser's nesting limit.
fn java_perl_classes(ast: &mut Ast) {
    match ast {
        Ast::ClassPerl(p) => {
            let bracketed = ClassBracketed {
                span: p.span,
                negated: false,
                kind: ClassSet::Item(ClassSetItem::Ascii(ascii_of(p))),
            };
            *ast = Ast::class_bracketed(bracketed);
        }
        Ast::ClassBracketed(b) => java_class_set(&mut b.kind),
        Ast::Repetition(r) => java_perl_classes(&mut r.ast),
        Ast::Group(g) => java_perl_classes(&mut g.ast),
        Ast::Alternation(a) => a.asts.iter_mut().for_each(java_perl_classes),
        Ast::Concat(c) => c.asts.iter_mut().for_each(java_perl_classes),
        Ast::Empty(_)
        | Ast::Flags(_)
        | Ast::Literal(_)
        | Ast::Dot(_)
        | Ast::Assertion(_)
        | Ast::ClassUnicode(_) => {}
    }
}

fn java_class_set(set: &mut ClassSet) {
    match set {
        ClassSet::Item(item) => java_class_set_item(item),
        ClassSet::BinaryOp(op) => {
            java_class_set(&mut op.lhs);
            java_class_set(&mut op.rhs);
        }
    }
}

fn java_class_set_item(item: &mut ClassSetItem) {
    match item {
        ClassSetItem::Perl(p) => *item = ClassSetItem::Ascii(ascii_of(p)),
        ClassSetItem::Bracketed(b) => java_class_set(&mut b.kind),
        ClassSetItem::Union(u) => u.items.iter_mut().for_each(java_class_set_item),
        ClassSetItem::Empty(_)
        | ClassSetItem::Literal(_)
        | ClassSetItem::Range(_)
        | ClassSetItem::Ascii(_)
        | ClassSetItem::Unicode(_) => {}
    }
}

/// The POSIX class of the same characters as Java's `\d`, `\s`, `\w`.
fn ascii_of(p: &ClassPerl) -> ClassAscii {
    ClassAscii {
        span: p.span,
        kind: match p.kind {
            ClassPerlKind::Digit => ClassAsciiKind::Digit,
            ClassPerlKind::Space => ClassAsciiKind::Space,
            ClassPerlKind::Word => ClassAsciiKind::Word,
        },
        negated: p.negated,
    }
}

/// What is wrong with a regex, short whatever its length: the parser's own message
/// quotes the whole pattern and underlines the place, which for a 1 MB pattern is a
/// 3 MB answer.
fn syntax_reason(text: &str, e: &regex_syntax::Error) -> String {
    let (kind, offset) = match e {
        regex_syntax::Error::Parse(p) => (p.kind().to_string(), p.span().start.offset),
        regex_syntax::Error::Translate(t) => (t.kind().to_string(), t.span().start.offset),
        other => return other.to_string().lines().last().unwrap_or("").to_string(),
    };
    let at = text.get(..offset).map_or(0, |t| t.chars().count()) + 1;
    format!("{kind} (at character {at})")
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
    budget: MatchBudget,
}

impl NameMatcher {
    /// True if `name` matches the whole pattern. One name costs at most what
    /// [`PATTERN_SIZE_LIMIT`] allows; to match many, use [`NameMatcher::scan`].
    pub fn is_match(&self, name: &str) -> bool {
        self.regex.as_ref().is_none_or(|re| re.is_match(name))
    }

    /// A scan of many names (one listing) that gives up once the budget the pattern was
    /// compiled within is spent.
    pub fn scan(&self) -> NameScan<'_> {
        NameScan {
            matcher: self,
            checked: 0,
        }
    }

    /// The items of `items` whose name (`name_of`) matches, in order, at most `at_most`,
    /// within the budget the pattern was compiled within ([`NameMatcher::scan`]).
    ///
    /// # Errors
    ///
    /// [`RegistryError::PatternTooCostly`] once the budget is spent.
    pub fn filter<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        name_of: impl Fn(&T) -> &str,
        at_most: usize,
    ) -> Result<Vec<T>, RegistryError> {
        let mut scan = self.scan();
        let mut kept = Vec::new();
        for item in items {
            if kept.len() >= at_most {
                break;
            }
            if scan.is_match(name_of(&item))? {
                kept.push(item);
            }
        }
        Ok(kept)
    }

    /// Text every matching name starts with (`""` when unknown): a sorted backend can
    /// seek to it and stop at the first name without it.
    pub fn literal_prefix(&self) -> &str {
        &self.prefix
    }
}

/// One listing's matching of names against a [`NameMatcher`], bounded by its
/// [`MatchBudget`].
///
/// The clock is read after each name, so a scan overruns its budget by at most one name
/// (bounded by [`PATTERN_SIZE_LIMIT`]). Time spent between calls (reading the names from
/// a database) counts too: the budget is the request's, not the regex's alone.
#[derive(Debug)]
pub struct NameScan<'a> {
    matcher: &'a NameMatcher,
    checked: usize,
}

impl NameScan<'_> {
    /// True if `name` matches the whole pattern.
    ///
    /// # Errors
    ///
    /// [`RegistryError::PatternTooCostly`] once the budget is spent (a pattern matching
    /// every name, [`NamePattern::All`], never fails).
    pub fn is_match(&mut self, name: &str) -> Result<bool, RegistryError> {
        let Some(re) = &self.matcher.regex else {
            return Ok(true);
        };
        let hit = re.is_match(name);
        self.checked += 1;
        self.matcher
            .budget
            .check(&self.matcher.pattern, self.checked)?;
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
    fn a_request_gives_up_once_its_budget_is_spent() {
        // Spent before a pattern is compiled: refused without compiling it.
        let spent = MatchBudget::with_limit(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
        match NamePattern::Glob("A*".into()).compile_within(spent) {
            Err(RegistryError::PatternTooCostly { pattern, reason }) => {
                assert_eq!(pattern, "A*");
                assert!(reason.contains("took longer than 0ns"), "{reason}");
            }
            other => panic!("expected PatternTooCostly, got {other:?}"),
        }
        // Spent during a scan: the next name is refused, naming how many were matched.
        let budget = MatchBudget::with_limit(Duration::from_millis(300));
        let m = NamePattern::Regex("A.*".into())
            .compile_within(budget)
            .unwrap();
        let mut scan = m.scan();
        assert!(scan.is_match("AB").unwrap() && !scan.is_match("BA").unwrap());
        std::thread::sleep(Duration::from_millis(350));
        match scan.is_match("AC") {
            Err(RegistryError::PatternTooCostly { reason, .. }) => {
                assert!(reason.contains("(this one against 3 names)"), "{reason}");
            }
            other => panic!("expected PatternTooCostly, got {other:?}"),
        }
        // A second pattern of the same request shares the spent budget.
        assert!(matches!(
            NamePattern::Regex("B.*".into()).compile_within(budget),
            Err(RegistryError::PatternTooCostly { .. })
        ));
        // Every name matches `All`: nothing to give up.
        let all = NamePattern::All.compile_within(spent).unwrap();
        let mut scan = all.scan();
        assert!((0..1000).all(|i| scan.is_match(&format!("A{i}")).unwrap()));
    }

    #[test]
    fn perl_classes_are_ascii_as_in_java() {
        // Unicode's word characters made `\w{1,64}` a 3 MiB program, over the limit.
        let word = NamePattern::Regex(r"\w{1,64}".into()).compile().unwrap();
        assert!(word.is_match("KLYS_1") && !word.is_match("A:B"));
        let m = |re: &str, name: &str| {
            NamePattern::Regex(re.into())
                .compile()
                .unwrap()
                .is_match(name)
        };
        assert!(m(r"[\w:{}-]{1,60}", "LN-AM{RadMon:2}DoseRate-I"));
        assert!(
            !m(r"\w+", "é") && !m(r"\d", "٣") && !m(r"\s", "\u{2003}"),
            "ASCII only"
        );
        assert!(m(r"\W", "é") && m(r"[^\w]", "é") && m(r"[\W&&\D]", "é"));
        assert!(m(r"\d{3}:\S+", "123:X") && !m(r"\d+", "12a"));
        assert!(
            m(r".", "é") && m(r"[^a]", "é") && m(r"\p{L}", "é"),
            "these stay Unicode"
        );
        assert!(m(r"(?i)klys:.*", "KLYS:1") && !m(r"[^a]*", "BaC"));
        assert!(m(r"A\b.*", "A:1") && !m(r"A\b.*", "AB"));
        assert!(m("(A)(B)?", "A"), "groups only group");
    }

    #[test]
    fn a_long_bad_regex_gets_a_short_message() {
        let long = format!("{}(", "A".repeat(1_000_000));
        let msg = NamePattern::Regex(long).compile().unwrap_err().to_string();
        assert!(msg.len() < 400, "{} bytes: {}", msg.len(), &msg[..400]);
        assert!(
            msg.contains("unclosed group (at character 1000001)"),
            "{msg}"
        );
        assert!(msg.contains("(1000001 characters)"), "{msg}");
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
