//! Prometheus metrics (`GET /metrics`): apps by phase, reconcile passes (and what caused them)
//! with their duration, actions by kind and result, API requests by route and status, git
//! syncs, requests to the Docker engine by operation. Counters are bumped where things happen;
//! the phase gauge is filled from the status board at scrape time. Every layer may count here; it knows only model and reconcile types.

pub mod exposition;

mod backups;
use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::model::names::AppKey;
use crate::reconcile::status::{AppStatus, Phase};
use crate::reconcile::trigger::{Trigger, Triggers};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    strategy: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StrategyLabels {
    strategy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

/// Every metric berth exports.
pub struct Metrics {
    /// Owns the encoders.
    registry: Registry,
    /// berth_apps{phase}.
    apps: Family<PhaseLabels, Gauge>,
    /// berth_reconcile_passes_total.
    passes: Counter,
    /// berth_reconcile_pass_triggers_total{trigger}.
    pass_triggers: Family<TriggerLabels, Counter>,
    /// berth_reconcile_pass_duration_seconds.
    pass_seconds: Histogram,
    /// berth_actions_total{kind,result}.
    actions: Family<ActionLabels, Counter>,
    /// berth_api_requests_total{method,route,status}.
    requests: Family<RequestLabels, Counter>,
    /// berth_git_syncs_total{result}.
    git_syncs: Family<ResultLabels, Counter>,
    /// berth_proxy_writes_total: writes to Caddy's admin API.
    proxy_writes: Counter,
    /// berth_proxy_sync_errors_total: passes whose Caddy sync failed.
    proxy_errors: Counter,
    /// berth_isolation_failures_total.
    isolation_failures: Counter,
    /// berth_git_diverged: 1 while local and remote have diverged.
    git_diverged: Gauge,
    /// berth_engine_up: 1 when the last pass could list containers, 0 when Docker failed it.
    engine_up: Gauge,
    /// berth_engine_calls_total{op}: every request made to the Docker engine.
    engine_calls: Family<OpLabels, Counter>,
    /// berth_engine_timeouts_total{op}: container writes given up past `engine_timeout`.
    engine_timeouts: Family<OpLabels, Counter>,
    /// berth_reconcile_failures_total: passes that could not run (engine or state unreadable).
    pass_failures: Counter,
    /// berth_watcher_armed: 1 while the file watcher watches the directories the config names.
    watcher_armed: Gauge,
    /// berth_rollouts_total{strategy,result}.
    rollouts: Family<RolloutLabels, Counter>,
    /// berth_rollout_duration_seconds{strategy}: hook to settled (or rolled back).
    rollout_seconds: Family<StrategyLabels, Histogram>,
    connections: Family<OutcomeLabels, Counter>,
    /// berth_job_runs_total{result} and berth_job_last_success_timestamp_seconds{app,job}.
    jobs: (Family<ResultLabels, Counter>, Family<JobLabels, Gauge>),
    /// berth_backup_runs_total{result}, berth_backup_last_success_timestamp_seconds{app}.
    backups: backups::BackupMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    app: String,
    job: String,
}

/// berth_job_runs_total{result} and berth_job_last_success_timestamp_seconds{app,job}.
fn job_metrics(r: &mut Registry) -> (Family<ResultLabels, Counter>, Family<JobLabels, Gauge>) {
    let help = "Job runs by result (succeeded, failed, timed_out, missed, skipped)";
    let runs = reg(r, "job_runs", help, Family::default());
    let help =
        "When each job last succeeded (Unix seconds), so \"no success in 26 h\" is one alert rule";
    (
        runs,
        reg(
            r,
            "job_last_success_timestamp_seconds",
            help,
            Family::default(),
        ),
    )
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

/// berth_rollouts_total{strategy,result} and berth_rollout_duration_seconds{strategy}.
fn rollout_metrics(
    r: &mut Registry,
) -> (
    Family<RolloutLabels, Counter>,
    Family<StrategyLabels, Histogram>,
) {
    let help = "Replacements of a container by a new spec, by strategy and result (succeeded, rolled_back, failed)";
    let rollouts = reg(r, "rollouts", help, Family::default());
    // 50 ms .. ~14 min.
    let buckets: fn() -> Histogram = || Histogram::new(exponential_buckets(0.05, 2.0, 15));
    let seconds = Family::new_with_constructor(buckets);
    let help = "Rollout time from its start to the new container settled or rolled back";
    (rollouts, reg(r, "rollout_duration_seconds", help, seconds))
}

/// Registers `metric` under `name` and keeps a handle to it.
fn connection_metrics(r: &mut Registry) -> Family<OutcomeLabels, Counter> {
    reg(r, "api_connections", CONNECTIONS_HELP, Family::default())
}

/// A counter registered as `name`.
fn counter(r: &mut Registry, name: &str, help: &str) -> Counter {
    reg(r, name, help, Counter::default())
}

fn reg<M: prometheus_client::registry::Metric + Clone>(
    r: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    r.register(name, help, metric.clone());
    metric
}

const TRIGGERS_HELP: &str =
    "Reconcile passes by what caused them (a pass with several causes counts under each)";
const ENGINE_UP_HELP: &str =
    "1 when the last reconcile pass could list containers, 0 when the Docker engine failed it";
const FAILURES_HELP: &str =
    "Reconcile passes that could not run (the engine or the state directory could not be read)";
const WATCHER_HELP: &str =
    "1 while the file watcher watches the state and templates directories berth.toml names";
const GIT_SYNCS_HELP: &str = "Git syncs, by result";
const ENGINE_CALLS_HELP: &str =
    "Requests berth made to the Docker engine, by operation (list, inspect, create, events, ...)";
const TIMEOUTS_HELP: &str = "Container writes (create, start, stop, remove) given up because the engine did not answer within engine_timeout";
const CONNECTIONS_HELP: &str = "Connections to the API (its TCP listener and unix socket) by outcome: full, reserve (past max_connections: the probes only), refused_per_address, refused_full, write_timeout (a response the client did not read)";
const ISOLATION_HELP: &str =
    "Passes that could not bring the iptables rules between users' networks in line";
const PROXY_ERRORS_HELP: &str = "Passes whose Caddy sync failed (Caddy unreachable or refusing)";

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("berth");
        // 1 ms .. ~16 s.
        let buckets = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let git_help = "1 while the state clone and its remote have diverged";
        let (rollouts, rollout_seconds) = rollout_metrics(&mut r);
        Metrics {
            rollouts,
            rollout_seconds,
            connections: connection_metrics(&mut r),
            jobs: job_metrics(&mut r),
            backups: backups::BackupMetrics::register(&mut r),
            git_syncs: reg(&mut r, "git_syncs", GIT_SYNCS_HELP, Family::default()),
            git_diverged: reg(&mut r, "git_diverged", git_help, Gauge::default()),
            engine_up: reg(&mut r, "engine_up", ENGINE_UP_HELP, Gauge::default()),
            engine_calls: reg(&mut r, "engine_calls", ENGINE_CALLS_HELP, Family::default()),
            engine_timeouts: reg(&mut r, "engine_timeouts", TIMEOUTS_HELP, Family::default()),
            watcher_armed: reg(&mut r, "watcher_armed", WATCHER_HELP, Gauge::default()),
            pass_failures: counter(&mut r, "reconcile_failures", FAILURES_HELP),
            apps: reg(&mut r, "apps", "Apps by phase", Family::default()),
            passes: reg(&mut r, "reconcile_passes", "Passes run", Counter::default()),
            pass_triggers: reg(
                &mut r,
                "reconcile_pass_triggers",
                TRIGGERS_HELP,
                Family::default(),
            ),
            pass_seconds: reg(
                &mut r,
                "reconcile_pass_duration_seconds",
                "Pass time",
                buckets,
            ),
            actions: reg(
                &mut r,
                "actions",
                "Actions, by kind and result",
                Family::default(),
            ),
            requests: reg(&mut r, "api_requests", "API requests", Family::default()),
            proxy_writes: reg(
                &mut r,
                "proxy_writes",
                "Writes to Caddy",
                Counter::default(),
            ),
            isolation_failures: counter(&mut r, "isolation_failures", ISOLATION_HELP),
            proxy_errors: reg(
                &mut r,
                "proxy_sync_errors",
                PROXY_ERRORS_HELP,
                Counter::default(),
            ),
            registry: r,
        }
    }
}

impl Metrics {
    /// One app backup ran: `success_at` is the Unix time it saved a snapshot, none when it
    /// failed.
    pub fn backup(&self, app: &str, success_at: Option<u64>) {
        self.backups.run(app, success_at);
    }

    /// An app's last success as the database has it (at start), so the gauge survives a
    /// restart.
    pub fn backup_seen(&self, app: &str, at: u64) {
        self.backups.seen(app, at);
    }

    /// One pass ran, because of `why`.
    pub fn pass(&self, why: Triggers, took: Duration) {
        self.passes.inc();
        for t in Trigger::ALL.into_iter().filter(|t| why.contains(*t)) {
            let labels = TriggerLabels {
                trigger: t.label().into(),
            };
            self.pass_triggers.get_or_create(&labels).inc();
        }
        self.pass_seconds.observe(took.as_secs_f64());
    }

    /// A pass could (or could not) ask the engine; `None` when it failed before asking.
    pub fn pass_outcome(&self, engine_answered: Option<bool>) {
        if engine_answered != Some(true) {
            self.pass_failures.inc();
        }
        if let Some(up) = engine_answered {
            self.engine_up.set(i64::from(up));
        }
    }

    /// A job run ended (or was skipped or missed) with `result`.
    pub fn job_run(&self, result: &str) {
        let labels = ResultLabels {
            result: result.into(),
        };
        self.jobs.0.get_or_create(&labels).inc();
    }

    /// `app`'s `job` succeeded at `at` (Unix seconds).
    pub fn job_succeeded(&self, app: &str, job: &str, at: u64) {
        let labels = JobLabels {
            app: app.into(),
            job: job.into(),
        };
        self.jobs.1.get_or_create(&labels).set(at as i64);
    }

    /// One request to the Docker engine, of operation `op`.
    pub fn engine_call(&self, op: &str) {
        let labels = OpLabels { op: op.into() };
        self.engine_calls.get_or_create(&labels).inc();
    }

    /// One container write of operation `op` given up: the engine did not answer in time.
    pub fn engine_timeout(&self, op: &str) {
        let labels = OpLabels { op: op.into() };
        self.engine_timeouts.get_or_create(&labels).inc();
    }

    /// Whether the watcher follows the directories the config names (set by the watcher).
    pub fn watcher(&self, armed: bool) {
        self.watcher_armed.set(i64::from(armed));
    }

    /// See [`watcher`](Self::watcher).
    pub fn watcher_is_armed(&self) -> bool {
        self.watcher_armed.get() == 1
    }

    /// Whether the last pass that asked the engine got an answer.
    pub fn engine_is_up(&self) -> bool {
        self.engine_up.get() == 1
    }

    /// One Caddy sync: how many writes it made, or that it failed.
    pub fn proxy_sync(&self, writes: Option<u64>) {
        match writes {
            Some(n) => {
                self.proxy_writes.inc_by(n);
            }
            None => {
                self.proxy_errors.inc();
            }
        }
    }

    /// One pass's check of the isolation rules between users' networks: in line or not.
    pub fn isolation(&self, in_line: bool) {
        if !in_line {
            self.isolation_failures.inc();
        }
    }

    /// One rollout finished.
    pub fn rollout(&self, strategy: &str, result: &str, took: Duration) {
        self.rollouts
            .get_or_create(&RolloutLabels {
                strategy: strategy.into(),
                result: result.into(),
            })
            .inc();
        self.rollout_seconds
            .get_or_create(&StrategyLabels {
                strategy: strategy.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// One action finished.
    pub fn action(&self, kind: &str, ok: bool) {
        self.actions
            .get_or_create(&ActionLabels {
                kind: kind.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }

    /// One API request was answered. `route` is the route pattern, never the raw path, so
    /// hostile URLs cannot blow up the label set.
    pub fn request(&self, method: &str, route: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.into(),
                route: route.into(),
                status: status.to_string(),
            })
            .inc();
    }

    /// One connection to the API: how it was admitted, refused or cut.
    pub fn connection(&self, outcome: &'static str) {
        let labels = OutcomeLabels {
            outcome: outcome.into(),
        };
        self.connections.get_or_create(&labels).inc();
    }

    /// One git sync ended with `result`.
    pub fn git_sync(&self, result: &str, diverged: bool) {
        self.git_syncs
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        self.git_diverged.set(i64::from(diverged));
    }

    /// The text exposition format, with the phase gauge taken from `board`.
    pub fn render(&self, board: &BTreeMap<AppKey, AppStatus>) -> String {
        for phase in Phase::ALL {
            let n = board.values().filter(|s| s.phase == phase).count();
            self.apps
                .get_or_create(&PhaseLabels {
                    phase: phase.to_string(),
                })
                .set(n as i64);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn renders_every_family() {
        let m = Metrics::default();
        let mut why = Triggers::of(Trigger::File);
        why.add(Trigger::DockerEvent);
        m.pass(why, Duration::from_millis(3));
        m.action("create", true);
        m.action("create", false);
        m.request("GET", "/apps", 200);
        m.engine_call("list");
        let st = |phase| AppStatus {
            phase,
            refused_hash: None,
            container: "running".into(),
            last_error: None,
            updated: SystemTime::now(),
        };
        let board = BTreeMap::from([
            (AppKey::new("a", "x").unwrap(), st(Phase::Running)),
            (AppKey::new("a", "y").unwrap(), st(Phase::Running)),
            (AppKey::new("a", "z").unwrap(), st(Phase::Frozen)),
        ]);
        let text = m.render(&board);
        for line in [
            "berth_apps{phase=\"running\"} 2",
            "berth_reconcile_pass_triggers_total{trigger=\"file\"} 1",
            "berth_reconcile_pass_triggers_total{trigger=\"docker_event\"} 1",
            "berth_apps{phase=\"frozen\"} 1",
            "berth_apps{phase=\"failed\"} 0",
            "berth_reconcile_passes_total 1",
            "berth_reconcile_pass_duration_seconds_count 1",
            "berth_actions_total{kind=\"create\",result=\"ok\"} 1",
            "berth_actions_total{kind=\"create\",result=\"error\"} 1",
            "berth_api_requests_total{method=\"GET\",route=\"/apps\",status=\"200\"} 1",
            "berth_engine_calls_total{op=\"list\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
