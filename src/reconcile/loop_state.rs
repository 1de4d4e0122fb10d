//! The serve loop's memory between passes, and each step of a pass as a function over it:
//! which planned changes start now, what a finished change means, which apps are forgotten,
//! the status board, which purge requests are settled and whether a confirmed release of held
//! removals still applies. Pure: the daemon passes `now` in and carries the decisions out, so
//! every rule here is unit-tested without Docker under a made-up clock.
//!
//! **Invariants:** at most one change per app is in flight (a busy app is skipped until its
//! change finishes), and at most `max_parallel` changes are in flight at all; the rest wait
//! for a later pass, which plans them again from fresh state. A crash restart is spaced out
//! by its backoff and counted once, when it has succeeded.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::model::desired::{DesiredState, Entry};
use crate::model::names::AppKey;
use crate::model::observed::Observed;
use crate::reconcile::backoff::Backoffs;
use crate::reconcile::plan::{AppChange, Plan, Refusal};
use crate::reconcile::status::{compute_status, AppStatus, Memory};
use crate::reconcile::trigger::{Trigger, Triggers};

/// The held removals a confirmed API call released, taken by the next pass.
pub type PruneRelease = Arc<Mutex<Option<BTreeSet<AppKey>>>>;

/// What the loop remembers from one pass to the next.
#[derive(Debug)]
pub struct LoopState {
    /// Most changes in flight at once.
    max_parallel: usize,
    /// Apps with a change in flight.
    busy: BTreeSet<AppKey>,
    /// Retry and crash-restart timing.
    backoffs: Backoffs,
    /// The removals the guard held last pass, so the warning is logged once per change.
    last_blocked: Vec<AppKey>,
    /// When each ready change first had to wait for a free slot: the longest waiting start
    /// first, so apps early in key order cannot starve later ones.
    waiting: HashMap<AppKey, Instant>,
    /// The held removals a confirmed call released; kept until they are all done (they run
    /// `max_parallel` at a time, over several passes) or the held set changes.
    released: Option<BTreeSet<AppKey>>,
    /// Spec hashes whose rollout failed, by app: not tried again while the manifest wants
    /// that same spec.
    refused: BTreeMap<AppKey, Refusal>,
}

/// Why a change failed, as the loop needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Anything that may work next time: retried with backoff.
    Retry(String),
    /// The new container was unhealthy and rolled back: that spec is not tried again.
    RolledBack(Refusal),
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::Retry(message.to_string())
    }
}

/// The changes one pass starts.
#[derive(Debug, Default, PartialEq)]
pub struct Schedule {
    /// Start these now (each app is marked busy until [`LoopState::finished`]).
    pub start: Vec<AppChange>,
    /// The earliest moment a change held back by its backoff may run.
    pub wake_at: Option<Instant>,
}

/// What a finished change leaves behind.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It worked.
    Done,
    /// It failed; the next try waits this long.
    RetryIn(Duration),
    /// Its rollout was rolled back; that spec is refused until the manifest changes.
    Refused,
}

/// What happens to a confirmed release of held removals this pass.
#[derive(Debug, PartialEq, Eq)]
pub enum Release {
    /// No release was asked for.
    None,
    /// Plan again with the guard lifted: the guard holds exactly what was confirmed, or less.
    Lift,
    /// The held set changed since the confirmation: nothing is released.
    Stale,
}

/// What to do with one outstanding purge request.
#[derive(Debug, PartialEq, Eq)]
pub enum PurgeStep {
    /// The manifest came back: drop the request.
    Cancel,
    /// Nothing is left to remove: remove the workspace now.
    Finish,
}

impl LoopState {
    /// A loop that runs at most `max_parallel` changes at once.
    pub fn new(max_parallel: usize) -> LoopState {
        LoopState {
            max_parallel: max_parallel.max(1),
            busy: BTreeSet::new(),
            backoffs: Backoffs::default(),
            last_blocked: Vec::new(),
            waiting: HashMap::new(),
            released: None,
            refused: BTreeMap::new(),
        }
    }

    /// Spec hashes refused by failed rollouts, for the planner.
    pub fn refused(&self) -> &BTreeMap<AppKey, Refusal> {
        &self.refused
    }

    /// Remembers a refusal found on record (the saved status of a previous run).
    pub fn refuse(&mut self, key: AppKey, refusal: Refusal) {
        self.refused.insert(key, refusal);
    }

    /// Forgets refusals whose manifest now asks for another spec or health check, or is
    /// gone: an edit or a deploy is the signal to try again. A manifest held for a while
    /// (frozen, over quota) keeps its refusal: nothing was asked of it yet.
    pub fn settle_refusals(&mut self, desired: &DesiredState) {
        self.refused.retain(|key, r| match desired.apps.get(key) {
            Some(Entry::Valid(app)) => r.refuses(&app.hash, app.health.as_ref()),
            Some(_) => true,
            None => desired.frozen_users.contains_key(&key.userid),
        });
    }

    /// Takes a newly confirmed release of held removals (replacing an earlier one).
    pub fn confirm_release(&mut self, released: BTreeSet<AppKey>) {
        self.released = Some(released);
    }

    /// Whether the guard is lifted for this pass, given the plan made with the guard: only
    /// while it holds something and all of it was released. A release ends when nothing is
    /// held any more (its removals are done) or the held set grew past it.
    pub fn release(&mut self, guarded: &Plan) -> Release {
        let Some(released) = &self.released else {
            return Release::None;
        };
        if guarded.prune_blocked.is_empty() {
            self.released = None;
            return Release::None;
        }
        if guarded.prune_blocked.iter().all(|k| released.contains(k)) {
            return Release::Lift;
        }
        self.released = None;
        Release::Stale
    }

    /// Whether `reasons` are only Docker events about apps whose change is in flight: the
    /// change's own steps, which it reports when done, so no pass is needed for them.
    /// `apps` is `None` when some event was about no known app.
    pub fn only_busy_apps_moved(&self, reasons: Triggers, apps: Option<BTreeSet<AppKey>>) -> bool {
        let only_events = reasons == Triggers::of(Trigger::DockerEvent);
        let apps = apps.unwrap_or_default();
        only_events && !apps.is_empty() && apps.iter().all(|k| self.busy.contains(k))
    }

    /// Changes in flight.
    pub fn in_flight(&self) -> usize {
        self.busy.len()
    }

    /// Picks the changes of `plan` that start now: not busy, out of backoff, within
    /// `max_parallel`, those that have waited longest for a slot first (then plan order).
    /// Those it picks are busy until they finish.
    pub fn schedule(&mut self, plan: &Plan, now: Instant) -> Schedule {
        let mut out = Schedule::default();
        let mut ready = Vec::new();
        for change in plan.changes.iter().filter(|c| !self.is_blocked(c)) {
            let hash = change.desired_hash.as_deref();
            match self
                .backoffs
                .ready(&change.key, hash, change.is_crash_restart(), now)
            {
                Err(at) => out.wake_at = Some(out.wake_at.map_or(at, |w| w.min(at))),
                Ok(()) => ready.push(change),
            }
        }
        self.waiting
            .retain(|k, _| ready.iter().any(|c| &c.key == k));
        ready.sort_by_key(|c| self.waiting.get(&c.key).copied().unwrap_or(now));
        for change in ready {
            if self.busy.len() < self.max_parallel {
                self.waiting.remove(&change.key);
                self.busy.insert(change.key.clone());
                out.start.push(change.clone());
            } else {
                self.waiting.entry(change.key.clone()).or_insert(now);
            }
        }
        out
    }

    /// A change waits while its app is busy, and a rename also while the app it takes over
    /// is (a rollout of the old name must end before its container and volumes move).
    fn is_blocked(&self, change: &AppChange) -> bool {
        let from = match &change.action {
            Some(crate::reconcile::plan::Action::Rename { from, .. }) => Some(from),
            _ => None,
        };
        self.busy.contains(&change.key) || from.is_some_and(|f| self.busy.contains(f))
    }

    /// Records that `change` finished with `result`: the app is free again, a failure starts
    /// (or grows) its backoff, a success clears it, and a successful crash restart is counted.
    pub fn finished(
        &mut self,
        change: &AppChange,
        result: Result<(), Failure>,
        now: Instant,
    ) -> Outcome {
        let key = &change.key;
        self.busy.remove(key);
        match result {
            Ok(()) => {
                let new_container = change.action.as_ref().is_some_and(|a| a.makes_container());
                self.backoffs.succeeded(key, new_container);
                if change.is_crash_restart() {
                    self.backoffs.restarted(key, now);
                }
                Outcome::Done
            }
            Err(Failure::RolledBack(refusal)) => {
                self.refused.insert(key.clone(), refusal);
                Outcome::Refused
            }
            Err(Failure::Retry(e)) => {
                let hash = change.desired_hash.as_deref();
                Outcome::RetryIn(self.backoffs.failed(key, hash, e, now))
            }
        }
    }

    /// The removals the guard holds, when they differ from last pass's and are not none:
    /// the moment to warn a person.
    pub fn newly_blocked(&mut self, plan: &Plan) -> Option<Vec<AppKey>> {
        let changed = plan.prune_blocked != self.last_blocked;
        self.last_blocked = plan.prune_blocked.clone();
        (changed && !plan.prune_blocked.is_empty()).then(|| plan.prune_blocked.clone())
    }

    /// Forgets the timing of apps that have neither a manifest nor a container.
    pub fn forget_gone(&mut self, desired: &DesiredState, observed: &[Observed]) {
        let keys: HashSet<&AppKey> = desired
            .apps
            .keys()
            .chain(observed.iter().map(|o| &o.key))
            .collect();
        self.backoffs.retain(|k| keys.contains(k));
    }

    /// Every app's status after a pass, stamped `at`.
    pub fn status(
        &self,
        desired: &DesiredState,
        observed: &[Observed],
        plan: &Plan,
        now: Instant,
        at: SystemTime,
    ) -> BTreeMap<AppKey, AppStatus> {
        let memory = Memory {
            busy: &self.busy,
            backoffs: &self.backoffs,
            refused: &self.refused,
        };
        compute_status(desired, observed, plan, &memory, now, at)
    }

    /// Decides the outstanding purge requests (`pending`: app and when it was asked) against
    /// a scan that began at `scanned_at`. Only a scan that began after a request may decide
    /// it: an older one predates the delete it belongs to. A request whose manifest came back
    /// is cancelled, so it can never fire on a later delete of a new app with that name; one
    /// whose app has nothing left to remove (no container, no planned or running change, its
    /// user not frozen) is finished here, since no removal will run for it.
    pub fn settle_removals(
        &self,
        pending: &[(AppKey, Instant)],
        scanned_at: Instant,
        desired: &DesiredState,
        observed: &[Observed],
        plan: &Plan,
    ) -> Vec<(AppKey, PurgeStep)> {
        let settled = |key: &AppKey| {
            !desired.frozen_users.contains_key(&key.userid)
                && !self.busy.contains(key)
                && !observed.iter().any(|o| &o.key == key)
                && !plan.changes.iter().any(|c| &c.key == key)
        };
        pending
            .iter()
            .filter(|(_, requested_at)| *requested_at < scanned_at)
            .filter_map(|(key, _)| {
                if desired.apps.contains_key(key) {
                    Some((key.clone(), PurgeStep::Cancel))
                } else {
                    settled(key).then(|| (key.clone(), PurgeStep::Finish))
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "loop_state_tests.rs"]
mod tests;
