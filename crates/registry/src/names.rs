//! PV names as the Java appliance treats them (`config/PVNames.java`).
//!
//! A *channel name* is what a user types: `ca://ABC:DEF.VAL`, `ABC:DEF.HIHI`,
//! `ABC:DEF.{"dbnd":{"abs":1}}`. The registry is keyed by the *PV name*: no protocol
//! prefix, no `.VAL`.
//!
//! * [`strip_protocol`] removes `ca://` or `pva://` and says which it was;
//! * [`strip_val_suffix`] removes an exact `.VAL` suffix. Java's `normalizeChannelName`
//!   tests `contains(".VAL")` and then cuts at the first dot, so `A:B.VALUE` or
//!   `A.VAL_X:Y` lost their tail (issue #356); here only a real `.VAL` field goes;
//! * [`normalize_channel_name`] does both, and keeps a field modifier
//!   (`A:B.VAL.{…}` → `A:B.{…}`), as Java does;
//! * [`split_field`] splits `PV.FIELD`;
//! * [`parse_channel_name`] / [`validate_pv_name`] check the characters against Java's
//!   `channelNamePattern` and name the offending character;
//! * [`glob_to_regex`] turns a `getAllPVs`-style glob (`*`, `?`) into an anchored regex.

use crate::error::NameError;

/// The prefix that asks for pvAccess (`PVNames.V4_PREFIX`).
pub const PVA_PREFIX: &str = "pva://";

/// The prefix that asks for Channel Access (`PVNames.V3_PREFIX`).
pub const CA_PREFIX: &str = "ca://";

/// The protocol a channel name asked for with its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `ca://`: EPICS Channel Access.
    Ca,
    /// `pva://`: EPICS pvAccess.
    Pva,
}

/// A channel name with its protocol prefix and `.VAL` removed: the registry key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedName {
    /// The PV name (with a field other than `VAL`, or a modifier, if the input had one).
    pub name: String,
    /// The protocol of the prefix, `None` when there was none (the site default applies).
    pub protocol: Option<Protocol>,
}

/// A channel name split into its parts by [`parse_channel_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelName<'a> {
    /// The record part: `ABC:DEF` of `ABC:DEF.HIHI`.
    pub pv: &'a str,
    /// The field, without the dot: `HIHI`.
    pub field: Option<&'a str>,
    /// A channel-filter modifier: `{"dbnd":{"abs":1}}` or `[1:3]`, without a leading dot.
    pub modifier: Option<&'a str>,
}

/// Removes a `ca://` or `pva://` prefix and reports which one it was.
pub fn strip_protocol(name: &str) -> (Option<Protocol>, &str) {
    if let Some(rest) = name.strip_prefix(PVA_PREFIX) {
        (Some(Protocol::Pva), rest)
    } else if let Some(rest) = name.strip_prefix(CA_PREFIX) {
        (Some(Protocol::Ca), rest)
    } else {
        (None, name)
    }
}

/// Removes an exact `.VAL` suffix: `A:B.VAL` → `A:B`; `A:B.VALX`, `A:VAL` and
/// `A.VAL_B` are returned unchanged.
pub fn strip_val_suffix(name: &str) -> &str {
    match name.strip_suffix(".VAL") {
        Some(pv) if !pv.is_empty() => pv,
        _ => name,
    }
}

/// Java's `normalizeChannelName` plus prefix handling: strips `ca://` / `pva://`, then
/// the `.VAL` field, keeping a modifier after it (`A.VAL.{"dbnd":{}}` → `A.{"dbnd":{}}`).
/// Other fields are kept: `A:B.HIHI` stays `A:B.HIHI`.
pub fn normalize_channel_name(channel: &str) -> NormalizedName {
    let (protocol, rest) = strip_protocol(channel);
    let name = match split_field(rest) {
        (pv, Some(after)) if !pv.is_empty() => match after.strip_prefix("VAL") {
            Some("") => pv.to_string(),
            Some(modifier) if modifier.starts_with(['{', '[']) => format!("{pv}.{modifier}"),
            Some(modifier) if modifier.starts_with(".{") || modifier.starts_with(".[") => {
                format!("{pv}{modifier}")
            }
            _ => rest.to_string(),
        },
        _ => rest.to_string(),
    };
    NormalizedName { name, protocol }
}

/// Splits at the first dot: `A:B.HIHI` → (`A:B`, `Some("HIHI")`); `A:B` → (`A:B`, `None`).
/// Does not validate; see [`parse_channel_name`].
pub fn split_field(name: &str) -> (&str, Option<&str>) {
    match name.split_once('.') {
        Some((pv, field)) => (pv, Some(field)),
        None => (name, None),
    }
}

/// The longest channel name accepted, in bytes: what one Channel Access search datagram
/// can carry (1024 bytes less two 16-byte headers and the terminating NUL), so that every
/// name the catalogue accepts can be searched for.
pub const MAX_PV_NAME_LEN: usize = 991;

/// True for the characters Java allows in the record part of a name:
/// `[a-zA-Z0-9_\-+:\[\]<>;/,#{}^]`.
pub fn is_pv_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '_' | '-' | '+' | ':' | '[' | ']' | '<' | '>' | ';' | '/' | ',' | '#' | '{' | '}' | '^'
        )
}

/// Checks a channel name against Java's `channelNamePattern`:
/// `PVNAME[.FIELD][.MODIFIER]` with `PVNAME` of [`is_pv_name_char`] characters, `FIELD`
/// matching `[a-zA-Z_][a-zA-Z0-9_]*`, and `MODIFIER` a JSON channel filter `{…}` or an
/// array range `[n:m]` (the dot before a modifier is optional after a field).
pub fn parse_channel_name(name: &str) -> Result<ChannelName<'_>, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_PV_NAME_LEN {
        return Err(NameError::TooLong {
            len: name.len(),
            max: MAX_PV_NAME_LEN,
            start: name.chars().take(40).collect(),
        });
    }
    let pv_end = name
        .char_indices()
        .find(|(_, c)| !is_pv_name_char(*c))
        .map_or(name.len(), |(i, _)| i);
    let pv = &name[..pv_end];
    let rest = &name[pv_end..];
    if let Some((_, path)) = name.split_once('#')
        && path.contains('.')
    {
        return Err(NameError::DottedMemberPath {
            name: name.to_string(),
            path: path.to_string(),
        });
    }
    if pv.is_empty() || (!rest.is_empty() && !rest.starts_with('.')) {
        return Err(invalid_char(name, pv_end));
    }
    if rest.is_empty() {
        return Ok(ChannelName {
            pv,
            field: None,
            modifier: None,
        });
    }
    if rest == "." {
        return Err(NameError::TrailingDot {
            name: name.to_string(),
        });
    }
    let after_dot = &rest[1..];
    let field_len = field_prefix_len(after_dot);
    let (field, tail, tail_at) = if field_len > 0 {
        let tail = &after_dot[field_len..];
        let tail = match tail.strip_prefix('.') {
            Some("") => {
                return Err(NameError::TrailingDot {
                    name: name.to_string(),
                });
            }
            Some(t) => t,
            None => tail,
        };
        (Some(&after_dot[..field_len]), tail, name.len() - tail.len())
    } else {
        (None, after_dot, pv_end + 1)
    };
    if tail.is_empty() {
        return Ok(ChannelName {
            pv,
            field,
            modifier: None,
        });
    }
    if tail.starts_with(['{', '[']) {
        if is_modifier(tail) {
            return Ok(ChannelName {
                pv,
                field,
                modifier: Some(tail),
            });
        }
        return Err(NameError::InvalidModifier {
            name: name.to_string(),
            modifier: tail.to_string(),
        });
    }
    if field.is_none() {
        return Err(NameError::InvalidField {
            name: name.to_string(),
            field: tail.to_string(),
        });
    }
    Err(invalid_char(name, tail_at))
}

/// [`parse_channel_name`] without the parts: `Ok` when `name` is a valid channel name.
pub fn validate_pv_name(name: &str) -> Result<(), NameError> {
    parse_channel_name(name).map(|_| ())
}

/// True when `pattern` contains a glob wildcard (`*` or `?`), as Java's `getAllPVs` tests.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// An anchored regex for a glob: `*` is any run of characters, `?` one character, every
/// other character (including `[`, `{`, `.`, `+`) stands for itself, as in Java's
/// `WildcardFileFilter`: `KLYS*` → `^KLYS.*$`.
pub fn glob_to_regex(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 8);
    out.push('^');
    let mut literal = String::new();
    for c in glob.chars() {
        if c == '*' || c == '?' {
            out.push_str(&regex_syntax::escape(&literal));
            literal.clear();
            out.push_str(if c == '*' { ".*" } else { "." });
        } else {
            literal.push(c);
        }
    }
    out.push_str(&regex_syntax::escape(&literal));
    out.push('$');
    out
}

/// The literal text before the first wildcard of a glob: `KLYS:*:I` → `KLYS:`.
pub fn glob_literal_prefix(glob: &str) -> &str {
    glob.find(['*', '?']).map_or(glob, |i| &glob[..i])
}

/// `text` (a name or pattern from a request) in quotes as the user typed it (backslashes
/// not doubled), cut after 200 characters with its length, so that an error message about
/// a long input does not bury its reason: `"A:B"`, `"AAAA…"... (1000000 characters)`.
pub fn quoted_excerpt(text: &str) -> String {
    const SHOWN: usize = 200;
    match text.char_indices().nth(SHOWN) {
        None => format!("\"{text}\""),
        Some((cut, _)) => format!(
            "\"{}\"... ({} characters)",
            &text[..cut],
            text.chars().count()
        ),
    }
}

fn invalid_char(name: &str, at: usize) -> NameError {
    let ch = name[at..].chars().next().unwrap_or('.');
    NameError::InvalidChar {
        name: name.to_string(),
        ch,
        position: name[..at].chars().count(),
    }
}

/// Length of the `[a-zA-Z_][a-zA-Z0-9_]*` prefix of `s`, 0 if none.
fn field_prefix_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return 0,
    }
    chars
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(s.len(), |(i, _)| i)
}

/// Java's `fieldModifierPattern`: `\{[a-zA-Z0-9:()-{}"',]+}` or `\[[0-9]+:[0-9]+]`.
/// (The `()-{` in the Java class is a range, `(` to `{`, which takes most punctuation.)
fn is_modifier(s: &str) -> bool {
    if let Some(inner) = s.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        return !inner.is_empty()
            && inner.chars().all(|c| {
                c.is_ascii_alphanumeric() || ('('..='{').contains(&c) || "}\"',".contains(c)
            });
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return inner.split_once(':').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn val_suffix_is_stripped_only_when_exact() {
        assert_eq!(strip_val_suffix("A:B.VAL"), "A:B");
        assert_eq!(strip_val_suffix("A:B.VALX"), "A:B.VALX");
        assert_eq!(strip_val_suffix("A:B.VAL.C"), "A:B.VAL.C");
        assert_eq!(strip_val_suffix("A:VAL"), "A:VAL");
        assert_eq!(strip_val_suffix("A:B.val"), "A:B.val");
        assert_eq!(strip_val_suffix(".VAL"), ".VAL");
    }

    #[test]
    fn names_longer_than_a_search_datagram_carries_are_refused() {
        let longest = "L".repeat(MAX_PV_NAME_LEN);
        assert!(validate_pv_name(&longest).is_ok());
        let e = validate_pv_name(&format!("{longest}L")).unwrap_err();
        assert!(
            matches!(
                e,
                NameError::TooLong {
                    len: 992,
                    max: 991,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("too long"), "{e}");
        // The message quotes only the start of a huge name.
        assert!(
            validate_pv_name(&"L".repeat(5000))
                .unwrap_err()
                .to_string()
                .len()
                < 200
        );
    }

    #[test]
    fn protocol_prefix_is_reported() {
        assert_eq!(strip_protocol("ca://A:B"), (Some(Protocol::Ca), "A:B"));
        assert_eq!(strip_protocol("pva://A:B"), (Some(Protocol::Pva), "A:B"));
        assert_eq!(strip_protocol("A:B"), (None, "A:B"));
        assert_eq!(strip_protocol("xca://A"), (None, "xca://A"));
    }

    #[test]
    fn normalisation_strips_prefix_and_val_but_keeps_other_fields() {
        let n = normalize_channel_name("pva://A:B.VAL");
        assert_eq!(n.name, "A:B");
        assert_eq!(n.protocol, Some(Protocol::Pva));
        assert_eq!(
            normalize_channel_name("ca://A:B").protocol,
            Some(Protocol::Ca)
        );
        assert_eq!(normalize_channel_name("A:B.HIHI").name, "A:B.HIHI");
        assert_eq!(normalize_channel_name("A:B.HIHI").protocol, None);
        // Issue #356: Java cut these at the first dot.
        assert_eq!(normalize_channel_name("A:B.VALUE").name, "A:B.VALUE");
        assert_eq!(normalize_channel_name("A.VAL_X").name, "A.VAL_X");
        // A modifier after .VAL is kept, as Java does.
        assert_eq!(
            normalize_channel_name("A:B.VAL.{\"dbnd\":{\"abs\":1}}").name,
            "A:B.{\"dbnd\":{\"abs\":1}}"
        );
        assert_eq!(normalize_channel_name("A:B.VAL[1:3]").name, "A:B.[1:3]");
    }

    #[test]
    fn field_is_split_at_the_first_dot() {
        assert_eq!(split_field("A:B.HIHI"), ("A:B", Some("HIHI")));
        assert_eq!(split_field("A:B"), ("A:B", None));
        assert_eq!(split_field("A:B.{x.y}"), ("A:B", Some("{x.y}")));
    }

    #[test]
    fn valid_names_parse_into_parts() {
        for ok in [
            "UnitTestNoNamingConvention:inactive1",
            "LN-AM{RadMon:2}DoseRate-I",
            "a+b<c>;d/e,f#g^h[0]",
        ] {
            let parsed = parse_channel_name(ok).unwrap();
            assert_eq!((parsed.pv, parsed.field, parsed.modifier), (ok, None, None));
        }
        let p = parse_channel_name("X:Y.DESC").unwrap();
        assert_eq!((p.pv, p.field, p.modifier), ("X:Y", Some("DESC"), None));
        let p = parse_channel_name("X:Y.{\"dbnd\":{\"abs\":1}}").unwrap();
        assert_eq!(p.modifier, Some("{\"dbnd\":{\"abs\":1}}"));
        assert_eq!(p.field, None);
        let p = parse_channel_name("X:Y.VAL.[1:3]").unwrap();
        assert_eq!((p.field, p.modifier), (Some("VAL"), Some("[1:3]")));
        let p = parse_channel_name("X:Y.VAL{\"arr\":{}}").unwrap();
        assert_eq!((p.field, p.modifier), (Some("VAL"), Some("{\"arr\":{}}")));
    }

    #[test]
    fn invalid_names_name_the_bad_character() {
        assert_eq!(parse_channel_name(""), Err(NameError::Empty));
        assert_eq!(
            parse_channel_name("A B"),
            Err(NameError::InvalidChar {
                name: "A B".into(),
                ch: ' ',
                position: 1
            })
        );
        assert_eq!(
            validate_pv_name("Aé:B"),
            Err(NameError::InvalidChar {
                name: "Aé:B".into(),
                ch: 'é',
                position: 1
            })
        );
        assert!(matches!(
            validate_pv_name(".VAL"),
            Err(NameError::InvalidChar {
                ch: '.',
                position: 0,
                ..
            })
        ));
        assert!(matches!(
            validate_pv_name("A:B."),
            Err(NameError::TrailingDot { .. })
        ));
        assert!(matches!(
            validate_pv_name("A:B.HIHI."),
            Err(NameError::TrailingDot { .. })
        ));
        assert_eq!(
            validate_pv_name("A:B.1X"),
            Err(NameError::InvalidField {
                name: "A:B.1X".into(),
                field: "1X".into()
            })
        );
        assert!(matches!(
            validate_pv_name("A:B.HI HI"),
            Err(NameError::InvalidChar {
                ch: ' ',
                position: 6,
                ..
            })
        ));
        assert!(matches!(
            validate_pv_name("A:B.[1:x]"),
            Err(NameError::InvalidModifier { .. })
        ));
        assert!(matches!(
            validate_pv_name("A:B.HIHI.C"),
            Err(NameError::InvalidChar { ch: 'C', .. })
        ));
        let msg = validate_pv_name("A B").unwrap_err().to_string();
        assert!(msg.contains("' '") && msg.contains("A B"), "{msg}");
    }

    #[test]
    fn a_long_input_is_quoted_as_typed_and_cut() {
        assert_eq!(quoted_excerpt(r"\w+:A"), r#""\w+:A""#);
        let long = quoted_excerpt(&"é".repeat(1_000_000));
        assert_eq!(
            long,
            format!("\"{}\"... (1000000 characters)", "é".repeat(200))
        );
    }

    #[test]
    fn globs_become_anchored_literal_regexes() {
        let re = |g: &str| regex::Regex::new(&glob_to_regex(g)).unwrap();
        assert_eq!(glob_to_regex("KLYS*"), "^KLYS.*$");
        assert!(re("KLYS*").is_match("KLYS:LI20:31"));
        assert!(!re("KLYS*").is_match("XKLYS"));
        assert!(re("A?C").is_match("ABC"));
        assert!(!re("A?C").is_match("ABBC"));
        assert!(!re("A?C").is_match("ABCD"));
        // Regex metacharacters in PV names are literal.
        assert!(re("LN-AM{RadMon:2}*").is_match("LN-AM{RadMon:2}DoseRate-I"));
        assert!(re("W[0]*").is_match("W[0]:X"));
        assert!(!re("W[0]*").is_match("W0:X"));
        assert!(!re("A.B").is_match("AxB"));
        assert!(is_glob("A*") && is_glob("A?") && !is_glob("A:B"));
        assert_eq!(glob_literal_prefix("KLYS:*:I"), "KLYS:");
        assert_eq!(glob_literal_prefix("*X"), "");
        assert_eq!(glob_literal_prefix("ABC"), "ABC");
    }
}
