//! App backups and restores (docs/guides/backups-and-recovery.md) with restic, every step in a
//! container and never in the reconcile loop: a dump runs inside the app's own container
//! (its exit status decides whether there is a snapshot at all), restic runs in one-off
//! containers of the restic image against the root's repository, and retention forgets only
//! the snapshots carrying all of this app's tags. Jobs on one repository run one at a time,
//! so a prune never races a backup.

mod restic;
mod restore;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::model::backup::{forget_args, tag_filter, tags, BackupMethod};
use crate::model::desired::DesiredApp;
use crate::model::names::AppKey;
use crate::model::secrets::SecretValue;
use crate::runtime::engine::{Engine, EngineError, Job};

pub use restic::Snapshot;
pub use restore::Restored;

/// The image restic runs in (`scripts/build-restic-image.sh` builds it from Debian's restic).
pub const RESTIC_IMAGE: &str = "berth-restic:1";

/// How long one restic job or dump may run (a day: bounded by the data, not by a guess).
const LIMIT: Duration = Duration::from_secs(24 * 3600);

/// Why a backup, a listing or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The engine could not be asked.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A step ran and failed; the message says which and why.
    #[error("{0}")]
    Failed(String),
    /// The app has nothing berth knows how to back up.
    #[error("{0}")]
    Unsupported(String),
    /// No such snapshot of this app.
    #[error("{0}")]
    NoSnapshot(String),
    /// The repository's files could not be prepared.
    #[error("backup repository {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A backup that succeeded.
#[derive(Debug, Clone)]
pub struct Taken {
    /// restic's full snapshot id.
    pub id: String,
    /// Retention that failed after the snapshot was saved (the snapshot stands).
    pub retention_error: Option<String>,
}

/// The root's repository and the runner of every job on it.
pub struct Backups {
    engine: Engine,
    instance: String,
    stop_timeout: Duration,
    /// `<root>/backups/restic`.
    repo: PathBuf,
    /// `<root>/backups/scratch`: dumps on their way in or out.
    scratch: PathBuf,
    password: SecretValue,
    image: String,
    /// One job on the repository at a time.
    lock: tokio::sync::Mutex<()>,
    /// Apps the loop must leave alone while a restore has them stopped.
    holds: Arc<Holds>,
}

/// Apps whose containers a restore has stopped: the loop plans nothing for them.
#[derive(Debug, Default)]
pub struct Holds(std::sync::Mutex<std::collections::BTreeSet<AppKey>>);

impl Holds {
    /// Whether `key` is held.
    pub fn contains(&self, key: &AppKey) -> bool {
        self.lock().contains(key)
    }

    /// Moves the changes of held apps out of `plan` (into its `held`): a restore has their
    /// container stopped on purpose and starts it again itself.
    pub fn hold_back(&self, plan: &mut crate::reconcile::plan::Plan) {
        let held = self.lock();
        if held.is_empty() {
            return;
        }
        let (keep, hold): (Vec<_>, Vec<_>) = std::mem::take(&mut plan.changes)
            .into_iter()
            .partition(|c| !held.contains(&c.key));
        plan.changes = keep;
        plan.held.extend(hold.into_iter().map(|c| c.key));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<AppKey>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Releases a hold when dropped, whatever way the restore ends.
struct Held<'a>(&'a Holds, AppKey);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
    }
}

impl Backups {
    /// The runner for the repository under `root` (`backups/restic`, made 0700).
    pub fn new(
        engine: Engine,
        config: &crate::model::config::Config,
        password: SecretValue,
        holds: Arc<Holds>,
    ) -> Backups {
        let base = config.root.join("backups");
        Backups {
            engine,
            instance: config.instance.clone(),
            stop_timeout: config.stop_timeout,
            repo: base.join("restic"),
            scratch: base.join("scratch"),
            password,
            image: RESTIC_IMAGE.to_string(),
            lock: tokio::sync::Mutex::new(()),
            holds,
        }
    }

    /// Backs `app` up now: its dump or its volumes, then its retention.
    pub async fn run(&self, app: &DesiredApp, reason: &str) -> Result<Taken, BackupError> {
        let _one = self.lock.lock().await;
        self.run_locked(app, reason, true).await
    }

    /// A backup; with `retain`, the app's retention after it (a restore's safety snapshot
    /// skips it: it must not forget the snapshot about to be restored).
    async fn run_locked(
        &self,
        app: &DesiredApp,
        reason: &str,
        retain: bool,
    ) -> Result<Taken, BackupError> {
        self.ensure_repo().await?;
        let id = match method(app)? {
            BackupMethod::Dump { dump, file, .. } => {
                self.dump_and_save(app, &dump, &file, reason).await?
            }
            BackupMethod::Volume {} => self.save_volumes(app, reason).await?,
        };
        info!(app = %app.key, snapshot = %id, reason, "backup saved");
        let keep = app.backup.as_ref().filter(|_| retain);
        let retention_error =
            match keep.and_then(|b| forget_args(&self.instance, &app.key, &b.keep)) {
                None => None,
                Some(args) => match self.restic(&restic::forget_script(&args), vec![], 30).await {
                    Ok(_) => None,
                    Err(e) => {
                        warn!(app = %app.key, cause = %e, "retention failed; the snapshot stands");
                        Some(e.to_string())
                    }
                },
            };
        Ok(Taken {
            id,
            retention_error,
        })
    }

    /// `key`'s snapshots, newest first, with their restore sizes.
    pub async fn list(&self, key: &AppKey) -> Result<Vec<Snapshot>, BackupError> {
        let _one = self.lock.lock().await;
        if !self.repo.join("config").exists() {
            return Ok(vec![]);
        }
        let snaps = self.listed(key).await?;
        let ids: Vec<String> = snaps.iter().map(|(id, _)| id.clone()).collect();
        let sizes = match ids.is_empty() {
            true => vec![],
            false => {
                let tail = 2 * ids.len() as u32 + 30;
                restic::parse_stats(
                    &self
                        .restic(&restic::stats_script(&ids), vec![], tail)
                        .await?,
                )
            }
        };
        Ok(snaps
            .into_iter()
            .enumerate()
            .map(|(i, (_, mut s))| {
                s.size = sizes.get(i).copied();
                s
            })
            .collect())
    }

    /// `key`'s snapshots with their full ids, newest first.
    async fn listed(&self, key: &AppKey) -> Result<Vec<(String, Snapshot)>, BackupError> {
        let out = self
            .restic(
                &restic::snapshots_script(&tag_filter(&self.instance, key)),
                vec![],
                30,
            )
            .await?;
        restic::parse_snapshots(&out).map_err(BackupError::Failed)
    }

    /// `restic init` on first use; the directory is berth's alone (0700).
    async fn ensure_repo(&self) -> Result<(), BackupError> {
        if self.repo.join("config").exists() {
            return Ok(());
        }
        for dir in [&self.repo, &self.scratch] {
            make_private_dir(dir)?;
        }
        self.restic(&restic::init_script(), vec![], 30).await?;
        info!(repo = %self.repo.display(), "backup repository initialised");
        Ok(())
    }

    /// Copies `app`'s volumes into a snapshot while it runs (crash-consistent).
    async fn save_volumes(&self, app: &DesiredApp, reason: &str) -> Result<String, BackupError> {
        let binds = self.volume_binds(app, true);
        self.save(app, binds, restic::DATA, reason).await
    }

    /// Runs the template's dump in the app's container into a scratch file; only a dump that
    /// exits 0 is saved, and the scratch file goes either way.
    async fn dump_and_save(
        &self,
        app: &DesiredApp,
        dump: &[String],
        file: &str,
        reason: &str,
    ) -> Result<String, BackupError> {
        let dir = self.scratch_dir(&app.key)?;
        let path = dir.join(file);
        let saved = async {
            let out = tokio::fs::File::create(&path).await.map_err(io(&path))?;
            let container = app.key.container_name(&self.instance);
            let ended = self
                .engine
                .exec_with_files(&container, dump, None, Some(out), LIMIT)
                .await?;
            match ended.code {
                Some(0) if ended.bytes > 0 => {}
                Some(0) => {
                    return Err(BackupError::Failed(
                        "the dump exited 0 but wrote nothing; no snapshot was saved".into(),
                    ))
                }
                code => {
                    let how =
                        code.map_or("did not finish".to_string(), |c| format!("exited with {c}"));
                    return Err(BackupError::Failed(format!(
                        "the dump {how}; no snapshot was saved: {}",
                        ended.stderr
                    )));
                }
            }
            let bind = format!("{}:{}:ro", dir.display(), restic::DUMP);
            self.save(app, vec![bind], restic::DUMP, reason).await
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        saved
    }

    /// `restic backup` of `path` with the app's tags.
    async fn save(
        &self,
        app: &DesiredApp,
        binds: Vec<String>,
        path: &str,
        reason: &str,
    ) -> Result<String, BackupError> {
        let mut tags = tags(&self.instance, &app.key).to_vec();
        tags.push(restic::reason_tag(reason));
        let host = format!("berth-{}", self.instance);
        let out = self
            .restic(&restic::backup_script(&host, &tags, path), binds, 30)
            .await?;
        restic::parse_backup(&out).ok_or_else(|| {
            BackupError::Failed(format!(
                "restic saved no snapshot: {}",
                restic::last_line(&out)
            ))
        })
    }

    /// `<docker volume>:/data/<name>[:ro]` for each of the app's volumes.
    fn volume_binds(&self, app: &DesiredApp, read_only: bool) -> Vec<String> {
        let ro = if read_only { ":ro" } else { "" };
        app.template
            .volumes
            .iter()
            .map(|v| {
                let docker = crate::model::volumes::volume_name(&self.instance, &app.key, &v.name);
                format!("{docker}:{}/{}{ro}", restic::DATA, v.name)
            })
            .collect()
    }

    /// A fresh scratch directory for `key` (0700).
    fn scratch_dir(&self, key: &AppKey) -> Result<PathBuf, BackupError> {
        make_private_dir(&self.scratch)?;
        let dir = self.scratch.join(format!("{}.{}", key.userid, key.appname));
        let _ = std::fs::remove_dir_all(&dir);
        make_private_dir(&dir)?;
        Ok(dir)
    }

    /// Runs `script` in a restic container with the repository and `binds` mounted; its
    /// output when it exits 0.
    async fn restic(
        &self,
        script: &str,
        mut binds: Vec<String>,
        tail: u32,
    ) -> Result<String, BackupError> {
        binds.push(format!("{}:{}", self.repo.display(), restic::REPO));
        let command = ["sh".to_string(), "-c".into(), script.to_string()];
        let job = Job {
            name: format!("berth-{}-restic", self.instance),
            image: &self.image,
            command: &command,
            workdir: "/",
            binds,
            env: vec![],
            timeout: LIMIT,
            cap_add: [
                "CHOWN",
                "DAC_OVERRIDE",
                "DAC_READ_SEARCH",
                "FOWNER",
                "FSETID",
            ]
            .map(String::from)
            .to_vec(),
            as_root: true,
            stdin: Some(self.password.clone()),
            tail,
        };
        let ended = self.engine.run_once(job).await.map_err(|e| {
            if e.is_not_found() {
                BackupError::Failed(format!(
                    "{e}: the image {} is missing (scripts/build-restic-image.sh builds it from the host's restic)",
                    self.image
                ))
            } else {
                e.into()
            }
        })?;
        match ended.code {
            Some(0) => Ok(ended.tail),
            Some(c) => Err(BackupError::Failed(format!(
                "restic exited with {c}: {}",
                restic::last_line(&ended.tail)
            ))),
            None => Err(BackupError::Failed(format!(
                "restic still ran after {}s",
                LIMIT.as_secs()
            ))),
        }
    }
}

/// How `app` is backed up, or why it cannot be.
fn method(app: &DesiredApp) -> Result<BackupMethod, BackupError> {
    app.template.backup.clone().ok_or_else(|| {
        BackupError::Unsupported(format!(
            "{}: template {} keeps no data berth can back up (no [[volumes]], no [backup])",
            app.key, app.template.id
        ))
    })
}

fn make_private_dir(dir: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}
