//! Arbitrary server bytes as the payload of a CA value of every DBR type (plain, STS, TIME,
//! GR, CTRL of the 7 field types, and the ids beyond them), any element count, scalar or
//! array request: decoding never panics and allocates no more elements than the bytes hold;
//! what decodes re-encodes, and that encoding decodes and re-encodes to the same bytes.
//!
//! Input: 2 bytes type id (mod 40), 4 bytes count, 1 byte flags (bit 0: scalar), payload.
#![no_main]

use archiver_ca::DbrType;
use archiver_ca::codec::{decode, decode_scalar_fast, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 7 {
        return;
    }
    let id = u16::from_be_bytes([data[0], data[1]]) % 40;
    let count = u32::from_be_bytes([data[2], data[3], data[4], data[5]]);
    let scalar = data[6] & 1 == 1;
    let payload = &data[7..];
    let Ok(ty) = DbrType::from_u16(id) else {
        return;
    };
    let _ = decode_scalar_fast(ty, payload);
    let Ok(d) = decode(ty, count, payload, scalar) else {
        return;
    };
    assert!(d.value.len() <= payload.len().max(1), "more elements than bytes");
    let mut once = Vec::new();
    if encode(ty, &d, &mut once).is_err() {
        return;
    }
    let n = d.value.len() as u32;
    let again = decode(ty, n, &once, scalar).expect("our own encoding decodes");
    let mut twice = Vec::new();
    encode(ty, &again, &mut twice).expect("a decoded value encodes");
    assert_eq!(once, twice, "encode(decode(encode(x))) == encode(x)");
});
