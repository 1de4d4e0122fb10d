//! Per-app status as the reconcile loop last saw it: phase, container state, last error. The
//! loop writes it after every pass and action; the API serves it and
//! the daemon saves it to the database for `berth status`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use crate::model::desired::{DesiredState, Entry};
use crate::model::manifest::RunState;
use crate::model::names::AppKey;
use crate::model::observed::{describe, Observed};
use crate::reconcile::backoff::{Backoffs, CRASH_LOOP_AT};
use crate::reconcile::plan::{Plan, Refusal};

/// Where an app is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// A change is planned or running.
    Pending,
    /// Container up, spec matches.
    Running,
    /// Container exists and is stopped, as the manifest says.
    Stopped,
    /// The last change failed; it is retried with backoff.
    Failed,
    /// Its container keeps exiting; berth restarts it with growing gaps.
    CrashLoop,
    /// The new container of its last rollout failed its health check or exited and was
    /// removed; the old one keeps running and that spec is not tried again.
    RolloutFailed,
    /// The image of its last spec (`[build]`) failed to build; what ran keeps running and
    /// that spec is not built again.
    BuildFailed,
    /// Its manifest or template is broken; nothing is done for it.
    Frozen,
    /// Past a quota; not started.
    OverQuota,
    /// Its manifest is gone but the mass-removal guard holds its removal.
    PruneBlocked,
}

impl Phase {
    /// Every phase, for exporting counts that include zeros.
    pub const ALL: [Phase; 10] = [
        Phase::Pending,
        Phase::Running,
        Phase::Stopped,
        Phase::Failed,
        Phase::CrashLoop,
        Phase::RolloutFailed,
        Phase::BuildFailed,
        Phase::Frozen,
        Phase::OverQuota,
        Phase::PruneBlocked,
    ];
}

impl Phase {
    /// A phase that says something went wrong with the app's last change or its container.
    pub fn is_failing(self) -> bool {
        matches!(
            self,
            Phase::Failed | Phase::CrashLoop | Phase::RolloutFailed | Phase::BuildFailed
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Phase {
    /// As shown everywhere: `running`, `crash-loop`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Running => "running",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
            Phase::CrashLoop => "crash-loop",
            Phase::RolloutFailed => "rollout-failed",
            Phase::BuildFailed => "build-failed",
            Phase::Frozen => "frozen",
            Phase::OverQuota => "over-quota",
            Phase::PruneBlocked => "prune-blocked",
        }
    }
}

/// One app's status.
#[derive(Debug, Clone, PartialEq)]
pub struct AppStatus {
    /// Phase.
    pub phase: Phase,
    /// Docker's view: "running", "exited (1)", "none".
    pub container: String,
    /// Why it is failed, frozen or held, if it is.
    pub last_error: Option<String>,
    /// The spec hash a failed rollout refused (phase `rollout-failed`).
    pub refused_hash: Option<String>,
    /// When this status was computed.
    pub updated: SystemTime,
}

/// Every app's status, shared between the loop and readers.
#[derive(Debug, Default)]
pub struct StatusBoard {
    /// By key.
    apps: Mutex<BTreeMap<AppKey, AppStatus>>,
    /// Woken when a replace changed some app's phase or error, so the status can be saved.
    pub changed: tokio::sync::Notify,
    /// Set by the first replace: until a pass has succeeded the board knows nothing, and
    /// saving it would wipe the status saved by the last run.
    filled: std::sync::atomic::AtomicBool,
    /// Moves with every change of the board, so readers can keep what they made from it.
    generation: std::sync::atomic::AtomicU64,
    /// What each valid manifest asks for, as the last pass read it (the bridge answers from
    /// it without reading files).
    wanted: Mutex<std::collections::HashMap<AppKey, Wanted>>,
}

/// What a valid manifest asks for that an app's own clients may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// `running` or `stopped`.
    pub state: crate::model::manifest::RunState,
    /// Its domain, if any.
    pub domain: Option<String>,
}

impl StatusBoard {
    /// Replaces the whole board and returns the apps whose phase or error changed, so the
    /// loop logs transitions rather than every pass.
    pub fn replace(&self, next: BTreeMap<AppKey, AppStatus>) -> Vec<(AppKey, AppStatus)> {
        let mut apps = self.apps.lock().expect("status board");
        let changed: Vec<(AppKey, AppStatus)> = next
            .iter()
            .filter(|(k, s)| {
                apps.get(*k)
                    .is_none_or(|old| old.phase != s.phase || old.last_error != s.last_error)
            })
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        *apps = next;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.filled
            .store(true, std::sync::atomic::Ordering::Release);
        if !changed.is_empty() {
            self.changed.notify_one();
        }
        changed
    }

    /// Shows an app created through the API as pending until the next pass replaces the
    /// board, so a client lists what it just created (`GET /apps` reads only the board).
    pub fn note_created(&self, key: &AppKey, at: SystemTime) {
        let mut apps = self.apps.lock().expect("status board");
        apps.entry(key.clone()).or_insert_with(|| AppStatus {
            phase: Phase::Pending,
            container: "none".into(),
            last_error: None,
            refused_hash: None,
            updated: at,
        });
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The board's generation: equal readings mean an unchanged board.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// True once a pass has filled the board.
    pub fn is_filled(&self) -> bool {
        self.filled.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Sets what the valid manifests of the last pass ask for.
    pub fn set_wanted(&self, wanted: std::collections::HashMap<AppKey, Wanted>) {
        *self.wanted.lock().expect("wanted") = wanted;
    }

    /// What `key`'s manifest asked for at the last pass (none when it was not valid then).
    pub fn wanted(&self, key: &AppKey) -> Option<Wanted> {
        self.wanted.lock().expect("wanted").get(key).cloned()
    }

    /// One app's phase, without copying the board.
    pub fn phase(&self, key: &AppKey) -> Option<Phase> {
        self.apps
            .lock()
            .expect("status board")
            .get(key)
            .map(|s| s.phase)
    }

    /// A copy of the board.
    pub fn snapshot(&self) -> BTreeMap<AppKey, AppStatus> {
        self.apps.lock().expect("status board").clone()
    }
}

/// What the loop remembers that a status depends on.
pub struct Memory<'a> {
    /// Apps with a change in flight.
    pub busy: &'a BTreeSet<AppKey>,
    /// Retry and crash-restart timing.
    pub backoffs: &'a Backoffs,
    /// Spec hashes refused by a failed rollout.
    pub refused: &'a BTreeMap<AppKey, Refusal>,
}

/// Derives every app's status from one pass's inputs: `now` places the crash window, `at`
/// stamps the result. Pure.
pub fn compute_status(
    desired: &DesiredState,
    observed: &[Observed],
    plan: &Plan,
    memory: &Memory<'_>,
    now: Instant,
    at: SystemTime,
) -> BTreeMap<AppKey, AppStatus> {
    let planned: HashSet<&AppKey> = plan.changes.iter().map(|c| &c.key).collect();
    let mut out = BTreeMap::new();
    let mut put = |key: &AppKey, (phase, last_error): (Phase, Option<String>)| {
        let (container, _) = describe(observed, key);
        // Saved whatever the phase (a change in motion, a duplicate being removed), so a
        // restart remembers the refusal.
        let refused_hash = memory.refused.get(key).map(|r| r.hash.clone());
        let status = AppStatus {
            phase,
            container,
            last_error,
            refused_hash,
            updated: at,
        };
        out.insert(key.clone(), status);
    };
    for (key, entry) in &desired.apps {
        let in_motion = planned.contains(key) || memory.busy.contains(key);
        let refused = memory.refused.get(key);
        let phase = match (entry, refused) {
            (Entry::Valid(app), Some(r))
                if r.refuses(&app.hash, app.health.as_ref()) && !in_motion =>
            {
                (r.phase(), Some(r.shown()))
            }
            _ => entry_phase(key, entry, observed, memory.backoffs, now, in_motion),
        };
        put(key, phase);
    }
    for key in &plan.prune_blocked {
        let why = "manifest removed; removal held by the mass-removal guard";
        put(key, (Phase::PruneBlocked, Some(why.into())));
    }
    for o in observed {
        if let Some(e) = desired.frozen_users.get(&o.key.userid) {
            put(&o.key, (Phase::Frozen, Some(e.clone())));
        } else if !desired.apps.contains_key(&o.key) && !plan.prune_blocked.contains(&o.key) {
            let why = "manifest removed; container is being removed";
            put(&o.key, (Phase::Pending, Some(why.into())));
        }
    }
    out
}

/// The phase of an app with a manifest: held ones say why; a valid one is failed (its last
/// change failed), crash-looping, pending (a change planned or running) or as its manifest says.
fn entry_phase(
    key: &AppKey,
    entry: &Entry,
    observed: &[Observed],
    backoffs: &Backoffs,
    now: Instant,
    in_motion: bool,
) -> (Phase, Option<String>) {
    let app = match entry {
        Entry::Frozen(e) => return (Phase::Frozen, Some(e.clone())),
        Entry::OverQuota(e) => return (Phase::OverQuota, Some(e.clone())),
        Entry::Refused(v) => return (Phase::Frozen, Some(v.to_string())),
        Entry::Valid(app) => app,
    };
    let restarts = backoffs.recent_restarts(key, now);
    if let Some((e, n)) = backoffs.failure(key) {
        let why = format!("{e} (failed {n} times; retrying with backoff)");
        (Phase::Failed, Some(why))
    } else if restarts >= CRASH_LOOP_AT {
        let last = describe(observed, key)
            .1
            .map_or(String::new(), |c| format!("; last exit code {c}"));
        let why = format!("restarted {restarts} times in 10 minutes{last}");
        (Phase::CrashLoop, Some(why))
    } else if in_motion {
        (Phase::Pending, None)
    } else if app.run == RunState::Running {
        (Phase::Running, None)
    } else {
        (Phase::Stopped, None)
    }
}
