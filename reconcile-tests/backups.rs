//! Data that survives (docs/guides/backups-and-recovery.md) on the real engine: the shipped
//! postgres-v1 template with its generated password, read by another app of the same user;
//! app backups into the root's restic repository and restores in place, byte for byte for a
//! volume and row for row for Postgres; a dump that fails leaves no snapshot and a visible
//! failure; retention for one app never touches another's snapshots. The images are local:
//! Debian's PostgreSQL (`scripts/build-postgres-image.sh`) and restic
//! (`scripts/build-restic-image.sh`).

use std::time::Duration;

use crate::support::api::ApiRoot;
use crate::support::wait_until;

const T: Duration = Duration::from_secs(60);
const PG_IMAGE: &str = "berth-test-postgres:1";

/// A test template: a client that asks the `db` app for its greeting every half second, with
/// the password copied into its own `[secrets]`.
const PG_CLIENT: &str = r#"image = "berth-test-postgres:1"
command = ["sh", "-c", "while true; do psql -h db -U app -d app -tAc 'select words from greeting'; sleep 0.5; done"]
port = 5432
"#;

/// Runs a build script of the repository once per test binary.
fn build_image(script: &str) {
    let path = crate::node_lite::repo().join("scripts").join(script);
    let out = std::process::Command::new("bash")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A root serving the shipped postgres-v1 template on the local image.
pub(crate) async fn pg_root(prefix: &str) -> ApiRoot {
    build_image("build-postgres-image.sh");
    build_image("build-restic-image.sh");
    let image = format!("[templates.postgres-v1]\nimage = \"{PG_IMAGE}\"\n");
    let r = ApiRoot::start_with(prefix, &[("stop_timeout", "\"2s\"")], &image).await;
    crate::node_lite::copy_dir(
        &crate::node_lite::repo().join("templates/postgres-v1"),
        &r.root.template_dir("postgres-v1"),
    );
    r.root.write_template("pg-client", PG_CLIENT);
    r
}

/// `psql -tAc SQL` inside alice's `app` container over its local socket; stdout, trimmed.
pub(crate) fn psql(r: &ApiRoot, app: &str, sql: &str) -> String {
    let name = r.root.container_name("alice", app);
    let script = format!("psql -h /tmp -U app -d app -tAc \"{sql}\"");
    // Not docker_cli: while the server starts, a refused connection is an answer.
    let out = std::process::Command::new("docker")
        .args(["exec", &name, "sh", "-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Creates alice's postgres-v1 app `app` and waits until it answers a query.
pub(crate) async fn create_pg(r: &ApiRoot, app: &str) {
    r.api
        .create_app(&r.alice, app, "postgres-v1")
        .await
        .expect(201);
    r.root.wait_running("alice", app, T).await;
    wait_until(T, "postgres to answer", || async {
        psql(r, app, "select 40 + 2") == "42"
    })
    .await;
}

#[tokio::test]
async fn a_postgres_app_answers_and_another_app_of_its_user_reads_its_connection_values() {
    let r = pg_root("bkpg").await;
    create_pg(&r, "db").await;
    let manifest = std::fs::read_to_string(r.root.manifest_path("alice", "db")).unwrap();
    assert!(
        manifest.contains("password = \"age:"),
        "a generated password, sealed: {manifest}"
    );
    psql(
        &r,
        "db",
        "create table greeting(words text); insert into greeting values ('hello')",
    );
    assert_eq!(psql(&r, "db", "select words from greeting"), "hello");

    r.root
        .write_manifest("alice", "client", "template = \"pg-client\"\n");
    let copy = serde_json::json!({ "copy_from": "alice/db/values.password" });
    let path = "/apps/alice/client/secrets/PGPASSWORD";
    r.api
        .call(reqwest::Method::PUT, path, &r.alice, Some(copy))
        .await
        .expect(200);
    r.root.wait_running("alice", "client", T).await;
    wait_until(
        T,
        "the client to read the greeting over the network",
        || async {
            let logs = r.api.get("/apps/alice/client/logs?tail=5", &r.alice).await;
            logs.text.contains("hello")
        },
    )
    .await;

    // A deploy's new container must pass the template's TCP health check (a server that
    // speaks no HTTP would fail a GET), and finds the data on the volume.
    let first = r.root.id("alice", "db").await;
    r.api
        .post("/apps/alice/db/deploy", &r.alice, None)
        .await
        .expect(200);
    wait_until(T, "a new, healthy db container", || async {
        r.root.running("alice", "db").await && r.root.id("alice", "db").await != first
    })
    .await;
    wait_until(T, "the data after a deploy", || async {
        psql(&r, "db", "select words from greeting") == "hello"
    })
    .await;
    let app = r.api.get("/apps/alice/db", &r.alice).await.json();
    assert_eq!(app["phase"], "running", "{app}");

    // A wrong password is refused: the server asks for one over the network.
    let name = r.root.container_name("alice", "client");
    let out = std::process::Command::new("docker")
        .args(["exec", "-e", "PGPASSWORD=wrong", &name])
        .args([
            "psql", "-h", "db", "-U", "app", "-d", "app", "-tAc", "select 1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A template keeping one volume, backed up as a volume (the default with `[[volumes]]`).
const VOL_TEMPLATE: &str = r#"image = "berth-test-busybox:1"
command = ["sleep", "3600"]
workdir = "/"
port = 8080

[[volumes]]
name = "data"
target = "/data"
"#;

/// A template whose dump fails after writing part of its output.
const FAILING_DUMP: &str = r#"image = "berth-test-busybox:1"
command = ["sleep", "3600"]
workdir = "/"
port = 8080

[backup]
kind = "dump"
dump = ["sh", "-c", "echo partial; echo 'disk on fire' >&2; exit 3"]
restore = ["sh", "-c", "cat >/dev/null"]
"#;

/// A root with the volume and failing-dump templates and the restic image.
async fn vol_root(prefix: &str) -> ApiRoot {
    build_image("build-restic-image.sh");
    let r = ApiRoot::start(prefix, &[("stop_timeout", "\"2s\"")]).await;
    r.root.write_template("vol-v1", VOL_TEMPLATE);
    r.root.write_template("failing-dump", FAILING_DUMP);
    r
}

/// `sh -c script` as root, with Docker's default capabilities, in a container of its own
/// that mounts `user`'s `app`'s data volume at /data (the app's own container keeps no
/// capability to chown with), every busybox applet on its PATH; its stdout.
fn sh(r: &ApiRoot, user: &str, app: &str, script: &str) -> String {
    let volume = format!("berth-{}-{user}-{app}.data:/data", r.root.instance);
    let script =
        format!("mkdir -p /.bb && busybox --install -s /.bb && export PATH=/.bb:$PATH && {script}");
    let out = std::process::Command::new("docker")
        .args([
            "run",
            "--rm",
            "-v",
            &volume,
            "berth-test-busybox:1",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Every path under /data with its type, mode, owner, size and content hash, sorted.
fn listing(r: &ApiRoot, app: &str) -> String {
    sh(
        r,
        "alice",
        app,
        "cd /data && find . | sort | while read -r p; do s=$(stat -c '%F %a %u:%g %s' \"$p\"); h=-; [ -f \"$p\" ] && h=$(md5sum < \"$p\" | cut -c1-32); echo \"$p $s $h\"; done",
    )
}

async fn backup_now(r: &ApiRoot, user: &str, app: &str) -> serde_json::Value {
    let token = if user == "alice" { &r.alice } else { &r.bob };
    let path = format!("/apps/{user}/{app}/backups");
    let resp = r.api.post(&path, token, None).await;
    resp.expect(201);
    resp.json()
}

async fn snapshots(r: &ApiRoot, user: &str, app: &str) -> Vec<serde_json::Value> {
    let token = if user == "alice" { &r.alice } else { &r.bob };
    let resp = r
        .api
        .get(&format!("/apps/{user}/{app}/backups"), token)
        .await;
    resp.expect(200);
    resp.json()["snapshots"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_volume_comes_back_byte_for_byte_with_modes_owners_and_dot_files() {
    let r = vol_root("bkvol").await;
    r.root
        .write_manifest("alice", "files", "template = \"vol-v1\"\n");
    r.root.wait_running("alice", "files", T).await;
    sh(
        &r,
        "alice",
        "files",
        "cd /data && mkdir -p sub/deep && echo hidden > .dot && echo secret > private && chmod 600 private \
         && echo owned > sub/owned && chown 1234:5678 sub/owned && chmod 750 sub && head -c 100000 /dev/urandom > sub/deep/blob \
         && chmod 4755 sub/deep/blob && ln -s ../private sub/link",
    );
    let before = listing(&r, "files");
    assert!(
        before.contains("./.dot") && before.contains("1234:5678") && before.contains(" 600 "),
        "{before}"
    );
    let taken = backup_now(&r, "alice", "files").await;
    let id = taken["snapshot"].as_str().unwrap().to_string();

    // The data changes: a file gone, one changed, one new, a mode and an owner changed.
    sh(&r, "alice", "files", "cd /data && rm .dot && echo changed > private && echo new > extra && chmod 644 private && chown 0:0 sub/owned");
    assert_ne!(listing(&r, "files"), before);
    let first = r.root.id("alice", "files").await;
    let body = serde_json::json!({ "snapshot": id });
    let resp = r
        .api
        .post("/apps/alice/files/restore", &r.alice, Some(body))
        .await;
    resp.expect(200);
    assert_eq!(resp.json()["restored"], id.as_str());
    r.root.wait_running("alice", "files", T).await;
    assert_eq!(
        r.root.id("alice", "files").await,
        first,
        "the same container, started again"
    );
    assert_eq!(
        listing(&r, "files"),
        before,
        "byte for byte, modes and owners"
    );
    // The loop held off while the container was stopped: the restore started it, not a pass.
    let metrics = r.api.get("/metrics", &r.admin).await.text;
    let starts = "berth_actions_total{kind=\"start\",result=\"ok\"}";
    assert_eq!(
        crate::support::metric_value(&metrics, starts),
        0,
        "{metrics}"
    );

    // The data the restore replaced is a snapshot too, listed with its reason.
    let listed = snapshots(&r, "alice", "files").await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["reason"], "pre-restore");
    assert_eq!(listed[1]["id"], id.as_str());
    assert!(listed[1]["size"].as_u64().unwrap() > 100_000, "{listed:?}");
    let app = r.api.get("/apps/alice/files", &r.alice).await.json();
    assert!(app["backup"]["last_success"].as_u64().is_some(), "{app}");

    // Another user can neither list nor restore alice's snapshots; an id is only hex.
    r.api
        .get("/apps/alice/files/backups", &r.bob)
        .await
        .expect(403);
    let body = serde_json::json!({ "snapshot": "../../x" });
    r.api
        .post("/apps/alice/files/restore", &r.alice, Some(body))
        .await
        .expect(400);
    let body = serde_json::json!({ "snapshot": "ffffffff" });
    r.api
        .post("/apps/alice/files/restore", &r.alice, Some(body))
        .await
        .expect(404);

    // Hostile bodies are refused before anything runs; the data stays as restored.
    for body in [
        serde_json::json!({ "snapshot": 5 }),
        serde_json::json!({ "snapshot": id, "into": "other" }),
        serde_json::json!({ "snapshot": format!("{id} --target /") }),
    ] {
        let resp = r
            .api
            .post("/apps/alice/files/restore", &r.alice, Some(body.clone()))
            .await;
        assert!(matches!(resp.status, 400 | 422), "{body}: {}", resp.text);
    }
    assert_eq!(
        snapshots(&r, "alice", "files").await.len(),
        2,
        "no safety snapshot for a refused body"
    );
    assert_eq!(listing(&r, "files"), before);

    // Nothing under the root holds the repository's password in plain text.
    let sealed = std::fs::read_to_string(r.root.path().join("backups/restic.key")).unwrap();
    assert!(sealed.starts_with("age:"), "{sealed}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(r.root.path().join("backups/restic"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn postgres_rows_are_backed_up_dropped_restored_and_read_back() {
    let r = pg_root("bkpgrt").await;
    create_pg(&r, "db").await;
    psql(&r, "db", "create table orders(id int primary key, item text); insert into orders select g, 'item ' || g from generate_series(1, 500) g");
    let run = r.root.berth(&["backups", "run", "alice/db"]).await;
    run.expect_code(0).expect_contains("snapshot");
    psql(&r, "db", "drop table orders; create table other(x int)");
    assert_eq!(
        psql(
            &r,
            "db",
            "select count(*) from pg_tables where tablename = 'orders'"
        ),
        "0"
    );

    let listed = r.root.berth(&["backups", "list", "alice/db"]).await;
    listed.expect_code(0).expect_contains("manual");
    let restore = r.root.berth(&["restore", "alice/db"]).await;
    restore.expect_code(0).expect_contains("restored snapshot");
    assert_eq!(
        psql(&r, "db", "select count(*), max(item) from orders"),
        "500|item 99"
    );
    assert!(r.root.running("alice", "db").await);
    // The safety snapshot holds the data the restore replaced (the `other` table).
    let snaps = snapshots(&r, "alice", "db").await;
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[0]["reason"], "pre-restore");
}

#[tokio::test]
async fn a_failing_dump_saves_no_snapshot_and_its_failure_is_shown() {
    let r = vol_root("bkfail").await;
    r.root
        .write_manifest("alice", "bad", "template = \"failing-dump\"\n");
    r.root.wait_running("alice", "bad", T).await;
    let resp = r.api.post("/apps/alice/bad/backups", &r.alice, None).await;
    assert_eq!(resp.status, 500, "{}", resp.text);
    assert_eq!(resp.code(), "backup_failed");
    let message = resp.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("exited with 3") && message.contains("disk on fire"),
        "{message}"
    );
    assert!(
        snapshots(&r, "alice", "bad").await.is_empty(),
        "no snapshot of a failed dump"
    );
    let app = r.api.get("/apps/alice/bad", &r.alice).await.json();
    let reason = app["backup"]["last_failure_reason"].as_str().unwrap_or("");
    assert!(reason.contains("disk on fire"), "{app}");
    assert!(app["backup"]["last_success"].is_null());
    let metrics = r.api.get("/metrics", &r.admin).await.text;
    assert_eq!(
        crate::support::metric_value(&metrics, "berth_backup_runs_total{result=\"failed\"}"),
        1,
        "{metrics}"
    );
    let run = r.root.berth(&["backups", "run", "alice/bad"]).await;
    run.expect_code(1).expect_contains("disk on fire");
    // An app that keeps nothing cannot be backed up, and says why.
    r.root
        .write_manifest("alice", "plain", "template = \"bb-v1\"\n");
    r.root.wait_running("alice", "plain", T).await;
    let resp = r
        .api
        .post("/apps/alice/plain/backups", &r.alice, None)
        .await;
    assert_eq!(resp.status, 422, "{}", resp.text);
    assert_eq!(resp.code(), "no_backup");
}

#[tokio::test]
async fn retention_for_one_app_forgets_only_that_apps_snapshots() {
    let r = vol_root("bkkeep").await;
    let keep = "template = \"vol-v1\"\n\n[backup]\nkeep = { last = 1 }\n";
    r.root.write_manifest("alice", "web", keep);
    r.root
        .write_manifest("alice", "web2", "template = \"vol-v1\"\n");
    r.root
        .write_manifest("bob", "web", "template = \"vol-v1\"\n");
    for (user, app) in [("alice", "web"), ("alice", "web2"), ("bob", "web")] {
        r.root.wait_running(user, app, T).await;
    }
    for (user, app) in [
        ("alice", "web2"),
        ("bob", "web"),
        ("alice", "web2"),
        ("bob", "web"),
    ] {
        sh(&r, user, app, "echo more >> /data/stamp");
        backup_now(&r, user, app).await;
    }
    let mut last = String::new();
    for _ in 0..3 {
        sh(&r, "alice", "web", "echo more >> /data/stamp");
        last = backup_now(&r, "alice", "web").await["snapshot"]
            .as_str()
            .unwrap()
            .to_string();
    }
    let kept = snapshots(&r, "alice", "web").await;
    assert_eq!(kept.len(), 1, "keep last = 1: {kept:?}");
    assert_eq!(kept[0]["id"], last.as_str(), "the newest is kept");
    assert_eq!(
        snapshots(&r, "alice", "web2").await.len(),
        2,
        "another app of the user keeps all"
    );
    assert_eq!(
        snapshots(&r, "bob", "web").await.len(),
        2,
        "another user's app of the same name keeps all"
    );
}
