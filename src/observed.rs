//! Observed state: berth's view of one labelled container, converted from Docker's list entry.
//! Pure: the Docker call that produces the list lives in `engine`.

use std::collections::HashMap;

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};

use crate::labels;
use crate::names::AppKey;
use crate::spec::ContainerSpec;

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
}

impl Observed {
    /// Converts a list entry; `None` when its user/app labels are missing or invalid (berth
    /// did not make it that way, so it will not act on it).
    pub fn from_summary(s: &ContainerSummary) -> Option<Observed> {
        let empty = HashMap::new();
        let l = s.labels.as_ref().unwrap_or(&empty);
        let key = AppKey::new(l.get(labels::USERID)?, l.get(labels::APPNAME)?).ok()?;
        let state = match s.state {
            Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
            Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD) => {
                ContainerState::Exited(s.status.as_deref().and_then(exit_code))
            }
            _ => ContainerState::Running,
        };
        Some(Observed {
            id: s.id.clone()?,
            name: s
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            key,
            hash: l.get(labels::SPEC_HASH).cloned(),
            spec: l
                .get(labels::SPEC)
                .and_then(|j| serde_json::from_str(j).ok()),
            template: l.get(labels::TEMPLATE).cloned(),
            state,
            created: s.created.unwrap_or(0),
        })
    }

    /// Whether the container is up.
    pub fn is_running(&self) -> bool {
        self.state == ContainerState::Running
    }
}

/// Reads the code out of Docker's status text, e.g. `Exited (137) 5 seconds ago`.
fn exit_code(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest[..rest.find(')')?].parse().ok()
}

/// How `key`'s container looks to a person: `running`, `created`, `exited (1)` or `none`, plus
/// the exit code when there is one. A running duplicate wins over a stopped one.
pub fn describe(observed: &[Observed], key: &AppKey) -> (String, Option<i64>) {
    let mine: Vec<&Observed> = observed.iter().filter(|o| &o.key == key).collect();
    match mine.iter().find(|o| o.is_running()).or(mine.first()) {
        None => ("none".into(), None),
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

    fn summary(
        labels: &[(&str, &str)],
        state: ContainerSummaryStateEnum,
        status: &str,
    ) -> ContainerSummary {
        ContainerSummary {
            id: Some("abc".into()),
            names: Some(vec!["/paas-app-alice-hello".into()]),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            state: Some(state),
            status: Some(status.into()),
            created: Some(7),
            ..Default::default()
        }
    }

    #[test]
    fn converts_labels_and_exit_code() {
        let s = summary(
            &[
                (labels::USERID, "alice"),
                (labels::APPNAME, "hello"),
                (labels::SPEC_HASH, "h"),
            ],
            ContainerSummaryStateEnum::EXITED,
            "Exited (137) 5 seconds ago",
        );
        let o = Observed::from_summary(&s).unwrap();
        assert_eq!(o.key.to_string(), "alice/hello");
        assert_eq!(o.name, "paas-app-alice-hello");
        assert_eq!(o.state, ContainerState::Exited(Some(137)));
        assert_eq!(o.hash.as_deref(), Some("h"));
    }

    #[test]
    fn refuses_containers_with_bad_labels() {
        for l in [
            vec![(labels::USERID, "alice")],
            vec![(labels::USERID, "../x"), (labels::APPNAME, "a")],
        ] {
            let s = summary(&l, ContainerSummaryStateEnum::RUNNING, "Up");
            assert!(Observed::from_summary(&s).is_none());
        }
    }
}
