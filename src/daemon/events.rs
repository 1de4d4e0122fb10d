//! The loop's outside sources of work besides files: the Docker event stream of this
//! instance's containers (which also keeps the informer's list honest), in swarm mode the
//! task list read every two seconds, and git mode's remote. Beside them, the engine's ping
//! every second (`runtime::engine_check`), which readiness believes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::reconcile::trigger::{Trigger, Wake};
use crate::runtime::informer::Informer;
use crate::state::git::GitSync;

/// How often swarm mode reads the task list.
const TASK_WATCH: Duration = Duration::from_secs(2);

/// The engine's side of the loop's work: the container events, and in swarm mode the tasks;
/// and the bounded ping that says whether the engine answers at all.
pub async fn watch_engine(informer: Arc<Informer>, wake: Wake, shutdown: CancellationToken) {
    let checking = informer.clone();
    let check = checking.keep_checking(shutdown.clone());
    tokio::join!(check, follow_engine(informer, wake, shutdown));
}

async fn follow_engine(informer: Arc<Informer>, wake: Wake, shutdown: CancellationToken) {
    if informer.services() {
        let (i, w, s) = (informer.clone(), wake.clone(), shutdown.clone());
        tokio::join!(
            forward_docker_events(i, w, s),
            follow_swarm_tasks(informer, wake, shutdown)
        );
    } else {
        forward_docker_events(informer, wake, shutdown).await;
    }
}

/// Swarm mode: a task on another node sends this engine no event, so a task Swarm restarted
/// or moved there would wait for the resync to be routed and shown. The task list is read
/// every [`TASK_WATCH`] (one call); a change in which tasks run, and the first read, wake
/// the loop.
async fn follow_swarm_tasks(informer: Arc<Informer>, wake: Wake, shutdown: CancellationToken) {
    let (mut last, mut failing) = (None, false);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TASK_WATCH) => {}
        }
        match informer.running_tasks().await {
            // The first read, too: a task may have moved between the first pass's list and
            // it, and no later read would differ.
            Ok(now) => {
                if last.as_ref() != Some(&now) {
                    debug!(tasks = now.len(), "the swarm's tasks changed");
                    wake.wake(Trigger::SwarmTasks);
                }
                (last, failing) = (Some(now), false);
            }
            // Said once per outage: the loop's own passes report the engine too.
            Err(e) if !failing => {
                warn!(cause = %e, "cannot read the swarm's tasks; trying every 2 s");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// Follows the Docker events of this instance's containers for the informer (which keeps the
/// container list while they say nothing changed) and the loop. An event that can change the
/// list ends the kept one and triggers a pass (the loop skips one about apps whose own change
/// is in flight: that change reports back when done), and a second one `SETTLE` after the
/// last event of a burst, with the kept list ended again: Docker 20.10's container list can
/// still say `running` just after a `die` event, so the first pass may see stale state. The
/// subscription is re-made after errors, with a pass each time since events may have been
/// missed; until it is, every pass lists.
async fn forward_docker_events(informer: Arc<Informer>, wake: Wake, shutdown: CancellationToken) {
    const SETTLE: Duration = Duration::from_secs(1);
    let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
    let mut follow_up = far();
    loop {
        let mut events = Box::pin(informer.subscribe());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(follow_up) => {
                    informer.invalidate();
                    wake.docker_event(None);
                    follow_up = far();
                }
                ev = events.next() => match ev {
                    Some(Ok(event)) => {
                        if informer.saw(&event) {
                            wake.docker_event(event.app);
                            follow_up = tokio::time::Instant::now() + SETTLE;
                        }
                    }
                    Some(Err(e)) => { warn!(cause = %e, "docker event stream broke; resubscribing"); break }
                    None => break,
                }
            }
        }
        informer.lost();
        wake.docker_event(None);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Git mode: syncs with the remote every `interval` and whenever the webhook asks, and wakes
/// the loop when the checkout changed (the watcher would too; this is sooner).
pub async fn follow_remote(git: Arc<GitSync>, wake: Wake, shutdown: CancellationToken) {
    loop {
        if git.sync(&shutdown).await {
            wake.wake(Trigger::Git);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(git.config.interval) => {}
            _ = git.wake.notified() => {}
        }
    }
}
