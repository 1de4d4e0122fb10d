//! The executor's Swarm arm (`runtime = "swarm"`, docs/guides/swarm.md): the same planned changes, carried
//! out on services. A create or a recreate builds (or reuses) the app's image and pushes it
//! first; a recreate is Swarm's own rolling update (start-first unless a host port is held,
//! rolled back by Swarm when the new task fails); start and stop scale the service; a removal
//! runs the pre-delete hook and removes the service. Hooks and installs run here, on the
//! manager, as with one engine: they make what goes into the image.

use tracing::{info, warn};

/// How long a rolling update may take beyond the app's health timeout before berth stops
/// waiting (the change fails and is retried; Swarm goes on with it).
const UPDATE_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// How long a removed service's tasks may take to go beyond the stop grace.
const TASKS_GONE_SLACK: std::time::Duration = std::time::Duration::from_secs(15);

use crate::model::desired::DesiredApp;
use crate::model::names::AppKey;
use crate::model::spec::user_network;
use crate::model::template::HookKind;
use crate::reconcile::plan::{Action, AppChange, ContainerRef};
use crate::runtime::executor::{ActionError, Executor};

impl Executor {
    /// Runs one app's change against the swarm.
    pub(in crate::runtime) async fn execute_swarm(
        &self,
        change: &AppChange,
        app: Option<&DesiredApp>,
        registry: &str,
    ) -> Result<(), ActionError> {
        for dup in &change.duplicates {
            info!(app = %change.key, service = %dup.name, "removing duplicate service");
            self.engine().remove_service(&dup.id).await?;
        }
        let Some(action) = &change.action else {
            return Ok(());
        };
        info!(app = %change.key, action = action.kind(), "executing on the swarm");
        let need_app =
            || app.ok_or_else(|| ActionError::Internal(format!("{}: no desired app", change.key)));
        let grace = self.config().stop_timeout;
        match action {
            Action::Create { start } => {
                let app = need_app()?;
                let image = self.image_for(app, HookKind::PreCreate, registry).await?;
                let id = self
                    .engine()
                    .create_service(app, &image, *start, grace)
                    .await?;
                if *start {
                    self.route_when_live(app, &id).await;
                }
                self.prune_images(&app.key, registry, Some(&image)).await;
                Ok(())
            }
            Action::Recreate { old, start, .. } => {
                let app = need_app()?;
                let image = self.image_for(app, HookKind::PreDeploy, registry).await?;
                self.roll(app, &old.id, &image, *start).await?;
                self.prune_images(&app.key, registry, Some(&image)).await;
                Ok(())
            }
            Action::Start { container, .. } => self.scale(app, container, true).await,
            Action::Stop { container } => self.scale(app, container, false).await,
            // Services have no `_next` names: nothing to settle.
            Action::Settle { .. } => Ok(()),
            // The old name's service goes, its data moves here; the next pass makes the
            // new name's service.
            Action::Rename { from, .. } => {
                self.take_over(need_app()?, from).await?;
                self.prune_images(from, registry, None).await;
                Ok(())
            }
            Action::Remove {
                containers,
                template,
            } => {
                self.remove(&change.key, containers, template.as_deref())
                    .await?;
                self.prune_images(&change.key, registry, None).await;
                Ok(())
            }
        }
    }

    /// Swarm's rolling update of `service` to `app`, waited for: a rollback by Swarm refuses
    /// the spec, as a failed health gate does on one engine (no retry until the manifest
    /// changes), instead of the next pass rolling the same failure again.
    async fn roll(
        &self,
        app: &DesiredApp,
        service: &str,
        image: &str,
        run: bool,
    ) -> Result<(), ActionError> {
        let grace = self.config().stop_timeout;
        let engine = self.engine();
        let before = engine
            .update_service(service, app, image, run, grace)
            .await?;
        let limit = UPDATE_LIMIT + app.health.as_ref().map(|h| h.timeout).unwrap_or_default();
        let waited = engine.wait_update(service, before, limit);
        match self.routed(app, service, waited).await? {
            None => Ok(()),
            Some(why) => Err(ActionError::RolledBack {
                hash: app.hash.clone(),
                health: app.health.clone().map(Box::new),
                reason: format!("was rolled back by Swarm: {why}"),
            }),
        }
    }

    /// Removes `key`'s images past `revisions_kept` on this engine and in the registry, but
    /// `running` (`tag@digest` or none); a failure is only logged: the next deploy prunes again.
    async fn prune_images(&self, key: &AppKey, registry: &str, running: Option<&str>) {
        let current = running.map(|i| i.split_once('@').map_or(i, |(tag, _)| tag));
        // A deleted app (nothing running) keeps none.
        let keep = current.map_or(0, |_| self.config().revisions_kept);
        match self
            .engine()
            .prune_app_images(key, registry, current, keep)
            .await
        {
            Ok((removed, kept)) => {
                if removed > 0 {
                    info!(app = %key, removed, "swarm: old images removed");
                }
                self.prune_registry(key, registry, &kept, running).await;
            }
            Err(e) => warn!(app = %key, cause = %e, "swarm: cannot prune old images"),
        }
    }

    /// The workspace checked, the template's install and `kind` hook run, then the app's
    /// image built (or found) and pushed.
    async fn image_for(
        &self,
        app: &DesiredApp,
        kind: HookKind,
        registry: &str,
    ) -> Result<String, ActionError> {
        self.prepare_files(app, kind).await?;
        Ok(self.engine().ensure_app_image(app, registry).await?)
    }

    async fn scale(
        &self,
        app: Option<&DesiredApp>,
        service: &ContainerRef,
        run: bool,
    ) -> Result<(), ActionError> {
        let replicas = app.and_then(|a| a.spec.replicas).unwrap_or(1);
        self.engine()
            .scale_service(&service.id, replicas, run)
            .await?;
        if let (Some(app), true) = (app, run) {
            self.route_when_live(app, &service.id).await;
        }
        Ok(())
    }

    /// Removes `key`'s services, waits for their tasks on this engine to go (a purge then
    /// removes the volumes they used), and drops the user's overlay if it was the last.
    pub(in crate::runtime) async fn remove_services(
        &self,
        key: &AppKey,
        services: &[ContainerRef],
    ) -> Result<(), ActionError> {
        for s in services {
            self.engine().remove_service(&s.id).await?;
        }
        let grace = self.config().stop_timeout + TASKS_GONE_SLACK;
        for s in services {
            self.engine().wait_tasks_gone(&s.id, grace).await?;
        }
        self.drop_user_overlay(&key.userid).await;
        Ok(())
    }

    /// After one of `userid`'s services was removed: removes the user's overlay when no
    /// service of the user is left. Swarm refuses while removed tasks (on any node) still hold
    /// it, so this tries for their stop grace and a little more, taking the network's lock
    /// only for each try (a create of the user's next app waits for one try at most); an
    /// overlay still held then is only logged.
    async fn drop_user_overlay(&self, userid: &str) {
        let net = user_network(&self.config().instance, userid);
        let until = std::time::Instant::now() + self.config().stop_timeout + TASKS_GONE_SLACK;
        loop {
            match self.try_drop_overlay(&net, userid).await {
                Ok(false) => return,
                Ok(true) if std::time::Instant::now() < until => {}
                Ok(true) => {
                    return warn!(network = %net, "swarm: the user's overlay is still in use; left in place")
                }
                Err(e) => {
                    return warn!(network = %net, cause = %e, "swarm: cannot remove the user's overlay")
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// One try: whether to try again (the overlay is still there, held by a removed task;
    /// not when a service of the user still needs it, or it is gone).
    async fn try_drop_overlay(&self, net: &str, userid: &str) -> Result<bool, ActionError> {
        let lock = self.engine().network_lock(net).await;
        let _alone = lock.write().await;
        let services = self.engine().list_services().await?;
        if services.iter().any(|o| o.key.userid == userid) {
            return Ok(false);
        }
        Ok(self.engine().remove_network_if_unused(net).await?)
    }
}
