//! Runs template hooks (docs/reference/reconcile-rules.md): the five `BERTH_*` variables in the environment, the template
//! directory as working directory, a timeout, output captured line by line into berth's log,
//! and **never two hooks of one template at once** (they share `shared/<template>`). In the
//! `berth` binary each hook runs under a `hook_shim`, so everything it starts (even `setsid`
//! and double-forked children) dies when it ends, times out, or berth exits; elsewhere (unit
//! tests, benches) only its process group is killed.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::Mutex;
use tracing::info;

use crate::model::names::AppKey;
use crate::model::template::HookKind;
use crate::runtime::hook_groups::HookGroups;
use crate::runtime::hook_lock::TemplateLock;
use crate::runtime::hook_shim;

/// How many output lines a failure keeps for the app's status.
const TAIL_LINES: usize = 20;

/// A hook that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// Ran and exited non-zero (or was killed by a signal).
    #[error("hook {hook} exited with {status}; last output:\n{tail}")]
    Failed {
        /// Hook name.
        hook: &'static str,
        /// "code 3" or "signal 9".
        status: String,
        /// Last lines of stdout+stderr.
        tail: String,
    },
    /// Ran past the timeout; its process group was killed.
    #[error("hook {hook} timed out after {timeout:?} and was killed; last output:\n{tail}")]
    TimedOut {
        /// Hook name.
        hook: &'static str,
        /// The configured limit.
        timeout: Duration,
        /// Last lines of output.
        tail: String,
    },
    /// The template's lock file could not be taken (so the hook did not run).
    #[error("hook {hook} could not take its template's lock")]
    Lock {
        /// Hook name.
        hook: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Could not be started at all.
    #[error("hook {hook} could not start")]
    Spawn {
        /// Hook name.
        hook: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Where a hook's app lives, passed as `BERTH_*` variables.
#[derive(Debug, Clone)]
pub struct HookEnv {
    /// `BERTH_USERID`, `BERTH_APPNAME`.
    pub key: AppKey,
    /// `BERTH_TEMPLATE_DIR`; also the working directory.
    pub template_dir: PathBuf,
    /// `BERTH_APP_DIR`: the app's workspace.
    pub app_dir: PathBuf,
    /// `BERTH_SHARED_DIR`: `shared/<template>`.
    pub shared_dir: PathBuf,
    /// `BERTH_PURGE=1` when a delete asked to drop the workspace.
    pub purge: bool,
}

/// Runs hooks, one template at a time.
pub struct HookRunner {
    /// Limit for one hook run.
    timeout: Duration,
    /// One lock per template id.
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Where running hooks' process groups are recorded, to be reaped after a crash.
    groups: Option<HookGroups>,
    /// Where the per-template lock files live, so other processes keep in line too.
    lock_dir: Option<PathBuf>,
}

impl HookRunner {
    /// A runner with the configured `hook_timeout`.
    pub fn new(timeout: Duration) -> HookRunner {
        HookRunner {
            timeout,
            locks: Default::default(),
            groups: None,
            lock_dir: None,
        }
    }

    /// Takes a per-template lock file in `dir` too, one that other processes see.
    pub fn locking_in(mut self, dir: PathBuf) -> HookRunner {
        self.lock_dir = Some(dir);
        self
    }

    /// Records running hooks' process groups in `groups`.
    pub fn recording_in(mut self, groups: HookGroups) -> HookRunner {
        self.groups = Some(groups);
        self
    }

    /// Kills the hooks an earlier, killed berth left running (at start, before any hook).
    pub fn reap_left_over(&self) -> usize {
        self.groups.as_ref().map_or(0, HookGroups::reap)
    }

    /// Runs `path` for `kind` under the template's lock.
    pub async fn run(
        &self,
        template: &str,
        kind: HookKind,
        path: &Path,
        env: &HookEnv,
    ) -> Result<(), HookError> {
        let _held = self.hold(template, kind.file_name()).await?;
        run_hook(
            kind.file_name(),
            path,
            env,
            self.timeout,
            self.groups.as_ref(),
        )
        .await
    }
}

/// A template's lock, held: in this process and, with a lock directory, across processes.
pub struct Held {
    _one_at_a_time: tokio::sync::OwnedMutexGuard<()>,
    _across_processes: Option<TemplateLock>,
}

impl HookRunner {
    /// Takes `template`'s lock, as a hook run does; `what` names the holder in errors. The
    /// shared install (`runtime::install`) holds it too: it writes the same `shared/` tree.
    pub async fn hold(&self, template: &str, what: &'static str) -> Result<Held, HookError> {
        let lock = self
            .locks
            .lock()
            .expect("hook lock map")
            .entry(template.to_string())
            .or_default()
            .clone();
        let one = lock.lock_owned().await;
        let across = match &self.lock_dir {
            Some(dir) => Some(
                TemplateLock::acquire(dir, template)
                    .await
                    .map_err(|source| HookError::Lock { hook: what, source })?,
            ),
            None => None,
        };
        Ok(Held {
            _one_at_a_time: one,
            _across_processes: across,
        })
    }
}

async fn run_hook(
    hook: &'static str,
    path: &Path,
    env: &HookEnv,
    timeout: Duration,
    groups: Option<&HookGroups>,
) -> Result<(), HookError> {
    let mut child = spawn(path, env)
        .await
        .map_err(|e| HookError::Spawn { hook, source: e })?;
    // The shim's stdin: closing it (or berth's exit) makes the shim kill all the hook started.
    let let_go = child.stdin.take();
    let pgid = child.id().map(|p| p as i32);
    let _recorded = pgid.zip(groups).map(|(pgid, g)| g.record(pgid));
    let tail = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    let app = env.key.to_string();
    let readers = [
        tokio::spawn(pump(child.stdout.take(), hook, app.clone(), tail.clone())),
        tokio::spawn(pump(child.stderr.take(), hook, app.clone(), tail.clone())),
    ];
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    if waited.is_err() && let_go.is_some() {
        drop(let_go);
        // The shim reaps the hook's tree before it exits; killing its group first would
        // orphan what left the group. The bound only covers a shim that cannot be trusted.
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    }
    // Kill the whole group either way: a finished hook must not leave children holding our
    // pipes open, and a timed-out one must not leave anything running.
    if let Some(pgid) = pgid {
        // SAFETY: plain syscall on a process group this function created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
    }
    let tail_text = || {
        tail.lock()
            .expect("tail")
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    };
    match waited {
        Err(_) => {
            let _ = child.wait().await;
            let tail = tail_text();
            Err(HookError::TimedOut {
                hook,
                timeout,
                tail,
            })
        }
        Ok(status) => exited(hook, status, tail_text),
    }
}

/// What a hook's (or its shim's) exit means.
fn exited(
    hook: &'static str,
    status: std::io::Result<std::process::ExitStatus>,
    tail: impl FnOnce() -> String,
) -> Result<(), HookError> {
    match status {
        Err(e) => Err(HookError::Spawn { hook, source: e }),
        Ok(status) if status.success() => Ok(()),
        Ok(status) => {
            let status = match (status.code(), status.signal()) {
                (Some(c), _) => format!("code {c}"),
                (None, Some(s)) => format!("signal {s}"),
                _ => "unknown status".into(),
            };
            let tail = tail();
            Err(HookError::Failed { hook, status, tail })
        }
    }
}

/// Starts the hook. "Text file busy" is tried again for a moment: it means the script is
/// still open for writing somewhere (a checkout writing it, or any process forked while it
/// was being written and not yet exec'd), which passes within milliseconds.
async fn spawn(path: &Path, env: &HookEnv) -> std::io::Result<tokio::process::Child> {
    let mut tries = 0;
    loop {
        match command(path, env).spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// The hook's command: its environment (docs/reference/labels.md), run from the template directory in a
/// process group of its own so the whole group can be killed; under a shim when this is the
/// `berth` binary. A shim is not killed when its run is dropped (that would orphan what the
/// hook started): its stdin closes instead, and it kills the hook's tree itself.
fn command(path: &Path, env: &HookEnv) -> Command {
    let shimmed = hook_shim::available();
    let mut cmd = if shimmed {
        let mut c = Command::new(hook_shim::EXE);
        c.arg(hook_shim::ARG).arg(path).stdin(Stdio::piped());
        c
    } else {
        let mut c = Command::new(path);
        c.stdin(Stdio::null());
        c
    };
    cmd.current_dir(&env.template_dir)
        .env("BERTH_USERID", &env.key.userid)
        .env("BERTH_APPNAME", &env.key.appname)
        .env("BERTH_TEMPLATE_DIR", &env.template_dir)
        .env("BERTH_APP_DIR", &env.app_dir)
        .env("BERTH_SHARED_DIR", &env.shared_dir)
        .env("BERTH_PURGE", if env.purge { "1" } else { "0" })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(!shimmed);
    cmd
}

/// Copies one output stream into the log and the shared tail buffer.
async fn pump(
    stream: Option<impl AsyncRead + Unpin>,
    hook: &'static str,
    app: String,
    tail: Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
) {
    let Some(stream) = stream else { return };
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        info!(hook, app = %app, "{line}");
        let mut t = tail.lock().expect("tail");
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("hook");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn env(dir: &Path) -> HookEnv {
        HookEnv {
            key: AppKey::new("alice", "hello").unwrap(),
            template_dir: dir.to_path_buf(),
            app_dir: dir.join("apps/alice/hello"),
            shared_dir: dir.join("shared/t"),
            purge: false,
        }
    }

    #[tokio::test]
    async fn hook_sees_berth_environment() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let p = script(
            d.path(),
            &format!(
                "echo \"$BERTH_USERID $BERTH_APPNAME $BERTH_APP_DIR $(pwd)\" > {}",
                out.display()
            ),
        );
        HookRunner::new(Duration::from_secs(5))
            .run("t", HookKind::PreCreate, &p, &env(d.path()))
            .await
            .unwrap();
        let got = std::fs::read_to_string(out).unwrap();
        assert!(got.starts_with("alice hello "), "{got}");
        assert!(
            got.trim_end().ends_with(&d.path().display().to_string()),
            "{got}"
        );
    }

    #[tokio::test]
    async fn failure_reports_code_and_output_tail() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "echo first; echo 'npm ERR! boom' >&2; exit 3");
        let e = HookRunner::new(Duration::from_secs(5))
            .run("t", HookKind::PreDeploy, &p, &env(d.path()))
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("pre-deploy exited with code 3") && text.contains("npm ERR! boom"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("survived");
        let p = script(
            d.path(),
            &format!("(sleep 2; touch {}) & sleep 30", marker.display()),
        );
        let started = std::time::Instant::now();
        let e = HookRunner::new(Duration::from_millis(300))
            .run("t", HookKind::PreCreate, &p, &env(d.path()))
            .await
            .unwrap_err();
        assert!(matches!(e, HookError::TimedOut { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "a child of the hook outlived the timeout");
    }

    #[tokio::test]
    async fn hooks_of_one_template_never_overlap() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        let p = script(
            d.path(),
            &format!(
                "echo start >> {l}; sleep 0.2; echo end >> {l}",
                l = log.display()
            ),
        );
        let runner = Arc::new(HookRunner::new(Duration::from_secs(5)));
        let e = env(d.path());
        let (a, b) = tokio::join!(
            runner.run("t", HookKind::PreCreate, &p, &e),
            runner.run("t", HookKind::PreCreate, &p, &e)
        );
        a.unwrap();
        b.unwrap();
        assert_eq!(
            std::fs::read_to_string(log).unwrap(),
            "start\nend\nstart\nend\n"
        );
    }

    #[tokio::test]
    async fn hooks_of_one_template_never_overlap_across_runners_sharing_a_lock_dir() {
        // Two runners stand for two processes: they share no mutex, only the lock files.
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        let p = script(
            d.path(),
            &format!(
                "echo start >> {l}; sleep 0.2; echo end >> {l}",
                l = log.display()
            ),
        );
        let locks = d.path().join("locks");
        let one = HookRunner::new(Duration::from_secs(5)).locking_in(locks.clone());
        let two = HookRunner::new(Duration::from_secs(5)).locking_in(locks);
        let e = env(d.path());
        let (a, b) = tokio::join!(
            one.run("t", HookKind::PreCreate, &p, &e),
            two.run("t", HookKind::PreCreate, &p, &e)
        );
        a.unwrap();
        b.unwrap();
        assert_eq!(
            std::fs::read_to_string(log).unwrap(),
            "start\nend\nstart\nend\n"
        );
    }
}
