//! Arbitrary bytes as a POST body under each `Content-Type` a client sends (none, form,
//! JSON, JSON with a charset, `*+json`, text, another), read as the management and
//! retrieval handlers read them: `BplRequest` (form fields, a JSON list of names or of
//! `{"pv": ..., "samplingperiod": ...}` objects, a text list), each PV's settings as
//! `archivePV` checks them, and the `PVTypeInfo` bodies of `putPVTypeInfo` and
//! `importConfig`. Nothing panics; every refusal is a client error (4xx), never a 500.
//!
//! Input: 1 byte choosing the content type, then the body.
#![no_main]

#[path = "../../crates/http/tests/props/mod.rs"]
mod props;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| props::body(data));
