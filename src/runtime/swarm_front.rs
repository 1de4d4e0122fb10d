//! A domain app's route while Swarm changes its tasks (SPEC §12): passes route to the live
//! tasks they list, but a create, a start or a rolling update runs between two passes. So
//! while one runs, berth follows the service's tasks itself and pins the route to the live
//! ones (a new task as soon as it is starting, an old one until Swarm shuts it down); Caddy's
//! retries and passive checks carry a request past a task that is going away. The pin is
//! released when the change ends, and the next pass routes as it lists.

use std::future::Future;
use std::time::Duration;

use tracing::warn;

use crate::model::desired::DesiredApp;
use crate::runtime::executor::Executor;

/// How often the tasks are listed while a change runs.
const POLL: Duration = Duration::from_millis(250);
/// How long a create or a start waits for its tasks to be reachable, beyond the health timeout.
const LIVE_LIMIT: Duration = Duration::from_secs(60);

impl Executor {
    /// Runs `work` with `app`'s route following `service`'s live tasks (nothing to follow
    /// for an app without a domain, or without a front door).
    pub(in crate::runtime) async fn routed<T>(
        &self,
        app: &DesiredApp,
        service: &str,
        work: impl Future<Output = T>,
    ) -> T {
        let Some(front) = self.front().filter(|_| app.spec.domain.is_some()) else {
            return work.await;
        };
        tokio::pin!(work);
        let out = tokio::select! {
            out = &mut work => out,
            // Follows until the work ends (no count of tasks is ever `usize::MAX`).
            () = self.follow(app, service, usize::MAX) => work.await,
        };
        front.release(&app.key);
        out
    }

    /// After a create or a start of a domain app: pins its route to its tasks as they come
    /// up, and returns once `replicas` of them are reachable (or after the limit: the status
    /// then shows fewer tasks running, and the next pass routes to those there are).
    pub(in crate::runtime) async fn route_when_live(&self, app: &DesiredApp, service: &str) {
        let Some(front) = self.front().filter(|_| app.spec.domain.is_some()) else {
            return;
        };
        let want = usize::from(app.spec.replicas.unwrap_or(1));
        let limit = LIVE_LIMIT + app.health.as_ref().map(|h| h.timeout).unwrap_or_default();
        if tokio::time::timeout(limit, self.follow(app, service, want))
            .await
            .is_err()
        {
            warn!(app = %app.key, service, "swarm: tasks not all reachable yet; routing to those there are");
        }
        front.release(&app.key);
    }

    /// Pins `app`'s route to `service`'s live tasks whenever they change; returns once `want`
    /// of them are live.
    async fn follow(&self, app: &DesiredApp, service: &str, want: usize) {
        let Some(front) = self.front() else { return };
        let mut pinned: Vec<String> = Vec::new();
        loop {
            match self.engine().service_dials(service).await {
                Ok(dials) if !dials.is_empty() && dials != pinned => {
                    match front.switch(&app.key, dials.clone()).await {
                        Ok(_) => pinned = dials,
                        Err(e) => {
                            warn!(app = %app.key, cause = %e, "swarm: cannot route to the new tasks yet")
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => warn!(app = %app.key, cause = %e, "swarm: cannot list the tasks"),
            }
            if pinned.len() >= want {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
