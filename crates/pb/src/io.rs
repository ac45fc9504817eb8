//! The per-file I/O that [`PbWriter`](crate::PbWriter) and [`PbReader`](crate::PbReader)
//! need, as a trait, so that a storage layer can put the real filesystem, an in-memory one
//! or a fault-injecting one under the same codec.
//!
//! The model is redb's `StorageBackend` (`len` / `read` / `set_len` / `sync_data` /
//! `write`), cut to what an append-only line file needs: appends go to the end, reads are
//! positional, a failed append is rolled back by setting the length. Opening, creating,
//! renaming and listing files are folder operations and belong to the storage crate
//! (`archiver_storage::StorageBackend`); this crate has no I/O policy.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// One open file, as the PlainPB writer and reader use it.
///
/// Errors are plain [`io::Error`]s; a full disk is `ErrorKind::StorageFull` (raw OS error
/// 28, `ENOSPC`). An [`append`](FileIo::append) that fails may have written part of its
/// bytes (a short write): the caller rolls back with [`set_len`](FileIo::set_len).
pub trait FileIo: Send + std::fmt::Debug {
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// True if the file has no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads up to `buf.len()` bytes at byte `offset`; returns how many were read (0 at
    /// or past the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes all of `data` at the end of the file. On error, any prefix of `data` may
    /// have been written.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;

    /// Sets the file's length (truncating, or extending with zeros).
    fn set_len(&mut self, len: u64) -> io::Result<()>;

    /// Makes the file's data durable (`fdatasync`). Its name in its folder is made
    /// durable by syncing the folder, which is the storage crate's business.
    fn sync_data(&mut self) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `offset`; `UnexpectedEof` if the file is
    /// shorter.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<F: FileIo + ?Sized> FileIo for Box<F> {
    fn len(&self) -> io::Result<u64> {
        (**self).len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        (**self).append(data)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        (**self).set_len(len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        (**self).sync_data()
    }
}

/// A real file opened for reading and appending (`O_APPEND`, so every write lands at the
/// end whatever else writes to the file).
#[derive(Debug)]
pub struct StdFile(File);

impl StdFile {
    /// Opens `path` for reading and appending, creating it if `create` (but not its
    /// folders).
    pub fn open_append(path: &Path, create: bool) -> io::Result<Self> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(create)
            .open(path)
            .map(StdFile)
    }

    /// Creates `path`, failing with `AlreadyExists` if it exists, for reading and
    /// appending.
    pub fn create_new(path: &Path) -> io::Result<Self> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(path)
            .map(StdFile)
    }

    /// Opens `path` read-only. [`FileIo::append`] then fails with the OS's error.
    pub fn open_read(path: &Path) -> io::Result<Self> {
        File::open(path).map(StdFile)
    }

    /// The underlying file.
    pub fn into_inner(self) -> File {
        self.0
    }
}

impl FileIo for StdFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(&self.0, buf, offset)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// [`Read`] + [`Seek`] over a [`FileIo`] (positional reads from a cursor kept here), so
/// that [`PbReader`](crate::PbReader) reads any backend's files.
#[derive(Debug)]
pub struct FileCursor<F> {
    file: F,
    pos: u64,
}

impl<F: FileIo> FileCursor<F> {
    /// A cursor at the start of `file`.
    pub fn new(file: F) -> Self {
        FileCursor { file, pos: 0 }
    }

    /// The file.
    pub fn into_inner(self) -> F {
        self.file
    }
}

impl<F: FileIo> Read for FileCursor<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<F: FileIo> Seek for FileCursor<F> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(p) => {
                self.pos = p;
                return Ok(p);
            }
            SeekFrom::End(d) => (self.file.len()?, d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        self.pos = base
            .checked_add_signed(delta)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_reads_and_seeks_like_a_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("f");
        let mut f = StdFile::open_append(&path, true).expect("create");
        f.append(b"hello ").expect("append");
        f.append(b"world").expect("append");
        assert_eq!(f.len().expect("len"), 11);
        let mut c = FileCursor::new(f);
        let mut s = String::new();
        c.read_to_string(&mut s).expect("read");
        assert_eq!(s, "hello world");
        assert_eq!(c.seek(SeekFrom::End(-5)).expect("seek"), 6);
        let mut w = [0u8; 5];
        c.read_exact(&mut w).expect("read");
        assert_eq!(&w, b"world");
        assert!(c.seek(SeekFrom::Current(-100)).is_err());
        let mut f = c.into_inner();
        f.set_len(5).expect("truncate");
        f.append(b"!").expect("append at the new end");
        let mut all = [0u8; 6];
        f.read_exact_at(&mut all, 0).expect("read");
        assert_eq!(&all, b"hello!");
        assert_eq!(
            f.read_exact_at(&mut all, 1).map_err(|e| e.kind()),
            Err(io::ErrorKind::UnexpectedEof)
        );
    }
}
