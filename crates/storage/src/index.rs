//! The partition index of a store: what each PV's partitions are, found without listing a
//! folder of other PVs' files for every lookup.
//!
//! PlainPB puts the files of every PV whose name differs only in its last component in one
//! folder (`SC:AI:0` … `SC:AI:19999` all in `<root>/SC/AI/`); finding one PV's partitions
//! by listing that folder costs the whole folder, so restoring 20,000 such PVs listed
//! 20,000 × 60,000 names (the 130 s restart of the issue), and every retrieval listed it
//! again. Here a folder of at least [`MIN_CACHED`] entries is listed once and its file
//! names kept sorted, so a PV's files are a binary search for its chunk-key prefix.
//!
//! **Kept right by the folder's stamp** ([`StorageBackend::dir_stamp`]: its modification
//! time on a real filesystem, once settled): a cached listing is used only while the stamp
//! is the one it was taken under; any file created, removed or renamed in the folder — by
//! this process's writer, ETL or deletions, or by anything else (another tool, an
//! operator) — changes the stamp, and the next lookup lists the folder again (once, for
//! every PV of it). So the index never hides a file and never lists a removed one, with
//! no bookkeeping in the writers. A folder that changed within the last second is listed
//! each time until it settles.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::backend::StorageBackend;

/// Folders with fewer entries are listed at each lookup (cheap), not cached.
pub const MIN_CACHED: usize = 64;

/// One cached folder listing.
#[derive(Debug)]
struct Folder {
    stamp: u128,
    /// File names (not folders), sorted.
    names: Vec<Box<str>>,
}

/// The cached listings of one store's folders (see the module documentation). Shared by
/// the clones of a tier.
#[derive(Debug, Default)]
pub(crate) struct PartitionIndex {
    folders: Mutex<HashMap<PathBuf, Arc<Folder>>>,
}

impl PartitionIndex {
    fn cached(&self, dir: &Path, stamp: u128) -> Option<Arc<Folder>> {
        let folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        folders.get(dir).filter(|f| f.stamp == stamp).cloned()
    }

    fn forget(&self, dir: &Path) {
        let mut folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        folders.remove(dir);
    }

    /// Calls `f` with the name of every file in `dir` that starts with `prefix`; `Ok(false)`
    /// when `dir` does not exist.
    pub(crate) fn files_with_prefix(
        &self,
        io: &dyn StorageBackend,
        dir: &Path,
        prefix: &str,
        mut f: impl FnMut(&str),
    ) -> io::Result<bool> {
        let stamp = match io.dir_stamp(dir) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(dir);
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if let Some(folder) = stamp.and_then(|s| self.cached(dir, s)) {
            each_with_prefix(&folder.names, prefix, f);
            return Ok(true);
        }
        let entries = match io.list_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        match stamp {
            Some(stamp) if entries.len() >= MIN_CACHED => {
                let mut names: Vec<Box<str>> = entries
                    .into_iter()
                    .filter(|e| !e.is_dir)
                    .filter_map(|e| e.name.into_string().ok().map(String::into_boxed_str))
                    .collect();
                names.sort_unstable();
                each_with_prefix(&names, prefix, &mut f);
                let folder = Arc::new(Folder { stamp, names });
                let mut folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
                folders.insert(dir.to_path_buf(), folder);
            }
            _ => {
                self.forget(dir);
                for e in entries.iter().filter(|e| !e.is_dir) {
                    if let Some(name) = e.name.to_str().filter(|n| n.starts_with(prefix)) {
                        f(name);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Folders cached and the file names they hold (for status).
    pub(crate) fn size(&self) -> (usize, usize) {
        let folders = self.folders.lock().unwrap_or_else(|e| e.into_inner());
        (folders.len(), folders.values().map(|f| f.names.len()).sum())
    }
}

/// Calls `f` for each of the sorted `names` that starts with `prefix`: a binary search
/// for the first, then the run that follows.
fn each_with_prefix(names: &[Box<str>], prefix: &str, mut f: impl FnMut(&str)) {
    let start = names.partition_point(|n| &**n < prefix);
    for n in names[start..].iter().take_while(|n| n.starts_with(prefix)) {
        f(n);
    }
}
