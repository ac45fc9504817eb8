#![allow(clippy::unwrap_used)]
//! Bounded property tests of hostile HTTP input, so CI checks without a fuzzer what the
//! `http_query` and `http_body` fuzz targets check (the properties are in `props`, shared
//! with them): arbitrary query strings and bodies never panic and never answer 500.

mod props;

use proptest::prelude::*;

/// Query-string-like text: keys the handlers read, separators, percent escapes.
fn query_text() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "pv",
        "pp",
        "from",
        "to",
        "timeranges",
        "at",
        "searchPeriod",
        "samplingperiod",
        "samplingmethod",
        "archiveFields",
        "donotchunk",
        "usereduced",
        "fetchLatestMetadata",
    ]);
    let value = "[ -~%\u{00e9}\u{2603}]{0,24}";
    prop::collection::vec((key, value), 0..6).prop_map(|kv| {
        kv.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_query_strings_are_client_errors_at_worst(q in query_text()) {
        props::query(q.as_bytes());
    }

    #[test]
    fn arbitrary_query_bytes_are_client_errors_at_worst(q in prop::collection::vec(any::<u8>(), 0..200)) {
        props::query(&q);
    }

    #[test]
    fn arbitrary_bodies_are_client_errors_at_worst(
        kind in 0u8..7,
        text in "[ -~\\n\u{00e9}]{0,200}",
        raw in prop::collection::vec(any::<u8>(), 0..100),
        use_raw in any::<bool>(),
    ) {
        let mut data = vec![kind];
        data.extend_from_slice(if use_raw { &raw } else { text.as_bytes() });
        props::body(&data);
    }

    /// JSON lists of names or of per-PV objects, as archivePV clients send them.
    #[test]
    fn json_lists_of_pv_objects_are_client_errors_at_worst(
        items in prop::collection::vec(("[ -~]{0,12}", "[ -~]{0,6}", "[ -~]{0,6}"), 0..5),
    ) {
        let list: Vec<serde_json::Value> = items
            .iter()
            .map(|(pv, p, m)| serde_json::json!({"pv": pv, "samplingperiod": p, "samplingmethod": m}))
            .collect();
        let mut data = vec![2u8];
        data.extend_from_slice(serde_json::to_string(&list).unwrap().as_bytes());
        props::body(&data);
    }
}
