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
//!
//! Circuits deliver in batches: all the monitor updates decoded from one socket read go
//! in under one lock, and the consumer is woken at most once per batch, only when the
//! queue was empty (otherwise it has not finished taking and will find them). When the
//! queue is empty the batch's buffer simply becomes the queue's, and a consumer that
//! takes everything with an empty buffer trades it for the queue's, so events are
//! usually not copied on the way. Under backpressure a circuit registers a waiter only
//! when the queue is actually full.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::event::{ChannelEvent, Event};

/// How many access-rights and subscription-error events a queue holds at most besides
/// its values (a hostile server could send them without end). Connect and disconnect
/// events are never dropped: an engine must see every channel connect, and their number
/// is bounded by the channels times the circuits that can be opened and lost.
pub const STATE_SLACK: usize = 4096;

/// True for the state events that may be dropped (and counted) when [`STATE_SLACK`] of
/// them are queued.
fn is_floodable(kind: &ChannelEvent) -> bool {
    matches!(
        kind,
        ChannelEvent::AccessRights(_) | ChannelEvent::SubscriptionError { .. }
    )
}

/// Buffers (a circuit's batch, a consumer's empty buffer) are traded with the queue's
/// instead of moving the events only if their capacity is at least this...
const SWAP_MIN: usize = 64;
/// ...and at most this (so a buffer grown large in a burst stays with the queue, as it
/// would without trading, rather than circulating).
const SWAP_MAX: usize = 1 << 16;

/// Whether buffers of these capacities may be traded.
fn tradable(a: usize, b: usize) -> bool {
    (SWAP_MIN..=SWAP_MAX).contains(&a) && b <= SWAP_MAX
}

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

impl EventQueue {
    /// The overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.inner.overflow
    }

    /// Values dropped by this queue so far (all channels).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Identifies the queue among the live ones (equal for handles on the same queue).
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// Enqueues a state event. Refused (and counted as dropped) only when state events
    /// alone exceed [`STATE_SLACK`] beyond the value capacity, which takes a server
    /// flooding access-rights changes or errors faster than the consumer reads.
    pub(crate) fn push_state(&self, key: u64, kind: ChannelEvent) {
        let was_empty = {
            let mut st = self.inner.lock();
            if is_floodable(&kind) && st.items.len() - st.values >= STATE_SLACK {
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

    /// Moves events from the front of `batch` into the queue, in order, under one lock,
    /// and wakes the consumer at most once (only if the queue was empty, i.e. it may be
    /// waiting). State events (anything but [`ChannelEvent::Value`]) always go in (see
    /// [`Self::push_state`]). A value that finds the queue full is, with
    /// [`Overflow::DropNewest`], dropped, counted on the queue and passed to `on_drop`
    /// (which counts it on its channel); with [`Overflow::Backpressure`] it stops the
    /// batch: it and everything after it stay in `batch` and `false` is returned (wait
    /// for room with [`Self::send_batch`]). Returns `true` when `batch` is empty.
    pub(crate) fn push_batch(
        &self,
        batch: &mut Vec<Event>,
        mut on_drop: impl FnMut(&Event),
    ) -> bool {
        if batch.is_empty() {
            return true;
        }
        let cap = self.inner.capacity;
        let values = batch.iter().filter(|ev| is_value(ev)).count();
        let fits = values <= cap && batch.len() - values <= STATE_SLACK;
        let (was_empty, pushed) = {
            let mut guard = self.inner.lock();
            let st = &mut *guard;
            let was_empty = st.items.is_empty();
            if was_empty && fits && tradable(batch.capacity(), st.items.capacity()) {
                // the consumer has taken everything: the batch becomes the queue's
                // buffer and the queue's empty buffer becomes the next batch
                let spare = std::mem::replace(&mut st.items, VecDeque::from(std::mem::take(batch)));
                st.values = values;
                drop(guard);
                *batch = Vec::from(spare);
                self.inner.readable.notify_one();
                return true;
            }
            let before = st.items.len();
            let cut = match self.inner.overflow {
                Overflow::DropNewest => batch.len(),
                Overflow::Backpressure => {
                    // up to the first value that finds no room; it and the rest wait
                    let mut room = cap.saturating_sub(st.values);
                    batch
                        .iter()
                        .position(|ev| {
                            if !is_value(ev) {
                                false
                            } else if room == 0 {
                                true
                            } else {
                                room -= 1;
                                false
                            }
                        })
                        .unwrap_or(batch.len())
                }
            };
            st.items.reserve(cut);
            let mut dropped = 0u64;
            for ev in batch.drain(..cut) {
                if is_value(&ev) {
                    if st.values >= cap {
                        // DropNewest only: Backpressure stopped before this one
                        dropped += 1;
                        on_drop(&ev);
                        continue;
                    }
                    st.values += 1;
                } else if is_floodable(&ev.kind) && st.items.len() - st.values >= STATE_SLACK {
                    dropped += 1;
                    continue;
                }
                st.items.push_back(ev);
            }
            if dropped > 0 {
                self.inner.dropped.fetch_add(dropped, Ordering::Relaxed);
            }
            (was_empty, st.items.len() > before)
        };
        if was_empty && pushed {
            self.inner.readable.notify_one();
        }
        batch.is_empty()
    }

    /// [`Self::push_batch`] that, under backpressure, waits until the whole batch is in.
    /// A waiter is registered only when the queue is actually full.
    pub(crate) async fn send_batch(&self, batch: &mut Vec<Event>, mut on_drop: impl FnMut(&Event)) {
        while !self.push_batch(batch, &mut on_drop) {
            let notified = self.inner.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // room may have been made between the failed push and the registration
            if self.push_batch(batch, &mut on_drop) {
                return;
            }
            notified.await;
        }
    }

    /// Offers one value and, under backpressure, waits until it fits; on DropNewest
    /// overflow increments `counter`.
    #[cfg(test)]
    pub(crate) async fn send_value(&self, ev: Event, counter: &AtomicU64) {
        let mut one = vec![ev];
        self.send_batch(&mut one, |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        })
        .await;
    }
}

fn is_value(ev: &Event) -> bool {
    matches!(ev.kind, ChannelEvent::Value { .. })
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
        if n == 0 {
            return 0;
        }
        let was_full = st.values >= self.inner.capacity;
        if n == st.items.len() && out.is_empty() && tradable(out.capacity(), st.items.capacity()) {
            // everything fits: trade buffers instead of moving the events under the
            // lock (a batch consumer's buffer and the queue's circulate between them)
            let spare = VecDeque::from(std::mem::take(out));
            let full = std::mem::replace(&mut st.items, spare);
            st.values = 0;
            drop(guard);
            if was_full {
                self.inner.writable.notify_waiters();
            }
            *out = Vec::from(full);
            return n;
        }
        let mut taken_values = 0;
        for ev in st.items.drain(..n) {
            if is_value(&ev) {
                taken_values += 1;
            }
            out.push(ev);
        }
        st.values -= taken_values;
        let was_full = was_full && st.values < self.inner.capacity;
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

    /// A bulk archive connects thousands of channels at once: every connect event must
    /// reach a consumer that starts late; only floodable events are capped.
    #[test]
    fn connect_events_are_never_dropped_floods_are_capped() {
        let (q, rx) = event_queue(16, Overflow::Backpressure);
        let n = 3 * STATE_SLACK as u64;
        for key in 0..n {
            q.push_state(
                key,
                ChannelEvent::Disconnected {
                    at: Timestamp::default(),
                },
            );
        }
        let mut batch: Vec<Event> = (0..n)
            .map(|key| Event {
                key,
                kind: ChannelEvent::Disconnected {
                    at: Timestamp::default(),
                },
            })
            .collect();
        assert!(q.push_batch(&mut batch, |_| {}));
        assert_eq!(rx.dropped(), 0);
        for key in 0..n {
            q.push_state(
                key,
                ChannelEvent::AccessRights(crate::status::AccessRights::from_bits(3)),
            );
        }
        let mut out = Vec::new();
        let got = rx.try_recv_many(&mut out, usize::MAX);
        let connects = out
            .iter()
            .filter(|e| matches!(e.kind, ChannelEvent::Disconnected { .. }))
            .count();
        assert_eq!(connects as u64, 2 * n);
        assert!(got as u64 <= 2 * n + STATE_SLACK as u64);
        assert!(
            rx.dropped() > 0,
            "the access-rights flood is capped and counted"
        );
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

    fn state(key: u64) -> Event {
        Event {
            key,
            kind: ChannelEvent::Disconnected {
                at: Timestamp::default(),
            },
        }
    }

    /// Values 0..n, with a state event (key 100 + i) after every fifth value.
    fn mixed_batch(n: i32) -> Vec<Event> {
        let mut b = Vec::new();
        for i in 0..n {
            b.push(val(i));
            if i % 5 == 4 {
                b.push(state(100 + i as u64));
            }
        }
        b
    }

    #[tokio::test]
    async fn backpressure_batch_larger_than_room_waits_and_loses_nothing() {
        let (q, rx) = event_queue(8, Overflow::Backpressure);
        // 3 values already queued: room for 5
        let pre = vec![val(-3), val(-2), val(-1)];
        assert!(q.push_batch(&mut pre.clone(), |_| panic!("no drop")));
        let mut batch = mixed_batch(50);
        let expected: Vec<Event> = pre.into_iter().chain(batch.clone()).collect();
        // a first push stops at the first value without room, keeping the rest in order
        assert!(!q.push_batch(&mut batch, |_| panic!("no drop under backpressure")));
        assert_eq!(batch[0], val(5), "stopped at the 6th value");
        assert_eq!(rx.len(), 3 + 5 + 1, "the state event after value 4 went in");
        let producer = tokio::spawn(async move {
            q.send_batch(&mut batch, |_| panic!("no drop under backpressure"))
                .await;
            assert!(batch.is_empty());
        });
        let mut got = Vec::new();
        let mut buf = Vec::with_capacity(256);
        loop {
            buf.clear();
            let n = tokio::time::timeout(Duration::from_secs(5), rx.recv_many(&mut buf, 4))
                .await
                .expect("no hang");
            if n == 0 {
                break;
            }
            got.append(&mut buf);
        }
        producer.await.expect("producer");
        assert_eq!(got, expected);
        assert_eq!(rx.dropped(), 0);
    }

    #[tokio::test]
    async fn drop_newest_batch_counts_exactly_and_keeps_state_events() {
        let (q, rx) = event_queue(10, Overflow::DropNewest);
        let mut pre = vec![val(-2), val(-1)];
        assert!(q.push_batch(&mut pre, |_| panic!("room")));
        // 30 values (8 fit) and 6 state events
        let mut batch = mixed_batch(30);
        let mut dropped_values = Vec::new();
        assert!(q.push_batch(&mut batch, |ev| dropped_values.push(ev.clone())));
        assert!(batch.is_empty());
        assert_eq!(dropped_values, (8..30).map(val).collect::<Vec<_>>());
        assert_eq!(rx.dropped(), 22);
        assert_eq!(q.dropped(), 22);
        let mut out = Vec::with_capacity(1000);
        assert_eq!(rx.try_recv_many(&mut out, 1000), 2 + 8 + 6);
        let values: Vec<Event> = out.iter().filter(|e| is_value(e)).cloned().collect();
        assert_eq!(values, (-2..8).map(val).collect::<Vec<_>>());
        let states: Vec<u64> = out.iter().filter(|e| !is_value(e)).map(|e| e.key).collect();
        assert_eq!(states, vec![104, 109, 114, 119, 124, 129]);
        // in order: value 4, then its state event
        assert_eq!(out[2 + 5], state(104));
        // taking everything made room again (the buffers were traded)
        let mut again = (100..110).map(val).collect::<Vec<_>>();
        assert!(q.push_batch(&mut again, |_| panic!("room after take")));
        assert_eq!(rx.len(), 10);
    }

    #[tokio::test]
    async fn take_by_moving_and_by_trading_buffers_keep_the_value_count() {
        let (q, rx) = event_queue(4, Overflow::DropNewest);
        let c = AtomicU64::new(0);
        for round in 0..3 {
            let mut b = mixed_batch(6);
            q.push_batch(&mut b, |_| {
                c.fetch_add(1, Ordering::Relaxed);
            });
            // a small buffer and a partial take move the events; a large empty one trades
            let mut small = Vec::new();
            assert_eq!(rx.try_recv_many(&mut small, 2), 2);
            let mut large = Vec::with_capacity(SWAP_MIN);
            assert_eq!(rx.try_recv_many(&mut large, 100), 3, "round {round}");
            assert_eq!(small[0], val(0));
            assert_eq!(large[0], val(2));
            assert_eq!(large[1], val(3));
            assert_eq!(large[2], state(104));
            assert!(rx.is_empty());
        }
        assert_eq!(c.load(Ordering::Relaxed), 3 * 2);
        assert_eq!(rx.dropped(), 3 * 2);
    }

    #[tokio::test]
    async fn batch_into_an_empty_queue_trades_buffers_and_counts_its_values() {
        for overflow in [Overflow::DropNewest, Overflow::Backpressure] {
            let (q, rx) = event_queue(12, overflow);
            // into the empty queue whole (10 values, 2 state events): no copy
            let mut batch = Vec::with_capacity(SWAP_MIN);
            batch.extend(mixed_batch(10));
            assert!(q.push_batch(&mut batch, |_| panic!("room")));
            assert!(batch.is_empty());
            assert_eq!(rx.len(), 12);
            // the queue counted 10 values: 2 more fit, the third does not
            batch.extend(mixed_batch(3));
            let mut dropped = 0;
            let done = q.push_batch(&mut batch, |_| dropped += 1);
            match overflow {
                Overflow::DropNewest => {
                    assert!(done);
                    assert_eq!((dropped, rx.dropped()), (1, 1));
                }
                Overflow::Backpressure => {
                    assert!(!done);
                    assert_eq!(batch, vec![val(2)]);
                }
            }
            let mut out = Vec::with_capacity(SWAP_MIN);
            assert_eq!(rx.try_recv_many(&mut out, 100), 14);
            assert_eq!(out[..5], (0..5).map(val).collect::<Vec<_>>()[..]);
            assert_eq!(out[5], state(104));
            assert_eq!(out[12..], [val(0), val(1)]);
            // a batch larger than the capacity is not handed over whole
            let mut big = Vec::with_capacity(SWAP_MIN);
            big.extend((0..20).map(val));
            let done = q.push_batch(&mut big, |_| {});
            assert_eq!(rx.len(), 12);
            assert_eq!(done, overflow == Overflow::DropNewest);
        }
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
