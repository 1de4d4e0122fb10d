//! Users' networks: made when an app of the user first needs one, removed when none uses it.
//! Docker does not keep network names unique: a create still running inside dockerd when its
//! berth was killed, and a create by the next berth, make two networks of one name, after
//! which a container that names the network by name cannot start ("ambiguous"). So the name
//! is looked up by listing; of several copies berth keeps the one most containers are
//! attached to (the oldest of equals), moves its own containers off the others (disconnect,
//! then connect to the kept copy under the same alias) and removes them; and a container is
//! created naming the kept copy by id, so a copy that could not go (a container that is not
//! berth's holds it) cannot make it ambiguous either.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use bollard::models::{
    EndpointSettings, Network, NetworkConnectRequest, NetworkCreateRequest,
    NetworkDisconnectRequest,
};
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptionsBuilder};

use super::{fail, Engine, EngineError};
use crate::model::labels;
use crate::runtime::isolation::{bridge_name, IsolationError};

/// One copy of a user's network and the containers attached to it (running or not).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Copy {
    id: String,
    /// Docker's `Created` (RFC 3339 with up to nine fraction digits).
    created: String,
    attached: Vec<Attached>,
}

/// A container attached to a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attached {
    id: String,
    /// The app name (its alias on the network) when the container is one of berth's.
    app: Option<String>,
}

impl Engine {
    /// Makes `name` (a user's network) exist, labelled as berth's, and answers the id of the
    /// copy a container should join; one that already exists is fine (and its duplicates are
    /// settled). The caller holds the network's lock alone ([`network_lock`](Self::network_lock)).
    pub(in crate::runtime) async fn ensure_network(
        &self,
        name: &str,
        userid: &str,
    ) -> Result<String, EngineError> {
        let mut found = self.networks_named(name).await?;
        self.refuse_foreign(name, userid, &found)?;
        if found.is_empty() {
            let request = NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                labels: Some(labels::for_network(&self.instance, userid)),
                ..Default::default()
            };
            match self
                .docker
                .call("network_create")
                .create_network(request)
                .await
            {
                Ok(made) => return Ok(made.id),
                // Made meanwhile, by an engine that refuses a second copy of a name.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) => found = self.networks_named(name).await?,
                Err(e) => return Err(fail(format!("create network {name}"))(e)),
            }
            self.refuse_foreign(name, userid, &found)?;
        }
        self.keep_one(name, found).await
    }

    /// A network of that name that berth did not make is not joined: it could be anyone's
    /// (another user's service, the host's).
    pub(super) fn refuse_foreign(
        &self,
        name: &str,
        userid: &str,
        found: &[Network],
    ) -> Result<(), EngineError> {
        let ours = |n: &Network| {
            let labels = n.labels.clone().unwrap_or_default();
            labels.get(labels::INSTANCE) == Some(&self.instance)
                && labels.get(labels::USERID).map(String::as_str) == Some(userid)
        };
        if found.iter().all(ours) {
            return Ok(());
        }
        Err(EngineError {
            op: format!("join network {name}"),
            source: bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message: "a network of that name exists and is not berth's; remove or rename it"
                    .into(),
            },
        })
    }

    /// Networks named exactly `name` (Docker's filter matches parts of names).
    pub(super) async fn networks_named(&self, name: &str) -> Result<Vec<Network>, EngineError> {
        let filters = HashMap::from([("name", vec![name])]);
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let all = self
            .docker
            .call("network_list")
            .list_networks(Some(options))
            .await
            .map_err(fail(format!("list networks named {name}")))?;
        Ok(all
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .collect())
    }

    /// Of berth's copies of `name`, keeps the one [`keep_order`] puts first, empties the
    /// others of berth's containers onto it and removes them; answers the kept id.
    async fn keep_one(&self, name: &str, found: Vec<Network>) -> Result<String, EngineError> {
        let mut copies = Vec::with_capacity(found.len());
        for n in found {
            let Some(id) = n.id else { continue };
            let attached = self.attached(&id).await?;
            let created = n.created.unwrap_or_default();
            copies.push(Copy {
                id,
                created,
                attached,
            });
        }
        copies.sort_by(keep_order);
        let mut copies = copies.into_iter();
        let Some(keep) = copies.next() else {
            return Err(fail(format!("find network {name}"))(
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    message: "the network went away while it was being made".into(),
                },
            ));
        };
        for extra in copies {
            if self.move_off(name, &extra, &keep.id).await {
                self.remove_copy(name, &extra.id).await;
            }
        }
        Ok(keep.id)
    }

    /// Every container attached to the network `id`, running or stopped (Docker's network
    /// list and inspect show running ones only, and a stopped one could not start again once
    /// its network was removed).
    async fn attached(&self, id: &str) -> Result<Vec<Attached>, EngineError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "network".to_string(),
                vec![id.to_string()],
            )])),
            ..Default::default()
        };
        let list = self
            .docker
            .call("list")
            .list_containers(Some(options))
            .await
            .map_err(fail(format!("list containers on network {id}")))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let ours = labels.get(labels::TYPE).map(String::as_str)
                    == Some(labels::TYPE_USER_APP)
                    && labels.get(labels::INSTANCE) == Some(&self.instance);
                let app = labels.get(labels::APPNAME).filter(|_| ours).cloned();
                Some(Attached { id: c.id?, app })
            })
            .collect())
    }

    /// Moves berth's containers from the copy `from` to the network `to`, each under its app
    /// name as alias; answers whether `from` is left with none of berth's. A container that is
    /// not berth's is not touched (its copy then stays, and is no harm: creates name `to`).
    async fn move_off(&self, name: &str, from: &Copy, to: &str) -> bool {
        let mut all_moved = true;
        for c in &from.attached {
            let Some(app) = &c.app else { continue };
            if let Err(e) = self.reattach(&c.id, app, &from.id, to).await {
                tracing::warn!(network = name, container = %c.id, cause = %e, "cannot move a container off a duplicate of its user's network");
                all_moved = false;
            }
        }
        all_moved
    }

    /// Disconnects container `id` from network `from` and connects it to `to`; when the
    /// second step fails it is put back on `from`, so it is never left on no network.
    async fn reattach(&self, id: &str, app: &str, from: &str, to: &str) -> Result<(), EngineError> {
        let disconnect = NetworkDisconnectRequest {
            container: id.to_string(),
            force: Some(true),
        };
        self.docker
            .call("network_disconnect")
            .disconnect_network(from, disconnect)
            .await
            .map_err(fail(format!("disconnect {id} from network {from}")))?;
        let moved = self.join(id, app, to).await;
        if moved.is_err() {
            if let Err(e) = self.join(id, app, from).await {
                tracing::warn!(container = %id, cause = %e, "cannot put a container back on its network");
            }
        }
        moved
    }

    /// Connects container `id` to network `net` (by id, so no copy of its name is ambiguous)
    /// under the alias `app`, as a create would.
    async fn join(&self, id: &str, app: &str, net: &str) -> Result<(), EngineError> {
        let request = NetworkConnectRequest {
            container: id.to_string(),
            endpoint_config: Some(EndpointSettings {
                network_id: Some(net.to_string()),
                aliases: Some(vec![app.to_string()]),
                ..Default::default()
            }),
        };
        self.docker
            .call("network_connect")
            .connect_network(net, request)
            .await
            .map_err(fail(format!("connect {id} to network {net}")))
    }

    /// Removes a duplicate copy; one that something else still uses stays.
    async fn remove_copy(&self, name: &str, id: &str) {
        match self.docker.call("network_remove").remove_network(id).await {
            Ok(()) => {
                tracing::warn!(network = name, id = %id, "removed a duplicate of a user's network (left by a killed berth)")
            }
            Err(e) => {
                tracing::warn!(network = name, id = %id, cause = %e, "a duplicate of a user's network is still in use")
            }
        }
    }

    /// Removes a user's network when no container uses it any more; one still in use or
    /// already gone is left as it is. Answers whether it is still there (in use).
    pub(in crate::runtime) async fn remove_network_if_unused(
        &self,
        name: &str,
    ) -> Result<bool, EngineError> {
        match self
            .docker
            .call("network_remove")
            .remove_network(name)
            .await
        {
            Ok(()) => Ok(false),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            // A swarm's overlay removed meanwhile: a manager answers 500 "not found".
            Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                if message.ends_with("not found") =>
            {
                Ok(false)
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 403 | 409,
                ..
            }) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                if message.contains("active endpoints") || message.contains("in use") =>
            {
                Ok(true)
            }
            Err(e) => Err(fail(format!("remove network {name}"))(e)),
        }
    }
}

impl Engine {
    /// The bridges of this instance's user networks (bridge driver; swarm overlays have none).
    async fn berth_bridges(&self) -> Result<BTreeSet<String>, EngineError> {
        let ours = [
            format!("{}={}", labels::INSTANCE, self.instance),
            format!("{}={}", labels::TYPE, labels::TYPE_USER_NETWORK),
        ];
        let filters = HashMap::from([
            ("label", ours.iter().map(String::as_str).collect()),
            ("driver", vec!["bridge"]),
        ]);
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let all = self
            .docker
            .call("network_list")
            .list_networks(Some(options))
            .await
            .map_err(fail("list berth's networks"))?;
        Ok(all
            .into_iter()
            .filter_map(|n| {
                let named = n.options.and_then(|mut o| o.remove(BRIDGE_NAME_OPTION));
                named.or_else(|| n.id.as_deref().map(bridge_name))
            })
            .collect())
    }

    /// Brings berth's isolation rules in line with its user networks (module
    /// `runtime::isolation`). With `joining` (a network id a container is about to join),
    /// nothing is done when the rules already cover it; otherwise the networks are listed.
    pub(in crate::runtime) async fn isolate(
        &self,
        joining: Option<&str>,
    ) -> Result<(), IsolationError> {
        let mut held = self.isolation.hold().await;
        if let (Some(id), Some(applied)) = (joining, held.as_ref()) {
            if applied.contains(&bridge_name(id)) {
                return Ok(());
            }
        }
        let wanted = self.berth_bridges().await?;
        self.isolation.apply(&mut held, wanted).await
    }

    /// Puts the isolation rules back as they were last applied (one deleted by hand, the
    /// jump removed); the first time, from a list of the networks. Each pass calls it: a pass
    /// over unchanged state asks the engine nothing for it.
    pub async fn heal_isolation(&self) -> Result<(), IsolationError> {
        let mut held = self.isolation.hold().await;
        let wanted = match held.clone() {
            Some(applied) => applied,
            None => self.berth_bridges().await?,
        };
        self.isolation.apply(&mut held, wanted).await
    }
}

/// The network option that names its bridge interface (berth sets none; honoured if set).
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// The copy to keep first: the one most containers are attached to, then the oldest (the one
/// a create by name found first), then the smaller id, so every berth picks the same one.
fn keep_order(a: &Copy, b: &Copy) -> Ordering {
    b.attached
        .len()
        .cmp(&a.attached.len())
        .then_with(|| sortable_time(&a.created).cmp(&sortable_time(&b.created)))
        .then_with(|| a.id.cmp(&b.id))
}

/// An RFC 3339 time with its fraction padded to nine digits, so that two of one engine (one
/// offset) compare as text: Docker drops trailing zeros, and the fraction when it is zero.
fn sortable_time(t: &str) -> String {
    let split = t.find('T').map_or(t.len(), |i| i + 9);
    let (Some(head), Some(rest)) = (t.get(..split), t.get(split..)) else {
        return t.to_string();
    };
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let (fraction, zone) = rest.split_at(digits);
    format!("{head}.{fraction:0<9}{zone}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(id: &str, created: &str, attached: usize) -> Copy {
        let attached = (0..attached)
            .map(|i| Attached {
                id: format!("c{i}"),
                app: Some(format!("app{i}")),
            })
            .collect();
        Copy {
            id: id.into(),
            created: created.into(),
            attached,
        }
    }

    fn kept(mut copies: Vec<Copy>) -> String {
        copies.sort_by(keep_order);
        copies[0].id.clone()
    }

    #[test]
    fn keeps_the_copy_in_use_over_an_older_empty_one() {
        let late = copy("a", "2025-01-01T10:00:00.1Z", 0);
        let used = copy("b", "2025-01-01T10:00:01.2Z", 1);
        assert_eq!(kept(vec![late.clone(), used.clone()]), "b");
        assert_eq!(kept(vec![used, late]), "b");
    }

    #[test]
    fn keeps_the_busiest_copy_then_the_oldest_then_the_smaller_id() {
        let one = copy("a", "2025-01-01T10:00:00Z", 1);
        let two = copy("b", "2025-01-01T10:00:09Z", 2);
        assert_eq!(kept(vec![one.clone(), two]), "b");
        let older = copy("c", "2025-01-01T10:00:05.12Z", 1);
        let newer = copy("d", "2025-01-01T10:00:05.2Z", 1);
        assert_eq!(kept(vec![newer, older, one.clone()]), "a");
        let twin = copy("0", "2025-01-01T10:00:00Z", 1);
        assert_eq!(kept(vec![one, twin]), "0");
    }

    #[test]
    fn pads_fractions_so_times_compare_as_text() {
        assert_eq!(
            sortable_time("2025-01-01T10:00:05.1Z"),
            "2025-01-01T10:00:05.100000000Z"
        );
        assert_eq!(
            sortable_time("2025-01-01T10:00:05.123+01:00"),
            "2025-01-01T10:00:05.123000000+01:00"
        );
        assert_eq!(
            sortable_time("2025-01-01T10:00:05Z"),
            "2025-01-01T10:00:05.000000000Z"
        );
        assert!(sortable_time("2025-01-01T10:00:05Z") < sortable_time("2025-01-01T10:00:05.1Z"));
        assert!(sortable_time("2025-01-01T10:00:05.1Z") < sortable_time("2025-01-01T10:00:05.12Z"));
    }
}
