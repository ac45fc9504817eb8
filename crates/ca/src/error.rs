//! Typed errors: decoding, protocol violations, and what a caller of the client sees.

use std::net::SocketAddr;
use std::time::Duration;

use crate::status::EcaStatus;

/// A DBR payload could not be decoded (or encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The DBR type number is not one this crate decodes (0–34 are supported).
    #[error("unsupported DBR type {0}")]
    UnsupportedType(u16),
    /// The native field type number is not 0–6.
    #[error("unknown native field type {0}")]
    UnknownFieldType(u16),
    /// The payload is shorter than the type and count require.
    #[error("DBR type {dbr_type} count {count}: need {need} bytes, payload has {have}")]
    Truncated {
        /// DBR type number.
        dbr_type: u16,
        /// Element count from the header.
        count: u32,
        /// Bytes required.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A value cannot be converted to the requested type.
    #[error("cannot convert {from} to {to}")]
    Conversion {
        /// Source type name.
        from: &'static str,
        /// Target type name.
        to: &'static str,
    },
}

/// The peer broke the protocol; the circuit is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Payload size is not a multiple of 8.
    #[error("misaligned message: command {command} payload size {size}")]
    Misaligned {
        /// Command number.
        command: u16,
        /// Payload size.
        size: u32,
    },
    /// Payload is larger than the configured maximum (EPICS_CA_MAX_ARRAY_BYTES).
    #[error("message too large: command {command} payload {size} bytes > max {max}")]
    TooLarge {
        /// Command number.
        command: u16,
        /// Payload size.
        size: u32,
        /// Configured maximum.
        max: usize,
    },
    /// A command this client does not expect on a circuit.
    #[error("unexpected command {0}")]
    UnexpectedCommand(u16),
    /// A DBR payload could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The server reports a protocol version older than the minimum (4).
    #[error("server minor version {0} is too old")]
    OldServer(u16),
}

/// Errors returned by the client API.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Socket error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server broke the protocol.
    #[error("protocol error from {server}: {error}")]
    Protocol {
        /// The server.
        server: SocketAddr,
        /// What went wrong.
        error: ProtocolError,
    },
    /// A payload could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The channel is not connected (or its circuit died during the request).
    #[error("channel {0} is disconnected")]
    Disconnected(String),
    /// No server answered the search in time.
    #[error("no server answered the search for {name} within {:.1} s (searched: {addrs})", timeout.as_secs_f64())]
    NotFound {
        /// The PV name.
        name: String,
        /// How long we waited.
        timeout: Duration,
        /// The addresses searched, space separated.
        addrs: String,
    },
    /// A request did not complete in time.
    #[error("timed out after {:.1} s: {what}", timeout.as_secs_f64())]
    Timeout {
        /// What timed out.
        what: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The server answered a request with an ECA error status.
    #[error("server refused {what}: {status}")]
    Server {
        /// The request.
        what: &'static str,
        /// ECA status.
        status: EcaStatus,
    },
    /// The client context has shut down.
    #[error("the CA client has shut down")]
    Shutdown,
    /// Invalid configuration or argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_message_names_the_addresses() {
        let e = CaError::NotFound {
            name: "X:Y".into(),
            timeout: Duration::from_secs(2),
            addrs: "127.0.0.1:5064".into(),
        };
        let s = e.to_string();
        assert!(
            s.contains("X:Y") && s.contains("2.0 s") && s.contains("127.0.0.1:5064"),
            "{s}"
        );
    }
}
