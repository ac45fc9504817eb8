//! [`BplRequest`]: the one extractor of every endpoint (management and `getData`). It reads
//! a request the way the Java appliance's servlets do (`BPLServlet`, `PVsMatchingParameter.
//! getPVNamesFromPostBody`), so every client's way of sending parameters and PV lists
//! works on every endpoint:
//!
//! * the **query string** (`%XX` and `+` decoded), for GET and POST;
//! * for POST, a body chosen by its `Content-Type` (parameters such as `charset` ignored):
//!   * `application/x-www-form-urlencoded`: form fields, merged after the query string's
//!     (so `pv=A,B` in the body of `getPVStatus` asks for A and B). `curl -d` and Java's
//!     `HttpURLConnection` send this type whatever the body is: a body with no `key=value`
//!     pair cannot be a form and is read as a list of names (JSON or text, below);
//!   * `application/json` (and `*+json`): a JSON list of PV names, or of objects with a
//!     `"pv"` key and per-PV settings (`archivePV`: `{"pv", "samplingperiod",
//!     "samplingmethod", ...}`; keys are compared in lower case, numbers and strings are
//!     both accepted);
//!   * `text/plain` (any `text/*`): names, one per line or separated by commas;
//!   * no `Content-Type` (python `requests` with `data="a,b"`): a body starting with `[` is
//!     JSON, one with a `=` is a form (a PV name cannot hold `=`), anything else is text;
//!   * another type: 400 naming it.
//!
//! A body of GET is ignored, as a servlet ignores it. Precedence: a parameter's first
//! value is the query string's, then the form body's; the PV names of a request are the
//! `pv` values (query, then form; comma lists split), then the names of a JSON or text
//! body; a per-PV setting of a JSON body wins over the same parameter of the request.
//! Every rejection is an [`ApiError`]: 400 naming the problem, 413 for a body over
//! [`crate::MAX_BODY_BYTES`].

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, header};
use http_body_util::BodyExt;

use crate::error::{ApiError, ApiResult};
use crate::params::{Params, split_names};

/// One PV of a request: its name and, from a JSON body, its own settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NameEntry {
    /// The PV name, as sent (trimmed).
    pub pv: String,
    /// Per-PV settings of a JSON body object (`samplingperiod`, `samplingmethod`...), keys
    /// in lower case, values as text (a JSON number as written: `1e300`).
    pub fields: HashMap<String, String>,
}

impl NameEntry {
    fn named(pv: &str) -> Self {
        NameEntry {
            pv: pv.trim().to_string(),
            fields: HashMap::new(),
        }
    }
}

/// A request as the Java servlets see it: parameters (query string, then a
/// form body) and the PV list of a JSON or text body. See the [module](self) for the
/// rules.
#[derive(Debug, Clone, Default)]
pub struct BplRequest {
    params: Params,
    body_names: Vec<NameEntry>,
    list_body: bool,
}

impl BplRequest {
    /// The first value of `key` (the query string's, then the form body's).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key)
    }

    /// The first value of `key`, or a 400 naming it.
    pub fn required(&self, key: &str) -> ApiResult<&str> {
        self.params.required(key)
    }

    /// A boolean parameter (`true`/`false`, any case); absent gives `default`.
    pub fn flag(&self, key: &str, default: bool) -> ApiResult<bool> {
        self.params.flag(key, default)
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The PVs of the request: every `pv` value (comma lists split), then the names of a
    /// JSON or text body.
    ///
    /// # Errors
    ///
    /// 400 when there are none.
    pub fn names(&self) -> ApiResult<Vec<NameEntry>> {
        let mut out: Vec<NameEntry> = split_names(self.params.all("pv"))
            .iter()
            .map(|pv| NameEntry::named(pv))
            .collect();
        out.extend(self.body_names.iter().cloned());
        if out.is_empty() {
            return Err(ApiError::bad(
                "missing required parameter 'pv' (or a list of PVs in the body)",
            ));
        }
        Ok(out)
    }

    /// The PV names of a JSON or text body (without the `pv` parameters).
    pub fn body_names(&self) -> &[NameEntry] {
        &self.body_names
    }

    /// The PV names of the request ([`BplRequest::names`]), where a JSON or text body
    /// listing none (`[]`) is an empty list rather than a 400: calls that answer per PV
    /// (Java's `GetDataAtTime`, `ArchivedPVsInList`) answer it with an empty answer.
    ///
    /// # Errors
    ///
    /// 400 when there is neither a `pv` parameter nor a list body.
    pub fn names_or_empty_list(&self) -> ApiResult<Vec<String>> {
        match self.names() {
            Ok(names) => Ok(names.into_iter().map(|e| e.pv).collect()),
            Err(_) if self.list_body => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Builds the request from its parts (what the extractor does once the body is read).
    ///
    /// # Errors
    ///
    /// 400 for a body that is not UTF-8, not valid JSON, not a list, or of an unsupported
    /// `Content-Type`.
    pub fn from_parts(
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> ApiResult<Self> {
        let mut req = BplRequest {
            params: Params::parse(query),
            body_names: Vec::new(),
            list_body: false,
        };
        if *method != Method::POST || body.iter().all(u8::is_ascii_whitespace) {
            return Ok(req);
        }
        let kind = body_kind(headers, body)?;
        match kind {
            BodyKind::Form => req.params.extend_form(body),
            BodyKind::Json => req.body_names = json_names(body)?,
            BodyKind::Text => req.body_names = text_names(body)?,
        }
        req.list_body = !matches!(kind, BodyKind::Form);
        Ok(req)
    }
}

impl<S: Send + Sync> FromRequest<S> for BplRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = if parts.method == Method::POST {
            read_body(body).await?
        } else {
            axum::body::Bytes::new()
        };
        BplRequest::from_parts(&parts.method, parts.uri.query(), &parts.headers, &bytes)
    }
}

/// A whole request body, read under the same rules as [`BplRequest`]'s: 413 over
/// [`crate::MAX_BODY_BYTES`], 408 when it stops arriving, both with a JSON message (axum's
/// own `Bytes` extractor answers those in plain text). For the calls whose body is one
/// document (`putPVTypeInfo`, `importConfig`).
#[derive(Debug, Clone, Default)]
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        read_body(req.into_body()).await.map(RawBody)
    }
}

/// Reads a whole request body; the size limit is the body limit layer's
/// ([`crate::MAX_BODY_BYTES`]), which makes the body fail once it is passed.
async fn read_body(body: Body) -> ApiResult<axum::body::Bytes> {
    match body.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if is_error::<http_body_util::LengthLimitError>(&e) {
                Err(ApiError::body_too_large())
            } else if is_error::<tower_http::timeout::TimeoutError>(&e) {
                Err(ApiError::RequestTimeout(
                    "the request body stopped arriving: no data within the server's \
                     body_read_timeout_secs"
                        .to_string(),
                ))
            } else {
                Err(ApiError::bad(format!("cannot read the request body: {e}")))
            }
        }
    }
}

/// Whether a body error is (or was caused by) an `E`: the body limit's, the body timeout's.
fn is_error<E: std::error::Error + 'static>(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<E>() {
            return true;
        }
        source = s.source();
    }
    false
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Form,
    Json,
    Text,
}

/// How to read a (non-blank) POST body: see the [module](self).
fn body_kind(headers: &HeaderMap, body: &[u8]) -> ApiResult<BodyKind> {
    let sniff = || {
        if body.trim_ascii_start().starts_with(b"[") {
            BodyKind::Json
        } else if body.contains(&b'=') {
            BodyKind::Form
        } else {
            BodyKind::Text
        }
    };
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(sniff());
    };
    let ct = ct
        .to_str()
        .map_err(|_| ApiError::bad("the Content-Type header is not text"))?;
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" if body.contains(&b'=') => Ok(BodyKind::Form),
        "application/x-www-form-urlencoded" => Ok(match sniff() {
            BodyKind::Json => BodyKind::Json,
            _ => BodyKind::Text,
        }),
        "application/json" => Ok(BodyKind::Json),
        e if e.ends_with("+json") => Ok(BodyKind::Json),
        e if e.starts_with("text/") => Ok(BodyKind::Text),
        _ => Err(ApiError::bad(format!(
            "unsupported Content-Type {ct:?} for a request body; send \
             application/x-www-form-urlencoded, application/json or text/plain"
        ))),
    }
}

fn utf8(body: &[u8]) -> ApiResult<&str> {
    std::str::from_utf8(body).map_err(|e| ApiError::bad(format!("request body is not UTF-8: {e}")))
}

/// Names separated by newlines and/or commas.
fn text_names(body: &[u8]) -> ApiResult<Vec<NameEntry>> {
    Ok(utf8(body)?
        .split(['\n', '\r', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(NameEntry::named)
        .collect())
}

/// A JSON list of names or of objects with a `"pv"` key.
fn json_names(body: &[u8]) -> ApiResult<Vec<NameEntry>> {
    use serde_json::Value;
    let text = utf8(body)?;
    let items: Vec<Value> = match serde_json::from_str(text) {
        Ok(Value::Array(items)) => items,
        Ok(_) => {
            return Err(ApiError::bad(
                "a JSON body must be a list of PV names or of objects with \"pv\"",
            ));
        }
        Err(e) => {
            return Err(ApiError::bad(format!(
                "request body is not valid JSON: {e}"
            )));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::String(s) => out.push(NameEntry::named(&s)),
            Value::Object(o) => {
                let mut pv = None;
                let mut fields = HashMap::with_capacity(o.len());
                for (k, v) in o {
                    if k == "pv" {
                        pv = v.as_str().map(str::to_string);
                        continue;
                    }
                    let v = match v {
                        Value::Null => continue,
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    fields.insert(k.to_ascii_lowercase(), v);
                }
                let pv = pv.ok_or_else(|| {
                    ApiError::bad(format!("JSON body item {i} has no string \"pv\""))
                })?;
                out.push(NameEntry {
                    pv: pv.trim().to_string(),
                    fields,
                });
            }
            _ => {
                return Err(ApiError::bad(format!(
                    "JSON body item {i} must be a PV name or an object with \"pv\""
                )));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn post(ct: Option<&str>, body: &str) -> ApiResult<BplRequest> {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        BplRequest::from_parts(&Method::POST, Some("x=1"), &h, body.as_bytes())
    }

    fn names(r: &BplRequest) -> Vec<String> {
        r.names().unwrap().into_iter().map(|e| e.pv).collect()
    }

    #[test]
    fn bodies_by_content_type() {
        let form = "application/x-www-form-urlencoded";
        assert_eq!(names(&post(Some(form), "pv=A,B").unwrap()), ["A", "B"]);
        assert_eq!(
            names(
                &post(
                    Some("application/x-www-form-urlencoded; charset=UTF-8"),
                    "pv=A%3AB&pv=C"
                )
                .unwrap()
            ),
            ["A:B", "C"]
        );
        // curl -d with a list that is no form.
        assert_eq!(names(&post(Some(form), "A\nB").unwrap()), ["A", "B"]);
        assert_eq!(
            names(&post(Some(form), r#"["A","B"]"#).unwrap()),
            ["A", "B"]
        );
        assert_eq!(
            names(
                &post(
                    Some("application/json; charset=utf-8"),
                    r#"["A", {"pv": "B"}]"#
                )
                .unwrap()
            ),
            ["A", "B"]
        );
        assert_eq!(
            names(&post(Some("text/plain"), "A\r\nB,C\n\n").unwrap()),
            ["A", "B", "C"]
        );
        // A text body is names, even one starting with '[' (a valid PV name character).
        assert_eq!(names(&post(Some("text/plain"), "[A]").unwrap()), ["[A]"]);
        assert_eq!(names(&post(None, "A,B").unwrap()), ["A", "B"]);
        assert_eq!(names(&post(None, "pv=A,B").unwrap()), ["A", "B"]);
        assert_eq!(names(&post(None, r#"["A"]"#).unwrap()), ["A"]);
        let e = post(Some("application/octet-stream"), "A").unwrap_err();
        assert!(e.to_string().contains("application/octet-stream"), "{e}");
    }

    #[test]
    fn json_items_carry_their_settings() {
        let r = post(
            Some("application/json"),
            r#"[{"pv": " B ", "samplingperiod": 2.5, "SamplingMethod": "SCAN", "policy": null}]"#,
        )
        .unwrap();
        let e = &r.names().unwrap()[0];
        assert_eq!(e.pv, "B");
        assert_eq!(
            e.fields.get("samplingperiod").map(String::as_str),
            Some("2.5")
        );
        assert_eq!(
            e.fields.get("samplingmethod").map(String::as_str),
            Some("SCAN")
        );
        assert!(!e.fields.contains_key("policy"));
        for bad in [
            "[1]",
            r#"[{"x":1}]"#,
            "[",
            r#"{"pv":"A"}"#,
            r#"[{"pv": 3}]"#,
        ] {
            let e = post(Some("application/json"), bad).unwrap_err();
            assert!(matches!(e, ApiError::BadRequest(_)), "{bad}: {e}");
        }
        let bad_utf8 =
            BplRequest::from_parts(&Method::POST, None, &HeaderMap::new(), &[b'A', 0xff])
                .unwrap_err();
        assert!(bad_utf8.to_string().contains("UTF-8"), "{bad_utf8}");
    }

    #[test]
    fn query_first_then_form_and_get_ignores_bodies() {
        let r = post(Some("application/x-www-form-urlencoded"), "x=2&y=3").unwrap();
        assert_eq!(r.get("x"), Some("1"));
        assert_eq!(r.get("y"), Some("3"));
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let r = BplRequest::from_parts(&Method::GET, Some("pv=Q"), &h, b"not json").unwrap();
        assert_eq!(names(&r), ["Q"]);
        let r = BplRequest::from_parts(&Method::POST, None, &h, b" \n").unwrap();
        assert!(r.names().is_err(), "a blank body names nothing");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    const TYPES: [Option<&str>; 6] = [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        Some("multipart/form-data"),
        Some("application/json;;;=\u{7f}"),
    ];

    proptest! {
        /// Any query, content type and body gives a request or a 400; never a panic.
        #[test]
        fn any_request_is_read_or_refused(
            query in proptest::option::of(".{0,60}"),
            ty in 0..TYPES.len(),
            body in proptest::collection::vec(any::<u8>(), 0..200),
            text_body in "[\\[\\]{}\",:=&%a-zA-Z0-9 \n]{0,80}",
            use_text in any::<bool>(),
        ) {
            let mut h = HeaderMap::new();
            if let Some(ct) = TYPES[ty].and_then(|t| HeaderValue::from_str(t).ok()) {
                h.insert(header::CONTENT_TYPE, ct);
            }
            let body = if use_text { text_body.into_bytes() } else { body };
            match BplRequest::from_parts(&Method::POST, query.as_deref(), &h, &body) {
                Ok(r) => {
                    if let Ok(names) = r.names() {
                        prop_assert!(!names.is_empty());
                    }
                }
                Err(e) => prop_assert!(matches!(e, ApiError::BadRequest(_))),
            }
        }
    }
}
