//! **For tests.** [`SimBackend`], an in-memory filesystem behind [`StorageBackend`] that
//! injects faults and simulates crashes, so tests can put the tiers (and the engine's
//! writer above them) through an I/O error, a full disk, a short write or a crash at any
//! operation. The server never uses it.
//!
//! Modelled on redb's crash-consistency test backend (`tests/crash_consistency.rs`): every
//! file has a *live* image (what the process sees) and a *durable* one (what
//! [`FileIo::sync_data`] made durable); every folder's entries likewise, made durable by
//! [`StorageBackend::sync_dir`]. [`SimBackend::crash_image`] builds the filesystem that a
//! restart would find ([`CrashImage`]).
//!
//! Every call (folder operations, and file operations on an open file alike) is one
//! *operation*, numbered from 0 in the order made; [`SimBackend::fail_at`] arms a
//! [`Fault`] for the operation with a given number, so a test can loop over every
//! operation of a scenario: arm operation k, run, check, and stop at the first k that
//! [`SimBackend::faults_fired`] says was never reached.
//!
//! ```
//! use archiver_storage::testing::{Fault, SimBackend};
//! use archiver_storage::{Backend, Tier};
//! use archiver_pb::{Granularity, PayloadType, Sample, Timestamp, Value};
//!
//! let sim = SimBackend::new();
//! let tier = Tier::with_backend("STS", "/sts", Granularity::Hour, Backend::new(sim.clone()));
//! let s = Sample::new(Timestamp::new(1_700_000_000, 0), Value::ScalarDouble(1.0));
//! sim.fail_at(sim.ops(), Fault::NoSpace); // the very next operation
//! assert!(tier.append("A:B", PayloadType::ScalarDouble, &[s.clone()]).is_err());
//! assert_eq!(tier.append("A:B", PayloadType::ScalarDouble, &[s])?.written, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use archiver_pb::FileIo;

use crate::backend::{DirEntry, OpenMode, StorageBackend};

/// What an armed operation does instead of succeeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails with this kind of error and changes nothing.
    Error(io::ErrorKind),
    /// Fails with `ENOSPC` (raw OS error 28, `ErrorKind::StorageFull`) and changes nothing.
    NoSpace,
    /// An append writes the first half of its bytes, then fails with `ENOSPC`; any other
    /// operation fails as [`Fault::NoSpace`].
    ShortWrite,
    /// The process dies: an append writes the first half of its bytes; this operation and
    /// every later one fail (with `ErrorKind::Other`) and change nothing. Then build the
    /// restarted filesystem with [`SimBackend::crash_image`].
    Crash,
}

/// What a restart finds after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashImage {
    /// Power loss: only what was synced — file data by `sync_data`, folder entries (a
    /// file's or folder's existence, a rename, a removal) by `sync_dir` of their folder,
    /// and only below folders that are themselves durable.
    PowerLoss,
    /// As [`CrashImage::PowerLoss`], but a durable file whose live data extends its synced
    /// data also keeps the first half of the unsynced bytes: a write torn by the power cut.
    PowerLossTorn,
    /// The process died, the machine did not: everything written is there, synced or not
    /// (the kernel still holds it).
    ProcessCrash,
}

/// `ENOSPC`.
pub fn no_space() -> io::Error {
    io::Error::from_raw_os_error(28)
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash: the process is gone")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(u64),
    Dir,
}

#[derive(Debug, Clone, Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    live: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    ops: u64,
    faults: BTreeMap<u64, Fault>,
    fired: u64,
    crashed: bool,
    capacity: Option<u64>,
    log: Vec<String>,
    /// Bumped by every change of a folder's entries (anywhere): the folder stamp.
    changes: u64,
}

/// The in-memory filesystem (see the module documentation). Clones share it.
#[derive(Debug, Clone, Default)]
pub struct SimBackend {
    state: Arc<Mutex<State>>,
}

/// A file open on a [`SimBackend`].
#[derive(Debug)]
pub struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    path: PathBuf,
    writable: bool,
}

fn is_root(p: &Path) -> bool {
    p.as_os_str().is_empty() || p == Path::new("/")
}

impl State {
    /// Counts an operation; returns the fault armed for it, or an error after a crash.
    fn begin(&mut self, op: &str, path: &Path) -> io::Result<Option<Fault>> {
        if self.crashed {
            return Err(crashed());
        }
        let n = self.ops;
        self.ops += 1;
        self.log.push(format!("{n}: {op} {}", path.display()));
        let fault = self.faults.remove(&n);
        if let Some(f) = fault {
            self.fired += 1;
            if f == Fault::Crash {
                self.crashed = true;
            }
        }
        Ok(fault)
    }

    fn dir_exists(&self, p: &Path) -> bool {
        is_root(p) || self.live.get(p) == Some(&Node::Dir)
    }

    fn parent_exists(&self, p: &Path) -> bool {
        p.parent().is_none_or(|d| self.dir_exists(d))
    }

    fn file(&self, p: &Path) -> io::Result<u64> {
        match self.live.get(p) {
            Some(Node::File(i)) => Ok(*i),
            Some(Node::Dir) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a folder", p.display()),
            )),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found", p.display()),
            )),
        }
    }

    fn used(&self) -> u64 {
        self.live
            .values()
            .filter_map(|n| match n {
                Node::File(i) => self.inodes.get(i).map(|f| f.live.len() as u64),
                Node::Dir => None,
            })
            .sum()
    }

    fn free(&self) -> u64 {
        self.capacity
            .map_or(u64::MAX, |c| c.saturating_sub(self.used()))
    }
}

fn fail(f: Fault) -> io::Error {
    match f {
        Fault::Error(kind) => io::Error::new(kind, "injected fault"),
        Fault::NoSpace | Fault::ShortWrite => no_space(),
        Fault::Crash => crashed(),
    }
}

impl SimBackend {
    /// An empty filesystem (only `/`), no faults, no capacity limit.
    pub fn new() -> Self {
        SimBackend::default()
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Operations made so far (the number the next one gets).
    pub fn ops(&self) -> u64 {
        self.st().ops
    }

    /// Arms `fault` for the operation numbered `op`.
    pub fn fail_at(&self, op: u64, fault: Fault) {
        self.st().faults.insert(op, fault);
    }

    /// Disarms every fault not yet reached.
    pub fn clear_faults(&self) {
        self.st().faults.clear();
    }

    /// How many armed faults have been reached.
    pub fn faults_fired(&self) -> u64 {
        self.st().fired
    }

    /// True after a [`Fault::Crash`].
    pub fn is_crashed(&self) -> bool {
        self.st().crashed
    }

    /// Limits the bytes all files may hold (`None`: no limit). An append that does not
    /// fit writes what fits and fails with `ENOSPC`, as a full disk does.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.st().capacity = bytes;
    }

    /// Bytes held by the files.
    pub fn used_bytes(&self) -> u64 {
        self.st().used()
    }

    /// The operations made so far, one line each (`"12: append /sts/A/B:2024_01_01_00.pb"`),
    /// for test failure messages.
    pub fn op_log(&self) -> Vec<String> {
        self.st().log.clone()
    }

    /// The live contents of the file at `path` (not an operation).
    pub fn read_file(&self, path: impl AsRef<Path>) -> Option<Vec<u8>> {
        let st = self.st();
        let i = st.file(path.as_ref()).ok()?;
        st.inodes.get(&i).map(|f| f.live.clone())
    }

    /// Creates (or replaces) the file at `path` with `bytes`, with its folders, all durable
    /// at once (not an operation): for planting a file a test starts from.
    pub fn put_file(&self, path: impl AsRef<Path>, bytes: &[u8]) {
        let path = path.as_ref();
        let mut st = self.st();
        for dir in path.ancestors().skip(1).filter(|d| !is_root(d)) {
            st.live.insert(dir.to_path_buf(), Node::Dir);
            st.changes += 1;
            st.durable.insert(dir.to_path_buf(), Node::Dir);
        }
        let i = st.next_inode;
        st.next_inode += 1;
        st.inodes.insert(
            i,
            Inode {
                live: bytes.to_vec(),
                durable: bytes.to_vec(),
            },
        );
        st.live.insert(path.to_path_buf(), Node::File(i));
        st.durable.insert(path.to_path_buf(), Node::File(i));
        st.changes += 1;
    }

    /// The paths of all files, sorted (not an operation).
    pub fn files(&self) -> Vec<PathBuf> {
        let st = self.st();
        st.live
            .iter()
            .filter(|(_, n)| matches!(n, Node::File(_)))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The filesystem a restart finds after a crash (or now, if there was none), as a new
    /// backend with no faults, no capacity limit and an operation count of 0.
    pub fn crash_image(&self, image: CrashImage) -> SimBackend {
        let st = self.st();
        let mut new = State::default();
        if image == CrashImage::ProcessCrash {
            new.inodes = st.inodes.clone();
            new.next_inode = st.next_inode;
            new.live = st.live.clone();
            new.durable = st.durable.clone();
        } else {
            // Only entries whose every folder is durable are reachable.
            let reachable = |p: &Path| {
                p.ancestors()
                    .skip(1)
                    .all(|d| is_root(d) || st.durable.get(d) == Some(&Node::Dir))
            };
            for (path, node) in st.durable.iter().filter(|(p, _)| reachable(p)) {
                let node = match node {
                    Node::Dir => Node::Dir,
                    Node::File(i) => {
                        let old = st.inodes.get(i).cloned().unwrap_or_default();
                        let mut bytes = old.durable.clone();
                        if image == CrashImage::PowerLossTorn
                            && old.live.len() > bytes.len()
                            && old.live.starts_with(&bytes)
                        {
                            let unsynced = &old.live[bytes.len()..];
                            bytes.extend_from_slice(&unsynced[..unsynced.len() / 2]);
                        }
                        let n = new.next_inode;
                        new.next_inode += 1;
                        new.inodes.insert(
                            n,
                            Inode {
                                live: bytes.clone(),
                                durable: bytes,
                            },
                        );
                        Node::File(n)
                    }
                };
                new.live.insert(path.clone(), node);
                new.durable.insert(path.clone(), node);
            }
        }
        SimBackend {
            state: Arc::new(Mutex::new(new)),
        }
    }
}

impl StorageBackend for SimBackend {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileIo>> {
        let mut st = self.st();
        let op = match mode {
            OpenMode::Read => "open-read",
            OpenMode::Append => "open-append",
            OpenMode::CreateNew => "create",
        };
        if let Some(f) = st.begin(op, path)? {
            return Err(fail(f));
        }
        let inode = match mode {
            OpenMode::Read | OpenMode::Append => st.file(path)?,
            OpenMode::CreateNew => {
                if st.live.contains_key(path) {
                    return Err(io::ErrorKind::AlreadyExists.into());
                }
                if !st.parent_exists(path) {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("folder of {} not found", path.display()),
                    ));
                }
                let i = st.next_inode;
                st.next_inode += 1;
                st.inodes.insert(i, Inode::default());
                st.live.insert(path.to_path_buf(), Node::File(i));
                st.changes += 1;
                i
            }
        };
        Ok(Box::new(SimFile {
            state: self.state.clone(),
            inode,
            path: path.to_path_buf(),
            writable: mode != OpenMode::Read,
        }))
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        let mut st = self.st();
        if let Some(f) = st.begin("len", path)? {
            return Err(fail(f));
        }
        let i = st.file(path)?;
        Ok(st.inodes.get(&i).map_or(0, |f| f.live.len() as u64))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let mut st = self.st();
        if let Some(f) = st.begin("exists", path)? {
            return Err(fail(f));
        }
        Ok(is_root(path) || st.live.contains_key(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.st();
        if let Some(f) = st.begin("rename", from)? {
            return Err(fail(f));
        }
        let i = st.file(from)?;
        if st.live.get(to) == Some(&Node::Dir) || !st.parent_exists(to) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot rename to {}", to.display()),
            ));
        }
        st.live.remove(from);
        st.live.insert(to.to_path_buf(), Node::File(i));
        st.changes += 1;
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.st();
        if let Some(f) = st.begin("remove", path)? {
            return Err(fail(f));
        }
        st.file(path)?;
        st.live.remove(path);
        st.changes += 1;
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut st = self.st();
        if let Some(f) = st.begin("list", dir)? {
            return Err(fail(f));
        }
        if !st.dir_exists(dir) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found", dir.display()),
            ));
        }
        Ok(st
            .live
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .filter_map(|(p, n)| {
                Some(DirEntry {
                    name: p.file_name()?.to_os_string(),
                    is_dir: *n == Node::Dir,
                })
            })
            .collect())
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.st();
        if let Some(f) = st.begin("mkdir", dir)? {
            return Err(fail(f));
        }
        if is_root(dir) || st.live.contains_key(dir) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        if !st.parent_exists(dir) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("parent of {} not found", dir.display()),
            ));
        }
        st.live.insert(dir.to_path_buf(), Node::Dir);
        st.changes += 1;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.st();
        if let Some(f) = st.begin("sync-dir", dir)? {
            return Err(fail(f));
        }
        if !st.dir_exists(dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        st.durable.retain(|p, _| !in_dir(p));
        let now: Vec<(PathBuf, Node)> = st
            .live
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        st.durable.extend(now);
        Ok(())
    }

    fn sync_filesystem(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.st();
        if let Some(f) = st.begin("sync-fs", dir)? {
            return Err(fail(f));
        }
        for f in st.inodes.values_mut() {
            f.durable = f.live.clone();
        }
        st.durable = st.live.clone();
        Ok(())
    }

    fn dir_stamp(&self, dir: &Path) -> io::Result<Option<crate::backend::DirStamp>> {
        let st = self.st();
        if !st.dir_exists(dir) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found", dir.display()),
            ));
        }
        // An exact count of changes: never ambiguous.
        Ok(Some(crate::backend::DirStamp {
            value: u128::from(st.changes),
            settled: true,
        }))
    }

    fn available_space(&self, _dir: &Path) -> io::Result<Option<u64>> {
        let st = self.st();
        Ok(st.capacity.map(|_| st.free()))
    }
}

impl SimFile {
    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FileIo for SimFile {
    fn len(&self) -> io::Result<u64> {
        let mut st = self.st();
        if let Some(f) = st.begin("file-len", &self.path)? {
            return Err(fail(f));
        }
        Ok(st
            .inodes
            .get(&self.inode)
            .map_or(0, |f| f.live.len() as u64))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut st = self.st();
        if let Some(f) = st.begin("read", &self.path)? {
            return Err(fail(f));
        }
        let data = st.inodes.get(&self.inode).map_or(&[][..], |f| &f.live[..]);
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut st = self.st();
        let fault = st.begin("append", &self.path)?;
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ));
        }
        let (mut n, mut err) = (data.len(), None);
        match fault {
            Some(f @ (Fault::ShortWrite | Fault::Crash)) => {
                n = data.len() / 2;
                err = Some(fail(f));
            }
            Some(f) => return Err(fail(f)),
            None => {}
        }
        let free = usize::try_from(st.free()).unwrap_or(usize::MAX);
        if n > free {
            n = free;
            err = Some(no_space());
        }
        if let Some(f) = st.inodes.get_mut(&self.inode) {
            f.live.extend_from_slice(&data[..n]);
        }
        err.map_or(Ok(()), Err)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut st = self.st();
        if let Some(f) = st.begin("set-len", &self.path)? {
            return Err(fail(f));
        }
        let cur = st
            .inodes
            .get(&self.inode)
            .map_or(0, |f| f.live.len() as u64);
        if len > cur && len - cur > st.free() {
            return Err(no_space());
        }
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        if let Some(f) = st.inodes.get_mut(&self.inode) {
            f.live.resize(len, 0);
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut st = self.st();
        if let Some(f) = st.begin("sync", &self.path)? {
            return Err(fail(f));
        }
        if let Some(f) = st.inodes.get_mut(&self.inode) {
            f.durable = f.live.clone();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    #[test]
    fn only_synced_data_and_entries_survive_a_power_loss() {
        let sim = SimBackend::new();
        sim.create_dir(p("/a")).expect("mkdir");
        let mut f = sim.open(p("/a/f"), OpenMode::CreateNew).expect("create");
        f.append(b"synced\n").expect("append");
        f.sync_data().expect("sync");
        f.append(b"not yet\n").expect("append");
        // Neither /a nor /a/f is a durable entry yet.
        assert!(sim.crash_image(CrashImage::PowerLoss).files().is_empty());
        sim.sync_dir(p("/")).expect("sync /");
        sim.sync_dir(p("/a")).expect("sync /a");
        let img = sim.crash_image(CrashImage::PowerLoss);
        assert_eq!(img.read_file("/a/f").as_deref(), Some(&b"synced\n"[..]));
        let torn = sim.crash_image(CrashImage::PowerLossTorn);
        assert_eq!(
            torn.read_file("/a/f").as_deref(),
            Some(&b"synced\nnot "[..])
        );
        let live = sim.crash_image(CrashImage::ProcessCrash);
        assert_eq!(
            live.read_file("/a/f").as_deref(),
            Some(&b"synced\nnot yet\n"[..])
        );
        // A removal is durable only once its folder is synced.
        sim.remove_file(p("/a/f")).expect("remove");
        assert!(
            sim.crash_image(CrashImage::PowerLoss)
                .read_file("/a/f")
                .is_some()
        );
        sim.sync_dir(p("/a")).expect("sync");
        assert!(
            sim.crash_image(CrashImage::PowerLoss)
                .read_file("/a/f")
                .is_none()
        );
    }

    #[test]
    fn faults_fire_at_their_operation_and_a_crash_stops_everything() {
        let sim = SimBackend::new();
        let mut f = sim.open(p("/f"), OpenMode::CreateNew).expect("create");
        sim.fail_at(sim.ops(), Fault::ShortWrite);
        let e = f.append(b"abcd").expect_err("short write");
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(e.raw_os_error(), Some(28));
        assert_eq!(sim.read_file("/f").as_deref(), Some(&b"ab"[..]));
        sim.fail_at(sim.ops() + 1, Fault::Error(io::ErrorKind::Other));
        f.append(b"ok").expect("not armed");
        assert!(f.set_len(0).is_err());
        assert_eq!(sim.faults_fired(), 2);
        sim.set_capacity(Some(6));
        let e = f.append(b"xyz").expect_err("full");
        assert_eq!(e.raw_os_error(), Some(28));
        assert_eq!(sim.read_file("/f").as_deref(), Some(&b"abokxy"[..]));
        f.set_len(2).expect("shrinking a full file works");
        sim.fail_at(sim.ops(), Fault::Crash);
        assert!(f.append(b"1234").is_err());
        assert!(sim.is_crashed());
        assert!(sim.exists(p("/f")).is_err(), "nothing runs after a crash");
        assert_eq!(sim.read_file("/f").as_deref(), Some(&b"ab12"[..]));
        assert!(sim.op_log().iter().any(|l| l.contains("append /f")));
    }
}
