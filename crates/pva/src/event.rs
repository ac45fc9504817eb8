//! What a channel reports ([`ChannelEvent`]) and the bounded queue ([`EventQueue`] /
//! [`EventReceiver`]) that carries it to a consumer, one queue per channel or shared by
//! many channels (each event carries its channel's key).
//!
//! Only updates count against the capacity; connects, disconnects and subscription errors
//! are always enqueued (their number is bounded by channels × connections). A full queue
//! either makes the connection task wait ([`Overflow::Backpressure`]: it stops reading its
//! socket, TCP slows the server, and a pvAccess server then squashes updates, which the
//! overrun bitset reports) or drops the update and counts it on its channel
//! ([`Overflow::DropNewest`]). Nothing is dropped silently.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::types::FieldDesc;
use crate::value::{BitSet, PvValue};

/// Identifies a subscription of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u32);

/// A monitor's current state: the full value after the latest update, and which fields
/// that update changed and which the server squashed (overran) before sending it.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitorData {
    /// The type (from the MONITOR INIT reply).
    pub desc: Arc<FieldDesc>,
    /// The whole value, partial updates applied.
    pub value: PvValue,
    /// Fields changed by this update (bit offsets as in [`crate::value`]).
    pub changed: BitSet,
    /// Fields that changed more than once since the previous update (the server dropped
    /// the intermediate values).
    pub overrun: BitSet,
}

/// One event on a channel's stream.
#[derive(Clone, Debug, PartialEq)]
pub enum ChannelEvent {
    /// The channel is connected (first time or after a reconnect).
    Connected {
        /// The server's TCP address.
        server: SocketAddr,
        /// When the client noticed.
        at: SystemTime,
    },
    /// The channel lost its server; it is searched for again automatically and its
    /// subscriptions are re-created on the next connect.
    Disconnected {
        /// When the client noticed.
        at: SystemTime,
    },
    /// A monitor update. The data is shared with the connection: a consumer that drops it
    /// before the next update lets the next one be decoded in place, without allocating.
    Update {
        /// The subscription.
        sub: SubscriptionId,
        /// The monitor's state after this update.
        data: Arc<MonitorData>,
    },
    /// The server refused or ended a subscription.
    SubscriptionError {
        /// The subscription.
        sub: SubscriptionId,
        /// The server's message.
        message: String,
    },
}

/// An event tagged with its channel's key.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The key given to [`crate::Client::create_channel`] (0 for [`crate::Client::channel`]).
    pub key: u64,
    /// What happened.
    pub kind: ChannelEvent,
}

/// What happens to an update when the queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// The connection waits for room.
    Backpressure,
    /// The update is dropped and counted on its channel.
    DropNewest,
}

struct Shared {
    items: Mutex<(VecDeque<Event>, usize)>,
    readable: Notify,
    writable: Notify,
    capacity: usize,
    overflow: Overflow,
    senders: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, (VecDeque<Event>, usize)> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates a queue of `capacity` updates.
pub fn event_queue(capacity: usize, overflow: Overflow) -> (EventQueue, EventReceiver) {
    let s = Arc::new(Shared {
        items: Mutex::new((VecDeque::new(), 0)),
        readable: Notify::new(),
        writable: Notify::new(),
        capacity: capacity.max(1),
        overflow,
        senders: AtomicUsize::new(1),
    });
    (EventQueue { s: s.clone() }, EventReceiver { s })
}

/// The sending side (held by channels).
pub struct EventQueue {
    s: Arc<Shared>,
}

impl std::fmt::Debug for EventQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventQueue(capacity {})", self.s.capacity)
    }
}

impl Clone for EventQueue {
    fn clone(&self) -> Self {
        self.s.senders.fetch_add(1, Ordering::Relaxed);
        EventQueue { s: self.s.clone() }
    }
}

impl Drop for EventQueue {
    fn drop(&mut self) {
        if self.s.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.s.readable.notify_one();
        }
    }
}

impl EventQueue {
    /// Enqueues a state event (never dropped).
    pub(crate) fn push_state(&self, ev: Event) {
        let was_empty = {
            let mut g = self.s.lock();
            g.0.push_back(ev);
            g.0.len() == 1
        };
        if was_empty {
            self.s.readable.notify_one();
        }
    }

    /// Enqueues an update, waiting for room or dropping it (counted in `dropped`) as the
    /// overflow policy says.
    pub(crate) async fn push_update(&self, ev: Event, dropped: &AtomicU64) {
        loop {
            let waiter = self.s.writable.notified();
            tokio::pin!(waiter);
            waiter.as_mut().enable();
            {
                let mut g = self.s.lock();
                if g.1 < self.s.capacity {
                    g.0.push_back(ev);
                    g.1 += 1;
                    let first = g.0.len() == 1;
                    drop(g);
                    if first {
                        self.s.readable.notify_one();
                    }
                    return;
                }
                if self.s.overflow == Overflow::DropNewest {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            waiter.await;
        }
    }
}

/// The receiving side.
pub struct EventReceiver {
    s: Arc<Shared>,
}

impl EventReceiver {
    /// Moves up to `max` events into `out` without waiting; returns how many.
    pub fn try_recv_many(&self, out: &mut Vec<Event>, max: usize) -> usize {
        let mut g = self.s.lock();
        let n = g.0.len().min(max);
        let mut updates = 0;
        for ev in g.0.drain(..n) {
            if matches!(ev.kind, ChannelEvent::Update { .. }) {
                updates += 1;
            }
            out.push(ev);
        }
        g.1 -= updates;
        drop(g);
        if updates > 0 {
            self.s.writable.notify_waiters();
        }
        n
    }

    /// Waits for at least one event and moves up to `max` into `out`; 0 when every sender
    /// is gone and the queue is empty.
    pub async fn recv_many(&self, out: &mut Vec<Event>, max: usize) -> usize {
        loop {
            let waiter = self.s.readable.notified();
            tokio::pin!(waiter);
            waiter.as_mut().enable();
            let n = self.try_recv_many(out, max);
            if n > 0 || self.s.senders.load(Ordering::Acquire) == 0 {
                return n;
            }
            waiter.await;
        }
    }

    /// Waits for the next event; `None` when every sender is gone.
    pub async fn recv(&self) -> Option<Event> {
        let mut v = Vec::with_capacity(1);
        self.recv_many(&mut v, 1).await;
        v.pop()
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.s.lock().0.len()
    }

    /// True when no event waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(key: u64) -> Event {
        let desc = Arc::new(FieldDesc::structure("", vec![]));
        Event {
            key,
            kind: ChannelEvent::Update {
                sub: SubscriptionId(1),
                data: Arc::new(MonitorData {
                    desc,
                    value: PvValue::Structure(vec![]),
                    changed: BitSet::new(),
                    overrun: BitSet::new(),
                }),
            },
        }
    }

    fn state(key: u64) -> Event {
        Event {
            key,
            kind: ChannelEvent::Disconnected {
                at: SystemTime::UNIX_EPOCH,
            },
        }
    }

    #[tokio::test]
    async fn drop_newest_counts_and_state_events_are_never_dropped() {
        let (q, rx) = event_queue(2, Overflow::DropNewest);
        let dropped = AtomicU64::new(0);
        for k in 0..5 {
            q.push_update(update(k), &dropped).await;
        }
        q.push_state(state(9));
        assert_eq!(dropped.load(Ordering::Relaxed), 3);
        let mut out = Vec::new();
        assert_eq!(rx.try_recv_many(&mut out, 100), 3);
        assert_eq!(out.iter().map(|e| e.key).collect::<Vec<_>>(), vec![0, 1, 9]);
        // room again after taking
        q.push_update(update(7), &dropped).await;
        assert_eq!(rx.len(), 1);
        drop(q);
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_none(), "ends when every sender is gone");
    }

    #[tokio::test]
    async fn backpressure_waits_for_room() {
        let (q, rx) = event_queue(1, Overflow::Backpressure);
        let dropped = Arc::new(AtomicU64::new(0));
        q.push_update(update(1), &dropped).await;
        let q2 = q.clone();
        let d2 = dropped.clone();
        let pusher = tokio::spawn(async move { q2.push_update(update(2), &d2).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !pusher.is_finished(),
            "a full queue must make the sender wait"
        );
        assert_eq!(rx.recv().await.map(|e| e.key), Some(1));
        pusher.await.unwrap();
        assert_eq!(rx.recv().await.map(|e| e.key), Some(2));
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
    }
}
