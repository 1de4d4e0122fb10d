//! The app page's buttons: start, stop, deploy, rename, save the manifest (with the etag the editor
//! was opened with: a stale one shows the conflict and keeps the unsaved text), and delete,
//! where a purge first shows the API's warning and asks for the app's name to be typed.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use maud::html;
use serde::Deserialize;

use super::app_page::{api_path, render, render_with, ui_path, AppRef, Draft};
use super::client::Call;
use super::layout::{form_post, page, respond, Notice};
use super::signin::{signed_out_by, NoFields, Posted};
use super::Portal;

pub fn router() -> Router<Arc<Portal>> {
    Router::new()
        .route("/ui/apps/{userid}/{appname}/start", post(start))
        .route("/ui/apps/{userid}/{appname}/stop", post(stop))
        .route("/ui/apps/{userid}/{appname}/deploy", post(deploy))
        .route("/ui/apps/{userid}/{appname}/manifest", post(save_manifest))
        .route("/ui/apps/{userid}/{appname}/rename", post(rename))
        .route("/ui/apps/{userid}/{appname}/delete", post(delete))
}

/// POSTs `/apps/:u/:a/<what>` and shows the app page with the outcome.
async fn act(
    p: &Portal,
    who: super::signin::SignedIn,
    key: crate::model::names::AppKey,
    what: &str,
    done: &str,
) -> Response {
    let uri = format!("{}/{what}", api_path(&key));
    let reply = Call::new(Method::POST, uri, &who).send(&p.api).await;
    if let Some(out) = signed_out_by(p, &who, &reply) {
        return out;
    }
    match reply.ok() {
        true => {
            render(
                p,
                &who,
                &key,
                Some(Notice::Done(done.into())),
                StatusCode::OK,
            )
            .await
        }
        false => {
            render(
                p,
                &who,
                &key,
                Some(Notice::Failed(reply.message())),
                reply.status,
            )
            .await
        }
    }
}

async fn start(
    State(p): State<Arc<Portal>>,
    AppRef(key): AppRef,
    Posted(who, NoFields {}): Posted<NoFields>,
) -> Response {
    act(
        &p,
        who,
        key,
        "start",
        "asked to start: the manifest says running",
    )
    .await
}

async fn stop(
    State(p): State<Arc<Portal>>,
    AppRef(key): AppRef,
    Posted(who, NoFields {}): Posted<NoFields>,
) -> Response {
    act(
        &p,
        who,
        key,
        "stop",
        "asked to stop: the manifest says stopped",
    )
    .await
}

async fn deploy(
    State(p): State<Arc<Portal>>,
    AppRef(key): AppRef,
    Posted(who, NoFields {}): Posted<NoFields>,
) -> Response {
    act(
        &p,
        who,
        key,
        "deploy",
        "deploy asked: the container is replaced on the next pass",
    )
    .await
}

#[derive(Deserialize)]
struct ManifestForm {
    etag: String,
    manifest: String,
    /// The manifest's line ends when the editor opened it (`lf` or `crlf`).
    #[serde(default)]
    eol: Option<String>,
}

async fn save_manifest(
    State(p): State<Arc<Portal>>,
    AppRef(key): AppRef,
    Posted(who, f): Posted<ManifestForm>,
) -> Response {
    // A textarea submits CRLF whatever the file had: the manifest keeps its own line ends.
    let text = super::files_page::with_line_ends(&f.manifest, f.eol.as_deref());
    let reply = Call::new(Method::PUT, format!("{}/manifest", api_path(&key)), &who)
        .bytes(text.clone(), "application/toml")
        .if_match(&f.etag)
        .send(&p.api)
        .await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    if reply.ok() {
        let done = Notice::Done("manifest saved; the next pass applies it".into());
        return render(&p, &who, &key, Some(done), StatusCode::OK).await;
    }
    let why = match reply.status {
        StatusCode::PRECONDITION_FAILED => "the manifest was changed by someone else since you opened it. The editor now holds the current manifest; your text is kept beside it.".to_string(),
        _ => reply.message(),
    };
    let notice = Notice::Failed(format!("not saved: {why}"));
    let draft = Draft { text, why };
    render_with(&p, &who, &key, Some(notice), reply.status, Some(draft)).await
}

#[derive(Deserialize)]
struct RenameForm {
    appname: String,
}

/// `POST /apps/:u/:a/rename`; done, a redirect to the renamed app's page.
async fn rename(
    State(p): State<Arc<Portal>>,
    AppRef(key): AppRef,
    Posted(who, f): Posted<RenameForm>,
) -> Response {
    let body = serde_json::json!({ "appname": f.appname.trim() });
    let uri = format!("{}/rename", api_path(&key));
    let reply = Call::new(Method::POST, uri, &who)
        .json(&body)
        .send(&p.api)
        .await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    let renamed = crate::model::names::AppKey::new(&key.userid, f.appname.trim());
    match (reply.ok(), renamed) {
        // To the renamed app's page: a reload there shows it, and posts nothing again.
        (true, Ok(new)) => super::signin::see_other(&ui_path(&new)),
        _ => {
            let failed = Some(Notice::Failed(reply.message()));
            render(&p, &who, &key, failed, reply.status).await
        }
    }
}

#[derive(Deserialize)]
struct DeleteForm {
    #[serde(default)]
    purge: Option<String>,
    /// The API's confirm token, on the second step of a purge.
    #[serde(default)]
    confirm: Option<String>,
    /// The app's name as typed, on the second step of a purge.
    #[serde(default)]
    typed: Option<String>,
    /// `yes` from the plain delete's confirmation page: without it, the page is shown.
    #[serde(default)]
    confirmed: Option<String>,
}

async fn delete(
    State(p): State<Arc<Portal>>,
    AppRef(key): AppRef,
    Posted(who, f): Posted<DeleteForm>,
) -> Response {
    let purge = f.purge.as_deref() == Some("true");
    // One click must not delete: a plain delete first asks on a page of its own (a form, not
    // a script dialog, which the portal's CSP would block). A purge asks through the API.
    if !purge && f.confirmed.as_deref() != Some("yes") {
        return confirm_delete_page(&who.session, &key);
    }
    if purge && f.confirm.is_some() && f.typed.as_deref().map(str::trim) != Some(&key.to_string()) {
        let why = Notice::Failed(format!(
            "nothing was deleted: type {key} exactly to confirm the purge"
        ));
        return render(&p, &who, &key, Some(why), StatusCode::BAD_REQUEST).await;
    }
    let mut uri = api_path(&key);
    if purge {
        uri.push_str("?purge=true");
        if let Some(token) = &f.confirm {
            uri.push_str(&format!("&confirm={}", super::client::segment(token)));
        }
    }
    let reply = Call::new(Method::DELETE, uri, &who).send(&p.api).await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    match reply.status {
        StatusCode::ACCEPTED => confirm_page(&who.session, &key, &reply.json()),
        s if s.is_success() => {
            super::apps_page::render(
                &p,
                &who,
                Some(Notice::Done(format!("deleted {key}"))),
                StatusCode::OK,
            )
            .await
        }
        s => render(&p, &who, &key, Some(Notice::Failed(reply.message())), s).await,
    }
}

/// The plain delete's second step: what goes and what stays, [Delete] or Cancel.
fn confirm_delete_page(s: &super::session::Session, key: &crate::model::names::AppKey) -> Response {
    let fields = html! { input type="hidden" name="confirmed" value="yes"; };
    let body = html! {
        h1 { "Delete app " (key) "?" }
        p { "Its manifest is deleted and its container removed on the next pass. The workspace apps/" (key.userid) "/" (key.appname) " stays (a purge would delete it too)." }
        (form_post(&format!("{}/delete", ui_path(key)), s, fields, "Delete"))
        p { a href=(ui_path(key)) { "Cancel" } }
    };
    respond(StatusCode::OK, page("Confirm delete", Some(s), None, body))
}

/// The purge's second step: the API's warning, and a form that sends its token back once the
/// app's name is typed.
fn confirm_page(
    s: &super::session::Session,
    key: &crate::model::names::AppKey,
    asked: &serde_json::Value,
) -> Response {
    let fields = html! {
        input type="hidden" name="purge" value="true";
        input type="hidden" name="confirm" value=(asked["confirm"].as_str().unwrap_or(""));
        label for="typed" { "Type " code { (key) } " to confirm" }
        input id="typed" name="typed" required autocomplete="off";
    };
    let body = html! {
        h1 { "Purge " (key) "?" }
        p.notice.failed role="alert" { (asked["warning"].as_str().unwrap_or("")) }
        (form_post(&format!("{}/delete", ui_path(key)), s, fields, "Purge for good"))
        p { a href=(ui_path(key)) { "Cancel" } }
    };
    respond(
        StatusCode::ACCEPTED,
        page("Confirm purge", Some(s), None, body),
    )
}
