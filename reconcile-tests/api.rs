//! The HTTP API against a running `berth serve` on a real engine: the app life cycle,
//! manifest replacement with etags, hostile input, quotas, logs, metrics and the audit log.

use std::time::Duration;

use reqwest::Method;

use crate::support::api::ApiRoot;
use crate::support::{wait_until, BB_TEMPLATE};

const T: Duration = Duration::from_secs(30);

/// The busybox test template with a container that says something, for the logs endpoint.
fn echo_template() -> String {
    let echo =
        r#"command = ["sh", "-c", "echo hello-from-the-app; echo line-two; exec sleep 3600"]"#;
    let out = BB_TEMPLATE.replace(r#"command = ["sleep", "3600"]"#, echo);
    assert_ne!(out, BB_TEMPLATE, "BB_TEMPLATE's command changed");
    out
}

#[tokio::test]
async fn the_whole_app_life_cycle_goes_through_the_api() {
    let r = ApiRoot::start("apilife", &[]).await;
    r.root.write_template("echo-v1", &echo_template());
    let (api, alice) = (&r.api, r.alice.as_str());

    let created = api.create_app(alice, "web", "echo-v1").await;
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
        "berth_reconcile_pass_triggers_total{trigger=\"start\"} 1",
        "berth_reconcile_pass_triggers_total{trigger=\"api_write\"} ",
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
    api.create_app(alice, "web", "bb-v1").await.expect(201);
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
    api.create_app(&r.alice, "a1", "bb-v1").await.expect(201);
    api.create_app(&r.alice, "a2", "bb-v1").await.expect(201);
    let third = api.create_app(&r.alice, "a3", "bb-v1").await;
    third.expect(409);
    assert_eq!(third.code(), "quota_exceeded");
    assert!(
        third.text.contains("max_apps_per_user = 2"),
        "{}",
        third.text
    );
    api.create_app(&r.bob, "b1", "bb-v1").await.expect(201);
    let total = api.create_app(&r.bob, "b2", "bb-v1").await;
    total.expect(409);
    assert!(total.text.contains("max_total_apps = 3"), "{}", total.text);
    assert!(!r.root.manifest_path("alice", "a3").exists());
    assert!(!r.root.manifest_path("bob", "b2").exists());
    // Creating an existing app is a conflict too, and leaves it as it was.
    let again = api.create_app(&r.alice, "a1", "bb-v1").await;
    again.expect(409);
    assert_eq!(again.code(), "conflict");
}

#[tokio::test]
async fn metrics_pass_promtool_and_openmetrics_is_served_to_who_asks() {
    let t = ApiRoot::start("promtool", &[]).await;
    t.api.create_app(&t.alice, "web", "bb-v1").await.expect(201);
    t.root.wait_running("alice", "web", T).await;
    let text = t.api.get("/metrics", "").await.text;
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package, installed by scripts/ensure-tools.sh)");
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
    assert!(
        text.contains("# TYPE berth_reconcile_passes_total counter"),
        "{text}"
    );
    let om = t
        .api
        .send(
            reqwest::Method::GET,
            "/metrics",
            &[("accept", "application/openmetrics-text")],
            None,
        )
        .await;
    assert!(om.text.trim_end().ends_with("# EOF"), "{}", om.text);
    let ct = om
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
}

#[tokio::test]
async fn the_openapi_document_is_served_without_a_token() {
    let r = ApiRoot::start("apiopenapi", &[]).await;
    let resp = reqwest::get(format!("{}/openapi.json", r.api.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let doc: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/apps/{userid}/{appname}/manifest"]["put"]["requestBody"].is_object());
    assert_eq!(
        doc["paths"]["/bridge/apps/{userid}/{appname}"]["get"]["security"][0]["appKey"],
        serde_json::json!([])
    );
}
