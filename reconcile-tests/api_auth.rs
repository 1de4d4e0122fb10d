//! API authentication and authorization: tokens and roles, client keys and the bridge API,
//! failed-attempt limiting, where secrets may appear, and the `users`/`status` commands
//! through the daemon's socket or the database.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::api::{add_user, ApiRoot};
use crate::support::{wait_until, Serve, TestRoot, MINIMAL};

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn tokens_roles_and_scopes() {
    let r = ApiRoot::start("apiauth", &[]).await;
    let api = &r.api;
    r.root.write_manifest("alice", "web", MINIMAL);
    r.root.write_manifest("bob", "api", MINIMAL);

    api.send(Method::GET, "/apps", &[], None).await.expect(401);
    api.get(
        "/apps",
        "berth.alice.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    .await
    .expect(401);
    // Alice's secret under bob's name is not bob.
    let forged = r.alice.replacen("alice", "bob", 1);
    api.get("/apps", &forged).await.expect(401);

    // GET /apps lists what the last pass saw: hand-written files appear after it.
    wait_until(T, "the pass that sees both files", || async {
        let all = api.get("/apps", &r.admin).await.json();
        all["apps"].as_array().map_or(0, Vec::len) == 2
    })
    .await;
    let mine = api.get("/apps", &r.alice).await.json();
    let names: Vec<&str> = mine["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["appname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web"], "alice sees only her apps");
    let all = api.get("/apps", &r.admin).await.json();
    assert_eq!(
        all["apps"].as_array().unwrap().len(),
        2,
        "the admin sees every app"
    );

    for (m, p) in [
        (Method::GET, "/apps/bob/api"),
        (Method::POST, "/apps/bob/api/stop"),
        (Method::POST, "/apps/bob/api/deploy"),
        (Method::DELETE, "/apps/bob/api"),
        (Method::GET, "/apps/bob/api/logs"),
        (Method::GET, "/apps/bob/api/client-keys"),
        (Method::POST, "/apps/bob/api/client-keys"),
        (Method::GET, "/apps/bob/nonexistent"),
    ] {
        let resp = api.call(m.clone(), p, &r.alice, None).await;
        resp.expect(403);
        assert_eq!(resp.code(), "forbidden", "{m} {p}");
    }
    let cross = api
        .post(
            "/apps",
            &r.alice,
            Some(json!({"appname": "x", "templateId": "bb-v1", "userid": "bob"})),
        )
        .await;
    cross.expect(403);
    assert!(r.root.manifest_path("bob", "api").exists());
    assert!(!r.root.manifest_path("bob", "x").exists());

    // Admins reach every app and manage users; users don't.
    api.post("/apps/bob/api/stop", &r.admin, None)
        .await
        .expect(200);
    api.get("/users", &r.alice).await.expect(403);
    api.post(
        "/users",
        &r.alice,
        Some(json!({"name": "mallory", "admin": true})),
    )
    .await
    .expect(403);
    let carol = api
        .post("/users", &r.admin, Some(json!({"name": "carol"})))
        .await;
    carol.expect(201);
    let carol_token = carol.json()["token"].as_str().unwrap().to_string();
    api.get("/apps", &carol_token).await.expect(200);
    api.delete("/users/carol", &r.admin).await.expect(200);
    api.get("/apps", &carol_token).await.expect(401);
}

#[tokio::test]
async fn client_keys_open_the_bridge_for_their_app_only() {
    let r = ApiRoot::start("apikeys", &[]).await;
    let api = &r.api;
    r.root.write_manifest(
        "alice",
        "web",
        "template = \"bb-v1\"\nstate = \"stopped\"\ndomain = \"web.example.com\"\n[env]\nAPI_PASSWORD = \"hunter2\"\n",
    );
    r.root.write_manifest("alice", "other", MINIMAL);
    r.root.write_manifest("bob", "api", MINIMAL);
    r.root.wait_running("alice", "other", T).await;

    let issued = api
        .post("/apps/alice/web/client-keys", &r.alice, None)
        .await;
    issued.expect(201);
    let key = issued.json()["key"].as_str().unwrap().to_string();
    let id = issued.json()["id"].as_str().unwrap().to_string();
    assert!(key.starts_with(&format!("client.{id}.")));
    api.post("/apps/alice/missing/client-keys", &r.alice, None)
        .await
        .expect(404);
    let other_key = api.issue_key(&r.alice, "alice", "other").await;

    let info = api
        .bridge(Method::GET, "/bridge/apps/alice/web", Some(&key))
        .await;
    info.expect(200);
    let v = info.json();
    assert_eq!(
        (v["userid"].as_str(), v["appname"].as_str()),
        (Some("alice"), Some("web"))
    );
    assert_eq!(v["state"], "stopped");
    assert_eq!(v["domain"], "web.example.com");
    assert!(v["phase"].is_string());
    assert!(
        !info.text.contains("hunter2") && !info.text.contains("API_PASSWORD"),
        "{}",
        info.text
    );

    api.bridge(Method::GET, "/bridge/apps/alice/web", None)
        .await
        .expect(401);
    api.bridge(Method::GET, "/bridge/apps/alice/web", Some(&other_key))
        .await
        .expect(403);
    api.bridge(Method::GET, "/bridge/apps/bob/api", Some(&key))
        .await
        .expect(403);
    // An admin token is not a client key.
    api.bridge(Method::GET, "/bridge/apps/alice/web", Some(&r.admin))
        .await
        .expect(401);

    // activate sets the app running through its manifest.
    api.bridge(
        Method::POST,
        "/bridge/apps/alice/web/activate",
        Some(&other_key),
    )
    .await
    .expect(403);
    api.bridge(Method::POST, "/bridge/apps/alice/web/activate", Some(&key))
        .await
        .expect(200);
    let m = std::fs::read_to_string(r.root.manifest_path("alice", "web")).unwrap();
    assert!(
        m.contains("state = \"running\"") && m.contains("hunter2"),
        "{m}"
    );
    r.root.wait_running("alice", "web", T).await;

    let listed = api.get("/apps/alice/web/client-keys", &r.alice).await;
    listed.expect(200);
    assert_eq!(listed.json()["keys"][0]["id"], id.as_str());
    assert!(
        listed.json()["keys"][0]["last_used_at"].is_u64(),
        "{}",
        listed.text
    );

    api.delete(&format!("/apps/alice/other/client-keys/{id}"), &r.alice)
        .await
        .expect(404);
    api.delete("/apps/alice/web/client-keys/NOT-AN-ID", &r.alice)
        .await
        .expect(400);
    api.delete(&format!("/apps/alice/web/client-keys/{id}"), &r.alice)
        .await
        .expect(200);
    api.bridge(Method::GET, "/bridge/apps/alice/web", Some(&key))
        .await
        .expect(401);

    // Deleting an app revokes its keys, so a new app of the same name starts clean.
    api.bridge(Method::GET, "/bridge/apps/alice/other", Some(&other_key))
        .await
        .expect(200);
    api.delete("/apps/alice/other", &r.alice).await.expect(200);
    api.create_app(&r.alice, "other", "bb-v1").await.expect(201);
    api.bridge(Method::GET, "/bridge/apps/alice/other", Some(&other_key))
        .await
        .expect(401);

    // So does deleting it by hand (or by a git pull): once its container is removed, a new
    // app of that name does not honour the old keys.
    let again = api.issue_key(&r.alice, "alice", "other").await;
    r.root.wait_running("alice", "other", T).await;
    r.root.remove_manifest("alice", "other");
    r.root.wait_gone("alice", "other", T).await;
    r.root.write_manifest("alice", "other", MINIMAL);
    r.root.wait_running("alice", "other", T).await;
    wait_until(T, "the old key to stop working", || async {
        api.bridge(Method::GET, "/bridge/apps/alice/other", Some(&again))
            .await
            .status
            == 401
    })
    .await;
}

#[tokio::test]
async fn failed_key_attempts_are_limited_per_address() {
    let r = ApiRoot::start("apilimit", &[]).await;
    let api = &r.api;
    r.root.write_manifest("alice", "web", MINIMAL);
    let key = api.issue_key(&r.alice, "alice", "web").await;
    let wrong = format!("{}A", &key[..key.len() - 1]);
    let wrong = if wrong == key {
        format!("{}B", &key[..key.len() - 1])
    } else {
        wrong
    };
    for _ in 0..10 {
        api.bridge(Method::GET, "/bridge/apps/alice/web", Some(&wrong))
            .await
            .expect(401);
    }
    let limited = api
        .bridge(Method::GET, "/bridge/apps/alice/web", Some(&wrong))
        .await;
    limited.expect(429);
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Locked out means locked out, for a good key or token from that address too; an
    // X-Forwarded-For from an untrusted peer changes nothing.
    api.bridge(Method::GET, "/bridge/apps/alice/web", Some(&key))
        .await
        .expect(429);
    api.get("/apps", &r.alice).await.expect(429);
    api.send(
        Method::GET,
        "/bridge/apps/alice/web",
        &[("x-app-key", &key), ("x-forwarded-for", "10.9.9.9")],
        None,
    )
    .await
    .expect(429);
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_count_per_client() {
    let r = ApiRoot::start("apiproxy", &[("trusted_proxies", "[\"127.0.0.1\"]")]).await;
    let api = &r.api;
    r.root.write_manifest("alice", "web", MINIMAL);
    let key = api.issue_key(&r.alice, "alice", "web").await;
    let bogus = format!("client.0000000000000000.{}", "A".repeat(43));
    let via = |client: &'static str, k: String| async move {
        api.send(
            Method::GET,
            "/bridge/apps/alice/web",
            &[("x-app-key", &k), ("x-forwarded-for", client)],
            None,
        )
        .await
        .status
    };
    for _ in 0..10 {
        assert_eq!(via("203.0.113.9", bogus.clone()).await, 401);
    }
    assert_eq!(
        via("203.0.113.9", key.clone()).await,
        429,
        "the guessing client is locked out"
    );
    assert_eq!(
        via("198.51.100.7", key.clone()).await,
        200,
        "other clients behind the proxy are not"
    );
    assert_eq!(
        via("203.0.113.9, 198.51.100.7", key.clone()).await,
        200,
        "the last entry (what the proxy saw) counts, not what the client claims"
    );
}

#[tokio::test]
async fn secrets_appear_only_where_they_are_issued() {
    let r = ApiRoot::start("apisecret", &[]).await;
    let api = &r.api;
    r.root.write_manifest("alice", "web", MINIMAL);
    r.root.wait_running("alice", "web", T).await;
    let issued = api
        .post("/apps/alice/web/client-keys", &r.alice, None)
        .await;
    let key = issued.json()["key"].as_str().unwrap().to_string();
    let user = api
        .post("/users", &r.admin, Some(json!({"name": "dave"})))
        .await;
    let dave = user.json()["token"].as_str().unwrap().to_string();
    // Use every secret, list everything.
    api.bridge(Method::GET, "/bridge/apps/alice/web", Some(&key))
        .await
        .expect(200);
    api.bridge(Method::POST, "/bridge/apps/alice/web/activate", Some(&key))
        .await
        .expect(200);
    api.get("/apps", &dave).await.expect(200);
    api.get("/apps/alice/web/client-keys", &r.alice)
        .await
        .expect(200);
    api.get("/users", &r.admin).await.expect(200);
    api.get("/audit?tail=1000", &r.admin).await.expect(200);
    api.send(Method::GET, "/metrics", &[], None)
        .await
        .expect(200);
    // A wrong secret presented for a real key id must not be echoed either.
    let last = if key.ends_with('x') { "y" } else { "x" };
    let wrong = format!("{}{last}", &key[..key.len() - 1]);
    api.bridge(Method::GET, "/bridge/apps/alice/web", Some(&wrong))
        .await;

    let secret = |full: &str| full.rsplit('.').next().unwrap().to_string();
    let secrets = [
        (secret(&key), 1usize),
        (secret(&dave), 1),
        (secret(&r.admin), 0),
        (secret(&r.alice), 0),
        (secret(&wrong), 0),
    ];
    let seen = api.seen.lock().unwrap().clone();
    for (s, issued_in) in &secrets {
        let n = seen.iter().filter(|body| body.contains(s.as_str())).count();
        assert_eq!(n, *issued_in, "a secret appeared in {n} responses");
    }
    let db = std::fs::read(r.root.path().join("berth.redb")).unwrap();
    let log = r.serve.log();
    for (s, _) in &secrets {
        assert!(
            !db.windows(s.len()).any(|w| w == s.as_bytes()),
            "a secret is in berth.redb"
        );
        assert!(!log.contains(s.as_str()), "a secret is in the log");
    }
}

#[tokio::test]
async fn users_and_status_go_through_the_socket_or_the_database() {
    let root = TestRoot::new("apicli").await;
    // No daemon: the database directly.
    let admin = add_user(&root, "root", true).await;
    assert!(
        admin.starts_with("berth.root."),
        "token alone on the last line: {admin}"
    );
    root.berth(&["users", "add", "root"])
        .await
        .expect_code(1)
        .expect_contains("already exists");
    root.berth(&["users", "add", "Bad-Name"])
        .await
        .expect_code(1)
        .expect_contains("invalid userid");
    root.write_manifest("alice", "web", MINIMAL);

    let mut serve = Serve::start(&root);
    let api = crate::support::Api::new(serve.api_base());
    root.wait_running("alice", "web", T).await;
    // With serve holding the database, these can only work through the socket.
    let alice = add_user(&root, "alice", false).await;
    api.get("/apps", &alice).await.expect(200);
    let list = root.berth(&["users", "list"]).await;
    list.expect_code(0)
        .expect_contains("alice")
        .expect_contains("admin");
    assert!(!list.stdout.contains(alice.rsplit('.').next().unwrap()));
    wait_until(T, "berth status to show alice/web running", || async {
        let st = root.berth(&["status"]).await;
        st.code == Some(0)
            && st
                .stdout
                .lines()
                .any(|l| phase_of(l, "alice/web") == Some("running"))
    })
    .await;
    root.berth(&["users", "remove", "alice"])
        .await
        .expect_code(0);
    api.get("/apps", &alice).await.expect(401);
    root.berth(&["users", "remove", "alice"])
        .await
        .expect_code(1)
        .expect_contains("no user");
    let socket = root.path().join("berth.redb.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the socket is for its owner only");

    serve.stop(Duration::from_secs(10));
    assert!(!socket.exists(), "serve removes its socket on exit");
    // No daemon again: the last saved status.
    let st = root.berth(&["status"]).await;
    st.expect_code(0).expect_contains("not running");
    assert!(
        st.stdout
            .lines()
            .any(|l| phase_of(l, "alice/web") == Some("running")),
        "{st}"
    );
}

#[tokio::test]
async fn serve_refuses_a_database_it_cannot_read() {
    let root = TestRoot::new("apidb").await;
    let db = root.path().join("berth.redb");
    std::fs::write(&db, "not a database\n".repeat(200)).unwrap();
    let mut serve = Serve::start(&root);
    assert_eq!(serve.wait_exit(T), Some(2));
    assert!(
        serve.log().contains("berth.redb") && serve.log().contains("not a berth database"),
        "{}",
        serve.log()
    );

    std::fs::remove_file(&db).unwrap();
    {
        let d = redb::Database::create(&db).unwrap();
        let txn = d.begin_write().unwrap();
        let meta: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("meta");
        txn.open_table(meta)
            .unwrap()
            .insert("schema_version", "99")
            .unwrap();
        txn.commit().unwrap();
    }
    let mut serve = Serve::start(&root);
    assert_eq!(serve.wait_exit(T), Some(2));
    assert!(serve.log().contains("schema version 99"), "{}", serve.log());
    root.berth(&["users", "list"])
        .await
        .expect_code(2)
        .expect_contains("schema version 99");
}

/// The PHASE column of `berth status` for `app`.
fn phase_of<'a>(line: &'a str, app: &str) -> Option<&'a str> {
    let mut cols = line.split_whitespace();
    (cols.next() == Some(app)).then(|| cols.next()).flatten()
}
