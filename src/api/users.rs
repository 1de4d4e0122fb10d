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
    let users = s.db(|st| st.list_users()).await?;
    Ok(Json(json!({ "users": users })))
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
    let name = body.name.clone();
    let token = s.db(move |st| st.add_user(&name, role)).await?;
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
    crate::model::names::validate_userid(&name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let n = name.clone();
    s.db(move |st| st.remove_user(&n)).await?;
    Ok(Json(json!({ "removed": name })))
}
