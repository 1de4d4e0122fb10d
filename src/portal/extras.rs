//! An app's client keys (list; issue, with the key shown once on the page that issued it;
//! revoke) and secrets (names and when they were set, never values; set; delete), each
//! through the API's own routes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::app_page::{api_path, tabs, ui_path, AppRef};
use super::client::{segment, Call};
use super::layout::{form_post, page, respond, when, Notice};
use super::signin::{signed_out_by, NoFields, Posted, SignedIn};
use super::Portal;
use crate::model::names::AppKey;

pub fn router() -> Router<Arc<Portal>> {
    Router::new()
        .route("/ui/apps/{userid}/{appname}/keys", get(keys).post(issue))
        .route("/ui/apps/{userid}/{appname}/keys/revoke", post(revoke))
        .route(
            "/ui/apps/{userid}/{appname}/secrets",
            get(secrets).post(set_secret),
        )
        .route(
            "/ui/apps/{userid}/{appname}/secrets/delete",
            post(delete_secret),
        )
}

async fn keys(State(p): State<Arc<Portal>>, who: SignedIn, AppRef(key): AppRef) -> Response {
    keys_page(&p, &who, &key, None, StatusCode::OK, None).await
}

async fn keys_page(
    p: &Portal,
    who: &SignedIn,
    key: &AppKey,
    notice: Option<Notice>,
    status: StatusCode,
    issued: Option<&str>,
) -> Response {
    let reply = Call::get(format!("{}/client-keys", api_path(key)), who)
        .send(&p.api)
        .await;
    if let Some(out) = signed_out_by(p, who, &reply) {
        return out;
    }
    let list = reply.json()["keys"].as_array().cloned().unwrap_or_default();
    let (notice, status) = reply.shown(notice, status);
    let s = &who.session;
    let base = ui_path(key);
    let body = html! {
        (tabs(key, "/keys"))
        @if let Some(k) = issued {
            section.issued role="alert" {
                h2 { "New client key" }
                p { "Copy it now: it is shown only once, and berth keeps only a hash of it." }
                output id="new-key" { code { (k) } }
            }
        }
        (key_table(s, &base, &list))
        (form_post(&format!("{base}/keys"), s, html! {}, "Issue a client key"))
    };
    respond(
        status,
        page(&format!("{key} client keys"), Some(s), notice, body),
    )
}

fn key_table(s: &super::session::Session, base: &str, list: &[Value]) -> Markup {
    html! {
        table id="keys" {
            caption { (list.len()) " client keys" }
            thead { tr { th scope="col" { "Id" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "Revoke" } } }
            tbody { @for k in list {
                @let id = k["id"].as_str().unwrap_or("");
                tr {
                    td { code { (id) } }
                    td { (when(k["created_at"].as_u64())) }
                    td { (when(k["last_used_at"].as_u64())) }
                    td { (form_post(&format!("{base}/keys/revoke"), s,
                        html! { input type="hidden" name="id" value=(id); }, "Revoke")) }
                }
            } }
        }
    }
}

async fn issue(
    State(p): State<Arc<Portal>>,
    AppRef(key): AppRef,
    Posted(who, NoFields {}): Posted<NoFields>,
) -> Response {
    let uri = format!("{}/client-keys", api_path(&key));
    let reply = Call::new(Method::POST, uri, &who).send(&p.api).await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    let issued = reply.json()["key"].as_str().map(str::to_string);
    let (notice, status) = reply.outcome("client key issued");
    keys_page(&p, &who, &key, notice, status, issued.as_deref()).await
}

#[derive(Deserialize)]
struct KeyId {
    id: String,
}

async fn revoke(
    State(p): State<Arc<Portal>>,
    AppRef(key): AppRef,
    Posted(who, f): Posted<KeyId>,
) -> Response {
    let uri = format!("{}/client-keys/{}", api_path(&key), segment(&f.id));
    let reply = Call::new(Method::DELETE, uri, &who).send(&p.api).await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    let (notice, status) = reply.outcome(format!("client key {} revoked", f.id));
    keys_page(&p, &who, &key, notice, status, None).await
}

async fn secrets(State(p): State<Arc<Portal>>, who: SignedIn, AppRef(key): AppRef) -> Response {
    secrets_page(&p, &who, &key, None, StatusCode::OK).await
}

async fn secrets_page(
    p: &Portal,
    who: &SignedIn,
    key: &AppKey,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let reply = Call::get(format!("{}/secrets", api_path(key)), who)
        .send(&p.api)
        .await;
    if let Some(out) = signed_out_by(p, who, &reply) {
        return out;
    }
    let list = reply.json()["secrets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (notice, status) = reply.shown(notice, status);
    let (s, base) = (&who.session, ui_path(key));
    let set_fields = html! {
        label for="secret-name" { "Name" }
        input id="secret-name" name="name" required autocomplete="off";
        label for="secret-value" { "Value" }
        input id="secret-value" name="value" type="password" required autocomplete="off";
    };
    let body = html! {
        (tabs(key, "/secrets"))
        p.hint { "Values are encrypted in the manifest and never shown; the app sees them as environment variables." }
        table id="secrets" {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Set" } th scope="col" { "Delete" } } }
            tbody { @for x in &list {
                @let name = x["name"].as_str().unwrap_or("");
                tr {
                    td { code { (name) } }
                    td { (when(x["set_at"].as_u64())) @if let Some(e) = x["error"].as_str() { " — " span.error { (e) } } }
                    td { (form_post(&format!("{base}/secrets/delete"), s,
                        html! { input type="hidden" name="name" value=(name); }, "Delete")) }
                }
            } }
        }
        h2 { "Set a secret" }
        (form_post(&format!("{base}/secrets"), s, set_fields, "Set secret"))
    };
    respond(
        status,
        page(&format!("{key} secrets"), Some(s), notice, body),
    )
}

#[derive(Deserialize)]
struct SecretForm {
    name: String,
    value: String,
}

async fn set_secret(
    State(p): State<Arc<Portal>>,
    AppRef(key): AppRef,
    Posted(who, f): Posted<SecretForm>,
) -> Response {
    let uri = format!("{}/secrets/{}", api_path(&key), segment(f.name.trim()));
    let reply = Call::new(Method::PUT, uri, &who)
        .json(&json!({ "value": f.value }))
        .send(&p.api)
        .await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    let (notice, status) = reply.outcome(format!("secret {} set", f.name.trim()));
    secrets_page(&p, &who, &key, notice, status).await
}

#[derive(Deserialize)]
struct SecretName {
    name: String,
}

async fn delete_secret(
    State(p): State<Arc<Portal>>,
    AppRef(key): AppRef,
    Posted(who, f): Posted<SecretName>,
) -> Response {
    let uri = format!("{}/secrets/{}", api_path(&key), segment(&f.name));
    let reply = Call::new(Method::DELETE, uri, &who).send(&p.api).await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    let (notice, status) = reply.outcome(format!("secret {} deleted", f.name));
    secrets_page(&p, &who, &key, notice, status).await
}
