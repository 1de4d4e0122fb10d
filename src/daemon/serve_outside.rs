//! The serve loop's work outside the engine, beside each pass's plan: Caddy's routes, the
//! isolation rules between users' networks, and the fetches of `[build] git` repositories.
//! Each is logged and counted when it fails and holds up nothing else.

use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::ServeLoop;
use crate::error_chain::chain;
use crate::model::desired::DesiredState;
use crate::model::observed::Observed;
use crate::reconcile::trigger::{Trigger, Triggers};

impl ServeLoop {
    /// Before the plan: the fetches this pass's manifests call for (all of them when `berth
    /// apply` asked), and the isolation rules put back in the passes that check them.
    pub(super) async fn beside_the_plan(&self, desired: &DesiredState, why: Triggers) {
        if let Some(sources) = &self.sources {
            let all = why.contains(Trigger::Apply);
            sources.want(&desired.sources, all, Instant::now());
        }
        if why.verifies_outside() {
            let isolated = self.pass.heal_isolation().await;
            self.metrics.isolation(isolated);
        }
    }

    /// Routes in Caddy follow every pass (whose list began at `listed`); a failure is logged
    /// and counted, and changes nothing else (apps still converge; the next pass tries again).
    /// Caddy's copy is read back at start and on the resync tick (a restarted Caddy, a hand
    /// edit); other passes write only when the render changed.
    pub(super) async fn sync_proxy(
        &self,
        desired: Arc<DesiredState>,
        observed: Arc<Vec<Observed>>,
        listed: Instant,
        why: Triggers,
    ) {
        let verify = why.verifies_outside();
        match self
            .pass
            .sync_proxy(desired, observed, listed, verify)
            .await
        {
            None => {}
            Some(Ok(writes)) => {
                if writes > 0 {
                    info!(writes, "updated berth's routes in Caddy");
                }
                self.metrics.proxy_sync(Some(writes));
            }
            Some(Err(e)) => {
                warn!(cause = %chain(&e), "cannot bring Caddy in line; retrying next pass");
                self.metrics.proxy_sync(None);
            }
        }
    }
}
