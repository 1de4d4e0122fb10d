//! Scheduled jobs (docs/guides/jobs.md): the manifest's `[[jobs]]` tables, checked while they
//! are read so an error points at the field, and the resolved [`Job`] the scheduler runs.
//!
//! Jobs are not part of the app's `ContainerSpec` (so not of its hash): changing a job
//! never recreates the app's container. A run is a one-off container of the spec the app has
//! when the run starts, with the job's command.

use std::collections::BTreeSet;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use crate::model::config::Config;
use crate::model::desired::{DesiredApp, DesiredState, Entry};
use crate::model::schedule::Schedule;

/// At most this many jobs per app.
pub const MAX_JOBS: usize = 16;
/// At most this many retries of a failed run.
pub const MAX_RETRIES: u32 = 10;
/// At most this many kept runs per result kind.
pub const MAX_HISTORY: u32 = 100;
/// `starting_deadline` when none is given: a run may start this late (after a restart).
pub const DEFAULT_STARTING_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// `timeout` when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// The longest `timeout` and `starting_deadline`: a week.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_ARGS: usize = 64;
const MAX_ARG_BYTES: usize = 4096;

/// `[[jobs]]`: at most [`MAX_JOBS`], names unique within the app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Jobs(pub Vec<JobDecl>);

/// One `[[jobs]]` table as written.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobDecl {
    /// The job's name: 1-30 characters of a-z, 0-9 and '-', starting with a letter; unique
    /// within the app.
    #[serde(deserialize_with = "job_name")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]{0,29}$"))]
    pub name: String,
    /// Five cron fields (minute hour day-of-month month day-of-week) or `@hourly`, `@daily`,
    /// `@weekly`, `@monthly`, `@yearly`.
    #[serde(deserialize_with = "schedule")]
    #[schemars(length(min = 1, max = 256))]
    pub schedule: String,
    /// The IANA time zone the schedule is read in, e.g. "Europe/Berlin"; default "UTC",
    /// never the host's.
    #[serde(default, deserialize_with = "timezone")]
    #[schemars(length(min = 1, max = 64))]
    pub timezone: Option<String>,
    /// The command the run's container runs (no shell unless you name one): at most 64
    /// arguments of at most 4096 bytes each.
    #[serde(deserialize_with = "command")]
    #[schemars(length(min = 1, max = 64))]
    pub command: Vec<String>,
    /// What a run that falls due while another runs does: `forbid` (default: skipped and
    /// recorded), `allow` (runs beside it) or `replace` (the old run is stopped).
    #[serde(default)]
    pub concurrency: Concurrency,
    /// How late a run may still start (after berth was down); later, it is recorded as
    /// `missed`. A duration such as "15m" (the default), at most a week.
    #[serde(default = "default_deadline", deserialize_with = "bounded_duration")]
    #[schemars(schema_with = "crate::model::schema::duration", extend("default" = "15m"))]
    pub starting_deadline: Duration,
    /// How long a run may take before it is killed and recorded as `timed_out`: more than 0,
    /// at most a week; default "1h".
    #[serde(default = "default_timeout", deserialize_with = "positive_duration")]
    #[schemars(schema_with = "crate::model::schema::duration", extend("default" = "1h"))]
    pub timeout: Duration,
    /// How many times a failed or timed-out run is tried again at once (0 to 10; default 0).
    #[serde(default, deserialize_with = "retries")]
    #[schemars(range(min = 0, max = 10))]
    pub retries: u32,
    /// How many finished runs are kept: `succeeded` (default 5) and `failed` (default 10;
    /// timed-out, missed and skipped runs count here), each 0 to 100.
    #[serde(default)]
    pub history: History,
}

/// What a run due while another run of the same job is in flight does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// The new run is skipped (recorded as `skipped`).
    #[default]
    Forbid,
    /// The new run starts beside the old one.
    Allow,
    /// The old run is stopped, then the new one starts.
    Replace,
}

impl Concurrency {
    /// As the manifest writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Concurrency::Forbid => "forbid",
            Concurrency::Allow => "allow",
            Concurrency::Replace => "replace",
        }
    }
}

/// How many finished runs of a job are kept, by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// Succeeded runs kept (0 to 100; default 5).
    #[serde(default = "five", deserialize_with = "history_count")]
    #[schemars(range(min = 0, max = 100))]
    pub succeeded: u32,
    /// Failed, timed-out, missed and skipped runs kept (0 to 100; default 10).
    #[serde(default = "ten", deserialize_with = "history_count")]
    #[schemars(range(min = 0, max = 100))]
    pub failed: u32,
}

impl Default for History {
    fn default() -> Self {
        History {
            succeeded: five(),
            failed: ten(),
        }
    }
}

/// A job ready to schedule: its declaration with the schedule parsed in its zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The declaration.
    pub decl: JobDecl,
    /// Its schedule in its zone.
    pub schedule: Schedule,
}

impl Jobs {
    /// Each job with its schedule parsed. Each part was checked alone while reading; a
    /// failure here names the job all the same.
    pub fn resolve(&self) -> Result<Vec<Job>, String> {
        self.0
            .iter()
            .map(|decl| {
                let schedule = Schedule::parse(&decl.schedule, decl.timezone.as_deref())
                    .map_err(|e| format!("[[jobs]] {}: schedule: {e}", decl.name))?;
                Ok(Job {
                    decl: decl.clone(),
                    schedule,
                })
            })
            .collect()
    }
}

impl<'de> Deserialize<'de> for Jobs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let jobs = Vec::<JobDecl>::deserialize(d)?;
        if jobs.len() > MAX_JOBS {
            return Err(serde::de::Error::custom(format!(
                "[[jobs]]: at most {MAX_JOBS} jobs per app ({} given)",
                jobs.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for j in &jobs {
            if !seen.insert(j.name.as_str()) {
                return Err(serde::de::Error::custom(format!(
                    "[[jobs]]: two jobs are named {:?}; a job's name is unique within its app",
                    j.name
                )));
            }
        }
        Ok(Jobs(jobs))
    }
}

impl JsonSchema for Jobs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Jobs".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let job = g.subschema_for::<JobDecl>();
        schemars::json_schema!({
            "description": "At most 16 jobs; names unique within the app.",
            "type": "array",
            "maxItems": MAX_JOBS,
            "items": job,
        })
    }
}

/// The valid apps of `desired` that have jobs (what the scheduler is handed after a pass).
pub fn apps_with_jobs(desired: &DesiredState) -> Vec<DesiredApp> {
    let valid = desired.apps.values().filter_map(|e| match e {
        Entry::Valid(app) if !app.jobs.is_empty() => Some(app.as_ref().clone()),
        _ => None,
    });
    valid.collect()
}

/// Jobs run on the docker runtime only, for now.
pub fn check_runtime(jobs: &Jobs, config: &Config) -> Result<(), String> {
    if config.runtime.is_swarm() && !jobs.0.is_empty() {
        return Err("[[jobs]] run on the docker runtime only: with runtime = \"swarm\" berth does not schedule jobs yet; remove [[jobs]]".into());
    }
    Ok(())
}

fn de_err<E: serde::de::Error>(field: &str, why: impl std::fmt::Display) -> E {
    E::custom(format!("[[jobs]] {field}: {why}"))
}

fn job_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    crate::model::names::validate_appname(&s)
        .map_err(|e| de_err::<D::Error>("name", format!("{s:?}: {e}")))?;
    Ok(s)
}

fn schedule<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.len() > 256 {
        return Err(de_err("schedule", "at most 256 characters"));
    }
    Schedule::parse(&s, None).map_err(|e| de_err::<D::Error>("schedule", e))?;
    Ok(s)
}

fn timezone<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if s.len() > 64 {
        return Err(de_err("timezone", "at most 64 characters"));
    }
    Schedule::parse("* * * * *", Some(&s)).map_err(|e| de_err::<D::Error>("timezone", e))?;
    Ok(Some(s))
}

fn command<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let args = Vec::<String>::deserialize(d)?;
    if args.is_empty() || args.len() > MAX_ARGS {
        return Err(de_err("command", format!("1 to {MAX_ARGS} arguments")));
    }
    if args[0].trim().is_empty() {
        return Err(de_err(
            "command",
            "the first argument (the program) is empty",
        ));
    }
    if args
        .iter()
        .any(|a| a.len() > MAX_ARG_BYTES || a.contains('\0'))
    {
        return Err(de_err(
            "command",
            format!("each argument at most {MAX_ARG_BYTES} bytes, with no NUL character"),
        ));
    }
    Ok(args)
}

fn duration_of<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let t = humantime::parse_duration(&s)
        .map_err(|e| de_err::<D::Error>(field, format!("{s:?}: {e} (write e.g. \"15m\")")))?;
    if t > MAX_DURATION {
        return Err(de_err(field, format!("{s:?} is over a week")));
    }
    Ok(t)
}

fn bounded_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_of(d, "starting_deadline")
}

fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let t = duration_of(d, "timeout")?;
    if t.is_zero() {
        return Err(de_err("timeout", "must be more than 0"));
    }
    Ok(t)
}

fn retries<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(d)?;
    match u32::try_from(n) {
        Ok(n) if n <= MAX_RETRIES => Ok(n),
        _ => Err(de_err("retries", format!("{n} is not 0 to {MAX_RETRIES}"))),
    }
}

fn history_count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(d)?;
    match u32::try_from(n) {
        Ok(n) if n <= MAX_HISTORY => Ok(n),
        _ => Err(de_err("history", format!("{n} is not 0 to {MAX_HISTORY}"))),
    }
}

fn default_deadline() -> Duration {
    DEFAULT_STARTING_DEADLINE
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn five() -> u32 {
    5
}

fn ten() -> u32 {
    10
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
