//! The command line: parsing, the one-shot commands (`plan`, `apply`, `validate`), and the
//! admin commands (`users`, `status`) that talk to a running daemon over its socket or to the
//! database when none runs. Output and exit codes are decided here.
//!
//! **Owns** what a person sees in a terminal. It is a surface: it may use every other layer,
//! and no layer uses it.

pub mod admin;
mod backups;
mod build;
pub mod client;
mod colour;
mod init;
mod jobs;
mod mv;
mod new_file;
pub mod oneshot;
mod secrets;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::model::config::Config;

#[derive(Parser)]
#[command(
    name = "berth",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("BERTH_COMMIT"), ")"),
    about = "A small PaaS node agent: TOML manifests in, converged Docker containers out"
)]
pub struct Cli {
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
pub enum Command {
    /// Watch the manifests and keep the engine converged until SIGINT/SIGTERM.
    Serve,
    /// Print what a pass would change; change nothing.
    Plan {
        /// Exit 0 when nothing would change, 2 when something would, 1 on invalid manifests
        /// (like `terraform plan -detailed-exitcode`).
        #[arg(long)]
        exit_code: bool,
    },
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
    /// Write a consistent copy of the database to FILE (while `serve` runs, too: it hands
    /// the copy over its socket, and the file is written here).
    Backup {
        /// Where the copy goes; must not exist.
        file: PathBuf,
    },
    /// Rename an app, keeping its workspace, volumes, secrets, client keys, revisions and
    /// domain (through the daemon when it runs).
    Mv {
        /// The app, as <userid>/<appname>.
        app: String,
        /// Its new name (same user).
        new_name: String,
    },
    /// Build a built app now: fetch its [build] git ref again, or read its workspace again
    /// (through the running daemon; without one, `berth apply` fetches and builds).
    Build {
        /// The app, as <userid>/<appname>.
        app: String,
    },
    /// An app's scheduled jobs and their newest runs (`berth jobs <userid>/<appname>`), or
    /// a run now (`berth jobs run <userid>/<appname> <job>`).
    #[command(args_conflicts_with_subcommands = true)]
    Jobs {
        #[command(subcommand)]
        command: Option<JobsCommand>,
        /// The app, as <userid>/<appname>.
        app: Option<String>,
    },
    /// App backups with restic: take one now, list an app's snapshots (through the daemon).
    Backups {
        #[command(subcommand)]
        command: BackupsCommand,
    },
    /// Restore an app in place from a snapshot (default: the newest), after a safety
    /// snapshot of its data as it is now (through the daemon).
    Restore {
        /// The app, as <userid>/<appname>.
        app: String,
        /// The snapshot's id (from `berth backups list`) or a prefix of 8 or more digits.
        #[arg(long)]
        snapshot: Option<String>,
    },
    /// Manage API users and their tokens.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Make DIR a berth root: berth.toml with every default shown, the shipped templates, a
    /// first app. Nothing that exists is overwritten.
    Init {
        /// The root to make (default: --root, else the current directory).
        dir: Option<PathBuf>,
    },
    /// Print the man page, berth(1), in roff (the .deb ships it).
    #[command(hide = true)]
    Manpage,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// The server's secrets key: its public key, and encrypting values for `[secrets]`.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Print the JSON Schema of a manifest or of template.toml, for editors (the committed
    /// copies are templates/manifest.schema.json and templates/template.schema.json).
    Schema {
        /// Which file's schema.
        which: SchemaKind,
    },
}

/// `berth jobs run`.
#[derive(clap::Subcommand)]
pub enum JobsCommand {
    /// Start a run of the job now, under its concurrency rule (through `berth serve`).
    Run {
        /// The app, as <userid>/<appname>.
        app: String,
        /// The job's name.
        job: String,
    },
}

/// The files `berth schema` describes.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SchemaKind {
    /// An app manifest, state/apps/<userid>/<appname>.toml.
    Manifest,
    /// A template's templates/<id>/template.toml.
    Template,
}

#[derive(Subcommand)]
pub enum BackupsCommand {
    /// Back the app's data up now.
    Run {
        /// The app, as <userid>/<appname>.
        app: String,
    },
    /// The app's snapshots, newest first: id, time, size in bytes, reason.
    List {
        /// The app, as <userid>/<appname>.
        app: String,
    },
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Print the server's public key (age1...), making the key on a fresh root.
    Recipient,
    /// Read a value on stdin and print the `[secrets]` line `NAME = "age:..."`, sealed for
    /// one app: it opens in that app's manifest only.
    Encrypt {
        /// The variable's name (with `--value`, the template value's name).
        name: String,
        /// The app the value is for, `<userid>/<appname>`.
        #[arg(long, value_name = "USER/APP")]
        app: String,
        /// Seal a template's secret value for `[values]` (scope `<user>/<app>/values.NAME`)
        /// instead of a `[secrets]` entry.
        #[arg(long)]
        value: bool,
        /// Encrypt to this public key (`berth secrets recipient` on the server) instead of
        /// reading the key file, so no private key is needed.
        #[arg(long, value_name = "AGE1...")]
        recipient: Option<String>,
    },
    /// Re-encrypt every manifest's secrets to a new key (through the daemon when it runs;
    /// one commit in git mode); no container is recreated. Once every value is re-sealed the
    /// old key is removed (and any kept by an earlier `--keep-old`).
    Rotate {
        /// Keep the old key in berth.key.old (opening only) until `forget-old`, so old
        /// revisions and commits not yet pulled still open.
        #[arg(long)]
        keep_old: bool,
    },
    /// Remove the keys `rotate --keep-old` kept (berth.key.old).
    ForgetOld,
}

#[derive(Subcommand)]
pub enum UsersCommand {
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

/// Runs one command; the exit code says how it went (0, 1) and an error means 2.
/// The commands that need no config (they run before any root exists, or describe files
/// rather than a server); `None` for the others.
fn without_config(cli: &Cli) -> Option<anyhow::Result<ExitCode>> {
    let done = |()| ExitCode::SUCCESS;
    Some(match &cli.command {
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "berth", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpage => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut std::io::stdout())
            .context("writing the man page")
            .map(done),
        Command::Init { dir } => {
            let dir = dir.as_deref().or(cli.root.as_deref());
            init::init(dir.unwrap_or(Path::new("."))).and_then(print_outcome)
        }
        Command::Schema { which } => {
            let schema = match which {
                SchemaKind::Manifest => crate::model::schema::manifest(),
                SchemaKind::Template => crate::model::schema::template(),
            };
            print!("{}", crate::model::schema::to_text(&schema));
            Ok(ExitCode::SUCCESS)
        }
        _ => return None,
    })
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(done) = without_config(&cli) {
        return done;
    }
    let config =
        Config::load(cli.config.as_deref(), cli.root.as_deref()).context("loading config")?;
    match cli.command {
        Command::Serve => crate::daemon::serve::serve(config)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Plan { exit_code } => oneshot::plan(config, exit_code).await,
        Command::Apply { allow_mass_prune } => oneshot::apply(config, allow_mass_prune).await,
        Command::Validate { paths } => Ok(oneshot::validate(&config, &paths)),
        Command::Status => print_outcome(admin::status(&config).await?),
        Command::Completions { .. }
        | Command::Schema { .. }
        | Command::Init { .. }
        | Command::Manpage => {
            unreachable!("answered before the config is read")
        }
        Command::Mv { app, new_name } => print_outcome(mv::mv(&config, &app, &new_name).await?),
        Command::Build { app } => print_outcome(build::build(&config, &app).await?),
        Command::Jobs { command, app } => print_outcome(match (command, app) {
            (Some(JobsCommand::Run { app, job }), _) => jobs::run(&config, &app, &job).await?,
            (None, Some(app)) => jobs::list(&config, &app).await?,
            (None, None) => {
                admin::Outcome::failed("name the app: berth jobs <userid>/<appname>".into())
            }
        }),
        Command::Backup { file } => print_outcome(admin::backup(&config, &file).await?),
        Command::Backups { command } => print_outcome(match command {
            BackupsCommand::Run { app } => backups::run(&config, &app).await?,
            BackupsCommand::List { app } => backups::list(&config, &app).await?,
        }),
        Command::Restore { app, snapshot } => {
            print_outcome(backups::restore(&config, &app, snapshot.as_deref()).await?)
        }
        Command::Secrets { command } => secrets_command(config, command).await,
        Command::Users { command } => print_outcome(match command {
            UsersCommand::Add { name, admin } => admin::users_add(&config, &name, admin).await?,
            UsersCommand::List => admin::users_list(&config).await?,
            UsersCommand::Remove { name } => admin::users_remove(&config, &name).await?,
        }),
    }
}

async fn secrets_command(config: Config, command: SecretsCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretsCommand::Recipient => secrets::recipient(&config),
        SecretsCommand::Encrypt {
            name,
            app,
            value,
            recipient,
        } => {
            let target = secrets::Target {
                name: &name,
                app: &app,
                value,
            };
            secrets::encrypt(&config, &target, recipient.as_deref())
        }
        SecretsCommand::Rotate { keep_old } => secrets::rotate(config, keep_old).await,
        SecretsCommand::ForgetOld => secrets::forget_old(&config),
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
