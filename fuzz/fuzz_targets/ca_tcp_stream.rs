//! Arbitrary server bytes on a CA circuit's TCP stream, after the server has created one
//! channel (DBR_DOUBLE, 3 elements) with one DBR_TIME_DOUBLE subscription: the client's
//! message parser (headers, extended headers, every command, monitor updates, read and
//! error replies) never panics, never buffers more than the largest allowed message and
//! the bytes it was given, and queues no more events than the queue's 64 values plus one
//! state event a message (state events are never dropped: the fuzzer's flood of
//! ACCESS_RIGHTS queued one each, no more).
//!
//! Input: 8 bytes where to cut the stream into two reads, then the stream.
#![no_main]

use archiver_ca::fuzzing::{MAX_PAYLOAD, server_stream, stream_from_input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((stream, split)) = stream_from_input(data) else {
        return;
    };
    let out = server_stream(&stream, split);
    assert!(
        out.buffer_capacity <= MAX_PAYLOAD + 24 + stream.len(),
        "read buffer of {} bytes for a stream of {}",
        out.buffer_capacity,
        stream.len()
    );
    // values beyond the queue's 64 are dropped; state events (connection, access rights)
    // never are, but each takes a message of at least 16 bytes: no amplification
    assert!(
        out.events <= 64 + stream.len() / 16,
        "{} events from {} bytes",
        out.events,
        stream.len()
    );
});
