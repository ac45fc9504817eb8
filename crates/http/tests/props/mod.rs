//! The properties of hostile HTTP input, shared by the fuzz targets (`fuzz/fuzz_targets/
//! http_query.rs`, `http_body.rs`, which include this file) and the bounded proptests of
//! `hostile_input.rs`: arbitrary bytes read by the functions the handlers use never panic,
//! and every refusal is a client error (4xx), never a 500.

#![allow(dead_code)]

use archiver_http::ApiError;
use archiver_http::BplRequest;
use archiver_http::mgmt::archive::{parse_fields, parse_method, parse_period};
use archiver_http::mgmt::catalogue::{import_config_body, type_info_body};
use archiver_http::mgmt::normalize;
use archiver_http::retrieval::{data_request, multi_names, period_days};
use archiver_time::{Timestamp, parse_iso8601};
use axum::http::{HeaderMap, HeaderValue, Method, header};

/// The body types a client sends: none, form, JSON, JSON with a charset, `*+json`, text,
/// another.
pub const TYPES: [Option<&str>; 7] = [
    None,
    Some("application/x-www-form-urlencoded"),
    Some("application/json"),
    Some("application/json; charset=UTF-8"),
    Some("application/vnd.api+json"),
    Some("text/plain"),
    Some("application/octet-stream"),
];

/// Panics when `r` is a 500.
pub fn client_error<T>(r: Result<T, ApiError>) {
    if let Err(e) = r {
        assert!(
            !matches!(e, ApiError::Internal(_)),
            "a parse error answered 500: {e}"
        );
    }
}

/// `data` (as UTF-8, lossily) as the query string of a GET: `BplRequest`, the PV lists,
/// the PV name check of the management calls, `getData`'s request (`pv`, `pp`, `from`,
/// `to`, `timeranges`...), `getDataAtTime`'s `at` and `searchPeriod`, `archivePV`'s
/// settings.
pub fn query(data: &[u8]) {
    let query = String::from_utf8_lossy(data);
    let Ok(p) = BplRequest::from_parts(&Method::GET, Some(&query), &HeaderMap::new(), b"") else {
        return;
    };
    let now = Timestamp::new(1_700_000_000, 123_456_789);
    let names = p
        .names()
        .map(|v| v.into_iter().map(|e| e.pv).collect::<Vec<_>>());
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
}

/// `data[0]` chooses a content type of [`TYPES`], the rest is the body of a POST: read by
/// `BplRequest` (form, JSON list of names or objects, text), each PV's settings as
/// `archivePV` checks them, and the `PVTypeInfo` bodies of `putPVTypeInfo` and
/// `importConfig`.
pub fn body(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let Some(t) = TYPES[kind as usize % TYPES.len()] {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
    }
    client_error(type_info_body(body));
    client_error(import_config_body(body));
    let req = match BplRequest::from_parts(&Method::POST, Some("samplingperiod=1"), &headers, body)
    {
        Ok(r) => r,
        Err(e) => return client_error::<()>(Err(e)),
    };
    let _ = req.names_or_empty_list();
    let Ok(entries) = req.names() else {
        return;
    };
    for e in entries.iter().take(16) {
        client_error(normalize(&e.pv));
        if let Some(v) = e.fields.get("samplingperiod") {
            client_error(parse_period(v));
        }
        if let Some(v) = e.fields.get("samplingmethod") {
            client_error(parse_method(v));
        }
        if let Some(v) = e.fields.get("archivefields") {
            client_error(parse_fields(v));
        }
    }
}
