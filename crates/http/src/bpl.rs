//! `/retrieval/bpl/*` and `/retrieval/ping`: the retrieval side's catalogue questions, as
//! the Java appliance's retrieval `BPLServlet` answers them (`GetMatchingPVs`,
//! `SearchForPVsRegex`, `AreWeArchivingPV`, `GetPVMetaData`, `GetVersion`,
//! `FilterArchivedPVs`, `PingServlet`). Every answer is read from the catalogue of the
//! [`RetrievalState`]'s pipeline (and the live source for `getMetadata`), on a blocking
//! thread.
//!
//! Differences from Java, all for clear errors: a missing `pv`/`regex` is a 400 naming the
//! parameter (Java: a bare 404; `getMatchingPVs` with neither answers `[]` as Java), a
//! `limit` that is not an integer a 400 (Java: 500), a bad regex a 400 naming it. A glob
//! (`pv`) is Java's regex of it (`*` → `.*`, `?` → `.`, so `A:B[12]` is a character
//! class); where that is not a valid regex (NSLS-II names such as `LN-AM{Rad*`, where Java
//! answers 500) every character but `*` and `?` is taken literally.

use archiver_registry::names::split_field;
use archiver_registry::{Limit, MatchBudget, NamePattern, Registry, RegistryError};
use archiver_retrieval::{Retrieval, normalize_name};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ApiResult, pattern_too_costly};
use crate::extract::BplRequest;
use crate::state::RetrievalState;

/// A catalogue failure: a bad or too costly pattern is the client's (400), anything else
/// ours (500).
fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::InvalidPattern { .. } => ApiError::bad(e.to_string()),
        RegistryError::PatternTooCostly { .. } => pattern_too_costly(e.to_string()),
        other => ApiError::internal(other),
    }
}

/// Runs `f` over the pipeline on a blocking thread (the catalogue is a database).
async fn blocking<T: Send + 'static>(
    state: &RetrievalState,
    f: impl FnOnce(&Retrieval) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let r = state.retrieval.clone();
    tokio::task::spawn_blocking(move || f(&r))
        .await
        .map_err(ApiError::internal)?
}

fn json(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The `limit` parameter: default 500, a negative number (Java `-1`) for all.
fn limit(p: &BplRequest) -> ApiResult<Limit> {
    match p.get("limit").map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(Limit::JAVA_DEFAULT),
        Some(v) => v.parse::<i64>().map(Limit::from_java).map_err(|_| {
            ApiError::bad(format!(
                "parameter 'limit' must be an integer (-1 for all), not {v:?}"
            ))
        }),
    }
}

/// `GET /retrieval/bpl/getMatchingPVs`: the archived PV names and aliases matching `pv` (a
/// glob as Java reads it, [`java_glob_regex`]; wins over `regex`) or `regex` (the whole name),
/// sorted, at most `limit` (default 500; `-1` all). Answer: a JSON list of names, as the
/// Phoebus search, the Grafana datasource and web viewers read it.
pub async fn get_matching_pvs(
    State(state): State<RetrievalState>,
    p: BplRequest,
) -> ApiResult<Response> {
    let (pattern, glob) = match (p.get("pv"), p.get("regex")) {
        // Java: "If neither is specified, we return an empty list".
        (None, None) => return Ok(json(b"[]\n".to_vec())),
        (Some(glob), _) => (java_glob_pattern(glob), Some(glob.to_string())),
        (None, regex) => (NamePattern::from_java_params(None, regex), None),
    };
    let limit = limit(&p)?;
    let names = blocking(&state, move |r| {
        matching(r.catalogue(), &pattern, limit).map_err(|e| match (e, glob) {
            // The user wrote the glob, not the regex made of it.
            (RegistryError::PatternTooCostly { reason, .. }, Some(glob)) => {
                registry_error(RegistryError::PatternTooCostly {
                    pattern: glob,
                    reason,
                })
            }
            (e, _) => registry_error(e),
        })
    })
    .await?;
    let mut body = serde_json::to_vec(&names).map_err(ApiError::internal)?;
    body.push(b'\n');
    Ok(json(body))
}

/// The pattern Java's `GetMatchingPVs` makes of its `pv` glob: the regex of `*` → `.*`,
/// `?` → `.`, every other character as it is (so `A:B[12]` is a character class, as in
/// Java, and `.` any character); when that is not a valid regex (`LN-AM{Rad*`: Java's
/// `PatternSyntaxException`, a 500), the glob with every other character literal. A valid
/// regex too costly to compile stays a regex, to be refused with a 400 that says so.
fn java_glob_pattern(glob: &str) -> NamePattern {
    let regex = glob.replace('*', ".*").replace('?', ".");
    if NamePattern::is_valid_regex(&regex) {
        NamePattern::Regex(regex)
    } else {
        NamePattern::Glob(glob.to_string())
    }
}

/// PV names and aliases matching `pattern`, sorted together and cut at `limit` (Java's
/// `GetMatchingPVs` sorts and cuts the union), both within one [`MatchBudget`].
fn matching(
    cat: &dyn Registry,
    pattern: &NamePattern,
    limit: Limit,
) -> Result<Vec<String>, RegistryError> {
    let budget = MatchBudget::start();
    let mut names = cat.matching_pv_names_within(pattern, limit, budget)?;
    names.extend(cat.matching_aliases_within(pattern, limit, budget)?);
    names.sort_unstable();
    names.dedup();
    if let Limit::AtMost(n) = limit {
        names.truncate(n);
    }
    Ok(names)
}

/// `GET /retrieval/bpl/searchForPVsRegex`: every archived PV name and alias matching
/// `regex` (the whole name), `text/plain`, one per line (the ArchiveViewer's and Phoebus's
/// search).
pub async fn search_for_pvs_regex(
    State(state): State<RetrievalState>,
    p: BplRequest,
) -> ApiResult<Response> {
    let regex = p.required("regex")?.to_string();
    let names = blocking(&state, move |r| {
        matching(r.catalogue(), &NamePattern::Regex(regex), Limit::All).map_err(registry_error)
    })
    .await?;
    let mut body = String::with_capacity(names.iter().map(|n| n.len() + 1).sum());
    for n in &names {
        body.push_str(n);
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "text/plain")], body).into_response())
}

/// The type info of `name` as Java's retrieval BPL looks it up: the name (`ca://`,
/// `pva://`, `.VAL` stripped), else the real name of an alias, else the PV without its
/// field (`A:B.HIHI` → `A:B`) when that field is one of its `archiveFields` (what
/// `getData` can serve for `A:B.HIHI`).
fn lookup(
    cat: &dyn Registry,
    name: &str,
) -> Result<Option<archiver_registry::PvTypeInfo>, RegistryError> {
    let name = normalize_name(name);
    if let Some(info) = cat.get_type_info_for_name(name)? {
        return Ok(Some(info));
    }
    match split_field(name) {
        (base, Some(field)) => Ok(cat
            .get_type_info_for_name(base)?
            .filter(|info| info.archive_fields.iter().any(|f| f == field))),
        _ => Ok(None),
    }
}

/// `GET /retrieval/bpl/areWeArchivingPV`: `{"status":"true"}` when `pv` (or its real name,
/// or `pv.FIELD` with FIELD an archive field of the PV) is in the catalogue, else
/// `{"status":"false"}`.
pub async fn are_we_archiving_pv(
    State(state): State<RetrievalState>,
    p: BplRequest,
) -> ApiResult<Response> {
    let pv = p.required("pv")?.to_string();
    let found = blocking(&state, move |r| {
        lookup(r.catalogue(), &pv).map_err(registry_error)
    })
    .await?;
    let status = if found.is_some() { "true" } else { "false" };
    Ok(json(format!("{{\"status\":\"{status}\"}}\n").into_bytes()))
}

/// `GET /retrieval/bpl/getMetadata`: the `PVTypeInfo` of `pv` (alias resolved; `PV.FIELD`
/// of an archive field: the PV's, as Java's `determineAppropriatePVTypeInfo`) flattened
/// to a JSON object of strings (arrays and objects as their JSON text, as Java's
/// `combineJSONObjects`), then what the engine knows now (`EGU`, `PREC`, `ENUM_n`
/// labels), overriding. 404 for a PV not in the catalogue.
pub async fn get_metadata(
    State(state): State<RetrievalState>,
    p: BplRequest,
) -> ApiResult<Response> {
    let pv = p.required("pv")?.to_string();
    let body = blocking(&state, move |r| {
        let info = lookup(r.catalogue(), &pv)
            .map_err(registry_error)?
            .ok_or_else(|| ApiError::not_found(format!("Unable to find typeinfo for pv {pv}")))?;
        let tree = serde_json::to_value(&info).map_err(ApiError::internal)?;
        let mut out = serde_json::Map::new();
        if let serde_json::Value::Object(map) = tree {
            for (k, v) in map {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => continue,
                    other => other.to_string(),
                };
                out.insert(k, serde_json::Value::String(text));
            }
        }
        if let Some(live) = r.live().describe(&info.pv_name) {
            for h in live.headers.into_iter().filter(|h| !h.val.is_empty()) {
                out.insert(h.name, serde_json::Value::String(h.val));
            }
        }
        let mut body = serde_json::to_vec(&out).map_err(ApiError::internal)?;
        body.push(b'\n');
        Ok(body)
    })
    .await?;
    Ok(json(body))
}

/// `GET /retrieval/bpl/getVersion`: `{"version": "<this server's version>"}` (Java's
/// shape; clients check only the status).
pub async fn get_version() -> Response {
    json(format!("{{\"version\":\"{}\"}}\n", env!("CARGO_PKG_VERSION")).into_bytes())
}

/// `POST /retrieval/bpl/filterArchivedPVs` (and GET): of the PVs of the request (a JSON or
/// text list in the body, `pv` values), those archived here, in request order, as a JSON
/// list (Java `ArchivedPVsInList`): a name (alias resolved) in the catalogue, or
/// `PV.FIELD` whose PV archives `FIELD` as an archive field.
pub async fn filter_archived_pvs(
    State(state): State<RetrievalState>,
    p: BplRequest,
) -> ApiResult<Response> {
    let names = p.names_or_empty_list()?;
    let archived = blocking(&state, move |r| {
        let cat = r.catalogue();
        let mut out = Vec::new();
        for name in names {
            if lookup(cat, &name).map_err(registry_error)?.is_some() {
                out.push(name);
            }
        }
        Ok(out)
    })
    .await?;
    let mut body = serde_json::to_vec(&archived).map_err(ApiError::internal)?;
    body.push(b'\n');
    Ok(json(body))
}

/// `GET /retrieval/ping`: `Pong` (Java `PingServlet`; `text/plain`, where Java sends the
/// invalid type `text`).
pub async fn ping() -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], "Pong\n").into_response()
}
