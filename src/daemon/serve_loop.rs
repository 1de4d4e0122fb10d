//! The serve loop: runs passes whenever something may have changed, level-triggered. Each
//! pass reads desired and observed state, plans, and hands the plan to
//! [`LoopState`](crate::reconcile::loop_state::LoopState), whose decisions this carries out:
//! spawn the changes it picked, settle removals, record revisions, publish the status board.
//! Then it waits for a trigger (gathered for [`DEBOUNCE`]), a finished change, a backoff
//! deadline or the resync tick.
//!
//! **Invariant: at most one change per app is in flight, at most `max_parallel` in all.** On
//! shutdown it waits for the changes in flight before returning.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::converge::{Planned, Planner};
use crate::daemon::pass::{execute_change, valid_app, PassError, Reconciler, RenameFinisher};
use crate::error_chain::chain;
use crate::metrics::Metrics;
use crate::model::desired::{DesiredApp, DesiredState, PassSeen};
use crate::model::names::AppKey;
use crate::model::observed::Observed;
use crate::model::secrets::{redact, SecretValue};
use crate::reconcile::loop_state::{Failure, LoopState, Outcome, PruneRelease, PurgeStep, Release};
use crate::reconcile::plan::{plan, Action, AppChange, Plan, PlanOptions, Refusal};
use crate::reconcile::progress::{Progress, ProgressCell};
use crate::reconcile::status::{AppStatus, Phase, StatusBoard, Wanted};
use crate::reconcile::trigger::{Trigger, Triggers, Wake};
use crate::runtime::executor::{ActionError, Executor};
use crate::runtime::informer::Listed;

/// How long a burst of triggers is gathered into one pass: long enough for an editor's
/// write-and-rename or a checkout's burst of files, short against a deploy (a pass that comes
/// too early is harmless: the next one sees the rest).
pub const DEBOUNCE: Duration = Duration::from_millis(25);
/// Retry delay for a pass that could not even start (engine down, state dir unreadable).
const PASS_RETRY: Duration = Duration::from_secs(2);

/// Called (on a blocking thread) after every pass with its number (counting up), when it
/// began and what it saw; `serve` records revisions and app incarnations with it.
pub type PassHook = Arc<dyn Fn(u64, Instant, PassSeen) + Send + Sync>;

/// The loop and what it shares with the rest of the daemon.
pub struct ServeLoop {
    /// Reads and plans passes.
    pass: Reconciler,
    /// Latest status per app.
    pub status: Arc<StatusBoard>,
    /// Pass and action counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Set by a confirmed API call: the next pass makes those removals if they are exactly
    /// what the guard holds then, and nothing else.
    pub prune_release: PruneRelease,
    /// See [`PassHook`].
    pub on_pass: Option<PassHook>,
    /// Refused rollouts on record from the last run (its saved status), so a restart does
    /// not try them again.
    pub refused_at_start: BTreeMap<AppKey, Refusal>,
    /// Published after every pass: what `berth apply` through the daemon waits for.
    pub progress: ProgressCell,
    /// Fetches `[build] git` repositories beside the loop.
    pub sources: Option<Arc<crate::state::source_fetcher::SourceFetcher>>,
}

/// A finished change, reported back to the loop.
struct Finished {
    change: AppChange,
    result: Result<(), ActionError>,
    took: Duration,
    /// The app's secret values, hidden from the failure's text before it is logged or kept.
    secrets: Vec<SecretValue>,
}

/// What one pass leaves for the wait: when to run again at the latest, and why then.
struct Next {
    at: Instant,
    why: Trigger,
}

impl Next {
    fn sooner(&mut self, at: Instant, why: Trigger) {
        if at < self.at {
            *self = Next { at, why };
        }
    }
}

impl ServeLoop {
    /// A loop over `pass`, scanning under `state_lock`.
    pub fn new(mut pass: Reconciler, state_lock: Arc<tokio::sync::Mutex<()>>) -> ServeLoop {
        pass.state_lock = Some(state_lock);
        ServeLoop {
            pass,
            status: Arc::default(),
            metrics: Arc::default(),
            prune_release: Arc::default(),
            on_pass: None,
            refused_at_start: BTreeMap::new(),
            progress: Arc::new(tokio::sync::watch::Sender::new(Progress::default())),
            sources: None,
        }
    }

    /// What a pass would do now, executing nothing: the loop's own plan, with the rollouts
    /// it refused and the removals the API asked for (what `berth plan` shows).
    pub async fn plan_now(&self) -> Result<(DesiredState, Plan), PassError> {
        let (desired, observed) = self.pass.observe().await?;
        let observed = observed.containers;
        let refused: BTreeMap<AppKey, Refusal> = self
            .status
            .snapshot()
            .into_iter()
            .filter_map(|(key, s)| {
                let shown = s.last_error.as_deref().unwrap_or_default();
                Some((key, Refusal::from_shown(s.refused_hash.as_deref()?, shown)))
            })
            .collect();
        let asked = self.pass.exec.removals().asked();
        let options = PlanOptions {
            refused: Some(&refused),
            asked: Some(&asked),
            ..self.pass.options(false)
        };
        let p = plan(&desired, &observed, options);
        Ok((desired, p))
    }

    /// The executor, shared with the API as a purge-request handle.
    pub fn executor(&self) -> &Arc<Executor> {
        &self.pass.exec
    }

    /// Runs passes until `shutdown`, woken through `wake` (files, Docker events, API writes,
    /// git), by finished changes, backoff deadlines and the resync interval. Waits for the
    /// changes in flight before returning.
    pub async fn run(self: Arc<Self>, wake: Wake, shutdown: CancellationToken) {
        let mut state = LoopState::new(self.pass.config.max_parallel);
        for (key, refusal) in &self.refused_at_start {
            state.refuse(key.clone(), refusal.clone());
        }
        let mut inflight: JoinSet<Finished> = JoinSet::new();
        let mut why = Triggers::of(Trigger::Start);
        let mut passes: u64 = 0;
        loop {
            // Reasons recorded by now are served by this pass's scan, which starts later.
            why.merge(wake.take());
            passes += 1;
            self.progress.send_modify(|p| p.begun = passes);
            let next = self.pass(&mut state, &mut inflight, why, passes).await;
            let (idle, failed) = (inflight.is_empty(), next.why == Trigger::Retry);
            self.progress
                .send_modify(|p| (p.finished, p.idle, p.failed) = (passes, idle, failed));
            match self
                .wait(&mut state, &mut inflight, &wake, &shutdown, next)
                .await
            {
                Some(reasons) => why = reasons,
                None => break,
            }
        }
        info!(
            in_flight = inflight.len(),
            "shutting down: waiting for running actions"
        );
        while inflight.join_next().await.is_some() {}
    }

    /// Waits for the next reason to pass: a wake (gathered for [`DEBOUNCE`]), finished
    /// changes (taken back at once), or `next`'s deadline. `None` on shutdown. A wake whose
    /// reasons an earlier pass already took is no reason: that pass's scan saw its change.
    async fn wait(
        &self,
        state: &mut LoopState,
        inflight: &mut JoinSet<Finished>,
        wake: &Wake,
        shutdown: &CancellationToken,
        next: Next,
    ) -> Option<Triggers> {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = wake.notified() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    let reasons = wake.take();
                    let apps = wake.take_event_apps();
                    if !reasons.is_empty() && !state.only_busy_apps_moved(reasons, apps) {
                        return Some(reasons);
                    }
                }
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    self.collect(state, done.ok());
                    while let Some(done) = inflight.try_join_next() {
                        self.collect(state, done.ok());
                    }
                    return Some(Triggers::of(Trigger::ActionFinished));
                }
                _ = tokio::time::sleep_until(next.at.into()) => return Some(Triggers::of(next.why)),
            }
        }
    }

    /// One pass.
    async fn pass(
        &self,
        state: &mut LoopState,
        inflight: &mut JoinSet<Finished>,
        why: Triggers,
        number: u64,
    ) -> Next {
        let started = Instant::now();
        let mut next = Next {
            at: started + self.pass.config.resync,
            why: Trigger::Resync,
        };
        if let Some(released) = self.prune_release.lock().expect("prune release").take() {
            state.confirm_release(released);
        }
        let (desired, listed) = match self.observe().await {
            Ok(found) => found,
            Err(e) => {
                error!(cause = %chain(&e), "reconcile pass failed; retrying");
                next.sooner(started + PASS_RETRY, Trigger::Retry);
                return next;
            }
        };
        self.beside_the_plan(&desired, why).await;
        let (observed, listed) = (listed.containers, listed.at);
        state.settle_refusals(&desired);
        let plan = self.plan(state, &desired, &observed);
        self.metrics.pass(why, started.elapsed());
        tracing::debug!(triggers = %why, changes = plan.changes.len(), "pass");
        let schedule = state.schedule(&plan, Instant::now());
        if let Some(at) = schedule.wake_at {
            next.sooner(at, Trigger::Backoff);
        }
        self.spawn_changes(inflight, schedule.start, &desired);
        self.settle_removals(state, started, &desired, &observed, &plan);
        self.record_revisions(number, started, &desired);
        state.forget_gone(&desired, &observed);
        let board = state.status(
            &desired,
            &observed,
            &plan,
            Instant::now(),
            SystemTime::now(),
        );
        // What the manifests ask for first: a reader keeps what it made from the board while
        // its generation stands, and the replace below moves it.
        self.status.set_wanted(wanted_of(&desired));
        for (key, s) in self.status.replace(board) {
            log_status(&key, &s);
        }
        self.sync_proxy(Arc::new(desired), observed, listed, why)
            .await;
        next
    }

    /// Starts each change in its own task; it reports back through `inflight`.
    fn spawn_changes(
        &self,
        inflight: &mut JoinSet<Finished>,
        start: Vec<AppChange>,
        desired: &DesiredState,
    ) {
        for change in start {
            let app = valid_app(desired, &change.key).cloned();
            let (exec, finish) = (self.pass.exec.clone(), self.pass.finish_rename.clone());
            inflight.spawn(run_change(exec, finish, change, app));
        }
    }

    /// Reads desired and observed state, counting a pass that could not (and whether the
    /// engine answered) for `/metrics` and `/readyz`.
    async fn observe(&self) -> Result<(DesiredState, Listed), PassError> {
        let observed = self.pass.observe().await;
        self.metrics.pass_outcome(match &observed {
            Ok(_) => Some(true),
            Err(PassError::Engine(_)) => Some(false),
            Err(PassError::Scan(_) | PassError::Switch(_)) => None,
        });
        observed
    }

    /// Plans, lifting the guard when a confirmed release covers what it holds, and warns
    /// once when the set of held removals changes.
    fn plan(&self, state: &mut LoopState, desired: &DesiredState, observed: &[Observed]) -> Plan {
        let refused = Some(state.refused().clone());
        let asked = self.pass.exec.removals().asked();
        let options = |allow| PlanOptions {
            refused: refused.as_ref(),
            asked: Some(&asked),
            ..self.pass.options(allow)
        };
        let mut p = plan(desired, observed, options(false));
        match state.release(&p) {
            Release::None => {}
            Release::Lift => {
                info!(apps = p.prune_blocked.len(), "mass removal released by a confirmed API call");
                p = plan(desired, observed, options(true));
            }
            Release::Stale => warn!(
                "the removals the guard holds changed since the release was confirmed; nothing released"
            ),
        }
        self.pass.exec.holds().hold_back(&mut p);
        if let Some(held) = state.newly_blocked(&p) {
            let keys: Vec<String> = held.iter().map(|k| k.to_string()).collect();
            warn!(apps = %keys.join(", "), "prune blocked: manifests of many running apps vanished at once; nothing removed until an admin confirms `POST /prune/release`");
        }
        p
    }

    fn settle_removals(
        &self,
        state: &LoopState,
        scanned_at: Instant,
        desired: &DesiredState,
        observed: &[Observed],
        plan: &Plan,
    ) {
        let exec = &self.pass.exec;
        let pending = exec.removals().pending();
        for (key, step) in state.settle_removals(&pending, scanned_at, desired, observed, plan) {
            match step {
                PurgeStep::Finish if exec.removals().wants_purge(&key) => exec.finish_purge(&key),
                PurgeStep::Cancel | PurgeStep::Finish => exec.removals().cancel(&key),
            }
        }
    }

    fn record_revisions(&self, number: u64, began: Instant, desired: &DesiredState) {
        if let Some(hook) = &self.on_pass {
            let (hook, seen) = (hook.clone(), desired.seen());
            tokio::task::spawn_blocking(move || hook(number, began, seen));
        }
    }

    /// Takes a finished change back: frees the app, counts it, starts its backoff on failure
    /// (or refuses its spec when its rollout was rolled back).
    fn collect(&self, state: &mut LoopState, done: Option<Finished>) {
        let Some(done) = done else { return };
        let (key, kind) = (&done.change.key, done.change.kind());
        self.metrics.action(kind, done.result.is_ok());
        if let Some(Action::Recreate { strategy, .. }) = &done.change.action {
            self.metrics
                .rollout(strategy.as_str(), rollout_result(&done.result), done.took);
        }
        let result = done.result.as_ref().map(|_| ()).map_err(|e| match e {
            ActionError::RolledBack {
                hash,
                health,
                reason,
            } => Failure::RolledBack(Refusal {
                hash: hash.clone(),
                reason: reason.clone(),
                health: Some(health.as_deref().cloned()),
                build: false,
            }),
            ActionError::BuildFailed { hash, reason } => Failure::RolledBack(Refusal {
                hash: hash.clone(),
                reason: redact(reason, &done.secrets),
                health: None,
                build: true,
            }),
            other => Failure::Retry(redact(&chain(other), &done.secrets)),
        });
        match (
            state.finished(&done.change, result, Instant::now()),
            &done.result,
        ) {
            (Outcome::Done, _) => info!(app = %key, action = kind, "done"),
            (Outcome::Refused, _) => {
                warn!(app = %key, "rollout failed: the old container keeps running; this spec is not tried again until the manifest changes")
            }
            (Outcome::RetryIn(wait), Err(e)) => {
                let cause = redact(&chain(e), &done.secrets);
                error!(app = %key, action = kind, retry_in = ?wait, cause = %cause, "action failed")
            }
            (Outcome::RetryIn(_), Ok(())) => {}
        }
    }
}

impl Planner for ServeLoop {
    fn plan(&self) -> Pin<Box<dyn Future<Output = Result<Planned, String>> + Send + '_>> {
        Box::pin(async move {
            let (desired, p) = self.plan_now().await.map_err(|e| chain(&e))?;
            Ok(Planned {
                text: p.to_string(),
                changed: p.changes.iter().map(|c| c.key.clone()).collect(),
                problems: desired.problems(),
                prune_blocked: p.prune_blocked.clone(),
            })
        })
    }
}

/// What each valid manifest asks for, for the bridge.
fn wanted_of(desired: &DesiredState) -> std::collections::HashMap<AppKey, Wanted> {
    let valid = desired.apps.iter().filter_map(|(k, e)| match e {
        crate::model::desired::Entry::Valid(app) => Some((k, app)),
        _ => None,
    });
    valid
        .map(|(k, app)| {
            let domain = app.spec.domain.clone();
            (
                k.clone(),
                Wanted {
                    state: app.run,
                    domain,
                },
            )
        })
        .collect()
}

/// `succeeded`, `rolled_back` (unhealthy, the old one kept) or `failed`.
fn rollout_result(result: &Result<(), ActionError>) -> &'static str {
    match result {
        Ok(()) => "succeeded",
        Err(ActionError::RolledBack { .. }) => "rolled_back",
        Err(_) => "failed",
    }
}

async fn run_change(
    exec: Arc<Executor>,
    finish: RenameFinisher,
    change: AppChange,
    app: Option<DesiredApp>,
) -> Finished {
    let began = Instant::now();
    // A panic must come back as a failure: the app would otherwise stay busy, holding one of
    // the `max_parallel` slots for good.
    let run = execute_change(&exec, &finish, &change, app.as_ref());
    let run = std::panic::AssertUnwindSafe(run);
    let result = match futures_util::FutureExt::catch_unwind(run).await {
        Ok(result) => result,
        Err(_) => Err(ActionError::Internal(format!(
            "{}: the change panicked",
            change.key
        ))),
    };
    let secrets = app
        .map(|a| a.secret_env.into_values().collect())
        .unwrap_or_default();
    Finished {
        change,
        result,
        took: began.elapsed(),
        secrets,
    }
}

fn log_status(key: &AppKey, s: &AppStatus) {
    match (&s.phase, &s.last_error) {
        (p, Some(e)) if *p == Phase::Frozen || p.is_failing() => {
            let e = crate::runtime::rollout::without_log_tail(e);
            warn!(app = %key, phase = %s.phase, error = %e, "status")
        }
        _ => info!(app = %key, phase = %s.phase, container = %s.container, "status"),
    }
}

#[path = "serve_outside.rs"]
mod outside;
