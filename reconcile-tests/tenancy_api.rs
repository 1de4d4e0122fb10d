//! Tenancy through the API: client keys bound to their app's incarnation and capped per app,
//! per-user write limits, an audit log one user cannot flood others out of, even at the
//! per-user ceiling (and that never keeps a confirm token), manifest reads capped like the
//! scanner's, and the bearer scheme read case-insensitively.

use std::time::Duration;

use reqwest::Method;

use crate::support::api::ApiRoot;
use crate::support::{wait_until, MINIMAL};

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_client_key_never_outlives_its_app_even_a_frozen_one() {
    let r = ApiRoot::start("tenkeys", &[]).await;
    let api = &r.api;
    for (app, text) in [
        ("frozen", "template = \"bb-v1\"\nnot_a_key = 1\n"),
        ("web", MINIMAL),
    ] {
        r.root.write_manifest("alice", app, text);
        let path = format!("/bridge/apps/alice/{app}");
        let key = wait_for_key(&r, app).await;
        api.bridge(Method::GET, &path, Some(&key)).await.expect(200);
        r.root.remove_manifest("alice", app);
        wait_until(T, "the removed app's key to stop working", || async {
            api.bridge(Method::GET, &path, Some(&key)).await.status == 401
        })
        .await;
        r.root.write_manifest("alice", app, text);
        let fresh = wait_for_key(&r, app).await;
        api.bridge(Method::GET, &path, Some(&fresh))
            .await
            .expect(200);
        api.bridge(Method::GET, &path, Some(&key)).await.expect(401);
    }
}

#[tokio::test]
async fn a_key_dies_with_its_app_when_the_wall_clock_steps_back_an_hour() {
    let root = crate::support::TestRoot::new("tenclock").await;
    let alice = crate::support::api::add_user(&root, "alice", false).await;
    root.write_manifest("alice", "web", MINIMAL);
    let offset = root.path().join("clock-offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let (lib, file) = (crate::support::libfaketime(), offset.display().to_string());
    let env = [
        ("LD_PRELOAD", lib.as_str()),
        ("FAKETIME_TIMESTAMP_FILE", file.as_str()),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let mut serve = crate::support::Serve::start_env(&root, &env);
    let api = crate::support::api::Api::new(serve.api_base());
    root.wait_running("alice", "web", T).await;
    let old = api.issue_key(&alice, "alice", "web").await;
    std::fs::write(&offset, "-3600\n").unwrap();
    root.remove_manifest("alice", "web");
    wait_until(T, "the removed app's key to stop working", || async {
        api.bridge(Method::GET, "/bridge/apps/alice/web", Some(&old))
            .await
            .status
            == 401
    })
    .await;
    root.write_manifest("alice", "web", MINIMAL);
    root.wait_running("alice", "web", T).await;
    let new = api.issue_key(&alice, "alice", "web").await;
    api.bridge(Method::GET, "/bridge/apps/alice/web", Some(&new))
        .await
        .expect(200);
    api.bridge(Method::GET, "/bridge/apps/alice/web", Some(&old))
        .await
        .expect(401);
    // The step reached berth: its log goes back an hour.
    let stamps: Vec<std::time::SystemTime> = serve
        .log()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
        .collect();
    let first = stamps.first().copied().expect("timestamps in the log");
    let earliest = stamps.iter().min().copied().unwrap();
    let back = first.duration_since(earliest).unwrap_or_default();
    assert!(
        back >= Duration::from_secs(50 * 60),
        "the clock did not step back: {back:?}"
    );
}

/// A key for alice's `app` once the API sees its manifest.
async fn wait_for_key(r: &ApiRoot, app: &str) -> String {
    let path = format!("/apps/alice/{app}/client-keys");
    let deadline = std::time::Instant::now() + T;
    loop {
        let issued = r.api.post(&path, &r.alice, None).await;
        if issued.status == 201 {
            return issued.json()["key"].as_str().unwrap().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no key for {app}: {}",
            issued.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_app_has_at_most_max_client_keys_per_app() {
    let policy = "[policy]\nmax_client_keys_per_app = 2\napi_writes_per_minute = 1000\n";
    let r = ApiRoot::start_with("tenkeycap", &[], policy).await;
    let (api, alice) = (&r.api, r.alice.as_str());
    api.create_app(alice, "web", "bb-v1").await.expect(201);
    let first = api.post("/apps/alice/web/client-keys", alice, None).await;
    first.expect(201);
    api.issue_key(alice, "alice", "web").await;
    let third = api.post("/apps/alice/web/client-keys", alice, None).await;
    third.expect(409);
    assert_eq!(third.code(), "quota_exceeded");
    assert!(
        third.text.contains("max_client_keys_per_app = 2"),
        "{}",
        third.text
    );
    let id = first.json()["id"].as_str().unwrap().to_string();
    api.delete(&format!("/apps/alice/web/client-keys/{id}"), alice)
        .await
        .expect(200);
    api.issue_key(alice, "alice", "web").await;
}

#[tokio::test]
async fn writes_past_a_users_limit_are_429_and_slow_no_one_else() {
    let policy =
        "[policy]\napi_writes_per_minute = 5\n[policy.users.root]\napi_writes_per_minute = 0\n";
    let r = ApiRoot::start_with("tenrate", &[], policy).await;
    let api = &r.api;
    for (who, app) in [(&r.alice, "a"), (&r.bob, "b")] {
        api.create_app(who, app, "bb-v1").await.expect(201);
    }
    for _ in 0..4 {
        api.post("/apps/alice/a/stop", &r.alice, None)
            .await
            .expect(200);
    }
    let refused = api.post("/apps/alice/a/stop", &r.alice, None).await;
    refused.expect(429);
    assert_eq!(refused.code(), "rate_limited");
    let wait: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    api.get("/apps/alice/a", &r.alice).await.expect(200);
    api.post("/apps/bob/b/stop", &r.bob, None).await.expect(200);
    for _ in 0..20 {
        api.post("/apps/alice/a/start", &r.admin, None)
            .await
            .expect(200);
    }
    let audit = api.get("/audit?tail=1000", &r.admin).await;
    let alice_writes = audit.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "alice")
        .count();
    assert_eq!(
        alice_writes, 5,
        "refused writes are not audited:\n{}",
        audit.text
    );
}

#[tokio::test]
async fn an_audit_flood_by_one_user_leaves_everyone_elses_recent_entries() {
    let cap = [("audit_max_entries", "10")];
    let r = ApiRoot::start_with("tenaudit", &cap, "[policy]\napi_writes_per_minute = 1000\n").await;
    let api = &r.api;
    api.create_app(&r.alice, "web", "bb-v1").await.expect(201);
    let asked = api.delete("/apps/alice/web?purge=true", &r.alice).await;
    asked.expect(202);
    let token = asked.json()["confirm"].as_str().unwrap().to_string();
    let path = format!("/apps/alice/web?purge=true&confirm={token}");
    api.delete(&path, &r.alice).await.expect(200);
    api.create_app(&r.bob, "b", "bb-v1").await.expect(201);
    // Past bob's own ceiling (10 x audit_max_entries = 100), not just past the cap.
    let ceiling = 100;
    for _ in 0..ceiling + 30 {
        api.post("/apps/bob/b/stop", &r.bob, None).await.expect(200);
    }
    let audit = api.get("/audit?tail=1000", &r.admin).await;
    let entries = audit.json()["entries"].as_array().unwrap().clone();
    let bob: Vec<&serde_json::Value> = entries.iter().filter(|e| e["actor"] == "bob").collect();
    assert_eq!(bob.len(), ceiling, "bob is held at his ceiling");
    assert!(
        bob.iter().all(|e| e["action"] == "POST /apps/bob/b/stop"),
        "bob's oldest entry (his create) went first: {bob:?}"
    );
    let alice: Vec<String> = entries
        .iter()
        .filter(|e| e["actor"] == "alice")
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(alice.len(), 3, "{alice:?}");
    assert!(
        alice
            .iter()
            .any(|a| a.ends_with("purge=true&confirm=<redacted>")),
        "{alice:?}"
    );
    assert!(
        !audit.text.contains(&token),
        "the confirm token is in the audit log"
    );
}

#[tokio::test]
async fn manifest_reads_are_capped_and_refuse_hard_links_and_the_bearer_scheme_is_any_case() {
    let r = ApiRoot::start("tenread", &[]).await;
    let (api, alice) = (&r.api, r.alice.as_str());
    let big = r.root.manifest_path("alice", "big");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(200 << 20).unwrap();
    let resp = api.get("/apps/alice/big", alice).await;
    resp.expect(409);
    assert!(resp.text.contains("larger than 1 MiB"), "{}", resp.text);
    r.root.write_manifest("alice", "one", MINIMAL);
    std::fs::hard_link(
        r.root.manifest_path("alice", "one"),
        r.root.manifest_path("alice", "two"),
    )
    .unwrap();
    let linked = api.get("/apps/alice/one", alice).await;
    linked.expect(409);
    assert!(linked.text.contains("2 hard links"), "{}", linked.text);
    api.get("/apps", alice).await.expect(200);
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {alice}");
        let resp = api
            .send(Method::GET, "/apps", &[("authorization", &auth)], None)
            .await;
        resp.expect(200);
    }
}
