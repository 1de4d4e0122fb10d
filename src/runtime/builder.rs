//! Builds a built app's image (docs/guides/builds.md): the engine's BuildKit, driven by the
//! docker CLI `[builds] docker` names, at most `max_builds` at once, each stopped after
//! `timeout`, all of them held to `memory` through the engine's BuildKit cgroup. The log of
//! each build is kept on disk (bounded); a failure carries its last lines.
//!
//! An image whose tag exists is never built again: the tag is a hash of every input
//! (`model::build`), so it is the same build.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::model::build::BuildSpec;
use crate::model::build_limits::BuildLimits;
use crate::model::desired::DesiredApp;
use crate::model::names::AppKey;
use crate::model::secrets::SecretValue;
use crate::runtime::engine::Engine;
use crate::runtime::executor::ActionError;

/// A build log keeps at most this many bytes; past it, lines are counted, not kept.
const LOG_BYTES: u64 = 1 << 20;
/// Lines of the log a failure shows.
const TAIL_LINES: usize = 20;
/// A longer line of the log is cut here.
const LINE_BYTES: usize = 2048;

/// Why a build did not give an image.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile is not a plain file inside the context.
    #[error("{0}")]
    Input(String),
    /// The CLI could not be started.
    #[error("starting {docker} (set [builds] docker to the docker CLI): {source}")]
    Spawn {
        /// The CLI.
        docker: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The build ran and failed: the Dockerfile, the code, or the memory ceiling.
    #[error("build failed ({status}); its last lines:\n{tail}")]
    Failed {
        /// How the CLI ended.
        status: String,
        /// The log's last lines.
        tail: String,
    },
    /// The build ran past `[builds] timeout` and was stopped.
    #[error("build stopped after [builds] timeout = {timeout}; its log: {}", log.display())]
    TimedOut {
        /// The limit.
        timeout: String,
        /// The build's log.
        log: PathBuf,
    },
    /// Writing the build's log.
    #[error("build log {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// Whether the same inputs would fail again (so the spec is not retried until it changes).
    pub fn is_of_the_inputs(&self) -> bool {
        matches!(
            self,
            BuildError::Input(_) | BuildError::Failed { .. } | BuildError::TimedOut { .. }
        )
    }
}

/// Runs builds on this node.
#[derive(Clone)]
pub struct Builder {
    limits: BuildLimits,
    slots: Arc<Semaphore>,
    logs: PathBuf,
}

impl Builder {
    /// A builder with `limits`, keeping logs under `logs/<user>/<app>/`.
    /// Secrets a killed berth left beside the logs are removed now.
    pub fn new(limits: BuildLimits, logs: PathBuf) -> Builder {
        sweep_dead(&logs);
        let slots = Arc::new(Semaphore::new(limits.max_builds));
        Builder {
            limits,
            slots,
            logs,
        }
    }

    /// The image of a built app: there when a build of the same inputs made it, else built
    /// now. A build that fails on its inputs refuses this spec, as a failed rollout does.
    pub(in crate::runtime) async fn ensure(
        &self,
        engine: &Engine,
        app: &DesiredApp,
        build: &BuildSpec,
    ) -> Result<(), ActionError> {
        if engine.has_image(&app.spec.image).await? {
            return Ok(());
        }
        let secrets = build
            .secrets
            .keys()
            .filter_map(|name| Some((name.as_str(), app.secret_env.get(name)?)))
            .collect();
        match self.build(&app.key, &app.spec.image, build, secrets).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_of_the_inputs() => Err(ActionError::BuildFailed {
                hash: app.hash.clone(),
                reason: e.to_string(),
            }),
            Err(e) => Err(ActionError::Build(e)),
        }
    }

    /// Builds `spec` as `tag` for `key` with its build `secrets`, waiting for a free slot.
    pub async fn build(
        &self,
        key: &AppKey,
        tag: &str,
        spec: &BuildSpec,
        secrets: Vec<(&str, &SecretValue)>,
    ) -> Result<(), BuildError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        // Checked when the build starts, not when it was asked for (it may have waited).
        let dockerfile = checked_dockerfile(spec)?;
        let secrets =
            SecretFiles::write(&self.logs, &secrets).map_err(|source| BuildError::Log {
                path: self.logs.clone(),
                source,
            })?;
        if let Err(why) = crate::runtime::build_cgroup::hold_to(self.limits.memory.0) {
            warn!(app = %key, cause = %why, "builds are not held to [builds] memory");
        }
        let log_path = self.log_path(key, tag);
        let mut child = self
            .command(tag, spec, &dockerfile, &secrets.files)
            .spawn()
            .map_err(|source| BuildError::Spawn {
                docker: self.limits.docker.clone(),
                source,
            })?;
        info!(app = %key, tag, log = %log_path.display(), "build started");
        let progress = child.stderr.take().expect("piped");
        let logging = keep_log(progress, log_path.clone());
        // Held for the build: dropped (a timeout, this future dropped, berth gone), it tells
        // the shim to kill the CLI, which cancels the build in the engine.
        let shim_stdin = child.stdin.take();
        let waited = tokio::time::timeout(self.limits.timeout, async {
            let (status, log) = tokio::join!(child.wait(), logging);
            (status, log)
        })
        .await;
        match waited {
            Err(_) => {
                stop(child, shim_stdin).await;
                Err(BuildError::TimedOut {
                    timeout: humantime::format_duration(self.limits.timeout).to_string(),
                    log: log_path,
                })
            }
            Ok((status, log)) => finished(status, log?),
        }
    }

    fn command(
        &self,
        tag: &str,
        spec: &BuildSpec,
        dockerfile: &Path,
        secrets: &[(String, PathBuf)],
    ) -> tokio::process::Command {
        let mut cmd = shimmed(&self.limits.docker);
        cmd.env("DOCKER_BUILDKIT", "1")
            .args(["build", "--progress=plain", "--tag", tag, "--file"])
            .arg(dockerfile);
        if let Some(target) = &spec.target {
            cmd.args(["--target", target]);
        }
        for (k, v) in &spec.args {
            cmd.arg("--build-arg").arg(format!("{k}={v}"));
        }
        for (name, path) in secrets {
            cmd.arg("--secret")
                .arg(format!("id={name},src={}", path.display()));
        }
        // The CLI writes the build's progress (`--progress=plain`) to stderr.
        cmd.arg("--")
            .arg(&spec.context)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    fn log_path(&self, key: &AppKey, tag: &str) -> PathBuf {
        let id = tag.rsplit(':').next().unwrap_or(tag);
        self.logs
            .join(&key.userid)
            .join(&key.appname)
            .join(format!("{id}.log"))
    }
}

/// The docker CLI under a hook shim (`runtime::hook_shim`) when this is berth's binary: the
/// shim kills the CLI when its stdin closes, so a SIGKILLed berth leaves no build running
/// beside the one its restart starts. Elsewhere (tests linking the library), the CLI itself,
/// killed when dropped.
fn shimmed(docker: &Path) -> tokio::process::Command {
    if !crate::runtime::hook_shim::available() {
        let mut cmd = tokio::process::Command::new(docker);
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        return cmd;
    }
    let mut cmd = tokio::process::Command::new(crate::runtime::hook_shim::EXE);
    cmd.arg(crate::runtime::hook_shim::ARG)
        .arg(docker)
        .stdin(Stdio::piped());
    cmd
}

/// Stops a build that ran past its time: its shim's stdin closed (the shim kills the CLI and
/// leaves), or, without a shim, the CLI killed. A shim that does not leave is killed too.
async fn stop(mut child: tokio::process::Child, shim_stdin: Option<tokio::process::ChildStdin>) {
    if shim_stdin.is_none() {
        let _ = child.kill().await;
        return;
    }
    drop(shim_stdin);
    if tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// The Dockerfile's path, when it is a plain file inside the context (not a link: the CLI
/// would read wherever it points and show it in the log).
fn checked_dockerfile(spec: &BuildSpec) -> Result<PathBuf, BuildError> {
    let mut path = PathBuf::from(&spec.context);
    let context = std::fs::symlink_metadata(&path);
    if !context.is_ok_and(|m| m.is_dir()) {
        return Err(BuildError::Input(format!(
            "[build] context {} is not a directory (a link is not followed)",
            path.display()
        )));
    }
    for part in spec.dockerfile.split('/') {
        path.push(part);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| {
            BuildError::Input(format!("[build] dockerfile {}: {e}", path.display()))
        })?;
        if meta.file_type().is_symlink() {
            return Err(BuildError::Input(format!(
                "[build] dockerfile {} is a link; berth does not follow it",
                path.display()
            )));
        }
    }
    if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        return Err(BuildError::Input(format!(
            "[build] dockerfile {} is not a plain file",
            path.display()
        )));
    }
    Ok(path)
}

/// How a build that ran to its end ended.
fn finished(
    status: std::io::Result<std::process::ExitStatus>,
    tail: String,
) -> Result<(), BuildError> {
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(BuildError::Failed {
            status: s.to_string(),
            tail,
        }),
        Err(e) => Err(BuildError::Failed {
            status: e.to_string(),
            tail,
        }),
    }
}

/// Copies the CLI's output into the log at `path` (at most `LOG_BYTES`), giving back its
/// last lines.
async fn keep_log(out: tokio::process::ChildStderr, path: PathBuf) -> Result<String, BuildError> {
    let err = |source| BuildError::Log {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        private_dir(dir).map_err(err)?;
    }
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .await
        .map_err(err)?;
    let (mut written, mut tail) = (0u64, VecDeque::new());
    let mut reader = BufReader::new(out);
    let mut raw = Vec::new();
    // Bytes, not UTF-8 lines: a step may print anything, and a line is kept to LINE_BYTES.
    while reader.read_until(b'\n', &mut raw).await.map_err(err)? > 0 {
        let line = shown_line(&raw);
        raw.clear();
        if written < LOG_BYTES {
            written += line.len() as u64 + 1;
            file.write_all(line.as_bytes()).await.map_err(err)?;
            file.write_all(b"\n").await.map_err(err)?;
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    file.flush().await.map_err(err)?;
    Ok(Vec::from(tail).join("\n"))
}

/// One line of a build's output as it is kept: valid UTF-8, no control characters, at most
/// `LINE_BYTES`.
fn shown_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(LINE_BYTES)]);
    let kept = text.trim_end_matches(['\n', '\r']);
    kept.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}

/// `dir` and its missing parents, made readable by berth's user only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A build's secrets as files only berth's user can read, in a directory of their own that is
/// removed when the build ends, however it ends.
struct SecretFiles {
    dir: Option<PathBuf>,
    files: Vec<(String, PathBuf)>,
}

/// Removes the secret directories a killed berth left (`.secrets-<pid>-<n>` whose pid is
/// gone): a SIGKILL skips the drop that removes them, and plain-text secrets must not wait
/// on disk for a build that will never end.
fn sweep_dead(under: &Path) {
    let Ok(entries) = std::fs::read_dir(under) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(".secrets-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Numbers the secret directories of one berth process.
static NEXT_SECRETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl SecretFiles {
    fn write(under: &Path, secrets: &[(&str, &SecretValue)]) -> std::io::Result<SecretFiles> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if secrets.is_empty() {
            return Ok(SecretFiles {
                dir: None,
                files: Vec::new(),
            });
        }
        use std::os::unix::fs::DirBuilderExt;
        private_dir(under)?;
        sweep_dead(under);
        let n = NEXT_SECRETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = under.join(format!(".secrets-{}-{n}", std::process::id()));
        // A leftover of a killed berth of the same pid: its secrets must not outlive it.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let mut out = SecretFiles {
            dir: Some(dir.clone()),
            files: Vec::new(),
        };
        for (name, value) in secrets {
            let path = dir.join(name);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(value.expose().as_bytes())?;
            out.files.push((name.to_string(), path));
        }
        Ok(out)
    }
}

impl Drop for SecretFiles {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Removes the secret directories a killed berth left. Only for a decider at its start (it
/// holds the root's lock, so no build of this root is running): never for `plan`.
pub(in crate::runtime) fn remove_left_secrets(logs: &Path) {
    let Ok(entries) = std::fs::read_dir(logs) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".secrets-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_a_dead_berth_left_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".secrets-999999999-0");
        let ours = dir
            .path()
            .join(format!(".secrets-{}-7", std::process::id()));
        let user = dir.path().join("alice");
        for d in [&dead, &ours, &user] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("NPM_TOKEN"), "value").unwrap();
        }
        sweep_dead(dir.path());
        assert!(!dead.exists(), "a dead berth's secrets are still on disk");
        assert!(ours.exists() && user.exists());
    }
}
