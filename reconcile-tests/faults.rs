//! Faults a real server meets (issue 12), each staged for one berth only: an engine outage
//! (through a cuttable relay to the engine's socket) is visible in `/readyz`, the metrics and
//! `GET /apps`, and everything converges when the engine is back.

use std::time::Duration;

use crate::support::api::{add_user, Api};
use crate::support::relay::DockerRelay;
use crate::support::{wait_until, Serve, TestRoot, MINIMAL};

const T: Duration = Duration::from_secs(30);

// Multi-threaded: the relay's tasks run while the test blocks on serve's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_outage_is_reported_and_apps_converge_when_it_ends() {
    let mut relay = DockerRelay::start();
    let root = TestRoot::new("engineout").await;
    root.config(&[("resync", "\"1s\"")], "");
    let admin = add_user(&root, "root", true).await;
    root.write_manifest("alice", "web", MINIMAL);
    let host = relay.docker_host();
    let mut serve = Serve::start_env(&root, &[("DOCKER_HOST", host.as_str())]);
    let api = Api::new(serve.api_base());
    root.wait_running("alice", "web", T).await;
    wait_until(T, "ready", || async {
        api.get("/readyz", "").await.status == 200
    })
    .await;

    relay.cut();
    wait_until(T, "the outage to show", || async {
        let ready = api.get("/readyz", "").await;
        let metrics = api.get("/metrics", "").await.text;
        ready.status == 503
            && ready.json()["checks"]["engine"]["ok"] == false
            && metrics.contains("berth_engine_up 0")
    })
    .await;
    let apps = api.get("/apps", &admin).await.json();
    assert_eq!(apps["apps"][0]["container"], "unknown", "{apps}");
    assert_eq!(
        api.get("/healthz", "").await.status,
        200,
        "liveness is not readiness"
    );
    let metrics = api.get("/metrics", "").await.text;
    let failures = metrics
        .lines()
        .find_map(|l| l.strip_prefix("berth_reconcile_failures_total "))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "{metrics}");

    // A change made during the outage lands once the engine is back.
    root.write_manifest("alice", "api", MINIMAL);
    relay.restore();
    root.wait_running("alice", "api", T).await;
    wait_until(T, "ready again", || async {
        api.get("/readyz", "").await.status == 200
    })
    .await;
    assert!(root.running("alice", "web").await);
    serve.assert_alive();
}
