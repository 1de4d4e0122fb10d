//! python-lite-v1 end to end: the shipped template (copied into each test root), a python image
//! built locally from the host's Debian python3 and pip (`scripts/build-python-image.sh`), real
//! `pip install` from PyPI inside a container (berth runs with python3, pip, node and npm off
//! its PATH), and real HTTP to the apps' published ports.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::node_lite::{path_without_node, repo, wait_for_body};
use crate::support::{free_port, TestRoot};

const PYTHON_IMAGE: &str = "berth-test-python:1";
const TEMPLATE: &str = "python-lite-v1";
const INSTALL_LINE: &str = "shared install in place";

fn ensure_python_image() {
    crate::node_lite::ensure_image("scripts/build-python-image.sh", PYTHON_IMAGE);
}

/// node-lite-v1's tool directory (sh and coreutils only), checked to hold no Python either.
fn path_without_python() -> String {
    let path = path_without_node();
    for hidden in ["python3", "python", "pip", "pip3", "node", "npm"] {
        assert!(
            !Path::new(&path).join(hidden).exists(),
            "{hidden} must not be on berth's PATH"
        );
    }
    path
}

/// `berth ARGS` with [`path_without_python`] as its PATH: every install must happen in a
/// container.
async fn berth(root: &TestRoot, args: &[&str]) -> crate::support::Run {
    root.berth_env(args, &[("PATH", &path_without_python())])
        .await
}

/// A test root with the shipped python-lite-v1 template and the local python image override.
async fn python_root(prefix: &str) -> TestRoot {
    ensure_python_image();
    crate::node_lite::shipped_template_root(prefix, TEMPLATE, PYTHON_IMAGE).await
}

fn manifest(port: u16, greeting: &str) -> String {
    format!("template = \"{TEMPLATE}\"\nhost_port = {port}\n[env]\nGREETING = \"{greeting}\"\n")
}

fn body(greeting: &str, six: &str) -> String {
    format!("{greeting} from python-lite-v1 (six {six})")
}

fn shared(root: &TestRoot) -> PathBuf {
    root.path().join("shared").join(TEMPLATE)
}

fn use_fixture_requirements(root: &TestRoot, name: &str) {
    std::fs::copy(
        repo().join(format!("reconcile-tests/fixtures/{name}.requirements.txt")),
        root.template_dir(TEMPLATE).join("files/requirements.txt"),
    )
    .unwrap();
}

fn installed_six(root: &TestRoot) -> String {
    let mut found: Vec<String> = std::fs::read_dir(shared(root).join("site-packages"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("six-") && n.ends_with(".dist-info"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

async fn apply_counting_installs(root: &TestRoot) -> (crate::support::Run, usize, Duration) {
    let started = Instant::now();
    let run = berth(root, &["apply"]).await;
    let took = started.elapsed();
    let installs = run.text().matches(INSTALL_LINE).count();
    (run, installs, took)
}

#[tokio::test]
async fn python_app_answers_with_its_greeting_and_the_shared_dependency() {
    let root = python_root("pyhello").await;
    let port = free_port();
    root.write_manifest("alice", "web", &manifest(port, "hello"));
    let (run, installs, took) = apply_counting_installs(&root).await;
    run.expect_code(0);
    assert_eq!(installs, 1, "{}", run.text());
    eprintln!("python-lite-v1: first apply (pip install + create) took {took:?}");
    wait_for_body(port, &body("hello", "1.16.0")).await;
    assert!(root.app_dir("alice", "web").join("app.py").is_file());
    assert!(
        !root.app_dir("alice", "web").join("six.py").exists(),
        "the dependency is not copied into the workspace"
    );

    let c = root.container("alice", "web").await.unwrap();
    let config = c.config.clone().unwrap_or_default();
    assert_eq!(config.cmd.unwrap_or_default(), ["python3", "app.py"]);
    let env = config.env.unwrap_or_default();
    for want in ["PYTHONPATH=/deps", "PYTHONDONTWRITEBYTECODE=1", "PORT=8000"] {
        assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
    }
    berth(&root, &["apply"])
        .await
        .expect_code(0)
        .expect_contains("no changes");
}

#[tokio::test]
async fn two_python_apps_share_one_read_only_install() {
    let root = python_root("pyshare").await;
    let ports = [free_port(), free_port()];
    for (i, port) in ports.iter().enumerate() {
        root.write_manifest(
            "bob",
            &format!("app{i}"),
            &manifest(*port, &format!("hi{i}")),
        );
    }
    let (run, installs, _) = apply_counting_installs(&root).await;
    run.expect_code(0);
    assert_eq!(installs, 1, "one install for two apps\n{}", run.text());
    for (i, port) in ports.iter().enumerate() {
        wait_for_body(*port, &body(&format!("hi{i}"), "1.16.0")).await;
    }

    let mut found = Vec::new();
    crate::node_lite::non_empty_dirs_named(root.path(), "site-packages", &mut found);
    assert_eq!(
        found.len(),
        1,
        "exactly one site-packages with content: {found:?}"
    );
    assert!(
        found[0].starts_with(shared(&root).join(".installs")),
        "{found:?}"
    );
    assert!(shared(&root).join("site-packages/six.py").is_file());
    assert_eq!(installed_six(&root), "six-1.16.0.dist-info");

    for app in ["app0", "app1"] {
        let c = root.container("bob", app).await.unwrap();
        let deps = c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.destination.as_deref() == Some("/deps"))
            .expect("/deps mount");
        assert_eq!(deps.rw, Some(false), "{app}: /deps is mounted read-only");
        assert_eq!(
            std::fs::canonicalize(deps.source.unwrap()).unwrap(),
            std::fs::canonicalize(&found[0]).unwrap(),
            "{app} mounts the one install"
        );

        let name = root.container_name("bob", app);
        let write = std::process::Command::new("docker")
            .args([
                "exec",
                &name,
                "python3",
                "-c",
                "open('/deps/x', 'w').write('y')",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&write.stderr);
        assert!(
            !write.status.success(),
            "{app}: writing into /deps must fail"
        );
        assert!(stderr.contains("Read-only file system"), "{app}: {stderr}");
    }
    assert!(!shared(&root).join("site-packages/x").exists());
}

#[tokio::test]
async fn requirements_change_installs_once_and_rolls_both_apps() {
    let root = python_root("pyreq").await;
    let ports = [free_port(), free_port()];
    for (i, port) in ports.iter().enumerate() {
        root.write_manifest("carol", &format!("app{i}"), &manifest(*port, "v1"));
    }
    berth(&root, &["apply"]).await.expect_code(0);
    for port in ports {
        wait_for_body(port, &body("v1", "1.16.0")).await;
    }
    let before = [
        root.id("carol", "app0").await,
        root.id("carol", "app1").await,
    ];
    let old_target = std::fs::read_link(shared(&root).join("site-packages")).unwrap();

    use_fixture_requirements(&root, "six-1.15.0");
    berth(&root, &["plan"])
        .await
        .expect_contains("template file files/requirements.txt changed");
    let (run, installs, took) = apply_counting_installs(&root).await;
    run.expect_code(0);
    assert_eq!(installs, 1, "one install, not one per app\n{}", run.text());
    eprintln!("python-lite-v1: requirements change (pip install + 2 rollouts) took {took:?}");
    let new_target = std::fs::read_link(shared(&root).join("site-packages")).unwrap();
    assert_ne!(new_target, old_target);
    assert_eq!(installed_six(&root), "six-1.15.0.dist-info");
    for (i, port) in ports.iter().enumerate() {
        let app = format!("app{i}");
        let after = root.id("carol", &app).await;
        assert_ne!(after, before[i], "{app} rolled");
        wait_for_body(*port, &body("v1", "1.15.0")).await;
        assert_eq!(root.id("carol", &app).await, after, "{app} rolled once");
    }
    let again = berth(&root, &["apply"]).await;
    again.expect_code(0).expect_contains("no changes");
    assert_eq!(again.text().matches(INSTALL_LINE).count(), 0, "{again}");
}

#[tokio::test]
async fn failing_pip_install_fails_the_deploy_and_leaves_install_and_apps_untouched() {
    let root = python_root("pyfail").await;
    let ports = [free_port(), free_port()];
    for (i, port) in ports.iter().enumerate() {
        root.write_manifest("dave", &format!("app{i}"), &manifest(*port, "steady"));
    }
    berth(&root, &["apply"]).await.expect_code(0);
    let before = [root.id("dave", "app0").await, root.id("dave", "app1").await];
    let target = std::fs::read_link(shared(&root).join("site-packages")).unwrap();

    use_fixture_requirements(&root, "missing-package");
    let run = berth(&root, &["apply"]).await;
    run.expect_code(1);
    let text = run.text();
    assert!(
        text.contains("No matching distribution found for berth-no-such-package"),
        "pip's error is reported\n{text}"
    );
    assert_eq!(text.matches(INSTALL_LINE).count(), 0, "{text}");
    for app in ["dave/app0", "dave/app1"] {
        assert!(
            text.contains(&format!("failed: {app}: install for template {TEMPLATE}"))
                && text.contains("exited with"),
            "{app}\n{text}"
        );
    }
    assert_eq!(
        std::fs::read_link(shared(&root).join("site-packages")).unwrap(),
        target,
        "the install is untouched"
    );
    assert_eq!(installed_six(&root), "six-1.16.0.dist-info");
    let staging: Vec<_> = std::fs::read_dir(shared(&root).join(".installs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("staging."))
        .collect();
    assert!(
        staging.is_empty(),
        "a failed install leaves no staging directory"
    );
    for (i, port) in ports.iter().enumerate() {
        let app = format!("app{i}");
        assert_eq!(root.id("dave", &app).await, before[i], "{app} untouched");
        assert!(root.running("dave", &app).await);
        wait_for_body(*port, &body("steady", "1.16.0")).await;
    }
}
