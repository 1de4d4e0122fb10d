//! One reconcile pass against the live engine: read desired and observed state, plan, and (for
//! `apply`) execute every change, `max_parallel` apps at a time. `berth plan`, `berth apply`
//! and the serve loop all start here.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;

use crate::model::claims::{resolve, Owners};
use crate::model::config::Config;
use crate::model::desired::{DesiredApp, DesiredState, Entry};
use crate::model::names::AppKey;
use crate::model::observed::Observed;
use crate::reconcile::plan::{plan, Action, AppChange, Plan, PlanOptions, Refusal};
use crate::runtime::caddy::ProxyError;
use crate::runtime::engine::EngineError;
use crate::runtime::executor::{ActionError, Executor};
use crate::runtime::informer::Listed;
use crate::state::scan::{load_desired, ScanError};

/// Why a pass could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The state directory could not be listed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// Docker could not be listed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `runtime = "swarm"` while this instance still has containers on the engine: they would
    /// run beside the services, unmanaged, holding ports and workspaces.
    #[error("runtime = \"swarm\", but this instance still has {0} container(s) on this engine from runtime = \"docker\"; switch back, delete the apps (or remove the containers), then switch")]
    Switch(usize),
}

/// What one `apply` pass did.
pub struct PassReport {
    /// The desired state it worked from (for printing problems).
    pub desired: Arc<DesiredState>,
    /// The plan it executed.
    pub plan: Plan,
    /// Apps whose change failed, with the error.
    pub failures: Vec<(AppKey, ActionError)>,
}

impl PassReport {
    /// True when the engine matches every valid manifest and nothing is held or blocked.
    pub fn converged(&self) -> bool {
        self.failures.is_empty()
            && self.plan.prune_blocked.is_empty()
            && self.desired.problems().is_empty()
    }
}

/// Finishes a rename `(old, new)` once its takeover is done: the records are adopted (again,
/// whoever did it first), then `renamed_from` is dropped so the app gets its container.
/// `serve` writes through the manifest writer (one commit in git mode), `berth apply` edits
/// the file.
pub type RenameFinisher = Arc<
    dyn Fn(AppKey, AppKey) -> futures_util::future::BoxFuture<'static, Result<(), String>>
        + Send
        + Sync,
>;

/// Runs one change; a rename's takeover is finished by `finish` before it counts as done.
pub(crate) async fn execute_change(
    exec: &Executor,
    finish: &RenameFinisher,
    change: &AppChange,
    app: Option<&DesiredApp>,
) -> Result<(), ActionError> {
    exec.execute(change, app).await?;
    if let Some(Action::Rename { from, .. }) = &change.action {
        finish(from.clone(), change.key.clone())
            .await
            .map_err(|e| ActionError::Rename(format!("the takeover is done, but {e}")))?;
    }
    Ok(())
}

/// Reads, plans and executes passes.
pub struct Reconciler {
    /// Configuration.
    pub(crate) config: Arc<Config>,
    /// Executes changes.
    pub(crate) exec: Arc<Executor>,
    /// The state write lock (serve): held while scanning, so a pass never sees an API write
    /// half done or a git checkout in the middle of a fast-forward.
    pub(crate) state_lock: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Who had each host port and domain after the last pass (`model::claims`).
    owners: std::sync::Mutex<Owners>,
    /// See [`with_refusals`](Self::with_refusals); the serve loop keeps its own.
    refused: BTreeMap<AppKey, Refusal>,
    /// See [`RenameFinisher`]; `berth apply`'s unless `serve` sets its own.
    pub(crate) finish_rename: RenameFinisher,
    /// Swarm mode: this instance was seen to have no container left (checked once).
    no_containers: std::sync::atomic::AtomicBool,
}

impl Reconciler {
    /// A reconciler over `exec`.
    pub fn new(config: Arc<Config>, exec: Executor) -> Reconciler {
        Reconciler {
            config: config.clone(),
            exec: Arc::new(exec),
            state_lock: None,
            owners: Default::default(),
            refused: BTreeMap::new(),
            finish_rename: offline_finisher(config.clone()),
            no_containers: Default::default(),
        }
    }

    /// Reads desired and observed state (the informer's list: kept while Docker's events say
    /// nothing changed), and settles who holds each host port and domain.
    pub async fn observe(&self) -> Result<(DesiredState, Listed), PassError> {
        let config = self.config.clone();
        let held = match &self.state_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let desired = tokio::task::spawn_blocking(move || load_desired(&config))
            .await
            .expect("scan task panicked")?;
        drop(held);
        self.check_no_containers().await?;
        let observed = self.exec.informer().list().await?;
        let mut desired = desired;
        let mut owners = self.owners.lock().expect("claim owners");
        *owners = resolve(
            &mut desired,
            &observed.containers,
            &owners,
            &self.config.policy,
        );
        drop(owners);
        Ok((desired, observed))
    }

    /// In swarm mode, until this instance's containers are seen gone: none may be left.
    async fn check_no_containers(&self) -> Result<(), PassError> {
        use std::sync::atomic::Ordering;
        if !self.config.runtime.is_swarm() || self.no_containers.load(Ordering::Acquire) {
            return Ok(());
        }
        let left = self.exec.engine().list().await?.len();
        if left > 0 {
            return Err(PassError::Switch(left));
        }
        self.no_containers.store(true, Ordering::Release);
        Ok(())
    }

    /// Plans against the live engine, executing nothing.
    pub async fn plan_once(
        &self,
        allow_mass_prune: bool,
    ) -> Result<(DesiredState, Plan), PassError> {
        let (desired, observed) = self.observe().await?;
        let p = plan(
            &desired,
            &observed.containers,
            self.options(allow_mass_prune),
        );
        Ok((desired, p))
    }

    /// Rollouts refused on record (`berth plan` and `apply` ask the daemon or the database):
    /// they are shown and not tried again.
    pub fn with_refusals(mut self, refused: BTreeMap<AppKey, Refusal>) -> Reconciler {
        self.refused = refused;
        self
    }

    pub(crate) fn options(&self, allow_mass_prune: bool) -> PlanOptions<'_> {
        PlanOptions {
            allow_mass_prune,
            prune_guard: self.config.prune_guard,
            refused: Some(&self.refused),
            asked: None,
        }
    }

    /// One pass: plan and execute everything, `max_parallel` apps at a time. With `[proxy]`,
    /// Caddy is brought in line before (a rollout switches from the routes it finds) and
    /// after (the new containers' routes).
    pub async fn pass_once(&self, allow_mass_prune: bool) -> Result<PassReport, PassError> {
        let (mut desired, mut observed) = self.observe().await?;
        if self.fetch_sources(&desired).await {
            (desired, observed) = self.observe().await?;
        }
        self.heal_isolation().await;
        let plan = plan(
            &desired,
            &observed.containers,
            self.options(allow_mass_prune),
        );
        let desired = Arc::new(desired);
        self.sync_quietly(desired.clone(), observed).await;
        let results = futures_util::stream::iter(plan.changes.iter().map(|change| {
            let app = valid_app(&desired, &change.key).cloned();
            let (exec, finish) = (self.exec.clone(), self.finish_rename.clone());
            async move {
                let done = execute_change(&exec, &finish, change, app.as_ref()).await;
                (change.key.clone(), done)
            }
        }))
        .buffer_unordered(self.config.max_parallel)
        .collect::<Vec<_>>()
        .await;
        let mut failures: Vec<(AppKey, ActionError)> = results
            .into_iter()
            .filter_map(|(k, r)| r.err().map(|e| (k, e)))
            .collect();
        failures.sort_by(|a, b| a.0.cmp(&b.0));
        if self.exec.front().is_some() && !plan.is_noop() {
            let observed = self.exec.informer().list().await?;
            self.sync_quietly(desired.clone(), observed).await;
        }
        Ok(PassReport {
            desired,
            plan,
            failures,
        })
    }
}

impl Reconciler {
    /// Brings Caddy in line with this desired and observed state (docs/guides/deploys-and-rollback.md); `None` without
    /// `[proxy]`, else the writes it made. A pass over unchanged state reads and writes nothing.
    pub async fn sync_proxy(
        &self,
        desired: Arc<DesiredState>,
        observed: Arc<Vec<Observed>>,
        listed: std::time::Instant,
        verify: bool,
    ) -> Option<Result<u64, ProxyError>> {
        let front = self.exec.front()?;
        Some(front.sync(desired, observed, listed, verify).await)
    }

    /// `berth apply` without a daemon: fetches every `[build] git` repository now, one after
    /// the other (a failure is in the app's status). Answers whether any was fetched.
    async fn fetch_sources(&self, desired: &DesiredState) -> bool {
        for (key, wanted) in &desired.sources {
            let fetched = crate::state::build_source::fetch(&self.config, key, &wanted.source);
            if let Err(why) = fetched.await {
                tracing::warn!(app = %key, url = %wanted.source.url, cause = %why, "cannot fetch the build's repository");
            }
        }
        !desired.sources.is_empty()
    }

    /// Puts berth's rules between users' networks back as last applied (`runtime::isolation`)
    /// when something removed them; answers whether they are in line. A failure is logged:
    /// apps already on their networks keep running, and a container about to join one is
    /// refused until the rules can be made.
    pub async fn heal_isolation(&self) -> bool {
        let Err(e) = self.exec.engine().heal_isolation().await else {
            return true;
        };
        let chain = crate::runtime::isolation::chain_name(&self.config.instance);
        tracing::warn!(chain = %chain, cause = %crate::error_chain::chain(&e), "cannot bring the isolation rules between users' networks in line");
        false
    }

    /// [`sync_proxy`](Self::sync_proxy) for `apply`: a failure is logged; apps still converge.
    async fn sync_quietly(&self, desired: Arc<DesiredState>, observed: Listed) {
        let synced = self.sync_proxy(desired, observed.containers, observed.at, true);
        if let Some(Err(e)) = synced.await {
            tracing::warn!(cause = %crate::error_chain::chain(&e), "cannot bring Caddy in line");
        }
    }
}

fn offline_finisher(config: Arc<Config>) -> RenameFinisher {
    Arc::new(move |old, new| {
        let config = config.clone();
        Box::pin(async move {
            crate::state::rename::finish_offline(config, &old, &new)
                .await
                .map_err(|e| crate::error_chain::chain(&e))
        })
    })
}

/// The valid desired app for `key`, if it has one.
pub(crate) fn valid_app<'a>(desired: &'a DesiredState, key: &AppKey) -> Option<&'a DesiredApp> {
    match desired.apps.get(key) {
        Some(Entry::Valid(app)) => Some(app),
        _ => None,
    }
}
