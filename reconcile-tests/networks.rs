//! Users' networks when Docker holds two of one name (a create still running in dockerd when
//! its berth was killed finishes after the next berth made its own): berth keeps the copy its
//! containers use, moves its containers off the others and removes them, so one network is
//! left and every app runs on it. The copies are staged by hand with berth's labels (the
//! engine's API, unlike its CLI, does not refuse a second network of a name).

use std::collections::HashMap;

use bollard::models::NetworkCreateRequest;

use crate::support::docker::docker_cli;
use crate::support::{TestRoot, MINIMAL, WWW_TEMPLATE};

/// The ids of this instance's networks named `berth-<instance>-<user>`.
fn user_networks(root: &TestRoot, user: &str) -> Vec<String> {
    let name = format!("berth-{}-{user}", root.instance);
    let out = docker_cli(&[
        "network",
        "ls",
        "--no-trunc",
        "--filter",
        &format!("label=paas.instance={}", root.instance),
        "--format",
        "{{.ID}} {{.Name}}",
    ]);
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, n)| *n == name)
        .map(|(id, _)| id.to_string())
        .collect()
}

/// Makes one more network of `user`'s name with berth's labels, as a late create would;
/// returns its id.
async fn late_copy(root: &TestRoot, user: &str) -> String {
    let request = NetworkCreateRequest {
        name: format!("berth-{}-{user}", root.instance),
        driver: Some("bridge".into()),
        labels: Some(HashMap::from([
            ("paas.type".to_string(), "user-network".to_string()),
            ("paas.instance".to_string(), root.instance.clone()),
            ("paas.userid".to_string(), user.to_string()),
        ])),
        ..Default::default()
    };
    root.docker.create_network(request).await.unwrap().id
}

/// Moves `user/app`'s container from network `from` to network `to` (by id), keeping its
/// alias, as if it had been created on `to`.
fn move_container(root: &TestRoot, (user, app): (&str, &str), from: &str, to: &str) {
    let c = root.container_name(user, app);
    docker_cli(&["network", "disconnect", from, &c]);
    docker_cli(&["network", "connect", "--alias", app, to, &c]);
}

/// The id of the network `user/app`'s container is attached to under its user's name.
async fn attached_to(root: &TestRoot, user: &str, app: &str) -> String {
    let c = root.container(user, app).await.unwrap();
    let networks = c.network_settings.unwrap().networks.unwrap();
    let net = &networks[&format!("berth-{}-{user}", root.instance)];
    net.network_id.clone().unwrap_or_default()
}

/// Asserts one network of `user`'s name is left, `keep`, and each app runs attached to it.
async fn converged_on(root: &TestRoot, user: &str, keep: &str, apps: &[&str], log: &str) {
    assert_eq!(user_networks(root, user), vec![keep.to_string()], "{log}");
    for app in apps {
        assert!(root.running(user, app).await, "{user}/{app} runs\n{log}");
        assert_eq!(attached_to(root, user, app).await, keep, "{user}/{app}");
    }
}

#[tokio::test]
async fn an_empty_older_copy_of_a_users_network_goes_and_the_one_in_use_stays() {
    let root = TestRoot::new("netdup").await;
    root.write_manifest("alice", "web", MINIMAL);
    root.berth(&["apply"]).await.expect_code(0);
    let first = user_networks(&root, "alice");
    assert_eq!(first.len(), 1);
    // The older copy ends up empty, the newer one has the app: the older is the late one.
    let newer = late_copy(&root, "alice").await;
    move_container(&root, ("alice", "web"), &first[0], &newer);
    root.write_manifest("alice", "api", MINIMAL);
    let apply = root.berth(&["apply"]).await;
    apply.expect_code(0);
    converged_on(&root, "alice", &newer, &["web", "api"], &apply.text()).await;
    // Converged: the next pass has nothing to do.
    root.berth(&["apply"]).await.expect_code(0);
    converged_on(&root, "alice", &newer, &["web", "api"], "second apply").await;
}

#[tokio::test]
async fn of_two_copies_in_use_the_busier_stays_and_the_others_apps_move_onto_it() {
    let root = TestRoot::new("netdup2").await;
    root.write_template("www-v1", WWW_TEMPLATE);
    let www = "template = \"www-v1\"\n[env]\nNAME = \"web\"\n";
    root.write_manifest("alice", "web", www);
    root.write_manifest("alice", "api", MINIMAL);
    root.write_manifest("alice", "probe", MINIMAL);
    root.berth(&["apply"]).await.expect_code(0);
    let older = user_networks(&root, "alice").remove(0);
    let newer = late_copy(&root, "alice").await;
    move_container(&root, ("alice", "web"), &older, &newer);
    move_container(&root, ("alice", "api"), &older, &newer);
    // A stopped app on the copy that goes must still start later.
    root.write_manifest("alice", "probe", &format!("{MINIMAL}state = \"stopped\"\n"));
    root.berth(&["apply"]).await.expect_code(0);
    root.write_manifest("alice", "new", MINIMAL);
    let apply = root.berth(&["apply"]).await;
    apply.expect_code(0);
    converged_on(
        &root,
        "alice",
        &newer,
        &["web", "api", "new"],
        &apply.text(),
    )
    .await;
    root.write_manifest("alice", "probe", MINIMAL);
    let start = root.berth(&["apply"]).await;
    start.expect_code(0);
    converged_on(&root, "alice", &newer, &["probe"], &start.text()).await;
    // The moved apps still answer to their names on the network that stayed.
    let probe = root.container_name("alice", "probe");
    let get = "echo -e 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 web 8080";
    let answer = docker_cli(&["exec", &probe, "sh", "-c", get]);
    assert!(answer.ends_with("\r\n\r\nhello-web\n"), "{answer}");
}
