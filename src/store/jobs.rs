//! Job runs (docs/guides/jobs.md): every run's record (when it was due, started and ended,
//! its exit code, result and last output) and, per job, the fire time last handled with the
//! schedule it was computed under, so a restart neither runs a fire twice nor forgets one.
//!
//! Run keys are `<userid>/<appname>/<id, 20 digits>`: one app's runs are one ordered range,
//! and ids count up over the whole database (`meta` `job_run_next`). Finished runs are
//! pruned per job to its `history` limits; a running one is never pruned.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{db_err, from_json, to_json, Store, StoreError, META};
use crate::model::jobs::History;
use crate::model::names::AppKey;
use crate::reconcile::jobs::RunResult;

const JOB_RUNS: TableDefinition<&str, &str> = TableDefinition::new("job_runs");
const JOB_FIRES: TableDefinition<&str, &str> = TableDefinition::new("job_fires");

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    /// Counts up over the database; 0 until recorded.
    pub id: u64,
    /// `userid/appname`.
    pub app: String,
    /// The job's name.
    pub job: String,
    /// `schedule`, `manual` (`berth jobs run`) or `retry`.
    pub trigger: String,
    /// 0 for the first try, then 1, 2, ... for retries.
    pub attempt: u32,
    /// The fire time it was due at (Unix seconds; a manual run's is when it was asked for).
    pub scheduled_for: u64,
    /// When its container started (Unix seconds).
    pub started: Option<u64>,
    /// When it ended.
    pub ended: Option<u64>,
    /// The container's exit code.
    pub exit_code: Option<i64>,
    /// Where it is.
    pub result: RunResult,
    /// Its container's id while it may exist.
    pub container: Option<String>,
    /// The spec hash of the app it ran as.
    pub spec_hash: String,
    /// Its time limit (seconds), as the job said when it started.
    pub timeout_secs: u64,
    /// Why it failed to start, was stopped, or was skipped.
    pub note: Option<String>,
    /// Its last output (at most 64 KiB).
    pub logs: String,
}

/// The fire time last handled for one job, and the schedule it was computed under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFire {
    /// Unix seconds.
    pub at: u64,
    /// The schedule expression.
    pub schedule: String,
    /// Its zone.
    pub timezone: String,
}

fn app_range(app: &str) -> (String, String) {
    (format!("{app}/"), format!("{app}0"))
}

fn fire_key(app: &AppKey, job: &str) -> String {
    format!("{app}/{job}")
}

pub(super) fn init(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(JOB_RUNS).map_err(db_err)?;
    txn.open_table(JOB_FIRES).map_err(db_err)?;
    Ok(())
}

impl Store {
    /// Records a new run (its id assigned here) and, with `fire`, the job's last handled fire
    /// time in the same transaction; prunes the job's finished runs to `history`.
    pub fn add_job_run(
        &self,
        mut run: JobRun,
        fire: Option<LastFire>,
        history: History,
    ) -> Result<JobRun, StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let next = match meta.get("job_run_next").map_err(db_err)? {
                Some(v) => v.value().parse::<u64>().unwrap_or(1),
                None => 1,
            };
            meta.insert("job_run_next", (next + 1).to_string().as_str())
                .map_err(db_err)?;
            run.id = next;
            write_run(&txn, &run, history)?;
            if let Some(fire) = fire {
                let key = format!("{}/{}", run.app, run.job);
                let mut fires = txn.open_table(JOB_FIRES).map_err(db_err)?;
                fires
                    .insert(key.as_str(), to_json(&fire).as_str())
                    .map_err(db_err)?;
            }
        }
        self.db.commit(txn)?;
        Ok(run)
    }

    /// Writes a run's new state over its record; prunes its job's finished runs to `history`.
    pub fn update_job_run(&self, run: &JobRun, history: History) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        write_run(&txn, run, history)?;
        self.db.commit(txn)
    }

    /// Records the fire time last handled for `app`'s `job` (a baseline, or one skipped
    /// without a record).
    pub fn set_job_fire(&self, app: &AppKey, job: &str, fire: &LastFire) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOB_FIRES)
            .map_err(db_err)?
            .insert(fire_key(app, job).as_str(), to_json(fire).as_str())
            .map_err(db_err)?;
        self.db.commit(txn)
    }

    /// The fire time last handled for `app`'s `job`.
    pub fn job_fire(&self, app: &AppKey, job: &str) -> Result<Option<LastFire>, StoreError> {
        self.read_one(JOB_FIRES, &fire_key(app, job))
    }

    /// `app`'s kept runs, oldest first.
    pub fn job_runs(&self, app: &AppKey) -> Result<Vec<JobRun>, StoreError> {
        let (lo, hi) = app_range(&app.to_string());
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOB_RUNS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.range(lo.as_str()..hi.as_str()).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            out.push(from_json("job_runs", k.value(), v.value())?);
        }
        Ok(out)
    }

    /// One of `app`'s runs.
    pub fn job_run(&self, app: &AppKey, id: u64) -> Result<Option<JobRun>, StoreError> {
        self.read_one(JOB_RUNS, &format!("{app}/{id:020}"))
    }

    /// Every run recorded as running, of every app (to follow after a restart).
    pub fn running_job_runs(&self) -> Result<Vec<JobRun>, StoreError> {
        let all: Vec<(String, JobRun)> = self.read_all(JOB_RUNS)?;
        let running = all.into_iter().map(|(_, r)| r);
        Ok(running.filter(|r| r.result == RunResult::Running).collect())
    }
}

/// Writes `run` and drops its job's oldest finished runs past `history`.
fn write_run(txn: &WriteTransaction, run: &JobRun, history: History) -> Result<(), StoreError> {
    let mut table = txn.open_table(JOB_RUNS).map_err(db_err)?;
    let key = format!("{}/{:020}", run.app, run.id);
    table
        .insert(key.as_str(), to_json(run).as_str())
        .map_err(db_err)?;
    let (lo, hi) = app_range(&run.app);
    let mut same_job = Vec::new();
    for row in table.range(lo.as_str()..hi.as_str()).map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let r: JobRun = from_json("job_runs", k.value(), v.value())?;
        if r.job == run.job && r.result != RunResult::Running {
            same_job.push((k.value().to_string(), r.result == RunResult::Succeeded));
        }
    }
    let (ok, bad): (Vec<_>, Vec<_>) = same_job.into_iter().partition(|(_, ok)| *ok);
    let over = |kept: &Vec<(String, bool)>, keep: u32| {
        kept.iter()
            .take(kept.len().saturating_sub(keep as usize))
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
    };
    for old in over(&ok, history.succeeded)
        .into_iter()
        .chain(over(&bad, history.failed))
    {
        table.remove(old.as_str()).map_err(db_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(job: &str, result: RunResult) -> JobRun {
        JobRun {
            id: 0,
            app: "alice/web".into(),
            job: job.into(),
            trigger: "schedule".into(),
            attempt: 0,
            scheduled_for: 60,
            started: None,
            ended: None,
            exit_code: None,
            result,
            container: None,
            spec_hash: "h".into(),
            timeout_secs: 60,
            note: None,
            logs: String::new(),
        }
    }

    #[test]
    fn runs_count_up_and_history_is_pruned_per_job_and_result() {
        let (_dir, s) = crate::store::temp_store();
        let web = AppKey::new("alice", "web").unwrap();
        let history = History {
            succeeded: 2,
            failed: 1,
        };
        let live = s
            .add_job_run(run("a", RunResult::Running), None, history)
            .unwrap();
        assert_eq!(live.id, 1);
        for result in [RunResult::Succeeded; 3]
            .into_iter()
            .chain([RunResult::Failed, RunResult::Missed])
        {
            s.add_job_run(run("a", result), None, history).unwrap();
        }
        s.add_job_run(run("b", RunResult::Failed), None, history)
            .unwrap();
        let kept: Vec<(u64, &str, RunResult)> = s
            .job_runs(&web)
            .unwrap()
            .iter()
            .map(|r| (r.id, if r.job == "a" { "a" } else { "b" }, r.result))
            .collect();
        assert_eq!(
            kept,
            [
                (1, "a", RunResult::Running),
                (3, "a", RunResult::Succeeded),
                (4, "a", RunResult::Succeeded),
                (6, "a", RunResult::Missed),
                (7, "b", RunResult::Failed),
            ]
        );
        assert_eq!(s.running_job_runs().unwrap().len(), 1);
        let mut done = live;
        done.result = RunResult::Succeeded;
        s.update_job_run(&done, history).unwrap();
        let ids: Vec<u64> = s.job_runs(&web).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(
            ids,
            [3, 4, 6, 7],
            "run 1, finished, is the oldest success: pruned"
        );
        assert!(s.running_job_runs().unwrap().is_empty());
        assert_eq!(s.job_run(&web, 4).unwrap().unwrap().id, 4);
        assert!(s.job_run(&web, 1).unwrap().is_none());
    }

    #[test]
    fn the_last_fire_is_kept_with_its_run() {
        let (_dir, s) = crate::store::temp_store();
        let web = AppKey::new("alice", "web").unwrap();
        assert_eq!(s.job_fire(&web, "a").unwrap(), None);
        let fire = LastFire {
            at: 120,
            schedule: "* * * * *".into(),
            timezone: "UTC".into(),
        };
        s.add_job_run(
            run("a", RunResult::Missed),
            Some(fire.clone()),
            History::default(),
        )
        .unwrap();
        assert_eq!(s.job_fire(&web, "a").unwrap(), Some(fire.clone()));
        let later = LastFire { at: 180, ..fire };
        s.set_job_fire(&web, "a", &later).unwrap();
        assert_eq!(s.job_fire(&web, "a").unwrap(), Some(later));
    }
}
