//! The web UI: management pages and a data viewer, plain HTML, CSS and JavaScript written
//! for this project (no framework, no CDN, no third-party file), compiled into the binary
//! with `include_str!` so it works offline and is always the version of the server.
//!
//! The pages live under Java's `/mgmt/ui/` (where a Java appliance user finds the
//! management UI, `/mgmt/ui/index.html`); `/` redirects there, and Java's viewer address
//! `/retrieval/ui/viewer/archViewer.html` to our viewer, its PV page
//! `pvdetails.html?pv=NAME` to `pv.html?pv=NAME`. The pages use only the public
//! HTTP API (`/mgmt/bpl/*`, `/retrieval/*`), as any client does:
//!
//! * `index.html` — appliance overview, add PVs (one, pasted, CSV/text file), search
//!   (glob/regex), status table with pause/resume/delete/change period on a selection,
//!   export and import of the PV list as CSV;
//! * `pv.html?pv=NAME` — one PV: `getPVDetails`, `getPVTypeInfo`, stores, actions;
//! * `reports.html?report=NAME` — the management reports as sortable tables;
//! * `viewer.html?pv=A&pv=B&from=…&to=…` — the data viewer (`plot.js`, a canvas plotter of
//!   our own: the plots needed — lines, a min/max band, severity marks, enum labels, a
//!   waveform by index — are a few hundred lines, less than integrating a charting
//!   library, and keep the binary free of vendored files).
//!
//! Every file is answered with its content type and `Cache-Control: no-cache` (a browser
//! revalidates, so a new binary's pages are seen at once); an unknown file is a 404 that
//! names it.

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::error::ApiError;

/// Where the UI lives: Java's management UI folder.
pub const UI_PREFIX: &str = "/mgmt/ui/";

/// The UI's files: (name, content type, text).
const FILES: &[(&str, &str, &str)] = &[
    ("index.html", HTML, include_str!("../ui/index.html")),
    ("pv.html", HTML, include_str!("../ui/pv.html")),
    ("reports.html", HTML, include_str!("../ui/reports.html")),
    ("viewer.html", HTML, include_str!("../ui/viewer.html")),
    (
        "ui.css",
        "text/css; charset=utf-8",
        include_str!("../ui/ui.css"),
    ),
    ("common.js", JS, include_str!("../ui/common.js")),
    ("mgmt.js", JS, include_str!("../ui/mgmt.js")),
    ("pv.js", JS, include_str!("../ui/pv.js")),
    ("reports.js", JS, include_str!("../ui/reports.js")),
    ("plot.js", JS, include_str!("../ui/plot.js")),
    ("viewer.js", JS, include_str!("../ui/viewer.js")),
    ("favicon.svg", SVG, include_str!("../ui/favicon.svg")),
];
const SVG: &str = "image/svg+xml";
const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The UI routes: `/` and `/mgmt/ui` redirect to `/mgmt/ui/index.html`; `/mgmt/ui/{file}`
/// answers a page or asset; Java's viewer address redirects to `viewer.html`.
pub fn router() -> Router {
    let index = || get(|| async { Redirect::to("/mgmt/ui/index.html") });
    Router::new()
        .route("/", index())
        .route("/mgmt/ui", index())
        .route("/mgmt/ui/", index())
        .route("/mgmt/ui/{file}", get(ui_file))
        .route(
            "/retrieval/ui/viewer/archViewer.html",
            get(|| async { Redirect::to("/mgmt/ui/viewer.html") }),
        )
        .route("/mgmt/ui/pvdetails.html", get(java_pv_details))
        // Browsers ask for it on every page (the pages also link favicon.svg).
        .route(
            "/favicon.ico",
            get(|| async { ui_file(Path("favicon.svg".to_string())).await }),
        )
}

/// Java's PV details page (`/mgmt/ui/pvdetails.html?pv=NAME`, bookmarked by Java users):
/// a redirect to `pv.html` with the same query.
async fn java_pv_details(uri: axum::http::Uri) -> Redirect {
    match uri.query() {
        Some(q) => Redirect::to(&format!("/mgmt/ui/pv.html?{q}")),
        None => Redirect::to("/mgmt/ui/pv.html"),
    }
}

/// The Content-Security-Policy of the UI's files: scripts, styles, data and images from
/// this server only (inline `style` attributes allowed: the pages use a few; no inline
/// script), never framed by another site.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// One file of the UI by name, with the security headers of a page (CSP, no sniffing, no
/// framing, no referrer), or a 404 naming it.
async fn ui_file(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, text)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::X_FRAME_OPTIONS, "DENY"),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            *text,
        )
            .into_response(),
        None => ApiError::not_found(format!(
            "no such page: {UI_PREFIX}{file} (the UI starts at {UI_PREFIX}index.html)"
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, Option<String>, String, Option<String>) {
        let resp = router()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let header = |h| {
            resp.headers()
                .get(h)
                .map(|v: &axum::http::HeaderValue| v.to_str().unwrap().to_string())
        };
        let ct = header(header::CONTENT_TYPE);
        let location = header(header::LOCATION);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            ct,
            String::from_utf8(body.to_vec()).unwrap(),
            location,
        )
    }

    #[tokio::test]
    async fn root_and_java_addresses_redirect_to_the_pages() {
        for (path, to) in [
            ("/", "/mgmt/ui/index.html"),
            ("/mgmt/ui/", "/mgmt/ui/index.html"),
            (
                "/retrieval/ui/viewer/archViewer.html",
                "/mgmt/ui/viewer.html",
            ),
            (
                "/mgmt/ui/pvdetails.html?pv=A:B%3AC",
                "/mgmt/ui/pv.html?pv=A:B%3AC",
            ),
        ] {
            let (status, _, _, location) = get(path).await;
            assert!(status.is_redirection(), "{path}: {status}");
            assert_eq!(location.as_deref(), Some(to), "{path}");
        }
    }

    #[tokio::test]
    async fn every_file_carries_the_security_headers() {
        for (name, _, _) in FILES {
            let resp = router()
                .oneshot(
                    Request::get(format!("/mgmt/ui/{name}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let h = resp.headers();
            let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("script-src 'self'"), "{name}: {csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{name}: {csp}");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{name}");
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{name}");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer", "{name}");
        }
    }

    #[tokio::test]
    async fn every_file_is_served_with_its_type_and_pages_load_only_our_files() {
        for (name, content_type, _) in FILES {
            let (status, ct, body, _) = get(&format!("/mgmt/ui/{name}")).await;
            assert_eq!(status, StatusCode::OK, "{name}");
            assert_eq!(ct.as_deref(), Some(*content_type), "{name}");
            if name.ends_with(".html") {
                // Offline: every script and style sheet is one of ours, nothing from a CDN.
                for attr in ["src=\"", "href=\""] {
                    for part in body.split(attr).skip(1) {
                        let target = part.split('"').next().unwrap();
                        let local = target.split('?').next().unwrap();
                        assert!(
                            !target.contains("//"),
                            "{name} loads {target} from elsewhere"
                        );
                        if local.ends_with(".js") || local.ends_with(".css") {
                            assert!(
                                FILES.iter().any(|(n, _, _)| *n == local),
                                "{name} loads {target}, which is not served"
                            );
                        }
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn the_favicon_is_served_and_every_page_links_it() {
        let (status, ct, body, _) = get("/favicon.ico").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ct.as_deref(), Some(SVG));
        assert!(body.starts_with("<svg"), "{body}");
        for (name, _, text) in FILES.iter().filter(|(n, _, _)| n.ends_with(".html")) {
            assert!(
                text.contains(r#"<link rel="icon" href="favicon.svg""#),
                "{name} links no icon"
            );
        }
    }

    #[tokio::test]
    async fn an_unknown_file_is_a_404_naming_it() {
        let (status, _, body, _) = get("/mgmt/ui/nothing.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("/mgmt/ui/nothing.js"), "{body}");
    }
}
