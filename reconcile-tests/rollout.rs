//! Rollouts (docs/guides/deploys-and-rollback.md) against a real Caddy and real containers: 50
//! deploys of a domain app under 16 clients opening a fresh connection per request fail no
//! request, need no retry, and every switch sticks from the moment the route moves; a new version that fails its
//! health check or exits is rolled back, shown as `rollout-failed` and not retried; an app on
//! a host port gets its old container back; berth SIGKILLed at each step of a rollout comes
//! back to exactly one serving container that the route points at (killed after the switch,
//! the new one is kept, not made again).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::caddy::Caddy;
use crate::support::{free_port, http_get, wait_until, Serve, TestRoot};

const T: Duration = Duration::from_secs(60);
const DOMAIN: &str = "shop.example.test";

/// A template answering `hello-$NAME` on 8080 with `command`, checked at `/`.
fn rollout_template(image: &str, command: &str, memory: &str) -> String {
    format!(
        "image = \"{image}\"\ncommand = {command}\nworkdir = \"/\"\nport = 8080\n\n\
         [defaults]\nmemory = \"{memory}\"\ncpus = 1.0\n\n\
         [health]\npath = \"/\"\ntimeout = \"10s\"\ninterval = \"100ms\"\n"
    )
}

/// busybox httpd; `MODE=exit` dies at once with code 3, `SLOW=1` listens only after 2 s,
/// `STUBBORN=1` ignores SIGTERM (a stop takes the whole stop timeout).
const ROLL_COMMAND: &str = r#"["sh", "-c", "if [ \"$MODE\" = exit ]; then echo 'cannot start: MODE=exit' >&2; exit 3; fi; if [ \"$SLOW\" = 1 ]; then sleep 2; fi; if [ \"$STUBBORN\" = 1 ]; then trap '' TERM; fi; mkdir -p /tmp/w && echo hello-$NAME > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"]"#;

/// Node.js: a real server's accept queue (busybox httpd's holds 9 connections, which a burst
/// of 16 overflows whatever the proxy does). It exits on SIGTERM (as PID 1 it would ignore
/// it), so a drained container stops at once rather than after the stop timeout.
const NODE_COMMAND: &str = r#"["node", "-e", "process.on('SIGTERM', () => process.exit(0)); require('http').createServer((q, s) => s.end('hello-' + process.env.NAME + '\\n')).listen(8080)"]"#;

/// The shop at version `n`, with `extra` manifest lines (env goes under `[env]` last).
fn shop(n: u32, extra: &str, env: &str) -> String {
    format!("template = \"roll-v1\"\ndomain = \"{DOMAIN}\"\n{extra}\n[env]\nNAME = \"v{n}\"\n{env}")
}

async fn rollout_root(prefix: &str, proxy_table: &str) -> TestRoot {
    let root = TestRoot::new(prefix).await;
    let policy = "[policy]\ndomains = [\"*.example.test\"]\n";
    root.config(&[("resync", "\"1s\"")], &format!("{proxy_table}\n{policy}"));
    let busybox = rollout_template("berth-test-busybox:1", ROLL_COMMAND, "64m");
    root.write_template("roll-v1", &busybox);
    let node = rollout_template("berth-test-node:2", NODE_COMMAND, "128m");
    root.write_template("node-roll-v1", &node);
    root
}

/// One request through Caddy's plain HTTP listener.
/// Starts the error of a request whose connection was closed before any answer came.
const RESET: &str = "closed before an answer: ";

async fn get(client: &reqwest::Client, port: u16) -> Result<(u16, String), String> {
    let r = client
        .get(format!("http://127.0.0.1:{port}/"))
        .header("Host", DOMAIN)
        .send()
        .await
        .map_err(|e| {
            let shown = format!("{e:?}");
            let closed = ["IncompleteMessage", "ConnectionReset"]
                .iter()
                .any(|c| shown.contains(c));
            if closed {
                format!("{RESET}{shown}")
            } else {
                shown
            }
        })?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.map_err(|e| e.to_string())?))
}

/// The version a body names (`hello-v7` -> 7).
fn version(body: &str) -> Option<u32> {
    body.trim().strip_prefix("hello-v")?.parse().ok()
}

/// One answered (or failed) request of the load.
struct Sample {
    started: Instant,
    /// Sent a second time after its connection closed unanswered.
    retried: bool,
    result: Result<(u16, String), String>,
}

/// `connections` clients requesting the shop through Caddy in a loop until stopped (at most
/// 100 000 requests each); with `fresh`, each request on a new connection, as a browser
/// opening a page does.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

impl Load {
    fn start(port: u16, connections: usize) -> Load {
        Load::start_with(port, connections, false)
    }

    fn start_with(port: u16, connections: usize, fresh: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..connections)
            .map(|_| {
                let stop = stop.clone();
                let mut client = reqwest::Client::builder().timeout(Duration::from_secs(10));
                if fresh {
                    client = client.pool_max_idle_per_host(0);
                }
                let client = client.build().unwrap();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    while !stop.load(Ordering::Relaxed) && out.len() < 100_000 {
                        let started = Instant::now();
                        let (retried, result) = match get(&client, port).await {
                            // As browsers do (RFC 9110 9.2.2): a GET whose connection was
                            // closed before any answer is sent once more. Counted: the goal
                            // is that none needs it.
                            Err(e) if e.starts_with(RESET) => (true, get(&client, port).await),
                            other => (false, other),
                        };
                        out.push(Sample {
                            started,
                            retried,
                            result,
                        });
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    out
                })
            })
            .collect();
        Load { stop, tasks }
    }

    async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.unwrap());
        }
        all
    }
}

/// Panics if any request failed (non-2xx or no answer) or had to be sent again, with the
/// counts and the first few failures.
fn assert_no_failures(samples: &[Sample]) {
    let failed: Vec<String> = samples
        .iter()
        .filter_map(|s| match &s.result {
            Ok((200, _)) => None,
            Ok((status, body)) => Some(format!("{status}: {body}")),
            Err(e) => Some(e.clone()),
        })
        .collect();
    let retried = samples.iter().filter(|s| s.retried).count();
    eprintln!(
        "load: {} requests, {} failed, {retried} sent again after their connection closed unanswered",
        samples.len(),
        failed.len(),
    );
    assert!(
        failed.is_empty() && retried == 0,
        "{} of {} requests failed and {retried} were sent again, first failures: {:?}",
        failed.len(),
        samples.len(),
        &failed[..failed.len().min(5)]
    );
}

/// Waits until the shop's only container is settled under its name, runs version `n`, and
/// Caddy answers with it.
async fn wait_settled(root: &TestRoot, caddy: &Caddy, n: u32) {
    let client = reqwest::Client::new();
    let want = format!("NAME=v{n}");
    wait_until(T, &format!("v{n} to be settled and serving"), || async {
        let all = root.instance_containers().await;
        let settled = all.len() == 1
            && root.container("alice", "shop").await.is_some_and(|c| {
                let env = c.config.and_then(|c| c.env).unwrap_or_default();
                env.contains(&want) && c.state.and_then(|s| s.running) == Some(true)
            });
        let answer = get(&client, caddy.http).await.ok();
        settled && answer.is_some_and(|(_, body)| version(&body) == Some(n))
    })
    .await;
}

/// Waits (without blocking the load's tasks) until serve has logged `line` more than `seen`
/// times.
async fn wait_logged(serve: &Serve, line: &str, seen: usize) {
    wait_until(T, &format!("{line:?} logged"), || async {
        serve.log().matches(line).count() > seen
    })
    .await;
}

/// Changes made through Caddy's admin API so far (each one a config load, which binds new
/// listeners), from Caddy's own log.
fn caddy_config_loads(caddy: &Caddy) -> usize {
    (caddy.log().lines())
        .filter(|l| l.contains(r#""msg":"received request""#) && !l.contains(r#""method":"GET""#))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_deploys_under_fresh_connections_fail_none_retry_none_and_every_switch_sticks() {
    let caddy = Caddy::start();
    let root = rollout_root("roll50", &forwarding(caddy.plain_proxy_table("300ms"))).await;
    let node = |n| shop(n, "", "").replace("roll-v1", "node-roll-v1");
    root.write_manifest("alice", "shop", &node(0));
    let serve = Serve::start(&root);
    wait_settled(&root, &caddy, 0).await;
    let loads_before = caddy_config_loads(&caddy);
    let load = Load::start_with(caddy.http, 16, true);
    let mut switched_at = Vec::new();
    for n in 1..=50 {
        let seen = serve.log().matches("rollout: switched").count();
        root.write_manifest("alice", "shop", &node(n));
        // The line comes after the switch: a request sent from here on must get v{n}.
        wait_logged(&serve, "rollout: switched", seen).await;
        switched_at.push((n, Instant::now()));
        // The next deploy waits in the loop until this one has stopped the old container.
    }
    wait_settled(&root, &caddy, 50).await;
    let samples = load.stop().await;
    let loads = caddy_config_loads(&caddy) - loads_before;
    eprintln!("Caddy config loads during the deploys: {loads}");
    assert!(
        samples.len() > 2000,
        "the load was too light: {}",
        samples.len()
    );
    assert_no_failures(&samples);
    for s in &samples {
        let Ok((_, body)) = &s.result else { continue };
        let got = version(body).unwrap_or_else(|| panic!("odd body {body:?}"));
        for (n, at) in &switched_at {
            assert!(
                s.started < *at || got >= *n,
                "a request sent after the switch to v{n} got v{got}"
            );
        }
    }
    assert_eq!(
        loads, 0,
        "a deploy changed Caddy's config (each load swaps its listeners)"
    );
}

/// `berth status` once it shows `rollout-failed`.
async fn wait_rollout_failed(root: &TestRoot, needle: &str) -> String {
    wait_until(T, &format!("rollout-failed with {needle:?}"), || async {
        let shown = root.berth(&["status"]).await.text();
        shown.contains("rollout-failed") && shown.contains(needle)
    })
    .await;
    root.berth(&["status"]).await.text()
}

#[tokio::test]
async fn a_version_that_fails_its_check_or_exits_is_rolled_back_and_not_retried() {
    let caddy = Caddy::start();
    let root = rollout_root("rollbad", &forwarding(caddy.plain_proxy_table("200ms"))).await;
    root.write_manifest("alice", "shop", &shop(1, "", ""));
    let mut serve = Serve::start(&root);
    wait_settled(&root, &caddy, 1).await;
    let load = Load::start(caddy.http, 4);

    let unhealthy = "[health]\npath = \"/missing\"\ntimeout = \"2s\"";
    root.write_manifest("alice", "shop", &shop(2, unhealthy, ""));
    let shown = wait_rollout_failed(&root, "404").await;
    assert!(shown.contains("GET /missing"), "{shown}");
    let plan = root.berth(&["plan"]).await;
    plan.expect_contains("rollout-failed")
        .expect_contains("edit the manifest or deploy");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rolled_back = serve.log().matches("rollout: rolled back").count();
    assert_eq!(
        rolled_back,
        1,
        "the refused spec was tried again\n{}",
        serve.log()
    );

    root.write_manifest("alice", "shop", &shop(3, "", "MODE = \"exit\"\n"));
    let shown = wait_rollout_failed(&root, "exited with code 3").await;
    assert!(
        shown.contains("cannot start: MODE=exit"),
        "the last log lines are shown: {shown}"
    );
    assert_eq!(
        root.instance_containers().await.len(),
        1,
        "the failed container is gone"
    );

    root.write_manifest("alice", "shop", &shop(4, "", ""));
    wait_settled(&root, &caddy, 4).await;
    let samples = load.stop().await;
    assert_no_failures(&samples);
    let versions: std::collections::BTreeSet<u32> = samples
        .iter()
        .filter_map(|s| s.result.as_ref().ok().and_then(|(_, b)| version(b)))
        .collect();
    assert!(
        !versions.contains(&2) && !versions.contains(&3),
        "{versions:?}"
    );
    serve.assert_alive();
}

#[tokio::test]
async fn an_app_on_a_host_port_gets_its_old_container_back_when_the_new_one_fails() {
    let root = rollout_root("rollport", "").await;
    let port = free_port();
    let app = |n: u32, env: &str| {
        format!("template = \"roll-v1\"\nhost_port = {port}\n[env]\nNAME = \"v{n}\"\n{env}")
    };
    root.write_manifest("alice", "api", &app(1, ""));
    let _serve = Serve::start(&root);
    let answers = |n: u32| async move { http_get(port).is_some_and(|b| version(&b) == Some(n)) };
    wait_until(T, "v1 on the host port", || answers(1)).await;
    root.write_manifest("alice", "api", &app(2, "MODE = \"exit\"\n"));
    wait_rollout_failed(&root, "exited with code 3").await;
    wait_until(T, "v1 back on the host port", || answers(1)).await;
    assert_eq!(root.instance_containers().await.len(), 1);
    assert_eq!(
        root.container("alice", "api")
            .await
            .unwrap()
            .name
            .as_deref(),
        Some(format!("/{}", root.container_name("alice", "api")).as_str())
    );
    root.write_manifest("alice", "api", &app(3, ""));
    wait_until(T, "v3 on the host port", || answers(3)).await;
}

/// Waits until alice's `app` has a rollout's new container running.
async fn wait_next_running(root: &TestRoot, app: &str) {
    let next = format!("/{}_next", root.container_name("alice", app));
    wait_until(T, "the new container to run", || async {
        root.instance_containers().await.iter().any(|c| {
            c.names.as_ref().is_some_and(|n| n.contains(&next))
                && c.state == Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
        })
    })
    .await;
}

/// Where berth is killed during a rollout to version `n`.
enum Step {
    /// During the pre-deploy hook: nothing new exists yet.
    BeforeStart,
    /// The new container runs but is not healthy yet (it boots for 2 s).
    DuringHealth,
    /// The new container just passed its check.
    AfterHealth,
    /// The route was switched and the names handed over; the old container is draining (3 s).
    DuringDrain,
    /// The drained old container is being stopped (it ignores SIGTERM, so that takes the 2 s
    /// stop timeout, and berth comes back while it runs).
    DuringStop,
}

impl Step {
    /// The line serve logs at this step (logged again by every rollout a restart redoes).
    fn log_line(&self) -> Option<&'static str> {
        match self {
            Step::BeforeStart | Step::DuringHealth => None,
            Step::AfterHealth => Some("rollout: healthy"),
            Step::DuringDrain => Some("rollout: switched"),
            Step::DuringStop => Some("rollout: drained; stopping the old container"),
        }
    }
}

/// Kills serve at `step`; `seen` is how often serve had logged the step's line before.
async fn kill_at(step: &Step, seen: usize, serve: &mut Serve, root: &TestRoot) {
    if let Some(line) = step.log_line() {
        serve.wait_new_log(line, seen, T);
    }
    match step {
        Step::BeforeStart => {
            let marker = root.path().join("pre-deploy-ran");
            wait_until(T, "the pre-deploy hook", || async { marker.exists() }).await;
            std::fs::remove_file(&marker).unwrap();
        }
        Step::DuringHealth => {
            wait_next_running(root, "shop").await;
        }
        Step::AfterHealth | Step::DuringDrain | Step::DuringStop => {}
    }
    serve.kill();
}

/// After the switch: the id of the container under the shop's name, after asserting that it
/// is version `n` and that the old one is beside it as `_old`.
async fn new_beside_a_retired_old(root: &TestRoot, n: u32) -> String {
    let new = root.container("alice", "shop").await.unwrap();
    let env = new.config.and_then(|c| c.env).unwrap_or_default();
    assert!(env.contains(&format!("NAME=v{n}")), "{env:?}");
    let old = format!("/{}_old", root.container_name("alice", "shop"));
    let all = root.instance_containers().await;
    let retired = all
        .iter()
        .filter(|c| c.names.as_ref().is_some_and(|n| n.contains(&old)));
    assert_eq!(retired.count(), 1, "{all:?}");
    new.id.unwrap()
}

#[tokio::test]
async fn berth_killed_at_each_step_of_a_rollout_comes_back_to_one_serving_container() {
    let caddy = Caddy::start();
    let root = rollout_root("rollkill", &forwarding(caddy.plain_proxy_table("3s"))).await;
    let marker = root.path().join("pre-deploy-ran");
    let hook = format!("#!/bin/sh\ntouch '{}'\nsleep 1\n", marker.display());
    root.write_hook("roll-v1", "pre-deploy", &hook);
    root.write_manifest("alice", "shop", &shop(0, "", "STUBBORN = \"1\"\n"));
    let mut serve = Serve::start(&root);
    wait_settled(&root, &caddy, 0).await;
    let steps = [
        Step::BeforeStart,
        Step::DuringHealth,
        Step::AfterHealth,
        Step::DuringDrain,
        Step::DuringStop,
    ];
    for (n, step) in (1..).zip(steps.iter()) {
        let slow = if matches!(step, Step::DuringHealth) {
            "SLOW = \"1\"\n"
        } else {
            ""
        };
        // Every old version outlives its stop by 2 s: berth comes back while it stops.
        let env = format!("{slow}STUBBORN = \"1\"\n");
        let seen = step
            .log_line()
            .map_or(0, |l| serve.log().matches(l).count());
        root.write_manifest("alice", "shop", &shop(n, "", &env));
        kill_at(step, seen, &mut serve, &root).await;
        let checked = match step {
            Step::DuringDrain | Step::DuringStop => Some(new_beside_a_retired_old(&root, n).await),
            _ => None,
        };
        serve = Serve::start(&root);
        wait_settled(&root, &caddy, n).await;
        if let Some(id) = checked {
            let kept = root.container("alice", "shop").await.unwrap().id;
            assert_eq!(
                kept,
                Some(id),
                "the serving new container is kept, not made again"
            );
        }
        let _ = std::fs::remove_file(&marker);
    }
    serve.assert_alive();
}

#[tokio::test]
async fn berth_killed_during_a_stop_first_check_keeps_the_old_container_and_checks_again() {
    let root = rollout_root("rollkill1", "").await;
    let port = free_port();
    let app = |n: u32, extra: &str, env: &str| {
        format!(
            "template = \"roll-v1\"\nhost_port = {port}\n{extra}\n[env]\nNAME = \"v{n}\"\n{env}"
        )
    };
    root.write_manifest("alice", "api", &app(1, "", ""));
    let mut serve = Serve::start(&root);
    let answers = |n: u32| async move { http_get(port).is_some_and(|b| version(&b) == Some(n)) };
    wait_until(T, "v1 on the host port", || answers(1)).await;
    // v2 boots slowly and then fails its check: berth is killed while it boots.
    let failing = "[health]\npath = \"/missing\"\ntimeout = \"8s\"";
    root.write_manifest("alice", "api", &app(2, failing, "SLOW = \"1\"\n"));
    wait_next_running(&root, "api").await;
    serve.kill();
    let serve = Serve::start(&root);
    // The unchecked container is not kept: v2 is checked again, refused, and v1 serves.
    let deadline = std::time::Instant::now() + T;
    while !root
        .berth(&["status"])
        .await
        .text()
        .contains("rollout-failed")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no rollout-failed within {T:?}\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shown = root.berth(&["status"]).await.text();
    assert!(shown.contains("GET /missing"), "{shown}");
    wait_until(T, "v1 back on the host port", || answers(1)).await;
    assert_eq!(root.instance_containers().await.len(), 1);
}

/// `table` (a `[proxy]` table, its last line) with berth's forwarders on.
fn forwarding(table: String) -> String {
    format!("{}\nforwarders = true\n", table.trim_end())
}
