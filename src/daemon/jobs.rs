//! The job scheduler under `berth serve` (docs/guides/jobs.md): its own task, beside the
//! reconcile loop and never in its way. After each pass the loop hands it the valid apps that
//! have `[[jobs]]` (`Feed`); it sleeps until the next fire time, asks
//! `reconcile::jobs::decide` what is due, and starts, skips or records runs. Between runs it
//! asks the engine nothing. Each job's last handled fire time is in the database with the
//! run it started, so a restart neither runs a fire twice nor forgets one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::daemon::job_runs::{db, secs, Ctx};
use crate::error_chain::chain;
use crate::model::desired::DesiredApp;
use crate::model::jobs::{History, Job};
use crate::model::names::AppKey;
use crate::reconcile::jobs::{decide, decide_now, Due, RunResult};
use crate::runtime::job_asks::{Ask, AskError, JobView};
use crate::store::{JobRun, LastFire};

/// What the loop publishes after each pass (none before the first).
pub type Feed = watch::Sender<Option<Arc<Published>>>;

pub use crate::daemon::job_runs::Published;

/// The longest sleep: a wall clock stepped forward is noticed within it.
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// A run in flight: its id and what stops it (`replace`).
struct InFlight {
    run: u64,
    stop: CancellationToken,
}

/// The scheduler's memory.
pub struct Scheduler {
    ctx: Ctx,
    apps: BTreeMap<AppKey, Arc<DesiredApp>>,
    last: HashMap<(AppKey, String), LastFire>,
    inflight: HashMap<(AppKey, String), Vec<InFlight>>,
    done: mpsc::Receiver<JobRun>,
}

/// How a run starts.
struct Start {
    fire: SystemTime,
    trigger: &'static str,
    attempt: u32,
    /// Record `fire` as the job's last handled fire time with the run.
    is_fire: bool,
}

impl Scheduler {
    /// A scheduler recording through `ctx` (whose `done` is the other end of `done`).
    pub fn new(ctx: Ctx, done: mpsc::Receiver<JobRun>) -> Scheduler {
        Scheduler {
            ctx,
            apps: BTreeMap::new(),
            last: HashMap::new(),
            inflight: HashMap::new(),
            done,
        }
    }

    /// Runs until `shutdown`; runs in flight then are left to run, and the next start
    /// follows them.
    pub async fn run(
        mut self,
        mut feed: watch::Receiver<Option<Arc<Published>>>,
        mut asks: mpsc::Receiver<Ask>,
        shutdown: CancellationToken,
    ) {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = feed.wait_for(Option::is_some) => if r.is_err() { return },
        }
        self.take(&feed);
        self.recover(&shutdown).await;
        self.seed_metrics().await;
        loop {
            let next = self.tick().await;
            let now = SystemTime::now();
            let nap = next.map_or(MAX_SLEEP, |n| n.duration_since(now).unwrap_or_default());
            // A few ms past the fire time, so the clock read at the wake is past it.
            let nap = nap.min(MAX_SLEEP) + Duration::from_millis(5);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = feed.changed() => match r {
                    Ok(()) => self.take(&feed),
                    Err(_) => return,
                },
                Some(ask) = asks.recv() => self.answer(ask).await,
                Some(run) = self.done.recv() => self.finished(run).await,
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    fn take(&mut self, feed: &watch::Receiver<Option<Arc<Published>>>) {
        let published = feed.borrow().clone().unwrap_or_default();
        self.apps = published
            .apps
            .iter()
            .map(|a| (a.key.clone(), Arc::new(a.clone())))
            .collect();
        // A deleted app's runs stop with it: they hold its secrets, its network and volumes.
        let gone: Vec<(AppKey, String)> = self
            .inflight
            .keys()
            .filter(|(key, _)| {
                !published.present.contains(key) && !published.frozen_users.contains(&key.userid)
            })
            .cloned()
            .collect();
        for id in &gone {
            self.stop_all(id);
        }
    }

    /// Follows the runs an earlier berth left (asking the engine until it answers).
    async fn recover(&mut self, shutdown: &CancellationToken) {
        let running = match db(&self.ctx.store, |s| s.running_job_runs()).await {
            Ok(r) => r,
            Err(e) => {
                warn!(cause = %chain(&e), "cannot read the job runs in flight");
                return;
            }
        };
        // Nothing in flight: no engine call (an idle berth asks the engine nothing).
        if running.is_empty() {
            return;
        }
        let found = loop {
            match self.ctx.runner.found().await {
                Ok(f) => break f,
                Err(e) => warn!(cause = %chain(&e), "cannot list job runs; asking again"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        };
        let apps = self.apps.clone();
        let history = move |run: &JobRun| history_of(&apps, &run.app, &run.job);
        for (run, stop) in self.ctx.recover((running, found), history).await {
            if let Some(key) = key_of(&run.app) {
                let flight = InFlight { run: run.id, stop };
                self.inflight
                    .entry((key, run.job))
                    .or_default()
                    .push(flight);
            }
        }
    }

    /// Each job's last success from the database, so an alert on its age holds across a
    /// restart of berth.
    async fn seed_metrics(&self) {
        let keys: Vec<AppKey> = self.apps.keys().cloned().collect();
        for key in keys {
            let Ok(runs) = db(&self.ctx.store, move |s| s.job_runs(&key)).await else {
                continue;
            };
            for r in runs.iter().filter(|r| r.result == RunResult::Succeeded) {
                let at = r.ended.unwrap_or_default();
                self.ctx.metrics.job_succeeded(&r.app, &r.job, at);
            }
        }
    }

    /// Handles every job that is due; answers the next fire time of all.
    async fn tick(&mut self) -> Option<SystemTime> {
        let mut next: Option<SystemTime> = None;
        let apps: Vec<Arc<DesiredApp>> = self.apps.values().cloned().collect();
        for app in apps {
            for job in &app.jobs {
                while let Some(n) = self.step(&app, job).await {
                    if let Due::Wait(at) = n {
                        next = match (next, at) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        break;
                    }
                }
            }
        }
        next
    }

    /// One decision for one job, carried out; `None` when the job was just baselined.
    async fn step(&mut self, app: &Arc<DesiredApp>, job: &Job) -> Option<Due> {
        let id = (app.key.clone(), job.decl.name.clone());
        let now = SystemTime::now();
        let Some(last) = self.last_fire(&id, job).await else {
            let fire = fire_of(job, now);
            self.remember(&id, &fire).await;
            return Some(Due::Wait(job.schedule.next_after(now)));
        };
        let last = UNIX_EPOCH + Duration::from_secs(last.at);
        let running = self.inflight.get(&id).is_some_and(|v| !v.is_empty());
        let rule = (job.decl.starting_deadline, job.decl.concurrency);
        let due = decide(&job.schedule, last, now, rule, running);
        let start = |fire| Start {
            fire,
            trigger: "schedule",
            attempt: 0,
            is_fire: true,
        };
        match due {
            Due::Wait(_) => {}
            Due::Run(fire) => drop(self.start(app, job, start(fire)).await),
            Due::Replace(fire) => {
                self.stop_all(&id);
                drop(self.start(app, job, start(fire)).await);
            }
            Due::Skip(fire) => drop(
                self.record(app, job, (fire, RunResult::Skipped), true)
                    .await,
            ),
            Due::Missed(fire) => drop(self.record(app, job, (fire, RunResult::Missed), true).await),
        }
        if let Due::Run(f) | Due::Replace(f) | Due::Skip(f) | Due::Missed(f) = due {
            // Held in memory even when the database refused it, so nothing fires twice.
            self.last.insert(id, fire_of(job, f));
        }
        Some(due)
    }

    /// The job's last handled fire time, if it was computed under its current schedule.
    async fn last_fire(&mut self, id: &(AppKey, String), job: &Job) -> Option<LastFire> {
        if !self.last.contains_key(id) {
            let (key, name) = id.clone();
            match db(&self.ctx.store, move |s| s.job_fire(&key, &name)).await {
                Ok(Some(f)) => drop(self.last.insert(id.clone(), f)),
                Ok(None) => {}
                Err(e) => {
                    warn!(app = %id.0, job = %id.1, cause = %chain(&e), "cannot read a job's last run")
                }
            }
        }
        let f = self.last.get(id)?;
        let same = f.schedule == job.schedule.expr() && f.timezone == job.schedule.timezone();
        same.then(|| f.clone())
    }

    async fn remember(&mut self, id: &(AppKey, String), fire: &LastFire) {
        self.last.insert(id.clone(), fire.clone());
        let (key, name, f) = (id.0.clone(), id.1.clone(), fire.clone());
        if let Err(e) = db(&self.ctx.store, move |s| s.set_job_fire(&key, &name, &f)).await {
            warn!(app = %id.0, job = %id.1, cause = %chain(&e), "cannot record a job's schedule");
        }
    }

    fn stop_all(&mut self, id: &(AppKey, String)) {
        for f in self.inflight.get(id).into_iter().flatten() {
            f.stop.cancel();
        }
    }

    /// Records a run that does not start (skipped, missed).
    async fn record(
        &mut self,
        app: &Arc<DesiredApp>,
        job: &Job,
        (fire, result): (SystemTime, RunResult),
        is_fire: bool,
    ) -> Result<JobRun, String> {
        let trigger = if is_fire { "schedule" } else { "manual" };
        let mut run = new_run(app, job, fire, trigger, 0);
        run.result = result;
        run.ended = Some(secs(SystemTime::now()));
        if result == RunResult::Skipped {
            run.note = Some("a run was in flight (concurrency = forbid)".into());
        }
        let last = is_fire.then(|| fire_of(job, fire));
        let history = job.decl.history;
        let added = db(&self.ctx.store, move |s| s.add_job_run(run, last, history)).await;
        let run = added.map_err(|e| chain(&e))?;
        self.ctx.metrics.job_run(result.as_str());
        Ok(run)
    }

    /// Records a run as running and starts its task.
    async fn start(
        &mut self,
        app: &Arc<DesiredApp>,
        job: &Job,
        how: Start,
    ) -> Result<JobRun, String> {
        let run = new_run(app, job, how.fire, how.trigger, how.attempt);
        let last = how.is_fire.then(|| fire_of(job, how.fire));
        let history = job.decl.history;
        let added = db(&self.ctx.store, move |s| s.add_job_run(run, last, history)).await;
        let run = added.map_err(|e| {
            warn!(app = %app.key, job = %job.decl.name, cause = %chain(&e), "cannot record a job run; it does not start");
            chain(&e)
        })?;
        let stop = CancellationToken::new();
        let id = (app.key.clone(), job.decl.name.clone());
        let flight = InFlight {
            run: run.id,
            stop: stop.clone(),
        };
        self.inflight.entry(id).or_default().push(flight);
        let task = self
            .ctx
            .clone()
            .drive(app.clone(), job.decl.clone(), run.clone(), stop);
        tokio::spawn(task);
        Ok(run)
    }

    /// A run ended: no longer in flight; a failed one is tried again while it has retries.
    async fn finished(&mut self, run: JobRun) {
        let Some(key) = key_of(&run.app) else {
            return;
        };
        let id = (key.clone(), run.job.clone());
        let mut replaced = false;
        if let Some(v) = self.inflight.get_mut(&id) {
            replaced = v.iter().any(|f| f.run == run.id && f.stop.is_cancelled());
            v.retain(|f| f.run != run.id);
        }
        let Some(app) = self.apps.get(&key).cloned() else {
            return;
        };
        let Some(job) = app.jobs.iter().find(|j| j.decl.name == run.job) else {
            return;
        };
        if run.result.is_retried() && !replaced && run.attempt < job.decl.retries {
            let how = Start {
                fire: UNIX_EPOCH + Duration::from_secs(run.scheduled_for),
                trigger: "retry",
                attempt: run.attempt + 1,
                is_fire: false,
            };
            let _ = self.start(&app, job, how).await;
        }
    }

    /// Answers the API.
    async fn answer(&mut self, ask: Ask) {
        match ask {
            Ask::Describe { key, reply } => {
                let _ = reply.send(self.describe(&key));
            }
            Ask::Run { key, job, reply } => {
                let _ = reply.send(self.run_now(key, job).await);
            }
        }
    }

    fn describe(&self, key: &AppKey) -> Vec<JobView> {
        let Some(app) = self.apps.get(key) else {
            return Vec::new();
        };
        let now = SystemTime::now();
        let view = |job: &Job| {
            let id = (key.clone(), job.decl.name.clone());
            JobView {
                name: job.decl.name.clone(),
                schedule: job.schedule.expr().to_string(),
                timezone: job.schedule.timezone().to_string(),
                concurrency: job.decl.concurrency.as_str(),
                next_run: job.schedule.next_after(now).map(secs),
                running: self
                    .inflight
                    .get(&id)
                    .into_iter()
                    .flatten()
                    .map(|f| f.run)
                    .collect(),
            }
        };
        app.jobs.iter().map(view).collect()
    }

    async fn run_now(&mut self, key: AppKey, name: String) -> Result<u64, AskError> {
        let no_job = || {
            AskError::NoSuchJob(format!(
                "{key} has no job {name:?} (or its manifest is not valid now)"
            ))
        };
        let app = self.apps.get(&key).cloned().ok_or_else(no_job)?;
        let job = app
            .jobs
            .iter()
            .find(|j| j.decl.name == name)
            .ok_or_else(no_job)?;
        let id = (key.clone(), name.clone());
        let flying = self.inflight.get(&id).and_then(|v| v.last()).map(|f| f.run);
        let how = |fire| Start {
            fire,
            trigger: "manual",
            attempt: 0,
            is_fire: false,
        };
        match decide_now(SystemTime::now(), job.decl.concurrency, flying.is_some()) {
            Due::Skip(at) => {
                let run = self
                    .record(&app, job, (at, RunResult::Skipped), false)
                    .await;
                let skipped = run.map_err(AskError::Failed)?.id;
                Err(AskError::Busy {
                    skipped,
                    running: flying.unwrap_or_default(),
                })
            }
            Due::Replace(at) => {
                self.stop_all(&id);
                Ok(self
                    .start(&app, job, how(at))
                    .await
                    .map_err(AskError::Failed)?
                    .id)
            }
            Due::Run(at) | Due::Missed(at) | Due::Wait(Some(at)) => Ok(self
                .start(&app, job, how(at))
                .await
                .map_err(AskError::Failed)?
                .id),
            Due::Wait(None) => Err(AskError::Failed("nothing to run".into())),
        }
    }
}

/// A new record for a run of `job` due at `fire`.
fn new_run(app: &DesiredApp, job: &Job, fire: SystemTime, trigger: &str, attempt: u32) -> JobRun {
    JobRun {
        id: 0,
        app: app.key.to_string(),
        job: job.decl.name.clone(),
        trigger: trigger.into(),
        attempt,
        scheduled_for: secs(fire),
        started: None,
        ended: None,
        exit_code: None,
        result: RunResult::Running,
        container: None,
        spec_hash: app.hash.clone(),
        timeout_secs: job.decl.timeout.as_secs().max(1),
        note: None,
        logs: String::new(),
    }
}

fn fire_of(job: &Job, at: SystemTime) -> LastFire {
    LastFire {
        at: secs(at),
        schedule: job.schedule.expr().to_string(),
        timezone: job.schedule.timezone().to_string(),
    }
}

/// The app of a run's `userid/appname`.
fn key_of(app: &str) -> Option<AppKey> {
    let (u, a) = app.split_once('/')?;
    AppKey::new(u, a).ok()
}

fn history_of(apps: &BTreeMap<AppKey, Arc<DesiredApp>>, app: &str, job: &str) -> History {
    let found = key_of(app).and_then(|k| apps.get(&k).cloned());
    let jobs = found.map(|a| a.jobs.clone()).unwrap_or_default();
    jobs.iter()
        .find(|j| j.decl.name == job)
        .map_or_else(History::default, |j| j.decl.history)
}

/// Starts the scheduler over `exec`'s engine; answers the API's end of its requests.
pub fn spawn(
    exec: Arc<crate::runtime::executor::Executor>,
    (store, metrics): (Arc<crate::store::Store>, Arc<crate::metrics::Metrics>),
    feed: &Feed,
    shutdown: CancellationToken,
) -> crate::runtime::job_asks::JobAsks {
    let (asks, asked) = crate::runtime::job_asks::JobAsks::new();
    let (done, finished) = mpsc::channel(256);
    let runner = crate::runtime::jobs::JobRunner::new(exec);
    let ctx = Ctx {
        runner,
        store,
        metrics,
        done,
    };
    let scheduler = Scheduler::new(ctx, finished);
    tokio::spawn(scheduler.run(feed.subscribe(), asked, shutdown));
    asks
}
