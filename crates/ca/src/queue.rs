//! The bounded event queue between circuits and consumers.
//!
//! One queue may serve one channel ([`crate::Client::channel`]) or many
//! ([`crate::Client::create_channel`] with a shared [`EventQueue`]); each event carries the
//! channel's key. Only **values** count against the capacity: connection, disconnection
//! and access-rights events are always enqueued (they are rare and must never be lost).
//! When the values reach capacity the queue either makes the circuit wait
//! ([`Overflow::Backpressure`]: the circuit stops reading its socket, so TCP flow control
//! slows the server) or drops the new value and counts it on the channel
//! ([`Overflow::DropNewest`]). Nothing is dropped silently.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::event::{ChannelEvent, Event};

/// How many state events (connect, disconnect, access rights, errors) a queue holds at
/// most besides its values.
pub const STATE_SLACK: usize = 4096;

/// What happens to a value when the queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Stall the circuit until the consumer makes room (no loss on our side; the server
    /// may coalesce updates as it does for any slow client).
    Backpressure,
    /// Drop the incoming value and count it on its channel.
    DropNewest,
}

struct State {
    items: VecDeque<Event>,
    values: usize,
}

struct Inner {
    state: Mutex<State>,
    readable: Notify,
    writable: Notify,
    capacity: usize,
    overflow: Overflow,
    senders: AtomicUsize,
    dropped: AtomicU64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // a poisoned lock only means a consumer panicked; the queue data stays valid
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates a queue holding up to `capacity` values; returns the sending side (give it to
/// [`crate::Client::create_channel`]) and the receiving side.
pub fn event_queue(capacity: usize, overflow: Overflow) -> (EventQueue, EventReceiver) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity.min(4096)),
            values: 0,
        }),
        readable: Notify::new(),
        writable: Notify::new(),
        capacity: capacity.max(1),
        overflow,
        senders: AtomicUsize::new(1),
        dropped: AtomicU64::new(0),
    });
    (
        EventQueue {
            inner: inner.clone(),
        },
        EventReceiver { inner },
    )
}

/// The sending side of a queue. Cloneable; the receiver ends when every clone (including
/// those held by channels) is gone.
pub struct EventQueue {
    inner: Arc<Inner>,
}

impl Clone for EventQueue {
    fn clone(&self) -> Self {
        self.inner.senders.fetch_add(1, Ordering::Relaxed);
        EventQueue {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for EventQueue {
    fn drop(&mut self) {
        if self.inner.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.readable.notify_one();
        }
    }
}

impl std::fmt::Debug for EventQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventQueue")
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

/// Result of offering a value.
pub(crate) enum Push {
    /// Enqueued.
    Done,
    /// Dropped and counted (DropNewest).
    Dropped,
    /// Full; wait for [`EventQueue::writable`] and retry (Backpressure).
    Full(Event),
}

impl EventQueue {
    /// The overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.inner.overflow
    }

    /// Values dropped by this queue so far (all channels).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Enqueues a state event. Refused (and counted as dropped) only when state events
    /// alone exceed [`STATE_SLACK`] beyond the value capacity, which takes a server
    /// flooding access-rights changes or errors faster than the consumer reads.
    pub(crate) fn push_state(&self, key: u64, kind: ChannelEvent) {
        let was_empty = {
            let mut st = self.inner.lock();
            if st.items.len() - st.values >= STATE_SLACK {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let e = st.items.is_empty();
            st.items.push_back(Event { key, kind });
            e
        };
        if was_empty {
            self.inner.readable.notify_one();
        }
    }

    /// Offers a value event; on DropNewest overflow increments `counter`.
    pub(crate) fn push_value(&self, ev: Event, counter: &AtomicU64) -> Push {
        let was_empty = {
            let mut st = self.inner.lock();
            if st.values >= self.inner.capacity {
                drop(st);
                return match self.inner.overflow {
                    Overflow::DropNewest => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                        Push::Dropped
                    }
                    Overflow::Backpressure => Push::Full(ev),
                };
            }
            let e = st.items.is_empty();
            st.items.push_back(ev);
            st.values += 1;
            e
        };
        if was_empty {
            self.inner.readable.notify_one();
        }
        Push::Done
    }

    /// Offers a value and, under backpressure, waits until it fits.
    pub(crate) async fn send_value(&self, ev: Event, counter: &AtomicU64) {
        let mut ev = ev;
        loop {
            let notified = self.inner.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.push_value(ev, counter) {
                Push::Done | Push::Dropped => return,
                Push::Full(back) => ev = back,
            }
            if self.inner.senders.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// The receiving side of a queue.
pub struct EventReceiver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReceiver")
            .field("len", &self.len())
            .finish()
    }
}

impl EventReceiver {
    fn take(&self, out: &mut Vec<Event>, max: usize) -> usize {
        let mut guard = self.inner.lock();
        let st = &mut *guard;
        let n = st.items.len().min(max);
        let before_values = st.values;
        let mut taken_values = 0;
        for ev in st.items.drain(..n) {
            if matches!(ev.kind, ChannelEvent::Value { .. }) {
                taken_values += 1;
            }
            out.push(ev);
        }
        st.values -= taken_values;
        let was_full = before_values >= self.inner.capacity && st.values < self.inner.capacity;
        drop(guard);
        if was_full {
            self.inner.writable.notify_waiters();
        }
        n
    }

    /// Takes what is queued now (up to `max`) without waiting.
    pub fn try_recv_many(&self, out: &mut Vec<Event>, max: usize) -> usize {
        self.take(out, max)
    }

    /// Waits for at least one event, then appends up to `max` to `out`. Returns 0 when
    /// every sender is gone and the queue is empty.
    pub async fn recv_many(&self, out: &mut Vec<Event>, max: usize) -> usize {
        loop {
            let n = self.take(out, max.max(1));
            if n > 0 {
                return n;
            }
            if self.inner.senders.load(Ordering::Acquire) == 0 {
                // a sender may have pushed just before leaving
                return self.take(out, max.max(1));
            }
            self.inner.readable.notified().await;
        }
    }

    /// Waits for the next event; `None` when every sender is gone and the queue is empty.
    pub async fn recv(&self) -> Option<Event> {
        let mut v = Vec::with_capacity(1);
        self.recv_many(&mut v, 1).await;
        v.pop()
    }

    /// Events queued now.
    pub fn len(&self) -> usize {
        self.inner.lock().items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values dropped by this queue so far (all channels).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SubscriptionId;
    use crate::value::{Dbr, Timestamp, Value};
    use std::time::Duration;

    fn val(i: i32) -> Event {
        Event {
            key: 1,
            kind: ChannelEvent::Value {
                sub: SubscriptionId(1),
                data: Dbr::plain(Value::Long(i)),
            },
        }
    }

    #[tokio::test]
    async fn drop_newest_counts_and_keeps_state_events() {
        let (q, rx) = event_queue(2, Overflow::DropNewest);
        let c = AtomicU64::new(0);
        for i in 0..5 {
            q.send_value(val(i), &c).await;
        }
        q.push_state(
            1,
            ChannelEvent::Disconnected {
                at: Timestamp::default(),
            },
        );
        assert_eq!(c.load(Ordering::Relaxed), 3);
        assert_eq!(rx.dropped(), 3);
        let mut out = Vec::new();
        assert_eq!(rx.try_recv_many(&mut out, 10), 3);
        assert_eq!(out[0], val(0));
        assert_eq!(out[1], val(1));
        assert!(matches!(out[2].kind, ChannelEvent::Disconnected { .. }));
    }

    #[tokio::test]
    async fn backpressure_waits_for_room() {
        let (q, rx) = event_queue(1, Overflow::Backpressure);
        let c = Arc::new(AtomicU64::new(0));
        let c2 = c.clone();
        let producer = tokio::spawn(async move {
            for i in 0..100 {
                q.send_value(val(i), &c2).await;
            }
        });
        let mut got = Vec::new();
        while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no hang")
        {
            got.push(ev);
        }
        producer.await.expect("producer");
        assert_eq!(got.len(), 100);
        assert_eq!(got[99], val(99));
        assert_eq!(c.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn receiver_ends_when_senders_gone() {
        let (q, rx) = event_queue(4, Overflow::DropNewest);
        let q2 = q.clone();
        drop(q);
        q2.push_state(
            7,
            ChannelEvent::Disconnected {
                at: Timestamp::default(),
            },
        );
        drop(q2);
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_none());
    }
}
