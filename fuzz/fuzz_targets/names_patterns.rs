//! Arbitrary bytes (as UTF-8, lossily) given to the registry's parsers of HTTP input: PV
//! names, globs and regexes never panic; an accepted pattern matches without panicking, and
//! a glob only matches names that start with its literal prefix.
#![no_main]

use archiver_registry::NamePattern;
use archiver_registry::names::{normalize_channel_name, parse_channel_name, strip_val_suffix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The first line is the pattern, the rest the name it is matched against.
    let (pattern, name) = text.split_once('\n').unwrap_or((&text, &text));
    let _ = parse_channel_name(name);
    let _ = strip_val_suffix(name);
    let _ = normalize_channel_name(name);
    if let Ok(m) = NamePattern::Glob(pattern.to_string()).compile()
        && m.is_match(name)
    {
        assert!(name.starts_with(m.literal_prefix()));
    }
    if let Ok(m) = NamePattern::Regex(pattern.to_string()).compile() {
        let _ = m.is_match(name);
    }
});
