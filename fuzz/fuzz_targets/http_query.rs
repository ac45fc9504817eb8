//! Arbitrary bytes (as UTF-8, lossily) as the query string of a GET, read by the same
//! functions the retrieval and management handlers use: `BplRequest`, the PV lists, the
//! PV name check of every management call, `getData`'s request (`pv`, `pp` post-processor
//! spec, `from`, `to`, `timeranges`, `usereduced`...), `getDataAtTime`'s `at` and
//! `searchPeriod`, `archivePV`'s `samplingperiod`, `samplingmethod`, `archiveFields`.
//! Nothing panics, and every refusal is a client error (4xx), never a 500.
#![no_main]

use archiver_http::ApiError;
use archiver_http::BplRequest;
use archiver_http::mgmt::archive::{parse_fields, parse_method, parse_period};
use archiver_http::mgmt::normalize;
use archiver_http::retrieval::{data_request, multi_names, period_days};
use archiver_time::{Timestamp, parse_iso8601};
use axum::http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;

fn client_error<T>(r: Result<T, ApiError>) {
    if let Err(e) = r {
        assert!(
            !matches!(e, ApiError::Internal(_)),
            "a parse error answered 500: {e}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let Ok(p) = BplRequest::from_parts(&Method::GET, Some(&query), &HeaderMap::new(), b"")
    else {
        return;
    };
    let now = Timestamp::new(1_700_000_000, 123_456_789);
    let names = p.names().map(|v| v.into_iter().map(|e| e.pv).collect::<Vec<_>>());
    let _ = p.names_or_empty_list();
    let multi = multi_names(&p);
    for pv in names.iter().flatten().chain(multi.iter().flatten()).take(8) {
        client_error(data_request(&p, pv, now));
        client_error(normalize(pv));
    }
    if let Some(at) = p.get("at") {
        let _ = parse_iso8601(at);
    }
    if let Some(period) = p.get("searchPeriod") {
        let _ = period_days(period);
    }
    for key in ["donotchunk", "includeProxies", "override", "createnew"] {
        client_error(p.flag(key, false));
    }
    if let Some(v) = p.get("samplingperiod") {
        client_error(parse_period(v));
    }
    if let Some(v) = p.get("samplingmethod") {
        client_error(parse_method(v));
    }
    if let Some(v) = p.get("archiveFields") {
        client_error(parse_fields(v));
    }
});
