//! `GET /plan` and `POST /apply` (admins; `berth plan` and `berth apply` use them over the
//! socket when a daemon runs): one process decides. The plan is the loop's own (with the
//! rollouts it refused and the removals the API asked for); an apply wakes the loop and waits
//! until a pass that began after the request has finished with nothing in flight, then
//! answers what happened to every app the plan named.
//!
//! **Must not know about** how the loop plans: it asks a [`Planner`].

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiQuery;
use super::AppState;
use crate::model::names::AppKey;
use crate::reconcile::status::Phase;
use crate::reconcile::trigger::Trigger;

/// Longest an apply waits for the loop to settle before answering "still converging".
const APPLY_WAIT: Duration = Duration::from_secs(600);

/// What a pass would do now.
pub struct Planned {
    /// The plan as `berth plan` prints it.
    pub text: String,
    /// Apps the plan changes.
    pub changed: Vec<AppKey>,
    /// Broken manifests and other reasons apps are left alone.
    pub problems: Vec<String>,
    /// Removals the mass-removal guard holds.
    pub prune_blocked: Vec<AppKey>,
}

/// The loop's planner, as the API sees it.
pub trait Planner: Send + Sync {
    /// Plans against the live engine, executing nothing; the error is shown as it is.
    fn plan(&self) -> Pin<Box<dyn Future<Output = Result<Planned, String>> + Send + '_>>;
}

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/plan", get(plan))
        .route("/apply", post(apply))
}

async fn planned(s: &AppState) -> Result<Planned, ApiError> {
    let planner = s.planner.as_ref().ok_or_else(|| {
        ApiError::Unavailable("this server has no reconcile loop to plan with".into())
    })?;
    planner.plan().await.map_err(ApiError::Unavailable)
}

async fn plan(State(s): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.check_admin()?;
    let p = planned(&s).await?;
    Ok(Json(json!({
        "plan": p.text,
        "changes": p.changed.len(),
        "problems": p.problems,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyQuery {
    #[serde(default)]
    allow_mass_prune: bool,
}

async fn apply(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ApplyQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.check_admin()?;
    let mut progress = s.progress.subscribe();
    let asked_at = progress.borrow().begun;
    let p = planned(&s).await?;
    if q.allow_mass_prune && !p.prune_blocked.is_empty() {
        let held: BTreeSet<AppKey> = p.prune_blocked.iter().cloned().collect();
        tracing::info!(
            by = caller.name(),
            apps = held.len(),
            "mass removal released by apply"
        );
        *s.prune_release.lock().expect("prune release") = Some(held);
    }
    s.wake.wake(Trigger::Apply);
    let waited = progress.wait_for(|g| g.settled_after(asked_at) || g.failed_after(asked_at));
    let settled = match tokio::time::timeout(APPLY_WAIT, waited).await {
        Ok(Ok(g)) if g.failed => {
            return Err(ApiError::Unavailable(
                "the reconcile pass could not run (is the Docker engine up?); see berth's log"
                    .into(),
            ))
        }
        Ok(Ok(_)) => true,
        Ok(Err(_)) | Err(_) => false,
    };
    Ok(Json(report(&s, &p, settled)))
}

/// What became of the apps `p` named, from the status board of the pass that settled.
fn report(s: &AppState, p: &Planned, settled: bool) -> Value {
    let board = s.board.snapshot();
    let failed: Vec<Value> = p
        .changed
        .iter()
        .filter_map(|key| {
            let st = board.get(key)?;
            let bad = st.phase.is_failing();
            bad.then(|| json!({"app": key.to_string(), "phase": st.phase.to_string(), "error": st.last_error}))
        })
        .collect();
    let blocked: Vec<String> = board
        .iter()
        .filter(|(_, st)| st.phase == Phase::PruneBlocked)
        .map(|(k, _)| k.to_string())
        .collect();
    let converged = settled && failed.is_empty() && blocked.is_empty() && p.problems.is_empty();
    json!({
        "plan": p.text,
        "changes": p.changed.len(),
        "failed": failed,
        "problems": p.problems,
        "prune_blocked": blocked,
        "settled": settled,
        "converged": converged,
    })
}
