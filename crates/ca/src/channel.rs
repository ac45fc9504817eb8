//! The channel handle: one PV name, its connection state, subscriptions and requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::client::Cmd;
use crate::config::ClientConfig;
use crate::dbr::{DbfType, DbrClass, DbrType};
use crate::error::CaError;
use crate::event::SubscriptionId;
use crate::queue::EventQueue;
use crate::status::AccessRights;
use crate::value::{Dbr, Value};

/// Monitor mask bits (DBE_*).
pub mod mask {
    /// Value changed beyond the monitor deadband (MDEL).
    pub const DBE_VALUE: u16 = 1;
    /// Value changed beyond the archive deadband (ADEL).
    pub const DBE_LOG: u16 = 2;
    /// Alarm status or severity changed.
    pub const DBE_ALARM: u16 = 4;
    /// Metadata changed.
    pub const DBE_PROPERTY: u16 = 8;
}

/// Which DBR type to request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbrRequest {
    /// This class of the channel's native type (resolved at each connect).
    Native(DbrClass),
    /// Exactly this type (the server converts).
    Exact(DbrType),
}

impl DbrRequest {
    /// Resolves against a native type.
    pub fn resolve(self, native: DbfType) -> DbrType {
        match self {
            DbrRequest::Native(class) => DbrType::new(class, native),
            DbrRequest::Exact(t) => t,
        }
    }
}

/// What to subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The DBR type of the updates.
    pub request: DbrRequest,
    /// Element count: `None` = the native count; `Some(0)` = the current length
    /// (variable-length arrays, servers with minor ≥ 13; else the native count).
    pub count: Option<u32>,
    /// DBE_* mask (see [`mask`]); must not be 0.
    pub mask: u16,
}

impl Subscription {
    /// DBR_TIME of the native type with the native count: what an archiver monitors.
    pub fn time(mask: u16) -> Self {
        Subscription {
            request: DbrRequest::Native(DbrClass::Time),
            count: None,
            mask,
        }
    }
}

/// A subscription as the client keeps it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SubSpec {
    pub id: SubscriptionId,
    pub sub: Subscription,
}

/// Connection facts of a connected channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// Native field type.
    pub native: DbfType,
    /// Native element count.
    pub count: u32,
    /// The server's TCP address.
    pub server: SocketAddr,
    /// Current access rights.
    pub access: AccessRights,
    /// The server's protocol minor version.
    pub server_minor: u16,
}

/// State shared by the channel handle, the client context and the circuit.
#[derive(Debug)]
pub(crate) struct ChannelShared {
    pub name: String,
    pub cid: u32,
    pub key: u64,
    pub queue: EventQueue,
    pub dropped: AtomicU64,
    pub conn: watch::Sender<Option<ConnInfo>>,
}

/// A channel to one PV. Dropping it clears the channel on the server and cancels its
/// subscriptions. Events (connect, disconnect, access rights, values) go to the queue
/// the channel was created with.
#[derive(Debug)]
pub struct Channel {
    pub(crate) shared: Arc<ChannelShared>,
    pub(crate) cmd: mpsc::UnboundedSender<Cmd>,
    pub(crate) cfg: Arc<ClientConfig>,
    pub(crate) search_addrs: Arc<str>,
    pub(crate) next_sub: Arc<std::sync::atomic::AtomicU32>,
}

impl Channel {
    /// The PV name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The key given at creation (carried by every event).
    pub fn key(&self) -> u64 {
        self.shared.key
    }

    /// Connection facts, if connected now.
    pub fn info(&self) -> Option<ConnInfo> {
        *self.shared.conn.borrow()
    }

    /// Values of this channel dropped because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until the channel is connected; [`CaError::NotFound`] (naming the searched
    /// addresses) after `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<ConnInfo, CaError> {
        let mut rx = self.shared.conn.subscribe();
        let wait = async {
            loop {
                if let Some(i) = *rx.borrow_and_update() {
                    return Ok(i);
                }
                if rx.changed().await.is_err() {
                    return Err(CaError::Shutdown);
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(CaError::NotFound {
                name: self.shared.name.clone(),
                timeout,
                addrs: self.search_addrs.to_string(),
            }),
        }
    }

    /// Adds a monitor. It is (re-)established on every connect; updates arrive as
    /// [`crate::ChannelEvent::Value`] with the returned id.
    pub fn subscribe(&self, sub: Subscription) -> Result<SubscriptionId, CaError> {
        if sub.mask == 0 {
            return Err(CaError::InvalidArgument(
                "monitor mask must not be 0 (ECA_BADMASK)".into(),
            ));
        }
        let id = SubscriptionId(self.next_sub.fetch_add(1, Ordering::Relaxed));
        self.cmd
            .send(Cmd::Subscribe {
                cid: self.shared.cid,
                spec: SubSpec { id, sub },
            })
            .map_err(|_| CaError::Shutdown)?;
        Ok(id)
    }

    /// Cancels a monitor (EVENT_CANCEL).
    pub fn unsubscribe(&self, id: SubscriptionId) {
        let _ = self.cmd.send(Cmd::Unsubscribe {
            cid: self.shared.cid,
            id,
        });
    }

    /// READ_NOTIFY of `request` (count as for [`Subscription::count`]).
    pub async fn read(&self, request: DbrRequest, count: Option<u32>) -> Result<Dbr, CaError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Read {
                cid: self.shared.cid,
                request,
                count,
                reply: tx,
            })
            .map_err(|_| CaError::Shutdown)?;
        self.await_reply(rx, "read").await?
    }

    /// Reads DBR_TIME of the native type: value, time stamp, severity, status.
    pub async fn get(&self) -> Result<Dbr, CaError> {
        self.read(DbrRequest::Native(DbrClass::Time), None).await
    }

    /// Reads DBR_CTRL of the native type: value plus units, precision, limits, labels.
    pub async fn get_ctrl(&self) -> Result<Dbr, CaError> {
        self.read(DbrRequest::Native(DbrClass::Ctrl), None).await
    }

    /// WRITE_NOTIFY: writes `value` (converted to the native type) and waits for completion.
    pub async fn write(&self, value: Value) -> Result<(), CaError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Write {
                cid: self.shared.cid,
                value,
                reply: tx,
            })
            .map_err(|_| CaError::Shutdown)?;
        self.await_reply(rx, "write").await?
    }

    async fn await_reply<T>(&self, rx: oneshot::Receiver<T>, what: &str) -> Result<T, CaError> {
        match tokio::time::timeout(self.cfg.request_timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(CaError::Disconnected(self.shared.name.clone())),
            Err(_) => Err(CaError::Timeout {
                what: format!("{what} of {}", self.shared.name),
                timeout: self.cfg.request_timeout,
            }),
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Clear {
            cid: self.shared.cid,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_resolution() {
        assert_eq!(
            DbrRequest::Native(DbrClass::Time).resolve(DbfType::Long),
            DbrType::time(DbfType::Long)
        );
        let exact = DbrType::ctrl(DbfType::Double);
        assert_eq!(DbrRequest::Exact(exact).resolve(DbfType::Short), exact);
        assert_eq!(Subscription::time(6).count, None);
    }
}
