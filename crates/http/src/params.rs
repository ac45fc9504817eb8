//! Request parameters as a Java servlet sees them (`getParameter`,
//! `getParameterValues`): the query string, then the fields of an
//! `application/x-www-form-urlencoded` body.

use std::collections::HashMap;

use crate::error::{ApiError, ApiResult};

/// Decoded parameters: every value of every key, in the order received (query string
/// first, then a form body).
#[derive(Debug, Default, Clone)]
pub struct Params(HashMap<String, Vec<String>>);

impl Params {
    /// Decodes a raw query string (`%XX` and `+` as a servlet does).
    pub fn parse(raw: Option<&str>) -> Self {
        let mut p = Params::default();
        p.extend_form(raw.unwrap_or("").as_bytes());
        p
    }

    /// Adds the fields of a form-encoded text (a query string or an
    /// `application/x-www-form-urlencoded` body) after those already held.
    pub fn extend_form(&mut self, form: &[u8]) {
        for (k, v) in form_urlencoded::parse(form) {
            self.0
                .entry(k.into_owned())
                .or_default()
                .push(v.into_owned());
        }
    }

    /// The first value of `key` (the query string's, if it has one).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_then_form_body() {
        let mut p = Params::parse(Some("pv=A%3AB,C&pv=D&limit=5&x=a+b"));
        assert_eq!(split_names(p.all("pv")), vec!["A:B", "C", "D"]);
        assert_eq!(p.get("x"), Some("a b"));
        assert!(p.required("nope").is_err());
        p.extend_form(b"pv=E&limit=7");
        assert_eq!(split_names(p.all("pv")), vec!["A:B", "C", "D", "E"]);
        assert_eq!(
            p.get("limit"),
            Some("5"),
            "the query string's value comes first"
        );
        assert_eq!(p.all("limit"), ["5", "7"]);
        assert!(p.flag("x", false).is_err());
        assert_eq!(p.flag("absent", true).ok(), Some(true));
    }
}
