//! The portal (docs/guides/portal.md): server-rendered HTML pages under `/ui`, served by `berth serve`
//! beside the API on `listen`, for the same users with the same rules.
//!
//! **Invariant: the portal is a client of the API.** Every read and every change is an
//! in-process request to the API's router carrying the signed-in user's own token
//! ([`client`]), so a click is exactly an API call: same authorisation, same write path (a
//! manifest write), same limits, same audit entry. The portal keeps only its sessions.
//!
//! Browser safety, on every page: a session cookie that is `HttpOnly` and `SameSite=Strict`
//! (`Secure` behind TLS); a CSRF token in every form, checked on every POST, and a POST from
//! another origin (`Origin`, `Sec-Fetch-Site`) refused before it is read; a
//! Content-Security-Policy that allows no inline script and no framing; maud escaping every
//! value a page shows.

mod admin;
mod app_actions;
mod app_page;
mod apps_page;
mod client;
mod create_page;
mod diff;
mod extras;
mod files_page;
mod layout;
mod logs_page;
mod revisions_page;
mod session;
mod signin;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::api::AppState;

pub use session::Sessions;

/// Largest form the portal reads: a 1 MiB file, percent-encoded.
const MAX_FORM_BYTES: usize = 4 * 1024 * 1024;

/// What the portal's handlers reach.
pub struct Portal {
    /// The API's router: the portal's only way to read or change anything.
    api: Router,
    /// For signing in (the database, the failure limiter, trusted proxies, templates).
    state: Arc<AppState>,
    /// Signed-in browsers.
    sessions: Sessions,
}

/// The portal's routes, to be merged beside the API's.
pub fn router(state: Arc<AppState>) -> Router {
    let portal = Arc::new(Portal {
        api: crate::api::router(state.clone()),
        state,
        sessions: Sessions::default(),
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/apps") }))
        .route("/ui", get(|| async { Redirect::to("/ui/apps") }))
        .route("/ui/static/portal.css", get(css))
        .route("/ui/static/portal.js", get(js))
        .merge(signin::router())
        .merge(apps_page::router())
        .merge(app_page::router())
        .merge(app_actions::router())
        .merge(extras::router())
        .merge(logs_page::router())
        .merge(revisions_page::router())
        .merge(files_page::router())
        .merge(admin::router())
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(same_origin_posts))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(portal)
}

/// The policy every portal answer carries: scripts and styles only from our own files (no
/// inline script at all), forms only to ourselves, never inside a frame.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// Refuses a POST that a browser says came from another site, before its form is read. The
/// CSRF token is the real guard; this one also covers the sign-in form, which has no session.
async fn same_origin_posts(req: Request, next: Next) -> Response {
    if req.method() == Method::POST && cross_site(&req) {
        let page = layout::page(
            "Refused",
            None,
            Some(layout::Notice::Failed(
                "this form was sent from another site; nothing was done".into(),
            )),
            maud::html! {},
        );
        return layout::respond(StatusCode::FORBIDDEN, page);
    }
    next.run(req).await
}

fn cross_site(req: &Request) -> bool {
    let h = req.headers();
    let site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s != "same-origin" && s != "none") {
        return true;
    }
    let Some(origin) = h.get(header::ORIGIN) else {
        return false;
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    origin_host.is_none() || origin_host != host
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/portal.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/portal.js"),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;

    fn post(headers: &[(&str, &str)]) -> Request<Body> {
        let mut r = Request::post("/ui/login").header("host", "berth.example:7070");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(Body::empty()).unwrap()
    }

    #[test]
    fn posts_from_another_site_are_told_apart() {
        assert!(!super::cross_site(&post(&[])), "no browser headers: curl");
        assert!(!super::cross_site(&post(&[
            ("origin", "http://berth.example:7070"),
            ("sec-fetch-site", "same-origin")
        ])));
        for bad in [
            &[("origin", "https://evil.example")][..],
            &[("origin", "null")][..],
            &[("origin", "http://berth.example:7071")][..],
            &[("sec-fetch-site", "cross-site")][..],
            &[("sec-fetch-site", "same-site")][..],
        ] {
            assert!(super::cross_site(&post(bad)), "{bad:?}");
        }
    }
}
