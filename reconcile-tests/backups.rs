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
