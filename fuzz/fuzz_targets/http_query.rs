//! Arbitrary bytes (as UTF-8, lossily) as the query string of a GET, read by the same
//! functions the retrieval and management handlers use: `BplRequest`, the PV lists, the
//! PV name check of every management call, `getData`'s request (`pv`, `pp` post-processor
//! spec, `from`, `to`, `timeranges`, `usereduced`...), `getDataAtTime`'s `at` and
//! `searchPeriod`, `archivePV`'s `samplingperiod`, `samplingmethod`, `archiveFields`.
//! Nothing panics, and every refusal is a client error (4xx), never a 500.
#![no_main]

#[path = "../../crates/http/tests/props/mod.rs"]
mod props;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| props::query(data));
