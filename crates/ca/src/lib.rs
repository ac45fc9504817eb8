//! A lean EPICS Channel Access (CA) client and a small CA server.
//!
//! # Overview
//!
//! - [`Client`] is the context: it searches for PV names over UDP (batched datagrams to
//!   `EPICS_CA_ADDR_LIST` and, unless disabled, the interface broadcast addresses), with
//!   per-name exponential back-off that is reset when a beacon anomaly shows a server
//!   (re)appearing; it opens one TCP virtual circuit per server, shared by all channels
//!   on that server, and reconnects and resubscribes by itself after a server restart or
//!   network loss.
//! - [`Channel`] is one PV. Its events ([`ChannelEvent`]: `Connected`, `Disconnected`,
//!   `AccessRights`, `Value`, `SubscriptionError`) go to an [`EventQueue`]: either a
//!   queue of its own ([`Client::channel`]) or one shared by many channels
//!   ([`Client::create_channel`] with a caller-chosen `key` per channel), which an engine
//!   drains in batches with [`EventReceiver::recv_many`]. Connection changes are events
//!   on that same stream, in order with the values. A circuit delivers the updates of one
//!   socket read as one batch (one lock, at most one wake-up of the consumer).
//! - Nothing is dropped silently: a full queue either stalls the circuit
//!   ([`Overflow::Backpressure`]) or drops the value and counts it on the channel
//!   ([`Overflow::DropNewest`], [`Channel::dropped`]). Connects and disconnects are never
//!   dropped; access-rights changes and errors only when a hostile server floods more
//!   than `queue::STATE_SLACK` of them (counted).
//! - Values are decoded into [`Dbr`] (status, severity, Unix [`Timestamp`], [`Value`],
//!   optional GR/CTRL [`Meta`]); scalars are held inline, so a scalar monitor update does
//!   not touch the heap.
//! - [`server::Server`] is a small CA server (search, CREATE_CHAN, READ_NOTIFY,
//!   WRITE_NOTIFY, EVENT_ADD/CANCEL, CLEAR_CHANNEL, beacons) for demos and load.
//!
//! The wire codecs ([`header`], [`dbr`], [`codec`], [`search`]) are public and free of
//! I/O; they follow the CA protocol fact sheet (protocol 4.13).
//!
//! ```no_run
//! use archiver_ca::{Client, ClientConfig, ChannelEvent, Subscription, mask};
//! # async fn demo() -> Result<(), archiver_ca::CaError> {
//! let cfg = ClientConfig::builder().addr_list("127.0.0.1").auto_addr_list(false).build()?;
//! let client = Client::new(cfg).await?;
//! let (ch, events) = client.channel("SIM:AI:0")?;
//! ch.subscribe(Subscription::time(mask::DBE_LOG | mask::DBE_ALARM))?;
//! while let Some(ev) = events.recv().await {
//!     if let ChannelEvent::Value { data, .. } = ev.kind {
//!         println!("{} {:?}", data.value, data.stamp);
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod beacon;
mod channel;
mod circuit;
mod client;
pub mod codec;
pub mod config;
pub mod dbr;
pub mod error;
pub mod event;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod header;
pub mod queue;
pub mod repeater;
pub mod search;
pub mod server;
pub mod status;
pub mod value;

pub use channel::{Channel, ConnInfo, DbrRequest, Subscription, mask};
pub use client::{Client, ClientStats};
pub use config::{ClientConfig, ClientConfigBuilder};
pub use dbr::{DbfType, DbrClass, DbrType};
pub use error::{CaError, DecodeError, ProtocolError};
pub use event::{ChannelEvent, Event, SubscriptionId};
pub use queue::{EventQueue, EventReceiver, Overflow, event_queue};
pub use status::{AccessRights, EcaStatus};
pub use value::{CaString, Dbr, Limits, Meta, Timestamp, Value};
