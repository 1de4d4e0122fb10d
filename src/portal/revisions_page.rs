//! An app's revisions (`GET /apps/:u/:a/revisions`): when, from where, the spec hash, what
//! each changed against the one before it (a line diff), and a rollback button
//! (`POST /apps/:u/:a/rollback`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::app_page::{api_path, tabs, ui_path, AppRef};
use super::client::Call;
use super::diff::{self, Line};
use super::layout::{form_post, page, respond, when, Notice};
use super::session::Session;
use super::signin::{signed_out_by, Posted, SignedIn};
use super::Portal;
use crate::model::names::AppKey;

pub fn router() -> Router<Arc<Portal>> {
    Router::new().route(
        "/ui/apps/{userid}/{appname}/revisions",
        get(show).post(rollback),
    )
}

#[derive(Deserialize)]
struct Shown {
    diff: Option<u64>,
}

async fn show(
    State(p): State<Arc<Portal>>,
    who: SignedIn,
    AppRef(key): AppRef,
    Query(q): Query<Shown>,
) -> Response {
    render(&p, &who, &key, q.diff, None, StatusCode::OK).await
}

async fn render(
    p: &Portal,
    who: &SignedIn,
    key: &AppKey,
    diff_of: Option<u64>,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let uri = format!("{}/revisions", api_path(key));
    let reply = Call::get(uri, who).send(&p.api).await;
    if let Some(out) = signed_out_by(p, who, &reply) {
        return out;
    }
    let (revs, notice, status) = match reply.ok() {
        true => (
            reply.json()["revisions"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            notice,
            status,
        ),
        false => (vec![], Some(Notice::Failed(reply.message())), reply.status),
    };
    let body = html! {
        (tabs(key, "/revisions"))
        @if let Some(n) = diff_of { (diff_view(&revs, n)) }
        (table(&who.session, key, &revs))
    };
    respond(
        status,
        page(
            &format!("{key} revisions"),
            Some(&who.session),
            notice,
            body,
        ),
    )
}

fn table(s: &Session, key: &AppKey, revs: &[Value]) -> Markup {
    let base = ui_path(key);
    html! {
        table {
            caption { "Newest last; only the newest are kept" }
            thead { tr {
                th scope="col" { "Revision" } th scope="col" { "When" } th scope="col" { "Source" }
                th scope="col" { "Spec hash" } th scope="col" { "Changes" } th scope="col" { "Roll back" }
            } }
            tbody {
                @for r in revs {
                    @let n = r["revision"].as_u64().unwrap_or(0);
                    tr {
                        td { (n) }
                        td { (when(r["at"].as_u64())) }
                        td { (r["source"].as_str().unwrap_or("")) }
                        td { code { (r["spec_hash"].as_str().unwrap_or("").chars().take(12).collect::<String>()) } }
                        td { a href={ (base) "/revisions?diff=" (n) } { "diff" } }
                        td { (form_post(&format!("{base}/revisions"), s,
                            html! { input type="hidden" name="revision" value=(n); },
                            &format!("Roll back to {n}"))) }
                    }
                }
            }
        }
    }
}

/// What revision `n` changed against the revision kept before it.
fn diff_view(revs: &[Value], n: u64) -> Markup {
    let text = |r: &Value| r["content"].as_str().unwrap_or("").to_string();
    let Some(at) = revs.iter().position(|r| r["revision"].as_u64() == Some(n)) else {
        return html! { p.notice.failed { "revision " (n) " is not kept" } };
    };
    let new = text(&revs[at]);
    let old = at
        .checked_sub(1)
        .map(|i| text(&revs[i]))
        .unwrap_or_default();
    html! {
        section aria-labelledby="diff-h" {
            h2 id="diff-h" { "Changes in revision " (n) }
            @match diff::lines(&old, &new) {
                None => p { "too long to compare" },
                Some(lines) => pre.diff { @for l in lines { (line(&l)) } },
            }
        }
    }
}

fn line(l: &Line) -> Markup {
    match l {
        Line::Same(t) => html! { span.same { "  " (t) "\n" } },
        Line::Removed(t) => html! { del { "- " (t) "\n" } },
        Line::Added(t) => html! { ins { "+ " (t) "\n" } },
    }
}

#[derive(Deserialize)]
struct RollbackForm {
    revision: u64,
}

async fn rollback(
    State(p): State<Arc<Portal>>,
    AppRef(key): AppRef,
    Posted(who, f): Posted<RollbackForm>,
) -> Response {
    let uri = format!("{}/rollback", api_path(&key));
    let reply = Call::new(Method::POST, uri, &who)
        .json(&json!({ "revision": f.revision }))
        .send(&p.api)
        .await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    let (notice, status) = reply.outcome(format!("rolled back to revision {}", f.revision));
    render(&p, &who, &key, None, notice, status).await
}
