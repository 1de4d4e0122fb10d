//! Per-app status as the reconcile loop last saw it: phase, container state, last error. The
//! loop writes it after every pass and action; the API serves it and
//! the daemon saves it to the database for `berth status`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::names::AppKey;

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
    /// Its manifest or template is broken; nothing is done for it.
    Frozen,
    /// Past a quota; not started.
    OverQuota,
    /// Its manifest is gone but the mass-removal guard holds its removal.
    PruneBlocked,
}

impl Phase {
    /// Every phase, for exporting counts that include zeros.
    pub const ALL: [Phase; 8] = [
        Phase::Pending,
        Phase::Running,
        Phase::Stopped,
        Phase::Failed,
        Phase::CrashLoop,
        Phase::Frozen,
        Phase::OverQuota,
        Phase::PruneBlocked,
    ];
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Pending => "pending",
            Phase::Running => "running",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
            Phase::CrashLoop => "crash-loop",
            Phase::Frozen => "frozen",
            Phase::OverQuota => "over-quota",
            Phase::PruneBlocked => "prune-blocked",
        })
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
        self.filled
            .store(true, std::sync::atomic::Ordering::Release);
        if !changed.is_empty() {
            self.changed.notify_one();
        }
        changed
    }

    /// True once a pass has filled the board.
    pub fn is_filled(&self) -> bool {
        self.filled.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A copy of the board.
    pub fn snapshot(&self) -> BTreeMap<AppKey, AppStatus> {
        self.apps.lock().expect("status board").clone()
    }
}
