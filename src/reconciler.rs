//! The reconcile loop. One pass = load desired state, list observed containers, plan, execute.
//! `pass_once` serves `plan`/`apply`; `serve` runs passes forever, level-triggered: any
//! trigger (file event, Docker event, resync tick, finished action) recomputes the whole plan.
//!
//! **Invariant: at most one change per app is in flight; a busy app is skipped by later passes
//! until its change finishes.** Failed changes and crash restarts wait out their backoff.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backoff::{Backoffs, CRASH_LOOP_AT};
use crate::config::Config;
use crate::desired::{DesiredApp, DesiredState, Entry};
use crate::engine::EngineError;
use crate::executor::Executor;
use crate::metrics::Metrics;
use crate::names::AppKey;
use crate::observed::{describe, Observed};
use crate::plan::{plan, Action, AppChange, Plan, PlanOptions};
use crate::scan::ScanError;
use crate::status::{AppStatus, Phase, StatusBoard};

/// How long a burst of triggers is gathered into one pass.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Retry delay for a pass that could not even start (engine down, state dir unreadable).
const PASS_RETRY: Duration = Duration::from_secs(2);

/// Why a pass could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The state directory could not be listed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// Docker could not be listed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What one `apply` pass did.
pub struct PassReport {
    /// The desired state it worked from (for printing problems).
    pub desired: DesiredState,
    /// The plan it executed.
    pub plan: Plan,
    /// Apps whose change failed, with the error.
    pub failures: Vec<(AppKey, String)>,
}

impl PassReport {
    /// True when the engine matches every valid manifest and nothing is held or blocked.
    pub fn converged(&self) -> bool {
        self.failures.is_empty()
            && self.plan.prune_blocked.is_empty()
            && self.desired.problems().is_empty()
    }
}

/// The loop's state that outlives one pass.
pub struct Reconciler {
    /// Configuration.
    config: Arc<Config>,
    /// Executes changes.
    exec: Arc<Executor>,
    /// Latest status per app.
    pub status: Arc<StatusBoard>,
    /// Pass and action counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Set by a confirmed API call to the held removals it released: the next pass makes
    /// them if they are exactly what the guard holds then, and nothing else.
    pub prune_release: Arc<std::sync::Mutex<Option<BTreeSet<AppKey>>>>,
    /// Called (on a blocking thread) after every pass with the manifests it took up (valid
    /// ones); `serve` records revisions with it.
    pub on_pass: Option<PassHook>,
    /// Called (on a blocking thread) when an app's removal succeeded, whatever removed its
    /// manifest; `serve` revokes the app's client keys with it, so a new app of the same name
    /// never honours the old app's keys.
    pub on_removed: Option<RemovedHook>,
    /// The state write lock (serve): held while scanning, so a pass never sees an API write
    /// half done or a git checkout in the middle of a fast-forward.
    pub state_lock: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// See [`Reconciler::on_pass`].
/// It gets the pass's number (counting up) and what the pass took up.
pub type PassHook = Arc<dyn Fn(u64, Vec<TakenUp>) + Send + Sync>;

/// One valid manifest as a pass read it: its text and the spec hash derived from that text.
#[derive(Debug, Clone)]
pub struct TakenUp {
    /// Which app.
    pub key: AppKey,
    /// The manifest text.
    pub text: String,
    /// The spec hash the pass derived from `text`.
    pub hash: String,
}
/// See [`Reconciler::on_removed`].
/// It gets the app and when the pass that planned the removal began (unix milliseconds).
pub type RemovedHook = Arc<dyn Fn(AppKey, u64) + Send + Sync>;

impl Reconciler {
    /// A reconciler over `exec`.
    pub fn new(config: Arc<Config>, exec: Executor) -> Reconciler {
        Reconciler {
            config,
            exec: Arc::new(exec),
            status: Default::default(),
            metrics: Default::default(),
            prune_release: Default::default(),
            on_pass: None,
            on_removed: None,
            state_lock: None,
        }
    }

    /// The executor, shared with the API (purge requests).
    pub fn executor(&self) -> &Arc<Executor> {
        &self.exec
    }

    /// Reads desired and observed state.
    pub async fn observe(&self) -> Result<(DesiredState, Vec<Observed>), PassError> {
        let config = self.config.clone();
        let held = match &self.state_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let desired = tokio::task::spawn_blocking(move || DesiredState::load(&config))
            .await
            .expect("scan task panicked")?;
        drop(held);
        let observed = self.exec.engine().list().await?;
        Ok((desired, observed))
    }

    /// Plans against the live engine, executing nothing.
    pub async fn plan_once(
        &self,
        allow_mass_prune: bool,
    ) -> Result<(DesiredState, Plan), PassError> {
        let (desired, observed) = self.observe().await?;
        let p = plan(&desired, &observed, self.options(allow_mass_prune));
        Ok((desired, p))
    }

    fn options(&self, allow_mass_prune: bool) -> PlanOptions {
        PlanOptions {
            allow_mass_prune,
            prune_guard: self.config.prune_guard,
        }
    }

    /// One pass: plan and execute everything, `max_parallel` apps at a time.
    pub async fn pass_once(&self, allow_mass_prune: bool) -> Result<PassReport, PassError> {
        let (desired, plan) = self.plan_once(allow_mass_prune).await?;
        let results = futures_util::stream::iter(plan.changes.iter().map(|change| {
            let app = valid_app(&desired, &change.key).cloned();
            let exec = self.exec.clone();
            async move { (change.key.clone(), exec.execute(change, app.as_ref()).await) }
        }))
        .buffer_unordered(self.config.max_parallel)
        .collect::<Vec<_>>()
        .await;
        let mut failures: Vec<(AppKey, String)> = results
            .into_iter()
            .filter_map(|(k, r)| r.err().map(|e| (k, e.to_string())))
            .collect();
        failures.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(PassReport {
            desired,
            plan,
            failures,
        })
    }

    /// Runs passes until `shutdown`, woken by `trigger` (files, Docker events, API), by the
    /// resync interval, by finished actions and by backoff deadlines. Waits for in-flight
    /// actions before returning.
    pub async fn serve(self: Arc<Self>, trigger: Arc<Notify>, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.config.max_parallel));
        let mut inflight: JoinSet<Finished> = JoinSet::new();
        let mut busy: HashSet<AppKey> = HashSet::new();
        let mut backoffs = Backoffs::default();
        let mut last_blocked: Vec<AppKey> = Vec::new();
        let mut passes: u64 = 0;
        loop {
            let started = Instant::now();
            let planned_ms = crate::store::unix_now_ms();
            let mut wake = started + self.config.resync;
            let release = self.prune_release.lock().expect("prune release").take();
            match self.observe().await {
                Ok((desired, observed)) => {
                    let mut plan = plan(&desired, &observed, self.options(false));
                    if let Some(released) = &release {
                        if !plan.prune_blocked.is_empty()
                            && plan.prune_blocked.iter().all(|k| released.contains(k))
                        {
                            info!(
                                apps = plan.prune_blocked.len(),
                                "mass removal released by a confirmed API call"
                            );
                            plan = crate::plan::plan(&desired, &observed, self.options(true));
                        } else {
                            warn!("the removals the guard holds changed since the release was confirmed; nothing released");
                        }
                    }
                    self.metrics.pass(started.elapsed());
                    if plan.prune_blocked != last_blocked && !plan.prune_blocked.is_empty() {
                        let keys: Vec<String> =
                            plan.prune_blocked.iter().map(|k| k.to_string()).collect();
                        warn!(apps = %keys.join(", "), "prune blocked: manifests of many running apps vanished at once; nothing removed until `berth apply --allow-mass-prune`");
                    }
                    last_blocked = plan.prune_blocked.clone();
                    for change in &plan.changes {
                        if busy.contains(&change.key) {
                            continue;
                        }
                        let restart = matches!(
                            change.action,
                            Some(Action::Start {
                                exited: Some(_),
                                ..
                            })
                        );
                        if let Err(at) = backoffs.ready(
                            &change.key,
                            change.desired_hash.as_deref(),
                            restart,
                            Instant::now(),
                        ) {
                            wake = wake.min(at);
                            continue;
                        }
                        busy.insert(change.key.clone());
                        let app = valid_app(&desired, &change.key).cloned();
                        inflight.spawn(run_change(
                            self.exec.clone(),
                            slots.clone(),
                            change.clone(),
                            app,
                            planned_ms,
                        ));
                    }
                    self.settle_purges(started, &desired, &observed, &plan, &busy);
                    if let Some(hook) = &self.on_pass {
                        let valid: Vec<TakenUp> = desired
                            .apps
                            .values()
                            .filter_map(|e| match e {
                                Entry::Valid(app) => Some(TakenUp {
                                    key: app.key.clone(),
                                    text: app.text.clone(),
                                    hash: app.hash.clone(),
                                }),
                                _ => None,
                            })
                            .collect();
                        let hook = hook.clone();
                        passes += 1;
                        let pass = passes;
                        tokio::task::spawn_blocking(move || hook(pass, valid));
                    }
                    let keys: HashSet<&AppKey> = desired
                        .apps
                        .keys()
                        .chain(observed.iter().map(|o| &o.key))
                        .collect();
                    backoffs.retain(|k| keys.contains(k));
                    let board = compute_status(
                        &desired,
                        &observed,
                        &plan,
                        &busy,
                        &backoffs,
                        Instant::now(),
                    );
                    for (key, s) in self.status.replace(board) {
                        log_status(&key, &s);
                    }
                }
                Err(e) => {
                    if release.is_some() {
                        *self.prune_release.lock().expect("prune release") = release;
                    }
                    error!(cause = %e, "reconcile pass failed; retrying");
                    wake = wake.min(started + PASS_RETRY);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = trigger.notified() => tokio::time::sleep(DEBOUNCE).await,
                Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                    if let Ok(done) = done {
                        self.record(&mut backoffs, &mut busy, done);
                    }
                    while let Some(Ok(done)) = inflight.try_join_next() {
                        self.record(&mut backoffs, &mut busy, done);
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        info!(
            in_flight = inflight.len(),
            "shutting down: waiting for running actions"
        );
        while inflight.join_next().await.is_some() {}
    }
}

impl Reconciler {
    /// Purge requests whose app has no container left to remove (it never had one, or it was
    /// removed without the request) are carried out here; a request whose manifest came back
    /// is dropped, so it can never fire on a later delete of a new app with that name. Only a
    /// scan that began after the request may decide either way: an older one predates the
    /// delete it belongs to.
    fn settle_purges(
        &self,
        scanned_at: Instant,
        desired: &DesiredState,
        observed: &[Observed],
        plan: &Plan,
        busy: &HashSet<AppKey>,
    ) {
        for (key, requested_at) in self.exec.pending_purges() {
            if requested_at >= scanned_at {
                continue;
            }
            if desired.apps.contains_key(&key) {
                self.exec.cancel_purge(&key);
            } else if !desired.frozen_users.contains_key(&key.userid)
                && !busy.contains(&key)
                && !observed.iter().any(|o| o.key == key)
                && !plan.changes.iter().any(|c| c.key == key)
            {
                self.exec.finish_purge(&key);
            }
        }
    }
}

fn valid_app<'a>(desired: &'a DesiredState, key: &AppKey) -> Option<&'a DesiredApp> {
    match desired.apps.get(key) {
        Some(Entry::Valid(app)) => Some(app),
        _ => None,
    }
}

/// A finished change, reported back to the loop.
struct Finished {
    change: AppChange,
    result: Result<(), String>,
    /// Unix milliseconds when the pass that planned it began.
    planned_ms: u64,
}

async fn run_change(
    exec: Arc<Executor>,
    slots: Arc<Semaphore>,
    change: AppChange,
    app: Option<DesiredApp>,
    planned_ms: u64,
) -> Finished {
    let _slot = slots.acquire_owned().await.expect("semaphore never closes");
    let result = exec
        .execute(&change, app.as_ref())
        .await
        .map_err(|e| e.to_string());
    Finished {
        change,
        result,
        planned_ms,
    }
}

impl Reconciler {
    fn record(&self, backoffs: &mut Backoffs, busy: &mut HashSet<AppKey>, done: Finished) {
        if let (Some(hook), Some(Action::Remove { .. }), Ok(())) =
            (&self.on_removed, &done.change.action, &done.result)
        {
            let (hook, key, at) = (hook.clone(), done.change.key.clone(), done.planned_ms);
            tokio::task::spawn_blocking(move || hook(key, at));
        }
        record(&self.metrics, backoffs, busy, done);
    }
}

fn record(metrics: &Metrics, backoffs: &mut Backoffs, busy: &mut HashSet<AppKey>, done: Finished) {
    let key = &done.change.key;
    busy.remove(key);
    let kind = done.change.action.as_ref().map_or("dedupe", Action::kind);
    metrics.action(kind, done.result.is_ok());
    match done.result {
        Ok(()) => {
            let new_container = matches!(
                done.change.action,
                Some(Action::Create { .. } | Action::Recreate { .. })
            );
            backoffs.succeeded(key, new_container);
            if matches!(
                done.change.action,
                Some(Action::Start {
                    exited: Some(_),
                    ..
                })
            ) {
                backoffs.restarted(key, Instant::now());
            }
            info!(app = %key, action = kind, "done");
        }
        Err(e) => {
            let wait = backoffs.failed(
                key,
                done.change.desired_hash.as_deref(),
                e.clone(),
                Instant::now(),
            );
            error!(app = %key, action = kind, retry_in = ?wait, cause = %e, "action failed");
        }
    }
}

fn log_status(key: &AppKey, s: &AppStatus) {
    match (&s.phase, &s.last_error) {
        (Phase::Frozen | Phase::Failed | Phase::CrashLoop, Some(e)) => {
            warn!(app = %key, phase = %s.phase, error = %e, "status")
        }
        _ => info!(app = %key, phase = %s.phase, container = %s.container, "status"),
    }
}

/// Derives every app's status from one pass's inputs. Pure.
pub fn compute_status(
    desired: &DesiredState,
    observed: &[Observed],
    plan: &Plan,
    busy: &HashSet<AppKey>,
    backoffs: &Backoffs,
    now: Instant,
) -> BTreeMap<AppKey, AppStatus> {
    let container = |key: &AppKey| describe(observed, key);
    let planned: HashSet<&AppKey> = plan.changes.iter().map(|c| &c.key).collect();
    let at = SystemTime::now();
    let mut out = BTreeMap::new();
    let mut put = |key: &AppKey, phase: Phase, error: Option<String>| {
        let (container, _) = container(key);
        out.insert(
            key.clone(),
            AppStatus {
                phase,
                container,
                last_error: error,
                updated: at,
            },
        );
    };
    for (key, entry) in &desired.apps {
        match entry {
            Entry::Frozen(e) => put(key, Phase::Frozen, Some(e.clone())),
            Entry::OverQuota(e) => put(key, Phase::OverQuota, Some(e.clone())),
            Entry::Valid(app) => {
                let restarts = backoffs.recent_restarts(key, now);
                if let Some((e, n)) = backoffs.failure(key) {
                    put(
                        key,
                        Phase::Failed,
                        Some(format!("{e} (failed {n} times; retrying with backoff)")),
                    );
                } else if restarts >= CRASH_LOOP_AT {
                    let last = container(key)
                        .1
                        .map_or(String::new(), |c| format!("; last exit code {c}"));
                    put(
                        key,
                        Phase::CrashLoop,
                        Some(format!("restarted {restarts} times in 10 minutes{last}")),
                    );
                } else if planned.contains(key) || busy.contains(key) {
                    put(key, Phase::Pending, None);
                } else if app.run == crate::manifest::RunState::Running {
                    put(key, Phase::Running, None);
                } else {
                    put(key, Phase::Stopped, None);
                }
            }
        }
    }
    for key in &plan.prune_blocked {
        put(
            key,
            Phase::PruneBlocked,
            Some("manifest removed; removal held by the mass-removal guard".into()),
        );
    }
    for o in observed {
        if let Some(e) = desired.frozen_users.get(&o.key.userid) {
            put(&o.key, Phase::Frozen, Some(e.clone()));
        } else if !desired.apps.contains_key(&o.key) && !plan.prune_blocked.contains(&o.key) {
            put(
                &o.key,
                Phase::Pending,
                Some("manifest removed; container is being removed".into()),
            );
        }
    }
    out
}
