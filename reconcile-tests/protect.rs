//! Protection for destructive calls: purge and releasing a held mass removal answer 202 with a
//! one-time confirm token first; purge drops exactly that app's workspace.

use std::time::Duration;

use crate::support::api::ApiRoot;
use crate::support::wait_until;

const T: Duration = Duration::from_secs(30);

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
        api.create_app(alice, app, "bb-v1").await.expect(201);
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
    api.create_app(alice, "ghost", "bb-v1").await.expect(201);
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
    // A whole pass asked for through the daemon runs after the question: still nothing gone.
    r.root.berth(&["apply"]).await.expect_code(0);
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
    .expect(404);
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
    // All five at once (one rename of the user's directory): removed one by one, a pass
    // under load may see the first removal alone, which is no mass removal.
    let away = r.root.path().join("alice-away");
    std::fs::rename(r.root.path().join("state/apps/alice"), away).unwrap();
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
    // A whole pass runs after the question (the guard still holds: apply exits 1).
    r.root.berth(&["apply"]).await.expect_contains("prune");
    for app in apps {
        assert!(r.root.running("alice", app).await, "asking removed {app}");
    }
    // The guard now holds one more app than the warning listed: the token is refused.
    r.root
        .write_manifest("alice", "a6", crate::support::MINIMAL);
    r.root.wait_running("alice", "a6", T).await;
    r.root.remove_manifest("alice", "a6");
    wait_until(T, "a6 to be held too", || async {
        api.get("/apps", &r.admin)
            .await
            .text
            .matches("prune-blocked")
            .count()
            == apps.len() + 1
    })
    .await;
    let token = asked.json()["confirm"].as_str().unwrap().to_string();
    let stale = api
        .post(&format!("/prune/release?confirm={token}"), &r.admin, None)
        .await;
    stale.expect(409);
    assert!(r.root.running("alice", "a6").await);
    let asked = api.post("/prune/release", &r.admin, None).await;
    asked.expect(202);
    assert_eq!(
        asked.json()["apps"].as_array().unwrap().len(),
        apps.len() + 1
    );
    let token = asked.json()["confirm"].as_str().unwrap().to_string();
    api.post(&format!("/prune/release?confirm={token}"), &r.admin, None)
        .await
        .expect(200);
    for app in apps {
        r.root.wait_gone("alice", app, T).await;
    }
    r.root.wait_gone("alice", "a6", T).await;
}

#[tokio::test]
async fn deletes_asked_through_the_api_are_carried_out_not_held_by_the_guard() {
    let r = ApiRoot::start("apidelete4", &[]).await;
    let api = &r.api;
    let apps = ["d1", "d2", "d3", "d4"];
    for app in apps {
        r.root.write_manifest("alice", app, crate::support::MINIMAL);
    }
    for app in apps {
        r.root.wait_running("alice", app, T).await;
    }
    // Four of four running apps: past the guard's rule were the files emptied by hand.
    for app in apps {
        api.delete(&format!("/apps/alice/{app}"), &r.alice)
            .await
            .expect(200);
    }
    for app in apps {
        r.root.wait_gone("alice", app, T).await;
    }
    let listed = api.get("/apps", &r.admin).await.text;
    assert!(!listed.contains("prune-blocked"), "{listed}");
}
