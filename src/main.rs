//! The `berth` command line (docs/reference/cli.md): parses arguments and runs one command (`cli::run`),
//! mapping the outcome to an exit code: 0 converged / valid, 1 not converged / invalid, 2 fatal.

use std::process::ExitCode;

use berth::cli::{run, Cli};
use clap::Parser;

fn main() -> ExitCode {
    // Before anything else: `berth __hook-shim <hook>` is a hook's shim, not a command.
    berth::runtime::hook_shim::run_if_asked();
    use tracing_subscriber::prelude::*;
    let wanted =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // bollard logs request bodies at debug and trace: container environments, secrets among
    // them. Whatever RUST_LOG says, its lines past info are dropped.
    let no_bodies = tracing_subscriber::filter::filter_fn(|m| {
        !(m.target().starts_with("bollard") && *m.level() > tracing::Level::INFO)
    });
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry()
        .with(stderr.with_filter(wanted).with_filter(no_bodies))
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
