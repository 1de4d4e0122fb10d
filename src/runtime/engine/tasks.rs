//! Where a Swarm service's tasks run and how to reach them: one task list and one node list
//! give, per service, the host names of the nodes its running tasks are on (for `berth status`)
//! and the `node address:published port` of each live task (for the front door, docs/guides/swarm.md).

use std::collections::HashMap;

use bollard::models::{EndpointPortConfig, Node, Task, TaskState};
use bollard::query_parameters::{ListNodesOptions, ListTasksOptions};

use super::{fail, Engine, EngineError};

/// One service's tasks as berth uses them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Placed {
    /// Host names of the nodes its running tasks are on, one per task, sorted.
    pub nodes: Vec<String>,
    /// `address:port` of each running task's published port, sorted: where passes route (with
    /// a probe, a task runs only once it passed it).
    pub dials: Vec<String>,
    /// Each starting or running task that publishes a port, for a change following them.
    pub live: Vec<LiveTask>,
}

/// A task that is starting or running, and where it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTask {
    /// The task's id: a port the engine hands out again is not the same task.
    pub id: String,
    /// `address:port`.
    pub dial: String,
    /// Running (past its probe, when it has one), not only starting.
    pub running: bool,
}

/// A node's name and the address its published ports are reached at.
struct NodeAt {
    name: String,
    addr: Option<String>,
}

impl Engine {
    /// Per service id, its tasks' nodes and dials; only `service`'s when given.
    pub(super) async fn placed(
        &self,
        service: Option<&str>,
    ) -> Result<HashMap<String, Placed>, EngineError> {
        let mut filters = HashMap::from([("desired-state".to_string(), vec!["running".into()])]);
        if let Some(id) = service {
            filters.insert("service".to_string(), vec![id.to_string()]);
        }
        let opts = ListTasksOptions {
            filters: Some(filters),
        };
        let tasks = self.docker.call("task_list").list_tasks(Some(opts)).await;
        let tasks = tasks.map_err(fail("list tasks"))?;
        let nodes = self
            .docker
            .call("node_list")
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(fail("list nodes"))?;
        let nodes: HashMap<String, NodeAt> = nodes.into_iter().filter_map(node_at).collect();
        Ok(place(tasks, &nodes))
    }

    /// Every task Swarm wants running, as (service id, task id, running), sorted: two reads
    /// differ when a task started, stopped, restarted or moved, on any node. One call.
    pub(in crate::runtime) async fn running_tasks(
        &self,
    ) -> Result<Vec<(String, String, bool)>, EngineError> {
        let filters = HashMap::from([("desired-state".to_string(), vec!["running".into()])]);
        let opts = ListTasksOptions {
            filters: Some(filters),
        };
        let tasks = self.docker.call("task_list").list_tasks(Some(opts)).await;
        let mut out: Vec<(String, String, bool)> = (tasks.map_err(fail("list tasks"))?)
            .into_iter()
            .map(|t| {
                let running = t.status.and_then(|s| s.state) == Some(TaskState::RUNNING);
                let (service, id) = (t.service_id.unwrap_or_default(), t.id.unwrap_or_default());
                (service, id, running)
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Service `id`'s starting and running tasks now.
    pub(in crate::runtime) async fn live_tasks(
        &self,
        id: &str,
    ) -> Result<Vec<LiveTask>, EngineError> {
        let mut placed = self.placed(Some(id)).await?;
        Ok(placed.remove(id).unwrap_or_default().live)
    }
}

fn node_at(n: Node) -> Option<(String, NodeAt)> {
    let id = n.id?;
    let name = n.description.and_then(|d| d.hostname).unwrap_or(id.clone());
    let status = n.status.and_then(|s| s.addr).filter(|a| a != "0.0.0.0");
    // A manager listening on every address reports 0.0.0.0: its manager address says where.
    let manager = n.manager_status.and_then(|m| m.addr);
    let addr = status.or_else(|| Some(manager?.rsplit_once(':')?.0.to_string()));
    Some((id, NodeAt { name, addr }))
}

fn place(tasks: Vec<Task>, nodes: &HashMap<String, NodeAt>) -> HashMap<String, Placed> {
    let mut out: HashMap<String, Placed> = HashMap::new();
    for t in tasks {
        let status = t.status.unwrap_or_default();
        let (Some(service), Some(node)) = (t.service_id, t.node_id) else {
            continue;
        };
        let placed = out.entry(service).or_default();
        let at = nodes.get(&node);
        if status.state == Some(TaskState::RUNNING) {
            let name = at.map_or(node.clone(), |n| n.name.clone());
            placed.nodes.push(name);
        }
        let live = matches!(status.state, Some(TaskState::STARTING | TaskState::RUNNING));
        let (Some(addr), true) = (at.and_then(|n| n.addr.as_deref()), live) else {
            continue;
        };
        let running = status.state == Some(TaskState::RUNNING);
        let ports = status.port_status.and_then(|p| p.ports).unwrap_or_default();
        for port in first_per_target(&ports) {
            let id = t.id.clone().unwrap_or_default();
            let dial = dial(addr, port);
            if running {
                placed.dials.push(dial.clone());
            }
            placed.live.push(LiveTask { id, dial, running });
        }
    }
    for p in out.values_mut() {
        p.nodes.sort();
        p.dials.sort();
        p.dials.dedup();
    }
    out
}

/// The published port of each target port, the first listed: a port is published on IPv4
/// and on IPv6, IPv4 first, and the two can differ (the engine picks each from its own free
/// ports), while berth dials the node's IPv4 address.
fn first_per_target(ports: &[EndpointPortConfig]) -> impl Iterator<Item = i64> + '_ {
    let mut seen = Vec::new();
    ports.iter().filter_map(move |p| {
        let fresh = !seen.contains(&p.target_port);
        seen.push(p.target_port);
        p.published_port.filter(|_| fresh)
    })
}

fn dial(addr: &str, port: i64) -> String {
    match addr.contains(':') {
        true => format!("[{addr}]:{port}"),
        false => format!("{addr}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{PortStatus, TaskStatus};

    fn task(service: &str, node: &str, state: TaskState, port: Option<i64>) -> Task {
        // IPv4 first, then IPv6 on a port of its own.
        let ports = port.map(|p| {
            let on = |published| EndpointPortConfig {
                target_port: Some(8080),
                published_port: Some(published),
                ..Default::default()
            };
            vec![on(p), on(p + 1000)]
        });
        Task {
            service_id: Some(service.into()),
            node_id: Some(node.into()),
            status: Some(TaskStatus {
                state: Some(state),
                port_status: Some(PortStatus { ports }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn live_tasks_are_dialled_at_their_node_and_only_running_ones_count_as_placed() {
        let nodes = HashMap::from([
            (
                "a".to_string(),
                NodeAt {
                    name: "n1".into(),
                    addr: Some("10.0.0.1".into()),
                },
            ),
            (
                "b".to_string(),
                NodeAt {
                    name: "n2".into(),
                    addr: Some("fd00::2".into()),
                },
            ),
        ]);
        let tasks = vec![
            task("s", "b", TaskState::RUNNING, Some(30001)),
            task("s", "a", TaskState::STARTING, Some(30002)),
            task("s", "a", TaskState::PREPARING, Some(30003)),
            task("t", "a", TaskState::RUNNING, None),
        ];
        let placed = place(tasks, &nodes);
        assert_eq!(placed["s"].nodes, vec!["n2".to_string()]);
        let running = vec!["[fd00::2]:30001".to_string()];
        assert_eq!(placed["s"].dials, running, "running only, IPv4's port only");
        let live: Vec<(&str, bool)> = (placed["s"].live.iter())
            .map(|l| (l.dial.as_str(), l.running))
            .collect();
        let want = vec![("[fd00::2]:30001", true), ("10.0.0.1:30002", false)];
        assert_eq!(live, want, "starting ones are followed too");
        assert_eq!(placed["t"].nodes, vec!["n1".to_string()]);
        assert!(placed["t"].dials.is_empty(), "no port published");
    }

    #[test]
    fn a_manager_on_every_address_is_reached_at_its_manager_address() {
        let node = Node {
            id: Some("m".into()),
            status: Some(bollard::models::NodeStatus {
                addr: Some("0.0.0.0".into()),
                ..Default::default()
            }),
            manager_status: Some(bollard::models::ManagerStatus {
                addr: Some("192.168.1.5:2377".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (_, at) = node_at(node).unwrap();
        assert_eq!(at.addr.as_deref(), Some("192.168.1.5"));
        assert_eq!(at.name, "m", "no host name: the id");
    }
}
