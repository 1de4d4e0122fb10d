//! Users' networks: made when an app of the user first needs one, removed when none uses it.
//! Docker does not keep network names unique: a create still running inside dockerd when its
//! berth was killed, and a create by the next berth, make two networks of one name, after
//! which every container create naming it fails ("ambiguous"), and each retry made one more
//! until the address pools ran out. So the name is looked up by listing, and berth's own
//! extra copies of it are removed while empty.

use std::collections::HashMap;

use bollard::models::{Network, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptionsBuilder;

use super::{fail, Engine, EngineError};
use crate::model::labels;

impl Engine {
    /// Makes `name` (a user's network) exist, labelled as berth's; one that already exists
    /// is fine (and its empty duplicates are removed). The caller holds the network's lock
    /// ([`locked`](Self::locked)).
    pub(in crate::runtime) async fn ensure_network(
        &self,
        name: &str,
        userid: &str,
    ) -> Result<(), EngineError> {
        let found = self.networks_named(name).await?;
        let ours = |n: &Network| {
            let labels = n.labels.clone().unwrap_or_default();
            labels.get(labels::INSTANCE) == Some(&self.instance)
                && labels.get(labels::USERID).map(String::as_str) == Some(userid)
        };
        if found.iter().any(|n| !ours(n)) {
            // A network of that name that berth did not make is not joined: it could be
            // anyone's (another user's service, the host's).
            return Err(EngineError {
                op: format!("join network {name}"),
                source: bollard::errors::Error::DockerResponseServerError {
                    status_code: 409,
                    message:
                        "a network of that name exists and is not berth's; remove or rename it"
                            .into(),
                },
            });
        }
        if !found.is_empty() {
            self.drop_duplicates(name, found).await;
            return Ok(());
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(labels::for_network(&self.instance, userid)),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            r => r
                .map(|_| ())
                .map_err(fail(format!("create network {name}"))),
        }
    }

    /// Networks named exactly `name` (Docker's filter matches parts of names).
    async fn networks_named(&self, name: &str) -> Result<Vec<Network>, EngineError> {
        let filters = HashMap::from([("name", vec![name])]);
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let all = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(fail(format!("list networks named {name}")))?;
        Ok(all
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .collect())
    }

    /// Keeps the oldest of berth's networks named `name` and removes the others that no
    /// container uses (one in use stays: its containers are recreated onto the kept one in
    /// time, and it is removed then).
    async fn drop_duplicates(&self, name: &str, mut found: Vec<Network>) {
        found.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        for extra in found.iter().skip(1) {
            let Some(id) = &extra.id else { continue };
            match self.docker.remove_network(id).await {
                Ok(()) => {
                    tracing::warn!(network = name, id = %id, "removed a duplicate of a user's network (left by a killed berth)")
                }
                Err(e) => {
                    tracing::debug!(network = name, id = %id, cause = %e, "a duplicate network is still in use")
                }
            }
        }
    }

    /// Removes a user's network when no container uses it any more; one still in use or
    /// already gone is left as it is.
    pub(in crate::runtime) async fn remove_network_if_unused(
        &self,
        name: &str,
    ) -> Result<(), EngineError> {
        match self.docker.remove_network(name).await {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 403 | 404 | 409,
                ..
            }) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                if message.contains("active endpoints") =>
            {
                Ok(())
            }
            r => r.map_err(fail(format!("remove network {name}"))),
        }
    }
}
