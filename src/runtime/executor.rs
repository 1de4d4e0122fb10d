//! Executes one app's planned change: hooks first, then Docker calls, in the order docs/reference/reconcile-rules.md
//! gives. Knows nothing about scheduling: the daemon's loop (through `LoopState`) decides what
//! runs when, and
//! **calls `execute` for at most one change per app at a time.**

use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use crate::model::config::Config;
use crate::model::desired::DesiredApp;
use crate::model::names::AppKey;
use crate::model::runtime_mode::Runtime;
use crate::model::spec::user_network;
use crate::model::template::{HookKind, Template};
use crate::reconcile::plan::{Action, AppChange, ContainerRef};
use crate::runtime::engine::Engine;
use crate::runtime::front::Front;
use crate::runtime::hook_groups::HookGroups;
use crate::runtime::hooks::{HookEnv, HookRunner};
use crate::runtime::informer::Informer;
use crate::runtime::removals::RemovalRequests;

pub use crate::runtime::action_error::ActionError;

/// Carries out plans: the engine plus the hook runner.
pub struct Executor {
    /// Paths and timeouts.
    config: Arc<Config>,
    /// Docker.
    engine: Engine,
    /// The container list kept between passes; every change ends it.
    informer: Arc<Informer>,
    /// Serializes hooks per template.
    hooks: HookRunner,
    /// Apps whose deletion asked for purge: their pre-delete hook gets `BERTH_PURGE=1` and
    /// berth then removes the workspace itself.
    removals: Arc<RemovalRequests>,
    /// Apps a restore has stopped: the serve loop plans nothing for them meanwhile.
    holds: Arc<crate::runtime::backup::Holds>,
    /// The front door (`[proxy]`): rollouts switch routes through it.
    front: Option<Arc<Front>>,
    /// Template installs that failed moments ago, so one failure is not run once per app.
    install_failures: crate::runtime::install::Failures,
    /// Builds of apps with `[build]`.
    builder: crate::runtime::builder::Builder,
}

impl Executor {
    /// An executor for `config` on `engine`, for a process that runs passes and exits: its
    /// routes dial containers directly, since forwarders would die with it.
    pub fn new(config: Arc<Config>, engine: Engine) -> Executor {
        Executor::build(config, engine, false)
    }

    /// An executor for `berth serve`: with containers, each domain app's traffic goes through a
    /// forwarder this process holds (`runtime::forward`), so a deploy changes nothing in Caddy.
    pub fn serving(config: Arc<Config>, engine: Engine) -> Executor {
        Executor::build(config, engine, true)
    }

    fn build(config: Arc<Config>, engine: Engine, forward: bool) -> Executor {
        // Beside the database: state berth keeps about itself, not about apps.
        let groups = config.database.with_file_name("berth-hooks");
        let hooks = HookRunner::new(config.hook_timeout)
            .recording_in(HookGroups::new(groups))
            .locking_in(config.database.with_file_name("berth-hook-locks"));
        let front = Front::new(&config, forward).map(Arc::new);
        let services = config.runtime.is_swarm();
        let informer = Arc::new(Informer::new(engine.clone(), config.relist, services));
        let builder = crate::runtime::builder::Builder::new(
            config.builds.clone(),
            config.database.with_file_name("builds"),
        );
        Executor {
            config,
            engine,
            informer,
            hooks,
            removals: Arc::default(),
            holds: Arc::default(),
            front,
            install_failures: Default::default(),
            builder,
        }
    }

    /// Kills the hooks a killed berth left running (and removes a killed build's secret
    /// files); call at start, before any pass.
    pub fn reap_left_over_hooks(&self) -> usize {
        crate::runtime::builder::remove_left_secrets(
            &self.config.database.with_file_name("builds"),
        );
        self.hooks.reap_left_over()
    }

    /// The front door, when berth.toml has `[proxy]`.
    pub fn front(&self) -> Option<&Arc<Front>> {
        self.front.as_ref()
    }

    pub(in crate::runtime) fn config(&self) -> &Config {
        &self.config
    }

    /// The purge requests this executor honours (the API records them).
    pub fn removals(&self) -> &Arc<RemovalRequests> {
        &self.removals
    }

    /// Removes `key`'s workspace and clears its purge request. The path is built from
    /// checked names; a symlink there is removed, not followed.
    pub fn finish_purge(&self, key: &AppKey) {
        if let Err(e) = self.check_workspace(key) {
            warn!(app = %key, cause = %e, "not purging through a link");
            self.removals.cancel(key);
            return;
        }
        let dir = self.workspace(key);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => info!(app = %key, dir = %dir.display(), "purged workspace"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(app = %key, dir = %dir.display(), cause = %e, "cannot purge workspace"),
        }
        self.removals.cancel(key);
    }

    /// Refuses a user directory or workspace under `apps/` that is a symlink or not a
    /// directory: a hook would write through it and Docker would mount its target.
    pub(in crate::runtime) fn check_workspace(&self, key: &AppKey) -> Result<(), ActionError> {
        let user = self.config.apps_dir.join(&key.userid);
        for path in [user.clone(), user.join(&key.appname)] {
            let what = match std::fs::symlink_metadata(&path) {
                Ok(md) if md.file_type().is_symlink() => "a symlink",
                Ok(md) if !md.is_dir() => "not a directory",
                _ => continue,
            };
            return Err(ActionError::Workspace { path, what });
        }
        Ok(())
    }

    /// Refuses to replace or start a container of `app` whose mounted workspace is gone.
    /// Docker would refuse the bind only after the old container was stopped (a stop-first
    /// rollout) and the change would be rolled back on every pass; a hook making a fresh
    /// workspace would put a scaffold where the user's files were. A missing workspace is an
    /// accident to report, not a state to deploy over; only a create (a new app) makes one.
    pub(in crate::runtime) fn check_workspace_present(
        &self,
        app: &DesiredApp,
    ) -> Result<(), ActionError> {
        let dir = self.workspace(&app.key);
        let mounted = (app.spec.mounts.iter()).any(|m| Path::new(&m.source).starts_with(&dir));
        match std::fs::symlink_metadata(&dir) {
            Err(e) if mounted && e.kind() == std::io::ErrorKind::NotFound => {
                Err(ActionError::WorkspaceMissing { path: dir })
            }
            _ => Ok(()),
        }
    }

    pub(in crate::runtime) fn workspace(&self, key: &AppKey) -> std::path::PathBuf {
        self.config.apps_dir.join(&key.userid).join(&key.appname)
    }

    /// The engine, for the reads the daemon makes (its writes are not reachable from outside
    /// `runtime`).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The container list passes read (and the API's reader shares).
    pub fn informer(&self) -> &Arc<Informer> {
        &self.informer
    }

    /// The apps a restore holds (shared with the backup runner).
    pub fn holds(&self) -> &Arc<crate::runtime::backup::Holds> {
        &self.holds
    }

    /// Runs one app's change to completion. `app` is the desired app (absent for removals).
    /// However it ends, the informer's kept list ends with it: a list that began before the
    /// change's last write must not stand for the state after it.
    pub async fn execute(
        &self,
        change: &AppChange,
        app: Option<&DesiredApp>,
    ) -> Result<(), ActionError> {
        let _invalidate = Invalidate(&self.informer);
        self.run(change, app).await
    }

    async fn run(&self, change: &AppChange, app: Option<&DesiredApp>) -> Result<(), ActionError> {
        if let Runtime::Swarm { registry, .. } = &self.config.runtime {
            return self.execute_swarm(change, app, registry).await;
        }
        for dup in &change.duplicates {
            info!(app = %change.key, container = %dup.name, "removing duplicate container");
            self.stop_and_remove(dup).await?;
        }
        let Some(action) = &change.action else {
            return Ok(());
        };
        info!(app = %change.key, action = action.kind(), "executing");
        let need_app = || {
            app.ok_or_else(|| {
                ActionError::Internal(format!(
                    "{}: no desired app for {}",
                    change.key,
                    action.kind()
                ))
            })
        };
        match action {
            Action::Create { start } => {
                let app = need_app()?;
                self.prepare(app, HookKind::PreCreate).await?;
                let (name, _) = self.engine.names(&app.key);
                self.create(app, *start, &name).await.map(drop)
            }
            Action::Recreate { old, strategy, .. } => {
                let app = need_app()?;
                self.prepare(app, HookKind::PreDeploy).await?;
                self.replace(app, old, *strategy).await
            }
            Action::Settle { container } => {
                let (name, _) = self.engine.names(&change.key);
                info!(app = %change.key, from = %container.name, "settling an interrupted rollout");
                Ok(self.engine.rename(&container.id, &name).await?)
            }
            Action::Start { container, .. } => self.start(&change.key, app, &container.id).await,
            Action::Stop { container } => Ok(self
                .engine
                .stop(&container.id, self.config.stop_timeout)
                .await?),
            Action::Rename { from, .. } => self.take_over(need_app()?, from).await,
            Action::Remove {
                containers,
                template,
            } => {
                self.remove(&change.key, containers, template.as_deref())
                    .await
            }
        }
    }

    /// An app without a manifest: its template's pre-delete hook (with `BERTH_PURGE=1` when a
    /// purge was asked for), its containers (or services), then its volumes and workspace if
    /// purging.
    pub(in crate::runtime) async fn remove(
        &self,
        key: &AppKey,
        containers: &[ContainerRef],
        template: Option<&str>,
    ) -> Result<(), ActionError> {
        // Hooks and the purge must not act through a workspace that became a link: the
        // containers still go, the linked directory is left alone.
        let linked = self.check_workspace(key).err();
        if let Some(e) = &linked {
            warn!(app = %key, cause = %e, "removing without pre-delete hook or purge");
            self.removals.cancel(key);
        }
        let purge = self.removals.wants_purge(key);
        match template
            .filter(|_| linked.is_none())
            .map(|id| Template::load(&self.config, id))
        {
            Some(Ok(t)) => self.hook(&t, HookKind::PreDelete, key, purge).await?,
            Some(Err(e)) => {
                warn!(app = %key, cause = %e, "template gone; removing without pre-delete hook")
            }
            None => {}
        }
        match self.config.runtime.is_swarm() {
            true => self.remove_services(key, containers).await?,
            false => {
                for c in containers {
                    self.stop_and_remove(c).await?;
                }
                self.drop_user_network(&key.userid).await?;
            }
        }
        if purge {
            for v in self.engine.remove_volumes(key).await? {
                info!(app = %key, volume = %v, "purged volume");
            }
            self.finish_purge(key);
        }
        Ok(())
    }

    /// Creates (and starts) a container of the app named `name`, on its user's network if
    /// it has one; returns its id. The caller has made sure of the image (once per change).
    pub(in crate::runtime) async fn create(
        &self,
        app: &DesiredApp,
        start: bool,
        name: &str,
    ) -> Result<String, ActionError> {
        let (held, network) = self.join_network(Some(app)).await?;
        self.engine.ensure_volumes(app).await?;
        let id = self.engine.create(app, name, network.as_deref()).await?;
        if start {
            if let Err(e) = self.engine.start(&id).await {
                // A container that cannot start is not left for the next pass to trip on.
                if let Err(gone) = self.engine.remove(&id).await {
                    warn!(app = %app.key, container = name, cause = %gone, "cannot remove a container that did not start");
                }
                return Err(e.into());
            }
        }
        drop(held);
        Ok(id)
    }

    /// Starts an existing container. Its workspace is checked again (it is mounted anew), and
    /// its user's network made sure of.
    pub(in crate::runtime) async fn start(
        &self,
        key: &AppKey,
        app: Option<&DesiredApp>,
        id: &str,
    ) -> Result<(), ActionError> {
        self.check_workspace(key)?;
        if let Some(app) = app {
            self.check_workspace_present(app)?;
        }
        let (_held, _) = self.join_network(app).await?;
        Ok(self.engine.start(id).await?)
    }

    /// For an app on its user's network: takes the network's lock, makes sure the network
    /// exists (one copy of it) and answers its id. Hold the guard until the container is
    /// started (attached), so the removal of the user's last other app cannot take the
    /// network away in between.
    pub(in crate::runtime) async fn join_network(
        &self,
        app: Option<&DesiredApp>,
    ) -> Result<
        (
            Option<tokio::sync::OwnedRwLockReadGuard<()>>,
            Option<String>,
        ),
        ActionError,
    > {
        let Some((net, userid)) = app.and_then(|a| Some((a.spec.network.as_ref()?, &a.key.userid)))
        else {
            return Ok((None, None));
        };
        // Made (or checked) alone, then shared: a user's apps are created side by side, and
        // only the removal of the network waits for them all.
        let alone = self.engine.network_lock(net).await.write_owned().await;
        let id = self.engine.ensure_network(net, userid).await?;
        // Before any container joins it, so another user's container never has a moment.
        self.engine.isolate(Some(&id)).await?;
        Ok((Some(alone.downgrade()), Some(id)))
    }

    /// After one of `userid`'s apps was removed: removes the user's network when no container
    /// of the user is left in any state (Docker would let a network go while only stopped
    /// containers use it, and they could not start again).
    async fn drop_user_network(&self, userid: &str) -> Result<(), ActionError> {
        let net = user_network(&self.config.instance, userid);
        let lock = self.engine.network_lock(&net).await;
        let _alone = lock.write().await;
        if self
            .engine
            .list()
            .await?
            .iter()
            .any(|o| o.key.userid == userid)
        {
            return Ok(());
        }
        if !self.engine.remove_network_if_unused(&net).await? {
            self.engine.isolate(None).await?;
        }
        Ok(())
    }

    pub(in crate::runtime) async fn stop_and_remove(
        &self,
        c: &ContainerRef,
    ) -> Result<(), ActionError> {
        if c.running {
            self.engine.stop(&c.id, self.config.stop_timeout).await?;
        }
        Ok(self.engine.remove(&c.id).await?)
    }

    /// What comes before a container of `app` is made: its workspace checked, the template's
    /// install, the `kind` hook, the image (before the old container is touched).
    async fn prepare(&self, app: &DesiredApp, kind: HookKind) -> Result<(), ActionError> {
        self.prepare_files(app, kind).await?;
        match &app.spec.build {
            None => Ok(self.engine.ensure_image(&app.spec.image).await?),
            Some(build) => self.builder.ensure(&self.engine, app, build).await,
        }
    }

    /// The files a container of `app` is made from: its workspace checked, the template's
    /// install, the `kind` hook.
    pub(in crate::runtime) async fn prepare_files(
        &self,
        app: &DesiredApp,
        kind: HookKind,
    ) -> Result<(), ActionError> {
        self.check_workspace(&app.key)?;
        if kind == HookKind::PreDeploy {
            self.check_workspace_present(app)?;
        }
        self.install(&app.template).await?;
        self.hook(&app.template, kind, &app.key, false).await
    }

    /// The template's shared install, under its lock (nothing when it has none).
    async fn install(&self, t: &Template) -> Result<(), ActionError> {
        if t.install.is_none() {
            return Ok(());
        }
        let _held = self.hooks.hold(&t.id, "install").await?;
        let failures = &self.install_failures;
        Ok(crate::runtime::install::ensure(&self.engine, &self.config, t, failures).await?)
    }

    async fn hook(
        &self,
        t: &Template,
        kind: HookKind,
        key: &AppKey,
        purge: bool,
    ) -> Result<(), ActionError> {
        let Some(path) = t.hooks.get(&kind) else {
            return Ok(());
        };
        let env = HookEnv {
            key: key.clone(),
            template_dir: t.dir.clone(),
            app_dir: self.workspace(key),
            shared_dir: self.config.shared_dir.join(&t.id),
            purge,
        };
        Ok(self.hooks.run(&t.id, kind, path, &env).await?)
    }
}

/// Ends the informer's kept list when dropped (a change returning, failing or panicking).
struct Invalidate<'a>(&'a Informer);

impl Drop for Invalidate<'_> {
    fn drop(&mut self) {
        self.0.invalidate();
    }
}
