//! Git mode (`[git]` in berth.toml): `state/` is a clone of a remote. berth fetches on an
//! interval and on a signed webhook and fast-forwards; API writes become local commits that
//! are pushed. It uses the `git` command line, each call with a timeout.
//!
//! **Invariant: berth never rewrites history or merges.** Fast-forward only: when the remote
//! is ahead berth follows it; when local is ahead (API commits) berth pushes; when the two
//! have diverged (commits on both sides) or the remote's history was rewritten (a force-push,
//! even one that only rewinds) berth stops following and pushing, keeps the last good checkout
//! running, and reports it until a person changes `state/` by hand. That state is kept in
//! `.git/berth-diverged`, so a restart does not forget it. A failed fetch changes nothing.
//!
//! Network steps (fetch, push) run without the state write lock and may be cancelled at
//! shutdown; local steps (merge, commit) run under it and are never killed, so no
//! `index.lock` is left behind.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::error_chain::chain;
use crate::metrics::Metrics;
use crate::model::config::GitConfig;
use crate::model::names::AppKey;
use crate::state::files::etag;
use crate::state::history::History;
use crate::store::unix_now;

mod command;
mod follow;
mod prepare;

use command::run;
/// git with a timeout and stderr's tail in errors, for the other git users in `state`.
pub(in crate::state) use command::run_isolated as run_git_isolated;

/// The remote commit berth last saw and accepted; only berth moves it, so a fetch made by a
/// person in `state/` cannot hide a rewrite.
const SEEN: &str = "refs/berth/seen";
pub use command::GitError;

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
    /// The state write lock, shared with the API and the reconcile loop's scan: a
    /// fast-forward never lands between an API write and its commit, and a pass never sees
    /// a half-done checkout.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// One network operation (fetch, push) at a time.
    net: tokio::sync::Mutex<()>,
    /// The last sync's findings.
    status: Mutex<GitStatus>,
    /// Woken by the webhook: pull now.
    pub wake: Notify,
    /// Pulled manifests are recorded as `git:<commit>` revisions.
    history: Arc<History>,
    /// `berth_git_syncs_total`, `berth_git_diverged`.
    metrics: Arc<Metrics>,
}

/// What the local half of a sync decided.
enum Step {
    /// Nothing to do, or a divergence was reported.
    Stay,
    /// The checkout moved.
    Pulled,
    /// Local is ahead of the remote commit `lease`: push (outside the lock), only if the
    /// remote is still there.
    Push { lease: String },
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

impl GitSync {
    async fn git(&self, args: &[&str]) -> Result<String, GitError> {
        run(Some(&self.dir), args, false).await.map(|(_, out)| out)
    }

    async fn is_ancestor(&self, a: &str, b: &str) -> Result<bool, GitError> {
        run(
            Some(&self.dir),
            &["merge-base", "--is-ancestor", a, b],
            false,
        )
        .await
        .map(|(yes, _)| yes)
    }

    fn upstream(&self) -> String {
        format!("refs/remotes/origin/{}", self.config.branch)
    }

    /// The marker kept while diverged: the local commit at the time, so a change made by a
    /// person (and only that) lifts it.
    fn marker(&self) -> PathBuf {
        self.dir.join(".git").join("berth-diverged")
    }

    fn diverged_at(&self) -> Option<String> {
        std::fs::read_to_string(self.marker())
            .ok()
            .map(|s| s.trim().to_string())
    }

    fn set_diverged_at(&self, local: Option<&str>) {
        let result = match local {
            Some(l) => std::fs::write(self.marker(), format!("{l}\n")),
            None => match std::fs::remove_file(self.marker()) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r,
            },
        };
        if let Err(e) = result {
            warn!(cause = %e, "cannot update {}", self.marker().display());
        }
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

    fn failed(&self, e: &GitError) {
        warn!(cause = %chain(e), "git sync failed; keeping the current checkout");
        let diverged = self.status().diverged;
        self.finish("error", Some(chain(e)), diverged);
    }

    /// Fetches, then follows the remote as far as fast-forward allows, then pushes local
    /// commits if that is safe. The network steps give way to `shutdown`. Returns true when
    /// the checkout changed.
    pub async fn sync(&self, shutdown: &CancellationToken) -> bool {
        let fetched = tokio::select! {
            _ = shutdown.cancelled() => return false,
            r = self.fetch() => r,
        };
        let old_remote = match fetched {
            Ok(old) => old,
            Err(e) => {
                self.failed(&e);
                return false;
            }
        };
        let step = {
            let _guard = self.lock.lock().await;
            self.follow(old_remote.as_deref()).await
        };
        match step {
            Err(e) => {
                self.failed(&e);
                false
            }
            Ok(Step::Stay) => false,
            Ok(Step::Pulled) => true,
            Ok(Step::Push { lease }) => {
                let pushed = tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    r = self.push(&lease) => r,
                };
                match pushed {
                    Ok(()) => self.finish("pushed", None, false),
                    Err(e) => self.failed(&e),
                }
                false
            }
        }
    }

    /// Fetches the branch; returns the remote commit berth last saw and accepted
    /// (`refs/berth/seen`, a ref only berth moves; the remote-tracking ref before the fetch
    /// when there is none yet).
    async fn fetch(&self) -> Result<Option<String>, GitError> {
        let _net = self.net.lock().await;
        let upstream = self.upstream();
        let mut before = self
            .git(&["rev-parse", "--verify", "--quiet", SEEN])
            .await
            .ok();
        if before.is_none() {
            before = self
                .git(&["rev-parse", "--verify", "--quiet", &upstream])
                .await
                .ok();
        }
        let refspec = format!("+refs/heads/{}:{upstream}", self.config.branch);
        run(
            Some(&self.dir),
            &["fetch", "--quiet", "origin", &refspec],
            true,
        )
        .await?;
        Ok(before)
    }

    /// Pushes HEAD, but only while the remote branch is still at `lease`: a remote that was
    /// rewound since the fetch must not be fast-forwarded back over the rewind.
    async fn push(&self, lease: &str) -> Result<(), GitError> {
        let _net = self.net.lock().await;
        let branch = &self.config.branch;
        let head = self.git(&["rev-parse", "HEAD"]).await?;
        let target = format!("{head}:refs/heads/{branch}");
        let lease = format!("--force-with-lease=refs/heads/{branch}:{lease}");
        run(
            Some(&self.dir),
            &["push", "--quiet", &lease, "origin", &target],
            true,
        )
        .await?;
        self.git(&["update-ref", SEEN, &head]).await?;
        info!("pushed local commits to the state repository");
        Ok(())
    }

    /// Notes, before the merge, which commit last changed each manifest the pull changes, so
    /// each revision names its own commit.
    async fn note_pulled(&self, local: &str, remote: &str) -> Result<(), GitError> {
        let changed = self
            .git(&["diff", "--name-only", local, remote, "--", "apps"])
            .await?;
        for file in changed.lines() {
            let Some(key) = file
                .strip_prefix("apps/")
                .and_then(|r| r.split_once('/'))
                .and_then(|(u, a)| AppKey::new(u, a.strip_suffix(".toml")?).ok())
            else {
                continue;
            };
            // Deleted by the pull: no content, no revision.
            let Ok(bytes) = self.git_bytes(&format!("{remote}:{file}")).await else {
                continue;
            };
            let commit = self
                .git(&["log", "-1", "--format=%H", remote, "--", file])
                .await?;
            self.history
                .note_source(&key, &etag(&bytes), format!("git:{}", short(&commit)));
        }
        Ok(())
    }

    async fn git_bytes(&self, object: &str) -> Result<Vec<u8>, GitError> {
        let out = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(["cat-file", "blob", object])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| GitError {
                args: format!("cat-file blob {object}"),
                message: "cannot run git".into(),
                source: Some(e),
            })?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(GitError {
                args: format!("cat-file blob {object}"),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                source: None,
            })
        }
    }

    /// Commits `files` (relative to `state/`, added, changed or deleted) as `who`, in one
    /// commit. The caller holds the state write lock (it wrote them under it); the push
    /// happens in the sync task, which this wakes. A commit that fails (a full disk, a broken
    /// repository) puts each manifest back as HEAD has it, so the write it carried is undone
    /// rather than left uncommitted under a 2xx.
    pub(in crate::state) async fn commit_held(
        &self,
        files: &[&str],
        who: &str,
        message: &str,
    ) -> Result<(), GitError> {
        match self.commit_local(files, who, message).await {
            Ok(true) => self.wake.notify_one(),
            Ok(false) => {}
            Err(e) => {
                warn!(cause = %chain(&e), ?files, "cannot commit an API change; undoing it");
                for file in files.iter().filter(|f| f.ends_with(".toml")) {
                    self.restore_head_version(file).await;
                }
                let diverged = self.status().diverged;
                self.finish("error", Some(chain(&e)), diverged);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether git tracks `file` (relative to `state/`) in the index.
    pub(in crate::state) async fn tracks(&self, file: &str) -> bool {
        self.git(&["ls-files", "--error-unmatch", "--", file])
            .await
            .is_ok()
    }

    /// Puts `file` back as HEAD has it (removed when HEAD has none). Written by berth, not by
    /// `git checkout`, which rewrites the index and so needs more room than a full disk has.
    async fn restore_head_version(&self, file: &str) {
        let spec = format!("HEAD:{file}");
        let path = self.dir.join(file);
        let restored = match self.git(&["cat-file", "-e", &spec]).await {
            Ok(_) => match self.git_bytes(&spec).await {
                Ok(bytes) => replace_file(&path, &bytes),
                Err(e) => Err(e),
            },
            Err(_) => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(file, e)),
                _ => Ok(()),
            },
        };
        if let Err(e) = restored {
            error!(cause = %chain(&e), file, "cannot undo an uncommitted API change; the next sync reports it");
        }
    }

    async fn commit_local(
        &self,
        files: &[&str],
        who: &str,
        message: &str,
    ) -> Result<bool, GitError> {
        let before = self.git(&["rev-parse", "HEAD"]).await?;
        let result = self.commit_files(files, who, message).await;
        if result.is_err() {
            // Nothing of this change may ride along with the next commit of another app.
            let reset = [&["reset", "--quiet", "--"][..], files].concat();
            let _ = self.git(&reset).await;
        }
        if !result? {
            return Ok(false);
        }
        let head = self.git(&["rev-parse", "HEAD"]).await?;
        // A commit of berth's own on top of the diverged head is not a person resolving it;
        // on top of anything else, a person already changed state/ and the next sync sees it.
        if self.diverged_at().as_deref() == Some(before.as_str()) {
            self.set_diverged_at(Some(&head));
        }
        self.status.lock().expect("git status").head = Some(head);
        Ok(true)
    }

    async fn commit_files(
        &self,
        files: &[&str],
        who: &str,
        message: &str,
    ) -> Result<bool, GitError> {
        self.git(&[&["add", "--all", "--"][..], files].concat())
            .await?;
        let (clean, _) = run(Some(&self.dir), &["diff", "--cached", "--quiet"], false).await?;
        if clean {
            return Ok(false);
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
        Ok(true)
    }
}

/// Replaces `path` with `bytes`: a temp file beside it, renamed over it; on a disk too full
/// for the temp file, in place (truncating first frees the room the new text needs).
fn replace_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), GitError> {
    let shown = path.display().to_string();
    let tmp = path.with_extension("toml.restore.tmp");
    let mut written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = &written {
        let _ = std::fs::remove_file(&tmp);
        if crate::store::is_full(e) {
            written = std::fs::write(path, bytes);
        }
    }
    written.map_err(|e| io_error(&shown, e))
}

fn io_error(what: &str, e: std::io::Error) -> GitError {
    GitError {
        args: format!("restore {what}"),
        message: e.to_string(),
        source: Some(e),
    }
}
