//! Safety rails: the mass-removal guard (an emptied state directory never wipes a server),
//! instance isolation (one root never touches another instance's containers), and quotas.

use std::collections::BTreeMap;

use crate::support::{TestRoot, MINIMAL};

const APPS: [(&str, &str); 4] = [
    ("alice", "one"),
    ("alice", "two"),
    ("bob", "three"),
    ("carol", "four"),
];

async fn four_running_apps(root: &TestRoot) -> BTreeMap<String, String> {
    for (u, a) in APPS {
        root.write_manifest(u, a, MINIMAL);
    }
    root.berth(&["apply"]).await.expect_code(0);
    let mut ids = BTreeMap::new();
    for (u, a) in APPS {
        assert!(root.running(u, a).await, "{u}/{a} runs");
        ids.insert(format!("{u}/{a}"), root.id(u, a).await);
    }
    ids
}

async fn ids_now(root: &TestRoot) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    for (u, a) in APPS {
        if let Some(c) = root.container(u, a).await {
            ids.insert(format!("{u}/{a}"), c.id.unwrap());
        }
    }
    ids
}

#[tokio::test]
async fn emptied_state_dir_is_a_blocked_mass_prune_until_allowed() {
    let root = TestRoot::new("prune").await;
    let before = four_running_apps(&root).await;

    std::fs::remove_dir_all(root.path().join("state/apps")).unwrap();
    std::fs::create_dir_all(root.path().join("state/apps")).unwrap();

    let run = root.berth(&["apply"]).await;
    run.expect_code(1).expect_contains("prune blocked");
    assert_eq!(
        ids_now(&root).await,
        before,
        "a blocked prune removes nothing"
    );
    for (u, a) in APPS {
        assert!(root.running(u, a).await, "{u}/{a} still runs");
    }

    root.berth(&["apply", "--allow-mass-prune"])
        .await
        .expect_code(0);
    let left = root.instance_containers().await;
    assert!(
        left.is_empty(),
        "--allow-mass-prune removes them all: {left:?}"
    );
}

#[tokio::test]
async fn removing_three_apps_at_once_is_not_a_mass_prune() {
    let root = TestRoot::new("prune3").await;
    let before = four_running_apps(&root).await;
    for (u, a) in &APPS[1..] {
        root.remove_manifest(u, a);
    }
    let run = root.berth(&["apply"]).await;
    run.expect_code(0);
    assert!(
        !run.contains("prune blocked"),
        "3 removals are under the guard\n{run}"
    );
    let after = ids_now(&root).await;
    assert_eq!(after.len(), 1, "only alice/one is left: {after:?}");
    assert_eq!(after.get("alice/one"), before.get("alice/one"));
}

#[tokio::test]
async fn another_instance_never_touches_our_containers() {
    let a = TestRoot::new("insta").await;
    a.write_manifest("alice", "web", MINIMAL);
    a.berth(&["apply"]).await.expect_code(0);
    let id = a.id("alice", "web").await;

    // Instance B: same engine, empty state, allowed to prune. It must see nothing to do.
    let b = TestRoot::new("instb").await;
    let plan = b.berth(&["plan"]).await;
    plan.expect_code(0).expect_contains("no changes");
    b.berth(&["apply", "--allow-mass-prune"])
        .await
        .expect_code(0);

    // B with a manifest of the same key: its own container, under its own name.
    b.write_manifest("alice", "web", MINIMAL);
    b.berth(&["apply"]).await.expect_code(0);
    assert_ne!(b.id("alice", "web").await, id);
    b.remove_manifest("alice", "web");
    b.berth(&["apply", "--allow-mass-prune"])
        .await
        .expect_code(0);
    assert!(b.container("alice", "web").await.is_none());

    assert_eq!(a.id("alice", "web").await, id, "A's container is untouched");
    assert!(a.running("alice", "web").await, "A's container still runs");
}

#[tokio::test]
async fn apps_past_a_quota_are_not_started() {
    let root = TestRoot::new("quota").await;
    root.config(&[("max_apps_per_user", "2"), ("max_total_apps", "3")], "");
    // Path order: alice/a, alice/b, alice/c (over the per-user quota), bob/x, carol/y (over
    // the total quota once alice/a, alice/b and bob/x are counted).
    for (u, a) in [
        ("alice", "a"),
        ("alice", "b"),
        ("alice", "c"),
        ("bob", "x"),
        ("carol", "y"),
    ] {
        root.write_manifest(u, a, MINIMAL);
    }
    let run = root.berth(&["apply"]).await;
    assert!(run.contains("quota"), "over-quota apps are reported\n{run}");
    for held in [
        "alice/c: not started: over quota",
        "carol/y: not started: over quota",
    ] {
        assert!(run.contains(held), "{held} is reported\n{run}");
    }
    for (u, a) in [("alice", "a"), ("alice", "b"), ("bob", "x")] {
        assert!(
            root.running(u, a).await,
            "{u}/{a} is within quota and runs\n{run}"
        );
    }
    for (u, a) in [("alice", "c"), ("carol", "y")] {
        assert!(
            !root.running(u, a).await,
            "{u}/{a} is over quota and must not run\n{run}"
        );
    }
}
