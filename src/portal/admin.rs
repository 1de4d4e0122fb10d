//! Admin pages, each over the admin API (a user who is not an admin gets the API's 403):
//! users (add, with the new token shown once; remove), the audit log's newest entries, and
//! the removals the mass-removal guard holds, released only after the API's confirmation.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::client::{segment, Call, Reply};
use super::layout::{form_post, page, respond, when, Notice};
use super::signin::{signed_out_by, Posted, SignedIn};
use super::Portal;
use crate::model::names::{NAME_MAX_LEN, USERID_PATTERN, USERID_RULE};

pub fn router() -> Router<Arc<Portal>> {
    Router::new()
        .route("/ui/admin/users", get(users).post(add_user))
        .route("/ui/admin/users/remove", post(remove_user))
        .route("/ui/admin/audit", get(audit))
        .route("/ui/admin/prune", get(prune).post(release))
}

/// A page for `who` from an API read: the page built from the answer, or the API's refusal.
fn from_reply(
    who: &SignedIn,
    title: &str,
    reply: &Reply,
    notice: Option<Notice>,
    status: StatusCode,
    body: impl FnOnce(&Value) -> Markup,
) -> Response {
    if !reply.ok() {
        let notice = Some(Notice::Failed(reply.message()));
        return respond(
            reply.status,
            page(title, Some(&who.session), notice, html! {}),
        );
    }
    let body = body(&reply.json());
    respond(status, page(title, Some(&who.session), notice, body))
}

async fn users(State(p): State<Arc<Portal>>, who: SignedIn) -> Response {
    users_page(&p, &who, None, StatusCode::OK, None).await
}

async fn users_page(
    p: &Portal,
    who: &SignedIn,
    notice: Option<Notice>,
    status: StatusCode,
    new_token: Option<&str>,
) -> Response {
    let reply = Call::get("/users", who).send(&p.api).await;
    if let Some(out) = signed_out_by(p, who, &reply) {
        return out;
    }
    let s = &who.session;
    from_reply(who, "Users", &reply, notice, status, |v| {
        let list = v["users"].as_array().cloned().unwrap_or_default();
        let add = html! {
            label for="user-name" { "Name" }
            input id="user-name" name="name" required autocomplete="off"
                pattern=(USERID_PATTERN) maxlength=(NAME_MAX_LEN) title={ "The name " (USERID_RULE) };
            label.inline { input type="checkbox" name="admin" value="true"; " admin" }
        };
        html! {
            h1 { "Users" }
            @if let Some(t) = new_token {
                section.issued role="alert" {
                    p { "The new user's token, shown only once:" }
                    output id="new-token" { code { (t) } }
                }
            }
            table id="users" {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Created" } th scope="col" { "Remove" } } }
                tbody { @for u in &list {
                    @let name = u["name"].as_str().unwrap_or("");
                    tr {
                        td { (name) } td { (u["role"].as_str().unwrap_or("")) }
                        td { (when(u["created_at"].as_u64())) }
                        td { (form_post("/ui/admin/users/remove", s,
                            html! { input type="hidden" name="name" value=(name); }, "Remove")) }
                    }
                } }
            }
            h2 { "Add a user" }
            (form_post("/ui/admin/users", s, add, "Add user"))
        }
    })
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    #[serde(default)]
    admin: Option<String>,
}

async fn add_user(State(p): State<Arc<Portal>>, Posted(who, f): Posted<NewUser>) -> Response {
    let body = json!({ "name": f.name.trim(), "admin": f.admin.as_deref() == Some("true") });
    let reply = Call::new(Method::POST, "/users", &who)
        .json(&body)
        .send(&p.api)
        .await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    let token = reply.json()["token"].as_str().map(str::to_string);
    match reply.ok() {
        true => {
            let done = Some(Notice::Done(format!("user {} added", f.name.trim())));
            users_page(&p, &who, done, StatusCode::OK, token.as_deref()).await
        }
        false => {
            users_page(
                &p,
                &who,
                Some(Notice::Failed(reply.message())),
                reply.status,
                None,
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct UserName {
    name: String,
    /// `yes` from the confirmation page: without it, the page is shown and nothing removed.
    #[serde(default)]
    confirmed: Option<String>,
}

async fn remove_user(State(p): State<Arc<Portal>>, Posted(who, f): Posted<UserName>) -> Response {
    // One click must not remove a user: a page of its own asks first (a form, not a script
    // dialog, which the portal's CSP would block).
    if f.confirmed.as_deref() != Some("yes") {
        let fields = html! {
            input type="hidden" name="name" value=(f.name);
            input type="hidden" name="confirmed" value="yes";
        };
        let body = html! {
            h1 { "Remove user " (f.name) "?" }
            p { "This removes the user from berth's database; their tokens stop opening the API and the portal." }
            (form_post("/ui/admin/users/remove", &who.session, fields, "Remove"))
            p { a href="/ui/admin/users" { "Cancel" } }
        };
        return respond(
            StatusCode::OK,
            page("Confirm removal", Some(&who.session), None, body),
        );
    }
    let uri = format!("/users/{}", segment(&f.name));
    let reply = Call::new(Method::DELETE, uri, &who).send(&p.api).await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    let (notice, status) = reply.outcome(format!("user {} removed", f.name));
    users_page(&p, &who, notice, status, None).await
}

async fn audit(State(p): State<Arc<Portal>>, who: SignedIn) -> Response {
    let reply = Call::get("/audit?tail=200", &who).send(&p.api).await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    from_reply(&who, "Audit log", &reply, None, StatusCode::OK, |v| {
        let mut entries = v["entries"].as_array().cloned().unwrap_or_default();
        entries.reverse();
        html! {
            h1 { "Audit log" }
            table id="audit" {
                caption { "The newest 200 entries, newest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "Status" } } }
                tbody { @for e in &entries { tr {
                    td { (when(e["at"].as_u64())) } td { (e["actor"].as_str().unwrap_or("")) }
                    td { code { (e["action"].as_str().unwrap_or("")) } } td { (e["status"].as_u64().unwrap_or(0)) }
                } } }
            }
        }
    })
}

async fn prune(State(p): State<Arc<Portal>>, who: SignedIn) -> Response {
    prune_page(&p, &who, None, StatusCode::OK).await
}

async fn prune_page(
    p: &Portal,
    who: &SignedIn,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let reply = Call::get("/apps", who).send(&p.api).await;
    if let Some(out) = signed_out_by(p, who, &reply) {
        return out;
    }
    let s = &who.session;
    from_reply(who, "Held removals", &reply, notice, status, |v| {
        let held: Vec<String> = v["apps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["phase"] == "prune-blocked")
            .map(|a| {
                format!(
                    "{}/{}",
                    a["userid"].as_str().unwrap_or(""),
                    a["appname"].as_str().unwrap_or("")
                )
            })
            .collect();
        html! {
            h1 { "Held removals" }
            p { "When many manifests disappear at once, berth holds the removals until an admin releases them." }
            ul id="held" { @for k in &held { li { (k) } } }
            @if held.is_empty() { p { "Nothing is held." } }
            @else { (form_post("/ui/admin/prune", s, html! {}, "Release…")) }
        }
    })
}

#[derive(Deserialize)]
struct Release {
    #[serde(default)]
    confirm: Option<String>,
}

async fn release(State(p): State<Arc<Portal>>, Posted(who, f): Posted<Release>) -> Response {
    let mut uri = "/prune/release".to_string();
    if let Some(t) = &f.confirm {
        uri.push_str(&format!("?confirm={}", segment(t)));
    }
    let reply = Call::new(Method::POST, uri, &who).send(&p.api).await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    if reply.status == StatusCode::ACCEPTED {
        let asked = reply.json();
        let fields = html! { input type="hidden" name="confirm" value=(asked["confirm"].as_str().unwrap_or("")); };
        let body = html! {
            h1 { "Release the held removals?" }
            p.notice.failed role="alert" { (asked["warning"].as_str().unwrap_or("")) }
            ul { @for a in asked["apps"].as_array().into_iter().flatten() { li { (a.as_str().unwrap_or("")) } } }
            (form_post("/ui/admin/prune", &who.session, fields, "Remove them"))
            p { a href="/ui/admin/prune" { "Cancel" } }
        };
        return respond(
            StatusCode::ACCEPTED,
            page("Confirm release", Some(&who.session), None, body),
        );
    }
    let (notice, status) = reply.outcome("released: the next pass removes them");
    prune_page(&p, &who, notice, status).await
}
