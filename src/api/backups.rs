//! App backups through the API (docs/guides/backups-and-recovery.md):
//! `POST /apps/{userid}/{appname}/backups` takes one now, `GET` lists the app's snapshots,
//! `POST /apps/{userid}/{appname}/restore {"snapshot": "<id>"}` restores one in place. A
//! user reaches only their own apps, and a snapshot is looked for among the app's own
//! (by its tags), so no id reaches another app's data. The work runs in containers behind
//! the [`AppBackups`] the daemon provides; a handler only waits for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiJson, AppPath};
use super::AppState;
use crate::model::names::AppKey;

/// An answer that comes later.
pub type Later<'a> = Pin<Box<dyn Future<Output = Result<Value, ApiError>> + Send + 'a>>;

/// The daemon's backup runner, as the API sees it.
pub trait AppBackups: Send + Sync {
    /// Backs `key` up now; the snapshot's id.
    fn run(&self, key: AppKey) -> Later<'_>;
    /// `key`'s snapshots, newest first.
    fn list(&self, key: AppKey) -> Later<'_>;
    /// Restores `key` in place from `snapshot` (none: the newest).
    fn restore(&self, key: AppKey, snapshot: Option<String>) -> Later<'_>;
}

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/apps/{userid}/{appname}/backups", post(run).get(list))
        .route("/apps/{userid}/{appname}/restore", post(restore))
}

/// `POST .../restore`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    /// A snapshot id or its prefix (8 to 64 hex digits); none: the newest.
    #[serde(default)]
    snapshot: Option<String>,
}

/// The runner, after the caller may reach `key` and `key` has a manifest.
async fn runner<'a>(
    s: &'a AppState,
    caller: &Caller,
    key: &AppKey,
) -> Result<&'a dyn AppBackups, ApiError> {
    caller.check_app(key)?;
    s.manifest(key)?;
    s.backups.as_deref().ok_or_else(|| {
        ApiError::Unavailable("this server runs no backups (no `berth serve`, or its repository could not be opened: see its log)".into())
    })
}

async fn run(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let b = runner(&s, &caller, &key).await?;
    Ok((StatusCode::CREATED, Json(b.run(key).await?)))
}

async fn list(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
) -> Result<Json<Value>, ApiError> {
    let b = runner(&s, &caller, &key).await?;
    Ok(Json(b.list(key).await?))
}

async fn restore(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    ApiJson(body): ApiJson<RestoreBody>,
) -> Result<Json<Value>, ApiError> {
    if let Some(id) = &body.snapshot {
        check_snapshot_id(id)?;
    }
    let b = runner(&s, &caller, &key).await?;
    Ok(Json(b.restore(key, body.snapshot).await?))
}

/// 8 to 64 lower-case hex digits: restic's ids and their prefixes, nothing else.
fn check_snapshot_id(id: &str) -> Result<(), ApiError> {
    let hex = id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if (8..=64).contains(&id.len()) && hex {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "snapshot {id:?}: expected 8 to 64 lower-case hex digits (an id from GET .../backups)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hex_ids_of_a_sane_length_are_taken() {
        assert!(check_snapshot_id("0123abcd").is_ok());
        assert!(check_snapshot_id(&"a".repeat(64)).is_ok());
        for bad in [
            "0123abc",
            "0123ABCD",
            "../../etc",
            "0123abcd --target /",
            &"a".repeat(65),
            "",
        ] {
            assert!(check_snapshot_id(bad).is_err(), "{bad:?}");
        }
    }
}
