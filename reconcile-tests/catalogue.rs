//! The catalogue (docs/guides/templates-and-values.md) on the real engine: redis-v1 with its generated password (a sealed
//! value), its data volume kept across deploys and deletes and dropped only by a confirmed
//! purge, another app of the user talking to it with that password; and every value rule
//! refused with the file, the value and the rule named, with nothing touched. The image is
//! Debian's redis imported locally (`scripts/build-redis-image.sh`).

use std::time::Duration;

use reqwest::Method;

use crate::support::api::ApiRoot;
use crate::support::docker::docker_cli;
use crate::support::wait_until;

const T: Duration = Duration::from_secs(30);
const REDIS_IMAGE: &str = "berth-test-redis:1";

/// A test template: a client that asks the `db` app for `greeting` every half second.
const CLIENT: &str = r#"image = "berth-test-redis:1"
command = ["sh", "-c", "while true; do redis-cli -h db -a \"$REDIS_PASSWORD\" --no-auth-warning get greeting; sleep 0.5; done"]
port = 6379
"#;

async fn redis_root(prefix: &str) -> ApiRoot {
    let image = format!("[templates.redis-v1]\nimage = \"{REDIS_IMAGE}\"\n");
    let r = ApiRoot::start_with(prefix, &[("stop_timeout", "\"2s\"")], &image).await;
    crate::node_lite::copy_dir(
        &crate::node_lite::repo().join("templates/redis-v1"),
        &r.root.template_dir("redis-v1"),
    );
    r.root.write_template("redis-client", CLIENT);
    r
}

/// `redis-cli COMMAND` inside alice's db container, with its own password.
fn redis(r: &ApiRoot, command: &str) -> String {
    let name = r.root.container_name("alice", "db");
    let script = format!("redis-cli -a \"$REDIS_PASSWORD\" --no-auth-warning {command}");
    // Not docker_cli: while redis starts, a refused connection is an answer, not a failure.
    let out = std::process::Command::new("docker")
        .args(["exec", &name, "sh", "-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn volume_exists(r: &ApiRoot) -> bool {
    let name = format!("berth-{}-alice-db.data", r.root.instance);
    let out = std::process::Command::new("docker")
        .args(["volume", "inspect", &name])
        .output()
        .unwrap();
    out.status.success()
}

async fn create_db(r: &ApiRoot) -> String {
    r.api
        .create_app(&r.alice, "db", "redis-v1")
        .await
        .expect(201);
    let manifest = std::fs::read_to_string(r.root.manifest_path("alice", "db")).unwrap();
    let sealed = manifest
        .lines()
        .find_map(|l| l.strip_prefix("password = \""))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_else(|| panic!("a generated password in [values]: {manifest}"));
    assert!(
        sealed.starts_with("age:"),
        "sealed, never plain: {manifest}"
    );
    r.root.wait_running("alice", "db", T).await;
    wait_until(T, "redis to answer", || async {
        redis(r, "ping") == "PONG"
    })
    .await;
    sealed
}

#[tokio::test]
async fn a_database_keeps_its_data_until_a_confirmed_purge_and_serves_another_app() {
    let r = redis_root("catredis").await;
    let sealed = create_db(&r).await;
    assert_eq!(redis(&r, "set greeting hello"), "OK");
    assert!(volume_exists(&r));

    // Another app of alice's reaches it by name with the generated password.
    // Its sealed value opens only in db's manifest: the server copies it, sealed for client.
    r.root
        .write_manifest("alice", "client", "template = \"redis-client\"\n");
    let copy = serde_json::json!({ "copy_from": "alice/db/values.password" });
    let path = "/apps/alice/client/secrets/REDIS_PASSWORD";
    r.api
        .call(reqwest::Method::PUT, path, &r.alice, Some(copy))
        .await
        .expect(200);
    let client = std::fs::read_to_string(r.root.manifest_path("alice", "client")).unwrap();
    assert!(
        !client.contains(&sealed),
        "sealed again for client: {client}"
    );
    r.root.wait_running("alice", "client", T).await;
    wait_until(T, "the client to read the greeting", || async {
        let logs = r.api.get("/apps/alice/client/logs?tail=5", &r.alice).await;
        logs.text.contains("hello")
    })
    .await;

    // A deploy: a new container, the same data.
    let first = r.root.id("alice", "db").await;
    r.api
        .post("/apps/alice/db/deploy", &r.alice, None)
        .await
        .expect(200);
    wait_until(T, "a new db container", || async {
        r.root.running("alice", "db").await && r.root.id("alice", "db").await != first
    })
    .await;
    wait_until(T, "the data after a deploy", || async {
        redis(&r, "get greeting") == "hello"
    })
    .await;

    // A delete without purge keeps the volume: the app made again finds its data.
    r.api.delete("/apps/alice/db", &r.alice).await.expect(200);
    r.root.wait_gone("alice", "db", T).await;
    assert!(volume_exists(&r), "a plain delete keeps the volume");
    create_db(&r).await;
    assert_eq!(
        redis(&r, "get greeting"),
        "hello",
        "data kept across a delete"
    );

    // A confirmed purge drops it.
    let ask = r.api.delete("/apps/alice/db?purge=true", &r.alice).await;
    ask.expect(202);
    assert!(volume_exists(&r), "asking is not purging");
    let token = ask.json()["confirm"].as_str().unwrap().to_string();
    let path = format!("/apps/alice/db?purge=true&confirm={token}");
    r.api.delete(&path, &r.alice).await.expect(200);
    r.root.wait_gone("alice", "db", T).await;
    wait_until(T, "the purge to drop the volume", || async {
        !volume_exists(&r)
    })
    .await;
    create_db(&r).await;
    assert_eq!(
        redis(&r, "get greeting"),
        "",
        "a purged database starts empty"
    );
}

#[tokio::test]
async fn every_value_rule_is_refused_with_the_file_the_value_and_the_rule() {
    let r = redis_root("catvalues").await;
    create_db(&r).await;
    let id = r.root.id("alice", "db").await;
    let good = std::fs::read_to_string(r.root.manifest_path("alice", "db")).unwrap();
    let cases = [
        ("version = \"9\"", "version: \"9\" is not one of"),
        ("maxmemory_mb = 1", "maxmemory_mb: 1 is outside 8..=4096"),
        ("maxmemory_mb = \"64\"", "maxmemory_mb: expected an integer"),
        ("appendonly = true", "appendonly: expected a string"),
        (
            "colour = \"red\"",
            "colour: template redis-v1 has no such value",
        ),
    ];
    for (line, want) in cases {
        let bad = good.replace("[values]\n", &format!("[values]\n{line}\n"));
        assert_ne!(bad, good);
        let etag = r.api.get("/apps/alice/db", &r.alice).await.etag();
        let put = r
            .api
            .put_manifest("/apps/alice/db/manifest", &r.alice, &etag, &bad)
            .await;
        assert_eq!(put.status, 422, "{line}: {}", put.text);
        let message = put.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("state/apps/alice/db.toml") && message.contains(want),
            "{line}: {message}"
        );
        let on_disk = std::fs::read_to_string(r.root.manifest_path("alice", "db")).unwrap();
        assert_eq!(on_disk, good, "{line}: nothing written");
    }
    // A plain-text password is refused too, and the same rules freeze a hand-written file.
    let plain = good
        .lines()
        .map(|l| {
            if l.starts_with("password = ") {
                "password = \"hunter2\""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let etag = r.api.get("/apps/alice/db", &r.alice).await.etag();
    let put = r
        .api
        .put_manifest("/apps/alice/db/manifest", &r.alice, &etag, &plain)
        .await;
    assert!(put.text.contains("must be encrypted"), "{}", put.text);
    r.root.write_manifest(
        "alice",
        "db",
        &good.replace("[values]\n", "[values]\nversion = \"9\"\n"),
    );
    wait_until(
        T,
        "the hand-written bad value to freeze the app",
        || async {
            let v = r.api.get("/apps/alice/db", &r.alice).await.json();
            v["phase"] == "frozen"
                && v["last_error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("version: \"9\" is not one of")
        },
    )
    .await;
    assert_eq!(
        r.root.id("alice", "db").await,
        id,
        "a frozen app's container is left alone"
    );
    assert!(r.root.running("alice", "db").await);
    let templates = r
        .api
        .call(Method::GET, "/templates", &r.alice, None)
        .await
        .json();
    let redis_v1 = templates["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "redis-v1")
        .unwrap()
        .clone();
    assert_eq!(
        redis_v1["values"]["version"]["choices"],
        serde_json::json!(["7", "8"])
    );
    assert_eq!(redis_v1["values"]["password"]["generate"], true);
    assert_eq!(redis_v1["volumes"][0]["target"], "/data");
}

#[tokio::test]
async fn values_set_at_creation_are_checked_and_a_secret_is_sealed_before_it_is_written() {
    let r = redis_root("catcreate").await;
    for (values, want) in [
        (
            serde_json::json!({"version": "9"}),
            "version: \"9\" is not one of",
        ),
        (
            serde_json::json!({"colour": "red"}),
            "colour: template redis-v1 has no such value",
        ),
        (
            serde_json::json!({"maxmemory_mb": [1]}),
            "maxmemory_mb: give a string",
        ),
        (
            serde_json::json!({"maxmemory_mb": 5000}),
            "maxmemory_mb: 5000 is outside",
        ),
    ] {
        let body = serde_json::json!({"appname": "db", "templateId": "redis-v1", "values": values});
        let resp = r
            .api
            .call(Method::POST, "/apps", &r.alice, Some(body))
            .await;
        assert_eq!(resp.status, 422, "{values}: {}", resp.text);
        let message = resp.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(message.contains(want), "{values}: {message}");
        assert!(
            !r.root.manifest_path("alice", "db").exists(),
            "{values}: nothing written"
        );
    }
    let values = serde_json::json!({"maxmemory_mb": 32, "password": "chosen-by-alice"});
    let body = serde_json::json!({"appname": "db", "templateId": "redis-v1", "values": values});
    r.api
        .call(Method::POST, "/apps", &r.alice, Some(body))
        .await
        .expect(201);
    let manifest = std::fs::read_to_string(r.root.manifest_path("alice", "db")).unwrap();
    assert!(
        !manifest.contains("chosen-by-alice"),
        "never written in plain text: {manifest}"
    );
    assert!(
        manifest.contains("maxmemory_mb = 32") && manifest.contains("password = \"age:"),
        "{manifest}"
    );
    r.root.wait_running("alice", "db", T).await;
    wait_until(T, "redis to answer", || async {
        redis(&r, "ping") == "PONG"
    })
    .await;
    assert_eq!(redis(&r, "config get maxmemory"), "maxmemory\n33554432");
    let name = r.root.container_name("alice", "db");
    let auth = docker_cli(&[
        "exec",
        &name,
        "redis-cli",
        "-a",
        "chosen-by-alice",
        "--no-auth-warning",
        "ping",
    ]);
    assert_eq!(auth.trim(), "PONG", "the chosen password works");
}

/// A template whose install plants a link to the host's `/` instead of making its output.
const LINKING_INSTALL: &str = r#"image = "berth-test-busybox:1"
command = ["sleep", "3600"]
port = 8080
[[mounts]]
source = "{shared_dir}/out"
target = "/deps"
read_only = true
[install]
command = ["sh", "-c", "ln -s / /install/out"]
inputs = ["template.toml"]
output = "out"
"#;

#[tokio::test]
async fn an_install_that_leaves_a_link_is_refused_and_nothing_mounts_the_host() {
    let r = ApiRoot::start("catlink", &[]).await;
    r.root.write_template("link-v1", LINKING_INSTALL);
    r.root
        .write_manifest("alice", "web", "template = \"link-v1\"\n");
    wait_until(T, "the install to be refused", || async {
        let v = r.api.get("/apps/alice/web", &r.alice).await.json();
        v["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("left no out directory (a link is refused)")
    })
    .await;
    assert!(
        r.root.container("alice", "web").await.is_none(),
        "no container mounts it"
    );
    let shared = r.root.path().join("shared/link-v1");
    assert!(
        std::fs::symlink_metadata(shared.join("out")).is_err(),
        "no link swapped in"
    );
}
