//! The informer: observed state kept between passes, so a pass over unchanged containers asks
//! the engine nothing. A full list fills it; the Docker event stream of this instance's
//! containers tells when it may no longer hold; the next read after that lists again. So do
//! a read once the list is `relist` old (the period on which berth looks again whatever the
//! events said), and every read while no event stream is followed (`berth apply`, the
//! moments after the stream broke).
//!
//! **A kept list is used only when nothing can have changed unseen since it began:** the
//! event subscription was made before that list began (and asks Docker to replay from a
//! little before, so nothing falls between subscribing and the stream's first event), no
//! event that can change a list entry arrived since, the stream did not break, and no change
//! the executor ran ended since (it invalidates at its end, its writes being done by then).
//! Every one of these moves one generation number; a list is kept with the generation at
//! its beginning, and is good while the number stands.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::Stream;

use crate::model::observed::Observed;
use crate::runtime::engine::{ContainerEvent, Engine, EngineError};
use crate::runtime::engine_check::{EngineCheck, EVERY, PING_BOUND};

/// How far back a new subscription asks Docker to replay events from: the moment between
/// subscribing and the engine registering the subscription, and a clock that differs a
/// little from the engine's, lose nothing (a replayed event costs one list more).
const REPLAY: Duration = Duration::from_secs(5);

/// One full list of this instance's containers.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The containers.
    pub containers: Arc<Vec<Observed>>,
    /// When the list began: what it shows is no older than this.
    pub at: Instant,
}

/// The engine's container list, kept while the event stream says it holds.
pub struct Informer {
    engine: Engine,
    /// `runtime = "swarm"`: apps are services, listed anew for every pass (task events from
    /// other nodes never reach this engine, so no list could be kept on events); surfaces
    /// take the last list while it is younger than they allow.
    services: bool,
    /// The last service list (swarm mode).
    last_services: Mutex<Option<Listed>>,
    /// How old a kept list may get, events or not.
    relist: Duration,
    watch: Mutex<Watch>,
    /// One list at a time: callers arriving while one runs wait and take it.
    refresh: tokio::sync::Mutex<()>,
    /// Whether the engine answered its last ping (a kept list asks it nothing).
    check: EngineCheck,
}

impl Informer {
    /// An informer over `engine` that lists again at least every `relist`.
    pub fn new(engine: Engine, relist: Duration, services: bool) -> Informer {
        Informer {
            engine,
            services,
            last_services: Mutex::default(),
            relist,
            watch: Mutex::default(),
            refresh: tokio::sync::Mutex::new(()),
            check: EngineCheck::default(),
        }
    }

    /// Pings the engine every [`EVERY`], each ping bounded by [`PING_BOUND`], until
    /// `shutdown`; a change of verdict is logged.
    pub async fn keep_checking(&self, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            let answered = self.engine.ping_within(PING_BOUND).await;
            let outcome = answered.map_err(|e| crate::error_chain::chain(&e).to_string());
            if self.check.record(outcome.clone()) {
                match outcome {
                    Ok(()) => tracing::info!("the engine answers again"),
                    Err(why) => tracing::warn!(cause = %why, "the engine does not answer"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }

    /// Ok while the engine answered its last ping in time, else why not.
    pub fn engine_answers(&self) -> Result<(), String> {
        self.check.verdict()
    }

    /// Whether apps are Swarm services (`runtime = "swarm"`).
    pub fn services(&self) -> bool {
        self.services
    }

    /// Swarm mode: every task Swarm wants running, as (service, task, running), for the
    /// daemon to compare with its last read (task events from other nodes never reach here).
    /// Only this instance's services count (those of the last list, or all before one):
    /// another stack's tasks, or another berth's, are no reason for a pass.
    pub async fn running_tasks(&self) -> Result<Vec<(String, String, bool)>, EngineError> {
        let mut tasks = self.engine.running_tasks().await?;
        if let Some(listed) = self.last_services() {
            let ours: std::collections::HashSet<&str> =
                listed.containers.iter().map(|s| s.id.as_str()).collect();
            tasks.retain(|(service, _, _)| ours.contains(service.as_str()));
        }
        Ok(tasks)
    }

    /// This instance's containers: the kept list while nothing can have changed since it
    /// began, else a new one.
    pub async fn list(&self) -> Result<Listed, EngineError> {
        self.list_within(Duration::ZERO).await
    }

    /// [`list`](Self::list), also taking a list events made stale while it is younger than
    /// `stale_ok` and the stream is followed: surfaces polled by many clients list at most
    /// that often while containers change.
    pub async fn list_within(&self, stale_ok: Duration) -> Result<Listed, EngineError> {
        if self.services {
            return self.list_services(stale_ok).await;
        }
        if let Some(kept) = self.kept(stale_ok) {
            return Ok(kept);
        }
        let _one = self.refresh.lock().await;
        if let Some(kept) = self.kept(stale_ok) {
            return Ok(kept);
        }
        let (generation, at) = (self.watch().generation, Instant::now());
        let containers = Arc::new(self.engine.list().await?);
        let listed = Listed { containers, at };
        self.watch().listed(generation, listed.clone());
        Ok(listed)
    }

    async fn list_services(&self, stale_ok: Duration) -> Result<Listed, EngineError> {
        let recent = |l: &Listed| !stale_ok.is_zero() && l.at.elapsed() < stale_ok;
        if let Some(kept) = self.last_services().filter(recent) {
            return Ok(kept);
        }
        // One list at a time: callers that waited take the list just made.
        let _one = self.refresh.lock().await;
        if let Some(kept) = self.last_services().filter(recent) {
            return Ok(kept);
        }
        let at = Instant::now();
        let containers = Arc::new(self.engine.list_services().await?);
        let listed = Listed { containers, at };
        *self.last_services.lock().unwrap_or_else(|e| e.into_inner()) = Some(listed.clone());
        Ok(listed)
    }

    fn last_services(&self) -> Option<Listed> {
        let last = self.last_services.lock();
        last.unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn kept(&self, stale_ok: Duration) -> Option<Listed> {
        self.watch().kept(Instant::now(), self.relist, stale_ok)
    }

    /// Subscribes to this instance's container events. Lists that begin from now on may be
    /// kept; feed every event to [`saw`](Self::saw), and call [`lost`](Self::lost) when the
    /// stream errs or ends.
    pub fn subscribe(
        &self,
    ) -> impl Stream<Item = Result<ContainerEvent, EngineError>> + Send + 'static {
        let now = SystemTime::now();
        let since = now.checked_sub(REPLAY).unwrap_or(now);
        self.watch().subscribed();
        self.engine.events(since)
    }

    /// An event arrived; answers whether it can change a list entry (and so ended the kept
    /// list). `exec_start`, `attach`, `top` and their kind change nothing a list shows.
    pub fn saw(&self, event: &ContainerEvent) -> bool {
        let changes = changes_a_list(&event.action);
        if changes {
            self.watch().changed();
        }
        changes
    }

    /// Something may have changed that no event has told yet (a change the executor ran, a
    /// list Docker may not have caught up with): the next read lists.
    pub fn invalidate(&self) {
        self.watch().changed();
    }

    /// The event stream broke or ended: until the next subscription, every read lists.
    pub fn lost(&self) {
        self.watch().lost();
    }

    fn watch(&self) -> std::sync::MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Actions that change nothing a container list shows (its state, exit code, name, labels,
/// addresses); every other one, known or not, does.
const UNCHANGING: &[&str] = &[
    "exec_create",
    "exec_start",
    "exec_die",
    "exec_detach",
    "attach",
    "detach",
    "top",
    "resize",
    "export",
    "copy",
    "archive-path",
    "extract-to-dir",
    "commit",
    "health_status",
];

/// Whether an event with Docker's `action` (`die`, `exec_start: sh -c ...`) can change an
/// entry of the container list.
pub fn changes_a_list(action: &str) -> bool {
    let name = action.split(':').next().unwrap_or(action).trim();
    !UNCHANGING.contains(&name)
}

/// The informer's memory: when its kept list is still good (pure; the clock is an argument).
#[derive(Debug, Default)]
struct Watch {
    /// Moved by every change that may make a list stale: an event, an invalidation, a new
    /// subscription, a lost stream.
    generation: u64,
    /// Whether an event stream is followed.
    following: bool,
    /// The last list, with the generation when it began.
    kept: Option<(u64, Listed)>,
}

impl Watch {
    /// The kept list, if it can be used at `now`.
    fn kept(&self, now: Instant, relist: Duration, stale_ok: Duration) -> Option<Listed> {
        let (generation, listed) = self.kept.as_ref()?;
        let age = now.saturating_duration_since(listed.at);
        let holds = *generation == self.generation && age < relist;
        (self.following && (holds || age < stale_ok)).then(|| listed.clone())
    }

    /// A list that began at `generation` ended.
    fn listed(&mut self, generation: u64, listed: Listed) {
        self.kept = Some((generation, listed));
    }

    fn changed(&mut self) {
        self.generation += 1;
    }

    fn subscribed(&mut self) {
        self.generation += 1;
        self.following = true;
    }

    fn lost(&mut self) {
        self.generation += 1;
        self.following = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELIST: Duration = Duration::from_secs(300);

    fn list(at: Instant) -> Listed {
        Listed {
            containers: Arc::default(),
            at,
        }
    }

    /// A watch following events, with a list made at `t0` after the subscription.
    fn following(t0: Instant) -> Watch {
        let mut w = Watch::default();
        w.subscribed();
        w.listed(w.generation, list(t0));
        w
    }

    #[test]
    fn a_list_holds_while_no_event_comes_until_the_relist_period() {
        let t0 = Instant::now();
        let w = following(t0);
        for later in [Duration::ZERO, Duration::from_secs(1), RELIST / 2] {
            let kept = w.kept(t0 + later, RELIST, Duration::ZERO).expect("kept");
            assert_eq!(kept.at, t0);
        }
        assert!(w.kept(t0 + RELIST, RELIST, Duration::ZERO).is_none());
    }

    #[test]
    fn an_event_an_invalidation_or_a_lost_stream_ends_it() {
        let t0 = Instant::now();
        for end in [Watch::changed, Watch::lost] {
            let mut w = following(t0);
            end(&mut w);
            assert!(w.kept(t0, RELIST, Duration::ZERO).is_none());
        }
    }

    #[test]
    fn a_list_begun_before_an_event_it_may_have_missed_is_not_kept() {
        let t0 = Instant::now();
        let mut w = Watch::default();
        w.subscribed();
        let began = w.generation;
        w.changed(); // arrives while the list runs
        w.listed(began, list(t0));
        assert!(w.kept(t0, RELIST, Duration::ZERO).is_none());
        w.listed(w.generation, list(t0));
        assert!(w.kept(t0, RELIST, Duration::ZERO).is_some());
    }

    #[test]
    fn without_a_subscription_made_before_it_a_list_is_never_kept() {
        let t0 = Instant::now();
        let mut w = Watch::default();
        w.listed(w.generation, list(t0));
        assert!(w.kept(t0, RELIST, RELIST).is_none(), "no stream followed");
        w.subscribed();
        assert!(
            w.kept(t0, RELIST, Duration::ZERO).is_none(),
            "listed before the subscription"
        );
        let mut w = following(t0);
        w.lost();
        w.subscribed();
        assert!(
            w.kept(t0, RELIST, Duration::ZERO).is_none(),
            "listed before a resubscription"
        );
    }

    #[test]
    fn a_surface_may_take_a_stale_list_younger_than_it_asks_while_following() {
        let t0 = Instant::now();
        let mut w = following(t0);
        w.changed();
        let ok = Duration::from_secs(5);
        assert!(w.kept(t0 + Duration::from_secs(4), RELIST, ok).is_some());
        assert!(w.kept(t0 + ok, RELIST, ok).is_none());
        w.lost();
        assert!(w.kept(t0, RELIST, ok).is_none(), "the stream is gone");
    }

    #[test]
    fn only_actions_that_change_a_list_entry_count() {
        for a in [
            "create", "start", "die", "kill", "stop", "destroy", "rename", "pause",
        ] {
            assert!(changes_a_list(a), "{a}");
        }
        assert!(changes_a_list("some_future_action"));
        for a in [
            "exec_start: sh -c true",
            "exec_die",
            "health_status: healthy",
            "attach",
            "top",
        ] {
            assert!(!changes_a_list(a), "{a}");
        }
    }
}
