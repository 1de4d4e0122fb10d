//! Signing in and out, and the two extractors every other page uses: [`SignedIn`] (the
//! session behind the cookie, or a redirect to the sign-in page) and [`Posted`] (a form whose
//! CSRF token matches that session). A failed sign-in counts against the address in the same
//! failure limiter the API's tokens use.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::layout::{page, respond, Notice};
use super::session::{self, Session};
use super::Portal;
use crate::store::Role;

pub fn router() -> Router<Arc<Portal>> {
    Router::new()
        // A token is small: the sign-in form, read before anyone is known, gets 8 KiB.
        .route(
            "/ui/login",
            get(form)
                .post(sign_in)
                .layer(axum::extract::DefaultBodyLimit::max(8 * 1024)),
        )
        .route("/ui/logout", post(sign_out))
}

/// A signed-in browser: its session, the cookie's id, and where it connects from (passed on
/// to the API with each call).
pub struct SignedIn {
    pub session: Session,
    pub id: String,
    pub peer: Option<SocketAddr>,
    pub forwarded_for: Option<axum::http::HeaderValue>,
}

pub(super) fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_string())]).into_response()
}

impl FromRequestParts<Arc<Portal>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, p: &Arc<Portal>) -> Result<Self, Response> {
        // Every session cookie the browser sent is tried: one planted beside ours (by an app
        // on a sibling domain, say) must not hide the real one.
        let now = Instant::now();
        let found = parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(session::ids_from_cookies)
            .find_map(|id| p.sessions.get(id, now).map(|s| (s, id.to_string())));
        let Some((session, id)) = found else {
            return Err(see_other("/ui/login"));
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let forwarded_for = parts.headers.get("x-forwarded-for").cloned();
        Ok(SignedIn {
            session,
            id,
            peer,
            forwarded_for,
        })
    }
}

/// A POSTed form of a signed-in session whose CSRF token matched.
pub struct Posted<T>(pub SignedIn, pub T);

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned> FromRequest<Arc<Portal>> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, p: &Arc<Portal>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let who = SignedIn::from_request_parts(&mut parts, p).await?;
        let req = Request::from_parts(parts, body);
        let bytes = Bytes::from_request(req, p)
            .await
            .map_err(|e| refused(&who.session, e.status(), &e.body_text()))?;
        let csrf: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField {
            csrf: String::new(),
        });
        if !session::csrf_matches(&who.session, &csrf.csrf) {
            return Err(refused(
                &who.session,
                StatusCode::FORBIDDEN,
                "the form's anti-forgery token is missing or wrong; reload the page and try again",
            ));
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| refused(&who.session, StatusCode::BAD_REQUEST, &e.to_string()))?;
        Ok(Posted(who, form))
    }
}

fn refused(s: &Session, status: StatusCode, why: &str) -> Response {
    let notice = Notice::Failed(format!("nothing was done: {why}"));
    respond(status, page("Refused", Some(s), Some(notice), html! {}))
}

fn login_page(notice: Option<Notice>) -> maud::Markup {
    let body = html! {
        h1 { "Sign in" }
        form method="post" action="/ui/login" {
            label for="token" { "Token" }
            input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
            p.hint { "The token " code { "berth users add" } " printed for you." }
            button type="submit" { "Sign in" }
        }
    };
    page("Sign in", None, notice, body)
}

async fn form() -> Response {
    respond(StatusCode::OK, login_page(None))
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    token: String,
}

async fn sign_in(
    State(p): State<Arc<Portal>>,
    parts: Parts,
    axum::Form(f): axum::Form<SignInForm>,
) -> Response {
    let ip = crate::api::source_ip(&parts, &p.state);
    if let Some(wait) = p.state.limiter.blocked(ip, Instant::now()) {
        let why = format!("too many failed attempts; try again in {wait} s");
        return respond(
            StatusCode::TOO_MANY_REQUESTS,
            login_page(Some(Notice::Failed(why))),
        );
    }
    let token = f.token.trim().to_string();
    let t = token.clone();
    let user = match p.state.db(move |st| st.authenticate(&t)).await {
        Ok(u) => u,
        Err(e) => {
            let why = "cannot check the token right now; the berth log has the details";
            tracing::error!(cause = %e, "portal sign-in: the database did not answer");
            return respond(e.status(), login_page(Some(Notice::Failed(why.into()))));
        }
    };
    let Some(user) = user else {
        p.state.limiter.fail(ip, Instant::now());
        let why = "that token is not valid".to_string();
        return respond(
            StatusCode::UNAUTHORIZED,
            login_page(Some(Notice::Failed(why))),
        );
    };
    let admin = user.role == Role::Admin;
    let id = p.sessions.start(token, user.name, admin, Instant::now());
    let cookie = session::cookie(&id, over_tls(&parts, &p));
    let mut resp = see_other("/ui/apps");
    if let Ok(v) = cookie.parse() {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    resp
}

/// Whether the browser reached us over TLS: a trusted proxy said so.
fn over_tls(parts: &Parts, p: &Portal) -> bool {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let trusted = peer.is_some_and(|ip| p.state.config.trusted_proxies.contains(&ip));
    let proto = parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok());
    trusted && proto.is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A form with no fields but its CSRF token.
#[derive(Deserialize)]
pub struct NoFields {}

async fn sign_out(
    State(p): State<Arc<Portal>>,
    Posted(who, NoFields {}): Posted<NoFields>,
) -> Response {
    p.sessions.end(&who.id);
    let mut resp = see_other("/ui/login");
    if let Ok(v) = session::cleared_cookie().parse() {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    resp
}

/// Ends the session when the API no longer takes its token (a removed user), else `None`.
pub fn signed_out_by(p: &Portal, who: &SignedIn, reply: &super::client::Reply) -> Option<Response> {
    (reply.status == StatusCode::UNAUTHORIZED).then(|| {
        p.sessions.end(&who.id);
        see_other("/ui/login")
    })
}
