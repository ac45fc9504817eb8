//! Storage errors.

use std::path::PathBuf;

use archiver_pb::path::PathError;

use crate::locks::Reentrant;
use crate::url::UrlError;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The PV name cannot be mapped to a file inside the tier.
    #[error("tier {tier}: {source}")]
    BadName {
        /// The tier.
        tier: String,
        /// Why.
        source: PathError,
    },
    /// Writing failed.
    #[error("tier {tier}: {source}")]
    Write {
        /// The tier.
        tier: String,
        /// Why.
        source: archiver_pb::WriteError,
    },
    /// Reading a file failed.
    #[error("tier {tier}: {}: {source}", path.display())]
    Read {
        /// The tier.
        tier: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: archiver_pb::ReadError,
    },
    /// Listing a folder or another I/O operation failed.
    #[error("tier {tier}: {}: {source}", path.display())]
    Io {
        /// The tier.
        tier: String,
        /// The folder or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A data store URL is refused.
    #[error("data store URL {url:?}: {source}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        source: UrlError,
    },
    /// Two configured data stores have the same name.
    #[error("data store {0:?} is configured twice")]
    DuplicateStore(String),
    /// Two configured data stores share a folder (or one lies inside the other): their
    /// files would mix, and a store would list the other's partitions as its own.
    #[error(
        "data stores {first:?} ({first_root}) and {second:?} ({second_root}) share a folder; \
         give every store a folder of its own"
    )]
    SharedStoreFolder {
        /// The store configured first.
        first: String,
        /// Its root folder.
        first_root: String,
        /// The store configured second.
        second: String,
        /// Its root folder.
        second_root: String,
    },
    /// A data store configured after the blackhole store (which must be last: nothing
    /// moves out of it).
    #[error(
        "data store {store:?} comes after the blackhole store {blackhole:?}, which must be last"
    )]
    AfterBlackhole {
        /// The blackhole store.
        blackhole: String,
        /// The store after it.
        store: String,
    },
    /// A PV's `dataStores` names a store that is not configured.
    #[error("data store {name:?} (from {url:?}) is not configured on this appliance")]
    UnknownStore {
        /// The store's name.
        name: String,
        /// The URL that named it.
        url: String,
    },
    /// The PV's write lock is already held by this thread.
    #[error("tier {tier}: {source}")]
    Lock {
        /// The tier.
        tier: String,
        /// Why.
        source: Reentrant,
    },
    /// The post-processor of a store's `reducedata=` could not reduce a file ETL moves
    /// into it (an unknown post-processor, a type it does not take): the file stays
    /// where it is, nothing is lost.
    #[error("tier {tier}: reducedata={post_processor} cannot reduce {}: {reason}", path.display())]
    Reduce {
        /// The destination store.
        tier: String,
        /// Its `reducedata` value.
        post_processor: String,
        /// The source file.
        path: PathBuf,
        /// Why, from the post-processor.
        reason: String,
    },
    /// A `*_locked` method was given a lock of another backend.
    #[error("tier {tier}: the write lock of PV {pv:?} comes from another backend")]
    ForeignLock {
        /// The tier.
        tier: String,
        /// The lock's PV.
        pv: String,
    },
    /// Contents given to replace a PV's file are of another PV.
    #[error("tier {tier}: {}: new contents are of PV {found:?}, not {pv:?}", path.display())]
    OtherPv {
        /// The tier.
        tier: String,
        /// The file.
        path: PathBuf,
        /// The PV named by the contents' header.
        found: String,
        /// The PV of the file.
        pv: String,
    },
}

impl StorageError {
    /// The I/O error underneath, if this is one (a full disk is
    /// `ErrorKind::StorageFull`, raw OS error 28).
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            StorageError::Write {
                source: archiver_pb::WriteError::Io { source, .. },
                ..
            } => Some(source),
            StorageError::Read {
                source: archiver_pb::ReadError::Io(source),
                ..
            } => Some(source),
            _ => None,
        }
    }
}
