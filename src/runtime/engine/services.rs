//! Swarm services (`runtime = "swarm"`, docs/guides/swarm.md): berth's apps listed as [`Observed`] from
//! the services carrying its labels, and made, updated, scaled and removed. The app's image is
//! built and pushed first (`app_image`); every node pulls it from the registry.

use std::collections::HashMap;

use bollard::models::{Service, ServiceSpec};
use bollard::query_parameters::{ListContainersOptions, ListServicesOptions, UpdateServiceOptions};

use super::service_spec::{service_spec, ServiceInput};
use super::tasks::Placed;
use super::{fail, Engine, EngineError};
use crate::model::desired::DesiredApp;
use crate::model::labels;
use crate::model::observed::{ContainerState, Observed, Tasks};

impl Engine {
    /// This instance's apps as services, in the shape the planner reads.
    pub async fn list_services(&self) -> Result<Vec<Observed>, EngineError> {
        let filters = HashMap::from([(
            "label".to_string(),
            labels::instance_filters(&self.instance),
        )]);
        let opts = ListServicesOptions {
            filters: Some(filters),
            status: Some(true),
        };
        let listed = self
            .docker
            .call("service_list")
            .list_services(Some(opts))
            .await
            .map_err(fail("list services"))?;
        let placed = match listed.is_empty() {
            true => HashMap::new(),
            false => self.placed(None).await?,
        };
        let seen = listed.iter().filter_map(|s| from_service(s, &placed));
        Ok(seen.collect())
    }

    /// Makes `app`'s service running `image`, with its tasks when `run`; answers its id.
    pub(in crate::runtime) async fn create_service(
        &self,
        app: &DesiredApp,
        image: &str,
        run: bool,
        stop_grace: std::time::Duration,
    ) -> Result<String, EngineError> {
        let _net = self.network_held(app).await;
        let network = self.overlay_of(app).await?;
        let node = self.volume_node(app).await?;
        let spec = self.service_of(app, image, run, stop_grace, (network, node));
        let name = spec.name.clone().unwrap_or_default();
        let made = self
            .docker
            .call("service_create")
            .create_service(spec, self.registry_auth.clone())
            .await
            .map_err(fail(format!("create service {name}")))?;
        Ok(made.id.unwrap_or(name))
    }

    /// Replaces service `id`'s spec with `app`'s (a rolling update, as its update config says).
    pub(in crate::runtime) async fn update_service(
        &self,
        id: &str,
        app: &DesiredApp,
        image: &str,
        run: bool,
        stop_grace: std::time::Duration,
    ) -> Result<Option<String>, EngineError> {
        let _net = self.network_held(app).await;
        let network = self.overlay_of(app).await?;
        let node = self.volume_node(app).await?;
        let spec = self.service_of(app, image, run, stop_grace, (network, node));
        let before = self.inspect_service(id).await?;
        let started = before.update_status.and_then(|u| u.started_at);
        self.put_service(id, spec, before.version.and_then(|v| v.index))
            .await?;
        Ok(started)
    }

    /// Waits for the rolling update Swarm began after the one that began at `before` (none:
    /// no earlier update) to end, up to `limit`. `Ok(None)`: done (or no rolling update was
    /// needed: the spec changed nothing of the tasks); `Ok(Some(why))`: Swarm rolled it back.
    pub(in crate::runtime) async fn wait_update(
        &self,
        id: &str,
        before: Option<String>,
        limit: std::time::Duration,
    ) -> Result<Option<String>, EngineError> {
        use bollard::models::ServiceUpdateStatusStateEnum as S;
        let began = std::time::Instant::now();
        loop {
            let status = self.inspect_service(id).await?.update_status;
            let ours = status.as_ref().filter(|u| u.started_at != before);
            match ours.and_then(|u| u.state.map(|s| (s, u.message.clone()))) {
                Some((S::COMPLETED, _)) => return Ok(None),
                // Rolled back for good; a rollback under way is waited for (it puts the old
                // spec back, and the refusal must not come before it).
                Some((S::ROLLBACK_COMPLETED | S::ROLLBACK_PAUSED | S::PAUSED, why)) => {
                    return Ok(Some(why.unwrap_or_else(|| "the new tasks failed".into())))
                }
                None if began.elapsed() > std::time::Duration::from_secs(3) => return Ok(None),
                _ if began.elapsed() > limit => {
                    return Err(super::EngineError {
                        op: format!("wait for the update of service {id}"),
                        source: bollard::errors::Error::RequestTimeoutError,
                    })
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
            }
        }
    }

    /// Sets service `id`'s task count: its `replicas` when `run`, else none.
    pub(in crate::runtime) async fn scale_service(
        &self,
        id: &str,
        replicas: u16,
        run: bool,
    ) -> Result<(), EngineError> {
        // One read for the spec and its version: a change in between is refused by Swarm.
        let found = self.inspect_service(id).await?;
        let mut spec = found.spec.unwrap_or_default();
        if let Some(r) = spec.mode.as_mut().and_then(|m| m.replicated.as_mut()) {
            r.replicas = Some(if run { i64::from(replicas) } else { 0 });
        }
        self.put_service(id, spec, found.version.and_then(|v| v.index))
            .await
    }

    /// Removes service `id`; one already gone is not an error.
    pub(in crate::runtime) async fn remove_service(&self, id: &str) -> Result<(), EngineError> {
        match self.docker.call("service_rm").delete_service(id).await {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            other => other.map_err(fail(format!("remove service {id}"))),
        }
    }

    fn service_of(
        &self,
        app: &DesiredApp,
        image: &str,
        run: bool,
        stop_grace: std::time::Duration,
        (network, node): (Option<(String, String)>, Option<String>),
    ) -> ServiceSpec {
        let name = app.key.container_name(&self.instance);
        let mut env: Vec<String> = app
            .spec
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        // Secrets reach the task's environment here and nowhere else, as for a container.
        env.extend(
            app.secret_env
                .iter()
                .map(|(k, v)| format!("{k}={}", v.expose())),
        );
        service_spec(ServiceInput {
            name: &name,
            spec: &app.spec,
            labels: labels::for_app(app, &self.instance),
            image,
            env,
            run,
            stop_grace_ns: i64::try_from(stop_grace.as_nanos()).unwrap_or(i64::MAX),
            network,
            health: app.health.as_ref(),
            node,
        })
    }

    /// For an app with named volumes: the volumes made here, labelled as the app's, and this
    /// engine's node, where its task is pinned. A volume lives on the node that made it, so
    /// the task must run where its data is, and a purge (run here) reaches it.
    async fn volume_node(&self, app: &DesiredApp) -> Result<Option<String>, EngineError> {
        if app.spec.volumes.is_empty() {
            return Ok(None);
        }
        self.ensure_volumes(app).await?;
        let info = self.docker.call("info").info().await;
        let info = info.map_err(fail("read this engine's swarm node"))?;
        let node = info
            .swarm
            .and_then(|s| s.node_id)
            .filter(|id| !id.is_empty());
        match node {
            Some(id) => Ok(Some(id)),
            None => Err(EngineError {
                op: "pin an app with volumes to this node".into(),
                source: bollard::errors::Error::DockerResponseServerError {
                    status_code: 503,
                    message: "this engine is not a swarm node".into(),
                },
            }),
        }
    }

    /// Waits until no container of service `id` is left on this engine, up to `limit`; one
    /// still there then is only logged (a purge of its volumes then fails, and says so).
    pub(in crate::runtime) async fn wait_tasks_gone(
        &self,
        id: &str,
        limit: std::time::Duration,
    ) -> Result<(), EngineError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("com.docker.swarm.service.id={id}")],
        )]);
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let began = std::time::Instant::now();
        loop {
            let left = self
                .docker
                .call("list")
                .list_containers(Some(opts.clone()))
                .await;
            if left
                .map_err(fail(format!("list the tasks of service {id}")))?
                .is_empty()
            {
                return Ok(());
            }
            if began.elapsed() > limit {
                tracing::warn!(
                    service = id,
                    "the removed service's tasks are still on this engine"
                );
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// The user's network lock, shared: its overlay is not removed while a service of the
    /// user is made or updated to join it (only for that call, not the build or the wait).
    async fn network_held(
        &self,
        app: &DesiredApp,
    ) -> Option<tokio::sync::OwnedRwLockReadGuard<()>> {
        let net = app.spec.network.as_deref()?;
        Some(self.network_lock(net).await.read_owned().await)
    }

    /// The user's overlay (made when missing) and the app's name on it, when the app has a
    /// network of its own (`network = "per-user"` in the tenancy policy).
    async fn overlay_of(&self, app: &DesiredApp) -> Result<Option<(String, String)>, EngineError> {
        let Some(name) = &app.spec.network else {
            return Ok(None);
        };
        let id = self.ensure_overlay(name, &app.key.userid).await?;
        Ok(Some((id, app.key.appname.clone())))
    }

    async fn inspect_service(&self, id: &str) -> Result<Service, EngineError> {
        self.docker
            .call("service_inspect")
            .inspect_service(id, None)
            .await
            .map_err(fail(format!("inspect service {id}")))
    }

    /// Writes `spec` over service `id` at `version` (the one it was read at).
    async fn put_service(
        &self,
        id: &str,
        spec: ServiceSpec,
        version: Option<u64>,
    ) -> Result<(), EngineError> {
        let opts = UpdateServiceOptions {
            version: i32::try_from(version.unwrap_or(0)).unwrap_or(i32::MAX),
            ..Default::default()
        };
        self.docker
            .call("service_update")
            .update_service(id, spec, opts, self.registry_auth.clone())
            .await
            .map(drop)
            .map_err(fail(format!("update service {id}")))
    }
}

/// A service of berth's as the planner sees it: running while it asks for tasks.
fn from_service(s: &Service, placed: &HashMap<String, Placed>) -> Option<Observed> {
    let spec = s.spec.as_ref()?;
    let app = crate::runtime::observe::AppLabels::read(spec.labels.as_ref()?)?;
    let replicas = spec
        .mode
        .as_ref()
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas)
        .unwrap_or(0);
    Some(Observed {
        id: s.id.clone()?,
        name: spec.name.clone().unwrap_or_default(),
        key: app.key,
        hash: app.hash,
        spec: app.spec,
        template: app.template,
        state: if replicas > 0 {
            ContainerState::Running
        } else {
            ContainerState::Exited(None)
        },
        created: 0,
        address: None,
        next: false,
        old: false,
        tasks: s.service_status.as_ref().map(|st| {
            let here = s.id.as_ref().and_then(|id| placed.get(id)).cloned();
            let here = here.unwrap_or_default();
            Tasks {
                wanted: st.desired_tasks.unwrap_or(0),
                running: st.running_tasks.unwrap_or(0),
                nodes: here.nodes,
                dials: here.dials,
            }
        }),
    })
}
