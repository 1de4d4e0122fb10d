//! An app's files (`GET /apps/:u/:a/files`) and an editor for one text file
//! (`GET|PUT /apps/:u/:a/files/*path`): the editor sends the etag it was opened with, so a
//! file changed meanwhile shows a conflict and keeps the unsaved text. The path goes to the
//! API encoded part by part; the API confines it to the workspace.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

use super::app_page::{api_path, tabs, ui_path, AppRef, Draft};
use super::client::{path_segments, Call};
use super::layout::{form_post, page, respond, Notice};
use super::signin::{signed_out_by, Posted, SignedIn};
use super::Portal;
use crate::model::names::AppKey;

pub fn router() -> Router<Arc<Portal>> {
    Router::new()
        .route("/ui/apps/{userid}/{appname}/files", get(list).post(create))
        .route(
            "/ui/apps/{userid}/{appname}/files/{*path}",
            get(open).post(save),
        )
}

async fn list(State(p): State<Arc<Portal>>, who: SignedIn, AppRef(key): AppRef) -> Response {
    let reply = Call::get(format!("{}/files", api_path(&key)), &who)
        .send(&p.api)
        .await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    let files = reply.json()["files"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let notice = (!reply.ok()).then(|| Notice::Failed(reply.message()));
    let base = ui_path(&key);
    let body = html! {
        (tabs(&key, "/files"))
        table id="files" {
            caption { "The app's workspace (node_modules and links left out)" }
            thead { tr { th scope="col" { "File" } th scope="col" { "Bytes" } } }
            tbody { @for f in &files {
                @let path = f["path"].as_str().unwrap_or("");
                tr {
                    td { a href={ (base) "/files/" (path_segments(path)) } { (path) } }
                    td { (f["size"].as_u64().unwrap_or(0)) }
                }
            } }
        }
        h2 { "New file" }
        (form_post(&format!("{base}/files"), &who.session, html! {
            label for="new-path" { "Path in the workspace" }
            input id="new-path" name="path" required placeholder="lib/util.js" autocomplete="off";
        }, "Create file"))
    };
    let status = if reply.ok() {
        StatusCode::OK
    } else {
        reply.status
    };
    respond(
        status,
        page(&format!("{key} files"), Some(&who.session), notice, body),
    )
}

/// The `{userid}`, `{appname}` and `{*path}` of a file route.
type FilePath = Path<(String, String, String)>;

async fn open(
    State(p): State<Arc<Portal>>,
    who: SignedIn,
    AppRef(key): AppRef,
    Path((_, _, path)): FilePath,
) -> Response {
    editor(&p, &who, &key, &path, None, StatusCode::OK, None).await
}

async fn editor(
    p: &Portal,
    who: &SignedIn,
    key: &AppKey,
    path: &str,
    notice: Option<Notice>,
    status: StatusCode,
    draft: Option<Draft>,
) -> Response {
    let uri = format!("{}/files/{}", api_path(key), path_segments(path));
    let reply = Call::get(uri, who).send(&p.api).await;
    if let Some(out) = signed_out_by(p, who, &reply) {
        return out;
    }
    if !reply.ok() {
        let notice = Some(Notice::Failed(reply.message()));
        let body = html! { (tabs(key, "/files")) };
        return respond(reply.status, page(path, Some(&who.session), notice, body));
    }
    let etag = reply.etag().unwrap_or_default();
    let body = html! {
        (tabs(key, "/files"))
        h2 { code { (path) } }
        @match std::str::from_utf8(&reply.body) {
            Ok(text) => (file_form(who, key, path, &etag, text, draft.as_ref())),
            Err(_) => p { "This file is not UTF-8 text; it cannot be edited here." },
        }
    };
    respond(status, page(path, Some(&who.session), notice, body))
}

fn file_form(
    who: &SignedIn,
    key: &AppKey,
    path: &str,
    etag: &str,
    text: &str,
    draft: Option<&Draft>,
) -> Markup {
    let fields = html! {
        input type="hidden" name="etag" value=(etag);
        input type="hidden" name="eol" value=(line_ends(text));
        label for="content" { "Contents" }
        textarea id="content" name="content" rows="24" spellcheck="false" { "\n" (text) }
    };
    let action = format!("{}/files/{}", ui_path(key), path_segments(path));
    html! {
        @if let Some(d) = draft {
            div.conflict role="alert" {
                p { strong { "Not saved: " } (d.why) }
                label for="draft" { "Your text (not saved)" }
                textarea id="draft" rows="24" readonly spellcheck="false" { "\n" (d.text) }
            }
        }
        (form_post(&action, &who.session, fields, "Save file"))
        p.hint { "Saved files are live in the workspace; press Deploy on the app's page to restart it with them." }
    }
}

#[derive(Deserialize)]
struct FileForm {
    etag: String,
    content: String,
    /// How the file's lines ended when the editor opened it (`lf` or `crlf`).
    #[serde(default)]
    eol: Option<String>,
}

/// How `text`'s lines end: `crlf` when every line break is CRLF, else `lf`. The editor sends
/// it back because a browser shows any line break as one and submits every one as CRLF, so
/// the submitted text alone cannot tell.
pub(super) fn line_ends(text: &str) -> &'static str {
    let crlf = text.matches("\r\n").count();
    match crlf > 0 && crlf == text.matches('\n').count() {
        true => "crlf",
        false => "lf",
    }
}

/// The text a browser `submitted` with the file's own line ends (`eol` as [`line_ends`]
/// found them) put back.
pub(super) fn with_line_ends(submitted: &str, eol: Option<&str>) -> String {
    let lf = submitted.replace("\r\n", "\n");
    match eol {
        Some("crlf") => lf.replace('\n', "\r\n"),
        _ => lf,
    }
}

async fn save(
    State(p): State<Arc<Portal>>,
    AppRef(key): AppRef,
    Path((_, _, path)): FilePath,
    Posted(who, f): Posted<FileForm>,
) -> Response {
    // A textarea submits CRLF whatever the file had: the file keeps its own line ends.
    let text = with_line_ends(&f.content, f.eol.as_deref());
    let uri = format!("{}/files/{}", api_path(&key), path_segments(&path));
    let reply = Call::new(Method::PUT, uri, &who)
        .bytes(text.clone(), "application/octet-stream")
        .if_match(&f.etag)
        .send(&p.api)
        .await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    if reply.ok() {
        let done = Some(Notice::Done(format!("{path} saved")));
        return editor(&p, &who, &key, &path, done, StatusCode::OK, None).await;
    }
    let why = match reply.status {
        StatusCode::PRECONDITION_FAILED => "the file was changed since you opened it. The editor now holds the current file; your text is kept beside it.".to_string(),
        _ => reply.message(),
    };
    let notice = Some(Notice::Failed(format!("not saved: {why}")));
    let draft = Some(Draft { text, why });
    editor(&p, &who, &key, &path, notice, reply.status, draft).await
}

#[derive(Deserialize)]
struct NewFile {
    path: String,
}

/// Creates an empty file (`If-None-Match: *`, so an existing one is never replaced) and opens
/// it in the editor.
async fn create(
    State(p): State<Arc<Portal>>,
    AppRef(key): AppRef,
    Posted(who, f): Posted<NewFile>,
) -> Response {
    let path = f.path.trim().trim_start_matches('/').to_string();
    let uri = format!("{}/files/{}", api_path(&key), path_segments(&path));
    let reply = Call::new(Method::PUT, uri, &who)
        .bytes(Vec::new(), "application/octet-stream")
        .create_only()
        .send(&p.api)
        .await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    match reply.ok() {
        true => {
            let done = Some(Notice::Done(format!("{path} created")));
            editor(&p, &who, &key, &path, done, StatusCode::OK, None).await
        }
        false => {
            let notice = Some(Notice::Failed(format!("{path}: {}", reply.message())));
            let body = html! { (tabs(&key, "/files")) p { a href={ (ui_path(&key)) "/files" } { "Back to the files" } } };
            respond(
                reply.status,
                page("New file", Some(&who.session), notice, body),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a browser submits for `text` shown in a textarea: every line break as CRLF.
    fn submitted(text: &str) -> String {
        text.replace("\r\n", "\n").replace('\n', "\r\n")
    }

    #[test]
    fn a_saved_file_keeps_its_line_ends_byte_for_byte() {
        for text in ["a\r\nb\r\n", "a\nb\n", "no break", "", "x\r\n\r\ny"] {
            let back = with_line_ends(&submitted(text), Some(line_ends(text)));
            assert_eq!(back.as_bytes(), text.as_bytes(), "{text:?}");
        }
        // A form from before the field existed: LF, as before.
        assert_eq!(with_line_ends("a\r\nb", None), "a\nb");
        assert_eq!(line_ends("mixed\r\nlf\n"), "lf");
    }
}
