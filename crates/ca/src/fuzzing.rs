//! Entry points for the fuzz targets (`fuzz/fuzz_targets/ca_*.rs`), built only with the
//! `fuzzing` feature: the client's reading of a server's TCP stream is private to the
//! circuit task, so it is reached through here without a socket.

use crate::error::ProtocolError;

/// What [`server_stream`] saw.
#[derive(Debug)]
pub struct StreamOutcome {
    /// `Err` when the circuit would be closed for a protocol violation.
    pub result: Result<(), ProtocolError>,
    /// The largest capacity of the read buffer, in bytes.
    pub buffer_capacity: usize,
    /// Monitor updates and state events that reached the channel's queue.
    pub events: usize,
}

/// The largest payload the fuzzed circuit accepts: its `max_array_bytes` (16 KiB, the
/// minimum) plus 1 KiB of DBR header, as `Circuit::new` sets it.
pub const MAX_PAYLOAD: usize = crate::config::MIN_ARRAY_BYTES + 1024;

/// The `ca_tcp_stream` fuzz target's input as a server's stream: the first 8 bytes (little
/// endian) say where to cut it into two reads; the server first creates channel CID 1
/// (DBR_DOUBLE, 3 elements), then sends the rest of the input. `None` under 8 bytes.
pub fn stream_from_input(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    use crate::header::{Header, cmd};
    let cut: [u8; 8] = data.get(..8)?.try_into().ok()?;
    let mut stream = Vec::with_capacity(16 + data.len());
    Header {
        data_type: 6,
        count: 3,
        param1: 1,
        param2: 1,
        ..Header::new(cmd::CREATE_CHAN)
    }
    .encode(&mut stream);
    stream.extend_from_slice(&data[8..]);
    Some((stream, u64::from_le_bytes(cut) as usize))
}

/// Feeds `stream` (bytes as a CA server sends them) to the client's message parser: a
/// circuit with one channel (CID 1) and one DBR_TIME_DOUBLE subscription (id 2), in two
/// reads cut at `split % (len + 1)`.
pub fn server_stream(stream: &[u8], split: usize) -> StreamOutcome {
    thread_local! {
        static RT: Option<tokio::runtime::Runtime> =
            tokio::runtime::Builder::new_current_thread().build().ok();
    }
    RT.with(|rt| {
        let Some(rt) = rt else {
            return StreamOutcome {
                result: Ok(()),
                buffer_capacity: 0,
                events: 0,
            };
        };
        let (result, buffer_capacity, events) =
            rt.block_on(crate::circuit::feed_server_bytes(stream, split));
        StreamOutcome {
            result,
            buffer_capacity,
            events,
        }
    })
}
