//! PV name → file path, as the Java appliance maps them (`ConvertPVNameToKey`, `PVPath`).
//!
//! The *chunk key* of a PV replaces the site's name separators (`:` and `-`) by `/` and adds
//! a terminator (`:`): `LN-AM{RadMon:2}DoseRate-I` → `LN/AM{RadMon/2}DoseRate/I:`. A file is
//! `<root>/<chunk key><partition name>.pb`. Every other character is kept verbatim.
//!
//! A PV name comes from a user, so the key is checked: it can never name a place outside
//! the tier root (no `..` or `.` components, no absolute path, no NUL, no empty component).

use std::path::{Path, PathBuf};

use crate::partition::Granularity;

/// The default name separators of the Java appliance (`siteNameSpaceSeparators`).
pub const DEFAULT_SEPARATORS: &[char] = &[':', '-'];

/// The default terminator of a chunk key (`siteNameSpaceTerminator`).
pub const DEFAULT_TERMINATOR: char = ':';

/// The file extension of PlainPB files.
pub const PB_EXTENSION: &str = ".pb";

/// Why a PV name cannot be mapped to a file path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The PV name is empty.
    #[error("empty PV name")]
    Empty,
    /// The PV name contains a NUL byte.
    #[error("PV name {0:?} contains a NUL byte")]
    Nul(String),
    /// The key would be an absolute path.
    #[error("PV name {0:?} would map to an absolute path")]
    Absolute(String),
    /// The key has an empty, `.` or `..` component.
    #[error("PV name {name:?} would map to a path with a {component:?} component")]
    BadComponent {
        /// The PV name.
        name: String,
        /// The offending component (`""`, `.` or `..`).
        component: String,
    },
}

/// The chunk key of `pv_name` with the default separators and terminator:
/// `ABC:DEF` → `ABC/DEF:`.
pub fn chunk_key(pv_name: &str) -> Result<String, PathError> {
    chunk_key_with(pv_name, DEFAULT_SEPARATORS, DEFAULT_TERMINATOR)
}

/// The chunk key of `pv_name` with explicit separators and terminator.
pub fn chunk_key_with(
    pv_name: &str,
    separators: &[char],
    terminator: char,
) -> Result<String, PathError> {
    if pv_name.is_empty() {
        return Err(PathError::Empty);
    }
    if pv_name.contains('\0') {
        return Err(PathError::Nul(pv_name.to_string()));
    }
    let mut key: String = pv_name
        .chars()
        .map(|c| if separators.contains(&c) { '/' } else { c })
        .collect();
    if key.starts_with('/') {
        return Err(PathError::Absolute(pv_name.to_string()));
    }
    if let Some(component) = key
        .split('/')
        .find(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(PathError::BadComponent {
            name: pv_name.to_string(),
            component: component.to_string(),
        });
    }
    key.push(terminator);
    Ok(key)
}

/// The path of the file holding the partition of `pv_name` that contains `secs`, relative
/// to a tier root: `ABC:DEF`, yearly, 2014 → `ABC/DEF:2014.pb`.
pub fn relative_path(
    pv_name: &str,
    granularity: Granularity,
    secs: i64,
) -> Result<PathBuf, PathError> {
    let mut key = chunk_key(pv_name)?;
    key.push_str(&granularity.partition_name(secs));
    key.push_str(PB_EXTENSION);
    Ok(PathBuf::from(key))
}

/// [`relative_path`] joined onto `root`. The result is always inside `root`.
pub fn file_path(
    root: &Path,
    pv_name: &str,
    granularity: Granularity,
    secs: i64,
) -> Result<PathBuf, PathError> {
    Ok(root.join(relative_path(pv_name, granularity, secs)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::start_of_year;

    #[test]
    fn java_examples() {
        let t2014 = start_of_year(2014) + 86_400 * 341 + 7 * 3600;
        assert_eq!(
            relative_path("ABC:DEF", Granularity::Year, t2014).ok(),
            Some(PathBuf::from("ABC/DEF:2014.pb"))
        );
        assert_eq!(
            relative_path("ABC:DEF", Granularity::Hour, t2014).ok(),
            Some(PathBuf::from("ABC/DEF:2014_12_08_07.pb"))
        );
        assert_eq!(
            relative_path("LN-AM{RadMon:2}DoseRate-I", Granularity::Year, t2014).ok(),
            Some(PathBuf::from("LN/AM{RadMon/2}DoseRate/I:2014.pb"))
        );
        assert_eq!(chunk_key("X:Y.DESC").ok().as_deref(), Some("X/Y.DESC:"));
        assert_eq!(
            chunk_key("A{}[]<>.,#^+;B").ok().as_deref(),
            Some("A{}[]<>.,#^+;B:")
        );
        assert_eq!(
            file_path(Path::new("/data/lts"), "A:B", Granularity::Year, t2014).ok(),
            Some(PathBuf::from("/data/lts/A/B:2014.pb"))
        );
    }

    #[test]
    fn names_that_would_escape_the_root_are_refused() {
        for name in [
            "../x",
            "a/../../b",
            "/etc/passwd",
            "a\0b",
            "",
            "..",
            "a/./b",
            ":x",
            "a::b",
            "a:",
            "-:..:-",
            "x:..:..:etc",
            "x/..",
        ] {
            let r = chunk_key(name);
            assert!(r.is_err(), "{name:?} gave {r:?}");
        }
        assert_eq!(
            chunk_key("/etc/passwd"),
            Err(PathError::Absolute("/etc/passwd".into()))
        );
        assert!(matches!(chunk_key("a\0b"), Err(PathError::Nul(_))));
        assert!(matches!(
            chunk_key("x:..:y"),
            Err(PathError::BadComponent { component, .. }) if component == ".."
        ));
    }

    #[test]
    fn custom_terminator() {
        assert_eq!(
            chunk_key_with("A:B-C", &[':'], '#').ok().as_deref(),
            Some("A/B-C#")
        );
    }
}
