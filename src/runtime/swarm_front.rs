//! A domain app's route while Swarm changes its tasks (docs/guides/swarm.md): passes route to the live
//! tasks they list, but a create, a start or a rolling update runs between two passes. So
//! while one runs, berth follows the service's tasks itself and pins the route to them: the
//! tasks running when it begins stay until Swarm shuts them down, and a new task joins once
//! berth's own probe of its published port passes (the app's health path, or a connection),
//! so no request reaches a version that fails its check. berth's probe and the task's own (`[health] probe`) check the
//! same path, so the new task is normally in the route before Swarm stops the old one; Caddy's
//! retries and passive checks carry a request past a task that is going away. The pin is
//! released when the change ends, and the next pass routes as it lists.

use std::future::Future;
use std::time::Duration;

use tracing::{info, warn};

use crate::model::desired::DesiredApp;
use crate::runtime::engine::LiveTask;
use crate::runtime::executor::Executor;
use crate::runtime::health::{self, Gate};
use crate::runtime::rollout::Release;

/// How often the tasks are listed while a change runs.
const POLL: Duration = Duration::from_millis(100);
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
        let _release = Release(front, &app.key);
        tokio::pin!(work);
        tokio::select! {
            out = &mut work => out,
            // Follows until the work ends (no count of tasks is ever `usize::MAX`).
            () = self.follow(app, service, usize::MAX) => work.await,
        }
    }

    /// After a create or a start of a domain app: pins its route to its tasks as they come
    /// up, and returns once `replicas` of them are reachable (or after the limit: the status
    /// then shows fewer tasks running, and the next pass routes to those there are).
    pub(in crate::runtime) async fn route_when_live(&self, app: &DesiredApp, service: &str) {
        let Some(front) = self.front().filter(|_| app.spec.domain.is_some()) else {
            return;
        };
        let _release = Release(front, &app.key);
        let want = usize::from(app.spec.replicas.unwrap_or(1));
        let limit = LIVE_LIMIT + app.health.as_ref().map(|h| h.timeout).unwrap_or_default();
        if tokio::time::timeout(limit, self.follow(app, service, want))
            .await
            .is_err()
        {
            warn!(app = %app.key, service, "swarm: tasks not all reachable yet; routing to those there are");
        }
    }

    /// Pins `app`'s route to `service`'s live tasks whenever they change; returns once `want`
    /// of them are in it. The tasks running when it begins are in at once (they serve now);
    /// a task that comes later joins once it passes berth's probe, by task id, so a port the
    /// engine hands out again is probed again.
    async fn follow(&self, app: &DesiredApp, service: &str, want: usize) {
        let Some(front) = self.front() else { return };
        let gate = Gate::of(app.health.as_ref(), true);
        let mut admitted: Option<Vec<String>> = None;
        let mut pinned: Vec<String> = Vec::new();
        loop {
            match self.engine().live_tasks(service).await {
                Ok(live) => {
                    let ids = admitted.get_or_insert_with(|| serving(&live));
                    let next = admit(&live, ids, &gate).await;
                    if !next.is_empty() && next != pinned {
                        match front.switch(&app.key, next.clone()).await {
                            Ok(_) => {
                                info!(app = %app.key, upstreams = ?next, "swarm: the route follows the tasks");
                                pinned = next;
                            }
                            Err(e) => {
                                warn!(app = %app.key, cause = %e, "swarm: cannot route to the new tasks yet")
                            }
                        }
                    }
                }
                Err(e) => warn!(app = %app.key, cause = %e, "swarm: cannot list the tasks"),
            }
            if pinned.len() >= want {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The ids of the tasks running now.
fn serving(live: &[LiveTask]) -> Vec<String> {
    live.iter()
        .filter(|t| t.running)
        .map(|t| t.id.clone())
        .collect()
}

/// The dials of the live tasks admitted before, and of those that pass one probe now (added
/// to `admitted`).
async fn admit(live: &[LiveTask], admitted: &mut Vec<String>, gate: &Gate) -> Vec<String> {
    let mut next = Vec::with_capacity(live.len());
    for task in live {
        if !admitted.contains(&task.id) && health::answers(&task.dial, gate).await {
            admitted.push(task.id.clone());
        }
        if admitted.contains(&task.id) {
            next.push(task.dial.clone());
        }
    }
    next.sort();
    next
}
