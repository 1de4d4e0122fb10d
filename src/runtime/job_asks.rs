//! The API's requests to the job scheduler (docs/guides/jobs.md): a run now, or the jobs of
//! an app with their next run. The API holds no engine, so it asks; the scheduler
//! (`daemon::jobs`) answers, under the same concurrency rule as a scheduled run.

use crate::model::names::AppKey;

/// What the API asks of the job scheduler (it holds no engine: a run is started by the
/// scheduler, under the same concurrency rule as a scheduled one).
pub enum Ask {
    /// Start `key`'s `job` now; answers the run's id.
    Run {
        /// The app.
        key: AppKey,
        /// The job's name.
        job: String,
        /// The answer.
        reply: tokio::sync::oneshot::Sender<Result<u64, AskError>>,
    },
    /// `key`'s jobs as the scheduler holds them.
    Describe {
        /// The app.
        key: AppKey,
        /// The answer (empty: no jobs, or the app is not valid now).
        reply: tokio::sync::oneshot::Sender<Vec<JobView>>,
    },
}

/// One job as the scheduler holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobView {
    /// Its name.
    pub name: String,
    /// Its schedule expression.
    pub schedule: String,
    /// Its zone.
    pub timezone: String,
    /// `forbid`, `allow` or `replace`.
    pub concurrency: &'static str,
    /// When it runs next (Unix seconds); none if its schedule never fires again.
    pub next_run: Option<u64>,
    /// The ids of its runs in flight.
    pub running: Vec<u64>,
}

/// Why a run asked for now did not start.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The app has no valid manifest with that job.
    #[error("{0}")]
    NoSuchJob(String),
    /// A run is in flight and the job's concurrency is `forbid`: recorded as skipped.
    #[error("run {skipped} skipped: run {running} of this job is in flight and its concurrency is forbid")]
    Busy {
        /// The run recorded as skipped.
        skipped: u64,
        /// The run in flight.
        running: u64,
    },
    /// The run could not be recorded or started.
    #[error("{0}")]
    Failed(String),
    /// No scheduler runs (no `berth serve`, or it is stopping).
    #[error("the job scheduler is not running")]
    Unavailable,
}

/// The API's end of the scheduler's request channel.
#[derive(Clone)]
pub struct JobAsks(tokio::sync::mpsc::Sender<Ask>);

impl JobAsks {
    /// A channel: the API holds the `JobAsks`, the scheduler the receiver.
    pub fn new() -> (JobAsks, tokio::sync::mpsc::Receiver<Ask>) {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        (JobAsks(tx), rx)
    }

    /// Starts `key`'s `job` now; answers the run's id.
    pub async fn run_now(&self, key: AppKey, job: String) -> Result<u64, AskError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let ask = Ask::Run { key, job, reply };
        self.0.send(ask).await.map_err(|_| AskError::Unavailable)?;
        answer.await.map_err(|_| AskError::Unavailable)?
    }

    /// `key`'s jobs with their next run.
    pub async fn describe(&self, key: AppKey) -> Result<Vec<JobView>, AskError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let ask = Ask::Describe { key, reply };
        self.0.send(ask).await.map_err(|_| AskError::Unavailable)?;
        answer.await.map_err(|_| AskError::Unavailable)
    }
}
