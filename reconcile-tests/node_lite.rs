//! node-lite-v1 end to end: the shipped template (copied into each test root), a node image
//! built locally from the host's `node` and `npm` (`scripts/build-node-image.sh`), real `npm ci`
//! from the npm registry inside a container (berth runs with node, npm and b3sum off its PATH),
//! and real HTTP to the apps' published ports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{free_port, http_get, wait_until, TestRoot};

pub(crate) const NODE_IMAGE: &str = "berth-test-node:2";
pub(crate) const TEMPLATE: &str = "node-lite-v1";
const INSTALL_LINE: &str = "shared install in place";

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn ensure_node_image() {
    ensure_image("scripts/build-node-image.sh", NODE_IMAGE);
}

/// Runs an image builder (idempotent) once per image and test process.
pub(crate) fn ensure_image(script: &str, image: &str) {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.iter().any(|b| b == image) {
        return;
    }
    let status = std::process::Command::new(repo().join(script))
        .arg(image)
        .status()
        .unwrap();
    assert!(status.success(), "{script} failed");
    built.push(image.to_string());
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap(); // keeps the hooks' exec bits
        }
    }
}

/// `berth ARGS` with [`path_without_node`] as its PATH: the host's node, npm and b3sum are
/// out of berth's reach, so every install must happen in a container.
async fn berth(root: &TestRoot, args: &[&str]) -> crate::support::Run {
    root.berth_env(args, &[("PATH", &path_without_node())])
        .await
}

/// A directory holding only the tools node-lite-v1's hooks use (links to the host's), for
/// PATH: no node, no npm, no b3sum.
pub(crate) fn path_without_node() -> String {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("berth-path-no-node-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for tool in ["sh", "mkdir", "cp", "mv", "rm", "dirname", "cat", "ls"] {
            let host = Path::new("/usr/bin").join(tool);
            let host = if host.exists() {
                host
            } else {
                Path::new("/bin").join(tool)
            };
            let _ = std::os::unix::fs::symlink(host, dir.join(tool));
        }
        dir
    });
    for hidden in ["node", "npm", "b3sum"] {
        assert!(
            !dir.join(hidden).exists(),
            "{hidden} must not be on berth's PATH"
        );
    }
    dir.display().to_string()
}

/// A test root with the shipped node-lite-v1 template and the local node image override.
async fn node_root(prefix: &str) -> TestRoot {
    ensure_node_image();
    shipped_template_root(prefix, TEMPLATE, NODE_IMAGE).await
}

/// A test root with the shipped template `template` (copied from the repository) and `image`
/// as its image override.
pub(crate) async fn shipped_template_root(prefix: &str, template: &str, image: &str) -> TestRoot {
    let root = TestRoot::new(prefix).await;
    copy_dir(
        &repo().join("templates").join(template),
        &root.template_dir(template),
    );
    root.config(
        &[("hook_timeout", "\"120s\""), ("stop_timeout", "\"3s\"")],
        &format!("[templates.{template}]\nimage = \"{image}\"\n"),
    );
    root
}

pub(crate) fn manifest(port: u16, greeting: &str, restart: &str) -> String {
    format!("template = \"{TEMPLATE}\"\nhost_port = {port}\nrestart = \"{restart}\"\n[env]\nGREETING = \"{greeting}\"\n")
}

pub(crate) async fn wait_for_body(port: u16, want: &str) {
    wait_until(
        Duration::from_secs(20),
        &format!("port {port} answers {want:?}"),
        || async { http_get(port).is_some_and(|b| b.contains(want)) },
    )
    .await;
}

/// Every directory named `name` under `dir` that has something in it (links are not walked:
/// `shared/<t>/<output>` is a link, not a directory of its own).
pub(crate) fn non_empty_dirs_named(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if !entry.file_type().unwrap().is_dir() {
            continue;
        }
        let path = entry.path();
        if entry.file_name() == name {
            if std::fs::read_dir(&path).unwrap().next().is_some() {
                out.push(path);
            }
        } else {
            non_empty_dirs_named(&path, name, out);
        }
    }
}

fn shared(root: &TestRoot) -> PathBuf {
    root.path().join("shared").join(TEMPLATE)
}

fn use_fixture_lockfile(root: &TestRoot, name: &str) {
    let fixtures = repo().join("reconcile-tests/fixtures");
    let files = root.template_dir(TEMPLATE).join("files");
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(fixtures.join(format!("{name}.{f}")), files.join(f)).unwrap();
    }
}

#[tokio::test]
async fn three_apps_share_one_read_only_node_modules_and_answer_http() {
    let root = node_root("nodethree").await;
    let ports = [free_port(), free_port(), free_port()];
    for (i, port) in ports.iter().enumerate() {
        root.write_manifest(
            "alice",
            &format!("app{i}"),
            &manifest(*port, &format!("hi{i}"), "1"),
        );
    }
    let run = berth(&root, &["apply"]).await;
    run.expect_code(0);
    assert_eq!(
        run.text().matches(INSTALL_LINE).count(),
        1,
        "one install for three apps\n{}",
        run.text()
    );
    for (i, port) in ports.iter().enumerate() {
        wait_for_body(*port, &format!("hi{i} from node-lite-v1")).await;
    }

    let mut found = Vec::new();
    non_empty_dirs_named(root.path(), "node_modules", &mut found);
    assert_eq!(
        found.len(),
        1,
        "exactly one node_modules with content: {found:?}"
    );
    assert!(
        found[0].starts_with(shared(&root).join(".installs")),
        "{found:?}"
    );
    assert!(shared(&root).join("node_modules/ms/package.json").is_file());

    let c = root.container("alice", "app0").await.unwrap();
    let cmd = c
        .config
        .as_ref()
        .and_then(|c| c.cmd.clone())
        .unwrap_or_default();
    assert_eq!(cmd, ["node", "server.js"]);
    let mounts = c.mounts.unwrap_or_default();
    let nm = mounts
        .iter()
        .find(|m| m.destination.as_deref() == Some("/app/node_modules"))
        .expect("node_modules mount");
    assert_eq!(nm.rw, Some(false), "node_modules is mounted read-only");

    let name = root.container_name("alice", "app0");
    let write = std::process::Command::new("docker")
        .args([
            "exec",
            &name,
            "node",
            "-e",
            "require('fs').writeFileSync('/app/node_modules/x', 'y')",
        ])
        .output()
        .unwrap();
    assert!(
        !write.status.success(),
        "writing into /app/node_modules must fail"
    );
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("EROFS"),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );
    assert!(!shared(&root).join("node_modules/x").exists());
}

#[tokio::test]
async fn editing_server_js_and_bumping_restart_serves_the_new_code() {
    let root = node_root("nodeedit").await;
    let port = free_port();
    root.write_manifest("alice", "web", &manifest(port, "hello", "1"));
    berth(&root, &["apply"]).await.expect_code(0);
    wait_for_body(port, "hello from node-lite-v1").await;
    let before = root.id("alice", "web").await;

    let server = root.app_dir("alice", "web").join("server.js");
    let code = std::fs::read_to_string(&server)
        .unwrap()
        .replace("from node-lite-v1", "from edited code");
    std::fs::write(&server, code).unwrap();
    berth(&root, &["apply"])
        .await
        .expect_code(0)
        .expect_contains("no changes");
    assert_eq!(
        root.id("alice", "web").await,
        before,
        "an edit alone recreates nothing"
    );

    root.write_manifest("alice", "web", &manifest(port, "hello", "2"));
    berth(&root, &["plan"])
        .await
        .expect_code(0)
        .expect_contains("restart");
    berth(&root, &["apply"]).await.expect_code(0);
    wait_for_body(port, "hello from edited code").await;
    assert_ne!(
        root.id("alice", "web").await,
        before,
        "the deploy recreated the container"
    );
    let kept = std::fs::read_to_string(&server).unwrap();
    assert!(
        kept.contains("from edited code"),
        "the user's edit survives the deploy"
    );
}

#[tokio::test]
async fn lockfile_change_reinstalls_once_and_rolls_every_app() {
    let root = node_root("nodelock").await;
    let ports = [free_port(), free_port()];
    for (i, port) in ports.iter().enumerate() {
        root.write_manifest("bob", &format!("app{i}"), &manifest(*port, "v1", "1"));
    }
    berth(&root, &["apply"]).await.expect_code(0);
    let before = [root.id("bob", "app0").await, root.id("bob", "app1").await];
    let old_target = std::fs::read_link(shared(&root).join("node_modules")).unwrap();

    use_fixture_lockfile(&root, "ms-2.1.2");
    berth(&root, &["plan"])
        .await
        .expect_contains("template file files/package-lock.json changed");
    let run = berth(&root, &["apply"]).await;
    run.expect_code(0);
    assert_eq!(
        run.text().matches(INSTALL_LINE).count(),
        1,
        "one install, not one per app\n{}",
        run.text()
    );
    let new_target = std::fs::read_link(shared(&root).join("node_modules")).unwrap();
    assert_ne!(new_target, old_target);
    let ms = std::fs::read_to_string(shared(&root).join("node_modules/ms/package.json")).unwrap();
    assert!(ms.contains("\"version\": \"2.1.2\""), "{ms}");
    for (i, port) in ports.iter().enumerate() {
        assert_ne!(
            root.id("bob", &format!("app{i}")).await,
            before[i],
            "app{i} rolled"
        );
        wait_for_body(*port, "v1 from node-lite-v1").await;
    }
    berth(&root, &["apply"])
        .await
        .expect_code(0)
        .expect_contains("no changes");
}

#[tokio::test]
async fn failing_npm_ci_fails_the_deploy_and_leaves_modules_and_apps_untouched() {
    let root = node_root("nodefail").await;
    let ports = [free_port(), free_port()];
    for (i, port) in ports.iter().enumerate() {
        root.write_manifest("carol", &format!("app{i}"), &manifest(*port, "steady", "1"));
    }
    berth(&root, &["apply"]).await.expect_code(0);
    let before = [
        root.id("carol", "app0").await,
        root.id("carol", "app1").await,
    ];
    let target = std::fs::read_link(shared(&root).join("node_modules")).unwrap();

    use_fixture_lockfile(&root, "missing-package");
    let run = berth(&root, &["apply"]).await;
    run.expect_code(1);
    let text = run.text();
    assert!(
        text.contains("E404") || text.contains("404 Not Found"),
        "npm's error is reported\n{text}"
    );
    for app in ["carol/app0", "carol/app1"] {
        assert!(
            text.contains(&format!("failed: {app}: install for template node-lite-v1"))
                && text.contains("exited with"),
            "{app}\n{text}"
        );
    }
    assert_eq!(
        std::fs::read_link(shared(&root).join("node_modules")).unwrap(),
        target,
        "modules untouched"
    );
    assert!(shared(&root).join("node_modules/ms/package.json").is_file());
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
        assert_eq!(
            root.id("carol", &format!("app{i}")).await,
            before[i],
            "app{i} untouched"
        );
        assert!(root.running("carol", &format!("app{i}")).await);
        wait_for_body(*port, "steady from node-lite-v1").await;
    }
}

#[tokio::test]
async fn delete_keeps_the_workspace_and_purge_removes_it() {
    let root = node_root("nodedel").await;
    root.write_manifest("dave", "web", &manifest(free_port(), "bye", "1"));
    berth(&root, &["apply"]).await.expect_code(0);
    let workspace = root.app_dir("dave", "web");
    assert!(workspace.join("server.js").is_file());

    root.remove_manifest("dave", "web");
    berth(&root, &["apply"])
        .await
        .expect_code(0)
        .expect_contains("kept (no purge asked)");
    assert!(
        root.container("dave", "web").await.is_none(),
        "container removed"
    );
    assert!(
        workspace.join("server.js").is_file(),
        "workspace kept without purge"
    );

    // Purge is asked through BERTH_PURGE=1 (the API's `DELETE ?purge=true` sets it); run the
    // template's hook as berth would.
    let hook = root.template_dir(TEMPLATE).join("hooks/pre-delete");
    let out = std::process::Command::new(hook)
        .current_dir(root.template_dir(TEMPLATE))
        .env("BERTH_USERID", "dave")
        .env("BERTH_APPNAME", "web")
        .env("BERTH_TEMPLATE_DIR", root.template_dir(TEMPLATE))
        .env("BERTH_APP_DIR", &workspace)
        .env("BERTH_SHARED_DIR", shared(&root))
        .env("BERTH_PURGE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!workspace.exists(), "purge removes the workspace");
    assert!(
        shared(&root).join("node_modules/ms").is_dir(),
        "purge never touches the shared modules"
    );
}
