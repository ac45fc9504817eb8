//! Per-PV counters: everything the engine received, stored or dropped, readable at any time
//! without locking (relaxed atomics), cheap to read for all PVs at once.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Live counters of one PV.
#[derive(Debug, Default)]
pub struct Counters {
    /// Monitor updates received from CA.
    pub events_received: AtomicU64,
    /// Samples put into the buffer to be written.
    pub events_stored: AtomicU64,
    /// Samples written to the short-term store.
    pub events_written: AtomicU64,
    /// Dropped: timestamp before 1991, too far in the future or past, or older than the last.
    pub dropped_timestamp: AtomicU64,
    /// Not stored: same timestamp as the last accepted event (a repeat; not an error).
    pub repeated_timestamp: AtomicU64,
    /// Dropped: value of another type than the archived type.
    pub dropped_type_change: AtomicU64,
    /// Dropped: the buffer was full (the oldest sample is dropped).
    pub dropped_buffer_overflow: AtomicU64,
    /// Dropped: a value arrived while the channel's type was not known.
    pub dropped_no_type: AtomicU64,
    /// Dropped by the CA client because the engine fell behind; for a `pva://` PV, also
    /// each update the server reported as overrun (it squashed updates before it).
    pub dropped_by_client: AtomicU64,
    /// Refused by the file writer (not newer than the file's last sample...).
    pub refused_by_writer: AtomicU64,
    /// Disconnects seen.
    pub disconnects: AtomicU64,
    /// Subscription errors reported by the server, and failed metadata reads.
    pub transient_errors: AtomicU64,
    /// Failed writes to storage (the samples are kept and retried).
    pub write_errors: AtomicU64,
    /// Samples dropped by the storage-rate guard (over the PV's bytes per hour).
    pub dropped_rate_limit: AtomicU64,
    /// Epoch seconds of the first event received (0 = none yet).
    pub first_event_secs: AtomicI64,
    /// Epoch seconds (IOC time) of the last event received (0 = none yet).
    pub last_event_secs: AtomicI64,
    /// Epoch seconds of the last disconnect (0 = never).
    pub last_disconnect_secs: AtomicI64,
    /// Bytes of the encoded PlainPB lines put into the buffer (what the stores will hold):
    /// the storage rate of the reports.
    pub bytes_stored: AtomicU64,
    /// Epoch seconds (server clock) when the engine got the PV: its archive request, or
    /// the restore at start-up (Java `connectionRequestMadeEpochSeconds`).
    pub added_secs: AtomicI64,
    /// Epoch seconds (server clock) of the last write of the PV's buffer to the
    /// short-term store (0 = none yet): Java `PVMetrics.lastRotateLogsEpochSeconds`, set by
    /// its `WriterRunnable` ("lastRotateLogs" in getPVStatus, "What did we last push the
    /// data to the short term store?" in getPVDetails).
    pub last_written_secs: AtomicI64,
    /// Epoch seconds of the PV's archive request when it is older than this start (kept
    /// in the catalogue, set by [`crate::Engine::set_requested_at`]); 0: the request is
    /// `added_secs`. See [`CountersSnapshot::request_secs`].
    pub requested_secs: AtomicI64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// See [`Counters::events_received`].
    pub events_received: u64,
    /// See [`Counters::events_stored`].
    pub events_stored: u64,
    /// See [`Counters::events_written`].
    pub events_written: u64,
    /// See [`Counters::dropped_timestamp`].
    pub dropped_timestamp: u64,
    /// See [`Counters::repeated_timestamp`].
    pub repeated_timestamp: u64,
    /// See [`Counters::dropped_type_change`].
    pub dropped_type_change: u64,
    /// See [`Counters::dropped_buffer_overflow`].
    pub dropped_buffer_overflow: u64,
    /// See [`Counters::dropped_no_type`].
    pub dropped_no_type: u64,
    /// See [`Counters::dropped_by_client`].
    pub dropped_by_client: u64,
    /// See [`Counters::refused_by_writer`].
    pub refused_by_writer: u64,
    /// See [`Counters::disconnects`].
    pub disconnects: u64,
    /// See [`Counters::transient_errors`].
    pub transient_errors: u64,
    /// See [`Counters::write_errors`].
    pub write_errors: u64,
    /// See [`Counters::dropped_rate_limit`].
    pub dropped_rate_limit: u64,
    /// See [`Counters::first_event_secs`].
    pub first_event_secs: i64,
    /// See [`Counters::last_event_secs`].
    pub last_event_secs: i64,
    /// See [`Counters::last_disconnect_secs`].
    pub last_disconnect_secs: i64,
    /// See [`Counters::bytes_stored`].
    pub bytes_stored: u64,
    /// See [`Counters::added_secs`].
    pub added_secs: i64,
    /// See [`Counters::last_written_secs`].
    pub last_written_secs: i64,
    /// See [`Counters::requested_secs`].
    pub requested_secs: i64,
}

impl CountersSnapshot {
    /// Epoch seconds when archiving the PV was requested: the first request, kept across
    /// restarts (`getNeverConnectedPVs` `requestTime`), else when the engine got it.
    pub fn request_secs(&self) -> i64 {
        if self.requested_secs != 0 {
            self.requested_secs
        } else {
            self.added_secs
        }
    }

    /// Events lost for any reason the Java appliance counts (Java "How many events lost
    /// totally so far?": wrong time stamp, buffer overflow, type change), plus the events
    /// the client dropped, those that arrived before the type was known, and those the
    /// storage-rate guard dropped.
    pub fn events_lost(&self) -> u64 {
        self.dropped_timestamp
            + self.dropped_buffer_overflow
            + self.dropped_type_change
            + self.dropped_by_client
            + self.dropped_no_type
            + self.dropped_rate_limit
    }

    /// Events received per second over `elapsed_secs` (0 when no time has passed).
    pub fn event_rate(&self, elapsed_secs: i64) -> f64 {
        if elapsed_secs <= 0 {
            0.0
        } else {
            self.events_received as f64 / elapsed_secs as f64
        }
    }

    /// Bytes stored per second over `elapsed_secs` (0 when no time has passed).
    pub fn storage_rate(&self, elapsed_secs: i64) -> f64 {
        if elapsed_secs <= 0 {
            0.0
        } else {
            self.bytes_stored as f64 / elapsed_secs as f64
        }
    }
}

impl Counters {
    /// Adds one to a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// A copy of all counters.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            events_received: self.events_received.load(Relaxed),
            events_stored: self.events_stored.load(Relaxed),
            events_written: self.events_written.load(Relaxed),
            dropped_timestamp: self.dropped_timestamp.load(Relaxed),
            repeated_timestamp: self.repeated_timestamp.load(Relaxed),
            dropped_type_change: self.dropped_type_change.load(Relaxed),
            dropped_buffer_overflow: self.dropped_buffer_overflow.load(Relaxed),
            dropped_no_type: self.dropped_no_type.load(Relaxed),
            dropped_by_client: self.dropped_by_client.load(Relaxed),
            refused_by_writer: self.refused_by_writer.load(Relaxed),
            disconnects: self.disconnects.load(Relaxed),
            transient_errors: self.transient_errors.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
            dropped_rate_limit: self.dropped_rate_limit.load(Relaxed),
            first_event_secs: self.first_event_secs.load(Relaxed),
            last_event_secs: self.last_event_secs.load(Relaxed),
            last_disconnect_secs: self.last_disconnect_secs.load(Relaxed),
            bytes_stored: self.bytes_stored.load(Relaxed),
            added_secs: self.added_secs.load(Relaxed),
            last_written_secs: self.last_written_secs.load(Relaxed),
            requested_secs: self.requested_secs.load(Relaxed),
        }
    }
}

/// Upper bounds (seconds) of the buckets of [`WriteStats`]: from 100 µs (an append to a
/// file in the page cache) to 10 s (a stalled disk).
pub const WRITE_SECONDS_BUCKETS: [f64; 10] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 10.0,
];

/// The writer's flush latency: one observation per PV whose buffer the writer appended to
/// the short-term store (taking the buffer, appending, putting a failed batch back), in a
/// fixed-bucket histogram of relaxed atomics (no lock, no allocation; one observation per
/// PV and write period, not per sample).
#[derive(Debug, Default)]
pub struct WriteStats {
    /// Observations in each bucket of [`WRITE_SECONDS_BUCKETS`] (not cumulative); the last
    /// slot counts those above the last bound.
    buckets: [AtomicU64; WRITE_SECONDS_BUCKETS.len() + 1],
    /// Sum of the observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

/// A copy of [`WriteStats`]: the Prometheus histogram shape.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteStatsSnapshot {
    /// `(upper bound in seconds, observations at most that)`, cumulative, ending with
    /// `(+Inf, count)`.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum_secs: f64,
}

impl WriteStats {
    /// Records one flush of one PV that took `d`.
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = WRITE_SECONDS_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(WRITE_SECONDS_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// A copy, buckets made cumulative.
    pub fn snapshot(&self) -> WriteStatsSnapshot {
        let mut buckets = Vec::with_capacity(self.buckets.len());
        let mut seen = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed);
            let bound = WRITE_SECONDS_BUCKETS
                .get(i)
                .copied()
                .unwrap_or(f64::INFINITY);
            buckets.push((bound, seen));
        }
        WriteStatsSnapshot {
            buckets,
            count: seen,
            sum_secs: self.sum_nanos.load(Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn write_stats_buckets_are_cumulative_and_end_with_the_count() {
        let w = WriteStats::default();
        w.observe(Duration::from_micros(50)); // first bucket
        w.observe(Duration::from_millis(3)); // <= 0.005
        w.observe(Duration::from_secs(20)); // above the last bound
        let s = w.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets.first(), Some(&(0.0001, 1)));
        assert_eq!(s.buckets[3], (0.005, 2));
        assert_eq!(s.buckets[9], (10.0, 2));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 3)));
        assert!((s.sum_secs - 20.00305).abs() < 1e-9, "{}", s.sum_secs);
    }
}
