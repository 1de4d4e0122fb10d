//! The `berth` command line (SPEC §6): parses arguments and runs one command (`cli::run`),
//! mapping the outcome to an exit code: 0 converged / valid, 1 not converged / invalid, 2 fatal.

use std::process::ExitCode;

use berth::cli::{run, Cli};
use clap::Parser;

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
