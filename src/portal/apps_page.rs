//! The apps page: the caller's apps (every app for an admin) as `GET /apps` shows them, with
//! a refresh button and a self-refresh every 30 s (portal.js swaps the table in place), and
//! the form that creates an app from a template (`POST /apps`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde_json::Value;

use super::client::Call;
use super::layout::{form_post, page, respond, Notice};
use super::session::Session;
use super::signin::{signed_out_by, SignedIn};
use super::Portal;
use crate::model::names::{APPNAME_PATTERN, APPNAME_RULE, NAME_MAX_LEN};

pub fn router() -> Router<Arc<Portal>> {
    Router::new().route("/ui/apps", get(show).post(super::create_page::create))
}

async fn show(State(p): State<Arc<Portal>>, who: SignedIn) -> Response {
    render(&p, &who, None, StatusCode::OK).await
}

/// The page, with `notice` on top, answered with `status`.
pub async fn render(
    p: &Portal,
    who: &SignedIn,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let reply = Call::get("/apps", who).send(&p.api).await;
    if let Some(out) = signed_out_by(p, who, &reply) {
        return out;
    }
    let (apps, notice, status) = match reply.ok() {
        true => {
            let apps = reply.json()["apps"].as_array().cloned().unwrap_or_default();
            (apps, notice, status)
        }
        false => (vec![], Some(Notice::Failed(reply.message())), reply.status),
    };
    let body = html! {
        h1 { "Apps" }
        p { a.button href="/ui/apps" id="refresh" { "Refresh" } }
        (table(&apps))
        (create_form(&who.session, &templates(p, who).await))
    };
    respond(status, page("Apps", Some(&who.session), notice, body))
}

/// The apps table; `data-refresh` makes portal.js reload it every 30 s.
fn table(apps: &[Value]) -> Markup {
    html! {
        table id="apps" data-refresh="30" {
            caption { (apps.len()) " apps" }
            thead { tr {
                th scope="col" { "App" } th scope="col" { "Phase" } th scope="col" { "Domain" }
                th scope="col" { "Container" } th scope="col" { "Last error" }
            } }
            tbody {
                @for a in apps { (row(a)) }
            }
        }
    }
}

fn row(a: &Value) -> Markup {
    let (u, n) = (
        a["userid"].as_str().unwrap_or(""),
        a["appname"].as_str().unwrap_or(""),
    );
    let phase = a["phase"].as_str().unwrap_or("");
    html! {
        tr {
            td { a href={ "/ui/apps/" (u) "/" (n) } { (u) "/" (n) } }
            td { span class={ "phase " (phase) } { (phase) } }
            td { @if let Some(d) = a["domain"].as_str() { a href={ "https://" (d) "/" } { (d) } } }
            td { (a["container"].as_str().unwrap_or("")) }
            td.error { (a["last_error"].as_str().unwrap_or("")) }
        }
    }
}

fn create_form(s: &Session, templates: &[String]) -> Markup {
    let fields = html! {
        label for="appname" { "Name" }
        input id="appname" name="appname" required pattern=(APPNAME_PATTERN)
            maxlength=(NAME_MAX_LEN) title={ "The name " (APPNAME_RULE) };
        label for="template" { "Template" }
        select id="template" name="template" {
            @for t in templates { option value=(t) { (t) } }
        }
    };
    html! {
        section aria-labelledby="create-h" {
            h2 id="create-h" { "Create an app" }
            (form_post("/ui/apps", s, fields, "Create"))
        }
    }
}

/// The catalogue's template ids (`GET /templates`), skipping any that does not load.
async fn templates(p: &Portal, who: &SignedIn) -> Vec<String> {
    let reply = Call::get("/templates", who).send(&p.api).await;
    let all = reply.json();
    let listed = all["templates"].as_array().into_iter().flatten();
    listed
        .filter(|t| t["error"].is_null())
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect()
}
