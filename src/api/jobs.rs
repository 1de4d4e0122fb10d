//! Scheduled jobs of one app (docs/guides/jobs.md): its jobs with their next run, last
//! result and recent runs; a run asked for now; one run with its kept output. Runs are read
//! from the database; a run now is asked of the scheduler, which applies the job's
//! concurrency rule (the API holds no engine).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::AppPath;
use super::AppState;
use crate::runtime::job_asks::AskError;
use crate::store::JobRun;

/// The newest runs `GET .../jobs` shows.
const RECENT: usize = 50;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/apps/{userid}/{appname}/jobs", get(list))
        .route("/apps/{userid}/{appname}/jobs/{job}/run", post(run_now))
        .route("/apps/{userid}/{appname}/jobs/runs/{id}", get(one_run))
}

#[derive(Deserialize)]
struct JobParam {
    job: String,
}

#[derive(Deserialize)]
struct RunParam {
    id: String,
}

/// A run without its output (lists).
fn summary(r: &JobRun) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("logs");
        o.remove("spec_hash");
    }
    v
}

async fn list(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
) -> Result<Json<Value>, ApiError> {
    caller.check_app(&key)?;
    let k = key.clone();
    let runs = s.db(move |st| st.job_runs(&k)).await?;
    let jobs = s.jobs.describe(key).await.unwrap_or_default();
    let jobs: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let mine = runs.iter().filter(|r| r.job == j.name);
            let ended = mine.filter(|r| r.ended.is_some()).max_by_key(|r| r.id);
            let mut v = serde_json::to_value(j).unwrap_or_default();
            v["last_result"] = json!(ended.map(|r| r.result.as_str()));
            v["last_run"] = json!(ended.map(|r| r.id));
            v
        })
        .collect();
    let recent: Vec<Value> = runs.iter().rev().take(RECENT).map(summary).collect();
    Ok(Json(json!({ "jobs": jobs, "runs": recent })))
}

async fn run_now(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    Path(p): Path<JobParam>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.check_app(&key)?;
    match s.jobs.run_now(key, p.job).await {
        Ok(run) => Ok((StatusCode::ACCEPTED, Json(json!({ "run": run })))),
        Err(AskError::NoSuchJob(why)) => Err(ApiError::NotFound(why)),
        Err(e @ AskError::Busy { .. }) => Err(ApiError::Conflict(e.to_string())),
        Err(AskError::Unavailable) => Err(ApiError::Unavailable(AskError::Unavailable.to_string())),
        Err(AskError::Failed(why)) => Err(ApiError::Internal(why)),
    }
}

async fn one_run(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    Path(p): Path<RunParam>,
) -> Result<Json<Value>, ApiError> {
    caller.check_app(&key)?;
    let bad = || ApiError::BadRequest(format!("run id {:?} is not a number", p.id));
    let id: u64 = p.id.parse().map_err(|_| bad())?;
    let k = key.clone();
    match s.db(move |st| st.job_run(&k, id)).await? {
        Some(run) => Ok(Json(json!({ "run": run }))),
        None => Err(ApiError::NotFound(format!(
            "{key} has no run {id} (finished runs are kept to each job's history limits)"
        ))),
    }
}
