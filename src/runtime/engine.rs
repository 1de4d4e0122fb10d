//! The Docker engine, through bollard: the only module that talks to Docker. Connects with API
//! version negotiation (Debian's Docker 20.10 speaks 1.41 at most), lists this instance's
//! containers, follows their events, reads logs, and does the writes berth needs (pull,
//! create, start, stop, remove). **The writes are `pub(in crate::runtime)`:** only the
//! executor calls them, so no surface can change a container except by writing a manifest.
//! Every call goes through `client`, which counts it by operation and bounds the container
//! writes in time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, RenameContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use tokio::sync::Mutex;

use crate::model::desired::DesiredApp;
use crate::model::labels;
use crate::model::names::AppKey;
use crate::model::observed::Observed;
use crate::runtime::engine_check::{bounded, LIST_BOUND};

mod app_image;
mod body;
mod built_images;
mod client;
mod container_events;
mod error;
mod exec;
mod image_prune;
mod job_runs;
mod networks;
mod oneoff;
mod overlays;
mod registry_auth;
mod service_spec;
mod services;
mod tasks;

pub use image_prune::app_image_repo;
pub use tasks::LiveTask;
mod volumes;

pub use body::create_body;
pub use client::{uncounted, CallCounter, DEFAULT_WRITE_BOUND};
use container_events::event_of;
pub use container_events::ContainerEvent;
use error::fail;
pub use error::EngineError;
pub use job_runs::FoundRun;
pub(in crate::runtime) use oneoff::Job;

/// A connection to the engine, scoped to one berth instance.
#[derive(Clone)]
pub struct Engine {
    /// The negotiated client; every call through it is counted.
    docker: client::Client,
    /// Label value that scopes every list and event subscription.
    instance: String,
    /// One lock per image, so apps sharing a missing one pull it once.
    locks: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
    /// Per user network: creators share it (read) once the network exists; making the
    /// network and removing it take it alone (write).
    net_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>>,
    /// `[registry_login]` (swarm mode; `registry_auth`).
    registry_auth: Option<bollard::auth::DockerCredentials>,
    /// berth's rules between its user networks (`networks` keeps them in step).
    isolation: Arc<crate::runtime::isolation::Isolation>,
}

impl Engine {
    /// Connects (honouring `DOCKER_HOST`) and negotiates the API version with the engine.
    pub async fn connect(instance: &str) -> Result<Engine, EngineError> {
        Engine::connect_counted(instance, uncounted()).await
    }

    /// [`connect`](Self::connect), telling `counter` of every call made to the engine from
    /// the first one on.
    pub async fn connect_counted(
        instance: &str,
        counter: CallCounter,
    ) -> Result<Engine, EngineError> {
        let docker = Docker::connect_with_defaults().map_err(fail("connect"))?;
        counter("version");
        let docker = docker
            .negotiate_version()
            .await
            .map_err(fail("negotiate API version"))?;
        let docker = client::Client::new(docker, counter);
        docker.call("ping").ping().await.map_err(fail("ping"))?;
        Ok(Engine {
            docker,
            instance: instance.to_string(),
            locks: Default::default(),
            net_locks: Default::default(),
            registry_auth: None,
            isolation: Arc::new(crate::runtime::isolation::Isolation::new(instance)),
        })
    }

    /// Whether the engine answers a ping within `bound`.
    pub async fn ping_within(&self, bound: Duration) -> Result<(), EngineError> {
        let ping = self.docker.call("ping").ping();
        bounded("ping", bound, async {
            ping.await.map(drop).map_err(fail("ping"))
        })
        .await
    }

    /// Every container with this instance's labels (running or not).
    pub async fn list(&self) -> Result<Vec<Observed>, EngineError> {
        let filters = HashMap::from([(
            "label".to_string(),
            labels::instance_filters(&self.instance),
        )]);
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self.docker.call("list").list_containers(Some(opts));
        let list = bounded("list containers", LIST_BOUND, async {
            list.await.map_err(fail("list containers"))
        })
        .await?;
        Ok(list
            .iter()
            .filter_map(crate::runtime::observe::from_summary)
            .collect())
    }

    /// Pulls `image` unless the engine already has it. Concurrent callers for one image wait
    /// for a single pull.
    pub(in crate::runtime) async fn ensure_image(&self, image: &str) -> Result<(), EngineError> {
        let lock = self.locked(image).await;
        let _guard = lock.lock().await;
        if self.has_image(image).await? {
            return Ok(());
        }
        let (repo, tag) = split_image(image);
        let opts = CreateImageOptions {
            from_image: Some(repo),
            tag: Some(tag),
            ..Default::default()
        };
        let auth = self.registry_auth_for(image);
        let mut stream = self
            .docker
            .call("pull")
            .create_image(Some(opts), None, auth);
        while let Some(step) = stream.next().await {
            step.map_err(fail(format!("pull {image}")))?;
        }
        Ok(())
    }

    /// The name of `key`'s container, and of a rollout's new one beside it.
    pub fn names(&self, key: &AppKey) -> (String, String) {
        (
            key.container_name(&self.instance),
            key.next_container_name(&self.instance),
        )
    }

    /// The name a rollout gives `key`'s old container once the route has left it.
    pub fn old_name(&self, key: &AppKey) -> String {
        key.old_container_name(&self.instance)
    }

    /// Creates a container of the app named `name` (not started) and returns its id;
    /// `network` is the id of the user's network it joins ([`Engine::ensure_network`]).
    pub(in crate::runtime) async fn create(
        &self,
        app: &DesiredApp,
        name: &str,
        network: Option<&str>,
    ) -> Result<String, EngineError> {
        let name = name.to_string();
        let opts = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let labels = labels::for_app(app, &self.instance);
        let mut body = create_body(&app.spec, &app.key.appname, labels, network);
        // Secrets reach the environment here and nowhere else (not the spec, not the labels).
        let env = body.env.get_or_insert_with(Vec::new);
        env.extend(
            app.secret_env
                .iter()
                .map(|(k, v)| format!("{k}={}", v.expose())),
        );
        let (call, what) = (self.docker.call("create"), format!("create {name}"));
        let created = call.create_container(Some(opts), body);
        let bound = self.docker.write_bound();
        let created = self
            .docker
            .bounded(("create", &what), bound, created)
            .await?;
        Ok(created.map_err(fail(what))?.id)
    }

    /// Whether a container runs, how it exited, and its address (berth's user network
    /// first), as a rollout's health gate needs them.
    pub(in crate::runtime) async fn inspect(&self, id: &str) -> Result<Inspected, EngineError> {
        let c = self
            .docker
            .call("inspect")
            .inspect_container(id, None)
            .await
            .map_err(fail(format!("inspect {id}")))?;
        let state = c.state.unwrap_or_default();
        let networks = c
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        Ok(Inspected {
            running: state.running.unwrap_or(false),
            exit_code: state.exit_code,
            address: crate::runtime::observe::preferred_address(&networks),
        })
    }

    /// Resolves when the container is not running (at once if it is not), with its exit code.
    pub(in crate::runtime) async fn exited(&self, id: &str) -> Result<Option<i64>, EngineError> {
        let opts = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut stream = self.docker.call("wait").wait_container(id, Some(opts));
        match stream.next().await {
            Some(Ok(r)) => Ok(Some(r.status_code)),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                Ok(Some(code))
            }
            Some(Err(e)) => Err(fail(format!("wait for {id}"))(e)),
            None => Ok(None),
        }
    }

    /// Renames a container (a rollout's new one, settling under the app's name).
    pub(in crate::runtime) async fn rename(&self, id: &str, name: &str) -> Result<(), EngineError> {
        let opts = RenameContainerOptions {
            name: name.to_string(),
        };
        self.docker
            .call("rename")
            .rename_container(id, opts)
            .await
            .map_err(fail(format!("rename {id} to {name}")))
    }

    /// Starts a container; starting a running one is not an error.
    pub(in crate::runtime) async fn start(&self, id: &str) -> Result<(), EngineError> {
        let (start, what) = (self.docker.call("start"), format!("start {id}"));
        let started = start.start_container(id, None);
        let bound = self.docker.write_bound();
        match self
            .docker
            .bounded(("start", &what), bound, started)
            .await?
        {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            r => r.map_err(fail(what)),
        }
    }

    /// Stops a container with the configured grace period; stopping a stopped one is fine.
    pub(in crate::runtime) async fn stop(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        let opts = StopContainerOptions {
            t: Some(timeout.as_secs().min(i32::MAX as u64) as i32),
            signal: None,
        };
        let (stop, what) = (self.docker.call("stop"), format!("stop {id}"));
        let stopped = stop.stop_container(id, Some(opts));
        // The engine waits the grace period before it kills: that is not a hang.
        let bound = timeout + self.docker.write_bound();
        match self.docker.bounded(("stop", &what), bound, stopped).await? {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            r => r.map_err(fail(what)),
        }
    }

    /// Removes a container (forcing, in case it restarted meanwhile); a missing one is fine.
    pub(in crate::runtime) async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let opts = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let (remove, what) = (self.docker.call("remove"), format!("remove {id}"));
        let removed = remove.remove_container(id, Some(opts));
        let bound = self.docker.write_bound();
        match self
            .docker
            .bounded(("remove", &what), bound, removed)
            .await?
        {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // A removal asked by a berth killed since is still running in dockerd: it ends
            // where this one would, so wait for it instead of failing the change.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => self.wait_gone(id).await,
            r => r.map_err(fail(what)),
        }
    }

    /// Fails as a 409 conflict when a container named `name` exists: one berth does not
    /// manage (the planner settles its own), which a create under that name would meet.
    pub(in crate::runtime) async fn refuse_taken_name(
        &self,
        name: &str,
    ) -> Result<(), EngineError> {
        let found = self
            .docker
            .call("inspect")
            .inspect_container(name, None)
            .await;
        match found.map_err(fail(format!("inspect {name}"))) {
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Err(fail(format!("create {name}"))(
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 409,
                    message: format!("Conflict: the name {name} is taken by a container berth does not manage; remove it"),
                },
            )),
        }
    }

    /// Waits (up to 30 s) until container `id` no longer exists.
    async fn wait_gone(&self, id: &str) -> Result<(), EngineError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self
                .docker
                .call("inspect")
                .inspect_container(id, None)
                .await
            {
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(()),
                Err(e) => return Err(fail(format!("remove {id}"))(e)),
                Ok(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(fail(format!("remove {id}"))(
                        bollard::errors::Error::DockerResponseServerError {
                            status_code: 409,
                            message: "an earlier removal is still in progress after 30 s".into(),
                        },
                    ))
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The lock for one image or network name.
    pub(in crate::runtime) async fn locked(&self, name: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .await
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// The lock for one user network.
    pub(in crate::runtime) async fn network_lock(
        &self,
        name: &str,
    ) -> Arc<tokio::sync::RwLock<()>> {
        let mut map = self.net_locks.lock().await;
        map.entry(name.to_string()).or_default().clone()
    }

    /// The last `tail` lines a container (or, with `service`, a service's tasks) wrote, stdout
    /// and stderr as they came, streamed.
    pub fn logs(
        &self,
        id: &str,
        tail: u32,
        service: bool,
    ) -> impl Stream<Item = Result<bytes::Bytes, EngineError>> + Send + 'static {
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        let op = format!("logs {id}");
        let docker = match service {
            true => self
                .docker
                .call("service_logs")
                .service_logs(id, Some(opts))
                .left_stream(),
            false => self.docker.call("logs").logs(id, Some(opts)).right_stream(),
        };
        docker.map(move |r| r.map(|o| o.into_bytes()).map_err(fail(op.clone())))
    }

    /// Container events for this instance's containers from `since` on (the engine replays
    /// the ones it still holds from before the subscription); ends on a connection error.
    pub fn events(
        &self,
        since: SystemTime,
    ) -> impl Stream<Item = Result<ContainerEvent, EngineError>> + Send + 'static {
        let mut filters = HashMap::from([("type".to_string(), vec!["container".to_string()])]);
        filters.insert(
            "label".to_string(),
            labels::instance_filters(&self.instance),
        );
        let since = since.duration_since(UNIX_EPOCH).unwrap_or_default();
        let opts = EventsOptions {
            filters: Some(filters),
            since: Some(format!("{}.{:09}", since.as_secs(), since.subsec_nanos())),
            ..Default::default()
        };
        self.docker
            .call("events")
            .events(Some(opts))
            .map(|e| e.map(|m| event_of(&m)).map_err(fail("events")))
    }
}

/// What [`Engine::inspect`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// Up.
    pub running: bool,
    /// The exit code once it stopped.
    pub exit_code: Option<i64>,
    /// Its IP address.
    pub address: Option<String>,
}

/// `repo[:tag]` -> (repo, tag); a registry port (`host:5000/x`) is not a tag.
fn split_image(image: &str) -> (String, String) {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_image_references() {
        assert_eq!(
            split_image("node:22-alpine"),
            ("node".into(), "22-alpine".into())
        );
        assert_eq!(split_image("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(
            split_image("reg:5000/x/y"),
            ("reg:5000/x/y".into(), "latest".into())
        );
        assert_eq!(
            split_image("reg:5000/x:1"),
            ("reg:5000/x".into(), "1".into())
        );
    }
}
