//! Faults a real server meets (issue 12), each staged for one berth only: an engine outage
//! (through a cuttable relay to the engine's socket) is visible in `/readyz`, the metrics and
//! `GET /apps`, and everything converges when the engine is back; so is a hung engine (the
//! relay held: connections open, nothing answered), which no failed call would show.

use std::time::Duration;

use crate::support::api::{add_user, Api};
use crate::support::relay::DockerRelay;
use crate::support::tmpfs::Tmpfs;
use crate::support::verdict::{assert_converged, assert_no_berth_left};
use crate::support::{wait_until, Serve, TestRoot, MINIMAL};

const T: Duration = Duration::from_secs(30);

/// `serve` on `root` talking to the engine through `relay`, with alice/web running and the
/// daemon ready; and an admin's token.
async fn serve_through(relay: &DockerRelay, root: &TestRoot) -> (Serve, Api, String) {
    let admin = add_user(root, "root", true).await;
    root.write_manifest("alice", "web", MINIMAL);
    let host = relay.docker_host();
    let mut serve = Serve::start_env(root, &[("DOCKER_HOST", host.as_str())]);
    let api = Api::new(serve.api_base());
    root.wait_running("alice", "web", T).await;
    wait_until(T, "ready", || async {
        api.get("/readyz", "").await.status == 200
    })
    .await;
    (serve, api, admin)
}

// Multi-threaded: the relay's tasks run while the test blocks on serve's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_outage_is_reported_and_apps_converge_when_it_ends() {
    let mut relay = DockerRelay::start();
    let root = TestRoot::new("engineout").await;
    root.config(&[("resync", "\"1s\"")], "");
    let (mut serve, api, admin) = serve_through(&relay, &root).await;

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
    root.berth(&["apply"]).await.expect_code(0);
    assert_converged(&root, "after the engine outage").await;
    serve.stop(Duration::from_secs(10));
    assert_no_berth_left(&root, "after the engine outage");
}

// Multi-threaded: the relay's tasks run while the test blocks on serve's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_engine_is_not_ready_and_apps_are_not_shown_running() {
    let relay = DockerRelay::start();
    let root = TestRoot::new("enginehung").await;
    let (mut serve, api, admin) = serve_through(&relay, &root).await;

    // As dockerd under SIGSTOP: every connection stays open and nothing answers.
    relay.hold();
    wait_until(T, "readiness to fail on the hung engine", || async {
        let ready = api.get("/readyz", "").await;
        ready.status == 503 && ready.json()["checks"]["engine"]["ok"] == false
    })
    .await;
    let ready = api.get("/readyz", "").await;
    let engine = &ready.json()["checks"]["engine"];
    let why = engine["reason"].as_str().unwrap_or_default();
    assert!(why.contains("hung"), "{}", ready.text);
    let apps = api.get("/apps", &admin).await.json();
    assert_eq!(apps["apps"][0]["container"], "unknown", "{apps}");
    assert_eq!(
        api.get("/healthz", "").await.status,
        200,
        "liveness is not readiness"
    );

    relay.release();
    serve.wait_log("the engine answers again", T);
    wait_until(T, "ready again", || async {
        api.get("/readyz", "").await.status == 200
    })
    .await;
    assert!(root.running("alice", "web").await);
    serve.stop(Duration::from_secs(10));
    assert_no_berth_left(&root, "after the engine hung");
}

/// moby#46661: the engine answers its ping but a container start hangs. berth gives the
/// start up after `engine_timeout`, names the call in the app's error, counts it, and starts
/// the app once the engine answers starts again.
// Multi-threaded: the relay's tasks run while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_container_start_is_given_up_named_counted_and_retried() {
    let relay = DockerRelay::start();
    let root = TestRoot::new("enginestall").await;
    root.config(&[("engine_timeout", "\"2s\"")], "");
    let (mut serve, api, admin) = serve_through(&relay, &root).await;

    relay.stall("/start HTTP/1.1");
    root.write_manifest("alice", "api", MINIMAL);
    wait_until(T, "the hung start to be given up", || async {
        let v = api.get("/apps/alice/api", &admin).await.json();
        let error = v["last_error"].as_str().unwrap_or_default().to_string();
        error.contains("no answer within 2s")
    })
    .await;
    let v = api.get("/apps/alice/api", &admin).await.json();
    let error = v["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("docker start ") && error.contains("engine_timeout"),
        "the error names the call: {error}"
    );
    let metrics = api.get("/metrics", "").await.text;
    assert!(
        metrics.contains("berth_engine_timeouts_total{op=\"start\"}"),
        "{metrics}"
    );
    assert!(
        root.running("alice", "web").await,
        "the other app is untouched"
    );

    relay.unstall();
    root.wait_running("alice", "api", T).await;
    serve.assert_alive();
    serve.stop(Duration::from_secs(10));
    assert_no_berth_left(&root, "after a hung start");
}

#[tokio::test]
async fn a_database_deleted_while_serving_is_reported_and_not_silently_recreated() {
    let root = TestRoot::new("dbgone").await;
    let admin = add_user(&root, "root", true).await;
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    api.get("/users", &admin).await.expect(200);
    let db = root.path().join("berth.redb");
    std::fs::remove_file(&db).unwrap();
    // Writes are refused with the reason, and readiness says so.
    let refused = api
        .post("/users", &admin, Some(serde_json::json!({"name": "carol"})))
        .await;
    refused.expect(503);
    assert!(
        refused.text.contains("deleted or replaced"),
        "{}",
        refused.text
    );
    let ready = api.get("/readyz", "").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["checks"]["database"]["ok"], false);
    // A restart does not make a fresh, empty database where one was.
    serve.stop(Duration::from_secs(10));
    let run = root.berth(&["users", "list"]).await;
    assert_ne!(run.code, Some(0), "{}", run.text());
    assert!(run.text().contains("restore"), "{}", run.text());
    assert!(!db.exists(), "an empty database was made");
}

#[tokio::test]
async fn a_database_emptied_while_serving_is_never_written_and_the_loop_goes_on() {
    let root = TestRoot::new("dbempty").await;
    let admin = add_user(&root, "root", true).await;
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    api.get("/users", &admin).await.expect(200);
    let db = root.path().join("berth.redb");
    // As `: > berth.redb` or a `cp` over it does: the same file, truncated in place.
    let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    file.set_len(0).unwrap();
    drop(file);
    let refused = api
        .post("/users", &admin, Some(serde_json::json!({"name": "carol"})))
        .await;
    refused.expect(503);
    for needle in ["berth.redb", "emptied", "berth backup"] {
        assert!(refused.text.contains(needle), "{needle}: {}", refused.text);
    }
    let ready = api.get("/readyz", "").await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert_eq!(ready.json()["checks"]["database"]["ok"], false);
    // The loop converges from the files whatever the database says.
    root.write_manifest("alice", "web", MINIMAL);
    root.wait_running("alice", "web", T).await;
    serve.stop(Duration::from_secs(10));
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "berth wrote to it"
    );
    // The next start refuses it with a clean error, never a panic or a fresh database.
    let run = root.berth(&["users", "list"]).await;
    assert!(
        matches!(run.code, Some(c) if c != 0 && c != 101),
        "{}",
        run.text()
    );
    assert!(run.text().contains("0 bytes"), "{}", run.text());
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "a database was made"
    );
    assert_no_berth_left(&root, "after the emptied database");
}

#[tokio::test]
async fn apply_and_plan_during_serve_go_through_the_daemon() {
    let root = TestRoot::new("applyrace").await;
    root.config(&[("max_apps_per_user", "20"), ("max_total_apps", "40")], "");
    root.write_template(
        "bb-missing",
        &crate::support::BB_TEMPLATE.replace("berth-test-busybox:1", "berth-test-missing:nope"),
    );
    root.write_manifest("alice", "web", MINIMAL);
    let admin = add_user(&root, "root", true).await;
    let alice = add_user(&root, "alice", false).await;
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    root.wait_running("alice", "web", T).await;
    // Admins only, and no stray parameters.
    assert_eq!(api.get("/plan", &alice).await.status, 403);
    assert_eq!(api.post("/apply", &alice, None).await.status, 403);
    assert_eq!(api.post("/apply?force=1", &admin, None).await.status, 400);
    assert_eq!(api.get("/plan", &admin).await.json()["changes"], 0);
    // A burst of new manifests, applied at once while the daemon reacts to the same files:
    // one decider, so no change fails on the other's containers.
    for i in 0..12 {
        root.write_manifest("bob", &format!("app{i}"), MINIMAL);
    }
    root.write_manifest("bob", "broken", "template = \"bb-missing\"\n");
    let run = root.berth(&["apply"]).await;
    let text = run.text();
    assert_eq!(run.code, Some(1), "the broken app fails the apply: {text}");
    assert!(text.contains("failed: bob/broken"), "{text}");
    assert!(text.contains(", 1 failed,"), "{text}");
    assert_eq!(
        text.matches("failed:").count(),
        1,
        "only the broken app failed: {text}"
    );
    // apply answered once the daemon had carried everything out.
    for i in 0..12 {
        assert!(
            root.running("bob", &format!("app{i}")).await,
            "bob/app{i}: {text}"
        );
    }
    let log = serve.log();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("action failed"))
        .collect();
    assert!(
        failures.iter().all(|l| l.contains("bob/broken")),
        "{failures:#?}"
    );
    root.remove_manifest("bob", "broken");
    let run = root.berth(&["apply"]).await;
    run.expect_code(0);
    // plan asks the daemon too: nothing left to do.
    let plan = root.berth(&["plan"]).await;
    plan.expect_code(0);
    assert!(!plan.text().contains("create"), "{}", plan.text());
    assert_converged(&root, "apply during serve").await;
    serve.stop(Duration::from_secs(10));
    assert_no_berth_left(&root, "apply during serve");
}

/// Kills a process on drop, so a failing test leaves no hook behind.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: a plain syscall on the hook this test started.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Field 4 of `/proc/<pid>/stat`: the parent's pid.
fn parent(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The fallback behind the hook shim (which kills a hook's tree when serve dies, see
/// hooks.rs): a hook whose shim was killed with serve is killed at the next start.
#[tokio::test]
async fn a_hook_left_running_by_a_killed_serve_is_killed_at_the_next_start() {
    let root = TestRoot::new("hookreap").await;
    let (marker, pidfile) = (root.path().join("hook-ran"), root.path().join("hook.pid"));
    let hook = format!(
        "#!/bin/sh\n[ -e '{m}' ] && exit 0\ntouch '{m}'\necho $$ > '{p}'\nexec sleep 300\n",
        m = marker.display(),
        p = pidfile.display()
    );
    root.write_hook("bb-v1", "pre-create", &hook);
    root.write_manifest("alice", "web", MINIMAL);
    let mut serve = Serve::start(&root);
    wait_until(T, "the hook to run", || async { pidfile.exists() }).await;
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _cleanup = KillOnDrop(pid);
    // The shim and serve killed at once (a cgroup-less OOM kill, a power-cut-like crash):
    // nothing is left to kill the hook but the next start.
    let shim = parent(pid);
    // SAFETY: kill(2) on the hook's shim, serve's child.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    serve.kill();
    assert!(
        alive(pid),
        "a SIGKILLed berth and shim cannot kill the hook"
    );
    let _serve = Serve::start(&root);
    wait_until(T, "the left-over hook to be killed", || async {
        !alive(pid)
    })
    .await;
    root.wait_running("alice", "web", T).await;
}

/// Posts users until one is refused; returns the refusal.
async fn add_users_until_refused(api: &Api, admin: &str) -> crate::support::api::Resp {
    for i in 0..200 {
        let body = serde_json::json!({ "name": format!("u{i}") });
        let resp = api.post("/users", admin, Some(body)).await;
        if resp.status != 201 {
            return resp;
        }
    }
    panic!("200 users were added on a full disk");
}

#[tokio::test]
async fn a_full_disk_under_the_database_is_answered_507_and_writes_work_once_space_returns() {
    let root = TestRoot::new("dbfull").await;
    let disk = Tmpfs::mount(&root.path().join("dbdisk"), "8m");
    let db = root.path().join("dbdisk/berth.redb");
    root.config(&[("database", &format!("\"{}\"", db.display()))], "");
    let admin = add_user(&root, "root", true).await;
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    api.get("/users", &admin).await.expect(200);

    disk.fill();
    let refused = add_users_until_refused(&api, &admin).await;
    assert_eq!(refused.status, 507, "{}", refused.text);
    assert_eq!(refused.code(), "insufficient_storage", "{}", refused.text);
    // /readyz's probe write is small and may fit in pages the database file already holds,
    // so readiness can be back at once (store unit tests cover the refusal); while it is
    // not, it must say why.
    let ready = api.get("/readyz", "").await;
    let db = &ready.json()["checks"]["database"];
    if db["ok"] == false {
        let why = db["reason"].as_str().unwrap_or_default();
        assert!(why.contains("last database write failed"), "{}", ready.text);
    }

    disk.free();
    // The first write after space returns works: no restart, no latched error.
    let added = api
        .post("/users", &admin, Some(serde_json::json!({"name": "after"})))
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let users = api.get("/users", &admin).await.text;
    assert!(users.contains("\"after\""), "{users}");
    wait_until(T, "ready again", || async {
        api.get("/readyz", "").await.json()["checks"]["database"]["ok"] == true
    })
    .await;
    // The audit log goes on too: the write above is in it.
    let audit = api.get("/audit?tail=5", &admin).await.text;
    assert!(audit.contains("POST /users"), "{audit}");
    serve.assert_alive();
}

#[tokio::test]
async fn a_full_disk_under_state_refuses_a_create_with_507_and_leaves_nothing() {
    let root = TestRoot::new("statefull").await;
    let disk = Tmpfs::mount(&root.path().join("state/apps"), "1m");
    let admin = add_user(&root, "root", true).await;
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    disk.fill();
    let refused = api.create_app(&admin, "web", "bb-v1").await;
    assert_eq!(refused.status, 507, "{}", refused.text);
    assert_eq!(refused.code(), "insufficient_storage", "{}", refused.text);
    let left: Vec<_> = std::fs::read_dir(root.path().join("state/apps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".fill")
        .collect();
    assert!(left.is_empty(), "a failed create left {left:?}");
    disk.free();
    api.create_app(&admin, "web", "bb-v1").await.expect(201);
    root.berth(&["apply"]).await.expect_code(0);
    assert_converged(&root, "after the full state disk").await;
    serve.stop(Duration::from_secs(10));
    assert_no_berth_left(&root, "after the full state disk");
}

#[tokio::test]
async fn a_backup_taken_while_serving_lands_where_the_cli_sees_it_and_restores_every_user() {
    use std::os::unix::fs::PermissionsExt;
    let root = TestRoot::new("backup").await;
    let admin = add_user(&root, "root", true).await;
    // serve has its own `tmp` (as the packaged unit has its own /tmp): the backup must still
    // land in the `tmp` the person who asked for it sees.
    let tmp = root.path().join("tmp");
    let mut serve = Serve::start_with_private_dir(&root, &tmp);
    let api = Api::new(serve.api_base());
    let carol = serde_json::json!({"name": "carol"});
    api.post("/users", &admin, Some(carol)).await.expect(201);
    // Over TCP even an admin may not take the database away.
    assert_eq!(api.post("/backup", &admin, None).await.status, 403);
    let path = tmp.join("copy.redb");
    let run = root.berth(&["backup", path.to_str().unwrap()]).await;
    run.expect_code(0).expect_contains("copy.redb");
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{e}\n{}", run.text()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    root.berth(&["backup", path.to_str().unwrap()])
        .await
        .expect_code(1)
        .expect_contains("exists");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec!["copy.redb"], "temp files left beside the backup");
    // An earlier CLI's request (serve to write a path) is refused, not answered as done.
    let sock = root.path().join("berth.redb.sock");
    let old_body = format!("{{\"path\":\"{}\"}}", tmp.join("old.redb").display());
    let old = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(&sock)
        .args(["-X", "POST", "-d", &old_body, "http://localhost/backup"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&old.stdout), "400");
    // Without serve the CLI copies the database itself.
    serve.stop(Duration::from_secs(10));
    let direct = tmp.join("direct.redb");
    root.berth(&["backup", direct.to_str().unwrap()])
        .await
        .expect_code(0)
        .expect_contains("direct.redb");
    // Restore: the copy in place of the database, berth stopped.
    std::fs::rename(&path, root.path().join("berth.redb")).unwrap();
    let users = root.berth(&["users", "list"]).await;
    users
        .expect_code(0)
        .expect_contains("carol")
        .expect_contains("root");
}

#[tokio::test]
async fn a_write_git_mode_cannot_commit_for_want_of_space_is_undone_and_answered_507() {
    use crate::support::git::{git, Remote};
    let root = TestRoot::new("gitfull").await;
    let remote = Remote::new(root.path());
    remote.write("alice", "web", MINIMAL);
    remote.push("web");
    std::fs::remove_dir_all(root.path().join("state")).unwrap();
    let disk = Tmpfs::mount(&root.path().join("state"), "4m");
    let git_config = format!(
        "[git]\nremote = \"{}\"\nbranch = \"main\"\ninterval = \"1h\"\n",
        remote.bare.display()
    );
    root.config(&[], &git_config);
    let alice = add_user(&root, "alice", false).await;
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    root.wait_running("alice", "web", T).await;
    let etag = api.get("/apps/alice/web", &alice).await.etag();
    let edited = format!("{MINIMAL}[env]\nMODE = \"edited\"\n");
    // Room for the manifest's one page, none for git's objects and index.
    disk.fill_but(4096);
    let refused = api
        .put_manifest("/apps/alice/web/manifest", &alice, &etag, &edited)
        .await;
    assert_eq!(refused.status, 507, "{}", refused.text);
    let manifest = std::fs::read_to_string(root.manifest_path("alice", "web")).unwrap();
    assert_eq!(manifest, MINIMAL, "the write was not undone");
    disk.free();
    let dirty = git(
        &root.path().join("state"),
        &["status", "--porcelain", "--", "apps"],
    );
    assert!(dirty.trim().is_empty(), "uncommitted: {dirty}");
    api.put_manifest("/apps/alice/web/manifest", &alice, &etag, &edited)
        .await
        .expect(200);
    let log = git(&root.path().join("state"), &["log", "-1", "--format=%s"]);
    assert!(log.contains("alice/web"), "{log}");
    serve.assert_alive();
}
