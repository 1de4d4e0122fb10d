//! Running the `git` command line: a timeout on every call, stderr's tail in errors, and
//! killing only network commands when their future is dropped.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// One git command may take this long (a fetch over a slow network).
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// A git command that failed.
#[derive(Debug, thiserror::Error)]
#[error("git {args}: {message}")]
pub struct GitError {
    /// The arguments, for the message.
    pub args: String,
    /// The tail of its stderr, or why it could not run.
    pub message: String,
    /// The OS error when git could not be run at all.
    #[source]
    pub source: Option<std::io::Error>,
}

impl GitError {
    /// Whether git failed for want of disk space.
    pub fn is_full(&self) -> bool {
        [
            "No space left on device",
            "Out of diskspace",
            "Disk quota exceeded",
        ]
        .iter()
        .any(|m| self.message.contains(m))
            || self.source.as_ref().is_some_and(crate::store::is_full)
    }
}

/// Runs git. `network` commands are killed when their future is dropped (shutdown); local
/// ones are left to finish so they never leave a lock file behind.
pub(in crate::state) async fn run(
    dir: Option<&Path>,
    args: &[&str],
    network: bool,
) -> Result<(bool, String), GitError> {
    run_command(command(dir), args, network).await
}

/// Runs git for a user's repository with none of berth's own credentials or settings: no
/// system or global config (an `insteadOf` could move the host, `sslVerify` turn checks off),
/// `home` as HOME (no `~/.ssh`, no `.netrc`), no SSH agent, ssh with no config, no key but
/// what `-i` would name, never a prompt.
pub(in crate::state) async fn run_isolated(
    dir: Option<&Path>,
    args: &[&str],
    home: &Path,
) -> Result<(bool, String), GitError> {
    let mut cmd = command(dir);
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .env(
            "GIT_SSH_COMMAND",
            "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none -o StrictHostKeyChecking=accept-new",
        );
    run_command(cmd, args, true).await
}

fn command(dir: Option<&Path>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    cmd
}

async fn run_command(
    mut cmd: tokio::process::Command,
    args: &[&str],
    network: bool,
) -> Result<(bool, String), GitError> {
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .kill_on_drop(network);
    let shown = args.join(" ");
    let out = match tokio::time::timeout(GIT_TIMEOUT, cmd.output()).await {
        Err(_) => {
            return Err(GitError {
                args: shown,
                message: format!("no answer within {GIT_TIMEOUT:?}"),
                source: None,
            })
        }
        Ok(Err(e)) => {
            return Err(GitError {
                args: shown,
                message: "cannot run git".into(),
                source: Some(e),
            })
        }
        Ok(Ok(out)) => out,
    };
    if out.status.success() {
        return Ok((
            true,
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ));
    }
    if out.status.code() == Some(1) && matches!(args.first(), Some(&"merge-base") | Some(&"diff")) {
        return Ok((false, String::new()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(4).collect();
    Err(GitError {
        args: shown,
        message: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
        source: None,
    })
}
