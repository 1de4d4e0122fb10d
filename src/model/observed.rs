//! Observed state: berth's view of one labelled container. The conversion from Docker's list
//! entry lives with the engine (`runtime::observe`); this is the engine-free shape the planner
//! and the status derivation read.

use crate::model::names::AppKey;
use crate::model::spec::ContainerSpec;

/// What a container is doing, reduced to what the planner needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Up (or restarting/paused: berth leaves those alone rather than fight Docker).
    Running,
    /// Created and never started.
    Created,
    /// Stopped or died; the exit code when Docker said it.
    Exited(Option<i64>),
}

/// One container carrying this instance's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Docker's id.
    pub id: String,
    /// Container name without the leading '/'.
    pub name: String,
    /// The app it belongs to, from its labels.
    pub key: AppKey,
    /// Label `paas.spec-hash`.
    pub hash: Option<String>,
    /// Label `paas.spec`, parsed, to explain a hash change.
    pub spec: Option<ContainerSpec>,
    /// Label `paas.template`, for the pre-delete hook of an orphan.
    pub template: Option<String>,
    /// Running, created or exited.
    pub state: ContainerState,
    /// Creation time (unix seconds), to prefer the newest of duplicates.
    pub created: i64,
    /// Its IP address on its network (berth's user network first), for the proxy to dial.
    pub address: Option<String>,
    /// Named `<name>_next`: made by a rollout that has not settled (see [`rank`]).
    pub next: bool,
    /// Named `<name>_old`: a rollout's old container, which the route left (see [`rank`]).
    pub old: bool,
    /// A Swarm service's tasks (`runtime = "swarm"`); none for a container.
    pub tasks: Option<Tasks>,
}

/// How many tasks a service asks for and how many run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tasks {
    /// Tasks the service asks for (its replicas).
    pub wanted: u64,
    /// Tasks running now.
    pub running: u64,
    /// The nodes (host names) the running tasks are on, one entry per task, sorted.
    pub nodes: Vec<String>,
    /// `node address:published port` of each task that is starting or running and publishes
    /// a port, sorted: where the front door sends a domain app's traffic.
    pub dials: Vec<String>,
}

impl Tasks {
    /// `2/2 tasks running on n1, n2`, as `berth status` and `GET /apps` show a service.
    pub fn shown(&self) -> String {
        let on = match self.nodes.is_empty() {
            true => String::new(),
            false => format!(" on {}", self.nodes.join(", ")),
        };
        format!("{}/{} tasks running{on}", self.running, self.wanted)
    }
}

impl Observed {
    /// Whether the container is up.
    pub fn is_running(&self) -> bool {
        self.state == ContainerState::Running
    }
}

/// One app's containers, the one to keep first: a container under the app's own name, then
/// a rollout's `_next` one (not settled, so it may not have passed its health check), then a
/// rollout's `_old` one (renamed so once the route left it for a checked `_next` one); within
/// each, a running one, then the one with the wanted `hash`, then the newest. The planner keeps
/// the first and removes the rest; the proxy routes to the first when it runs. So after a crash
/// mid-rollout both agree: before the switch the old container is kept (started again if it
/// was stopped for a stop-first rollout) and the half-made new one goes; after it, the old one
/// is `_old` and goes, and the new one is kept and settled under the app's name.
pub fn rank<'a>(mut mine: Vec<&'a Observed>, hash: Option<&str>) -> Vec<&'a Observed> {
    mine.sort_by(|a, b| {
        let score = |o: &Observed| {
            let wanted = hash.is_some() && o.hash.as_deref() == hash;
            let named = match (o.next, o.old) {
                (false, false) => 2,
                (true, _) => 1,
                (false, true) => 0,
            };
            (named, o.is_running(), wanted, o.created)
        };
        score(b).cmp(&score(a)).then_with(|| a.id.cmp(&b.id))
    });
    mine
}

/// How `key`'s container looks to a person: `running`, `created`, `exited (1)` or `none`, plus
/// the exit code when there is one. A running duplicate wins over a stopped one.
pub fn describe(observed: &[Observed], key: &AppKey) -> (String, Option<i64>) {
    let mine: Vec<&Observed> = observed.iter().filter(|o| &o.key == key).collect();
    describe_own(&mine)
}

/// [`describe`] for one app's containers, already picked out (listing many apps at once).
pub fn describe_own(mine: &[&Observed]) -> (String, Option<i64>) {
    match mine.iter().find(|o| o.is_running()).or(mine.first()) {
        None => ("none".into(), None),
        Some(Observed { tasks: Some(t), .. }) => (t.shown(), None),
        Some(o) => match &o.state {
            ContainerState::Running => ("running".into(), None),
            ContainerState::Created => ("created".into(), None),
            ContainerState::Exited(Some(c)) => (format!("exited ({c})"), Some(*c)),
            ContainerState::Exited(None) => ("exited".into(), None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_shows_its_tasks_and_their_nodes() {
        let t = Tasks {
            wanted: 2,
            running: 2,
            nodes: vec!["n1".into(), "n2".into()],
            dials: vec![],
        };
        assert_eq!(t.shown(), "2/2 tasks running on n1, n2");
        let none = Tasks {
            wanted: 1,
            running: 0,
            nodes: vec![],
            dials: vec![],
        };
        assert_eq!(none.shown(), "0/1 tasks running");
    }
}
