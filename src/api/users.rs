//! User management (admins; the CLI's `berth users` goes through here over the unix socket).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use super::AppState;
use crate::store::Role;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/users", get(list).post(add))
        .route("/users/{name}", delete(remove))
}

async fn list(State(s): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.check_admin()?;
    Ok(Json(json!({ "users": s.store.list_users()? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    #[serde(default)]
    admin: bool,
}

async fn add(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.check_admin()?;
    let role = if body.admin { Role::Admin } else { Role::User };
    let token = s.store.add_user(&body.name, role)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": body.name, "role": role, "token": token })),
    ))
}

async fn remove(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    caller.check_admin()?;
    crate::names::validate_userid(&name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    s.store.remove_user(&name)?;
    Ok(Json(json!({ "removed": name })))
}
