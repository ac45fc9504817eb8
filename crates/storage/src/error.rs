//! Storage errors.

use std::path::PathBuf;

use archiver_pb::path::PathError;

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
}
