//! An app's logs: the last lines (`GET /apps/:u/:a/logs?tail=N`) on the page, and the same
//! lines as plain text at `logs.txt`, which portal.js fetches every two seconds while the page
//! is open (following), replacing the text, never interpreting it.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;
use serde::Deserialize;

use super::app_page::{api_path, tabs, ui_path, AppRef};
use super::client::{Call, Reply};
use super::layout::{page, respond, Notice};
use super::signin::{signed_out_by, SignedIn};
use super::Portal;
use crate::model::names::AppKey;

/// Lines shown unless the page asks for another number.
const DEFAULT_TAIL: u32 = 200;

pub fn router() -> Router<Arc<Portal>> {
    Router::new()
        .route("/ui/apps/{userid}/{appname}/logs", get(show))
        .route("/ui/apps/{userid}/{appname}/logs.txt", get(text))
}

#[derive(Deserialize)]
struct Tail {
    tail: Option<u32>,
}

async fn fetch(p: &Portal, who: &SignedIn, key: &AppKey, tail: u32) -> Reply {
    let uri = format!("{}/logs?tail={tail}", api_path(key));
    Call::get(uri, who).send(&p.api).await
}

async fn show(
    State(p): State<Arc<Portal>>,
    who: SignedIn,
    AppRef(key): AppRef,
    Query(q): Query<Tail>,
) -> Response {
    let tail = q.tail.unwrap_or(DEFAULT_TAIL);
    let reply = fetch(&p, &who, &key, tail).await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    let (text, notice) = match reply.ok() {
        true => (reply.text(), None),
        false => (String::new(), Some(Notice::Failed(reply.message()))),
    };
    let follow = format!("{}/logs.txt?tail={tail}", ui_path(&key));
    let body = html! {
        (tabs(&key, "/logs"))
        form method="get" action={ (ui_path(&key)) "/logs" } {
            label for="tail" { "Lines" }
            input id="tail" name="tail" type="number" min="1" max="10000" value=(tail);
            button type="submit" { "Show" }
        }
        p.hint { "Following while this page is open." }
        pre id="log" data-follow=(follow) tabindex="0" aria-label="log lines" { (text) }
    };
    let status = if reply.ok() {
        StatusCode::OK
    } else {
        reply.status
    };
    respond(
        status,
        page(&format!("{key} logs"), Some(&who.session), notice, body),
    )
}

async fn text(
    State(p): State<Arc<Portal>>,
    who: SignedIn,
    AppRef(key): AppRef,
    Query(q): Query<Tail>,
) -> Response {
    let reply = fetch(&p, &who, &key, q.tail.unwrap_or(DEFAULT_TAIL)).await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    let body = match reply.ok() {
        true => reply.text(),
        false => reply.message(),
    };
    (
        reply.status,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}
