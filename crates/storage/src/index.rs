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
//! **Kept right by the folder's stamp and by this process's own changes.** A cached
//! listing is used while the folder's stamp ([`StorageBackend::dir_stamp`]: its
//! modification time on a real filesystem) is the one it was taken under, so a file
//! created, removed or renamed by anything else (another tool, an operator, another
//! tier object) is seen at the next lookup. The files this tier creates and removes (the
//! writer, ETL, deletions) are applied to the listing as they happen
//! ([`PartitionIndex::note_added`], [`PartitionIndex::note_removed`]): a stamp changed
//! after such a change is taken as that change, so a folder that this process keeps
//! changing (100,000 PVs rolling over to a new partition, ETL emptying a folder) is
//! not listed again at every lookup — that relisting of a 200,000-file folder per lookup
//! made a restart during ETL take minutes. What the stamp cannot tell (a foreign change
//! mixed with ours, or made within the filesystem's clock tick of a listing) is caught by
//! listing the folder again at most every [`RECHECK`] while it is changing.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backend::StorageBackend;

/// Folders with fewer entries are listed at each lookup (cheap), not cached.
pub const MIN_CACHED: usize = 64;

/// How long a listing taken or adopted while its folder was changing (its stamp not
/// settled, or changed by this process and perhaps by another at the same time) is
/// trusted before the folder is listed again.
pub const RECHECK: Duration = Duration::from_secs(10);

/// One cached folder listing.
#[derive(Debug)]
struct Folder {
    /// The folder's stamp the listing is known to match (with the changes noted since).
    stamp: u128,
    /// File names (not folders).
    names: BTreeSet<Box<str>>,
    /// Changes of this process applied since `stamp` was read: a different stamp is
    /// theirs (adopted until `recheck_at`).
    noted: bool,
    /// When to list the folder again although the stamp says nothing changed; `None`
    /// once the listing was taken under a settled stamp and nothing was adopted since.
    recheck_at: Option<Instant>,
}

/// The cached listings of one store's folders (see the module documentation). Shared by
/// the clones of a tier.
#[derive(Debug, Default)]
pub(crate) struct PartitionIndex {
    folders: Mutex<HashMap<PathBuf, Folder>>,
}

impl PartitionIndex {
    fn folders(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Folder>> {
        self.folders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that this process created (or renamed into place) the file `path`.
    pub(crate) fn note_added(&self, path: &Path) {
        self.note(path, true);
    }

    /// Records that this process removed (or renamed away) the file `path`.
    pub(crate) fn note_removed(&self, path: &Path) {
        self.note(path, false);
    }

    fn note(&self, path: &Path, added: bool) {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return;
        };
        let mut folders = self.folders();
        if let Some(folder) = folders.get_mut(dir) {
            if added {
                folder.names.insert(name.into());
            } else {
                folder.names.remove(name);
            }
            folder.noted = true;
        }
    }

    /// Calls `f` with the name of every file in `dir` that starts with `prefix`, in
    /// name order for a cached folder; `Ok(false)` when `dir` does not exist.
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
                self.folders().remove(dir);
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        if let Some(stamp) = stamp {
            let mut folders = self.folders();
            if let Some(folder) = folders.get_mut(dir) {
                let due = folder.recheck_at.is_some_and(|t| now >= t);
                if stamp.value != folder.stamp && folder.noted && !due {
                    // Our own changes moved the stamp: adopt it, check again later.
                    folder.stamp = stamp.value;
                    folder.noted = false;
                    folder.recheck_at.get_or_insert(now + RECHECK);
                }
                if stamp.value == folder.stamp && !due {
                    each_with_prefix(&folder.names, prefix, f);
                    return Ok(true);
                }
            }
        }
        let entries = match io.list_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        match stamp {
            Some(stamp) if entries.len() >= MIN_CACHED => {
                let names: BTreeSet<Box<str>> = entries
                    .into_iter()
                    .filter(|e| !e.is_dir)
                    .filter_map(|e| e.name.into_string().ok().map(String::into_boxed_str))
                    .collect();
                each_with_prefix(&names, prefix, &mut f);
                let folder = Folder {
                    stamp: stamp.value,
                    names,
                    noted: false,
                    recheck_at: (!stamp.settled).then_some(now + RECHECK),
                };
                self.folders().insert(dir.to_path_buf(), folder);
            }
            _ => {
                self.folders().remove(dir);
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
        let folders = self.folders();
        (folders.len(), folders.values().map(|f| f.names.len()).sum())
    }
}

/// Calls `f` for each of the `names` that starts with `prefix`, in order: the run from
/// the first name not below `prefix`.
fn each_with_prefix(names: &BTreeSet<Box<str>>, prefix: &str, mut f: impl FnMut(&str)) {
    for n in names
        .range::<str, _>((
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        ))
        .take_while(|n| n.starts_with(prefix))
    {
        f(n);
    }
}
