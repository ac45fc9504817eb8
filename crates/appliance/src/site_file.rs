//! [`SiteSource`]: the site policy in force, re-read from its file when the file changed.
//!
//! The policy file (`[policy] file`) is read at start; before each use (an archive
//! request, a re-application, getPolicyList and getPolicyText, the catalogue sync) its
//! modification time and length are compared with those of the last read, and a changed
//! file is read again: an operator edits the file and the next request uses it, as Java
//! runs `policies.py` afresh for each PV. A file that no longer reads or parses (a typo,
//! a store it names that does not exist, the file removed) changes nothing: the policies
//! read before stay in force, the problem is logged once per change of the file and kept
//! for [`SiteSource::error`], which getPolicyList and getPolicyText report and which
//! refuses reapplyPolicies (re-applying the old policies is not what the operator meant).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use archiver_storage::DataStores;

use crate::site_policy::SitePolicy;

/// The modification time and length of the file when it was last read (`None` when it
/// could not be read).
type Stamp = Option<(Option<SystemTime>, u64)>;

/// The site policy in force, and the file it comes from (if any).
#[derive(Debug)]
pub struct SiteSource {
    current: RwLock<Arc<SitePolicy>>,
    file: Option<Watched>,
}

#[derive(Debug)]
struct Watched {
    path: PathBuf,
    stores: DataStores,
    seen: Mutex<Seen>,
}

#[derive(Debug)]
struct Seen {
    stamp: Stamp,
    error: Option<String>,
}

fn stamp_of(path: &std::path::Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().ok(), m.len()))
}

impl SiteSource {
    /// A policy that never changes (no file, or a test's).
    pub fn fixed(site: SitePolicy) -> Self {
        SiteSource {
            current: RwLock::new(Arc::new(site)),
            file: None,
        }
    }

    /// `site`, read from `path` just now (checked against `stores`); re-read when the
    /// file changes.
    pub fn watching(site: SitePolicy, path: PathBuf, stores: DataStores) -> Self {
        let stamp = stamp_of(&path);
        SiteSource {
            current: RwLock::new(Arc::new(site)),
            file: Some(Watched {
                path,
                stores,
                seen: Mutex::new(Seen { stamp, error: None }),
            }),
        }
    }

    /// The policy in force, the file re-read first if it changed.
    pub fn get(&self) -> Arc<SitePolicy> {
        self.refresh();
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Why the file's last change was not taken (it names the file and the problem), or
    /// `None` when the policy in force is the file's.
    pub fn error(&self) -> Option<String> {
        self.refresh();
        let w = self.file.as_ref()?;
        w.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .error
            .clone()
    }

    fn refresh(&self) {
        let Some(w) = &self.file else { return };
        let stamp = stamp_of(&w.path);
        let mut seen = w.seen.lock().unwrap_or_else(|e| e.into_inner());
        if stamp.is_some() && stamp == seen.stamp {
            return;
        }
        if stamp.is_none() && seen.stamp.is_none() && seen.error.is_some() {
            return;
        }
        seen.stamp = stamp;
        let read = std::fs::read_to_string(&w.path)
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(|text| SitePolicy::from_toml(&text, &w.stores).map_err(|e| e.to_string()));
        match read {
            Ok(site) => {
                tracing::info!(file = %w.path.display(), "the policy file changed: re-read");
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(site);
                seen.error = None;
            }
            Err(problem) => {
                let msg = format!(
                    "the policy file {} was changed but not taken ({problem}); the policies \
                     read before stay in force",
                    w.path.display()
                );
                tracing::error!("{msg}");
                seen.error = Some(msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use archiver_pb::Granularity;
    use archiver_storage::{Backend, Tier};

    fn stores(dir: &std::path::Path) -> DataStores {
        let mut s = DataStores::new(Backend::fs());
        s.add(Tier::new("STS", dir.join("sts"), Granularity::Hour))
            .unwrap();
        s
    }

    /// Writes `text` with a modification time `secs` after the epoch, so a change is
    /// seen however coarse the file system's clock.
    fn write(path: &std::path::Path, text: &str, secs: u64) {
        std::fs::write(path, text).unwrap();
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
            .unwrap();
    }

    fn names(s: &SiteSource) -> Vec<String> {
        s.get().policies().iter().map(|p| p.name.clone()).collect()
    }

    #[test]
    fn a_changed_file_is_re_read_and_a_broken_one_keeps_the_policies_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let stores = stores(dir.path());
        let path = dir.path().join("policies.toml");
        let one = "[[policy]]\nname = \"one\"\n";
        write(&path, one, 1_000);
        let site = SitePolicy::from_toml(one, &stores).unwrap();
        let s = SiteSource::watching(site, path.clone(), stores);
        assert!(names(&s).contains(&"one".to_string()));
        assert_eq!(s.error(), None);

        write(&path, "[[policy]]\nname = \"two\"\n", 2_000);
        assert!(names(&s).contains(&"two".to_string()), "{:?}", names(&s));
        assert!(!names(&s).contains(&"one".to_string()));

        write(
            &path,
            "[[policy]]\nname = \"three\"\nsampling_period = \"x\"\n",
            3_000,
        );
        assert!(
            names(&s).contains(&"two".to_string()),
            "the previous policies stay"
        );
        let e = s.error().unwrap();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("sampling_period"), "{e}");

        std::fs::remove_file(&path).unwrap();
        assert!(names(&s).contains(&"two".to_string()));
        assert!(s.error().unwrap().contains("cannot read it"));

        write(&path, "[[policy]]\nname = \"four\"\n", 4_000);
        assert!(names(&s).contains(&"four".to_string()));
        assert_eq!(s.error(), None);
    }

    #[test]
    fn a_fixed_policy_has_no_file_and_no_error() {
        let s = SiteSource::fixed(SitePolicy::java_default());
        assert_eq!(names(&s), ["default"]);
        assert_eq!(s.error(), None);
    }
}
