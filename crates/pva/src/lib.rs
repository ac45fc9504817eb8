//! A lean EPICS pvAccess (PVA) client and pvData codec.
//!
//! # Overview
//!
//! - [`Client`] is the context: it searches for PV names over UDP (`EPICS_PVA_ADDR_LIST`,
//!   and unless `EPICS_PVA_AUTO_ADDR_LIST=NO` the interface broadcast addresses, port
//!   `EPICS_PVA_BROADCAST_PORT`), with per-name exponential back-off reset when a server
//!   appears or restarts (its beacons or search replies, tracked by
//!   [`beacon::BeaconTracker`]); it opens one TCP connection per server (validation, ECHO, a
//!   dead-connection timeout `EPICS_PVA_CONN_TMO`) shared by that server's channels, and
//!   reconnects and re-subscribes by itself after a server restart. See [`ClientConfig`].
//! - [`Channel`] is one PV: [`Channel::get`], [`Channel::get_field`], and
//!   [`Channel::subscribe`] with a [`PvRequest`] (`field(value,alarm,timeStamp)`, the whole
//!   structure, `record[queueSize=N,pipeline=true]`). Its events ([`ChannelEvent`]:
//!   `Connected`, `Disconnected` with time, `Update`, `SubscriptionError`) go to an
//!   [`EventQueue`] of its own or one shared by many channels (keyed), drained by an
//!   [`EventReceiver`]. Nothing is dropped silently: a full queue waits
//!   ([`Overflow::Backpressure`]) or drops and counts ([`Channel::dropped`]); updates the
//!   server squashed (overrun bitset) are counted ([`Channel::overruns`]).
//! - A monitor keeps one value per subscription ([`MonitorData`], shared with the consumer
//!   through an `Arc`): each partial update (changed bitset) is decoded in place into it, so
//!   a consumer that lets go of an update before the next one makes updates allocation-free.
//! - The codec: [`types`] (type descriptions, [`FieldDesc`], and the per-connection
//!   introspection cache, [`TypeCache`]), [`value`] ([`PvValue`], full and partial decoding,
//!   [`BitSet`], encoding, [`Pretty`] printing), [`wire`] (the bounds-checked reader and the
//!   writer, both byte orders), [`proto`] (headers, messages, segmentation flags), [`nt`]
//!   (normative-type members: alarm, timeStamp, display, enum). None of it panics,
//!   allocates beyond a bound proportional to the message, or loops, whatever the bytes
//!   (proptested; a node budget per message covers cached types referenced many times).
//!
//! References: the pvAccess protocol specification, pvData serialization and the
//! normative-types documents; pvxs and pvAccessJava were read for understanding.
//!
//! ```no_run
//! use archiver_pva::{ChannelEvent, Client, ClientConfig, PvRequest};
//! # async fn demo() -> Result<(), archiver_pva::PvaError> {
//! let client = Client::new(ClientConfig::from_env()?).await?;
//! let (ch, events) = client.channel("SIM:AI:0")?;
//! ch.subscribe(PvRequest::parse("field(value,alarm,timeStamp)")?);
//! while let Some(ev) = events.recv().await {
//!     if let ChannelEvent::Update { data, .. } = ev.kind {
//!         println!("{}", archiver_pva::Pretty { desc: &data.desc, value: &data.value });
//!     }
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

#[cfg(feature = "client")]
pub mod beacon;
#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
pub mod config;
pub mod error;
#[cfg(feature = "client")]
pub mod event;
pub mod nt;
pub mod proto;
pub mod types;
pub mod value;
pub mod wire;

#[cfg(feature = "client")]
pub use client::{Channel, Client, GetResult};
#[cfg(feature = "client")]
pub use config::ClientConfig;
pub use error::{DecodeError, PvaError};
#[cfg(feature = "client")]
pub use event::{
    ChannelEvent, Event, EventQueue, EventReceiver, MonitorData, Overflow, SubscriptionId,
    event_queue,
};
pub use proto::PvRequest;
pub use types::{FieldDesc, ScalarType, StructDesc, TypeCache};
pub use value::{BitSet, Pretty, PvValue};
