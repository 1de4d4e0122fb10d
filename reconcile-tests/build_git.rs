//! Apps built from a git repository (`[build] git`, docs/guides/builds.md) served by a real
//! `git daemon` on a loopback port: a branch, a new commit on it, a tag and a commit are each
//! built and served, an image already built is not built again, and a repository berth may
//! not fetch (a local path, `file://`, a loopback host `[policy] git_hosts` does not list) is
//! refused before any fetch.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::builds::ONE_AT_A_TIME;
use crate::builds::{answers, build_logs, dockerfile, remove_images, running_image, BUILDS};
use crate::support::api::{add_user, Api};
use crate::support::git::git;
use crate::support::{free_port, wait_until, TestRoot};

/// `git daemon` serving `base` on a loopback port, stopped when dropped.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = free_port();
        let child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon (Debian's git package)");
        GitDaemon { child, port }
    }

    async fn ready(&self) {
        let port = self.port;
        wait_until(
            Duration::from_secs(10),
            "git daemon listening",
            || async move { std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() },
        )
        .await;
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare repository `app.git` under `base` with one commit on `main` serving `page`, and a
/// clone to commit in; answers the clone's path.
fn repository(base: &Path, instance: &str, page: &str) -> std::path::PathBuf {
    let dev = base.join("dev");
    git(base, &["init", "-q", "--bare", "-b", "main", "app.git"]);
    git(base, &["init", "-q", "-b", "main", "dev"]);
    std::fs::write(dev.join("Dockerfile"), dockerfile(instance)).unwrap();
    std::fs::write(dev.join("deps.txt"), "deps").unwrap();
    commit(&dev, page);
    git(&dev, &["remote", "add", "origin", "../app.git"]);
    git(&dev, &["push", "-q", "origin", "main"]);
    dev
}

/// Commits `page` as the page served; answers the commit.
fn commit(dev: &Path, page: &str) -> String {
    std::fs::write(dev.join("page.txt"), page).unwrap();
    git(dev, &["add", "-A"]);
    let who = ["-c", "user.name=t", "-c", "user.email=t@example.test"];
    git(dev, &[&who[..], &["commit", "-q", "-m", page]].concat());
    git(dev, &["rev-parse", "HEAD"])
}

/// For `root`, builds on (with `listed`, `[policy] git_hosts` naming 127.0.0.1) and a
/// repository `app.git` serving "v1" from a running `git daemon`; the clone to commit in.
async fn served_repository(root: &TestRoot, listed: bool) -> (std::path::PathBuf, GitDaemon) {
    let base = root.path().join("git");
    std::fs::create_dir_all(&base).unwrap();
    let dev = repository(&base, &root.instance, "v1");
    let daemon = GitDaemon::start(&base);
    daemon.ready().await;
    let policy = "[policy]\ngit_hosts = [\"127.0.0.1\"]\ndomains = [\"*.example.test\"]\n";
    match listed {
        true => root.config(&[], &format!("{BUILDS}{policy}")),
        false => root.config(&[], BUILDS),
    }
    (dev, daemon)
}

fn manifest(port: u16, url: &str, reference: &str) -> String {
    format!("port = 8080\nhost_port = {port}\n[build]\ngit = \"{url}\"\nref = \"{reference}\"\n")
}

#[tokio::test]
async fn a_branch_a_new_commit_a_tag_and_a_commit_are_built_and_served() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let root = TestRoot::new("buildgit").await;
    let (dev, daemon) = served_repository(&root, true).await;
    let (port, url) = (
        free_port(),
        format!("git://127.0.0.1:{}/app.git", daemon.port),
    );
    root.write_manifest("alice", "web", &manifest(port, &url, "main"));

    root.berth(&["apply"]).await.expect_code(0);
    answers(port, "v1").await;
    let first = running_image(&root);
    git(&dev, &["tag", "v1"]);
    git(&dev, &["push", "-q", "origin", "v1"]);

    let second_commit = commit(&dev, "v2");
    git(&dev, &["push", "-q", "origin", "main"]);
    root.berth(&["apply"]).await.expect_code(0);
    answers(port, "v2").await;
    let second = running_image(&root);
    assert_ne!(first, second, "a new commit is a new image");
    assert_eq!(build_logs(&root).len(), 2);

    // Back to the tag, then to the commit: both images are kept, so neither is built again.
    root.write_manifest("alice", "web", &manifest(port, &url, "v1"));
    root.berth(&["apply"]).await.expect_code(0);
    answers(port, "v1").await;
    assert_eq!(running_image(&root), first);
    root.write_manifest("alice", "web", &manifest(port, &url, &second_commit));
    root.berth(&["apply"]).await.expect_code(0);
    answers(port, "v2").await;
    assert_eq!(running_image(&root), second);
    assert_eq!(build_logs(&root).len(), 2, "a kept image was built again");
    // An unchanged branch is fetched again by apply and changes nothing.
    root.berth(&["apply"])
        .await
        .expect_code(0)
        .expect_contains("0 changed");
    remove_images(&[first, second]);
}

#[tokio::test]
async fn repositories_berth_may_not_fetch_are_refused_before_any_fetch() {
    let root = TestRoot::new("buildgitno").await;
    let (_, daemon) = served_repository(&root, false).await;
    let base = root.path().join("git");
    let port = free_port();
    let loopback = format!("git://127.0.0.1:{}/app.git", daemon.port);
    let local = base.join("app.git").display().to_string();
    for (url, why) in [
        (
            loopback.as_str(),
            "resolves to 127.0.0.1, a loopback address",
        ),
        (local.as_str(), "is a local path"),
        ("file:///etc", "file:// reads this server's own files"),
    ] {
        root.write_manifest("alice", "web", &manifest(port, url, "main"));
        let shown = root.berth(&["apply"]).await.text();
        let status = root.berth(&["status"]).await.text();
        assert!(
            shown.contains(why) || status.contains(why),
            "{url} was not refused with {why:?}:\n{shown}\n{status}"
        );
        assert!(root.container("alice", "web").await.is_none());
    }
    let sources = root.path().join("sources/alice/web/repo.git/FETCH_HEAD");
    assert!(!sources.exists(), "berth fetched a repository it refused");
}

#[tokio::test]
async fn serve_fetches_a_new_app_and_follows_its_branch_when_apply_or_build_asks() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let root = TestRoot::new("buildgitserve").await;
    let (dev, daemon) = served_repository(&root, true).await;
    let (port, url) = (
        free_port(),
        format!("git://127.0.0.1:{}/app.git", daemon.port),
    );
    root.write_manifest("alice", "web", &manifest(port, &url, "main"));
    let alice = add_user(&root, "alice", false).await;
    let bob = add_user(&root, "bob", false).await;
    let mut serve = crate::support::serve::Serve::start(&root);
    answers(port, "v1").await;
    let first = running_image(&root);

    commit(&dev, "v2");
    git(&dev, &["push", "-q", "origin", "main"]);
    root.berth(&["apply"]).await.expect_code(0);
    wait_until(Duration::from_secs(60), "the new commit served", || async {
        crate::support::http_get(port).is_some_and(|b| b.starts_with("v2"))
    })
    .await;
    let second = running_image(&root);

    // `berth build` (POST .../build) fetches one app's ref again.
    commit(&dev, "v3");
    git(&dev, &["push", "-q", "origin", "main"]);
    root.berth(&["build", "alice/web"])
        .await
        .expect_code(0)
        .expect_contains("fetching alice/web's [build] git ref again");
    wait_until(
        Duration::from_secs(60),
        "the commit berth build fetched",
        || async { crate::support::http_get(port).is_some_and(|b| b.starts_with("v3")) },
    )
    .await;
    let api = Api::new(serve.api_base());
    api.post("/apps/alice/web/build", &bob, None)
        .await
        .expect(403);
    api.post("/apps/alice/none/build", &alice, None)
        .await
        .expect(404);
    root.write_manifest("alice", "plain", "template = \"bb-v1\"\n");
    api.post("/apps/alice/plain/build", &alice, None)
        .await
        .expect(409);
    remove_images(&[first, second, running_image(&root)]);
}

#[tokio::test]
async fn a_context_through_a_link_in_the_repository_is_refused() {
    let root = TestRoot::new("buildgitlink").await;
    let (dev, daemon) = served_repository(&root, true).await;
    std::os::unix::fs::symlink("/", dev.join("l")).unwrap();
    commit(&dev, "v1 with a link");
    git(&dev, &["push", "-q", "origin", "main"]);
    let url = format!("git://127.0.0.1:{}/app.git", daemon.port);
    let escape = format!(
        "{}context = \"l/etc\"\n",
        manifest(free_port(), &url, "main")
    );
    root.write_manifest("alice", "web", &escape);
    root.berth(&["apply"]).await;
    let status = root.berth(&["status"]).await.text();
    assert!(
        status.contains("context l/etc") && status.contains("is a link"),
        "a context through the repository's link was built:\n{status}"
    );
    assert!(root.container("alice", "web").await.is_none());
}
