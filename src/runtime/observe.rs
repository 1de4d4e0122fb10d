//! Docker's container list entries turned into [`Observed`]: the one place that reads
//! berth's labels back off a container.

use std::collections::HashMap;

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};

use crate::model::labels;
use crate::model::names::{AppKey, NEXT_SUFFIX, OLD_SUFFIX};
use crate::model::observed::{ContainerState, Observed};

/// Converts a list entry; `None` when its user/app labels are missing or invalid (berth
/// did not make it that way, so it will not act on it).
pub fn from_summary(s: &ContainerSummary) -> Option<Observed> {
    let empty = HashMap::new();
    let app = AppLabels::read(s.labels.as_ref().unwrap_or(&empty))?;
    let state = match s.state {
        Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
        Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD) => {
            ContainerState::Exited(s.status.as_deref().and_then(exit_code))
        }
        _ => ContainerState::Running,
    };
    let name = s
        .names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    Some(Observed {
        id: s.id.clone()?,
        next: name.ends_with(NEXT_SUFFIX),
        old: name.ends_with(OLD_SUFFIX),
        tasks: None,
        name,
        key: app.key,
        hash: app.hash,
        spec: app.spec,
        template: app.template,
        state,
        created: s.created.unwrap_or(0),
        address: address(s),
    })
}

/// What berth's labels say of a container or a service: whose it is and what it was made as.
pub struct AppLabels {
    /// `paas.userid` / `paas.appname`.
    pub key: AppKey,
    /// `paas.spec-hash`.
    pub hash: Option<String>,
    /// `paas.spec`, parsed.
    pub spec: Option<crate::model::spec::ContainerSpec>,
    /// `paas.template`.
    pub template: Option<String>,
}

impl AppLabels {
    /// `None` when the user/app labels are missing or invalid.
    pub fn read(l: &HashMap<String, String>) -> Option<AppLabels> {
        Some(AppLabels {
            key: AppKey::new(l.get(labels::USERID)?, l.get(labels::APPNAME)?).ok()?,
            hash: l.get(labels::SPEC_HASH).cloned(),
            spec: l
                .get(labels::SPEC)
                .and_then(|j| serde_json::from_str(j).ok()),
            template: l.get(labels::TEMPLATE).cloned(),
        })
    }
}

fn address(s: &ContainerSummary) -> Option<String> {
    preferred_address(s.network_settings.as_ref()?.networks.as_ref()?)
}

/// The container's IP address: on a berth user network if it has one, else on any network.
pub fn preferred_address(
    networks: &HashMap<String, bollard::models::EndpointSettings>,
) -> Option<String> {
    let ip = |(_, e): (&String, &bollard::models::EndpointSettings)| {
        e.ip_address.clone().filter(|ip| !ip.is_empty())
    };
    let mut sorted: Vec<_> = networks.iter().collect();
    sorted.sort_by_key(|(name, _)| (!name.starts_with("berth-"), name.as_str()));
    sorted.into_iter().find_map(ip)
}

/// Reads the code out of Docker's status text, e.g. `Exited (137) 5 seconds ago`.
fn exit_code(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest[..rest.find(')')?].parse().ok()
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
        let o = from_summary(&s).unwrap();
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
            assert!(from_summary(&s).is_none());
        }
    }
}
