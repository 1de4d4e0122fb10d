//! One app's page: its status (`GET /apps/:u/:a`), the start / stop / deploy / rename / delete
//! buttons, and the manifest editor, which sends the etag it was opened with, so a manifest
//! changed meanwhile shows a conflict beside the text that was not saved instead of
//! overwriting anything. Also the [`AppRef`] extractor and the tabs the app's pages share.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde_json::Value;

use super::client::Call;
use super::layout::{form_post, page, respond, Notice};
use super::session::Session;
use super::signin::{signed_out_by, SignedIn};
use super::Portal;
use crate::model::names::AppKey;

pub fn router() -> Router<Arc<Portal>> {
    Router::new().route("/ui/apps/{userid}/{appname}", get(show))
}

/// `{userid}/{appname}` from the URL, checked with the manifest name rules before it is put
/// into any API path.
pub struct AppRef(pub AppKey);

impl<S: Send + Sync> FromRequestParts<S> for AppRef {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let params = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let (u, a) = (params.get("userid"), params.get("appname"));
        match (u, a) {
            (Some(u), Some(a)) => AppKey::new(u, a).map(AppRef).map_err(|e| {
                let notice = Notice::Failed(format!("no such app: {e}"));
                respond(
                    StatusCode::NOT_FOUND,
                    page("Not found", None, Some(notice), html! {}),
                )
            }),
            _ => Err(StatusCode::NOT_FOUND.into_response()),
        }
    }
}

/// The API path of `key`: `/apps/<userid>/<appname>`.
pub fn api_path(key: &AppKey) -> String {
    format!("/apps/{}/{}", key.userid, key.appname)
}

/// The portal path of `key`.
pub fn ui_path(key: &AppKey) -> String {
    format!("/ui/apps/{}/{}", key.userid, key.appname)
}

/// The tabs over every page of one app; `here` is the current one.
pub fn tabs(key: &AppKey, here: &str) -> Markup {
    let base = ui_path(key);
    let items = [
        ("", "Overview"),
        ("/logs", "Logs"),
        ("/revisions", "Revisions"),
        ("/keys", "Client keys"),
        ("/secrets", "Secrets"),
        ("/files", "Files"),
    ];
    html! {
        h1 { (key.userid) "/" (key.appname) }
        nav.tabs aria-label="app" {
            @for (suffix, label) in items {
                @if suffix == here {
                    a href={ (base) (suffix) } aria-current="page" { (label) }
                } @else {
                    a href={ (base) (suffix) } { (label) }
                }
            }
        }
    }
}

async fn show(State(p): State<Arc<Portal>>, who: SignedIn, AppRef(key): AppRef) -> Response {
    render(&p, &who, &key, None, StatusCode::OK).await
}

/// What the editor shows besides the current manifest: a draft that was not saved.
pub struct Draft {
    /// The text the user sent.
    pub text: String,
    /// Why it was not saved.
    pub why: String,
}

/// The app page with `notice`, and an unsaved `draft` kept beside the editor.
pub async fn render_with(
    p: &Portal,
    who: &SignedIn,
    key: &AppKey,
    notice: Option<Notice>,
    status: StatusCode,
    draft: Option<Draft>,
) -> Response {
    let reply = Call::get(api_path(key), who).send(&p.api).await;
    if let Some(out) = signed_out_by(p, who, &reply) {
        return out;
    }
    if !reply.ok() {
        let notice = Some(Notice::Failed(reply.message()));
        let body = html! { p { a href="/ui/apps" { "Back to the apps" } } };
        return respond(reply.status, page("App", Some(&who.session), notice, body));
    }
    let app = reply.json();
    let body = html! {
        (tabs(key, ""))
        (status_list(&app))
        (actions(&who.session, key))
        (editor(&who.session, key, &app, draft.as_ref()))
        (rename_form(&who.session, key))
        (delete_form(&who.session, key))
    };
    respond(
        status,
        page(&key.to_string(), Some(&who.session), notice, body),
    )
}

/// [`render_with`] without a draft.
pub async fn render(
    p: &Portal,
    who: &SignedIn,
    key: &AppKey,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    render_with(p, who, key, notice, status, None).await
}

fn status_list(app: &Value) -> Markup {
    let text = |k: &str| app[k].as_str().unwrap_or("–").to_string();
    html! {
        dl.status {
            dt { "Phase" } dd { span class={ "phase " (text("phase")) } { (text("phase")) } }
            dt { "Container" } dd { (text("container")) }
            dt { "Domain" } dd {
                @if let Some(d) = app["domain"].as_str() { a href={ "https://" (d) "/" } { (d) } }
                @else { "–" }
            }
            dt { "Revision" } dd { (app["revision"].as_u64().map_or("–".into(), |r| r.to_string())) }
            dt { "Last error" } dd.error { (text("last_error")) }
            @if let Some(h) = app["refused_hash"].as_str() {
                dt { "Refused version" } dd { code { (h) } }
            }
        }
    }
}

fn actions(s: &Session, key: &AppKey) -> Markup {
    let base = ui_path(key);
    html! {
        section.actions aria-label="actions" {
            @for (what, label) in [("start", "Start"), ("stop", "Stop"), ("deploy", "Deploy")] {
                (form_post(&format!("{base}/{what}"), s, html! {}, label))
            }
        }
    }
}

fn editor(s: &Session, key: &AppKey, app: &Value, draft: Option<&Draft>) -> Markup {
    let fields = html! {
        input type="hidden" name="etag" value=(app["etag"].as_str().unwrap_or(""));
        input type="hidden" name="eol" value=(super::files_page::line_ends(app["manifest"].as_str().unwrap_or("")));
        label for="manifest" { "Manifest (TOML)" }
        textarea id="manifest" name="manifest" rows="16" spellcheck="false" {
            "\n" (app["manifest"].as_str().unwrap_or(""))
        }
    };
    html! {
        section aria-labelledby="manifest-h" {
            h2 id="manifest-h" { "Manifest" }
            @if let Some(d) = draft {
                div.conflict role="alert" {
                    p { strong { "Not saved: " } (d.why) }
                    label for="draft" { "Your text (not saved)" }
                    textarea id="draft" rows="16" readonly spellcheck="false" { "\n" (d.text) }
                }
            }
            (form_post(&format!("{}/manifest", ui_path(key)), s, fields, "Save manifest"))
        }
    }
}

fn rename_form(s: &Session, key: &AppKey) -> Markup {
    let fields = html! {
        label for="appname" { "New name" }
        input id="appname" name="appname" required autocomplete="off"
            pattern="[a-z][a-z0-9-]{0,29}" value=(key.appname);
    };
    html! {
        section aria-labelledby="rename-h" {
            h2 id="rename-h" { "Rename" }
            p { "Keeps the workspace, volumes, secrets, client keys, revisions and domain." }
            (form_post(&format!("{}/rename", ui_path(key)), s, fields, "Rename app"))
        }
    }
}

fn delete_form(s: &Session, key: &AppKey) -> Markup {
    let fields = html! {
        label.inline {
            input type="checkbox" name="purge" value="true";
            " also delete the workspace (purge: asks for a confirmation)"
        }
    };
    html! {
        section aria-labelledby="delete-h" {
            h2 id="delete-h" { "Delete" }
            (form_post(&format!("{}/delete", ui_path(key)), s, fields, "Delete app"))
        }
    }
}
