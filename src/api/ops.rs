//! Operations endpoints: `/healthz`, `/metrics` (Prometheus text) and `/audit` (admins).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiQuery;
use super::AppState;
use crate::reconcile::trigger::Trigger;

/// Most audit entries one call returns.
const MAX_AUDIT_TAIL: usize = 1000;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/audit", get(audit))
        .route("/prune/release", post(release_prune))
        .route("/backup", post(backup))
}

/// `berth backup FILE` through the daemon: a consistent copy of the database, answered as
/// its bytes; the CLI writes the file, with its own user's view of the file system (the
/// packaged unit has its own /tmp and may write only its state directory). Only over the unix
/// socket: whoever can open it owns the machine's berth already. A body (the `path` an
/// earlier CLI sent, for the daemon to write to) is refused, so no CLI reports a file written
/// that is not.
async fn backup(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, ApiError> {
    if !matches!(caller, Caller::Local) {
        return Err(ApiError::Forbidden(
            "the database is handed out only over the unix socket (`berth backup FILE`)".into(),
        ));
    }
    if !body.is_empty() {
        return Err(ApiError::BadRequest(
            "POST /backup takes no body: it answers the copy, and the caller writes the file"
                .into(),
        ));
    }
    let snapshot = s.db(|st| st.snapshot()).await?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(snapshot.file));
    let headers = [
        (CONTENT_TYPE, "application/octet-stream".to_string()),
        (CONTENT_LENGTH, snapshot.len.to_string()),
        (BACKUP_ROWS_NAME, snapshot.rows.to_string()),
    ];
    Ok((headers, axum::body::Body::from_stream(stream)).into_response())
}

/// The header `POST /backup` tells the number of records in.
pub const BACKUP_ROWS: &str = "x-berth-backup-rows";
const BACKUP_ROWS_NAME: axum::http::HeaderName = axum::http::HeaderName::from_static(BACKUP_ROWS);

/// Readiness with reasons: the engine answered the last pass and answers its pings in time
/// (a hung engine is not ready), the database can be read and
/// written (its last write did not fail, or it was reopened since), the file watcher follows
/// the configured directories, the
/// state clone follows its remote (git mode). 503 when any check fails.
async fn readyz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let check = |ok: bool, why: &str| match ok {
        true => json!({"ok": true}),
        false => json!({"ok": false, "reason": why}),
    };
    let engine = match s.containers.engine_answers() {
        Err(why) => check(false, &format!("the engine does not answer: {why}")),
        Ok(()) => check(
            s.metrics.engine_is_up(),
            "the last reconcile pass could not list containers (or none has run yet)",
        ),
    };
    let db = s.db(|st| {
        st.statuses()?;
        match st.writable() {
            true => Ok(None),
            false => Ok(Some(
                st.last_write_failure()
                    .unwrap_or_else(|| "the reopen failed".to_string()),
            )),
        }
    });
    let db = match db.await {
        Ok(None) => check(true, ""),
        Ok(Some(why)) => check(
            false,
            &format!(
                "the last database write failed and the file could not be reopened yet: {why}"
            ),
        ),
        Err(e) => check(false, &e.to_string()),
    };
    let watcher = check(
        s.metrics.watcher_is_armed(),
        "the state or templates directory is gone and cannot be watched",
    );
    let mut checks = json!({"engine": engine, "database": db, "watcher": watcher});
    if let Some(git) = &s.git {
        let diverged = git.status().diverged;
        let why = "the state clone and its remote have diverged";
        checks["git"] = check(!diverged, why);
    }
    let ready = checks
        .as_object()
        .is_some_and(|c| c.values().all(|v| v["ok"] == true));
    let status = match ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(json!({"ready": ready, "checks": checks})))
}

/// OpenMetrics to a scraper that asks for it, else Prometheus text 0.0.4.
async fn metrics(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    use crate::metrics::exposition::{to_prometheus_text, OPENMETRICS, PROMETHEUS_TEXT};
    let openmetrics = s.metrics.render(&s.board.snapshot());
    let accept = headers.get(axum::http::header::ACCEPT);
    let accept = accept.and_then(|v| v.to_str().ok()).unwrap_or("");
    match accept.contains("application/openmetrics-text") {
        true => ([(CONTENT_TYPE, OPENMETRICS)], openmetrics),
        false => (
            [(CONTENT_TYPE, PROMETHEUS_TEXT)],
            to_prometheus_text(&openmetrics),
        ),
    }
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
        .db(move |st| st.audit_tail(n))
        .await?
        .into_iter()
        .map(|(seq, e)| {
            serde_json::json!({
                "seq": seq, "at": e.at, "actor": e.actor, "action": e.action, "status": e.status
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "entries": entries })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmQuery {
    confirm: Option<String>,
}

/// Lets the loop make a removal the mass-removal guard holds (admins; confirmed). Without a
/// token: 202 with the apps that would go and a token. With it: the next pass removes them.
async fn release_prune(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ConfirmQuery>,
) -> Result<axum::response::Response, ApiError> {
    caller.check_admin()?;
    let held_keys: std::collections::BTreeSet<crate::model::names::AppKey> = s
        .board
        .snapshot()
        .into_iter()
        .filter(|(_, st)| st.phase == crate::reconcile::status::Phase::PruneBlocked)
        .map(|(k, _)| k)
        .collect();
    let held: Vec<String> = held_keys.iter().map(|k| k.to_string()).collect();
    // The token confirms exactly this set: if the guard holds anything else by then, the
    // confirm is refused and the caller sees the new list.
    let action = format!("release prune: {}", held.join(","));
    if held.is_empty() {
        return Err(ApiError::Conflict(
            "the mass-removal guard holds nothing right now".into(),
        ));
    }
    let warning = format!(
        "this removes the containers of {} apps whose manifests are gone; nothing was changed. Repeat with ?confirm=<token> within {{ttl}} to go ahead",
        held.len()
    );
    if let Some(ask) = s.confirmations.confirm(
        q.confirm.as_deref(),
        &action,
        caller.name(),
        &warning,
        serde_json::json!({ "apps": held }),
    )? {
        return Ok(ask);
    }
    tracing::info!(by = caller.name(), apps = %held.join(", "), "mass removal released");
    *s.prune_release.lock().expect("prune release") = Some(held_keys);
    s.wake.wake(Trigger::ApiWrite);
    Ok(Json(serde_json::json!({ "released": held })).into_response())
}
