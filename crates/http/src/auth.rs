//! Access control: the API key that management writes (and, when configured, reads) need
//! when the server is reachable beyond its own host.
//!
//! The Java appliance has no authentication of its own (sites put it behind a reverse
//! proxy); this server binds 127.0.0.1 by default and, bound wider, refuses to start
//! without a key unless management is explicitly opened (the binary's `api_key`,
//! `open_management`, `open_retrieval` keys). [`Access`] is the rule in force and
//! [`guard`] the axum middleware applying it to a whole router:
//!
//! * a management call that changes something ([`WRITE_CALLS`]) needs the key when
//!   [`Access::writes_need_key`];
//! * everything else that answers data — the read-only management calls ([`READ_CALLS`]),
//!   `/retrieval/...`, `/metrics` — needs it only when [`Access::reads_need_key`]
//!   (`open_retrieval = false`): retrieval clients (CS-Studio, Grafana, pyarchappl) send
//!   no credentials;
//! * `/health`, `/ready` (probes) and the UI's static pages (`/mgmt/ui/...`, no data in
//!   them) never need it.
//!
//! A `/mgmt/bpl/` call in neither list is taken as a write: a route added without being
//! classified is closed, not open (and a unit test fails until it is listed).
//!
//! The key comes as `Authorization: Bearer <key>` or `X-Archiver-Key: <key>` and is
//! compared in constant time (`subtle`). Missing or wrong: 401 with the JSON error body
//! naming both headers, and `WWW-Authenticate: Bearer`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// The management calls (after `/mgmt/bpl/`) that change something: archiving,
/// pause/resume, delete, abort, the changes of parameters, type, metadata, type info,
/// aliases, named flags, imports, data moves and deletions, policy re-application.
pub const WRITE_CALLS: &[&str] = &[
    "archivePV",
    "pauseArchivingPV",
    "resumeArchivingPV",
    "deletePV",
    "changeArchivalParameters",
    "changeTypeForPV",
    "abortArchivingPV",
    "abortArchivingPVForThisAppliance",
    "renamePV",
    "appendAndAliasPV",
    "modifyMetaFields",
    "putPVTypeInfo",
    "addAlias",
    "removeAlias",
    "setNamedFlag",
    "importConfig",
    "importConfigForAppliance",
    "reapplyPolicies",
    "consolidateDataForPV",
    "deletePVData",
];

/// The read-only management calls (after `/mgmt/bpl/`): status, lists, reports, type
/// info, exports, metrics. `webAppReady` changes nothing on a single appliance.
pub const READ_CALLS: &[&str] = &[
    "getPVStatus",
    "getAllPVs",
    "getPVTypeInfo",
    "getTypeInfoKeys",
    "getAllAliases",
    "getStoresForPV",
    "getNamedFlag",
    "getAllNamedFlags",
    "archivedPVs",
    "unarchivedPVs",
    "archivedPVsNotInList",
    "getAllExpandedPVNames",
    "exportConfig",
    "exportConfigForAppliance",
    "getApplianceInfo",
    "getAppliancesInCluster",
    "getVersions",
    "getPolicyList",
    "getPolicyText",
    "getApplianceMetrics",
    "getInstanceMetrics",
    "getStorageMetrics",
    "getApplianceMetricsForAppliance",
    "getStorageMetricsForAppliance",
    "getInstanceMetricsForAppliance",
    "getApplianceProperties",
    "getMetaGets",
    "getPVDetails",
    "getNeverConnectedPVs",
    "getNeverConnectedPVsForThisAppliance",
    "getCurrentlyDisconnectedPVs",
    "getEventRateReport",
    "getStorageRateReport",
    "getPVsByStorageConsumed",
    "getRecentlyAddedPVs",
    "getRecentlyModifiedPVs",
    "getLostConnectionsReport",
    "getSilentPVsReport",
    "getPVsByDroppedEventsTimestamp",
    "getPVsByDroppedEventsBuffer",
    "getPVsByDroppedEventsTypeChange",
    "getPVsByDroppedEventsRateLimit",
    "getSlowChangingPVsWithDroppedEvents",
    "getPausedPVsReport",
    "getTimeSpanReport",
    "getArchivedWaveforms",
    "getPVsForThisAppliance",
    "getPausedPVsForThisAppliance",
    "getMatchingPVsForThisAppliance",
    "webAppReady",
];

/// The header carrying the key, besides `Authorization: Bearer <key>`.
pub const KEY_HEADER: &str = "x-archiver-key";

/// What a request to `path` is, for [`Access`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A management call that changes something (or an unclassified `/mgmt/bpl/` call).
    Write,
    /// Anything answering data without changing it.
    Read,
    /// Probes and the UI's static pages: never guarded.
    Open,
}

/// The [`Kind`] of a request path (`/mgmt/bpl/archivePV` → [`Kind::Write`]).
pub fn classify(path: &str) -> Kind {
    if let Some(call) = path.strip_prefix("/mgmt/bpl/") {
        if READ_CALLS.contains(&call) {
            Kind::Read
        } else {
            // A write, or a call nobody classified: closed.
            Kind::Write
        }
    } else if path == "/health" || path == "/ready" || path == "/" || path.starts_with("/mgmt/ui") {
        Kind::Open
    } else {
        Kind::Read
    }
}

/// The rule in force: the key (if any) and what needs it. Cheap to clone.
#[derive(Clone, Default)]
pub struct Access {
    key: Option<Arc<[u8]>>,
    /// Management writes need the key (a key is set and `open_management` is false).
    pub writes_need_key: bool,
    /// Reads need the key too (a key is set and `open_retrieval` is false).
    pub reads_need_key: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .field("writes_need_key", &self.writes_need_key)
            .field("reads_need_key", &self.reads_need_key)
            .finish()
    }
}

impl Access {
    /// Nothing needs a key (the default: a server bound to loopback without a key).
    pub fn open() -> Self {
        Access::default()
    }

    /// With `key`: writes need it unless `open_management`, reads need it unless
    /// `open_retrieval`. Without a key everything is open.
    pub fn new(key: Option<&str>, open_management: bool, open_retrieval: bool) -> Self {
        let key: Option<Arc<[u8]>> = key.map(|k| Arc::from(k.as_bytes()));
        let has = key.is_some();
        Access {
            key,
            writes_need_key: has && !open_management,
            reads_need_key: has && !open_retrieval,
        }
    }

    /// Whether a key is set.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// Whether a request of `kind` needs the key.
    pub fn needs_key(&self, kind: Kind) -> bool {
        match kind {
            Kind::Write => self.writes_need_key,
            Kind::Read => self.reads_need_key,
            Kind::Open => false,
        }
    }

    /// Whether `headers` carry the key (`Authorization: Bearer <key>` or
    /// `X-Archiver-Key: <key>`), compared in constant time.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(key) = &self.key else {
            return true;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().strip_prefix("Bearer "))
            .map(|v| v.trim().as_bytes());
        let plain = headers.get(KEY_HEADER).map(|v| v.as_bytes());
        [bearer, plain]
            .into_iter()
            .flatten()
            .any(|given| bool::from(given.ct_eq(key)))
    }
}

/// The 401 of a request without the key (or with a wrong one).
fn unauthorized(kind: Kind) -> Response {
    let what = match kind {
        Kind::Write => "this management call changes the archiver",
        _ => "this server is configured to need the key for reads too (open_retrieval = false)",
    };
    let body = serde_json::json!({
        "status": "error",
        "message": format!(
            "API key required: {what}; send the header 'Authorization: Bearer <key>' \
             (or 'X-Archiver-Key: <key>') with the server's api_key"
        ),
    });
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::WWW_AUTHENTICATE, "Bearer"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The middleware: a request whose path needs the key ([`classify`],
/// [`Access::needs_key`]) and does not carry it is answered 401; a CORS preflight
/// (`OPTIONS`) passes (it carries no headers of the request it prepares).
pub async fn check(State(access): State<Access>, req: Request, next: Next) -> Response {
    let kind = classify(req.uri().path());
    if req.method() != axum::http::Method::OPTIONS
        && access.needs_key(kind)
        && !access.admits(req.headers())
    {
        return unauthorized(kind);
    }
    next.run(req).await
}

/// `router` with [`check`] over every route (and its fallback) under `access`.
pub fn guard(router: axum::Router, access: Access) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(access, check))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `/mgmt/bpl/` route in the crate's sources is in [`WRITE_CALLS`] or
    /// [`READ_CALLS`] (not both): a new route cannot be forgotten. The sources are read
    /// from disk, every file under `src/`, so a route in a new file is found too.
    #[test]
    fn every_mgmt_route_is_classified_read_or_write() {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("auth.rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for piece in text.split("\"/mgmt/bpl/").skip(1) {
                        let call: String = piece
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric())
                            .collect();
                        if !call.is_empty() {
                            out.push(call);
                        }
                    }
                }
            }
        }
        let mut calls = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut calls,
        );
        calls.sort();
        calls.dedup();
        assert!(calls.len() > 60, "found only {calls:?}");
        for c in &calls {
            let w = WRITE_CALLS.contains(&c.as_str());
            let r = READ_CALLS.contains(&c.as_str());
            assert!(
                w ^ r,
                "/mgmt/bpl/{c} must be in exactly one of WRITE_CALLS, READ_CALLS"
            );
        }
        for c in WRITE_CALLS.iter().chain(READ_CALLS) {
            assert!(
                calls.iter().any(|x| x == c),
                "{c} is listed but no route serves it"
            );
        }
    }

    #[test]
    fn classification_and_keys() {
        assert_eq!(classify("/mgmt/bpl/archivePV"), Kind::Write);
        assert_eq!(classify("/mgmt/bpl/someNewCall"), Kind::Write);
        assert_eq!(classify("/mgmt/bpl/getPVStatus"), Kind::Read);
        assert_eq!(classify("/retrieval/data/getData.json"), Kind::Read);
        assert_eq!(classify("/metrics"), Kind::Read);
        assert_eq!(classify("/health"), Kind::Open);
        assert_eq!(classify("/mgmt/ui/index.html"), Kind::Open);
        let a = Access::new(Some("s3cret"), false, true);
        assert!(a.needs_key(Kind::Write) && !a.needs_key(Kind::Read));
        let mut h = HeaderMap::new();
        assert!(!a.admits(&h));
        h.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!a.admits(&h));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(a.admits(&h));
        let mut h = HeaderMap::new();
        h.insert(KEY_HEADER, "s3cret".parse().unwrap());
        assert!(a.admits(&h));
        let closed = Access::new(Some("k"), false, false);
        assert!(closed.needs_key(Kind::Read));
        let opened = Access::new(Some("k"), true, true);
        assert!(!opened.needs_key(Kind::Write));
        assert!(!Access::open().needs_key(Kind::Write));
    }

    /// Through the middleware: a write without the key is 401 naming the header, with it
    /// 200; a read passes without it; with `open_retrieval = false` it does not.
    #[tokio::test]
    async fn the_middleware_answers_401_without_the_key() {
        use axum::body::Body;
        use axum::routing::get;
        use tower::ServiceExt;
        let app = |access| {
            guard(
                axum::Router::new()
                    .route("/mgmt/bpl/archivePV", get(|| async { "archived" }))
                    .route("/mgmt/bpl/getAllPVs", get(|| async { "[]" }))
                    .route("/health", get(|| async { "ok" })),
                access,
            )
        };
        let call = |access: Access, path: &str, key: Option<(&str, &str)>| {
            let mut req = Request::builder().uri(path);
            if let Some((h, v)) = key {
                req = req.header(h, v);
            }
            let req = req.body(Body::empty()).unwrap();
            async move { app(access).oneshot(req).await.unwrap() }
        };
        let a = Access::new(Some("k3y"), false, true);
        let r = call(a.clone(), "/mgmt/bpl/archivePV", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("Authorization: Bearer"),
            "{v}"
        );
        let wrong = call(
            a.clone(),
            "/mgmt/bpl/archivePV",
            Some(("authorization", "Bearer no")),
        )
        .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let ok = call(
            a.clone(),
            "/mgmt/bpl/archivePV",
            Some(("authorization", "Bearer k3y")),
        )
        .await;
        assert_eq!(ok.status(), StatusCode::OK);
        let ok = call(
            a.clone(),
            "/mgmt/bpl/archivePV",
            Some(("x-archiver-key", "k3y")),
        )
        .await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            call(a.clone(), "/mgmt/bpl/getAllPVs", None).await.status(),
            StatusCode::OK
        );
        let closed = Access::new(Some("k3y"), false, false);
        let r = call(closed.clone(), "/mgmt/bpl/getAllPVs", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(call(closed, "/health", None).await.status(), StatusCode::OK);
        let open = call(Access::open(), "/mgmt/bpl/archivePV", None).await;
        assert_eq!(open.status(), StatusCode::OK);
    }
}
