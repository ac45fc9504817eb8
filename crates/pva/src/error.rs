//! Typed errors: pvData decoding, protocol violations, and what a caller of the client sees.

use std::net::SocketAddr;
use std::time::Duration;

/// pvData bytes could not be decoded. Every decoder in this crate returns this instead of
/// panicking, whatever the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message ended before the value did.
    #[error("truncated: need {need} more bytes at offset {at}, message has {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Offset in the message.
        at: usize,
        /// Message length.
        have: usize,
    },
    /// A size byte of 0xFF where no null is allowed, or a size beyond what the message holds.
    #[error("invalid size {0}")]
    BadSize(u64),
    /// A type code this decoder does not know (or a deprecated fixed-size array).
    #[error("unsupported type code 0x{0:02x}")]
    BadTypeCode(u8),
    /// A 0xFE type reference to an id the server never defined on this connection.
    #[error("unknown introspection id {0}")]
    UnknownTypeId(u16),
    /// Type or value nesting deeper than [`crate::types::MAX_DEPTH`].
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// Decoding would create more nodes than the message size justifies (a hostile or
    /// broken server), or the introspection cache is full.
    #[error("decoding budget exhausted: {0}")]
    Budget(&'static str),
    /// A union selector beyond the union's fields.
    #[error("union selector {selector} out of range ({fields} fields)")]
    BadSelector {
        /// The selector.
        selector: u64,
        /// Number of fields of the union.
        fields: usize,
    },
    /// A structure array or union array whose element description is not a structure/union.
    #[error("array element type mismatch")]
    ElementType,
    /// Bytes left over after a message that should have been consumed whole.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// The message header is invalid.
    #[error("bad header: {0}")]
    Header(&'static str),
}

/// Errors returned by the client API.
#[derive(Debug, thiserror::Error)]
pub enum PvaError {
    /// Socket error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent bytes that could not be decoded; its connection is closed.
    #[error("protocol error from {server}: {error}")]
    Protocol {
        /// The server.
        server: SocketAddr,
        /// What went wrong.
        error: DecodeError,
    },
    /// A payload could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The channel is not connected (or its connection died during the request).
    #[error("channel {0} is disconnected")]
    Disconnected(String),
    /// A request did not complete in time.
    #[error("timed out after {:.1} s: {what}", timeout.as_secs_f64())]
    Timeout {
        /// What timed out.
        what: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The server answered with an error status.
    #[error("server error for {what}: {message}")]
    Server {
        /// The request.
        what: String,
        /// The status message.
        message: String,
    },
    /// The client context has shut down.
    #[error("the PVA client has shut down")]
    Shutdown,
    /// Invalid configuration or argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}
