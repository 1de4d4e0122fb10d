//! The one-shot commands: `plan` (print, change nothing), `apply` (one pass) and `validate`
//! (check manifests without an engine).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::daemon::pass::Reconciler;
use crate::error_chain::chain;
use crate::model::config::Config;
use crate::runtime::engine::Engine;
use crate::runtime::executor::Executor;

async fn reconciler(config: Config) -> anyhow::Result<Reconciler> {
    let engine = Engine::connect(&config.instance)
        .await
        .context("connecting to the Docker engine")?;
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

fn print_problems(problems: &[String]) {
    for p in problems {
        println!("error: {p}");
    }
}

pub(super) async fn plan(config: Config) -> anyhow::Result<ExitCode> {
    let (desired, plan) = reconciler(config).await?.plan_once(false).await?;
    print!("{plan}");
    let problems = desired.problems();
    print_problems(&problems);
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) async fn apply(config: Config, allow_mass_prune: bool) -> anyhow::Result<ExitCode> {
    // Two deciders race: both would create, replace and remove the same containers.
    if crate::cli::admin::daemon_runs(&config).await? {
        anyhow::bail!(
            "`berth serve` is running for this root ({}): it applies every change itself within a second; `berth plan` shows what it will do (to apply by hand, stop serve first)",
            config.socket_path().display()
        );
    }
    let report = reconciler(config)
        .await?
        .pass_once(allow_mass_prune)
        .await?;
    print!("{}", report.plan);
    for (key, err) in &report.failures {
        println!("failed: {key}: {}", chain(err));
    }
    print_problems(&report.desired.problems());
    let failed = report.failures.len();
    println!(
        "apply: {} changed, {failed} failed, {} frozen or ignored{}",
        report.plan.changes.len() - failed,
        report.desired.problems().len(),
        if report.plan.prune_blocked.is_empty() {
            ""
        } else {
            ", prune blocked"
        }
    );
    Ok(if report.converged() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
    crate::model::template::Template::load(config, &manifest.template.0)
        .map_err(|e| format!("{shown}: template {}: {e}", manifest.template))?;
    Ok(())
}
