//! A lean EPICS pvAccess (PVA) client and pvData codec.
//!
//! # Overview
//!
//! - [`types`]: type descriptions ([`FieldDesc`]) and the per-connection introspection
//!   cache ([`TypeCache`]); [`value`]: values ([`PvValue`]), full and bitset-driven partial
//!   decoding in place, [`BitSet`]; [`wire`]: the bounds-checked [`wire::Reader`] /
//!   [`wire::Writer`]. None of them panics, allocates beyond a bound proportional to the
//!   message, or loops on hostile bytes (proptested).
#![deny(missing_docs)]

mod client;
pub mod config;
pub mod error;
pub mod event;
pub mod nt;
pub mod proto;
pub mod types;
pub mod value;
pub mod wire;

pub use client::{Channel, Client, GetResult};
pub use config::ClientConfig;
pub use error::{DecodeError, PvaError};
pub use event::{
    ChannelEvent, Event, EventQueue, EventReceiver, MonitorData, Overflow, SubscriptionId,
    event_queue,
};
pub use proto::PvRequest;
pub use types::{FieldDesc, ScalarType, StructDesc, TypeCache};
pub use value::{BitSet, Pretty, PvValue};
