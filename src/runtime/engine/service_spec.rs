//! An app as a Swarm service (docs/guides/swarm.md): the canonical spec translated into a `ServiceSpec`,
//! the counterpart of `body::create_body`. Pure, so it is unit-tested without a swarm.
//!
//! What Swarm on API 1.41 cannot express is left out, not faked: `no-new-privileges` (the
//! engine drops it), `memory_swap` (no field) and a host port's address (a host-mode port
//! listens on every address of its node, so the policy admits a port here only where that is
//! allowed: `policy::Publishing`, `swarm_port_unconfined`). No routing mesh: `dnsrr` and
//! host-mode ports, so nothing depends on IPVS and no app joins the shared ingress network.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum,
    HealthConfig, Limit, Mount, MountType, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, TaskSpec, TaskSpecContainerSpec, TaskSpecLogDriver,
    TaskSpecPlacement, TaskSpecPlacementPreferences, TaskSpecPlacementSpread, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use crate::model::health::HealthCheck;
use crate::model::labels;
use crate::model::spec::ContainerSpec;

/// The longest one run of a task's health probe may take.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// `paas.type` of a task container: never `user-app`, so a single-engine berth on the same
/// engine never takes a task for one of its containers.
pub const TYPE_SWARM_TASK: &str = "swarm-task";

/// What a service of one app is made from.
pub struct ServiceInput<'a> {
    /// The service's name (the app's container name).
    pub name: &'a str,
    /// The app's canonical spec.
    pub spec: &'a ContainerSpec,
    /// The app's labels (on the service).
    pub labels: HashMap<String, String>,
    /// The image built for this spec (`<registry>/...:<hash>`).
    pub image: &'a str,
    /// `NAME=value` environment, secrets included.
    pub env: Vec<String>,
    /// Whether it should run: `replicas` tasks, or none.
    pub run: bool,
    /// Grace between SIGTERM and SIGKILL, nanoseconds.
    pub stop_grace_ns: i64,
    /// The user's overlay network (id) and the app's name on it, when the app has one.
    pub network: Option<(String, String)>,
    /// The app's health check: a task with a probe is healthy only once the probe passes.
    pub health: Option<&'a HealthCheck>,
    /// The node its task is pinned to (an app with named volumes: its data lives there).
    pub node: Option<String>,
}

/// The service spec of one app.
pub fn service_spec(input: ServiceInput<'_>) -> ServiceSpec {
    let spec = input.spec;
    let replicas = if input.run {
        i64::from(spec.replicas.unwrap_or(1))
    } else {
        0
    };
    let task_labels = task_labels(&input.labels);
    let container_spec = container(&input, task_labels);
    ServiceSpec {
        name: Some(input.name.to_string()),
        labels: Some(input.labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container_spec),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: Some(spec.nano_cpus),
                    memory_bytes: Some(spec.memory as i64),
                    pids: Some(spec.pids_limit),
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
                delay: Some(1_000_000_000),
                ..Default::default()
            }),
            log_driver: Some(TaskSpecLogDriver {
                name: Some("json-file".into()),
                options: Some(HashMap::from([
                    ("max-size".to_string(), spec.log_max_size.clone()),
                    ("max-file".to_string(), spec.log_max_file.to_string()),
                ])),
            }),
            placement: Some(placement(&spec.constraints, input.node.as_deref())),
            networks: input.network.as_ref().map(|(id, alias)| {
                vec![NetworkAttachmentConfig {
                    target: Some(id.clone()),
                    aliases: Some(vec![alias.clone()]),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas),
            }),
            ..Default::default()
        }),
        update_config: Some(update_config(spec)),
        endpoint_spec: Some(endpoint(spec)),
        ..Default::default()
    }
}

/// The task containers carry who they belong to, under their own type.
fn task_labels(service: &HashMap<String, String>) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = [labels::INSTANCE, labels::USERID, labels::APPNAME]
        .into_iter()
        .filter_map(|k| Some((k.to_string(), service.get(k)?.clone())))
        .collect();
    out.insert(labels::TYPE.to_string(), TYPE_SWARM_TASK.to_string());
    out
}

fn container(input: &ServiceInput<'_>, labels: HashMap<String, String>) -> TaskSpecContainerSpec {
    let spec = input.spec;
    let volumes = spec.volumes.iter().map(|v| Mount {
        target: Some(v.target.clone()),
        source: Some(v.volume.clone()),
        typ: Some(MountType::VOLUME),
        ..Default::default()
    });
    TaskSpecContainerSpec {
        image: Some(input.image.to_string()),
        labels: Some(labels),
        // Args, not Command: the image's entrypoint stays, as `Cmd` leaves it for a container.
        args: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: Some(input.env.clone()),
        dir: spec.workdir.clone(),
        // The workspace and shared installs are in the image; only named volumes mount.
        mounts: Some(volumes.collect()),
        init: Some(spec.init),
        capability_drop: Some(spec.cap_drop.clone()),
        stop_grace_period: Some(input.stop_grace_ns),
        health_check: input.health.and_then(|h| health_config(h, spec.port)),
        ..Default::default()
    }
}

/// The probe as Docker's health check: run every `interval`, failures not counted for the
/// first `timeout` (the time a new task has to become healthy), unhealthy after three in a
/// row. Swarm's start-first update moves on only once the new task is healthy, and one that
/// never is fails the update, which Swarm rolls back.
fn health_config(h: &HealthCheck, port: u16) -> Option<HealthConfig> {
    let test = [vec!["CMD".to_string()], h.probe_for(port)?].concat();
    let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    Some(HealthConfig {
        test: Some(test),
        interval: Some(nanos(h.interval)),
        timeout: Some(nanos(PROBE_LIMIT.min(h.timeout))),
        retries: Some(3),
        start_period: Some(nanos(h.timeout)),
        // `start_interval` is API 1.44; this engine speaks 1.41.
        ..Default::default()
    })
}

/// The manifest's constraints, and tasks spread evenly over the nodes, so `replicas = 2` on
/// two nodes is one task on each and a node lost takes only its share of an app's tasks. An
/// app with named volumes is pinned to `node`, where they are.
fn placement(constraints: &[String], node: Option<&str>) -> TaskSpecPlacement {
    let mut all = constraints.to_vec();
    all.extend(node.map(|id| format!("node.id == {id}")));
    TaskSpecPlacement {
        constraints: (!all.is_empty()).then_some(all),
        preferences: Some(vec![TaskSpecPlacementPreferences {
            spread: Some(TaskSpecPlacementSpread {
                spread_descriptor: Some("node.id".into()),
            }),
        }]),
        ..Default::default()
    }
}

/// Start-first for an app without a host port (the old task serves until the new one runs),
/// stop-first for one with (one task per node holds the port); a failed update rolls back.
fn update_config(spec: &ContainerSpec) -> ServiceSpecUpdateConfig {
    let order = match spec.host_port {
        Some(_) => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
        None => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
    };
    ServiceSpecUpdateConfig {
        parallelism: Some(1),
        order: Some(order),
        failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
        monitor: Some(5_000_000_000),
        max_failure_ratio: Some(0.0),
        ..Default::default()
    }
}

/// DNS round robin (no virtual IP, so no IPVS); a host port is published on each task's node.
/// A domain app without one publishes its port on a port the engine picks per task, so the
/// front door can reach every task on any node and two tasks on one node (a start-first
/// update) never want the same port.
fn endpoint(spec: &ContainerSpec) -> EndpointSpec {
    let published = match (spec.host_port, &spec.domain) {
        (Some(hp), _) => Some(Some(i64::from(hp))),
        (None, Some(_)) => Some(None),
        (None, None) => None,
    };
    let ports = published.map(|published_port| {
        vec![EndpointPortConfig {
            target_port: Some(i64::from(spec.port)),
            published_port,
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        }]
    });
    EndpointSpec {
        mode: Some(EndpointSpecModeEnum::DNSRR),
        ports,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host_port: Option<u16>, replicas: Option<u16>) -> ContainerSpec {
        serde_json::from_value(serde_json::json!({
            "template": "t", "image": "base", "command": ["sh", "-c", "x"], "workdir": "/app",
            "env": {}, "mounts": [{"source": "/w", "target": "/app", "read_only": false}],
            "memory": 1048576, "nano_cpus": 500000000, "pids_limit": 256, "port": 3000,
            "host_port": host_port, "host_ip": "127.0.0.1", "domain": null, "restart": null,
            "template_files": {}, "init": true, "security_opt": ["no-new-privileges"],
            "cap_drop": ["ALL"], "log_max_size": "10m", "log_max_file": 3,
            "replicas": replicas
        }))
        .unwrap()
    }

    fn made(spec: &ContainerSpec, run: bool) -> ServiceSpec {
        let labels = HashMap::from([
            (labels::TYPE.to_string(), labels::TYPE_USER_APP.to_string()),
            (labels::USERID.to_string(), "alice".to_string()),
            (labels::SPEC_HASH.to_string(), "h".to_string()),
        ]);
        service_spec(ServiceInput {
            name: "paas-app-alice-web",
            spec,
            labels,
            image: "r:5000/x:h",
            env: vec!["PORT=3000".into()],
            run,
            stop_grace_ns: 2,
            network: Some(("net1".into(), "web".into())),
            health: None,
            node: None,
        })
    }

    #[test]
    fn an_app_becomes_a_service_with_its_image_limits_and_replicas_and_no_bind_mount() {
        let s = made(&spec(None, Some(3)), true);
        assert_eq!(s.mode.unwrap().replicated.unwrap().replicas, Some(3));
        let task = s.task_template.unwrap();
        let c = task.container_spec.unwrap();
        assert_eq!(c.image.as_deref(), Some("r:5000/x:h"));
        assert_eq!(c.args, Some(vec!["sh".into(), "-c".into(), "x".into()]));
        assert_eq!(c.command, None, "the image's entrypoint stays");
        assert_eq!(c.mounts, Some(vec![]), "the workspace is in the image");
        let tl = c.labels.unwrap();
        assert_eq!(tl[labels::TYPE], TYPE_SWARM_TASK);
        assert!(!tl.contains_key(labels::SPEC_HASH));
        let placement = task.placement.unwrap();
        assert_eq!(placement.constraints, None, "no constraint unless asked");
        let spread = placement.preferences.unwrap();
        assert_eq!(
            spread[0]
                .spread
                .as_ref()
                .unwrap()
                .spread_descriptor
                .as_deref(),
            Some("node.id"),
            "tasks spread over the nodes"
        );
        let limits = task.resources.unwrap().limits.unwrap();
        assert_eq!(
            (limits.memory_bytes, limits.pids),
            (Some(1048576), Some(256))
        );
        assert_eq!(s.labels.unwrap()[labels::SPEC_HASH], "h");
        let net = &task.networks.unwrap()[0];
        assert_eq!(net.target.as_deref(), Some("net1"));
        assert_eq!(
            net.aliases,
            Some(vec!["web".to_string()]),
            "reached by its app name"
        );
        let order = s.update_config.unwrap().order;
        assert_eq!(order, Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST));
        let e = s.endpoint_spec.unwrap();
        assert_eq!((e.mode, e.ports), (Some(EndpointSpecModeEnum::DNSRR), None));
    }

    #[test]
    fn a_stopped_app_has_no_task_and_a_host_port_is_published_per_node_stop_first() {
        let s = made(&spec(Some(8101), None), false);
        assert_eq!(s.mode.unwrap().replicated.unwrap().replicas, Some(0));
        let port = &s.endpoint_spec.unwrap().ports.unwrap()[0];
        assert_eq!(
            port.publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST)
        );
        assert_eq!(
            (port.published_port, port.target_port),
            (Some(8101), Some(3000))
        );
        let order = s.update_config.unwrap().order;
        assert_eq!(order, Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST));
        let running = made(&spec(None, None), true);
        assert_eq!(running.mode.unwrap().replicated.unwrap().replicas, Some(1));
    }

    #[test]
    fn a_domain_app_publishes_its_port_on_a_port_each_task_gets_and_updates_start_first() {
        let mut with = spec(None, None);
        with.domain = Some("shop.example.com".into());
        let s = made(&with, true);
        let port = &s.endpoint_spec.unwrap().ports.unwrap()[0];
        assert_eq!((port.published_port, port.target_port), (None, Some(3000)));
        assert_eq!(
            port.publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST)
        );
        let order = s.update_config.unwrap().order;
        assert_eq!(order, Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST));
    }

    /// Every port a service publishes listens on every address of its node: a spec the
    /// swarm policy admits publishes a host port only when it asks for every address, and an
    /// engine-picked one only with the operator's consent; any other spec is refused.
    #[test]
    fn a_spec_the_swarm_policy_admits_publishes_only_what_it_allowed() {
        use crate::model::names::AppKey;
        use crate::model::policy::{check_app, Policy, PolicyFile, Publishing};
        let file: PolicyFile = toml::from_str(
            "domains = [\"*.example.com\"]\nhost_ips = [\"127.0.0.1\", \"0.0.0.0\"]\n",
        )
        .unwrap();
        let policy = Policy::resolve(&file).unwrap();
        let key = AppKey::new("alice", "web").unwrap();
        let mut admitted = 0;
        for port in [None, Some(8101)] {
            for ip in ["127.0.0.1", "0.0.0.0"] {
                for domain in [None, Some("a.example.com")] {
                    for consent in [false, true] {
                        let mut s = spec(port, None);
                        (s.host_ip, s.domain) = (ip.into(), domain.map(String::from));
                        let publishing = Publishing::EveryAddress {
                            domain_ports: consent,
                        };
                        let rules = policy.rules("alice");
                        if check_app(&key, &s, rules, &[], publishing).is_err() {
                            continue;
                        }
                        admitted += 1;
                        let ports = endpoint(&s).ports.unwrap_or_default();
                        for p in ports {
                            let case = format!("{port:?} {ip} {domain:?} {consent}");
                            match p.published_port {
                                Some(_) => assert_eq!(ip, "0.0.0.0", "{case}"),
                                None => assert!(consent, "{case}"),
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(
            admitted, 10,
            "of 16: 127.0.0.1 with a host port, a domain without consent"
        );
    }

    #[test]
    fn a_probe_becomes_the_tasks_health_check_and_none_without_one() {
        let mut h = HealthCheck {
            path: "/up".into(),
            timeout: Duration::from_secs(20),
            interval: Duration::from_millis(500),
            probe: Some(vec![
                "wget".into(),
                "-qO-".into(),
                "http://127.0.0.1:{port}{path}".into(),
            ]),
            tcp: false,
        };
        let c = health_config(&h, 3000).unwrap();
        let test = c.test.unwrap();
        assert_eq!(test, ["CMD", "wget", "-qO-", "http://127.0.0.1:3000/up"]);
        assert_eq!(
            c.start_period,
            Some(20_000_000_000),
            "the time to become healthy"
        );
        assert_eq!(c.interval, Some(500_000_000));
        assert_eq!(c.timeout, Some(5_000_000_000));
        h.probe = None;
        assert_eq!(
            health_config(&h, 3000),
            None,
            "no probe: Swarm's running is ready"
        );
    }

    #[test]
    fn constraints_are_passed_through_as_written() {
        let mut with = spec(None, None);
        with.constraints = vec!["node.labels.disk == ssd".into()];
        let placement = made(&with, true).task_template.unwrap().placement.unwrap();
        let want = vec!["node.labels.disk == ssd".to_string()];
        assert_eq!(placement.constraints, Some(want));
        let pinned = super::placement(&with.constraints, Some("n1"));
        let want = vec![
            "node.labels.disk == ssd".to_string(),
            "node.id == n1".to_string(),
        ];
        assert_eq!(
            pinned.constraints,
            Some(want),
            "an app with volumes stays on their node"
        );
    }
}
