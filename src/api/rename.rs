//! `POST /apps/{userid}/{appname}/rename {"appname": "<new>"}`: renames an app without loss.
//! The answer comes once the files say so (the new manifest with `renamed_from`, the old one
//! gone, one commit in git mode) and the app's records (client keys, revisions) have moved;
//! the loop then takes the container, workspace and volumes over and gives the app its new
//! container (docs/guides/templates-and-values.md). Hence 202: the move of what runs is under way, not done.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiJson, AppPath};
use super::AppState;
use crate::model::names::AppKey;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/apps/{userid}/{appname}/rename", post(rename))
}

/// The body: the new name (same user).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameTo {
    appname: String,
}

async fn rename(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    ApiJson(body): ApiJson<RenameTo>,
) -> Result<Response, ApiError> {
    caller.check_app(&key)?;
    let new =
        AppKey::new(&key.userid, &body.appname).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if new == key {
        return Err(ApiError::Unprocessable {
            code: "same_name",
            message: format!("{key} is already called {}", new.appname),
        });
    }
    nothing_left_of(&s, &new).await?;
    let (store, old, to) = (s.store.clone(), key.clone(), new.clone());
    let adopt = move || {
        store
            .adopt(&old, &to)
            .map(drop)
            .map_err(|e| crate::error_chain::chain(&e))
    };
    let c = s.writer.rename(&key, &new, caller.name(), adopt).await?;
    s.board.note_created(&new, SystemTime::now());
    let body = json!({
        "userid": new.userid,
        "appname": new.appname,
        "renamed_from": key.appname,
        "etag": c.etag,
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// The new name must be free of an earlier app's leftovers: a workspace (a delete keeps it)
/// or a container still being removed would be mixed into the renamed app.
async fn nothing_left_of(s: &AppState, new: &AppKey) -> Result<(), ApiError> {
    let workspace = s.config.apps_dir.join(&new.userid).join(&new.appname);
    if std::fs::symlink_metadata(&workspace).is_ok() {
        return Err(ApiError::Conflict(format!(
            "apps/{}/{} exists (an earlier app of that name left it); purge it or choose another name",
            new.userid, new.appname
        )));
    }
    let listed = s
        .containers
        .list()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if listed.iter().any(|o| &o.key == new) {
        return Err(ApiError::Conflict(format!(
            "a container of {new} is still there (its removal has not run yet); try again shortly"
        )));
    }
    Ok(())
}
