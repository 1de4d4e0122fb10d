//! A restore in place: the snapshot must be one of this app's (its tags), a safety snapshot
//! of the data as it is now is saved first (so a restore is itself undoable), then the data
//! is put back. Volumes are restored with the app's container stopped and the loop holding
//! off; a dump is fed to the template's restore command in the running container, which is
//! what loads it.

use tracing::info;

use super::{io, method, restic, BackupError, Backups, Held, LIMIT};
use crate::model::backup::BackupMethod;
use crate::model::desired::DesiredApp;
use crate::model::manifest::RunState;

/// A restore that succeeded.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The snapshot restored (full id).
    pub snapshot: String,
    /// The safety snapshot of the data it replaced (full id).
    pub safety: String,
}

impl Backups {
    /// Restores `app` from `snapshot` (an id or its prefix of at least 8 hex digits; none:
    /// the newest), in place.
    pub async fn restore(
        &self,
        app: &DesiredApp,
        snapshot: Option<&str>,
    ) -> Result<Restored, BackupError> {
        let _one = self.lock.lock().await;
        let method = method(app)?;
        if !self.repo.join("config").exists() {
            return Err(BackupError::NoSnapshot(format!(
                "{} has no snapshots",
                app.key
            )));
        }
        let listed = self.listed(&app.key).await?;
        let chosen = pick(&listed, snapshot, &app.key)?;
        let safety = self.run_locked(app, "pre-restore", false).await?.id;
        info!(app = %app.key, snapshot = %chosen, safety = %safety, "restoring");
        match method {
            BackupMethod::Dump { restore, file, .. } => {
                self.restore_dump(app, &chosen, &restore, &file).await?
            }
            BackupMethod::Volume {} => self.restore_volumes(app, &chosen).await?,
        }
        info!(app = %app.key, snapshot = %chosen, "restored");
        Ok(Restored {
            snapshot: chosen,
            safety,
        })
    }

    /// Stops the app's container (the loop holds off meanwhile), empties and restores its
    /// volumes, and starts it again when its manifest wants it running.
    async fn restore_volumes(&self, app: &DesiredApp, id: &str) -> Result<(), BackupError> {
        self.holds.lock().insert(app.key.clone());
        let _held = Held(&self.holds, app.key.clone());
        let container = app.key.container_name(&self.instance);
        self.engine.stop(&container, self.stop_timeout).await?;
        let binds = self.volume_binds(app, false);
        let restored = self
            .restic(&restic::restore_volumes_script(id), binds, 30)
            .await;
        if app.run == RunState::Running {
            self.engine.start(&container).await?;
        }
        restored.map(|_| ())
    }

    /// Restores the dump into scratch, then feeds it to the template's restore command in
    /// the running container; its exit status decides.
    async fn restore_dump(
        &self,
        app: &DesiredApp,
        id: &str,
        command: &[String],
        file: &str,
    ) -> Result<(), BackupError> {
        let dir = self.scratch_dir(&app.key)?;
        let done = async {
            let bind = format!("{}:{}", dir.display(), restic::DUMP);
            self.restic(&restic::restore_dump_script(id), vec![bind], 30)
                .await?;
            let path = dir.join("dump").join(file);
            let path = if path.exists() { path } else { dir.join(file) };
            let input = tokio::fs::File::open(&path).await.map_err(io(&path))?;
            let container = app.key.container_name(&self.instance);
            let ended = self
                .engine
                .exec_with_files(&container, command, Some(input), None, LIMIT)
                .await?;
            match ended.code {
                Some(0) => Ok(()),
                code => Err(BackupError::Failed(format!(
                    "the restore command {}: {}",
                    code.map_or("did not finish".into(), |c| format!("exited with {c}")),
                    ended.stderr
                ))),
            }
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        done
    }
}

/// The full id of the snapshot `wanted` names among `key`'s `listed` (newest first). None
/// named: the newest that is not a restore's own safety snapshot, so a second plain restore
/// does not undo the first (a safety snapshot is restored by its id).
fn pick(
    listed: &[(String, restic::Snapshot)],
    wanted: Option<&str>,
    key: &crate::model::names::AppKey,
) -> Result<String, BackupError> {
    let Some(wanted) = wanted else {
        return listed
            .iter()
            .find(|(_, s)| s.reason != "pre-restore")
            .map(|(id, _)| id.clone())
            .ok_or_else(|| {
                BackupError::NoSnapshot(format!(
                    "{key} has no snapshots but restores' safety snapshots (name one with --snapshot)"
                ))
            });
    };
    let matching: Vec<_> = listed
        .iter()
        .filter(|(id, _)| id.starts_with(wanted))
        .collect();
    match matching.as_slice() {
        [(id, _)] => Ok(id.clone()),
        [] => Err(BackupError::NoSnapshot(format!(
            "{key} has no snapshot {wanted:?} (`berth backups list {key}`)"
        ))),
        _ => Err(BackupError::NoSnapshot(format!(
            "{wanted:?} names more than one snapshot of {key}: give more of the id"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, reason: &str) -> (String, restic::Snapshot) {
        let s = restic::Snapshot {
            id: id[..8].to_string(),
            time: String::new(),
            size: None,
            reason: reason.into(),
        };
        (id.to_string(), s)
    }

    #[test]
    fn a_plain_restore_skips_safety_snapshots_and_an_id_still_names_one() {
        let key = crate::model::names::AppKey::new("alice", "db").unwrap();
        let listed = [
            snap("aaaaaaaa11", "pre-restore"),
            snap("bbbbbbbb22", "manual"),
        ];
        assert_eq!(pick(&listed, None, &key).unwrap(), "bbbbbbbb22");
        assert_eq!(pick(&listed, Some("aaaaaaaa"), &key).unwrap(), "aaaaaaaa11");
        let only_safety = [snap("aaaaaaaa11", "pre-restore")];
        let err = pick(&only_safety, None, &key).unwrap_err().to_string();
        assert!(err.contains("--snapshot"), "{err}");
    }
}
