//! A job run's container (docs/guides/jobs.md): started as a fresh one-off container of the
//! app's current spec with the job's command, followed to its end within its timeout (killed
//! past it), its logs read bounded, and removed only once its caller has recorded the end,
//! so a berth killed at any point finds the container again by label and follows it.
//!
//! **Must not know about** when runs are due or where they are recorded: `daemon::jobs`
//! decides and records; this module only does the engine's part.

use std::sync::Arc;
use std::time::Duration;

use crate::model::desired::DesiredApp;
use crate::model::labels;
use crate::model::names::AppKey;
use crate::runtime::engine::{EngineError, FoundRun};
use crate::runtime::executor::{ActionError, Executor};

/// At most this much of a run's output is kept (its last bytes).
pub const LOG_BYTES: usize = 64 * 1024;
/// How long a stopped run has to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How a run's container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Its exit code (none when the engine could not say).
    pub code: Option<i64>,
    /// Whether berth stopped it at its timeout.
    pub timed_out: bool,
    /// Its last [`LOG_BYTES`] of output.
    pub logs: String,
}

/// Starts, follows, stops and removes job run containers.
#[derive(Clone)]
pub struct JobRunner {
    exec: Arc<Executor>,
}

impl JobRunner {
    /// A runner over the executor's engine.
    pub fn new(exec: Arc<Executor>) -> JobRunner {
        JobRunner { exec }
    }

    /// The container name of `key`'s run `run`: `_` cannot occur in an app name, so it never
    /// collides with an app's container.
    pub fn container_name(&self, key: &AppKey, run: u64) -> String {
        format!(
            "{}_job_{run}",
            key.container_name(&self.exec.config().instance)
        )
    }

    /// Creates and starts run `run` of `app`'s `job` with `command`; answers its container id.
    /// A container that cannot start is removed.
    pub async fn start(
        &self,
        app: &DesiredApp,
        (job, command): (&str, &[String]),
        run: u64,
    ) -> Result<String, ActionError> {
        let engine = self.exec.engine();
        if app.spec.build.is_none() {
            engine.ensure_image(&app.spec.image).await?;
        }
        let name = self.container_name(&app.key, run);
        let labels = labels::for_job_run(app, &self.exec.config().instance, job, run);
        let (held, network) = self.exec.join_network(Some(app)).await?;
        engine.ensure_volumes(app).await?;
        let id = engine
            .create_job_run(app, (&name, command, labels), network.as_deref())
            .await?;
        if let Err(e) = engine.start(&id).await {
            let _ = engine.remove(&id).await;
            return Err(e.into());
        }
        drop(held);
        Ok(id)
    }

    /// Waits for the container to exit, at most `left`; past it, stops it and says so. Does
    /// not remove it: call [`JobRunner::remove`] once the end is recorded.
    pub async fn follow(&self, id: &str, left: Duration) -> Result<Ended, EngineError> {
        let engine = self.exec.engine();
        let (code, timed_out) = match tokio::time::timeout(left, engine.exited(id)).await {
            Ok(code) => (code?, false),
            Err(_) => {
                engine.stop(id, STOP_GRACE).await?;
                (engine.exited(id).await?, true)
            }
        };
        let logs = engine.logs_bounded(id, LOG_BYTES).await;
        Ok(Ended {
            code,
            timed_out,
            logs,
        })
    }

    /// Starts a run's container that was made but never started (berth was killed between).
    pub async fn resume(&self, id: &str) -> Result<(), EngineError> {
        self.exec.engine().start(id).await
    }

    /// Stops a run (`replace`): SIGTERM, then SIGKILL after a grace period.
    pub async fn stop(&self, id: &str) -> Result<(), EngineError> {
        self.exec.engine().stop(id, STOP_GRACE).await
    }

    /// Removes a run's container (its end is recorded).
    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        self.exec.engine().remove(id).await
    }

    /// Every job run container of this instance, running or not.
    pub async fn found(&self) -> Result<Vec<FoundRun>, EngineError> {
        self.exec.engine().job_runs().await
    }
}
