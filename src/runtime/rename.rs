//! A rename's takeover (docs/guides/volumes-and-rename.md, `renamed_from`): the old name's containers stop (in swarm
//! mode its service goes, its volumes being on this node, where its one task was pinned), its
//! workspace directory moves (one `rename(2)`), each of its volumes is copied into the new
//! name's volume by a one-off container of the app's own image, and then the old containers
//! and volumes go. Every step can run again: a cut-short copy is redone from an emptied
//! target (the target carries `paas.renamed-from`, so only a volume this rename made is ever
//! emptied), and the old volume is removed last, so "old volume gone" means "copied".

use std::collections::HashMap;

use tracing::info;

use crate::model::desired::DesiredApp;
use crate::model::labels;
use crate::model::names::AppKey;
use crate::model::volumes::volume_name;
use crate::reconcile::plan::ContainerRef;
use crate::runtime::engine::Job;
use crate::runtime::executor::{ActionError, Executor};

/// How long one volume's copy may run (a day: it is bounded by the data, not by a guess).
const COPY_LIMIT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Empties the target, then copies everything, owners and modes kept.
const COPY: &str = "set -e; rm -rf /to/..?* /to/.[!.]* /to/*; cp -a /from/. /to/";

impl Executor {
    /// Takes `from`'s containers, workspace and volumes over for `app`.
    pub(in crate::runtime) async fn take_over(
        &self,
        app: &DesiredApp,
        from: &AppKey,
    ) -> Result<(), ActionError> {
        let containers = self.stop_old(app, from).await?;
        self.move_workspace(from, &app.key)?;
        let old_volumes = self.engine().volumes_of(from).await?;
        if !old_volumes.is_empty() {
            self.engine().ensure_image(&app.spec.image).await?;
        }
        for old in &old_volumes {
            self.copy_volume(app, from, old).await?;
        }
        for c in &containers {
            self.stop_and_remove(c).await?;
        }
        for old in &old_volumes {
            self.engine().remove_volume(old).await?;
        }
        info!(app = %app.key, from = %from, volumes = old_volumes.len(), "rename taken over");
        Ok(())
    }

    /// Stops whatever the old name runs at this moment (listed now, not taken from the plan)
    /// and answers its containers, removed once the data is copied. A Swarm service is removed
    /// at once, and its tasks waited for: its volumes are free to copy only then.
    async fn stop_old(
        &self,
        app: &DesiredApp,
        from: &AppKey,
    ) -> Result<Vec<ContainerRef>, ActionError> {
        if self.config().runtime.is_swarm() {
            let services = self.engine().list_services().await?;
            let old: Vec<_> = services.iter().filter(|o| &o.key == from).collect();
            for s in &old {
                info!(app = %app.key, service = %s.name, "removing the old name's service");
                self.engine().remove_service(&s.id).await?;
            }
            let grace = self.config().stop_timeout + std::time::Duration::from_secs(15);
            for s in &old {
                self.engine().wait_tasks_gone(&s.id, grace).await?;
            }
            return Ok(vec![]);
        }
        let containers = self.containers_of(from).await?;
        for c in containers.iter().filter(|c| c.running) {
            info!(app = %app.key, container = %c.name, "stopping the old name's container");
            self.engine()
                .stop(&c.id, self.config().stop_timeout)
                .await?;
        }
        Ok(containers)
    }

    /// `key`'s containers in any state, as the engine lists them now.
    async fn containers_of(&self, key: &AppKey) -> Result<Vec<ContainerRef>, ActionError> {
        let listed = self.engine().list().await?;
        let mine = listed.iter().filter(|o| &o.key == key);
        Ok(mine.map(ContainerRef::of).collect())
    }

    /// `apps/<user>/<old>` becomes `apps/<user>/<new>`; nothing to do when it moved already.
    /// Two workspaces are never merged: that is a person's call.
    fn move_workspace(&self, from: &AppKey, to: &AppKey) -> Result<(), ActionError> {
        self.check_workspace(from)?;
        self.check_workspace(to)?;
        let (old, new) = (self.workspace(from), self.workspace(to));
        if std::fs::symlink_metadata(&old).is_err() {
            return Ok(());
        }
        if std::fs::remove_dir(&new).is_ok() {
            info!(app = %to, "an empty workspace made meanwhile gave way to the old one");
        }
        if new.exists() {
            return Err(ActionError::Rename(format!(
                "both {} and {} exist; berth does not merge workspaces: move one of them away",
                old.display(),
                new.display()
            )));
        }
        std::fs::rename(&old, &new).map_err(|e| {
            ActionError::Rename(format!(
                "cannot move {} to {}: {e}",
                old.display(),
                new.display()
            ))
        })
    }

    /// Copies volume `old` of `from` into the same volume of `app`.
    async fn copy_volume(
        &self,
        app: &DesiredApp,
        from: &AppKey,
        old: &str,
    ) -> Result<(), ActionError> {
        let instance = &self.config().instance;
        let prefix = volume_name(instance, from, "");
        let name = old.strip_prefix(&prefix).unwrap_or(old);
        let target = volume_name(instance, &app.key, name);
        let from_volume = format!("{}@{}", from.appname, self.created_at(old).await?);
        self.ensure_copy_target(app, &from_volume, &target).await?;
        let command = ["sh".to_string(), "-c".into(), COPY.into()];
        let job = Job {
            name: format!(
                "berth-{instance}-rename-{}-{}-{name}",
                app.key.userid, app.key.appname
            ),
            image: &app.spec.image,
            command: &command,
            workdir: "/",
            binds: vec![format!("{old}:/from:ro"), format!("{target}:/to")],
            env: vec![],
            // A copy takes as long as the data needs; a limit would only make it start over.
            timeout: COPY_LIMIT,
            as_root: true,
            cap_add: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"]
                .map(String::from)
                .to_vec(),
            stdin: None,
            tail: 30,
        };
        let ended = self.engine().run_once(job).await?;
        match ended.code {
            Some(0) => {
                info!(app = %app.key, from = %old, to = %target, "volume copied");
                Ok(())
            }
            code => Err(ActionError::Rename(format!(
                "copying volume {old} into {target} {}: {}",
                code.map_or("timed out".to_string(), |c| format!("exited with {c}")),
                ended.tail
            ))),
        }
    }

    /// Makes the copy's target, labelled as `app`'s and as this rename's (`<old>@<when the old
    /// volume was made>`); an existing volume of that name is used only when this rename made it.
    async fn ensure_copy_target(
        &self,
        app: &DesiredApp,
        from_volume: &str,
        target: &str,
    ) -> Result<(), ActionError> {
        let mut want: HashMap<String, String> =
            labels::for_volume(&self.config().instance, &app.key);
        want.insert(labels::RENAMED_FROM.to_string(), from_volume.to_string());
        match self.engine().volume_labels(target).await? {
            None => Ok(self.engine().create_volume(target, want).await?),
            Some((found, _)) if want.iter().all(|(k, v)| found.get(k) == Some(v)) => Ok(()),
            Some(_) => Err(ActionError::Rename(format!(
                "volume {target} exists and was not made by this rename; berth will not copy over it (remove it, or rename to another name)"
            ))),
        }
    }

    /// When volume `name` was made: with the old app's name, it tells this rename's copy
    /// target from one an earlier rename of that name left.
    async fn created_at(&self, name: &str) -> Result<String, ActionError> {
        match self.engine().volume_labels(name).await? {
            Some((_, created)) => Ok(created),
            None => Err(ActionError::Rename(format!("volume {name} vanished"))),
        }
    }
}
