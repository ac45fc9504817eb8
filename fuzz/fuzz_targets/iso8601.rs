//! Arbitrary bytes (as UTF-8, lossily) given to the one ISO-8601 parser: it never panics,
//! and whatever it accepts formats back to text that parses to the same instant.
#![no_main]

use archiver_time::{Precision, parse_iso8601};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(t) = parse_iso8601(&text) {
        assert!(t.nanos < 1_000_000_000);
        for p in Precision::ALL {
            let again = parse_iso8601(&t.iso(p).to_string()).expect("formatted instant parses");
            assert_eq!(again, t.truncated(p));
        }
    }
});
