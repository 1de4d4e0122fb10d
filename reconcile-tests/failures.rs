//! Failures that must stay contained: a broken manifest freezes only its app (and is reported
//! as file:line:col), a missing image fails only its app, a per-template image override in
//! berth.toml is honoured, and fatal problems (bad berth.toml, no engine) exit 2.

use crate::support::{line_cols, TestRoot, BB_TEMPLATE, MINIMAL};

const WEB: &str = "template = \"bb-v1\"\n\n[env]\nGREETING = \"hi\"\n";
/// WEB with an unknown key on line 2, column 1.
const WEB_BROKEN: &str =
    "template = \"bb-v1\"\ncolour = \"blue\"\n\n[env]\nGREETING = \"changed\"\n";

#[tokio::test]
async fn broken_manifest_leaves_its_running_container_untouched() {
    let root = TestRoot::new("broken").await;
    root.write_manifest("alice", "web", WEB);
    root.berth(&["apply"]).await.expect_code(0);
    let id = root.id("alice", "web").await;

    root.write_manifest("alice", "web", WEB_BROKEN);
    // A new, valid app in the same pass still converges.
    root.write_manifest("bob", "api", MINIMAL);
    let run = root.berth(&["apply"]).await;
    run.expect_code(1);
    let refs = line_cols(&run.text(), "state/apps/alice/web.toml");
    assert!(
        refs.iter().any(|&(line, _)| line == 2),
        "apply names state/apps/alice/web.toml:2:<col> (got {refs:?})\n{run}"
    );
    let c = root
        .container("alice", "web")
        .await
        .expect("container kept");
    assert_eq!(c.id.as_deref(), Some(id.as_str()), "frozen: not recreated");
    assert!(
        c.state.unwrap().running.unwrap_or(false),
        "frozen: still running"
    );
    assert!(
        root.running("bob", "api").await,
        "bob/api converged anyway\n{run}"
    );

    let plan = root.berth(&["plan"]).await;
    plan.expect_code(1);
    assert!(
        !line_cols(&plan.text(), "state/apps/alice/web.toml").is_empty(),
        "plan reports the broken file\n{plan}"
    );
    let validate = root.berth(&["validate"]).await;
    assert_ne!(validate.code, Some(0), "validate fails\n{validate}");
    assert!(
        line_cols(&validate.text(), "alice/web.toml")
            .iter()
            .any(|&(line, _)| line == 2),
        "validate names alice/web.toml:2:<col>\n{validate}"
    );

    // Even a broken file whose app then vanishes from Docker does not get a new container.
    crate::support::docker::docker_cli(&["rm", "-f", &root.container_name("alice", "web")]);
    root.berth(&["apply"]).await.expect_code(1);
    assert!(
        root.container("alice", "web").await.is_none(),
        "nothing created for a frozen app"
    );

    // Fixing the file unfreezes it.
    root.write_manifest("alice", "web", WEB);
    root.berth(&["apply"]).await.expect_code(0);
    assert!(root.running("alice", "web").await);
}

#[tokio::test]
async fn missing_image_fails_only_its_app() {
    let root = TestRoot::new("noimage").await;
    root.write_template(
        "bb-missing",
        &BB_TEMPLATE.replace("berth-test-busybox:1", "berth-test-missing:nope"),
    );
    root.write_manifest("alice", "good", MINIMAL);
    root.write_manifest("alice", "ghost", "template = \"bb-missing\"\n");
    let run = root.berth(&["apply"]).await;
    run.expect_code(1)
        .expect_contains("berth-test-missing:nope");
    assert!(run.contains("ghost"), "the failing app is named\n{run}");
    assert!(
        root.running("alice", "good").await,
        "alice/good converged\n{run}"
    );
    assert!(!root.running("alice", "ghost").await);
}

#[tokio::test]
async fn berth_toml_template_override_replaces_the_image() {
    let root = TestRoot::new("override").await;
    root.write_template(
        "bb-over",
        &BB_TEMPLATE.replace("berth-test-busybox:1", "berth-test-missing:nope"),
    );
    root.config(
        &[],
        "[templates.bb-over]\nimage = \"berth-test-busybox:1\"\n",
    );
    root.write_manifest("alice", "web", "template = \"bb-over\"\n");
    let run = root.berth(&["apply"]).await;
    run.expect_code(0);
    let c = root.container("alice", "web").await.expect("created");
    assert_eq!(
        c.config.unwrap().image.as_deref(),
        Some("berth-test-busybox:1")
    );
    assert!(root.running("alice", "web").await);
}

#[tokio::test]
async fn bad_berth_toml_is_fatal_exit_2_with_line_and_column() {
    let root = TestRoot::new("badcfg").await;
    root.write_manifest("alice", "web", MINIMAL);
    std::fs::write(
        root.path().join("berth.toml"),
        format!("instance = \"{}\"\nnot_a_key = true\n", root.instance),
    )
    .unwrap();
    for cmd in ["apply", "plan"] {
        let run = root.berth(&[cmd]).await;
        run.expect_code(2);
        let refs = line_cols(&run.text(), "berth.toml");
        assert!(
            refs.iter().any(|&(line, _)| line == 2),
            "{cmd} names berth.toml:2:<col> (got {refs:?})\n{run}"
        );
    }
    assert!(
        root.instance_containers().await.is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn unreachable_engine_is_fatal_exit_2() {
    let root = TestRoot::new("noengine").await;
    root.write_manifest("alice", "web", MINIMAL);
    let sock = root.path().join("no-such-docker.sock");
    let host = format!("unix://{}", sock.display());
    let run = root.berth_env(&["apply"], &[("DOCKER_HOST", &host)]).await;
    run.expect_code(2);
    assert!(
        root.instance_containers().await.is_empty(),
        "nothing was created"
    );
}
