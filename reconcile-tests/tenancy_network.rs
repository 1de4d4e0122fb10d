//! Tenancy between users' networks (docs/guides/tenancy.md): a user's apps reach each other by
//! name and never another user's, not once, even while networks are made and removed beside
//! the probe (berth's own rules in `DOCKER-USER`, `runtime::isolation`); the rules follow
//! berth's networks, come back when deleted by hand, and go with the last network.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth::runtime::isolation::chain_name;

use crate::support::{wait_until, Serve, TestRoot, MINIMAL, WWW_TEMPLATE};

/// An HTTP GET of `host:8080` from inside `user/app`'s container (busybox `nc`, 3 s); the
/// body, or `None` when nothing answers.
fn fetch_from(root: &TestRoot, (user, app): (&str, &str), host: &str) -> Option<String> {
    let script = format!("echo -e 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} 8080");
    let out = std::process::Command::new("docker")
        .args(["exec", &root.container_name(user, app), "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string());
    body.filter(|_| text.starts_with("HTTP/1.1 200"))
}

/// `fetch_from` until it answers (a server needs a moment after its container starts).
async fn answer(root: &TestRoot, from: (&str, &str), to: &str) -> Option<String> {
    for _ in 0..50 {
        if let Some(a) = fetch_from(root, from, to) {
            return Some(a);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// alice and bob, each with `web` (answering `hello-<user>`) and `probe`; answers bob's web's
/// address on his network, once his own probe got an answer from it.
async fn two_users(root: &TestRoot) -> String {
    root.write_template("www-v1", WWW_TEMPLATE);
    let www = |name: &str| format!("template = \"www-v1\"\n[env]\nNAME = \"{name}\"\n");
    for user in ["alice", "bob"] {
        root.write_manifest(user, "web", &www(user));
        root.write_manifest(user, "probe", MINIMAL);
    }
    root.berth(&["apply"]).await.expect_code(0);
    let bob_web = root.container("bob", "web").await.unwrap();
    let networks = bob_web.network_settings.unwrap().networks.unwrap();
    let bob_ip = networks[&format!("berth-{}-bob", root.instance)]
        .ip_address
        .clone()
        .unwrap();
    let own = answer(root, ("alice", "probe"), "web").await;
    assert_eq!(own.as_deref(), Some("hello-alice"), "alice's app by name");
    let bobs = answer(root, ("bob", "probe"), &bob_ip).await;
    assert_eq!(bobs.as_deref(), Some("hello-bob"), "bob's app, by bob");
    bob_ip
}

#[tokio::test]
async fn users_reach_their_own_apps_by_name_and_never_another_users() {
    let root = TestRoot::new("tennet").await;
    let bob_ip = two_users(&root).await;
    for _ in 0..3 {
        assert_eq!(fetch_from(&root, ("alice", "probe"), &bob_ip), None);
    }
    let bob_name = root.container_name("bob", "web");
    assert_eq!(fetch_from(&root, ("alice", "probe"), &bob_name), None);
}

/// Probes one loop of [`probe_many`] makes, one after another.
const EACH: u32 = 15;

/// `loops` × [`EACH`] GETs of `host:8080` from inside `user/app`, `loops` at a time, each
/// given 1 s; answers how many were answered 200.
fn probe_many(root: &TestRoot, (user, app): (&str, &str), host: &str, loops: u32) -> usize {
    let one = format!(
        "echo -e 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 1 {host} 8080 2>/dev/null | grep -q '^HTTP/1.1 200' && echo HIT"
    );
    let script = format!(
        "for j in $(seq {loops}); do (for k in $(seq {EACH}); do {one}; done) & done; wait"
    );
    let out = std::process::Command::new("docker")
        .args(["exec", &root.container_name(user, app), "sh", "-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == "HIT")
        .count()
}

/// A third party making and removing a network in a loop (each one labelled with the test's
/// instance, so its guard removes a leftover), until dropped.
struct Churn {
    stop: Arc<AtomicBool>,
    made: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Churn {
    fn start(instance: &str) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let made: Arc<AtomicUsize> = Arc::default();
        let (s, m, instance) = (stop.clone(), Arc::clone(&made), instance.to_string());
        let thread = std::thread::spawn(move || {
            let label = format!("paas.instance={instance}");
            for i in 0.. {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("churn-{instance}-{i}");
                let docker = |args: &[&str]| {
                    let out = std::process::Command::new("docker").args(args).output();
                    out.is_ok_and(|o| o.status.success())
                };
                if docker(&["network", "create", "--label", &label, &name]) {
                    m.fetch_add(1, Ordering::Relaxed);
                    docker(&["network", "rm", &name]);
                }
            }
        });
        Churn {
            stop,
            made,
            thread: Some(thread),
        }
    }

    fn made(&self) -> usize {
        self.made.load(Ordering::Relaxed)
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test]
async fn no_probe_reaches_another_users_app_while_networks_are_made_beside_it() {
    let root = TestRoot::new("tenwall").await;
    let bob_ip = two_users(&root).await;
    let churn = Churn::start(&root.instance);
    wait_until(
        Duration::from_secs(30),
        "the churn's first network",
        || async { churn.made() > 0 },
    )
    .await;
    let loops = 20;
    let reached = probe_many(&root, ("alice", "probe"), &bob_ip, loops);
    let own = probe_many(&root, ("alice", "probe"), "web", 2);
    let made = churn.made();
    drop(churn);
    assert_eq!(
        reached,
        0,
        "alice's probe reached bob's app {reached} of {} times while {made} networks were made and removed beside it",
        loops * EACH
    );
    assert!(made > 1, "the churn made {made} networks during the probes");
    assert!(
        own > 0,
        "alice's probe reached her own app {own} of {} times",
        2 * EACH
    );
}

/// berth's chain's rules (as `iptables -S` shows them after `-A <chain> `), sorted; `None`
/// without the chain. And how many jumps `DOCKER-USER` has into it.
fn rules(chain: &str) -> (Option<Vec<String>>, usize) {
    let out = std::process::Command::new("iptables")
        .args(["-w", "-S"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let has = text.lines().any(|l| l == format!("-N {chain}"));
    let prefix = format!("-A {chain} ");
    let mut rules: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(String::from))
        .collect();
    rules.sort();
    let jump = format!("-A DOCKER-USER -o br-+ -j {chain}");
    let jumps = text.lines().filter(|l| *l == jump).count();
    (has.then_some(rules), jumps)
}

/// The rule berth keeps for `user`'s network.
fn drop_rule(root: &TestRoot, user: &str) -> String {
    let net = format!("berth-{}-{user}", root.instance);
    let id = crate::support::docker::docker_cli(&["network", "inspect", "-f", "{{.Id}}", &net]);
    let bridge = format!("br-{}", &id.trim()[..12]);
    format!("-i {bridge} ! -o {bridge} -j DROP")
}

fn iptables(args: &str) {
    let out = std::process::Command::new("iptables")
        .arg("-w")
        .args(args.split_whitespace())
        .output()
        .unwrap();
    assert!(out.status.success(), "iptables {args}: {out:?}");
}

#[tokio::test]
async fn the_rules_follow_the_networks_come_back_when_deleted_and_go_with_the_last() {
    let root = TestRoot::new("tenrules").await;
    let chain = chain_name(&root.instance);
    root.write_manifest("alice", "web", MINIMAL);
    root.write_manifest("bob", "web", MINIMAL);
    root.berth(&["apply"]).await.expect_code(0);
    let (alice, bob) = (drop_rule(&root, "alice"), drop_rule(&root, "bob"));
    let mut both = vec![alice.clone(), bob.clone()];
    both.sort();
    assert_eq!(rules(&chain), (Some(both.clone()), 1));
    // Deleted by hand while berth is down: put back when serve starts.
    iptables(&format!("-D {chain} {alice}"));
    iptables(&format!("-D DOCKER-USER -o br-+ -j {chain}"));
    let _serve = Serve::start(&root);
    let back = || async { rules(&chain) == (Some(both.clone()), 1) };
    wait_until(Duration::from_secs(30), "the rules back at start", back).await;
    // Deleted by hand while serve runs: put back by the next pass.
    iptables(&format!("-D {chain} {bob}"));
    root.berth(&["apply"]).await.expect_code(0);
    assert_eq!(rules(&chain), (Some(both), 1), "after a pass");
    root.remove_manifest("alice", "web");
    root.berth(&["apply"]).await.expect_code(0);
    let only_bob = || async { rules(&chain) == (Some(vec![bob.clone()]), 1) };
    wait_until(Duration::from_secs(30), "alice's rule gone", only_bob).await;
    root.remove_manifest("bob", "web");
    root.berth(&["apply"]).await.expect_code(0);
    let none = || async { rules(&chain) == (None, 0) };
    wait_until(Duration::from_secs(30), "the chain and its jump gone", none).await;
}
