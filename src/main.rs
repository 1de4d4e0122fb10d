//! The `berth` command line (SPEC §6): parses arguments, loads the config, runs one command and
//! maps the outcome to an exit code: 0 converged / valid, 1 not converged / invalid, 2 fatal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use berth::admin;
use berth::config::Config;
use berth::engine::Engine;
use berth::executor::Executor;
use berth::reconciler::Reconciler;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A small PaaS node agent: TOML manifests in, converged Docker containers out"
)]
struct Cli {
    /// Base directory for state/, templates/, shared/, apps/ and berth.redb.
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Config file (default: <root>/berth.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch the manifests and keep the engine converged until SIGINT/SIGTERM.
    Serve,
    /// Print what a pass would change; change nothing.
    Plan,
    /// Run one reconcile pass, then exit.
    Apply {
        /// Lift the mass-removal guard for this pass.
        #[arg(long)]
        allow_mass_prune: bool,
    },
    /// Check manifests (all of them, or the given files).
    Validate {
        /// Manifest files; default: every manifest under state/apps.
        paths: Vec<PathBuf>,
    },
    /// Every app with its phase, container and last error.
    Status,
    /// Manage API users and their tokens.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a user; prints its token alone on the last line (shown once).
    Add {
        /// The user name, which is also its userid (a-z, 0-9, 1-30 characters).
        name: String,
        /// Give the user the admin role (every app, user management).
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List,
    /// Remove a user; its token stops working. Its apps stay.
    Remove {
        /// The user name.
        name: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config =
        Config::load(cli.config.as_deref(), cli.root.as_deref()).context("loading config")?;
    match cli.command {
        Command::Serve => berth::serve::serve(config)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Plan => plan(config).await,
        Command::Apply { allow_mass_prune } => apply(config, allow_mass_prune).await,
        Command::Validate { paths } => Ok(validate(&config, &paths)),
        Command::Status => print_outcome(admin::status(&config).await?),
        Command::Users { command } => print_outcome(match command {
            UsersCommand::Add { name, admin } => admin::users_add(&config, &name, admin).await?,
            UsersCommand::List => admin::users_list(&config).await?,
            UsersCommand::Remove { name } => admin::users_remove(&config, &name).await?,
        }),
    }
}

fn print_outcome(o: admin::Outcome) -> anyhow::Result<ExitCode> {
    for line in &o.out {
        println!("{line}");
    }
    if let Some(e) = &o.error {
        eprintln!("berth: {e}");
    }
    Ok(ExitCode::from(admin::exit_status(&o)))
}

async fn reconciler(config: Config) -> anyhow::Result<Reconciler> {
    let engine = Engine::connect(&config.instance)
        .await
        .context("connecting to the Docker engine")?;
    let config = std::sync::Arc::new(config);
    Ok(Reconciler::new(
        config.clone(),
        Executor::new(config, engine),
    ))
}

fn print_problems(problems: &[String]) {
    for p in problems {
        println!("error: {p}");
    }
}

async fn plan(config: Config) -> anyhow::Result<ExitCode> {
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

async fn apply(config: Config, allow_mass_prune: bool) -> anyhow::Result<ExitCode> {
    let report = reconciler(config)
        .await?
        .pass_once(allow_mass_prune)
        .await?;
    print!("{}", report.plan);
    for (key, err) in &report.failures {
        println!("failed: {key}: {err}");
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

fn validate(config: &Config, paths: &[PathBuf]) -> ExitCode {
    let problems = if paths.is_empty() {
        match berth::desired::DesiredState::load(config) {
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
    berth::names::AppKey::new(user, stem).map_err(|e| format!("{shown}: {e}"))?;
    let (manifest, _) = berth::scan::read_manifest(path, path).map_err(|e| e.to_string())?;
    berth::template::Template::load(config, &manifest.template.0)
        .map_err(|e| format!("{shown}: template {}: {e}", manifest.template))?;
    Ok(())
}
