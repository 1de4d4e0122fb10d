//! Operations endpoints: `/healthz`, `/metrics` (Prometheus text) and `/audit` (admins).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiQuery;
use super::AppState;

/// Most audit entries one call returns.
const MAX_AUDIT_TAIL: usize = 1000;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/audit", get(audit))
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        s.metrics.render(&s.board.snapshot()),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TailQuery {
    tail: Option<usize>,
}

async fn audit(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<TailQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.check_admin()?;
    let n = q.tail.unwrap_or(100);
    if n == 0 || n > MAX_AUDIT_TAIL {
        return Err(ApiError::BadRequest(format!(
            "tail must be 1..={MAX_AUDIT_TAIL}"
        )));
    }
    let entries: Vec<serde_json::Value> = s
        .store
        .audit_tail(n)?
        .into_iter()
        .map(|(seq, e)| {
            serde_json::json!({
                "seq": seq, "at": e.at, "actor": e.actor, "action": e.action, "status": e.status
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "entries": entries })))
}
