//! Rollouts (SPEC §9): how a new container replaces an app's old one. Start-first for a
//! domain app (new beside old, health gate, switch the route, drain, remove the old, settle
//! the name); stop-first for an app on a host port (the old one is stopped but kept until the
//! new one passes, and started again if it does not). A new container that fails its gate is
//! removed and the change fails as [`ActionError::RolledBack`], which the loop does not retry.
//!
//! **Crash safety:** every step leaves a state the planner and the proxy read the same way
//! (`model::observed::rank`): while the old container runs, it is the one kept and routed to,
//! and the new one, named `<name>_next`, is removed; once the old one is gone, the new one is
//! kept and settled under the app's name.

use tracing::{info, warn};

use crate::model::desired::DesiredApp;
use crate::reconcile::plan::{short, ContainerRef, Strategy};
use crate::runtime::executor::{ActionError, Executor};
use crate::runtime::health::{self, Gate, GateError};

/// Log lines of a failed new container kept in its rollback reason.
const LOG_LINES: u32 = 10;

impl Executor {
    /// Replaces `old` with a container of `app`'s spec the way `strategy` says. The
    /// pre-deploy hook has run and the image is present.
    pub(crate) async fn replace(
        &self,
        app: &DesiredApp,
        old: &ContainerRef,
        strategy: Strategy,
    ) -> Result<(), ActionError> {
        let (base, next) = self.engine().names(&app.key);
        // The new container takes the name the old one does not have.
        let name = if old.name == next { base } else { next };
        match strategy {
            Strategy::Replace => {
                self.stop_and_remove(old).await?;
                self.create(app, false, &name).await?;
                self.settle(app, &name).await
            }
            Strategy::StartFirst => self.start_first(app, old, &name).await,
            Strategy::StopFirst => self.stop_first(app, old, &name).await,
        }
    }

    async fn start_first(
        &self,
        app: &DesiredApp,
        old: &ContainerRef,
        name: &str,
    ) -> Result<(), ActionError> {
        let key = &app.key;
        let id = self.create(app, true, name).await?;
        let gate = Gate::of(app.health.as_ref(), true);
        let dial = match health::wait(self.engine(), &id, app.spec.port, &gate).await {
            Ok(dial) => dial,
            Err(e) => return Err(self.roll_back(app, &id, e, None).await),
        };
        info!(app = %key, container = name, upstream = %dial, "rollout: healthy");
        let Some(front) = self.front() else {
            self.stop_and_remove(old).await?;
            return self.settle(app, name).await;
        };
        if let Err(e) = front.switch(key, dial).await {
            // Caddy may or may not have the switch: put the old route back, drop the new one.
            if let Err(undo) = front.undo(key).await {
                warn!(app = %key, cause = %undo, "rollout: cannot restore the old route; the next pass will");
            }
            self.engine().remove(&id).await?;
            return Err(ActionError::Proxy(e));
        }
        info!(app = %key, drain = ?front.drain(), "rollout: switched; draining the old container");
        tokio::time::sleep(front.drain()).await;
        let finished = async {
            self.stop_and_remove(old).await?;
            self.settle(app, name).await
        }
        .await;
        front.release(key);
        finished
    }

    async fn stop_first(
        &self,
        app: &DesiredApp,
        old: &ContainerRef,
        name: &str,
    ) -> Result<(), ActionError> {
        let was_running = old.running.then_some(old);
        if old.running {
            self.engine()
                .stop(&old.id, self.config().stop_timeout)
                .await?;
        }
        let id = match self.create(app, true, name).await {
            Ok(id) => id,
            Err(e) => {
                self.restart_old(app, was_running).await;
                return Err(e);
            }
        };
        let gate = Gate::of(app.health.as_ref(), false);
        if let Err(e) = health::wait(self.engine(), &id, app.spec.port, &gate).await {
            return Err(self.roll_back(app, &id, e, was_running).await);
        }
        info!(app = %app.key, container = name, "rollout: healthy; removing the old container");
        self.engine().remove(&old.id).await?;
        self.settle(app, name).await
    }

    /// Removes a new container that failed its gate (keeping its last log lines for the
    /// reason) and starts the old one again if it was running. A gate that could not ask
    /// Docker is an ordinary failure (retried); an unhealthy container is a rollback.
    async fn roll_back(
        &self,
        app: &DesiredApp,
        new_id: &str,
        failure: GateError,
        old: Option<&ContainerRef>,
    ) -> ActionError {
        let logs = self.last_lines(new_id).await;
        if let Err(e) = self.engine().remove(new_id).await {
            warn!(app = %app.key, cause = %e, "rollout: cannot remove the failed container; the next pass will");
        }
        self.restart_old(app, old).await;
        match failure {
            GateError::Engine(e) => ActionError::Engine(e),
            GateError::Unhealthy(why) => {
                let reason = match logs.trim() {
                    "" => why,
                    lines => format!("{why}; last log lines:\n{lines}"),
                };
                warn!(app = %app.key, spec = short(&app.hash), reason = %reason, "rollout: rolled back");
                ActionError::RolledBack {
                    hash: app.hash.clone(),
                    reason,
                }
            }
        }
    }

    async fn restart_old(&self, app: &DesiredApp, old: Option<&ContainerRef>) {
        let Some(old) = old else { return };
        if let Err(e) = self.start(&app.key, Some(app), &old.id).await {
            warn!(app = %app.key, cause = %e, "rollout: cannot start the old container again; the next pass will");
        }
    }

    /// Gives the app's container its final name, if it has not got it.
    async fn settle(&self, app: &DesiredApp, name: &str) -> Result<(), ActionError> {
        let (base, _) = self.engine().names(&app.key);
        if name != base {
            self.engine().rename(name, &base).await?;
        }
        Ok(())
    }

    async fn last_lines(&self, id: &str) -> String {
        use futures_util::StreamExt;
        let chunks: Vec<_> = self.engine().logs(id, LOG_LINES).collect().await;
        let bytes: Vec<u8> = chunks
            .into_iter()
            .filter_map(Result::ok)
            .flat_map(|b| b.to_vec())
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        let tail = text.len().saturating_sub(2000);
        let from = (tail..=text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[from..].to_string()
    }
}
