//! `runtime = "swarm"` (docs/guides/swarm.md) on two nodes of one machine: the test engine as manager
//! (advertised on a veth address) and a second `dockerd` in a network namespace as a worker
//! (`scripts/swarm-node.sh`), with a TLS registry both pull from, which asks for a login
//! (`[registry_login]`: a wrong password is refused at the push; with the right one the
//! worker pulls with the login berth gave the service). Apps with `replicas = 2`
//! run one task on each node (the worker pulls the app's image berth pushed) and answer from
//! both. A domain app's task that dies on the worker and comes back on a new port is routed
//! through Caddy within seconds, though no event of the worker reaches berth and the resync
//! is ten minutes off (berth reads the task list). Ports swarm cannot confine (a host port
//! for one address, a domain app's engine-picked port) are refused naming
//! `swarm_port_unconfined`, by the loop and by the API, and nothing answers at either node's
//! address, until the operator allows every address (`host_ips`, `swarm_publish_domain_ports`);
//! then they answer at the worker's address too, as docs/guides/swarm.md says. When the worker's engine dies, Swarm moves
//! its tasks to the manager and berth leaves that alone. Everything is undone on any exit:
//! services, images, the node, the registry, the swarm.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::api::{add_user, Api};
use crate::support::caddy::Caddy;
use crate::support::docker::docker_cli;
use crate::support::swarm::{SecondNode, ServiceCleanup, SwarmLease, REGISTRY_LOGIN};
use crate::support::{free_port, metric_value, wait_until, Serve, TestRoot};

const T: Duration = Duration::from_secs(120);

/// Serves its own hostname (the task container's short ID) on 8080.
const SERVE: &str = r#"image = "berth-test-busybox:1"
command = ["sh", "-c", "hostname >/tmp/index.html && exec httpd -f -p 8080 -h /tmp"]
workdir = "/"
port = 8080

[[mounts]]
source = "{app_dir}"
target = "/work"

[defaults]
memory = "32m"
cpus = 0.25
"#;

fn service(root: &TestRoot, app: &str) -> String {
    format!("paas-app-{}-alice-{app}", root.instance)
}

/// IDs (= hostnames) of the service's running task containers on one engine.
fn running_on(host: &str, service: &str) -> Vec<String> {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let out = std::process::Command::new("docker")
        .args(["-H", host, "ps", "-q", "--filter", &filter])
        .output()
        .unwrap();
    let ids = String::from_utf8_lossy(&out.stdout);
    ids.split_whitespace().map(str::to_string).collect()
}

const HOST_ENGINE: &str = "unix:///var/run/docker.sock";

/// The body `addr:port` answers `GET /` with, trimmed.
fn get(addr: &str, port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = format!("{addr}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (_, body) = out.split_once("\r\n\r\n")?;
    Some(body.trim().to_string())
}

/// The nodes the service's tasks that should run are on, by hostname, sorted.
fn task_nodes(service: &str) -> Vec<String> {
    let ps = docker_cli(&[
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Node}} {{.CurrentState}}",
    ]);
    let mut nodes: Vec<String> = ps
        .lines()
        .filter(|l| l.contains(" Running "))
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect();
    nodes.sort();
    nodes
}

fn host_hostname() -> String {
    docker_cli(&["info", "--format", "{{.Name}}"])
        .trim()
        .to_string()
}

/// What a task container on the host's engine answers `GET /` with on its own port 8080,
/// asked from inside it (its address is on the user's overlay, which the host is not on).
fn answer_inside(id: &str) -> String {
    let url = "http://127.0.0.1:8080/";
    let out = std::process::Command::new("docker")
        .args(["exec", id, "wget", "-q", "-O", "-", url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// With `revisions_kept = 1`, a new version of `spread` (new files, so a new image) leaves
/// only its own tag in the registry: berth deleted the old one through the registry's API,
/// over TLS with the login.
async fn old_images_leave_the_registry(root: &TestRoot, node: &SecondNode) {
    let path = format!("berth-{}/alice-spread", root.instance);
    assert_eq!(node.registry_tags(&path).len(), 1, "one version pushed");
    let dir = root.app_dir("alice", "spread");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("v2.txt"), "2\n").unwrap();
    let spread = "template = \"serve-v1\"\nreplicas = 2\n[env]\nV = \"2\"\n";
    root.write_manifest("alice", "spread", spread);
    let run = root.berth(&["apply"]).await;
    assert_eq!(run.code, Some(0), "apply: {}", run.text());
    let repo = format!("{}/{path}", node.registry);
    let local = docker_cli(&["image", "ls", &repo, "--format", "{{.Tag}}"]);
    let local: BTreeSet<String> = local.lines().map(str::to_string).collect();
    assert_eq!(local.len(), 1, "the manager keeps one: {local:?}");
    assert_eq!(
        node.registry_tags(&path),
        local,
        "the registry keeps the same one"
    );
}

/// The task ids (= hostnames) that answer through Caddy for `site.example.test` in `n`
/// requests.
fn answering(caddy: &Caddy, n: usize) -> BTreeSet<String> {
    let client = caddy.client();
    (0..n)
        .map(|_| client.get_plain("site.example.test"))
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect()
}

/// A domain app's task on the worker dies and Swarm starts another there, on a new port:
/// the worker's engine tells this one nothing, and the resync is ten minutes off, so only
/// berth's read of the task list can route to the new task.
async fn worker_task_restarts_are_routed_without_a_resync(
    root: &TestRoot,
    node: &SecondNode,
    caddy: &Caddy,
) {
    let site = service(root, "site");
    let on_host = running_on(HOST_ENGINE, &site);
    let on_worker = running_on(&node.docker_host, &site);
    let mut serve = Serve::start(root);
    let api = Api::new(serve.api_base());
    let both: BTreeSet<String> = on_host.iter().chain(&on_worker).cloned().collect();
    wait_until(T, "both site tasks to answer through Caddy", || async {
        answering(caddy, 8) == both
    })
    .await;
    // The watch's first read has run a pass: later ones are the kill's.
    wait_until(T, "the task watch's first read", || async {
        task_passes(&api).await >= 1
    })
    .await;
    let before = task_passes(&api).await;
    node.docker(&["kill", &on_worker[0]]);
    let moved = || async {
        let now = running_on(&node.docker_host, &site);
        let want: BTreeSet<String> = on_host.iter().chain(&now).cloned().collect();
        now.len() == 1 && now != on_worker && answering(caddy, 8) == want
    };
    wait_until(
        T,
        "the restarted worker task to answer through Caddy",
        moved,
    )
    .await;
    // Routed by the watch, not by a port the engine happened to hand out again.
    assert!(task_passes(&api).await > before, "{}", serve.log());
    drop(serve);
}

/// Passes the task watch has run (`berth_reconcile_pass_triggers_total{trigger="swarm_tasks"}`).
async fn task_passes(api: &Api) -> u64 {
    let metrics = api.get("/metrics", "").await.text;
    let series = "berth_reconcile_pass_triggers_total{trigger=\"swarm_tasks\"}";
    metric_value(&metrics, series)
}

/// In swarm mode, by default: a host port whose manifest names one address (swarm would open
/// it on every address of every node) and a domain app (its engine-picked port would be open
/// the same way) are frozen naming `swarm_port_unconfined`, and nothing of theirs answers at
/// either node's address; an app that publishes nothing runs on both nodes.
async fn unconfined_ports_are_refused(root: &TestRoot, node: &SecondNode, port: u16) {
    let web = format!("template = \"serve-v1\"\nreplicas = 2\nhost_port = {port}\n");
    root.write_manifest("alice", "web", &web);
    let spread = "template = \"serve-v1\"\nreplicas = 2\n";
    root.write_manifest("alice", "spread", spread);
    let site = "template = \"serve-v1\"\nreplicas = 2\ndomain = \"site.example.test\"\n";
    root.write_manifest("alice", "site", site);
    let run = root.berth(&["apply"]).await;
    run.expect_code(1);
    run.expect_contains(&format!(
        "alice/web: frozen: policy swarm_port_unconfined: in swarm mode host port {port} would listen on every address"
    ));
    run.expect_contains(
        "alice/site: frozen: policy swarm_port_unconfined: in swarm mode domain site.example.test",
    );
    run.expect_contains("swarm_publish_domain_ports = true");
    let label = format!("label=paas.instance={}", root.instance);
    let services = docker_cli(&["service", "ls", "--filter", &label, "--format", "{{.Name}}"]);
    assert_eq!(services.trim(), service(root, "spread"), "only spread runs");
    for addr in [&node.node_addr, &node.host_addr] {
        assert_eq!(get(addr, port), None, "{addr}:{port} answers");
    }
}

/// The port the engine published task container `id`'s port 8080 on, on `node`.
fn published_port(node: &SecondNode, id: &str) -> u16 {
    let ports = node.docker(&["port", id, "8080/tcp"]);
    let first = ports.lines().next().unwrap_or("");
    let port = first.rsplit_once(':').map(|(_, p)| p.trim());
    port.and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("task {id}'s published port: {ports:?}"))
}

/// Through the API (the same rule, `state::admission`): a write that would put `web`'s host
/// port back on one address is answered 422 `swarm_port_unconfined`, the file untouched.
async fn the_api_refuses_an_unconfined_port_naming_the_rule(root: &TestRoot) {
    let alice = add_user(root, "alice", false).await;
    let mut serve = Serve::start(root);
    let api = Api::new(serve.api_base());
    let path = root.manifest_path("alice", "web");
    let before = std::fs::read(&path).unwrap();
    let etag = api.get("/apps/alice/web", &alice).await.etag();
    let text = String::from_utf8_lossy(&before).replace("host_ip = \"0.0.0.0\"\n", "");
    let resp = api
        .put_manifest("/apps/alice/web/manifest", &alice, &etag, &text)
        .await;
    resp.expect(422);
    assert_eq!(resp.code(), "swarm_port_unconfined", "{}", resp.text);
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file changed");
    drop(serve);
}

#[tokio::test]
#[ignore = "swarm mode changes the whole engine: scripts/test.sh runs these alone, after the rest"]
async fn two_replicas_run_one_task_per_node_and_move_when_a_node_dies() {
    let root = TestRoot::new("swarm2").await;
    let mut lease = SwarmLease::take();
    let node = SecondNode::up();
    lease.init(&node.host_addr);
    node.join();
    let _cleanup = ServiceCleanup {
        instance: root.instance.clone(),
        registry: node.registry.clone(),
    };
    let worker = format!("berth-{}", node.name);
    let manager = host_hostname();
    let nodes = docker_cli(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
    assert!(nodes.contains(&format!("{worker} Ready")), "{nodes}");

    let registry = format!("{:?}", node.registry);
    let caddy = Caddy::start();
    // No resync in the test's time: only the task watch can see a task change on the worker.
    let table = format!(
        "{}\n[policy]\ndomains = [\"*.example.test\"]\n",
        caddy.plain_proxy_table("1s")
    );
    let config = [
        ("runtime", "\"swarm\""),
        ("registry", &registry),
        ("resync", "\"10m\""),
        ("revisions_kept", "1"),
    ];
    root.write_template("serve-v1", SERVE);
    // The registry asks for a login: a wrong password is refused at the push, by name.
    let wrong = node.registry_login_table(root.path(), "not-it");
    root.config(&config, &format!("{table}{wrong}"));
    root.write_manifest("alice", "early", "template = \"serve-v1\"\n");
    let run = root.berth(&["apply"]).await;
    assert_ne!(
        run.code,
        Some(0),
        "apply with a wrong password: {}",
        run.text()
    );
    let text = run.text();
    assert!(
        text.contains("alice/early") && text.contains("push") && text.contains("unauthorized"),
        "the failure names the app, the push and the registry's answer: {text}"
    );
    assert!(
        !text.contains("not-it"),
        "the password is never shown: {text}"
    );
    root.remove_manifest("alice", "early");
    let login = node.registry_login_table(root.path(), REGISTRY_LOGIN.1);
    root.config(&config, &format!("{table}{login}"));
    let port = free_port();
    unconfined_ports_are_refused(&root, &node, port).await;
    // The operator allows every address, and a user's manifest says so.
    let open = format!("{table}host_ips = [\"127.0.0.1\", \"0.0.0.0\"]\n{login}");
    let config = [config.as_slice(), &[("swarm_publish_domain_ports", "true")]].concat();
    root.config(&config, &open);
    let web = format!(
        "template = \"serve-v1\"\nreplicas = 2\nhost_port = {port}\nhost_ip = \"0.0.0.0\"\n"
    );
    root.write_manifest("alice", "web", &web);
    let run = root.berth(&["apply"]).await;
    assert_eq!(run.code, Some(0), "apply: {}", run.text());

    // One task on each node, each engine running one container of each app.
    let both = {
        let mut v = vec![manager.clone(), worker.clone()];
        v.sort();
        v
    };
    for app in ["web", "spread", "site"] {
        let svc = service(&root, app);
        wait_until(T, &format!("{app}: one running task per node"), || async {
            task_nodes(&svc) == both
                && running_on(HOST_ENGINE, &svc).len() == 1
                && running_on(&node.docker_host, &svc).len() == 1
        })
        .await;
    }
    let pulled = node.docker(&["image", "ls", "--format", "{{.Repository}}"]);
    assert!(
        pulled.contains(&format!(
            "{}/berth-{}/alice-web",
            node.registry, root.instance
        )),
        "the worker pulled the app's image from the registry: {pulled}"
    );
    old_images_leave_the_registry(&root, &node).await;

    // Each node answers on the host port with its own task.
    let web_svc = service(&root, "web");
    let on_host = running_on(HOST_ENGINE, &web_svc).remove(0);
    let on_worker = running_on(&node.docker_host, &web_svc).remove(0);
    for (addr, id) in [(&node.host_addr, &on_host), (&node.node_addr, &on_worker)] {
        wait_until(T, &format!("{addr}:{port} to answer {id}"), || async {
            get(addr, port).as_deref() == Some(id.as_str())
        })
        .await;
    }

    // The trade-off swarm_publish_domain_ports accepts: the worker's task of a domain app
    // answers on its engine-picked port at the worker's address, past Caddy.
    let site_svc = service(&root, "site");
    let site_task = running_on(&node.docker_host, &site_svc).remove(0);
    let picked = published_port(&node, &site_task);
    assert_eq!(get(&node.node_addr, picked), Some(site_task));

    worker_task_restarts_are_routed_without_a_resync(&root, &node, &caddy).await;
    the_api_refuses_an_unconfined_port_naming_the_rule(&root).await;

    // The worker's engine dies: Swarm sees the node down and runs its task on the manager.
    node.kill_engine();
    wait_until(T, "the worker to be down", || async {
        let nodes = docker_cli(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
        nodes.contains(&format!("{worker} Down"))
    })
    .await;
    let spread_svc = service(&root, "spread");
    wait_until(T, "both spread tasks on the manager", || async {
        task_nodes(&spread_svc) == vec![manager.clone(), manager.clone()]
            && running_on(HOST_ENGINE, &spread_svc).len() == 2
    })
    .await;
    for id in running_on(HOST_ENGINE, &spread_svc) {
        wait_until(T, &format!("task {id} to answer"), || async {
            answer_inside(&id) == id
        })
        .await;
    }
    // A host-mode port is held once per node: web's second task has nowhere to go.
    assert_eq!(running_on(HOST_ENGINE, &web_svc), vec![on_host.clone()]);
    assert_eq!(
        get(&node.host_addr, port).as_deref(),
        Some(on_host.as_str())
    );

    // berth leaves Swarm's rescheduling alone: nothing to do.
    let plan = root.berth(&["plan", "--exit-code"]).await;
    assert_eq!(plan.code, Some(0), "a no-op: {}", plan.text());
    let run = root.berth(&["apply"]).await;
    assert_eq!(run.code, Some(0), "apply: {}", run.text());
}
