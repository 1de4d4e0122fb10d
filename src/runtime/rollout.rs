//! Rollouts (docs/guides/deploys-and-rollback.md): how a new container replaces an app's old one. Start-first for a
//! domain app (new beside old, health gate, switch the route, hand over the names, drain,
//! remove the old); stop-first for an app on a host port (the old one is stopped but kept
//! until the new one passes, and started again if it does not). A new container that fails
//! its gate is removed and the change fails as [`ActionError::RolledBack`], which the loop
//! does not retry.
//!
//! **Crash safety:** every step leaves names the planner and the proxy read the same way
//! (`model::observed::rank`). Until the old container is renamed, it keeps the app's name and
//! is the one kept (started again if a stop-first rollout had stopped it); the new one,
//! `<name>_next`, is removed and the rollout made again (a crash between Caddy's switch and
//! the rename sends the traffic back to the old one, which still runs). Right after the switch
//! the old one is renamed `<name>_old` and the new one takes the app's name, so from then on,
//! whatever the old one's state, the new one is kept and the old one removed. A `_next` or
//! `_old` container left alone is settled under the app's name (a `_next` one passed its check:
//! the old one goes only after that). The planner settles a kept `_next` container before
//! anything else, so a new container never takes the app's own name before its check.

use tracing::{info, warn};

use crate::model::desired::DesiredApp;
use crate::model::names::AppKey;
use crate::model::secrets::redact;
use crate::reconcile::plan::{short, ContainerRef, Strategy};
use crate::runtime::executor::{ActionError, Executor};
use crate::runtime::front::Front;
use crate::runtime::health::{self, Gate, GateError};

/// Log lines of a failed new container kept in its rollback reason.
const LOG_LINES: u32 = 10;
/// What joins a rollback's reason and the failed container's last log lines.
const LOG_TAIL: &str = "; last log lines:\n";

/// `text` (a status message) without a rollback's log tail: the app's output belongs to
/// its user (status, API), not to berth's own log.
pub fn without_log_tail(text: &str) -> &str {
    text.split_once(LOG_TAIL).map_or(text, |(head, _)| head)
}

/// Releases an app's route pin when dropped, however the change ends (a panic, a future
/// dropped at shutdown).
pub(in crate::runtime) struct Release<'a>(pub &'a Front, pub &'a AppKey);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

impl Executor {
    /// Replaces `old` with a container of `app`'s spec the way `strategy` says. The
    /// pre-deploy hook has run and the image is present.
    pub(crate) async fn replace(
        &self,
        app: &DesiredApp,
        old: &ContainerRef,
        strategy: Strategy,
    ) -> Result<(), ActionError> {
        let (_, name) = self.engine().names(&app.key);
        // The planner settles a `_next` container before it rolls anything.
        debug_assert_ne!(old.name, name, "a rollout over an unsettled container");
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
        if let Err(e) = front.switch(key, vec![dial]).await {
            self.abandon(front, key, &id, name).await;
            return Err(ActionError::Proxy(e));
        }
        // Released however this ends (an error, a panic caught by the loop).
        let _pin = Release(front, key);
        // The switch's mark in the engine, where a restarted berth finds it (`rank`): the old
        // container becomes `<name>_old`, and the new one takes the app's name.
        if let Err(e) = self
            .engine()
            .rename(&old.id, &self.engine().old_name(key))
            .await
        {
            // Unmarked, a restarted berth would keep the old container: go back to it now.
            self.abandon(front, key, &id, name).await;
            return Err(e.into());
        }
        if let Err(e) = self.settle(app, name).await {
            warn!(app = %key, container = name, cause = %e, "rollout: cannot give the new container the app's name; the next pass will");
        }
        info!(app = %key, drain = ?front.drain(), "rollout: switched; draining the old container");
        tokio::time::sleep(front.drain()).await;
        info!(app = %key, "rollout: drained; stopping the old container");
        self.stop_and_remove(old).await
    }

    /// Gives up a rollout at its switch: the old route back (Caddy may or may not have the
    /// new one), the new container removed.
    async fn abandon(&self, front: &Front, key: &AppKey, id: &str, name: &str) {
        if let Err(undo) = front.undo(key).await {
            warn!(app = %key, cause = %undo, "rollout: cannot restore the old route; the next pass will");
        }
        if let Err(gone) = self.engine().remove(id).await {
            warn!(app = %key, container = name, cause = %gone, "rollout: cannot remove the new container; the next pass will");
        }
    }

    async fn stop_first(
        &self,
        app: &DesiredApp,
        old: &ContainerRef,
        name: &str,
    ) -> Result<(), ActionError> {
        // A name another writer holds would fail the create after the stop, and every retry
        // would stop the serving container again: look before stopping anything.
        self.engine().refuse_taken_name(name).await?;
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
                // A conflict with another writer's container says nothing about the spec:
                // tried again, never recorded as this spec's refusal.
                if matches!(&e, ActionError::Engine(engine) if engine.is_conflict()) {
                    return Err(e);
                }
                // Trying again would stop the serving container each time: a new container
                // that cannot even start is refused like one that fails its check.
                return Err(ActionError::RolledBack {
                    hash: app.hash.clone(),
                    health: app.health.clone().map(Box::new),
                    reason: format!("could not start: {}", crate::error_chain::chain(&e)),
                });
            }
        };
        // A domain app takes its traffic through the proxy: it must accept connections.
        let through_proxy = app.spec.domain.is_some() && self.front().is_some();
        let gate = Gate::of(app.health.as_ref(), through_proxy);
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
        // The app's own output: it may print its environment, so every secret of the app
        // is hidden before it is kept, and it stays out of berth's log.
        let logs = redact(&self.last_lines(new_id).await, app.secret_env.values());
        if let Err(e) = self.engine().remove(new_id).await {
            warn!(app = %app.key, container = new_id, cause = %e, "rollout: cannot remove the failed container; the next pass will");
        }
        self.restart_old(app, old).await;
        match failure {
            GateError::Engine(e) => ActionError::Engine(e),
            GateError::Lost => ActionError::Internal(GateError::Lost.to_string()),
            GateError::Unhealthy(why) => {
                warn!(app = %app.key, spec = short(&app.hash), reason = %redact(&why, app.secret_env.values()), log_lines = logs.lines().count(), "rollout: rolled back (its last log lines are in the app's status)");
                let reason = match logs.trim() {
                    "" => why,
                    lines => format!("{why}{LOG_TAIL}{lines}"),
                };
                ActionError::RolledBack {
                    hash: app.hash.clone(),
                    health: app.health.clone().map(Box::new),
                    reason,
                }
            }
        }
    }

    async fn restart_old(&self, app: &DesiredApp, old: Option<&ContainerRef>) {
        let Some(old) = old else { return };
        if let Err(e) = self.start(&app.key, Some(app), &old.id).await {
            warn!(app = %app.key, container = %old.name, cause = %e, "rollout: cannot start the old container again; the next pass will");
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
        let chunks: Vec<_> = self.engine().logs(id, LOG_LINES, false).collect().await;
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
