//! Revision history of one app: list, and roll back to a kept revision. A rollback writes the
//! old text through the normal write path (validated, atomic), so it is itself a new revision.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiJson, AppPath};
use super::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/apps/{userid}/{appname}/revisions", get(list))
        .route("/apps/{userid}/{appname}/rollback", post(rollback))
}

async fn list(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
) -> Result<Json<Value>, ApiError> {
    caller.check_app(&key)?;
    let revisions = s.db(move |st| st.revisions(&key)).await?;
    Ok(Json(json!({ "revisions": revisions })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    revision: u64,
}

async fn rollback(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    ApiJson(body): ApiJson<RollbackBody>,
) -> Result<Json<Value>, ApiError> {
    caller.check_app(&key)?;
    let (k, n) = (key.clone(), body.revision);
    let Some(rev) = s.db(move |st| st.revision(&k, n)).await? else {
        return Err(ApiError::NotFound(format!(
            "{key} has no revision {} (only the newest {} are kept)",
            body.revision, s.config.revisions_kept
        )));
    };
    let (k, content, n) = (key.clone(), rev.content.clone(), rev.revision);
    let source = format!("api:{} (rollback to {n})", caller.name());
    let action = format!("roll back to revision {n} of");
    let c = s
        .write(&key, caller.name(), &action, move |s, held| async move {
            let c = held.restore(&k, &content).await?;
            s.history.note_source(&k, &c.etag, source);
            Ok((c, None))
        })
        .await?;
    Ok(Json(json!({
        "rolled_back_to": rev.revision,
        "spec_hash": rev.spec_hash,
        "etag": c.etag,
    })))
}
