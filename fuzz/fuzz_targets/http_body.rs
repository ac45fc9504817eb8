//! Arbitrary bytes as a POST body under each `Content-Type` a client sends (none, form,
//! JSON, JSON with a charset, `*+json`, text, another), read as the management and
//! retrieval handlers read them: `BplRequest` (form fields, a JSON list of names or of
//! `{"pv": ..., "samplingperiod": ...}` objects, a text list), each PV's settings as
//! `archivePV` checks them, and the `PVTypeInfo` bodies of `putPVTypeInfo` and
//! `importConfig`. Nothing panics; every refusal is a client error (4xx), never a 500.
//!
//! Input: 1 byte choosing the content type, then the body.
#![no_main]

use archiver_http::ApiError;
use archiver_http::BplRequest;
use archiver_http::mgmt::archive::{parse_fields, parse_method, parse_period};
use archiver_http::mgmt::catalogue::{import_config_body, type_info_body};
use archiver_http::mgmt::normalize;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 7] = [
    None,
    Some("application/x-www-form-urlencoded"),
    Some("application/json"),
    Some("application/json; charset=UTF-8"),
    Some("application/vnd.api+json"),
    Some("text/plain"),
    Some("application/octet-stream"),
];

fn client_error<T>(r: Result<T, ApiError>) {
    if let Err(e) = r {
        assert!(
            !matches!(e, ApiError::Internal(_)),
            "a body error answered 500: {e}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let Some(t) = TYPES[kind as usize % TYPES.len()] {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
    }
    client_error(type_info_body(body));
    client_error(import_config_body(body));
    let req = match BplRequest::from_parts(&Method::POST, Some("samplingperiod=1"), &headers, body) {
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
});
