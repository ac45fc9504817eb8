//! Property tests of the registry's parsers of HTTP input: PV names (`pv=` of every
//! endpoint) and name patterns (`getAllPVs?pv=<glob>` / `regex=`). None may panic on any
//! text, and what they accept keeps its promises: a parsed name is made of its parts, an
//! invalid character is reported where it is, a glob matches what its wildcards stand for
//! and only names that start with its literal prefix, a regex matches whole names only.
//! The coverage-guided `fuzz/fuzz_targets/names_patterns.rs` runs the same code for longer.

use archiver_registry::instant::{format_iso_millis, parse_iso};
use archiver_registry::names::{
    glob_literal_prefix, glob_to_regex, is_glob, is_pv_name_char, normalize_channel_name,
    parse_channel_name, split_field, strip_protocol, strip_val_suffix, validate_pv_name,
};
use archiver_registry::{NameError, NamePattern, RegistryError};
use proptest::prelude::*;

/// Text near PV names: their characters, the ones that delimit fields and modifiers, regex
/// and glob metacharacters, multi-byte UTF-8, controls.
fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        prop::collection::vec(
            prop::sample::select(vec![
                "A",
                "z",
                "0",
                "9",
                ":",
                "-",
                "_",
                "+",
                "{",
                "}",
                "[",
                "]",
                "<",
                ">",
                ";",
                "/",
                ",",
                "#",
                "^",
                ".",
                ".VAL",
                "VAL",
                "HIHI",
                "ca://",
                "pva://",
                "\"",
                "'",
                "(",
                ")",
                "|",
                "*",
                "?",
                "\\",
                "$",
                " ",
                "é",
                "€",
                "٢",
                "\u{0}",
                "\n",
                "1:3",
                "{\"dbnd\":{\"abs\":1}}",
            ]),
            0..16
        )
        .prop_map(|p| p.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn name_functions_never_panic(s in name_like()) {
        let _ = strip_protocol(&s);
        let _ = strip_val_suffix(&s);
        let _ = split_field(&s);
        let _ = is_glob(&s);
        let _ = glob_literal_prefix(&s);
        let n = normalize_channel_name(&s);
        prop_assert!(n.name.len() <= s.len(), "{:?} grew into {:?}", s, n.name);
        prop_assert_eq!(validate_pv_name(&s).is_ok(), parse_channel_name(&s).is_ok());
    }

    #[test]
    fn a_parsed_name_is_made_of_its_parts(s in name_like()) {
        match parse_channel_name(&s) {
            Ok(p) => {
                prop_assert!(!p.pv.is_empty() && p.pv.chars().all(is_pv_name_char));
                prop_assert!(s.starts_with(p.pv));
                if let Some(f) = p.field {
                    prop_assert!(f.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'));
                    prop_assert!(f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                    let dotted = format!(".{f}");
                    prop_assert!(s[p.pv.len()..].starts_with(&dotted), "{:?}", s);
                }
                if let Some(m) = p.modifier {
                    prop_assert!(s.ends_with(m));
                    prop_assert!(m.starts_with(['{', '[']), "{:?}", m);
                }
            }
            Err(NameError::InvalidChar { name, ch, position }) => {
                prop_assert_eq!(&name, &s);
                prop_assert_eq!(s.chars().nth(position), Some(ch));
            }
            Err(NameError::Empty) => prop_assert!(s.is_empty()),
            Err(_) => {}
        }
    }

    #[test]
    fn a_glob_matches_what_its_wildcards_stand_for(
        glob in name_like(),
        fills in prop::collection::vec("[^\n]{0,4}", 64),
    ) {
        let matcher = NamePattern::Glob(glob.clone()).compile().expect("every glob compiles");
        prop_assert!(regex::Regex::new(&glob_to_regex(&glob)).is_ok());
        // Replace each `*` by some text and each `?` by one character (PV names hold no
        // newline, and a regex `.` does not match one).
        let mut name = String::new();
        let mut fill = fills.iter().cycle();
        for c in glob.chars() {
            match c {
                '*' => name.push_str(fill.next().map_or("", |s| s.as_str())),
                '?' => name.push(fill.next().and_then(|s| s.chars().next()).unwrap_or('x')),
                c => name.push(c),
            }
        }
        prop_assert!(matcher.is_match(&name), "{:?} does not match {:?}", glob, name);
        prop_assert!(name.starts_with(matcher.literal_prefix()));
    }

    #[test]
    fn names_that_a_glob_matches_start_with_its_prefix(glob in name_like(), name in name_like()) {
        let matcher = NamePattern::Glob(glob).compile().expect("every glob compiles");
        if matcher.is_match(&name) {
            prop_assert!(name.starts_with(matcher.literal_prefix()));
        }
    }

    #[test]
    fn a_regex_compiles_or_is_a_typed_error_and_matches_whole_names(
        re in name_like(),
        name in name_like(),
    ) {
        match NamePattern::Regex(re.clone()).compile() {
            Ok(m) => {
                // Valid on its own, so the anchors around it hold. (Our `\d`, `\s`, `\w`
                // are ASCII as Java's, the crate's Unicode: they agree on ASCII names.)
                prop_assert!(NamePattern::is_valid_regex(&re));
                // Compiled alone by the crate: may be over its size limit with Unicode's \w.
                if let Ok(alone) = regex::Regex::new(&re)
                    && m.is_match(&name)
                    && name.is_ascii()
                {
                    prop_assert!(alone.is_match(&name));
                }
                prop_assert_eq!(m.literal_prefix(), "");
            }
            Err(
                RegistryError::InvalidPattern { pattern, .. }
                | RegistryError::PatternTooCostly { pattern, .. },
            ) => prop_assert_eq!(pattern, re),
            Err(e) => prop_assert!(false, "unexpected error {e:?}"),
        }
    }

    #[test]
    fn pvtypeinfo_instants_never_panic_and_read_back(s in name_like(), secs in -62_167_219_200i64..253_402_300_800, ms in 0u32..1000) {
        let _ = parse_iso(&s);
        let t = archiver_pb::Timestamp::new(secs, ms * 1_000_000);
        prop_assert_eq!(parse_iso(&format_iso_millis(t)), Some(t));
    }
}

#[test]
fn a_regex_of_the_whole_name() {
    // Not found by `find` semantics alone: `A|AB` must match `AB` as a whole.
    let m = NamePattern::Regex("A|AB".into()).compile().unwrap();
    assert!(m.is_match("AB") && m.is_match("A") && !m.is_match("ABC"));
}
