//! The bridge API: what an app's own clients (holding a client key) may ask. App info
//! without secrets or env values, and `activate` (set the app running).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::ClientKey;
use super::error::ApiError;
use super::extract::AppPath;
use super::AppState;
use crate::manifest::Manifest;
use crate::manifest_files::WriteError;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/bridge/apps/{userid}/{appname}", get(info))
        .route("/bridge/apps/{userid}/{appname}/activate", post(activate))
}

async fn info(
    State(s): State<Arc<AppState>>,
    client: ClientKey,
    AppPath(key): AppPath,
) -> Result<Json<Value>, ApiError> {
    client.check_app(&key)?;
    let Some(c) = s.files.read(&key)? else {
        return Err(ApiError::NotFound(format!("app {key} does not exist")));
    };
    // A broken manifest still has a phase (frozen), but no trustworthy state or domain.
    let parsed = Manifest::parse(std::path::Path::new(""), &c.text).ok();
    let phase = s
        .board
        .snapshot()
        .get(&key)
        .map_or_else(|| "pending".to_string(), |st| st.phase.to_string());
    Ok(Json(json!({
        "userid": key.userid,
        "appname": key.appname,
        "state": parsed.as_ref().map(|m| m.state.to_string()),
        "domain": parsed.as_ref().and_then(|m| m.domain.as_ref().map(|d| d.0.clone())),
        "phase": phase,
    })))
}

async fn activate(
    State(s): State<Arc<AppState>>,
    client: ClientKey,
    AppPath(key): AppPath,
) -> Result<Json<Value>, ApiError> {
    client.check_app(&key)?;
    let who = format!("client:{}", client.0.id);
    let k = key.clone();
    let c = s
        .write(&key, &who, "activate", move |s| async move {
            let c = s
                .files
                .edit(&k, |doc| doc["state"] = toml_edit::value("running"))
                .await
                .map_err(|e| match e {
                    // The parse error quotes the file; a client-key holder must not read it.
                    WriteError::Invalid(_) | WriteError::UnknownTemplate(_) => ApiError::Conflict(
                        "the app's manifest is broken; its owner must fix it first".into(),
                    ),
                    other => other.into(),
                })?;
            let etag = c.etag.clone();
            Ok((c, Some(etag)))
        })
        .await?;
    Ok(Json(json!({ "state": "running", "etag": c.etag })))
}
