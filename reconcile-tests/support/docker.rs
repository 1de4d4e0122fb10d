//! Docker-side helpers for the reconcile tests: connecting (version negotiated, never pinned),
//! inspecting one app's container, listing an instance's containers, collecting the engine's
//! event stream for one instance (`EventLog`), and the CLI-based cleanup the Drop guards use.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerInspectResponse, ContainerSummary, EventMessage};
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;

use super::{wait_until, TestRoot};

/// A client for the local engine, negotiated to its API version. Panics loudly without one.
pub async fn connect() -> Docker {
    let docker = Docker::connect_with_defaults()
        .unwrap_or_else(|e| panic!("cannot reach a Docker engine: {e}"));
    docker
        .negotiate_version()
        .await
        .unwrap_or_else(|e| panic!("Docker engine does not answer: {e}"))
}

/// Force-removes every container and network labelled `paas.instance=<instance>`, and the
/// instance's isolation rules in iptables (and nothing else).
/// Synchronous (CLI) so Drop guards can call it from any context.
pub fn remove_instance_containers(instance: &str) {
    let filter = format!("label=paas.instance={instance}");
    let Ok(out) = Command::new("docker")
        .args(["ps", "-aq", "--filter", &filter])
        .output()
    else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
    // So do the apps' named volumes (a plain delete keeps them; the test is over).
    if let Ok(out) = Command::new("docker")
        .args(["volume", "ls", "-q", "--filter", &filter])
        .output()
    {
        let vols: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !vols.is_empty() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&vols)
                .output();
        }
    }
    remove_instance_networks(&filter);
    remove_instance_isolation(instance);
}

/// The per-user networks berth made for this instance go with its containers.
fn remove_instance_networks(filter: &str) {
    let Ok(out) = Command::new("docker")
        .args(["network", "ls", "-q", "--filter", filter])
        .output()
    else {
        return;
    };
    let nets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    // Docker may still count the endpoint of a container removed a moment ago: try again.
    for _ in 0..10 {
        let removed = Command::new("docker")
            .args(["network", "rm"])
            .args(&nets)
            .output()
            .is_ok_and(|o| o.status.success());
        if nets.is_empty() || removed {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// berth's isolation rules for this instance (its chain and the jump to it), which berth
/// removes with the last network only when it removes that network itself.
fn remove_instance_isolation(instance: &str) {
    let chain = berth::runtime::isolation::chain_name(instance);
    let iptables = |args: &[&str]| {
        Command::new("iptables")
            .arg("-w")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // Each -D removes one copy of the jump; there is at most one unless a test made more.
    for _ in 0..5 {
        if !iptables(&["-D", "DOCKER-USER", "-o", "br-+", "-j", &chain]) {
            break;
        }
    }
    if iptables(&["-F", &chain]) {
        iptables(&["-X", &chain]);
    }
}

/// Runs the docker CLI and asserts it succeeded; returns stdout.
pub fn docker_cli(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

impl TestRoot {
    /// Inspects `paas-app-<instance>-<user>-<app>`; `None` when it does not exist.
    pub async fn container(&self, user: &str, app: &str) -> Option<ContainerInspectResponse> {
        let name = self.container_name(user, app);
        match self.docker.inspect_container(&name, None).await {
            Ok(c) => Some(c),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => None,
            Err(e) => panic!("inspect {name}: {e}"),
        }
    }

    /// The container's ID; panics when it does not exist.
    pub async fn id(&self, user: &str, app: &str) -> String {
        let c = self.container(user, app).await;
        c.and_then(|c| c.id)
            .unwrap_or_else(|| panic!("no container for {user}/{app}"))
    }

    /// Whether the app's container exists and runs.
    pub async fn running(&self, user: &str, app: &str) -> bool {
        self.container(user, app)
            .await
            .is_some_and(|c| is_running(&c))
    }

    /// Every container labelled with this instance, running or not.
    pub async fn instance_containers(&self) -> Vec<ContainerSummary> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("paas.instance={}", self.instance)],
        )]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        self.docker.list_containers(Some(opts)).await.unwrap()
    }

    /// Waits until the app's container runs; returns how long that took.
    pub async fn wait_running(&self, user: &str, app: &str, timeout: Duration) -> Duration {
        let what = format!("{user}/{app} to run");
        wait_until(timeout, &what, || self.running(user, app)).await
    }

    /// Waits until the app's container is gone.
    pub async fn wait_gone(&self, user: &str, app: &str, timeout: Duration) -> Duration {
        let what = format!("{user}/{app} to be removed");
        wait_until(timeout, &what, || async {
            self.container(user, app).await.is_none()
        })
        .await
    }
}

/// `seconds.nanoseconds`, the form Docker's `since`/`until` accept.
pub fn docker_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// Every Docker event for one instance's containers, from `since` on, collected in the
/// background (the engine replays events after `since`, so a late subscription loses none).
pub struct EventLog {
    events: Arc<Mutex<Vec<EventMessage>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventLog {
    /// Subscribes to container events labelled `paas.instance=<instance>`.
    pub fn start(docker: &Docker, instance: &str, since: SystemTime) -> EventLog {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![format!("paas.instance={instance}")],
            ),
        ]);
        let opts = EventsOptionsBuilder::new()
            .since(&docker_timestamp(since))
            .filters(&filters)
            .build();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let docker = docker.clone();
        let task = tokio::spawn(async move {
            let mut stream = docker.events(Some(opts));
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => sink.lock().unwrap().push(ev),
                    Err(e) => {
                        eprintln!("event stream ended: {e}");
                        break;
                    }
                }
            }
        });
        EventLog { events, task }
    }

    /// Events stamped in `[from, to)`.
    pub fn between(&self, from: SystemTime, to: SystemTime) -> Vec<EventMessage> {
        let (from, to) = (nanos(from), nanos(to));
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.time_nano.is_some_and(|t| t >= from && t < to))
            .cloned()
            .collect()
    }

    /// Every event so far.
    pub fn all(&self) -> Vec<EventMessage> {
        self.events.lock().unwrap().clone()
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `action name` pairs of events, for assertions and messages.
pub fn describe(events: &[EventMessage]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let action = e.action.clone().unwrap_or_default();
            let name = e
                .actor
                .as_ref()
                .and_then(|a| a.attributes.as_ref())
                .and_then(|a| a.get("name").cloned())
                .unwrap_or_default();
            format!("{action} {name}")
        })
        .collect()
}

/// Time stamps (ns) of the events with `action` for the container named `name`.
pub fn action_times(events: &[EventMessage], action: &str, name: &str) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e.action.as_deref() == Some(action))
        .filter(|e| {
            e.actor
                .as_ref()
                .and_then(|a| a.attributes.as_ref())
                .and_then(|a| a.get("name"))
                .is_some_and(|n| n == name)
        })
        .filter_map(|e| e.time_nano)
        .collect()
}
