//! Traffic on a swarm (docs/guides/swarm.md with docs/guides/deploys-and-rollback.md and docs/guides/tenancy.md): a domain app's service answers through a real
//! Caddy (plain HTTP) at its tasks' published ports, and a deploy moves it to the new task with no failed
//! request (Swarm's start-first update gated by the template's probe, berth following the
//! tasks meanwhile); a new version whose probe fails is rolled back by Swarm while the old
//! one keeps answering. A user's services reach each other by app name on the user's overlay,
//! and another user's cannot; the overlay goes with the user's last service.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::api::{add_user, Api};
use crate::support::caddy::Caddy;
use crate::support::docker::docker_cli;
use crate::support::swarm::{registry_tags, SwarmRoot};
use crate::support::{wait_until, Serve, TestRoot, WWW_TEMPLATE};

const T: Duration = Duration::from_secs(90);

/// Serves its workspace's `index.html` with busybox httpd; healthy when `{path}` answers.
const SITE: &str = r#"image = "berth-test-busybox:1"
command = ["sh", "-c", "echo booted-$(cat /work/index.html); exec httpd -f -p 8080 -h /work"]
workdir = "/"
port = 8080

[[mounts]]
source = "{app_dir}"
target = "/work"

[defaults]
memory = "32m"
cpus = 0.25

[health]
path = "/index.html"
timeout = "20s"
interval = "500ms"
probe = ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}{path}"]
"#;

fn site(restart: &str, extra: &str) -> String {
    format!(
        "template = \"site-v1\"\ndomain = \"shop.example.test\"\nrestart = \"{restart}\"\n{extra}"
    )
}

async fn answers(caddy: &Caddy, want: &str) {
    wait_until(
        T,
        &format!("shop.example.test to answer {want}"),
        || async { caddy.client().get_plain("shop.example.test") == (200, want.to_string()) },
    )
    .await;
}

/// Requests through Caddy one after another until stopped; counts those not answered 200, and
/// those the version that fails its check (`broken`) answered.
fn load(caddy: &Caddy, stop: Arc<AtomicBool>) -> (std::thread::JoinHandle<()>, Arc<AtomicU32>) {
    let failed = Arc::new(AtomicU32::new(0));
    let (caddy, counted) = (caddy.client(), failed.clone());
    let worker = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let sent = std::time::SystemTime::now();
            let (mut status, mut body) = caddy.get_plain("shop.example.test");
            if status == 0 && body.contains("reset by peer") {
                // Caddy binds a new socket (SO_REUSEPORT) when it loads a config and closes
                // the old one: a connection still in the old one's accept queue is reset
                // unanswered. A client sends such an idempotent request again, as the
                // rollout load does (`rollout.rs`); it is shown, not hidden.
                eprintln!("request reset unanswered at a config load, sent again: {body}");
                (status, body) = caddy.get_plain("shop.example.test");
            }
            if status != 200 || body == "broken" {
                let at = sent
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                eprintln!(
                    "failed request sent at {:.3} (unix s): {status} {body}",
                    at.as_secs_f64()
                );
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    (worker, failed)
}

#[tokio::test]
#[ignore = "swarm mode changes the whole engine: scripts/test.sh runs these alone, after the rest"]
async fn a_domain_service_answers_through_caddy_and_deploys_without_a_failed_request() {
    let caddy = Caddy::start();
    let swarm = SwarmRoot::new("swarmweb").await;
    let root = &swarm.root;
    let policy = "[policy]\ndomains = [\"*.example.test\"]\n";
    // Plain HTTP, as for the single-engine rollouts under load: Caddy 2.6 resets a TLS
    // handshake under way when its config is loaded (seen here as curl's "(35) Connection
    // reset by peer" at a route change), which no route berth writes can avoid.
    let table = format!("{}\n{policy}", caddy.plain_proxy_table("1s"));
    // A domain app's port is open on every address of its node: the operator says so.
    let config = [
        ("resync", "\"2s\""),
        ("revisions_kept", "2"),
        ("swarm_publish_domain_ports", "true"),
    ];
    swarm.config(&config, &table);
    root.write_template("site-v1", SITE);
    let dir = root.app_dir("alice", "shop");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "v1\n").unwrap();
    root.write_manifest("alice", "shop", &site("1", ""));
    let alice = add_user(root, "alice", false).await;
    let mut serve = Serve::start(root);
    answers(&caddy, "v1").await;

    let stop = Arc::new(AtomicBool::new(false));
    let (worker, failed) = load(&caddy, stop.clone());
    for version in ["v2", "v3"] {
        std::fs::write(dir.join("index.html"), format!("{version}\n")).unwrap();
        root.write_manifest("alice", "shop", &site(version, ""));
        answers(&caddy, version).await;
    }
    // revisions_kept = 2: of three images built, the oldest is gone from the manager and
    // from the registry (its own API, plain HTTP on loopback).
    let repo = format!("{}/berth-{}/alice-shop", swarm.registry, root.instance);
    wait_until(T, "one image to be pruned", || async {
        docker_cli(&["image", "ls", &repo, "--format", "{{.Tag}}"])
            .lines()
            .count()
            == 2
    })
    .await;
    let kept = docker_cli(&["image", "ls", &repo, "--format", "{{.Tag}}"]);
    let kept: BTreeSet<String> = kept.lines().map(str::to_string).collect();
    let listed = format!(
        "http://{}/v2/berth-{}/alice-shop/tags/list",
        swarm.registry, root.instance
    );
    wait_until(T, "the registry to hold the two kept tags only", || async {
        registry_tags(&listed, &[]) == kept
    })
    .await;

    // The new version's probe fails: Swarm rolls it back, the old version answers throughout
    // and the broken one never does.
    std::fs::write(dir.join("index.html"), "broken\n").unwrap();
    root.write_manifest(
        "alice",
        "shop",
        &site("4", "[health]\npath = \"/missing\"\n"),
    );
    wait_until(T, "the failed deploy to be refused", || async {
        let run = root.berth(&["status"]).await;
        run.contains("rollout-failed")
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the deploys; berth's log:\n{}",
        serve.log()
    );
    let plain = caddy.client().get_plain("shop.example.test");
    assert_eq!(plain, (200, "v3".to_string()));
    api_reads_the_service(&mut serve, &alice).await;
}

/// The API reads a service's logs and shows where its tasks run.
async fn api_reads_the_service(serve: &mut Serve, alice: &str) {
    let api = Api::new(serve.api_base());
    let logs = api.get("/apps/alice/shop/logs?tail=20", alice).await;
    assert!(logs.text.contains("booted-v3"), "{}", logs.text);
    let shown = api.get("/apps/alice/shop", alice).await.json().to_string();
    assert!(shown.contains("1/1 tasks running"), "{shown}");
}

/// The running task container of `user/app`'s service.
fn task_of(root: &TestRoot, user: &str, app: &str) -> Option<String> {
    let service = format!("paas-app-{}-{user}-{app}", root.instance);
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let ids = docker_cli(&["ps", "-q", "--filter", &filter]);
    ids.split_whitespace().next().map(str::to_string)
}

/// What `user/app`'s task gets from `http://<host>:8080/` (busybox `nc`, 3 s; busybox's
/// `wget` cannot look names up when linked statically): the body, or empty.
fn fetch_from(root: &TestRoot, user: &str, app: &str, host: &str) -> String {
    let Some(task) = task_of(root, user, app) else {
        return String::new();
    };
    let script = format!("echo -e 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} 8080");
    let out = std::process::Command::new("docker")
        .args(["exec", &task, "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string());
    body.filter(|_| text.starts_with("HTTP/1.1 200"))
        .unwrap_or_default()
}

fn overlay_exists(root: &TestRoot, user: &str) -> bool {
    let name = format!("berth-{}-{user}", root.instance);
    let out = docker_cli(&[
        "network",
        "ls",
        "--filter",
        "driver=overlay",
        "--format",
        "{{.Name}}",
    ]);
    out.lines().any(|l| l == name)
}

#[tokio::test]
#[ignore = "swarm mode changes the whole engine: scripts/test.sh runs these alone, after the rest"]
async fn a_users_services_reach_each_other_by_name_on_their_overlay_and_no_one_else_does() {
    let swarm = SwarmRoot::new("swarmnet").await;
    let root = &swarm.root;
    root.write_template("www-v1", WWW_TEMPLATE);
    let www = |name: &str| format!("template = \"www-v1\"\n[env]\nNAME = \"{name}\"\n");
    root.write_manifest("alice", "api", &www("api"));
    root.write_manifest("alice", "web", &www("web"));
    root.write_manifest("bob", "spy", &www("spy"));
    let run = root.berth(&["apply"]).await;
    assert_eq!(run.code, Some(0), "apply: {}", run.text());
    assert!(overlay_exists(root, "alice") && overlay_exists(root, "bob"));
    wait_until(T, "alice's web to reach alice's api by name", || async {
        fetch_from(root, "alice", "web", "api") == "hello-api"
    })
    .await;
    wait_until(T, "bob's task to run", || async {
        fetch_from(root, "bob", "spy", "spy") == "hello-spy"
    })
    .await;
    assert_eq!(
        fetch_from(root, "bob", "spy", "api"),
        "",
        "bob reaches alice's api"
    );
    let alice_web = format!("paas-app-{}-alice-web", root.instance);
    assert_eq!(
        fetch_from(root, "bob", "spy", &alice_web),
        "",
        "bob reaches alice's web"
    );

    root.remove_manifest("alice", "api");
    root.remove_manifest("alice", "web");
    let run = root.berth(&["apply"]).await;
    assert_eq!(run.code, Some(0), "apply: {}", run.text());
    // The engine's own copy of an overlay goes once the removed tasks have left it.
    wait_until(T, "alice's overlay to go with her last service", || async {
        !overlay_exists(root, "alice")
    })
    .await;
    assert!(overlay_exists(root, "bob"), "bob's overlay stays");
}
