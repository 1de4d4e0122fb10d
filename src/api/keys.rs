//! Client keys of one app: list, issue (the key is in that one response only), revoke.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiPath, AppPath};
use super::AppState;
use crate::store::unix_now;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/apps/{userid}/{appname}/client-keys",
            get(list).post(issue),
        )
        .route("/apps/{userid}/{appname}/client-keys/{id}", delete(revoke))
}

async fn list(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
) -> Result<Json<Value>, ApiError> {
    caller.check_app(&key)?;
    let keys = s.db(move |st| st.client_keys(&key)).await?;
    Ok(Json(json!({ "keys": keys })))
}

async fn issue(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.check_app(&key)?;
    // Under the state lock: a delete cannot slip between the check and the issue.
    let _lock = s.write_lock().await;
    s.manifest(&key)?;
    let k = key.clone();
    let max = s.config.policy.rules(&key.userid).max_client_keys_per_app;
    let (info, full) = s
        .db(move |st| st.issue_client_key(&k, unix_now(), max))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": info.id,
            "key": full,
            "userid": info.userid,
            "appname": info.appname,
            "created_at": info.created_at,
            "note": "the key is shown only now; berth keeps only a hash of it",
        })),
    ))
}

async fn revoke(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    ApiPath((_, _, id)): ApiPath<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.check_app(&key)?;
    let id_ok = id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if !id_ok {
        return Err(ApiError::BadRequest(
            "client key id must be 16 lower-case hex characters".into(),
        ));
    }
    let id2 = id.clone();
    s.db(move |st| st.revoke_client_key(&key, &id2)).await?;
    Ok(Json(json!({ "revoked": id })))
}
