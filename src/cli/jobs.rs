//! `berth jobs <userid>/<appname>` (an app's jobs and newest runs) and `berth jobs run
//! <userid>/<appname> <job>` (a run now, under the job's concurrency rule), through the
//! daemon's socket (docs/guides/jobs.md). Without a daemon the runs are read from the
//! database, and nothing can be run.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use hyper::Method;
use serde_json::Value;

use crate::cli::admin::{daemon, Outcome};
use crate::model::config::Config;
use crate::model::names::AppKey;

fn app_key(app: &str) -> anyhow::Result<AppKey> {
    let (userid, appname) = app
        .split_once('/')
        .context("name the app as <userid>/<appname>")?;
    Ok(AppKey::new(userid, appname)?)
}

/// Lists `app`'s jobs and newest runs.
pub async fn list(config: &Config, app: &str) -> anyhow::Result<Outcome> {
    let key = app_key(app)?;
    let path = format!("/apps/{}/{}/jobs", key.userid, key.appname);
    let answer = match daemon(config, Method::GET, &path, None).await? {
        Some(answer) => answer,
        None => offline(config, &key),
    };
    Ok(match answer {
        Ok(v) => Outcome::ok(render(&v)),
        Err(e) => Outcome::failed(e),
    })
}

/// Without a daemon: the recorded runs only (the schedule is the daemon's).
fn offline(config: &Config, key: &AppKey) -> Result<Value, String> {
    let chain = |e: crate::store::StoreError| crate::error_chain::chain(&e);
    let store = crate::store::Store::open(&config.database).map_err(chain)?;
    let runs = store.job_runs(key).map_err(chain)?;
    let runs: Vec<Value> = runs
        .iter()
        .rev()
        .take(50)
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    Ok(serde_json::json!({ "jobs": [], "runs": runs }))
}

/// Starts `app`'s `job` now.
pub async fn run(config: &Config, app: &str, job: &str) -> anyhow::Result<Outcome> {
    let key = app_key(app)?;
    let path = format!("/apps/{}/{}/jobs/{job}/run", key.userid, key.appname);
    Ok(match daemon(config, Method::POST, &path, None).await? {
        None => Outcome::failed("`berth serve` is not running: jobs run under the daemon".into()),
        Some(Err(e)) => Outcome::failed(e),
        Some(Ok(v)) => Outcome::ok(vec![format!(
            "started run {} of {key} {job}; `berth jobs {key}` shows it",
            v["run"]
        )]),
    })
}

fn when(v: &Value) -> String {
    match v.as_u64() {
        Some(s) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string()
        }
        None => "-".into(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The answer as two tables: the jobs, then the runs (newest first).
fn render(v: &Value) -> Vec<String> {
    let mut out = vec![format!(
        "{:<16} {:<24} {:<21} LAST",
        "JOB", "SCHEDULE", "NEXT RUN"
    )];
    for j in v["jobs"].as_array().into_iter().flatten() {
        let schedule = format!("{} {}", text(&j["schedule"]), text(&j["timezone"]));
        out.push(format!(
            "{:<16} {:<24} {:<21} {}",
            text(&j["name"]),
            schedule,
            when(&j["next_run"]),
            text(&j["last_result"])
        ));
    }
    out.push(String::new());
    out.push(format!(
        "{:<6} {:<16} {:<9} {:<21} {:<21} {:<10} EXIT",
        "RUN", "JOB", "TRIGGER", "DUE", "ENDED", "RESULT"
    ));
    for r in v["runs"].as_array().into_iter().flatten() {
        out.push(format!(
            "{:<6} {:<16} {:<9} {:<21} {:<21} {:<10} {}",
            text(&r["id"]),
            text(&r["job"]),
            text(&r["trigger"]),
            when(&r["scheduled_for"]),
            when(&r["ended"]),
            text(&r["result"]),
            text(&r["exit_code"])
        ));
    }
    out
}
