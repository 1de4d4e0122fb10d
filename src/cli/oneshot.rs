//! The one-shot commands: `plan` (print, change nothing), `apply` (one pass) and `validate`
//! (check manifests without an engine). With `berth serve` running, `plan` and `apply` ask it
//! over its socket (`GET /plan`, `POST /apply`): one process decides what runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use hyper::Method;

use crate::cli::admin::daemon;
use crate::daemon::pass::Reconciler;
use crate::error_chain::chain;
use crate::model::config::Config;
use crate::model::names::AppKey;
use crate::reconcile::status::{compute_status, AppStatus, Memory};
use crate::runtime::engine::Engine;
use crate::runtime::executor::Executor;
use crate::state::root_lock::acquire_without_daemon;

async fn reconciler(config: Config) -> anyhow::Result<Reconciler> {
    let engine = Engine::connect(&config.instance)
        .await
        .context("connecting to the Docker engine")?
        .bounding_writes(config.engine_timeout, crate::runtime::engine::uncounted())
        .logged_in(&config.runtime)
        .map_err(anyhow::Error::msg)?;
    // Without them a refused spec would be planned (and applied) again: worth a warning,
    // not worth failing a plan over.
    let refused = crate::cli::admin::refusals(&config)
        .await
        .unwrap_or_else(|e| {
            eprintln!("warning: cannot read refused rollouts ({e:#}); they are planned again");
            Default::default()
        });
    let config = std::sync::Arc::new(config);
    Ok(Reconciler::new(config.clone(), Executor::new(config, engine)).with_refusals(refused))
}

/// A plan as text, each change coloured at a terminal.
fn print_plan(text: &str) {
    let on = super::colour::enabled();
    for line in text.lines() {
        println!("{}", super::colour::plan_line(line, on));
    }
}

fn print_problems(problems: &[String]) {
    for p in problems {
        println!("error: {p}");
    }
}

pub(super) async fn plan(config: Config, exit_code: bool) -> anyhow::Result<ExitCode> {
    // One process decides: with a daemon running, its plan is the one that will happen.
    if let Some(answer) = daemon(&config, Method::GET, "/plan", None).await? {
        let v = answer.map_err(|e| anyhow::anyhow!("the daemon could not plan: {e}"))?;
        print_plan(v["plan"].as_str().unwrap_or_default());
        let changes = v["changes"].as_u64().unwrap_or(0) > 0;
        return Ok(plan_exit(&strings(&v["problems"]), exit_code && changes));
    }
    let (desired, plan) = reconciler(config).await?.plan_once(false).await?;
    print_plan(&plan.to_string());
    Ok(plan_exit(
        &desired.problems(),
        exit_code && !plan.changes.is_empty(),
    ))
}

/// 1 when manifests have problems, else 2 when `changes` (asked for with `--exit-code`), else 0.
fn plan_exit(problems: &[String], changes: bool) -> ExitCode {
    print_problems(problems);
    match (problems.is_empty(), changes) {
        (false, _) => ExitCode::from(1),
        (true, true) => ExitCode::from(2),
        (true, false) => ExitCode::SUCCESS,
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    let items = v.as_array().into_iter().flatten();
    items
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

pub(super) async fn apply(config: Config, allow_mass_prune: bool) -> anyhow::Result<ExitCode> {
    // Two deciders would race for the same containers: with a daemon running, it applies.
    let path = format!("/apply?allow_mass_prune={allow_mass_prune}");
    if let Some(answer) = daemon(&config, Method::POST, &path, None).await? {
        let v = answer.map_err(|e| anyhow::anyhow!("the daemon could not apply: {e}"))?;
        return Ok(print_daemon_apply(&v));
    }
    // No daemon answered: a `serve` whose socket is gone still holds the root.
    let _decides =
        acquire_without_daemon(&config.root, "berth apply").map_err(anyhow::Error::msg)?;
    let report = reconciler(config)
        .await?
        .pass_once(allow_mass_prune)
        .await?;
    print!("{}", report.plan);
    for (key, err) in &report.failures {
        println!("failed: {key}: {}", chain(err));
    }
    let problems = report.desired.problems();
    print_problems(&problems);
    let changed = report.plan.changes.len() - report.failures.len();
    let blocked = !report.plan.prune_blocked.is_empty();
    print_summary(changed, report.failures.len(), problems.len(), blocked);
    Ok(exit(report.converged()))
}

/// Prints what the daemon's apply answered, as a local apply prints it.
fn print_daemon_apply(v: &serde_json::Value) -> ExitCode {
    print!("{}", v["plan"].as_str().unwrap_or_default());
    let failed = v["failed"].as_array().cloned().unwrap_or_default();
    for f in &failed {
        let (app, error) = (f["app"].as_str(), f["error"].as_str());
        println!(
            "failed: {}: {}",
            app.unwrap_or("?"),
            error.unwrap_or("failed")
        );
    }
    let problems = strings(&v["problems"]);
    print_problems(&problems);
    let changes = v["changes"].as_u64().unwrap_or(0) as usize;
    let blocked = v["prune_blocked"].as_array().is_some_and(|b| !b.is_empty());
    print_summary(
        changes - failed.len().min(changes),
        failed.len(),
        problems.len(),
        blocked,
    );
    if v["settled"] != true {
        println!("apply: the daemon is still converging; `berth status` shows where it is");
    }
    exit(v["converged"] == true)
}

fn print_summary(changed: usize, failed: usize, problems: usize, blocked: bool) {
    let blocked = if blocked { ", prune blocked" } else { "" };
    println!("apply: {changed} changed, {failed} failed, {problems} frozen or ignored{blocked}");
}

fn exit(converged: bool) -> ExitCode {
    if converged {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Every app's status now, without a daemon: the files and one container list, planned and
/// judged as a pass would (no retry memory: a failed change shows as pending).
pub async fn live_status(
    config: &Config,
) -> anyhow::Result<std::collections::BTreeMap<AppKey, AppStatus>> {
    let refused = crate::cli::admin::refusals(config)
        .await
        .unwrap_or_default();
    let pass = reconciler(config.clone()).await?;
    let (desired, observed) = pass.observe().await?;
    let observed = observed.containers;
    let plan = crate::reconcile::plan::plan(&desired, &observed, pass.options(false));
    let memory = Memory {
        busy: &Default::default(),
        backoffs: &Default::default(),
        refused: &refused,
    };
    let now = (std::time::Instant::now(), std::time::SystemTime::now());
    Ok(compute_status(
        &desired, &observed, &plan, &memory, now.0, now.1,
    ))
}

pub(super) fn validate(config: &Config, paths: &[PathBuf]) -> ExitCode {
    let problems = if paths.is_empty() {
        match crate::state::scan::load_desired(config) {
            Ok(desired) => desired.problems(),
            Err(e) => vec![e.to_string()],
        }
    } else {
        paths
            .iter()
            .filter_map(|p| validate_file(config, p).err())
            .collect()
    };
    print_problems(&problems);
    if problems.is_empty() {
        println!("ok");
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Checks one file as if it were at its path under `state/apps`: its names, its text, and
/// that its template exists.
fn validate_file(config: &Config, path: &Path) -> Result<(), String> {
    let shown = path.display().to_string();
    let user = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let stem = path.file_stem().and_then(|n| n.to_str()).unwrap_or("");
    if path.extension().and_then(|e| e.to_str()) != Some("toml") {
        return Err(format!(
            "{shown}: not a manifest (must be state/apps/<userid>/<appname>.toml)"
        ));
    }
    crate::model::names::AppKey::new(user, stem).map_err(|e| format!("{shown}: {e}"))?;
    let (manifest, _) = crate::state::scan::read_manifest(path, path).map_err(|e| e.to_string())?;
    if let Some(id) = manifest.template_id() {
        crate::model::template::Template::load(config, id)
            .map_err(|e| format!("{shown}: template {id}: {e}"))?;
    }
    Ok(())
}
