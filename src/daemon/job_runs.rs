//! One job run driven to its end under `berth serve` (docs/guides/jobs.md): its container
//! started, followed within its timeout (stopped when a `replace` run takes over), its end
//! recorded and only then its container removed, so a berth killed at any point finds the
//! run again. Also the start-up half: runs the database says are running are followed to
//! their end by their containers' labels, never started again.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error_chain::chain;
use crate::metrics::Metrics;
use crate::model::desired::DesiredApp;
use crate::model::jobs::{History, JobDecl};
use crate::reconcile::jobs::RunResult;
use crate::runtime::engine::FoundRun;
use crate::runtime::jobs::{Ended, JobRunner};
use crate::store::{JobRun, Store};

/// One pass's word to the scheduler (`jobs::Feed`).
#[derive(Debug, Default)]
pub struct Published {
    /// The valid apps with jobs.
    pub apps: Vec<crate::model::desired::DesiredApp>,
    /// Every app with a manifest, valid or not: a run of an app not here (and not of a user
    /// whose directory could not be read) belongs to a deleted app and is stopped.
    pub present: std::collections::BTreeSet<crate::model::names::AppKey>,
    pub frozen_users: std::collections::BTreeSet<String>,
}

impl Published {
    /// What `seen` (one pass) tells the scheduler; its apps are taken from it.
    pub fn of(seen: &mut crate::model::desired::PassSeen) -> Published {
        Published {
            apps: std::mem::take(&mut seen.with_jobs),
            present: seen.present.clone(),
            frozen_users: seen.frozen_users.clone(),
        }
    }
}

/// How long to wait before asking the engine again about a run it could not answer for.
const ENGINE_RETRY: Duration = Duration::from_secs(2);

/// What a run task shares.
#[derive(Clone)]
pub struct Ctx {
    /// The engine's part.
    pub runner: JobRunner,
    /// Where runs are recorded.
    pub store: Arc<Store>,
    /// `berth_job_runs_total`, `berth_job_last_success_timestamp_seconds`.
    pub metrics: Arc<Metrics>,
    /// Where a finished run is reported to the scheduler.
    pub done: mpsc::Sender<JobRun>,
}

/// Unix seconds of `t`.
pub fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Runs a database call on a blocking thread (a commit fsyncs).
pub async fn db<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> T + Send + 'static,
) -> T {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .expect("a database call panicked")
}

impl Ctx {
    /// Starts recorded run `run` of `app`'s `job` and follows it to its end.
    pub async fn drive(
        self,
        app: Arc<DesiredApp>,
        job: JobDecl,
        mut run: JobRun,
        stop: CancellationToken,
    ) {
        let started = self
            .runner
            .start(&app, (&job.name, &job.command), run.id)
            .await;
        match started {
            Err(e) => {
                warn!(app = %app.key, job = %job.name, run = run.id, cause = %chain(&e), "job run could not start");
                run.note = Some(format!("could not start: {}", chain(&e)));
                self.finish(run, RunResult::Failed, job.history).await;
            }
            Ok(id) => {
                info!(app = %app.key, job = %job.name, run = run.id, "job run started");
                run.container = Some(id);
                run.started = Some(secs(SystemTime::now()));
                self.record(&run, job.history).await;
                self.follow(run, job.history, stop).await;
            }
        }
    }

    /// Follows a started run to its end, records it and removes its container.
    pub async fn follow(self, mut run: JobRun, history: History, stop: CancellationToken) {
        let Some(id) = run.container.clone() else {
            return;
        };
        let mut replaced = false;
        let ended: Ended = loop {
            let left = left_of(&run);
            let followed = tokio::select! {
                e = self.runner.follow(&id, left) => e,
                _ = stop.cancelled(), if !replaced => {
                    replaced = true;
                    let _ = self.runner.stop(&id).await;
                    continue;
                }
            };
            match followed {
                Ok(e) => break e,
                // Removed outside berth: the run is over, or `forbid` would skip every later
                // fire while it waited for a container that will never exit.
                Err(e) if e.is_not_found() => {
                    run.note = Some("its container was removed outside berth".into());
                    break Ended {
                        code: None,
                        timed_out: false,
                        logs: String::new(),
                    };
                }
                Err(e) => {
                    warn!(run = run.id, cause = %chain(&e), "cannot follow a job run; asking again");
                    tokio::time::sleep(ENGINE_RETRY).await;
                }
            }
        };
        let result = match (&ended, replaced) {
            (_, true) => RunResult::Failed,
            (
                Ended {
                    timed_out: true, ..
                },
                _,
            ) => RunResult::TimedOut,
            (Ended { code: Some(0), .. }, _) => RunResult::Succeeded,
            _ => RunResult::Failed,
        };
        if replaced {
            run.note = Some(
                "stopped by berth: a newer run replaced it (concurrency = replace) or its app was deleted"
                    .into(),
            );
        } else if ended.timed_out {
            run.note = Some(format!("killed at its timeout ({} s)", run.timeout_secs));
        }
        run.exit_code = ended.code;
        run.logs = ended.logs;
        self.finish(run, result, history).await;
        if let Err(e) = self.runner.remove(&id).await {
            warn!(container = %id, cause = %chain(&e), "cannot remove a finished job run's container");
        }
    }

    /// Records `run`'s end with `result`, counts it and tells the scheduler.
    pub async fn finish(&self, mut run: JobRun, result: RunResult, history: History) {
        run.result = result;
        run.ended = Some(secs(SystemTime::now()));
        self.record(&run, history).await;
        self.metrics.job_run(result.as_str());
        if result == RunResult::Succeeded {
            self.metrics
                .job_succeeded(&run.app, &run.job, run.ended.unwrap_or_default());
        }
        info!(app = %run.app, job = %run.job, run = run.id, result = result.as_str(), exit_code = ?run.exit_code, "job run ended");
        let _ = self.done.send(run).await;
    }

    async fn record(&self, run: &JobRun, history: History) {
        let copy = run.clone();
        if let Err(e) = db(&self.store, move |s| s.update_job_run(&copy, history)).await {
            warn!(run = run.id, cause = %chain(&e), "cannot record a job run");
        }
    }

    /// After a start: each run recorded as running is followed by its container (found by
    /// label), or recorded as failed when its container is gone; a finished run's container
    /// left behind is removed. Answers the runs now followed.
    pub async fn recover(
        &self,
        (running, found): (Vec<JobRun>, Vec<FoundRun>),
        history: impl Fn(&JobRun) -> History,
    ) -> Vec<(JobRun, CancellationToken)> {
        let mut followed = Vec::new();
        for mut run in running {
            let Some(c) = found.iter().find(|f| f.run == run.id) else {
                run.note = Some("its container was gone when berth started again".into());
                self.finish(run.clone(), RunResult::Failed, history(&run))
                    .await;
                continue;
            };
            info!(app = %run.app, job = %run.job, run = run.id, "following a job run an earlier berth started");
            if c.created {
                // Made, never started: this is still the run's one start.
                if let Err(e) = self.runner.resume(&c.id).await {
                    run.note = Some(format!("could not start: {}", chain(&e)));
                    self.finish(run.clone(), RunResult::Failed, history(&run))
                        .await;
                    continue;
                }
                run.started = Some(secs(SystemTime::now()));
            }
            run.container = Some(c.id.clone());
            run.started.get_or_insert(secs(SystemTime::now()));
            let stop = CancellationToken::new();
            let task = self
                .clone()
                .follow(run.clone(), history(&run), stop.clone());
            tokio::spawn(task);
            followed.push((run, stop));
        }
        for c in found.iter().filter(|c| !c.running) {
            if !followed.iter().any(|(r, _)| r.id == c.run) {
                let _ = self.runner.remove(&c.id).await;
            }
        }
        followed
    }
}

/// How long `run` may still take: its timeout from its start.
fn left_of(run: &JobRun) -> Duration {
    let started = run.started.unwrap_or_else(|| secs(SystemTime::now()));
    let until = started + run.timeout_secs;
    Duration::from_secs(until.saturating_sub(secs(SystemTime::now())))
}
