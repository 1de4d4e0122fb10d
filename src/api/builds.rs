//! `POST /apps/{userid}/{appname}/build`: build a built app now (docs/guides/builds.md). For
//! `[build] git` its ref is fetched again and a new commit is built; for a workspace build
//! the loop reads the context again at once instead of at its next resync. 202: the fetch
//! and the build run in the loop's time; the app's status shows them. An image whose inputs
//! have not changed is not built again.

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::AppPath;
use super::AppState;
use crate::model::manifest::Manifest;
use crate::reconcile::trigger::Trigger;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/apps/{userid}/{appname}/build", post(build))
}

async fn build(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
) -> Result<Response, ApiError> {
    caller.check_app(&key)?;
    let c = s.manifest(&key)?;
    let shown = Path::new("state/apps")
        .join(&key.userid)
        .join(format!("{}.toml", key.appname));
    let manifest = Manifest::parse(&shown, &c.text).map_err(|e| ApiError::Unprocessable {
        code: "invalid_manifest",
        message: e.to_string(),
    })?;
    let Some(decl) = manifest.build else {
        return Err(ApiError::Conflict(format!(
            "{key} is made from a template, not built: it has no [build] table"
        )));
    };
    let fetch = decl.git.is_some();
    match (&s.sources, fetch) {
        (Some(sources), true) => sources.refetch(&key),
        _ => s.wake.wake(Trigger::Source),
    }
    let body = json!({ "userid": key.userid, "appname": key.appname, "fetch": fetch });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
