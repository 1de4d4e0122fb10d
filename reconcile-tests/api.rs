//! The HTTP API against a running `berth serve` on a real engine: the app life cycle,
//! manifest replacement with etags, hostile input, quotas, logs, metrics and the audit log.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::api::ApiRoot;
use crate::support::wait_until;

const T: Duration = Duration::from_secs(30);

/// A template whose container says something, for the logs endpoint.
const ECHO_TEMPLATE: &str = r#"image = "berth-test-busybox:1"
command = ["sh", "-c", "echo hello-from-the-app; echo line-two; exec sleep 3600"]
workdir = "/"
port = 8080

[defaults]
memory = "64m"
cpus = 0.25
"#;

#[tokio::test]
async fn the_whole_app_life_cycle_goes_through_the_api() {
    let r = ApiRoot::start("apilife", &[]).await;
    r.root.write_template("echo-v1", ECHO_TEMPLATE);
    let (api, alice) = (&r.api, r.alice.as_str());

    let created = api
        .post(
            "/apps",
            alice,
            Some(json!({"appname": "web", "templateId": "echo-v1"})),
        )
        .await;
    created.expect(201);
    assert_eq!(created.json()["userid"], "alice");
    let manifest = std::fs::read_to_string(r.root.manifest_path("alice", "web")).unwrap();
    assert!(manifest.contains("template = \"echo-v1\""), "{manifest}");
    r.root.wait_running("alice", "web", T).await;
    let first = r.root.id("alice", "web").await;

    // GET /apps shows phase and container state (the container list is cached for 5 s).
    wait_until(T, "GET /apps to show alice/web running", || async {
        let apps = api.get("/apps", alice).await.json();
        apps["apps"][0]["phase"] == "running" && apps["apps"][0]["container"] == "running"
    })
    .await;
    let one = api.get("/apps/alice/web", alice).await;
    one.expect(200);
    assert_eq!(one.json()["manifest"], manifest);
    assert_eq!(one.etag(), one.json()["etag"].as_str().unwrap());

    // Logs: the container's own output, bounded tail.
    wait_until(T, "logs to show the app's output", || async {
        let logs = api.get("/apps/alice/web/logs?tail=10", alice).await;
        logs.status == 200 && logs.text.contains("hello-from-the-app")
    })
    .await;
    let last = api.get("/apps/alice/web/logs?tail=1", alice).await;
    assert!(
        last.text.contains("line-two") && !last.text.contains("hello-from"),
        "{}",
        last.text
    );
    api.get("/apps/alice/web/logs?tail=0", alice)
        .await
        .expect(400);
    api.get("/apps/alice/web/logs?tail=99999999", alice)
        .await
        .expect(400);
    api.get("/apps/alice/web/logs?tail=abc", alice)
        .await
        .expect(400);

    api.post("/apps/alice/web/stop", alice, None)
        .await
        .expect(200);
    wait_until(T, "alice/web to stop", || async {
        !r.root.running("alice", "web").await
    })
    .await;
    assert_eq!(
        r.root.id("alice", "web").await,
        first,
        "stop keeps the container"
    );
    let m = std::fs::read_to_string(r.root.manifest_path("alice", "web")).unwrap();
    assert!(
        m.contains("# created through the berth API"),
        "edits keep comments: {m}"
    );

    api.post("/apps/alice/web/start", alice, None)
        .await
        .expect(200);
    r.root.wait_running("alice", "web", T).await;
    assert_eq!(
        r.root.id("alice", "web").await,
        first,
        "start keeps the container"
    );

    let deployed = api.post("/apps/alice/web/deploy", alice, None).await;
    deployed.expect(200);
    wait_until(T, "deploy to recreate alice/web", || async {
        r.root.running("alice", "web").await && r.root.id("alice", "web").await != first
    })
    .await;

    api.delete("/apps/alice/web", alice).await.expect(200);
    r.root.wait_gone("alice", "web", T).await;
    assert!(!r.root.manifest_path("alice", "web").exists());
    api.get("/apps/alice/web", alice).await.expect(404);
    api.delete("/apps/alice/web", alice).await.expect(404);

    // Every mutating call is in the audit log, with its caller and result.
    let audit = api.get("/audit?tail=50", &r.admin).await;
    audit.expect(200);
    let actions: Vec<String> = audit.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["status"]
            )
        })
        .collect();
    for want in [
        "alice POST /apps 201",
        "alice POST /apps/alice/web/stop 200",
        "alice POST /apps/alice/web/start 200",
        "alice POST /apps/alice/web/deploy 200",
        "alice DELETE /apps/alice/web 200",
        "alice DELETE /apps/alice/web 404",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "audit lacks {want:?}: {actions:#?}"
        );
    }
    api.get("/audit", alice).await.expect(403);
    // Anonymous calls are counted, not audited.
    let last_seq =
        || async { api.get("/audit?tail=1", &r.admin).await.json()["entries"][0]["seq"].as_u64() };
    let before = last_seq().await;
    api.send(Method::POST, "/apps/alice/web/stop", &[], None)
        .await
        .expect(401);
    assert_eq!(
        last_seq().await,
        before,
        "an unauthenticated call reached the audit log"
    );

    // Metrics count passes, actions and requests by route pattern.
    let metrics = api.send(Method::GET, "/metrics", &[], None).await;
    metrics.expect(200);
    for want in [
        "berth_reconcile_passes_total ",
        "berth_actions_total{kind=\"create\",result=\"ok\"} 1",
        "berth_actions_total{kind=\"recreate\",result=\"ok\"} 1",
        "berth_api_requests_total{method=\"POST\",route=\"/apps/{userid}/{appname}/stop\",status=\"200\"} 1",
        "berth_apps{phase=\"running\"} ",
    ] {
        assert!(metrics.text.contains(want), "metrics lack {want:?}\n{}", metrics.text);
    }
    api.send(Method::GET, "/healthz", &[], None)
        .await
        .expect(200);
}

#[tokio::test]
async fn put_manifest_validates_and_needs_a_fresh_etag() {
    let r = ApiRoot::start("apiput", &[]).await;
    let (api, alice) = (&r.api, r.alice.as_str());
    let path = "/apps/alice/web/manifest";
    api.post(
        "/apps",
        alice,
        Some(json!({"appname": "web", "templateId": "bb-v1"})),
    )
    .await
    .expect(201);
    r.root.wait_running("alice", "web", T).await;
    let id = r.root.id("alice", "web").await;
    let file = r.root.manifest_path("alice", "web");
    let etag = api.get("/apps/alice/web", alice).await.etag();
    let before = std::fs::read(&file).unwrap();

    // No If-Match: 428, nothing written.
    let auth = format!("Bearer {alice}");
    let none = api
        .send(
            Method::PUT,
            path,
            &[("authorization", &auth)],
            Some(("application/toml", b"template = \"bb-v1\"\n".to_vec())),
        )
        .await;
    none.expect(428);

    for (bad, code) in [
        ("template = \"bb-v1\"\nstate = \n", "invalid_manifest"),
        ("template = \"bb-v1\"\nbogus = 1\n", "invalid_manifest"),
        (
            "template = \"bb-v1\"\nstate = \"maybe\"\n",
            "invalid_manifest",
        ),
        ("template = \"nope-v1\"\n", "unknown_template"),
        ("", "invalid_manifest"),
    ] {
        let resp = api.put_manifest(path, alice, &etag, bad).await;
        resp.expect(422);
        assert_eq!(resp.code(), code, "{bad:?}: {}", resp.text);
        assert!(
            resp.text.contains("state/apps/alice/web.toml"),
            "{}",
            resp.text
        );
        assert_eq!(
            std::fs::read(&file).unwrap(),
            before,
            "{bad:?} must not touch the file"
        );
    }
    let syntax = api
        .put_manifest(path, alice, &etag, "template = \"bb-v1\"\nstate = \n")
        .await;
    assert!(
        syntax.text.contains("web.toml:2:"),
        "line and column: {}",
        syntax.text
    );
    let not_utf8 = api
        .send(
            Method::PUT,
            path,
            &[("authorization", &auth), ("if-match", &etag)],
            Some(("application/toml", vec![0xff, 0xfe, b'x'])),
        )
        .await;
    not_utf8.expect(422);
    api.put_manifest(path, alice, "0000", "template = \"bb-v1\"\n")
        .await
        .expect(412);
    assert_eq!(std::fs::read(&file).unwrap(), before);

    // Two concurrent writers with the same etag: exactly one wins, the file is the winner's.
    let texts: Vec<String> = (0..6)
        .map(|i| format!("template = \"bb-v1\"\n[env]\nWRITER = \"{i}\"\n"))
        .collect();
    let results = futures_util::future::join_all(
        texts
            .iter()
            .map(|t| api.put_manifest(path, alice, &etag, t)),
    )
    .await;
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == 200)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "statuses: {:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(results.iter().all(|r| r.status == 200 || r.status == 412));
    let winner = winners[0];
    assert_eq!(std::fs::read_to_string(&file).unwrap(), texts[winner]);
    assert_eq!(
        results[winner].etag(),
        api.get("/apps/alice/web", alice).await.etag()
    );

    // The winner's env change recreates the container.
    wait_until(T, "the PUT to recreate alice/web", || async {
        r.root.running("alice", "web").await && r.root.id("alice", "web").await != id
    })
    .await;
    // A broken file on disk: start/stop refuse with 422 and leave it alone.
    std::fs::write(&file, "template = [\n").unwrap();
    let stop = api.post("/apps/alice/web/stop", alice, None).await;
    stop.expect(422);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "template = [\n");
}

#[tokio::test]
async fn quotas_answer_409_naming_the_limit() {
    let r = ApiRoot::start(
        "apiquota",
        &[("max_apps_per_user", "2"), ("max_total_apps", "3")],
    )
    .await;
    let api = &r.api;
    let create = |token: &str, name: &str| {
        let token = token.to_string();
        let name = name.to_string();
        async move {
            api.post(
                "/apps",
                &token,
                Some(json!({"appname": name, "templateId": "bb-v1"})),
            )
            .await
        }
    };
    create(&r.alice, "a1").await.expect(201);
    create(&r.alice, "a2").await.expect(201);
    let third = create(&r.alice, "a3").await;
    third.expect(409);
    assert_eq!(third.code(), "quota_exceeded");
    assert!(
        third.text.contains("max_apps_per_user = 2"),
        "{}",
        third.text
    );
    create(&r.bob, "b1").await.expect(201);
    let total = create(&r.bob, "b2").await;
    total.expect(409);
    assert!(total.text.contains("max_total_apps = 3"), "{}", total.text);
    assert!(!r.root.manifest_path("alice", "a3").exists());
    assert!(!r.root.manifest_path("bob", "b2").exists());
    // Creating an existing app is a conflict too, and leaves it as it was.
    let again = create(&r.alice, "a1").await;
    again.expect(409);
    assert_eq!(again.code(), "conflict");
}

#[tokio::test]
async fn delete_with_purge_tells_the_hook_and_drops_only_that_workspace() {
    let r = ApiRoot::start("apipurge", &[]).await;
    let (api, alice) = (&r.api, r.alice.as_str());
    let record = r.root.path().join("purges.log");
    r.root.write_hook(
        "bb-v1",
        "pre-delete",
        &format!(
            "#!/bin/sh\necho \"$BERTH_APPNAME purge=$BERTH_PURGE\" >> {}\n",
            record.display()
        ),
    );
    let workspace = |app: &str| {
        let dir = r.root.app_dir("alice", app);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("server.js"), "// the user's code\n").unwrap();
        dir
    };
    for app in ["keep", "drop"] {
        api.post(
            "/apps",
            alice,
            Some(json!({"appname": app, "templateId": "bb-v1"})),
        )
        .await
        .expect(201);
        r.root.wait_running("alice", app, T).await;
    }
    let (keep, drop) = (workspace("keep"), workspace("drop"));
    api.delete("/apps/alice/keep", alice).await.expect(200);
    let purged = purge(api, alice, "drop").await;
    assert_eq!(purged["purge"], true);
    r.root.wait_gone("alice", "keep", T).await;
    r.root.wait_gone("alice", "drop", T).await;
    wait_until(T, "the purged workspace to go", || async { !drop.exists() }).await;
    assert!(
        keep.join("server.js").exists(),
        "a plain delete keeps the workspace"
    );
    let audit = api.get("/audit?tail=10", &r.admin).await;
    assert!(
        audit.text.contains("DELETE /apps/alice/drop?purge=true"),
        "{}",
        audit.text
    );
    let log = std::fs::read_to_string(&record).unwrap_or_default();
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort();
    assert_eq!(lines, ["drop purge=1", "keep purge=0"], "{log}");

    // An app that never had a container (its manifest is broken) is purged all the same.
    r.root.write_manifest("alice", "broken", "template = [\n");
    let broken = workspace("broken");
    purge(api, alice, "broken").await;
    wait_until(T, "the never-started app's workspace to go", || async {
        !broken.exists()
    })
    .await;

    // A purge that failed (no such app) is not remembered for a later app of that name.
    api.delete("/apps/alice/ghost?purge=true", alice)
        .await
        .expect(404);
    api.post(
        "/apps",
        alice,
        Some(json!({"appname": "ghost", "templateId": "bb-v1"})),
    )
    .await
    .expect(201);
    r.root.wait_running("alice", "ghost", T).await;
    let ghost = workspace("ghost");
    api.delete("/apps/alice/ghost", alice).await.expect(200);
    r.root.wait_gone("alice", "ghost", T).await;
    let log = std::fs::read_to_string(&record).unwrap();
    assert!(log.lines().any(|l| l == "ghost purge=0"), "{log}");
    assert!(ghost.join("server.js").exists());
}

/// A confirmed purge of alice's `app`: the 202 with its token, then the call with it.
async fn purge(api: &crate::support::Api, token: &str, app: &str) -> serde_json::Value {
    let asked = api
        .delete(&format!("/apps/alice/{app}?purge=true"), token)
        .await;
    asked.expect(202);
    let confirm = asked.json()["confirm"].as_str().unwrap().to_string();
    let done = api
        .delete(
            &format!("/apps/alice/{app}?purge=true&confirm={confirm}"),
            token,
        )
        .await;
    done.expect(200);
    done.json()
}

#[tokio::test]
async fn destructive_calls_need_a_fresh_one_time_confirm_token() {
    let r = ApiRoot::start("apiconfirm", &[("confirm_ttl", "\"2s\"")]).await;
    let (api, alice) = (&r.api, r.alice.as_str());
    r.root
        .write_manifest("alice", "web", crate::support::MINIMAL);
    r.root.wait_running("alice", "web", T).await;
    let workspace = r.root.app_dir("alice", "web");
    std::fs::create_dir_all(&workspace).unwrap();

    // Asking changes nothing.
    let asked = api.delete("/apps/alice/web?purge=true", alice).await;
    asked.expect(202);
    assert!(asked.json()["warning"]
        .as_str()
        .unwrap()
        .contains("cannot be undone"));
    let token = asked.json()["confirm"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(r.root.manifest_path("alice", "web").exists() && workspace.exists());
    assert!(r.root.running("alice", "web").await);

    // Another caller, another target, a made-up token: refused, and the token is spent.
    let by_admin = api
        .delete(
            &format!("/apps/alice/web?purge=true&confirm={token}"),
            &r.admin,
        )
        .await;
    by_admin.expect(409);
    assert_eq!(by_admin.code(), "confirm_refused");
    api.delete(
        &format!("/apps/alice/web?purge=true&confirm={token}"),
        alice,
    )
    .await
    .expect(409);
    api.delete("/apps/alice/web?purge=true&confirm=0123", alice)
        .await
        .expect(409);

    // Expired.
    let token = api.delete("/apps/alice/web?purge=true", alice).await.json()["confirm"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let late = api
        .delete(
            &format!("/apps/alice/web?purge=true&confirm={token}"),
            alice,
        )
        .await;
    late.expect(409);
    assert!(late.text.contains("expired"), "{}", late.text);
    assert!(r.root.manifest_path("alice", "web").exists() && workspace.exists());

    // Fresh and used once: the app and its workspace go; the same token again is refused.
    let token = api.delete("/apps/alice/web?purge=true", alice).await.json()["confirm"]
        .as_str()
        .unwrap()
        .to_string();
    api.delete(
        &format!("/apps/alice/web?purge=true&confirm={token}"),
        alice,
    )
    .await
    .expect(200);
    r.root.wait_gone("alice", "web", T).await;
    wait_until(T, "the workspace to go", || async { !workspace.exists() }).await;
    api.delete(
        &format!("/apps/alice/web?purge=true&confirm={token}"),
        alice,
    )
    .await
    .expect(409);
    let audit = api.get("/audit?tail=20", &r.admin).await.text;
    assert!(
        audit.contains("\"status\":202") && audit.contains("\"status\":409"),
        "every step is audited: {audit}"
    );
}

#[tokio::test]
async fn a_held_mass_removal_is_released_by_a_confirmed_call() {
    let r = ApiRoot::start("apirelease", &[]).await;
    let api = &r.api;
    let apps = ["a1", "a2", "a3", "a4", "a5"];
    for app in apps {
        r.root.write_manifest("alice", app, crate::support::MINIMAL);
    }
    for app in apps {
        r.root.wait_running("alice", app, T).await;
    }
    api.post("/prune/release", &r.admin, None).await.expect(409);
    for app in apps {
        r.root.remove_manifest("alice", app);
    }
    wait_until(T, "the guard to hold the removal", || async {
        api.get("/apps", &r.admin)
            .await
            .text
            .matches("prune-blocked")
            .count()
            == apps.len()
    })
    .await;
    api.post("/prune/release", &r.alice, None).await.expect(403);
    let asked = api.post("/prune/release", &r.admin, None).await;
    asked.expect(202);
    assert_eq!(asked.json()["apps"].as_array().unwrap().len(), apps.len());
    tokio::time::sleep(Duration::from_millis(500)).await;
    for app in apps {
        assert!(r.root.running("alice", app).await, "asking removed {app}");
    }
    let token = asked.json()["confirm"].as_str().unwrap().to_string();
    api.post(&format!("/prune/release?confirm={token}"), &r.admin, None)
        .await
        .expect(200);
    for app in apps {
        r.root.wait_gone("alice", app, T).await;
    }
}
