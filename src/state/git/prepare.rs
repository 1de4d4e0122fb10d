//! Git mode's start: `state/` becomes (or is checked to be) a clone of the configured
//! remote and branch.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tracing::info;

use super::command::run;
use super::{GitError, GitStatus, GitSync};
use crate::metrics::Metrics;
use crate::model::config::{Config, GitConfig};
use crate::state::history::History;

fn refuse(message: String) -> GitError {
    GitError {
        args: "clone".into(),
        message,
        source: None,
    }
}

impl GitSync {
    /// Makes sure `state/` is a clone of the remote on the configured branch (cloning it when
    /// `state/` is missing or empty) and returns the syncer. A non-empty `state/` that is not
    /// a checkout, or a checkout of another remote or branch, is refused.
    pub async fn prepare(
        config: &Config,
        git: &GitConfig,
        lock: Arc<tokio::sync::Mutex<()>>,
        history: Arc<History>,
        metrics: Arc<Metrics>,
    ) -> Result<GitSync, GitError> {
        let dir = config.state_dir.clone();
        if !dir.join(".git").exists() {
            clone_into_empty(&dir, git).await?;
        }
        let sync = GitSync {
            config: git.clone(),
            dir,
            lock,
            net: Default::default(),
            status: Mutex::new(GitStatus {
                remote: git.remote.clone(),
                branch: git.branch.clone(),
                ..Default::default()
            }),
            wake: Notify::new(),
            history,
            metrics,
        };
        sync.check_checkout().await?;
        let head = sync.git(&["rev-parse", "HEAD"]).await?;
        let mut st = sync.status.lock().expect("git status");
        st.head = Some(head);
        st.diverged = sync.diverged_at().is_some();
        drop(st);
        Ok(sync)
    }

    /// Refuses a checkout of another remote or branch than berth.toml names.
    async fn check_checkout(&self) -> Result<(), GitError> {
        let git = &self.config;
        let origin = self.git(&["config", "--get", "remote.origin.url"]).await?;
        if origin != git.remote {
            return Err(refuse(format!(
                "{} is a clone of {origin}, not of [git] remote {}; fix one of them",
                self.dir.display(),
                git.remote
            )));
        }
        let branch = self.git(&["symbolic-ref", "--short", "HEAD"]).await.ok();
        if branch.as_deref() != Some(git.branch.as_str()) {
            return Err(refuse(format!(
                "{} has {} checked out, not [git] branch {}; check it out or fix the config",
                self.dir.display(),
                branch.as_deref().unwrap_or("a detached HEAD"),
                git.branch
            )));
        }
        Ok(())
    }
}

/// Clones the remote into `dir` when `dir` is missing or empty; anything else is refused.
async fn clone_into_empty(dir: &std::path::Path, git: &GitConfig) -> Result<(), GitError> {
    let empty = match std::fs::read_dir(dir) {
        Ok(mut rd) => rd.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(refuse(format!("{}: {e}", dir.display()))),
    };
    if !empty {
        return Err(refuse(format!(
            "{} exists, is not empty and is not a git checkout; move it away so berth can clone {}",
            dir.display(),
            git.remote
        )));
    }
    let target = dir.to_string_lossy().into_owned();
    let args = [
        "clone",
        "--quiet",
        "--branch",
        &git.branch,
        "--",
        &git.remote,
        &target,
    ];
    run(None, &args, true).await?;
    info!(remote = %git.remote, branch = %git.branch, dir = %dir.display(), "cloned the state repository");
    Ok(())
}
