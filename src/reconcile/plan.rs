//! The planner: a pure function from (desired, observed) to a plan of explicit per-app
//! actions (docs/reference/reconcile-rules.md), printable as a diff before anything runs.
//!
//! **Invariants:** `plan` does no I/O and reads no clock; the same inputs give the same plan.
//! **`Plan::is_noop()` means the executor makes no Docker write call.** A held app (frozen
//! manifest, frozen user, over quota) never gets an action. Removals past the mass-removal
//! guard are all withheld, never partly done.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::desired::{DesiredApp, DesiredState, Entry};
use crate::model::health::HealthCheck;
use crate::model::manifest::RunState;
use crate::model::names::AppKey;
use crate::model::observed::{rank, ContainerState, Observed};
use crate::model::spec::changed_fields;
use crate::model::spec::ContainerSpec;

/// A container an action works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// Docker id.
    pub id: String,
    /// Name, for humans.
    pub name: String,
    /// Whether it needs stopping before removal.
    pub running: bool,
}

impl ContainerRef {
    /// The reference to an observed container.
    pub fn of(o: &Observed) -> ContainerRef {
        ContainerRef {
            id: o.id.clone(),
            name: o.name.clone(),
            running: o.is_running(),
        }
    }
}

/// The one thing to do for an app this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No container: pre-create hook, create, start if `start`.
    Create { start: bool },
    /// Spec changed: pre-deploy hook, then the new container replaces `old` the way
    /// `strategy` says.
    Recreate {
        old: ContainerRef,
        start: bool,
        changed: Vec<String>,
        strategy: Strategy,
    },
    /// The kept container still has a rollout's `_next` name (berth stopped before the
    /// rollout's last step), or is an `_old` one left alone: rename it to the app's name.
    Settle { container: ContainerRef },
    /// Same spec, not running, should run. `exited` is set when it stopped on its own or was
    /// stopped, which counts toward crash-loop backoff.
    Start {
        container: ContainerRef,
        exited: Option<Option<i64>>,
    },
    /// Same spec, running, should not.
    Stop { container: ContainerRef },
    /// The manifest says `renamed_from`: take the old app over (stop its `containers`, move
    /// its workspace, copy its volumes, remove what is left of it); the app gets its own
    /// container once berth has dropped the `renamed_from` line.
    Rename {
        from: AppKey,
        containers: Vec<ContainerRef>,
    },
    /// No manifest: pre-delete hook, stop, remove.
    Remove {
        containers: Vec<ContainerRef>,
        template: Option<String>,
    },
}

impl Action {
    /// Short name for logs, metrics and the plan printout.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Recreate { .. } => "recreate",
            Action::Start { .. } => "start",
            Action::Stop { .. } => "stop",
            Action::Remove { .. } => "remove",
            Action::Settle { .. } => "settle",
            Action::Rename { .. } => "rename",
        }
    }

    /// A start of a container that exited on its own (or was stopped by hand) while its
    /// manifest says `running`: the restarts crash-loop backoff spaces out and counts.
    pub fn is_crash_restart(&self) -> bool {
        matches!(
            self,
            Action::Start {
                exited: Some(_),
                ..
            }
        )
    }

    /// Whether it leaves a new container behind (which starts a clean crash history).
    pub fn makes_container(&self) -> bool {
        matches!(self, Action::Create { .. } | Action::Recreate { .. })
    }
}

/// How a new container replaces the old one (docs/guides/deploys-and-rollback.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// A domain app without a host port: the new container starts beside the old, passes its
    /// health check, takes the traffic, and the old one drains and goes. Zero downtime.
    StartFirst,
    /// One host port cannot be held twice: stop the old container, start the new, and keep
    /// the old until the new passes its check (it is started again if not).
    StopFirst,
    /// Nothing runs afterwards (`state = "stopped"`): remove the old, create the new.
    Replace,
}

impl Strategy {
    /// For logs, metrics and the plan printout.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::StartFirst => "start-first",
            Strategy::StopFirst => "stop-first",
            Strategy::Replace => "replace",
        }
    }

    /// The strategy for an app's spec and run state.
    pub fn for_app(spec: &ContainerSpec, run: RunState) -> Strategy {
        match (run, &spec.domain, spec.host_port) {
            (RunState::Stopped, _, _) => Strategy::Replace,
            (RunState::Running, Some(_), None) => Strategy::StartFirst,
            (RunState::Running, _, _) => Strategy::StopFirst,
        }
    }
}

/// A spec hash whose rollout failed: berth does not try it again until the manifest asks
/// for another spec (an edit, or a deploy's new nonce) or another health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The refused spec hash.
    pub hash: String,
    /// Why its container was rolled back.
    pub reason: String,
    /// The health check it failed; `None` when not known (a refusal read back from the saved
    /// status), which refuses whatever the check.
    pub health: Option<Option<HealthCheck>>,
    /// The spec's image failed to build (phase `build-failed`), rather than its container.
    pub build: bool,
}

impl Refusal {
    /// Whether this refuses a rollout of `hash` under `health`.
    pub fn refuses(&self, hash: &str, health: Option<&HealthCheck>) -> bool {
        self.hash == hash && self.health.as_ref().is_none_or(|h| h.as_ref() == health)
    }

    /// As `berth status` and the API show it.
    pub fn shown(&self) -> String {
        format!("{}{}", Self::prefix(&self.hash, self.build), self.reason)
    }

    /// A refusal from what [`shown`](Self::shown) wrote (a saved status).
    pub fn from_shown(hash: &str, shown: &str) -> Refusal {
        let build = shown.starts_with(&Self::prefix(hash, true));
        let reason = shown
            .strip_prefix(&Self::prefix(hash, build))
            .unwrap_or(shown);
        Refusal {
            hash: hash.to_string(),
            reason: reason.to_string(),
            health: None,
            build,
        }
    }

    fn prefix(hash: &str, build: bool) -> String {
        match build {
            true => format!("spec {} not built: ", short(hash)),
            false => format!("spec {} refused: ", short(hash)),
        }
    }

    /// The phase this refusal puts its app in.
    pub fn phase(&self) -> crate::reconcile::status::Phase {
        match self.build {
            true => crate::reconcile::status::Phase::BuildFailed,
            false => crate::reconcile::status::Phase::RolloutFailed,
        }
    }
}

/// Everything to do for one app, in order: drop duplicates, then the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppChange {
    /// Which app.
    pub key: AppKey,
    /// Extra containers for the key (docs/reference/reconcile-rules.md "keep one, remove the rest").
    pub duplicates: Vec<ContainerRef>,
    /// The action, if the kept container (or its absence) needs one.
    pub action: Option<Action>,
    /// The desired spec hash, if the app has a valid manifest (keys backoff to a spec).
    pub desired_hash: Option<String>,
}

/// A whole pass's plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Apps that need Docker writes, in key order.
    pub changes: Vec<AppChange>,
    /// Removals withheld by the mass-removal guard.
    pub prune_blocked: Vec<AppKey>,
    /// Apps with containers that berth leaves alone because they are held.
    pub held: Vec<AppKey>,
    /// Apps whose wanted spec failed its rollout: no action until the manifest changes.
    pub refused: Vec<(AppKey, Refusal)>,
}

impl AppChange {
    /// See [`Action::is_crash_restart`].
    pub fn is_crash_restart(&self) -> bool {
        self.action.as_ref().is_some_and(Action::is_crash_restart)
    }

    /// The action's kind; `dedupe` for a change that only drops duplicate containers.
    pub fn kind(&self) -> &'static str {
        self.action.as_ref().map_or("dedupe", Action::kind)
    }
}

impl Plan {
    /// True when executing the plan would make no Docker write call.
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Knobs that are not part of desired or observed state.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions<'a> {
    /// `--allow-mass-prune` / the API's confirm: lift the guard for this pass.
    pub allow_mass_prune: bool,
    /// berth.toml `prune_guard`: removals allowed per pass; `None` = the default rule.
    pub prune_guard: Option<usize>,
    /// Spec hashes whose rollout failed, by app: not tried again.
    pub refused: Option<&'a BTreeMap<AppKey, Refusal>>,
    /// Apps whose manifest was deleted on request (the API): their removal is neither held
    /// nor counted by the guard.
    pub asked: Option<&'a BTreeSet<AppKey>>,
}

/// The guard (docs/reference/reconcile-rules.md): by default more than 3 removals and more than half the running apps.
pub fn prune_is_blocked(removals: usize, running_apps: usize, guard: Option<usize>) -> bool {
    match guard {
        Some(limit) => removals > limit,
        None => removals > 3 && removals * 2 > running_apps,
    }
}

/// Computes the plan. Pure.
pub fn plan(desired: &DesiredState, observed: &[Observed], opts: PlanOptions<'_>) -> Plan {
    let mut by_key: BTreeMap<&AppKey, Vec<&Observed>> = BTreeMap::new();
    for o in observed {
        by_key.entry(&o.key).or_default().push(o);
    }
    let taken_over: BTreeSet<AppKey> = crate::model::rename::under_way(desired)
        .into_iter()
        .map(|(from, _)| from)
        .collect();
    let keys: BTreeSet<&AppKey> = desired.apps.keys().chain(by_key.keys().copied()).collect();
    let running_apps = by_key
        .values()
        .filter(|cs| cs.iter().any(|c| c.is_running()))
        .count();
    let mut out = Plan::default();
    let mut removals = Vec::new();
    for key in keys {
        let containers = by_key.get(key).map(Vec::as_slice).unwrap_or(&[]);
        if taken_over.contains(key) {
            continue; // the renamed app's change takes these containers over
        }
        if desired.is_held(key) {
            if !containers.is_empty() {
                out.held.push(key.clone());
            }
            continue;
        }
        match desired.apps.get(key) {
            Some(Entry::Valid(app)) if app.renamed_from.is_some() => {
                out.changes.push(plan_rename(app, &by_key));
            }
            Some(Entry::Valid(app)) => {
                let mut change = plan_app(key, &app.hash, app.run, &app.spec, containers);
                let refusal = opts.refused.and_then(|r| r.get(key));
                if let Some(r) = honour_refusal(&mut change, app, refusal) {
                    out.refused.push((key.clone(), r));
                }
                if change.action.is_some() || !change.duplicates.is_empty() {
                    out.changes.push(change);
                }
            }
            Some(Entry::Frozen(_) | Entry::OverQuota(_) | Entry::Refused(_)) => {
                unreachable!("held keys are skipped")
            }
            None => removals.push(AppChange {
                key: key.clone(),
                duplicates: vec![],
                action: Some(Action::Remove {
                    containers: containers.iter().map(|c| ContainerRef::of(c)).collect(),
                    template: containers.iter().find_map(|c| c.template.clone()),
                }),
                desired_hash: None,
            }),
        }
    }
    guard_removals(&mut out, removals, running_apps, opts);
    out.changes.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Removals asked for go ahead; the others all go, or none do when past the guard.
fn guard_removals(
    out: &mut Plan,
    removals: Vec<AppChange>,
    running_apps: usize,
    opts: PlanOptions<'_>,
) {
    let (asked, guarded): (Vec<AppChange>, Vec<AppChange>) = removals
        .into_iter()
        .partition(|c| opts.asked.is_some_and(|a| a.contains(&c.key)));
    out.changes.extend(asked);
    if !opts.allow_mass_prune && prune_is_blocked(guarded.len(), running_apps, opts.prune_guard) {
        out.prune_blocked = guarded.into_iter().map(|c| c.key).collect();
    } else {
        out.changes.extend(guarded);
    }
}

/// A change that would roll a refused spec again rolls nothing: the old container stays,
/// started again (with crash backoff) if it stopped while the manifest says running. A spec
/// whose image failed to build is not created either.
fn honour_refusal(
    change: &mut AppChange,
    app: &DesiredApp,
    refusal: Option<&Refusal>,
) -> Option<Refusal> {
    let r = refusal.filter(|r| r.refuses(&app.hash, app.health.as_ref()))?;
    if r.build && matches!(change.action, Some(Action::Create { .. })) {
        change.action = None;
        return Some(r.clone());
    }
    let Some(Action::Recreate { old, start, .. }) = &change.action else {
        return None;
    };
    change.action = (*start && !old.running).then(|| Action::Start {
        container: old.clone(),
        exited: Some(None),
    });
    Some(r.clone())
}

/// A renamed app: first its old name's containers (whatever they run) are taken over; its
/// own, if it has any, are left as they are until the rename is done.
fn plan_rename(app: &DesiredApp, by_key: &BTreeMap<&AppKey, Vec<&Observed>>) -> AppChange {
    let from = app.renamed_from.clone().expect("a renamed app");
    let old = by_key.get(&from).map(Vec::as_slice).unwrap_or(&[]);
    AppChange {
        key: app.key.clone(),
        duplicates: vec![],
        action: Some(Action::Rename {
            containers: old.iter().map(|c| ContainerRef::of(c)).collect(),
            from,
        }),
        desired_hash: Some(app.hash.clone()),
    }
}

/// One valid app against its containers.
fn plan_app(
    key: &AppKey,
    hash: &str,
    run: RunState,
    spec: &ContainerSpec,
    containers: &[&Observed],
) -> AppChange {
    let ranked = rank(containers.to_vec(), Some(hash));
    let start = run == RunState::Running;
    let mut change = AppChange {
        key: key.clone(),
        duplicates: ranked.iter().skip(1).map(|c| ContainerRef::of(c)).collect(),
        action: None,
        desired_hash: Some(hash.to_string()),
    };
    let Some(keep) = ranked.first() else {
        change.action = Some(Action::Create { start });
        return change;
    };
    change.action = if keep.next || keep.old {
        // Settled first, whatever its spec: a rollout creates its new container as `_next`,
        // so no kept container may still have a rollout's name.
        Some(Action::Settle {
            container: ContainerRef::of(keep),
        })
    } else if keep.hash.as_deref() != Some(hash) {
        let changed = match &keep.spec {
            Some(old) => changed_fields(old, spec),
            None => vec!["spec hash (the old spec is unknown)".into()],
        };
        Some(Action::Recreate {
            old: ContainerRef::of(keep),
            start,
            changed,
            strategy: Strategy::for_app(spec, run),
        })
    } else {
        run_action(keep, run)
    };
    change
}

/// What a kept container with the wanted spec needs: a start or stop when its state is not
/// what the manifest says.
fn run_action(keep: &Observed, run: RunState) -> Option<Action> {
    let this = ContainerRef::of(keep);
    match (&keep.state, run) {
        (ContainerState::Running, RunState::Running) => None,
        (ContainerState::Running, RunState::Stopped) => Some(Action::Stop {
            container: this.clone(),
        }),
        (ContainerState::Created, RunState::Running) => Some(Action::Start {
            container: this.clone(),
            exited: None,
        }),
        (ContainerState::Exited(code), RunState::Running) => Some(Action::Start {
            container: this.clone(),
            exited: Some(*code),
        }),
        (_, RunState::Stopped) => None,
    }
}

/// The first 12 characters of a spec hash, as people see it.
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "plan_rollout_tests.rs"]
mod rollout_tests;
