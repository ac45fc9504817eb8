//! Faults at start-up, with the real binary: a read-only data folder or store folder, a
//! corrupt, foreign or locked registry file. Each is refused with an error naming the
//! file or folder and a non-zero exit, and nothing is written: no registry created, no
//! file changed, the damaged file left in place for the operator.
//!
//! A read-only folder is made with a read-only tmpfs mount when the tests run as root
//! (root ignores permission bits) and with `chmod 0555` otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `archiver serve --data-dir DIR` (no config file, any free port), which must exit
/// within `secs`; returns (exit code, stderr).
fn serve_refused(data_dir: &Path, secs: u64) -> (Option<i32>, String) {
    serve_refused_on(data_dir, "127.0.0.1:0", secs)
}

/// [`serve_refused`] listening on `listen`.
fn serve_refused_on(data_dir: &Path, listen: &str, secs: u64) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_archiver"))
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .env("EPICS_CA_ADDR_LIST", "127.0.0.1:1")
        .env("EPICS_CA_AUTO_ADDR_LIST", "NO")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "archiver serve did not exit within {secs} s; stdout: {} stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

/// A folder made read-only for the archiver; undone on drop.
enum ReadOnly {
    Mount(PathBuf),
    Mode(PathBuf),
}

impl ReadOnly {
    /// Makes the existing folder `dir` read-only, keeping its files: as root, a read-only
    /// bind mount of itself; else mode 0555.
    fn make(dir: &Path) -> ReadOnly {
        if is_root() {
            let ok = |args: &[&str]| {
                Command::new("mount")
                    .args(args)
                    .arg(dir)
                    .arg(dir)
                    .status()
                    .is_ok_and(|s| s.success())
            };
            assert!(
                ok(&["--bind"]),
                "running as root, the read-only folder needs `mount --bind` (not permitted here)"
            );
            let d = dir.to_str().unwrap();
            let ro = Command::new("mount")
                .args(["-o", "remount,bind,ro", d])
                .status()
                .is_ok_and(|s| s.success());
            let guard = ReadOnly::Mount(dir.to_path_buf());
            assert!(ro, "remount read-only of {d} failed");
            guard
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            ReadOnly::Mode(dir.to_path_buf())
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        match self {
            ReadOnly::Mount(d) => {
                let _ = Command::new("umount").arg(&*d).status();
            }
            ReadOnly::Mode(d) => {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&*d, std::fs::Permissions::from_mode(0o755));
            }
        }
    }
}

/// Every file under `dir` with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A data folder as a previous run leaves it: a catalogue and one partition file.
fn used_data_dir(root: &Path) -> PathBuf {
    let data = root.join("data");
    std::fs::create_dir_all(data.join("sts/A")).unwrap();
    drop(archiver_registry::SqliteRegistry::open(&data.join("registry.sqlite")).unwrap());
    std::fs::write(data.join("sts/A/B:2026.pb"), b"not checked here\n").unwrap();
    data
}

#[test]
fn a_read_only_data_folder_is_refused_naming_it_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = used_data_dir(dir.path());
    let before = snapshot(&data);
    let ro = ReadOnly::make(&data);
    let (code, err) = serve_refused(&data, 30);
    drop(ro);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "the data folder {} is not writable",
            data.display()
        )),
        "{err}"
    );
    assert_eq!(snapshot(&data), before);
}

/// Found by trying it: a read-only short-term store folder (in a writable data folder) was
/// accepted; the service ran and every write of every PV failed.
#[test]
fn a_read_only_store_folder_was_accepted_and_every_write_failed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("sts")).unwrap();
    let ro = ReadOnly::make(&data.join("sts"));
    let (code, err) = serve_refused(&data, 30);
    drop(ro);
    assert_ne!(code, Some(0), "{err}");
    let sts = data.join("sts");
    assert!(
        err.contains(&format!(
            "the folder of data store STS {} is not writable",
            sts.display()
        )),
        "{err}"
    );
    // Refused before the registry is opened: no catalogue was created.
    assert!(!data.join("registry.sqlite").exists());
}

/// Found by a fresh-user test: a start refused for its port or its registry had already
/// created the data folder's sts/ and journal/. Now a port in use is refused before the
/// data folder is even created, and a refused registry leaves only the data folder's lock.
#[test]
fn a_failed_start_left_store_and_journal_folders_behind() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let data = dir.path().join("fresh");
    let (code, err) = serve_refused_on(&data, &port, 30);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on {port}")), "{err}");
    assert!(
        !data.exists(),
        "a start refused for its port created {}",
        data.display()
    );

    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("registry.sqlite"),
        b"not a database at all, not even close",
    )
    .unwrap();
    let (code, err) = serve_refused(&data, 30);
    assert_eq!(code, Some(1), "{err}");
    let mut left: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["archiver.lock", "registry.sqlite"], "{err}");
}

/// `registry.sqlite` replaced by `bytes`: refused, naming the file, and the file and the
/// data left as they were.
fn refused_registry(bytes: &[u8], expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = used_data_dir(dir.path());
    let reg = data.join("registry.sqlite");
    std::fs::write(&reg, bytes).unwrap();
    let before = snapshot(&data);
    let (code, err) = serve_refused(&data, 30);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("the registry file {}", reg.display())),
        "{err}"
    );
    assert!(err.contains(expect), "{err}");
    let after: Vec<_> = snapshot(&data)
        .into_iter()
        .filter(|(p, _)| !p.ends_with("archiver.lock"))
        .collect();
    assert_eq!(after, before);
}

#[test]
fn a_registry_of_garbage_bytes_is_refused_and_left_in_place() {
    let garbage: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    refused_registry(&garbage, "is damaged or is not an SQLite database");
}

#[test]
fn a_truncated_registry_is_refused_and_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let data = used_data_dir(dir.path());
    let whole = std::fs::read(data.join("registry.sqlite")).unwrap();
    refused_registry(
        &whole[..whole.len() / 4],
        "is damaged or is not an SQLite database",
    );
}

#[test]
fn a_registry_of_another_program_is_refused_and_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.sqlite");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE foo (x); INSERT INTO foo VALUES (1);")
            .unwrap();
    }
    refused_registry(
        &std::fs::read(&path).unwrap(),
        "is not an archiver catalogue",
    );
}

#[test]
fn a_registry_locked_by_another_process_is_refused_after_the_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let data = used_data_dir(dir.path());
    let reg = data.join("registry.sqlite");
    // Before the lock is taken: a process that closes any descriptor of a file loses its
    // POSIX locks on it, and reading the file here would open and close one.
    let before = snapshot(&data);
    let holder = rusqlite::Connection::open(&reg).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let (code, err) = serve_refused(&data, 40);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the registry file {} is locked by another process",
            reg.display()
        )),
        "{err}"
    );
    holder.execute_batch("COMMIT;").unwrap();
    drop(holder);
    let after: Vec<_> = snapshot(&data)
        .into_iter()
        .filter(|(p, _)| !p.ends_with("archiver.lock"))
        .collect();
    assert_eq!(after, before);
}
