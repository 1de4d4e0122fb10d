//! Executes one app's planned change: hooks first, then Docker calls, in the order SPEC §5
//! gives. Knows nothing about scheduling: the reconciler decides what runs when, and
//! **calls `execute` for at most one change per app at a time.**

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::{info, warn};

use crate::config::Config;
use crate::desired::DesiredApp;
use crate::engine::{Engine, EngineError};
use crate::hooks::{HookEnv, HookError, HookRunner};
use crate::names::AppKey;
use crate::plan::{Action, AppChange, ContainerRef};
use crate::template::{HookKind, Template};

/// Why an app's change failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A hook failed or timed out.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// Docker refused or was unreachable.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The plan and the desired state disagree (a bug, reported rather than panicking).
    #[error("internal: {0}")]
    Internal(String),
}

/// Carries out plans: the engine plus the hook runner.
pub struct Executor {
    /// Paths and timeouts.
    config: Arc<Config>,
    /// Docker.
    engine: Engine,
    /// Serializes hooks per template.
    hooks: HookRunner,
    /// Apps whose deletion asked for purge: their pre-delete hook gets `BERTH_PURGE=1` and
    /// berth then removes the workspace itself. Set by the API once the manifest is gone;
    /// cleared when the purge is done or the app's manifest comes back.
    purges: Mutex<HashMap<AppKey, Instant>>,
}

impl Executor {
    /// An executor for `config` on `engine`.
    pub fn new(config: Arc<Config>, engine: Engine) -> Executor {
        let hooks = HookRunner::new(config.hook_timeout);
        Executor {
            config,
            engine,
            hooks,
            purges: Mutex::default(),
        }
    }

    /// Asks that `key`'s coming removal also drop its workspace.
    pub fn request_purge(&self, key: &AppKey) {
        self.purges
            .lock()
            .expect("purges")
            .insert(key.clone(), Instant::now());
    }

    /// Withdraws a purge request (the app's manifest is back).
    pub fn cancel_purge(&self, key: &AppKey) {
        self.purges.lock().expect("purges").remove(key);
    }

    /// Apps with a purge request outstanding, with when it was made.
    pub fn pending_purges(&self) -> Vec<(AppKey, Instant)> {
        self.purges
            .lock()
            .expect("purges")
            .iter()
            .map(|(k, t)| (k.clone(), *t))
            .collect()
    }

    /// Removes `key`'s workspace and clears its purge request. The path is built from
    /// checked names; a symlink there is removed, not followed.
    pub fn finish_purge(&self, key: &AppKey) {
        let dir = self.workspace(key);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => info!(app = %key, dir = %dir.display(), "purged workspace"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(app = %key, dir = %dir.display(), cause = %e, "cannot purge workspace"),
        }
        self.cancel_purge(key);
    }

    fn workspace(&self, key: &AppKey) -> std::path::PathBuf {
        self.config.apps_dir.join(&key.userid).join(&key.appname)
    }

    /// The engine, for reads the reconciler makes.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs one app's change to completion. `app` is the desired app (absent for removals).
    pub async fn execute(
        &self,
        change: &AppChange,
        app: Option<&DesiredApp>,
    ) -> Result<(), ActionError> {
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
                self.hook(&app.template, HookKind::PreCreate, &app.key)
                    .await?;
                self.create(app, *start).await
            }
            Action::Recreate { old, start, .. } => {
                let app = need_app()?;
                self.hook(&app.template, HookKind::PreDeploy, &app.key)
                    .await?;
                // Have the new image before taking the old container down.
                self.engine.ensure_image(&app.spec.image).await?;
                self.stop_and_remove(old).await?;
                self.create(app, *start).await
            }
            Action::Start { container, .. } => Ok(self.engine.start(&container.id).await?),
            Action::Stop { container } => Ok(self
                .engine
                .stop(&container.id, self.config.stop_timeout)
                .await?),
            Action::Remove {
                containers,
                template,
            } => {
                let purge = self
                    .purges
                    .lock()
                    .expect("purges")
                    .contains_key(&change.key);
                match template
                    .as_deref()
                    .map(|id| Template::load(&self.config, id))
                {
                    Some(Ok(t)) => {
                        self.hook_with(&t, HookKind::PreDelete, &change.key, purge)
                            .await?
                    }
                    Some(Err(e)) => {
                        warn!(app = %change.key, cause = %e, "template gone; removing without pre-delete hook")
                    }
                    None => {}
                }
                for c in containers {
                    self.stop_and_remove(c).await?;
                }
                if purge {
                    self.finish_purge(&change.key);
                }
                Ok(())
            }
        }
    }

    async fn create(&self, app: &DesiredApp, start: bool) -> Result<(), ActionError> {
        self.engine.ensure_image(&app.spec.image).await?;
        let id = self.engine.create(app).await?;
        if start {
            self.engine.start(&id).await?;
        }
        Ok(())
    }

    async fn stop_and_remove(&self, c: &ContainerRef) -> Result<(), ActionError> {
        if c.running {
            self.engine.stop(&c.id, self.config.stop_timeout).await?;
        }
        Ok(self.engine.remove(&c.id).await?)
    }

    async fn hook(&self, t: &Template, kind: HookKind, key: &AppKey) -> Result<(), ActionError> {
        self.hook_with(t, kind, key, false).await
    }

    async fn hook_with(
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
