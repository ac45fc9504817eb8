//! The channel handle: one PV name, its connection state, subscriptions and requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::client::{self, Cmd};
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
    pub conn: ConnCell,
}

/// A channel's connection facts with a wake-up for waiters. (A `tokio::sync::watch`
/// channel did the same for ≈ 350 bytes more per channel; an archiver holds one channel
/// per PV and archive field, tens of thousands of them. The `Notify` is per channel, not
/// per client: a client-wide one would wake every waiter at every connect of any channel,
/// quadratic work while thousands of PVs connect.)
#[derive(Debug, Default)]
pub(crate) struct ConnCell {
    info: std::sync::Mutex<Option<ConnInfo>>,
    changed: Notify,
}

impl ConnCell {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ConnInfo>> {
        // a poisoned lock only means a holder panicked; the facts stay valid
        self.info.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The facts now (`None` = not connected).
    pub fn get(&self) -> Option<ConnInfo> {
        *self.lock()
    }

    /// Replaces the facts and wakes every waiter.
    pub fn set(&self, info: Option<ConnInfo>) {
        *self.lock() = info;
        self.changed.notify_waiters();
    }

    /// Changes the access rights of a connected channel.
    pub fn set_access(&self, access: AccessRights) {
        if let Some(c) = self.lock().as_mut() {
            c.access = access;
        }
        self.changed.notify_waiters();
    }

    /// Waits until connected.
    async fn connected(&self) -> ConnInfo {
        loop {
            // Created before the check: `notify_waiters` wakes every `Notified` that
            // exists when it is called, so a `set` between the check and the await is not
            // missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(i) = self.get() {
                return i;
            }
            notified.await;
        }
    }
}

/// A channel to one PV. Dropping it clears the channel on the server and cancels its
/// subscriptions. Events (connect, disconnect, access rights, values) go to the queue
/// the channel was created with.
#[derive(Debug)]
pub struct Channel {
    pub(crate) shared: Arc<ChannelShared>,
    pub(crate) client: Arc<client::Inner>,
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
        self.shared.conn.get()
    }

    /// Values of this channel dropped because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits until the channel is connected; [`CaError::NotFound`] (naming the searched
    /// addresses) after `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<ConnInfo, CaError> {
        match tokio::time::timeout(timeout, self.shared.conn.connected()).await {
            Ok(i) => Ok(i),
            Err(_) => Err(CaError::NotFound {
                name: self.shared.name.clone(),
                timeout,
                addrs: self.client.search_addrs_text.to_string(),
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
        let id = SubscriptionId(self.client.next_sub.fetch_add(1, Ordering::Relaxed));
        self.client
            .cmd
            .send(Cmd::Subscribe {
                cid: self.shared.cid,
                spec: SubSpec { id, sub },
            })
            .map_err(|_| CaError::Shutdown)?;
        Ok(id)
    }

    /// Cancels a monitor (EVENT_CANCEL).
    pub fn unsubscribe(&self, id: SubscriptionId) {
        let _ = self.client.cmd.send(Cmd::Unsubscribe {
            cid: self.shared.cid,
            id,
        });
    }

    /// READ_NOTIFY of `request` (count as for [`Subscription::count`]).
    pub async fn read(&self, request: DbrRequest, count: Option<u32>) -> Result<Dbr, CaError> {
        let (tx, rx) = oneshot::channel();
        self.client
            .cmd
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
        self.client
            .cmd
            .send(Cmd::Write {
                cid: self.shared.cid,
                value,
                reply: tx,
            })
            .map_err(|_| CaError::Shutdown)?;
        self.await_reply(rx, "write").await?
    }

    async fn await_reply<T>(&self, rx: oneshot::Receiver<T>, what: &str) -> Result<T, CaError> {
        match tokio::time::timeout(self.client.cfg.request_timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(CaError::Disconnected(self.shared.name.clone())),
            Err(_) => Err(CaError::Timeout {
                what: format!("{what} of {}", self.shared.name),
                timeout: self.client.cfg.request_timeout,
            }),
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let _ = self.client.cmd.send(Cmd::Clear {
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

    fn info() -> ConnInfo {
        ConnInfo {
            native: DbfType::Double,
            count: 1,
            server: "127.0.0.1:5064".parse().unwrap(),
            access: AccessRights::from_bits(3),
            server_minor: 13,
        }
    }

    /// A `set` racing with a waiter on another thread is never missed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conn_cell_set_racing_a_waiter_is_not_missed() {
        for _ in 0..2000 {
            let cell = Arc::new(ConnCell::default());
            let waiter = {
                let cell = cell.clone();
                tokio::spawn(async move { cell.connected().await })
            };
            let setter = {
                let cell = cell.clone();
                tokio::spawn(async move { cell.set(Some(info())) })
            };
            setter.await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("a set racing the waiter was missed")
                .unwrap();
            assert_eq!(got, info());
        }
    }

    #[tokio::test]
    async fn conn_cell_wakes_waiters_of_its_own_channel_only() {
        let (a, b) = (Arc::new(ConnCell::default()), Arc::new(ConnCell::default()));
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.connected().await })
        };
        tokio::task::yield_now().await;
        // Another channel connects: `a`'s waiter keeps waiting.
        b.set(Some(info()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        a.set(Some(info()));
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(got, info());
        // Access changes apply to a connected channel only.
        a.set_access(AccessRights::from_bits(1));
        assert_eq!(a.get().map(|i| i.access), Some(AccessRights::from_bits(1)));
        a.set(None);
        a.set_access(AccessRights::from_bits(3));
        assert_eq!(a.get(), None);
        // Already connected: no wait at all.
        b.set(Some(info()));
        assert_eq!(
            tokio::time::timeout(Duration::from_millis(100), b.connected())
                .await
                .ok(),
            Some(info())
        );
    }
}
