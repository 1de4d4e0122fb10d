//! Git mode (`[git]` in berth.toml): `state/` is a clone of a remote. berth fetches on an
//! interval and on a signed webhook and fast-forwards; API writes become local commits that
//! are pushed. It uses the `git` command line, each call with a timeout.
//!
//! **Invariant: berth never rewrites history or merges.** Fast-forward only: when the remote
//! is ahead berth follows it; when local is ahead (API commits) berth pushes; when the two
//! have diverged (a force-push, or commits on both sides) berth stops following, keeps the last
//! good checkout running, and reports the divergence until a person resolves it. A failed fetch
//! changes nothing either.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::{Config, GitConfig};
use crate::history::History;
use crate::manifest_files::etag;
use crate::metrics::Metrics;
use crate::names::AppKey;
use crate::store::unix_now;

/// One git command may take this long (a fetch over a slow network).
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// A git command that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("git {args}: {message}")]
pub struct GitError {
    /// The arguments, for the message.
    pub args: String,
    /// The tail of its stderr, or why it could not run.
    pub message: String,
}

/// What the last sync found, for `GET /git`, `berth status` and logs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GitStatus {
    /// The remote followed.
    pub remote: String,
    /// Its branch.
    pub branch: String,
    /// The checkout's commit.
    pub head: Option<String>,
    /// The remote branch's commit at the last successful fetch.
    pub remote_head: Option<String>,
    /// `up-to-date`, `pulled`, `pushed`, `diverged` or `error`.
    pub last_sync: String,
    /// Unix seconds of the last sync.
    pub last_sync_at: Option<u64>,
    /// Why the last sync or push failed, or how the histories diverged.
    pub last_error: Option<String>,
    /// Local and remote have diverged: berth follows nothing until a person resolves it.
    pub diverged: bool,
}

/// The clone and everything berth does with it.
pub struct GitSync {
    /// `[git]`.
    pub config: GitConfig,
    /// The clone (`state_dir`).
    dir: PathBuf,
    /// The state write lock, shared with the API: a pull never runs between an API write and
    /// its commit (a fast-forward would bring back a file the API just deleted).
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The last sync's findings.
    status: Mutex<GitStatus>,
    /// Woken by the webhook: pull now.
    pub wake: Notify,
    /// Pulled manifests are recorded as `git:<commit>` revisions.
    history: Arc<History>,
    /// `berth_git_syncs_total`, `berth_git_diverged`.
    metrics: Arc<Metrics>,
}

async fn run(dir: Option<&Path>, args: &[&str]) -> Result<(bool, String), GitError> {
    let mut cmd = tokio::process::Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let shown = args.join(" ");
    let out = match tokio::time::timeout(GIT_TIMEOUT, cmd.output()).await {
        Err(_) => {
            return Err(GitError {
                args: shown,
                message: format!("no answer within {GIT_TIMEOUT:?}"),
            })
        }
        Ok(Err(e)) => {
            return Err(GitError {
                args: shown,
                message: format!("cannot run git: {e}"),
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
    if out.status.code() == Some(1) && args.first() == Some(&"merge-base") {
        return Ok((false, String::new()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(4).collect();
    Err(GitError {
        args: shown,
        message: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
    })
}

impl GitSync {
    /// Makes sure `state/` is a clone of the remote (cloning it when `state/` is missing or
    /// empty) and returns the syncer. A non-empty `state/` that is not a checkout is refused.
    pub async fn prepare(
        config: &Config,
        git: &GitConfig,
        lock: Arc<tokio::sync::Mutex<()>>,
        history: Arc<History>,
        metrics: Arc<Metrics>,
    ) -> Result<GitSync, GitError> {
        let dir = config.state_dir.clone();
        if !dir.join(".git").exists() {
            let empty = match std::fs::read_dir(&dir) {
                Ok(mut rd) => rd.next().is_none(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                Err(e) => {
                    return Err(GitError {
                        args: "clone".into(),
                        message: format!("{}: {e}", dir.display()),
                    })
                }
            };
            if !empty {
                return Err(GitError {
                    args: "clone".into(),
                    message: format!(
                        "{} exists, is not empty and is not a git checkout; move it away so berth can clone {}",
                        dir.display(),
                        git.remote
                    ),
                });
            }
            let target = dir.to_string_lossy().into_owned();
            run(
                None,
                &[
                    "clone",
                    "--quiet",
                    "--branch",
                    &git.branch,
                    "--",
                    &git.remote,
                    &target,
                ],
            )
            .await?;
            info!(remote = %git.remote, branch = %git.branch, dir = %dir.display(), "cloned the state repository");
        }
        let sync = GitSync {
            config: git.clone(),
            dir,
            lock,
            status: Mutex::new(GitStatus {
                remote: git.remote.clone(),
                branch: git.branch.clone(),
                ..Default::default()
            }),
            wake: Notify::new(),
            history,
            metrics,
        };
        let head = sync.git(&["rev-parse", "HEAD"]).await?;
        sync.status.lock().expect("git status").head = Some(head);
        Ok(sync)
    }

    async fn git(&self, args: &[&str]) -> Result<String, GitError> {
        run(Some(&self.dir), args).await.map(|(_, out)| out)
    }

    async fn is_ancestor(&self, a: &str, b: &str) -> Result<bool, GitError> {
        run(Some(&self.dir), &["merge-base", "--is-ancestor", a, b])
            .await
            .map(|(yes, _)| yes)
    }

    /// The last sync's findings.
    pub fn status(&self) -> GitStatus {
        self.status.lock().expect("git status").clone()
    }

    fn finish(&self, outcome: &str, error: Option<String>, diverged: bool) {
        let mut st = self.status.lock().expect("git status");
        st.last_sync = outcome.into();
        st.last_sync_at = Some(unix_now());
        st.last_error = error;
        st.diverged = diverged;
        self.metrics.git_sync(outcome, diverged);
    }

    /// Fetches and follows the remote as far as fast-forward allows. Returns true when the
    /// checkout changed.
    pub async fn sync(&self) -> bool {
        let _guard = self.lock.lock().await;
        match self.sync_locked().await {
            Ok(changed) => changed,
            Err(e) => {
                warn!(cause = %e, "git sync failed; keeping the current checkout");
                let diverged = self.status().diverged;
                self.finish("error", Some(e.to_string()), diverged);
                false
            }
        }
    }

    async fn sync_locked(&self) -> Result<bool, GitError> {
        let branch = self.config.branch.as_str();
        self.git(&["fetch", "--quiet", "origin", branch]).await?;
        let upstream = format!("refs/remotes/origin/{branch}");
        let local = self.git(&["rev-parse", "HEAD"]).await?;
        let remote = self.git(&["rev-parse", &upstream]).await?;
        {
            let mut st = self.status.lock().expect("git status");
            st.head = Some(local.clone());
            st.remote_head = Some(remote.clone());
        }
        if local == remote {
            self.finish("up-to-date", None, false);
            return Ok(false);
        }
        if self.is_ancestor(&local, &remote).await? {
            let changed = self
                .git(&["diff", "--name-only", &local, &remote, "--", "apps"])
                .await?;
            self.git(&["merge", "--quiet", "--ff-only", &upstream])
                .await?;
            let short = &remote[..remote.len().min(12)];
            for file in changed.lines() {
                self.note_pulled(file, short);
            }
            self.status.lock().expect("git status").head = Some(remote.clone());
            info!(from = %local, to = %remote, "pulled the state repository");
            self.finish("pulled", None, false);
            return Ok(true);
        }
        if self.is_ancestor(&remote, &local).await? {
            return match self.push().await {
                Ok(()) => {
                    self.finish("pushed", None, false);
                    Ok(false)
                }
                Err(e) => Err(e),
            };
        }
        let why = format!(
            "local {} and origin/{branch} {} have diverged (a force-push, or commits on both sides); berth stopped following the remote and keeps running the last good checkout; resolve it in {} by hand",
            &local[..local.len().min(12)],
            &remote[..remote.len().min(12)],
            self.dir.display()
        );
        warn!("{why}");
        self.finish("diverged", Some(why), true);
        Ok(false)
    }

    /// Remembers that a pulled manifest came from commit `short`.
    fn note_pulled(&self, file: &str, short: &str) {
        let Some(rest) = file.strip_prefix("apps/") else {
            return;
        };
        let Some((user, name)) = rest.split_once('/') else {
            return;
        };
        let Some(app) = name.strip_suffix(".toml") else {
            return;
        };
        let (Ok(key), Ok(bytes)) = (AppKey::new(user, app), std::fs::read(self.dir.join(file)))
        else {
            return;
        };
        self.history
            .note_source(&key, &etag(&bytes), format!("git:{short}"));
    }

    async fn push(&self) -> Result<(), GitError> {
        let target = format!("HEAD:refs/heads/{}", self.config.branch);
        self.git(&["push", "--quiet", "origin", &target]).await?;
        info!("pushed local commits to the state repository");
        Ok(())
    }

    /// Commits `file` (relative to `state/`, added, changed or deleted) as `who`, then pushes
    /// unless the histories have diverged. The caller holds the state write lock (it wrote the
    /// file under it). Failures are reported in the status, not returned: the manifest is
    /// already written and in effect.
    pub async fn commit_held(&self, file: &str, who: &str, message: &str) {
        if let Err(e) = self.commit_locked(file, who, message).await {
            warn!(cause = %e, file, "cannot commit or push an API change");
            let diverged = self.status().diverged;
            self.finish("error", Some(e.to_string()), diverged);
        }
    }

    async fn commit_locked(&self, file: &str, who: &str, message: &str) -> Result<(), GitError> {
        self.git(&["add", "--all", "--", file]).await?;
        if run(Some(&self.dir), &["diff", "--cached", "--quiet"])
            .await
            .is_ok()
        {
            return Ok(());
        }
        let mail: String = who
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let author = format!("{who} <{mail}@berth.local>");
        self.git(&[
            "-c",
            "user.name=berth",
            "-c",
            "user.email=berth@berth.local",
            "commit",
            "--quiet",
            "--author",
            &author,
            "-m",
            message,
        ])
        .await?;
        let head = self.git(&["rev-parse", "HEAD"]).await?;
        self.status.lock().expect("git status").head = Some(head);
        if self.status().diverged {
            return Ok(());
        }
        self.push().await?;
        self.finish("pushed", None, false);
        Ok(())
    }
}
