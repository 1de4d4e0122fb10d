//! One decider per root: a second `serve` with a database of its own, and an `apply` that
//! cannot find the daemon's socket, are refused by the root's lock instead of racing the
//! running `serve`; and a name conflict with a container someone else made is retried, never
//! recorded as the spec's own failed rollout.

use std::time::Duration;

use crate::support::docker::docker_cli;
use crate::support::{free_port, wait_until, Serve, TestRoot, MINIMAL};

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_second_serve_on_the_same_root_is_refused_whatever_its_database() {
    let root = TestRoot::new("twoserve").await;
    root.write_manifest("alice", "web", MINIMAL);
    let mut first = Serve::start(&root);
    first.api_base();
    let own = std::fs::read_to_string(root.path().join("berth.toml")).unwrap();
    let other = root.path().join("other.toml");
    std::fs::write(&other, format!("database = \"other.redb\"\n{own}")).unwrap();

    let second = root
        .berth(&["--config", other.to_str().unwrap(), "serve"])
        .await;
    second.expect_code(2).expect_contains("berth.lock");
    let holder = format!("pid {}: berth serve", first.pid());
    second.expect_contains(&holder);
    assert!(
        !root.path().join("other.redb").exists(),
        "the refused serve made its database\n{second}"
    );
    first.assert_alive();
}

#[tokio::test]
async fn apply_without_the_daemons_socket_does_not_decide_beside_serve() {
    let root = TestRoot::new("nosocket").await;
    root.write_manifest("alice", "web", MINIMAL);
    let mut serve = Serve::start(&root);
    serve.api_base();
    root.wait_running("alice", "web", T).await;
    std::fs::remove_file(root.path().join("berth.redb.sock")).unwrap();

    let apply = root.berth(&["apply"]).await;
    apply
        .expect_code(2)
        .expect_contains("no daemon answers on its socket")
        .expect_contains(&format!("pid {}: berth serve", serve.pid()));
    let mv = root.berth(&["mv", "alice/web", "site"]).await;
    mv.expect_contains("berth.lock");
    assert!(
        root.manifest_path("alice", "web").exists(),
        "mv renamed beside serve\n{mv}"
    );
    serve.assert_alive();
}

/// A container someone else made under a name berth needs; removed however the test ends.
struct Foreign(String);

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

#[tokio::test]
async fn a_name_conflict_with_another_writer_is_retried_not_refused() {
    let root = TestRoot::new("conflict").await;
    let port = free_port();
    let app = |n: u32| format!("template = \"bb-v1\"\nhost_port = {port}\n[env]\nN = \"{n}\"\n");
    root.write_manifest("alice", "api", &app(1));
    let serve = Serve::start(&root);
    root.wait_running("alice", "api", T).await;

    // Unlabelled, so berth does not see it: only its name collides with the rollout's.
    let next = format!("{}_next", root.container_name("alice", "api"));
    docker_cli(&["create", "--name", &next, "berth-test-busybox:1", "true"]);
    let foreign = Foreign(next);
    let started = |c: Option<bollard::models::ContainerInspectResponse>| {
        c.and_then(|c| c.state).and_then(|s| s.started_at)
    };
    let before = started(root.container("alice", "api").await);
    root.write_manifest("alice", "api", &app(2));
    wait_until(
        T,
        "the conflict to be met, and met again by a retry",
        || async { serve.log().matches("Conflict").count() >= 2 },
    )
    .await;
    assert_eq!(
        started(root.container("alice", "api").await),
        before,
        "the serving container was stopped for a create that could not succeed"
    );
    let status = root.berth(&["status"]).await;
    assert!(
        !status.contains("rollout-failed"),
        "a conflict with another writer was recorded as the spec's refusal\n{status}"
    );

    drop(foreign);
    wait_until(T, "version 2 to run once the name is free", || async {
        let Some(c) = root.container("alice", "api").await else {
            return false;
        };
        let env = c.config.and_then(|c| c.env).unwrap_or_default();
        env.iter().any(|e| e == "N=2") && c.state.and_then(|s| s.running) == Some(true)
    })
    .await;
}
