//! The loop's outside sources of work besides files: the Docker event stream of this
//! instance's containers (which also keeps the informer's list honest), and git mode's remote.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::reconcile::trigger::{Trigger, Wake};
use crate::runtime::informer::Informer;
use crate::state::git::GitSync;

/// Follows the Docker events of this instance's containers for the informer (which keeps the
/// container list while they say nothing changed) and the loop. An event that can change the
/// list ends the kept one and triggers a pass (the loop skips one about apps whose own change
/// is in flight: that change reports back when done), and a second one `SETTLE` after the
/// last event of a burst, with the kept list ended again: Docker 20.10's container list can
/// still say `running` just after a `die` event, so the first pass may see stale state. The
/// subscription is re-made after errors, with a pass each time since events may have been
/// missed; until it is, every pass lists.
pub async fn forward_docker_events(
    informer: Arc<Informer>,
    wake: Wake,
    shutdown: CancellationToken,
) {
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
