//! What a channel reports to its consumer: connection changes, access rights, values.

use std::net::SocketAddr;

use crate::dbr::DbfType;
use crate::status::{AccessRights, EcaStatus};
use crate::value::{Dbr, Timestamp};

/// Identifies a subscription of a channel (the SUBID on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u32);

/// One event on a channel's stream.
#[derive(Clone, Debug, PartialEq)]
pub enum ChannelEvent {
    /// The channel is connected (first time or after a reconnect).
    Connected {
        /// Native field type.
        native: DbfType,
        /// Native element count.
        count: u32,
        /// The server's TCP address.
        server: SocketAddr,
        /// Access rights at connect time.
        access: AccessRights,
    },
    /// The channel lost its server (circuit closed, unresponsive, or channel dropped by
    /// the server); it is searched for again automatically.
    Disconnected {
        /// When the client noticed.
        at: Timestamp,
    },
    /// Access rights changed while connected.
    AccessRights(AccessRights),
    /// A monitor update.
    Value {
        /// The subscription it belongs to.
        sub: SubscriptionId,
        /// The decoded payload.
        data: Dbr,
    },
    /// The server reported a failure for a subscription (e.g. ECA_NORDACCESS); the
    /// subscription stays registered.
    SubscriptionError {
        /// The subscription.
        sub: SubscriptionId,
        /// The ECA status.
        status: EcaStatus,
    },
}

/// An event tagged with the key its channel was created with.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The caller-chosen key of the channel (see [`crate::Client::create_channel`]).
    pub key: u64,
    /// What happened.
    pub kind: ChannelEvent,
}
