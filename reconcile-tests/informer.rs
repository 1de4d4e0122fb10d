//! Zero engine calls while idle (issue 16, the informer): with Docker's event stream
//! followed, a pass over unchanged containers, the resync tick included, asks the engine
//! nothing, and so does `GET /apps`: `berth_engine_calls_total` stays flat over several resync
//! periods (`resync` 1 s, `relist` 1 h). A container removed by hand is still healed with
//! `resync` and `relist` both an hour, so only the event path can heal it: no resync pass
//! runs, and a pass woken by a Docker event does.
//! And a container removed while berth's event stream is cut (and longer ago than the replay
//! a new subscription asks for) is healed once the engine answers again: a lost stream means
//! a relist.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::api::{add_user, Api};
use crate::support::docker::docker_cli;
use crate::support::relay::DockerRelay;
use crate::support::{metric_value, wait_until, Serve, TestRoot, MINIMAL};

const T: Duration = Duration::from_secs(30);

/// `berth_engine_calls_total` by operation, but `ping`: the liveness ping readiness makes
/// every second (`runtime::engine_check`) is no pass's call and no surface's.
fn engine_calls(metrics: &str) -> BTreeMap<String, u64> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("berth_engine_calls_total{op=\""))
        .filter_map(|rest| {
            let (op, n) = rest.split_once("\"} ")?;
            Some((op.to_string(), n.trim().parse::<f64>().ok()? as u64))
        })
        .filter(|(op, _)| op != "ping")
        .collect()
}

/// The engine calls so far and the resync passes run so far.
async fn read(api: &Api) -> (BTreeMap<String, u64>, u64) {
    let text = api.get("/metrics", "").await.text;
    let resyncs = metric_value(
        &text,
        "berth_reconcile_pass_triggers_total{trigger=\"resync\"}",
    );
    (engine_calls(&text), resyncs)
}

/// Waits until `n` more resync passes have run; the engine calls then.
async fn after_resyncs(api: &Api, n: u64) -> BTreeMap<String, u64> {
    let start = std::time::Instant::now();
    let (_, from) = read(api).await;
    loop {
        let (calls, resyncs) = read(api).await;
        if resyncs >= from + n {
            return calls;
        }
        assert!(start.elapsed() < T, "{n} resync passes did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to `T`) for two resync passes in a row without an engine call: the passes that
/// follow the last burst of events (the settle pass a second after it) are over.
async fn quiet(api: &Api) -> BTreeMap<String, u64> {
    let start = std::time::Instant::now();
    let mut last = after_resyncs(api, 1).await;
    loop {
        let now = after_resyncs(api, 2).await;
        if now == last {
            return now;
        }
        assert!(
            start.elapsed() < T,
            "the engine is still asked while nothing changes:\nbefore {last:?}\nafter  {now:?}"
        );
        last = now;
    }
}

#[tokio::test]
async fn idle_passes_ask_the_engine_nothing() {
    let root = TestRoot::new("idle").await;
    root.config(&[("resync", "\"1s\""), ("relist", "\"1h\"")], "");
    let admin = add_user(&root, "root", true).await;
    root.write_manifest("alice", "web", MINIMAL);
    root.write_manifest("bob", "api", MINIMAL);
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    root.wait_running("alice", "web", T).await;
    root.wait_running("bob", "api", T).await;

    let before = quiet(&api).await;
    assert!(before.get("list").copied().unwrap_or(0) >= 1, "{before:?}");
    for _ in 0..3 {
        let apps = api.get("/apps", &admin).await.json();
        assert_eq!(apps["apps"].as_array().map(Vec::len), Some(2), "{apps}");
    }
    let after = after_resyncs(&api, 4).await;
    println!("informer: engine calls before 4 idle resync passes {before:?}, after {after:?}");
    assert_eq!(
        before, after,
        "idle resync passes (and GET /apps) called the engine"
    );

    serve.assert_alive();
}

#[tokio::test]
async fn a_hand_removal_is_healed_by_docker_events_alone() {
    let root = TestRoot::new("heal").await;
    // Neither the resync nor a relist runs within the test: only an event can heal.
    root.config(&[("resync", "\"1h\""), ("relist", "\"1h\"")], "");
    root.write_manifest("alice", "web", MINIMAL);
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    root.wait_running("alice", "web", T).await;
    let passes = |text: &str, trigger: &str| {
        let series = format!("berth_reconcile_pass_triggers_total{{trigger=\"{trigger}\"}}");
        metric_value(text, &series)
    };
    let text = api.get("/metrics", "").await.text;
    let before = engine_calls(&text);
    let (events, resyncs) = (passes(&text, "docker_event"), passes(&text, "resync"));

    let old = root.id("alice", "web").await;
    docker_cli(&["rm", "-f", &root.container_name("alice", "web")]);
    let took = replaced(&root, "alice", "web", &old, "alice/web to come back").await;
    println!("informer: hand-removed container back in {took:?}");
    let text = api.get("/metrics", "").await.text;
    assert!(
        passes(&text, "docker_event") > events,
        "no pass was woken by Docker's events"
    );
    assert_eq!(passes(&text, "resync"), resyncs, "a resync pass ran");
    let healed = engine_calls(&text);
    assert!(
        healed.get("create") > before.get("create"),
        "the heal created: before {before:?}, after {healed:?}"
    );
    serve.assert_alive();
}

/// Waits until `user/app` runs in a container other than `old`; how long that took.
async fn replaced(root: &TestRoot, user: &str, app: &str, old: &str, what: &str) -> Duration {
    wait_until(T, what, || async {
        match root.container(user, app).await {
            Some(c) => c.id.as_deref() != Some(old) && c.state.unwrap().running == Some(true),
            None => false,
        }
    })
    .await
}

// Multi-threaded: the relay's tasks run while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_removed_while_the_event_stream_was_cut_is_healed_by_a_relist() {
    let mut relay = DockerRelay::start();
    let root = TestRoot::new("relist").await;
    root.config(&[("resync", "\"1s\""), ("relist", "\"1h\"")], "");
    root.write_manifest("alice", "web", MINIMAL);
    let host = relay.docker_host();
    let mut serve = Serve::start_env(&root, &[("DOCKER_HOST", host.as_str())]);
    let api = Api::new(serve.api_base());
    root.wait_running("alice", "web", T).await;
    quiet(&api).await;

    relay.cut();
    let old = root.id("alice", "web").await;
    docker_cli(&["rm", "-f", &root.container_name("alice", "web")]);
    // Past the few seconds a new subscription asks Docker to replay: no event of the removal
    // will ever reach berth.
    tokio::time::sleep(Duration::from_secs(8)).await;
    relay.restore();
    let took = replaced(&root, "alice", "web", &old, "alice/web back after the cut").await;
    println!("informer: removed during a cut, back {took:?} after the engine answered again");
    serve.assert_alive();
}
