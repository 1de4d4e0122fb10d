//! The bridge API: what an app's own clients (holding a client key) may ask. App info
//! without secrets or env values (as the last reconcile pass saw it), and `activate` (set the
//! app running).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use super::auth::ClientKey;
use super::error::ApiError;
use super::extract::AppPath;
use super::AppState;
use crate::model::manifest::Manifest;
use crate::model::names::AppKey;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/bridge/apps/{userid}/{appname}", get(info))
        .route("/bridge/apps/{userid}/{appname}/activate", post(activate))
}

/// What the bridge tells an app's clients.
#[derive(Serialize)]
struct Info {
    userid: String,
    appname: String,
    state: Option<&'static str>,
    domain: Option<String>,
    phase: &'static str,
}

async fn info(
    State(s): State<Arc<AppState>>,
    client: ClientKey,
    AppPath(key): AppPath,
) -> Result<Json<Info>, ApiError> {
    client.check_app(&key)?;
    let phase = s.board.phase(&key);
    // The hot path: what the last pass read. An app it did not see valid is read from disk.
    let (state, domain) = match (phase, s.board.wanted(&key)) {
        (Some(_), Some(w)) => (Some(w.state.as_str()), w.domain),
        _ => from_disk(&s, &key)?,
    };
    let phase = phase.map_or("pending", |p| p.as_str());
    Ok(Json(Info {
        userid: key.userid,
        appname: key.appname,
        state,
        domain,
        phase,
    }))
}

/// State and domain from the manifest itself; none for a broken one (it still has a phase,
/// frozen, but no trustworthy state or domain).
fn from_disk(
    s: &AppState,
    key: &AppKey,
) -> Result<(Option<&'static str>, Option<String>), ApiError> {
    let c = s.manifest(key)?;
    let parsed = Manifest::parse(std::path::Path::new(""), &c.text).ok();
    Ok((
        parsed.as_ref().map(|m| m.state.as_str()),
        parsed.and_then(|m| m.domain.map(|d| d.0)),
    ))
}

async fn activate(
    State(s): State<Arc<AppState>>,
    client: ClientKey,
    AppPath(key): AppPath,
) -> Result<Json<Value>, ApiError> {
    client.check_app(&key)?;
    let who = format!("client:{}", client.0.id);
    let c = s
        .writer
        .set_field(&key, &who, "activate", "state", "running".into())
        .await
        .map_err(|e| match ApiError::from(e) {
            // The parse error quotes the file; a client-key holder must not read it. A policy
            // refusal says only which rule: its message may name other apps or limits.
            ApiError::Unprocessable {
                code: "invalid_manifest" | "unknown_template",
                ..
            } => ApiError::Conflict(
                "the app's manifest is broken; its owner must fix it first".into(),
            ),
            ApiError::Unprocessable { code, .. } => ApiError::Unprocessable {
                code,
                message: format!("the server's policy refuses running this app ({code})"),
            },
            other => other,
        })?;
    Ok(Json(json!({ "state": "running", "etag": c.etag })))
}
