//! Users' overlay networks in swarm mode (docs/guides/swarm.md, docs/guides/tenancy.md): the counterpart of a user's bridge
//! network on one engine. Every service of a user joins `berth-<instance>-<user>` under its
//! app name, so a user's apps reach each other by name on any node and other users' apps
//! cannot reach them. Swarm keeps overlay names unique, so no copies are settled here.

use bollard::models::{Network, NetworkCreateRequest};

use super::{fail, Engine, EngineError};

/// How many times an overlay another create made is looked for, a quarter second apart.
const LIST_TRIES: u32 = 12;
use crate::model::labels;

impl Engine {
    /// Makes `name` (a user's overlay) exist and answers its id. A bridge network of berth's
    /// by that name, left by the docker runtime, is removed first (the switch to swarm waits
    /// until no container is left, so none is attached); a network berth did not make is
    /// refused.
    pub(in crate::runtime) async fn ensure_overlay(
        &self,
        name: &str,
        userid: &str,
    ) -> Result<String, EngineError> {
        if let Some(id) = self.overlay_named(name, userid).await? {
            return Ok(id);
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("overlay".into()),
            labels: Some(labels::for_network(&self.instance, userid)),
            ..Default::default()
        };
        match self
            .docker
            .call("network_create")
            .create_network(request)
            .await
        {
            Ok(made) => Ok(made.id),
            // Made meanwhile, for another app of the user: Swarm keeps one per name and
            // answers 409 or 500 ("name conflicts with an existing object"), and this engine
            // may list it only a moment later.
            Err(e) => {
                for _ in 0..LIST_TRIES {
                    if let Some(id) = self.overlay_named(name, userid).await? {
                        return Ok(id);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(fail(format!("create overlay network {name}"))(e))
            }
        }
    }

    /// The id of berth's overlay `name`, if there is one; a bridge of berth's by that name is
    /// removed on the way, one not berth's is refused.
    async fn overlay_named(&self, name: &str, userid: &str) -> Result<Option<String>, EngineError> {
        let found = self.networks_named(name).await?;
        self.refuse_foreign(name, userid, &found)?;
        for net in found {
            let id = net.id.clone().unwrap_or_default();
            if is_overlay(&net) {
                return Ok(Some(id));
            }
            if self.remove_network_if_unused(&id).await? {
                return Err(held(name));
            }
        }
        Ok(None)
    }
}

/// Whether a listed network is a swarm's overlay. One just made by another create lists with
/// no driver until Swarm has allocated it: its scope is what says so, and it is never removed
/// as a leftover bridge.
fn is_overlay(net: &Network) -> bool {
    net.scope.as_deref() == Some("swarm") || net.driver.as_deref() == Some("overlay")
}

fn held(name: &str) -> EngineError {
    EngineError {
        op: format!("make overlay network {name}"),
        source: bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message: "a bridge network of that name is still in use; remove what is attached to it"
                .into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(scope: &str, driver: Option<&str>) -> Network {
        Network {
            scope: Some(scope.into()),
            driver: driver.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn an_overlay_swarm_has_not_allocated_yet_is_an_overlay_not_a_leftover() {
        assert!(is_overlay(&listed("swarm", None)));
        assert!(is_overlay(&listed("swarm", Some(""))));
        assert!(is_overlay(&listed("swarm", Some("overlay"))));
    }

    #[test]
    fn a_local_bridge_is_a_leftover_to_remove() {
        assert!(!is_overlay(&listed("local", Some("bridge"))));
    }
}
