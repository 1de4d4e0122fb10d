//! The files API (docs/guides/portal.md): an app's workspace files over HTTP. `GET …/files` lists them,
//! `GET …/files/{*path}` answers a file's bytes with its `ETag`, `PUT` writes one (the body
//! is the bytes; `If-Match: "<etag>"` to replace, `If-None-Match: *` to create; 428 without
//! either, 412 when stale), `DELETE` removes one (`If-Match` required). Up to 1 MiB a file.
//!
//! Everything on disk is `state::workspace_files`: the path rules, the link-refusing walk
//! and the atomic write. This module only maps HTTP onto it. The bytes are served as they
//! are (`application/octet-stream`, `nosniff`, a sandboxing CSP): escaping is for whoever
//! shows them. Writes are audited by the `observe` middleware like every mutating call.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiPath, AppPath};
use super::AppState;
use crate::model::names::AppKey;
use crate::state::workspace_files::{
    FileError, FilePath, Precondition, WorkspaceFiles, MAX_FILE_BYTES,
};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/apps/{userid}/{appname}/files", get(list))
        .route(
            "/apps/{userid}/{appname}/files/{*path}",
            get(read)
                .put(write)
                .delete(remove)
                // The router's limit is for JSON and manifests; a file may be up to 1 MiB.
                .layer(DefaultBodyLimit::max(MAX_FILE_BYTES)),
        )
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        let refused = |status, code| ApiError::Refused {
            status,
            code,
            message: e.to_string(),
        };
        match &e {
            FileError::InvalidPath { .. } => refused(StatusCode::BAD_REQUEST, "invalid_path"),
            FileError::Symlink { .. } => refused(StatusCode::CONFLICT, "symlink_refused"),
            FileError::NotAFile { .. } => refused(StatusCode::CONFLICT, "not_a_file"),
            FileError::Changed { .. } => {
                // The user's own container raced the request: theirs to retry, not berth's
                // failure, and a loop of it must not flood the journal.
                tracing::debug!(cause = %e, "a workspace path changed during a files request");
                refused(StatusCode::CONFLICT, "path_changed")
            }
            FileError::NoWorkspace(_) => refused(StatusCode::CONFLICT, "no_workspace"),
            FileError::FileTooLarge { .. } => refused(StatusCode::CONFLICT, "file_too_large"),
            FileError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            FileError::TooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
            FileError::Stale { .. } | FileError::Exists { .. } => {
                ApiError::PreconditionFailed(e.to_string())
            }
            FileError::Io { .. } if e.is_full() => {
                ApiError::InsufficientStorage(crate::error_chain::chain(&e))
            }
            FileError::Io { .. } => ApiError::Internal(crate::error_chain::chain(&e)),
        }
    }
}

#[derive(Deserialize)]
struct FileParams {
    path: String,
}

/// 403 unless the caller may reach the app, 404 unless it exists (has a manifest).
fn check_app(s: &AppState, caller: &Caller, key: &AppKey) -> Result<(), ApiError> {
    caller.check_app(key)?;
    match s.files().read(key)? {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound(format!("app {key} does not exist"))),
    }
}

/// Runs a workspace call on a blocking thread (reads, hashes, fsyncs).
async fn on_disk<T: Send + 'static>(
    s: &AppState,
    call: impl FnOnce(&WorkspaceFiles) -> Result<T, FileError> + Send + 'static,
) -> Result<T, ApiError> {
    let files = s.workspaces.clone();
    tokio::task::spawn_blocking(move || call(&files))
        .await
        .map_err(|e| ApiError::Internal(format!("workspace task failed: {e}")))?
        .map_err(ApiError::from)
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// An etag from a request header, without quotes or a weak marker.
fn bare(value: &str) -> String {
    value
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::BadRequest(format!("{name} is not ASCII")))
        })
        .transpose()
}

/// What a `PUT` expects: `If-Match: "<etag>"` (replace) or `If-None-Match: *` (create).
/// `If-Match: *` is refused like a missing header: it would overwrite blindly.
fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let (m, n) = (
        header(headers, IF_MATCH.as_str())?,
        header(headers, IF_NONE_MATCH.as_str())?,
    );
    match (m.map(str::trim), n.map(str::trim)) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "send If-Match (replace) or If-None-Match: * (create), not both".into(),
        )),
        (Some("*"), None) => Err(ApiError::PreconditionRequired(
            "If-Match: * would overwrite whatever is there; send the file's etag (GET it), or If-None-Match: * to create a new file".into(),
        )),
        (Some(etag), None) => Ok(Precondition::Matches(bare(etag))),
        (None, Some("*")) => Ok(Precondition::Absent),
        (None, Some(_)) => Err(ApiError::BadRequest(
            "on PUT, If-None-Match must be * (create a new file)".into(),
        )),
        (None, None) => Err(ApiError::PreconditionRequired(
            "If-Match: \"<etag>\" is required to replace a file (GET it for its etag); If-None-Match: * creates a new one".into(),
        )),
    }
}

/// `GET …/files`: `{"files":[{"path","type","size","etag"}],"truncated"}`.
async fn list(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
) -> Result<Response, ApiError> {
    check_app(&s, &caller, &key)?;
    let k = key.clone();
    let listing = on_disk(&s, move |w| w.list(&k)).await?;
    Ok(Json(json!({
        "userid": key.userid,
        "appname": key.appname,
        "files": listing.files,
        "truncated": listing.truncated,
    }))
    .into_response())
}

/// `GET …/files/{*path}`: the bytes as they are, with their `ETag` (304 when `If-None-Match`
/// names it).
async fn read(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    ApiPath(p): ApiPath<FileParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_app(&s, &caller, &key)?;
    let path = FilePath::parse(&p.path)?;
    let content = on_disk(&s, move |w| w.read(&key, &path)).await?;
    let etag = quoted(&content.etag);
    let cached = header(&headers, IF_NONE_MATCH.as_str())?
        .is_some_and(|v| v.split(',').any(|t| bare(t) == content.etag));
    let (status, body) = match cached {
        true => (StatusCode::NOT_MODIFIED, Vec::new()),
        false => (StatusCode::OK, content.bytes),
    };
    let headers = [
        (ETAG, etag),
        (CONTENT_TYPE, "application/octet-stream".to_string()),
        (X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        (CACHE_CONTROL, "no-cache".to_string()),
        (
            CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox".to_string(),
        ),
    ];
    Ok((status, headers, body).into_response())
}

/// `PUT …/files/{*path}`: 201 (created) or 200 (replaced) with the new `ETag`.
async fn write(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    ApiPath(p): ApiPath<FileParams>,
    req: Request,
) -> Result<Response, ApiError> {
    check_app(&s, &caller, &key)?;
    let path = FilePath::parse(&p.path)?;
    let pre = precondition(req.headers())?;
    // Read only now, after the checks: an oversized body from a caller who may not write
    // here is refused for what it is.
    let bytes = Bytes::from_request(req, &s)
        .await
        .map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
                "{}: request body too large; files are at most {MAX_FILE_BYTES} bytes",
                path.shown()
            )),
            _ => ApiError::BadRequest(e.body_text()),
        })?;
    let (k, shown, size) = (key.clone(), path.as_str(), bytes.len());
    let written = on_disk(&s, move |w| w.write(&k, &path, &bytes, &pre)).await?;
    let status = match written.created {
        true => StatusCode::CREATED,
        false => StatusCode::OK,
    };
    let body =
        json!({ "path": shown, "etag": written.etag, "size": size, "created": written.created });
    Ok((status, [(ETAG, quoted(&written.etag))], Json(body)).into_response())
}

/// `DELETE …/files/{*path}` with `If-Match: "<etag>"`.
async fn remove(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    ApiPath(p): ApiPath<FileParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_app(&s, &caller, &key)?;
    let path = FilePath::parse(&p.path)?;
    let etag = match header(&headers, IF_MATCH.as_str())?.map(str::trim) {
        Some(v) if v != "*" => bare(v),
        _ => {
            return Err(ApiError::PreconditionRequired(
                "If-Match: \"<etag>\" is required to delete a file (GET it for its etag)".into(),
            ))
        }
    };
    let shown = path.as_str();
    on_disk(&s, move |w| w.delete(&key, &path, &etag)).await?;
    Ok(Json(json!({ "deleted": shown })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn put_preconditions() {
        let m = |p: &[(&'static str, &str)]| precondition(&headers(p));
        assert_eq!(
            m(&[(IF_MATCH.as_str(), "\"abc\"")]).unwrap(),
            Precondition::Matches("abc".into())
        );
        assert_eq!(
            m(&[(IF_MATCH.as_str(), "W/\"abc\"")]).unwrap(),
            Precondition::Matches("abc".into())
        );
        assert_eq!(
            m(&[(IF_NONE_MATCH.as_str(), "*")]).unwrap(),
            Precondition::Absent
        );
        assert!(matches!(m(&[]), Err(ApiError::PreconditionRequired(_))));
        assert!(matches!(
            m(&[(IF_MATCH.as_str(), "*")]),
            Err(ApiError::PreconditionRequired(_))
        ));
        assert!(matches!(
            m(&[(IF_NONE_MATCH.as_str(), "\"abc\"")]),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            m(&[(IF_MATCH.as_str(), "\"a\""), (IF_NONE_MATCH.as_str(), "*")]),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn a_path_changed_mid_request_is_a_conflict_naming_it_not_a_500() {
        let e = ApiError::from(FileError::Changed {
            shown: "d/f.txt".into(),
            name: "d".into(),
        });
        assert!(e.to_string().contains("d/f.txt: 'd' changed"), "{e}");
        assert_eq!(e.into_response().status(), StatusCode::CONFLICT);
    }
}
