//! Query strings and bodies as the Java appliance's clients send them.

use std::collections::HashMap;

use crate::error::{ApiError, ApiResult};

/// The decoded query string: every value of every key, in order.
#[derive(Debug, Default, Clone)]
pub struct Params(HashMap<String, Vec<String>>);

impl Params {
    /// Decodes a raw query string (`%XX` and `+` as a servlet does).
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            map.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Params(map)
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    /// The first value of `key`, or a 400 naming it.
    pub fn required(&self, key: &str) -> ApiResult<&str> {
        self.get(key)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| ApiError::bad(format!("missing required parameter '{key}'")))
    }

    /// A boolean parameter (`true`/`false`, any case); absent gives `default`.
    pub fn flag(&self, key: &str, default: bool) -> ApiResult<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v.is_empty() => Ok(false),
            Some(v) => Err(ApiError::bad(format!(
                "parameter '{key}' must be true or false, not {v:?}"
            ))),
        }
    }
}

/// Splits PV names given as a comma list (the `pv` parameter, repeated or not).
pub fn split_names(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// One entry of an archive request body or query.
#[derive(Debug, Clone, PartialEq)]
pub struct NameEntry {
    /// The PV name.
    pub pv: String,
    /// Per-PV fields of a JSON body (`samplingperiod`, `samplingmethod`, ...), as strings.
    pub fields: HashMap<String, String>,
}

/// Parses a POST body that lists PV names: a JSON array of names or of objects with a
/// `pv` key, or a list separated by newlines and/or commas.
pub fn parse_name_body(body: &[u8]) -> ApiResult<Vec<NameEntry>> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad("request body is not UTF-8"))?;
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        let v: serde_json::Value = serde_json::from_str(trimmed)
            .map_err(|e| ApiError::bad(format!("request body is not valid JSON: {e}")))?;
        let items = v
            .as_array()
            .ok_or_else(|| ApiError::bad("JSON body must be an array"))?;
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                serde_json::Value::String(s) => out.push(NameEntry {
                    pv: s.trim().to_string(),
                    fields: HashMap::new(),
                }),
                serde_json::Value::Object(o) => {
                    let pv = o.get("pv").and_then(|p| p.as_str()).ok_or_else(|| {
                        ApiError::bad(format!("JSON body item {i} has no string 'pv'"))
                    })?;
                    let fields = o
                        .iter()
                        .filter(|(k, _)| k.as_str() != "pv")
                        .map(|(k, v)| {
                            let s = match v {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            (k.to_ascii_lowercase(), s)
                        })
                        .collect();
                    out.push(NameEntry {
                        pv: pv.trim().to_string(),
                        fields,
                    });
                }
                _ => {
                    return Err(ApiError::bad(format!(
                        "JSON body item {i} must be a PV name or an object with 'pv'"
                    )));
                }
            }
        }
        return Ok(out);
    }
    Ok(trimmed
        .split(['\n', '\r', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pv| NameEntry {
            pv: pv.to_string(),
            fields: HashMap::new(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_bodies() {
        let p = Params::parse(Some("pv=A%3AB,C&pv=D&limit=5&x=a+b"));
        assert_eq!(split_names(p.all("pv")), vec!["A:B", "C", "D"]);
        assert_eq!(p.get("x"), Some("a b"));
        assert!(p.required("nope").is_err());
        let b = parse_name_body(b"A:B\nC:D,E\r\n\n").expect("list");
        assert_eq!(
            b.iter().map(|e| e.pv.as_str()).collect::<Vec<_>>(),
            ["A:B", "C:D", "E"]
        );
        let b = parse_name_body(
            br#"["A", {"pv": "B", "samplingperiod": 2.5, "samplingmethod": "SCAN"}]"#,
        )
        .expect("json");
        assert_eq!(b[1].pv, "B");
        assert_eq!(
            b[1].fields.get("samplingperiod").map(String::as_str),
            Some("2.5")
        );
        assert!(parse_name_body(b"[1]").is_err());
        assert!(parse_name_body(b"[{\"x\":1}]").is_err());
        assert!(parse_name_body(b"[").is_err());
    }
}
