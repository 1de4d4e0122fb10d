//! Apps built from their own Dockerfile (docs/guides/builds.md) on the real engine's
//! BuildKit: a workspace is built and served; the same inputs are not built again; a code
//! change reuses the cached dependency step; a failed build leaves the running version
//! serving; a build over `[builds] memory` is killed while another app keeps answering; a
//! build cut by a SIGKILLed berth stops with it; a rollback reuses the image it had.
//!
//! The engine's BuildKit cgroup is one for the whole engine, so these tests take turns
//! (`ONE_AT_A_TIME`), and each removes the images it built.

use std::time::Duration;

use crate::support::api::{add_user, Api};
use crate::support::docker::docker_cli;
use crate::support::serve::Serve;
use crate::support::{free_port, http_get, wait_until, TestRoot, WWW_TEMPLATE};

/// The BuildKit cgroup's ceiling is the engine's: one of these tests at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Debian's docker.io CLI: BuildKit is built into it (a newer CLI needs the buildx plugin).
const BUILDS: &str = "[builds]\nenabled = true\ndocker = \"/usr/bin/docker\"\n";

/// A two-stage Dockerfile: a dependency step (its command names the instance, so no other
/// test's cache serves it) and a page served by busybox httpd.
fn dockerfile(instance: &str) -> String {
    format!(
        "FROM berth-test-busybox:1 AS deps\n\
         COPY deps.txt /deps.txt\n\
         RUN echo dependency-step-ran-$((40+2))-{instance} && cp /deps.txt /deps.out\n\
         FROM berth-test-busybox:1\n\
         COPY --from=deps /deps.out /www/deps.txt\n\
         COPY page.txt /www/index.html\n\
         CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
    )
}

fn manifest(port: u16) -> String {
    format!("port = 8080\nhost_port = {port}\n[build]\n")
}

/// A root whose app `alice/web` is built from its workspace, answering `page`.
fn built_app(root: &TestRoot, port: u16, page: &str) -> std::path::PathBuf {
    root.config(&[], BUILDS);
    let dir = root.app_dir("alice", "web");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile(&root.instance)).unwrap();
    std::fs::write(dir.join("deps.txt"), "deps").unwrap();
    std::fs::write(dir.join("page.txt"), page).unwrap();
    root.write_manifest("alice", "web", &manifest(port));
    dir
}

/// The image the app's container runs.
fn running_image(root: &TestRoot) -> String {
    let name = root.container_name("alice", "web");
    docker_cli(&["inspect", "-f", "{{.Config.Image}}", &name])
        .trim()
        .to_string()
}

/// Removes the images a test built, with their cache left to BuildKit's own collection.
fn remove_images(tags: &[String]) {
    for tag in tags {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", tag])
            .output();
    }
}

/// The build logs berth kept for `alice/web`, newest last.
fn build_logs(root: &TestRoot) -> Vec<String> {
    let dir = root.path().join("builds/alice/web");
    let mut logs: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    logs.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    logs.iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

async fn answers(port: u16, want: &str) {
    let what = format!("port {port} answering {want:?}");
    wait_until(Duration::from_secs(20), &what, || async {
        http_get(port).is_some_and(|b| b.starts_with(want))
    })
    .await;
}

/// The engine's BuildKit ceiling (cgroup v1), to put back after a test that lowers it.
const CEILING: &str = "/sys/fs/cgroup/memory/docker/buildkit";

fn ceiling() -> Option<(String, String)> {
    let read = |f: &str| std::fs::read_to_string(format!("{CEILING}/{f}")).ok();
    Some((
        read("memory.limit_in_bytes")?,
        read("memory.memsw.limit_in_bytes")?,
    ))
}

/// Puts the ceiling back as it was when dropped, pass or fail.
struct Restore(Option<(String, String)>);

impl Drop for Restore {
    fn drop(&mut self) {
        // Raising: memory+swap first, then memory (the kernel keeps memory <= memory+swap).
        if let Some((memory, swap)) = &self.0 {
            let _ = std::fs::write(
                format!("{CEILING}/memory.memsw.limit_in_bytes"),
                swap.trim(),
            );
            let _ = std::fs::write(format!("{CEILING}/memory.limit_in_bytes"), memory.trim());
        }
    }
}

#[tokio::test]
async fn a_workspace_is_built_and_served_and_the_same_inputs_are_not_built_again() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let root = TestRoot::new("build").await;
    let port = free_port();
    let dir = built_app(&root, port, "v1");
    root.berth(&["apply"]).await.expect_code(0);
    answers(port, "v1").await;
    let first = running_image(&root);
    assert!(first.starts_with("berth-build/alice/web:"), "{first}");
    assert_eq!(build_logs(&root).len(), 1);

    root.berth(&["apply"])
        .await
        .expect_code(0)
        .expect_contains("0 changed");
    assert_eq!(
        build_logs(&root).len(),
        1,
        "the same inputs were built again"
    );

    std::fs::write(dir.join("page.txt"), "v2").unwrap();
    root.berth(&["apply"]).await.expect_code(0);
    answers(port, "v2").await;
    let second = running_image(&root);
    assert_ne!(second, first, "a changed context is a new tag");
    let logs = build_logs(&root);
    assert_eq!(logs.len(), 2, "one build per change");
    // What the step prints, not what its command says (the log shows the command either way).
    let step = format!("dependency-step-ran-42-{}", root.instance);
    assert!(
        logs[0].contains(&step),
        "the first build ran the step:\n{}",
        logs[0]
    );
    assert!(
        !logs[1].contains(&step) && logs[1].contains("CACHED"),
        "a code change ran the dependency step again:\n{}",
        logs[1]
    );
    remove_images(&[first, second]);
}

#[tokio::test]
async fn a_failed_build_leaves_the_running_version_serving_and_says_why() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let root = TestRoot::new("buildfail").await;
    let port = free_port();
    let dir = built_app(&root, port, "v1");
    root.berth(&["apply"]).await.expect_code(0);
    answers(port, "v1").await;
    let good = running_image(&root);

    let broken = dockerfile(&root.instance).replace(
        "COPY page.txt",
        "RUN echo the-tests-broke-this >&2 && false\nCOPY page.txt",
    );
    std::fs::write(dir.join("Dockerfile"), broken).unwrap();
    let run = root.berth(&["apply"]).await;
    let shown = run.text();
    assert!(
        shown.contains("was not built") && shown.contains("the-tests-broke-this"),
        "the failure does not say why:\n{shown}"
    );
    assert_eq!(
        running_image(&root),
        good,
        "a failed build replaced the container"
    );
    answers(port, "v1").await;
    remove_images(&[good]);
}

#[tokio::test]
async fn a_build_over_its_memory_is_killed_while_another_app_keeps_answering() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let root = TestRoot::new("buildmem").await;
    let (port, other) = (free_port(), free_port());
    let _restore = Restore(ceiling());
    let dir = built_app(&root, port, "v1");
    root.config(
        &[],
        "[builds]\nenabled = true\ndocker = \"/usr/bin/docker\"\nmemory = \"96m\"\n",
    );
    root.write_template("www-v1", WWW_TEMPLATE);
    root.write_manifest(
        "bob",
        "neighbour",
        &format!("template = \"www-v1\"\nhost_port = {other}\n"),
    );
    // Doubles a string until it holds 256 MiB (some 400 MiB at its peak): past the ceiling,
    // well under the default one.
    let hungry = dockerfile(&root.instance).replace(
        "COPY page.txt",
        &"RUN echo hungry-INSTANCE && awk 'BEGIN{s=\"x\"; while (length(s) < 268435456) s = s s; print length(s)}'\nCOPY page.txt"
            .replace("INSTANCE", &root.instance),
    );
    std::fs::write(dir.join("Dockerfile"), hungry).unwrap();
    let run = root.berth(&["apply"]).await;
    let shown = run.text();
    assert!(
        shown.contains("was not built") && shown.contains("exit code: 137"),
        "the build was not killed by its memory ceiling:\n{shown}"
    );
    assert!(http_get(other).is_some(), "the neighbour stopped answering");
}

/// A build secret's value: it must reach the step and nothing else.
const SECRET: &str = "npm-Token-Value-9f3e1c";

/// Every byte of `image` as `docker save` writes it (every layer's files, the config, the
/// history).
fn saved_image(image: &str) -> Vec<u8> {
    let out = std::process::Command::new("docker")
        .args(["save", image])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker save {image}");
    out.stdout
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_build_secret_reaches_its_step_and_no_layer_history_log_or_output() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let root = TestRoot::new("buildsecret").await;
    let port = free_port();
    let dir = built_app(&root, port, "v1");
    let recipient = root
        .berth(&["secrets", "recipient"])
        .await
        .stdout
        .trim()
        .to_string();
    let sealed =
        crate::secrets::encrypt(&root, ("alice/web", "NPM_TOKEN"), SECRET, Some(&recipient));
    // The step fails unless the file holds the value; the Dockerfile (shown in the log and
    // the history) holds only the value reversed; the instance keeps another run's cache out.
    let reversed: String = SECRET.chars().rev().collect();
    let check = format!(
        r#"RUN --mount=type=secret,id=NPM_TOKEN sh -c '[ "$(rev /run/secrets/NPM_TOKEN)" = {reversed} ] && echo secret-step-ok-$((1+1)) {instance}'
COPY page.txt"#,
        instance = root.instance
    );
    let with_secret = dockerfile(&root.instance).replace("COPY page.txt", &check);
    std::fs::write(dir.join("Dockerfile"), with_secret).unwrap();
    let manifest = format!("port = 8080\nhost_port = {port}\n[build]\nsecrets = [\"NPM_TOKEN\"]\n[secrets]\n{sealed}\n");
    root.write_manifest("alice", "web", &manifest);
    let run = root.berth(&["apply"]).await;
    run.expect_code(0);
    answers(port, "v1").await;
    let image = running_image(&root);
    let logs = build_logs(&root).join("\n");
    assert!(
        logs.contains("secret-step-ok-2"),
        "the step did not see the secret:\n{logs}"
    );
    assert!(
        !holds(logs.as_bytes(), SECRET),
        "the build log holds the secret"
    );
    assert!(
        !holds(run.text().as_bytes(), SECRET),
        "berth's output holds the secret"
    );
    let history = docker_cli(&["history", "--no-trunc", &image]);
    assert!(
        !holds(history.as_bytes(), SECRET),
        "the history holds the secret"
    );
    assert!(
        !holds(&saved_image(&image), SECRET),
        "a layer or the config holds the secret"
    );
    let builds = root.path().join("builds");
    let left: Vec<_> = std::fs::read_dir(&builds)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with(".secrets-")),
        "the secret files outlived the build: {left:?}"
    );
    remove_images(&[image]);
}

/// Whether any process on the host has `marker` in its command line (a build step runs on the
/// host under runc, so it is in the host's process table).
fn a_process_has(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| holds(&c, marker)))
}

#[tokio::test]
async fn a_build_past_its_time_limit_is_stopped_and_its_step_is_gone() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let root = TestRoot::new("buildtime").await;
    let port = free_port();
    let dir = built_app(&root, port, "v1");
    root.config(
        &[],
        "[builds]\nenabled = true\ndocker = \"/usr/bin/docker\"\ntimeout = \"10s\"\n",
    );
    // The step's shell (`/bin/sh -c "sleep 600; : marker"`) lives as long as its sleep.
    let marker = format!("slowstep{}", root.instance);
    let slow = dockerfile(&root.instance).replace(
        "COPY page.txt",
        &format!("RUN sleep 600; : {marker}\nCOPY page.txt"),
    );
    std::fs::write(dir.join("Dockerfile"), slow).unwrap();
    // While the build runs, the step is seen (so its absence afterwards means something).
    let seen = format!("the step's process ({marker})");
    let (run, _) = tokio::join!(
        root.berth(&["apply"]),
        wait_until(Duration::from_secs(10), &seen, || async {
            a_process_has(&marker)
        })
    );
    let shown = run.text();
    assert!(
        shown.contains("was not built") && shown.contains("timeout = 10s"),
        "the build was not stopped by its time limit:\n{shown}"
    );
    let what = format!("no process left of the stopped step ({marker})");
    wait_until(Duration::from_secs(20), &what, || async {
        !a_process_has(&marker)
    })
    .await;
}

#[tokio::test]
async fn builds_are_off_until_the_operator_turns_them_on() {
    let root = TestRoot::new("buildoff").await;
    let port = free_port();
    built_app(&root, port, "v1");
    root.config(&[], "");
    let shown = root.berth(&["apply"]).await.text();
    assert!(
        shown.contains("builds are off on this server") && shown.contains("enabled = true"),
        "a build ran without [builds] enabled:\n{shown}"
    );
    assert!(root.container("alice", "web").await.is_none());
}

#[tokio::test]
async fn a_build_cut_by_a_killed_berth_stops_and_the_restart_serves_the_app() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let root = TestRoot::new("buildkill").await;
    let port = free_port();
    let dir = built_app(&root, port, "v1");
    let marker = format!("killedstep{}", root.instance);
    let slow = dockerfile(&root.instance).replace(
        "COPY page.txt",
        &format!("RUN sleep 600; : {marker}\nCOPY page.txt"),
    );
    std::fs::write(dir.join("Dockerfile"), slow).unwrap();
    let mut serve = Serve::start(&root);
    let seen = format!("the slow step running ({marker})");
    wait_until(Duration::from_secs(60), &seen, || async {
        a_process_has(&marker)
    })
    .await;
    serve.kill();
    // The build dies with berth: no orphaned CLI keeps BuildKit's step running.
    let what = format!("no process left of the build berth was killed in ({marker})");
    wait_until(Duration::from_secs(20), &what, || async {
        !a_process_has(&marker)
    })
    .await;
    std::fs::write(dir.join("Dockerfile"), dockerfile(&root.instance)).unwrap();
    let _serve = Serve::start(&root);
    answers(port, "v1").await;
    remove_images(&[running_image(&root)]);
}

#[tokio::test]
async fn a_rollback_to_an_earlier_revision_runs_its_image_without_a_build() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let root = TestRoot::new("buildback").await;
    let port = free_port();
    built_app(&root, port, "v1");
    let with_arg = |v: &str| format!("{}args = {{ NOTE = \"{v}\" }}\n", manifest(port));
    root.write_manifest("alice", "web", &with_arg("one"));
    let alice = add_user(&root, "alice", false).await;
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    answers(port, "v1").await;
    let first = running_image(&root);

    root.write_manifest("alice", "web", &with_arg("two"));
    wait_until(
        Duration::from_secs(60),
        "the second build running",
        || async { running_image(&root) != first },
    )
    .await;
    let second = running_image(&root);
    assert_eq!(build_logs(&root).len(), 2, "one build per revision");

    let back = serde_json::json!({"revision": 1});
    api.post("/apps/alice/web/rollback", &alice, Some(back))
        .await
        .expect(200);
    wait_until(
        Duration::from_secs(60),
        "revision 1's image running",
        || async { running_image(&root) == first },
    )
    .await;
    assert_eq!(
        build_logs(&root).len(),
        2,
        "the rollback built its image again"
    );
    remove_images(&[first, second]);
}
