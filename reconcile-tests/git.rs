//! Git mode against a local bare repository as the remote: pulls on the interval and on a
//! signed webhook, broken and mass-deleting pushes, a force-push, a remote that is gone, and
//! API writes that become commits in the clone and the remote.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::support::git::{git, GitRoot};
use crate::support::{wait_until, MINIMAL};

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_pushed_app_runs_within_the_interval() {
    let g = GitRoot::start("gitpoll", "2s", |r| {
        r.write("alice", "first", MINIMAL);
        r.push("first app");
    })
    .await;
    g.root.wait_running("alice", "first", T).await;
    assert!(
        g.root.path().join("state/.git").is_dir(),
        "state/ is a clone"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    g.remote.write("alice", "second", MINIMAL);
    let commit = g.remote.push("second app");
    let t = Instant::now();
    g.root
        .wait_running("alice", "second", Duration::from_secs(12))
        .await;
    let took = t.elapsed();
    println!("git mode: push -> container running in {took:?} (interval 2s)");
    assert!(took < Duration::from_secs(2 + 5), "took {took:?}");
    // Its revision names the commit.
    let revs = g
        .api
        .get("/apps/alice/second/revisions", &g.alice)
        .await
        .json();
    wait_until(T, "the pulled revision", || async {
        let revs = g
            .api
            .get("/apps/alice/second/revisions", &g.alice)
            .await
            .json();
        revs["revisions"][0]["source"] == format!("git:{}", &commit[..12])
    })
    .await;
    let _ = revs;
    let st = g.git_status().await;
    assert_eq!(st["head"], commit.as_str(), "{st}");
    assert_eq!(st["diverged"], false);
}

#[tokio::test]
async fn a_signed_webhook_pulls_at_once_and_a_bad_one_is_refused() {
    let g = GitRoot::start("githook", "1h", |_| {}).await;
    // The startup sync must be over, or it would pull the push below without any webhook.
    wait_until(T, "the startup sync", || async {
        g.git_status().await["last_sync_at"].is_u64()
    })
    .await;
    g.remote.write("alice", "web", MINIMAL);
    let unsigned_push = g.remote.push("web");
    // Unsigned or wrongly signed: 401, and nothing is pulled.
    let unsigned = g
        .api
        .send(
            Method::POST,
            "/hooks/git",
            &[],
            Some(("application/json", b"{}".to_vec())),
        )
        .await;
    unsigned.expect(401);
    let forged = g
        .api
        .send(
            Method::POST,
            "/hooks/git",
            &[(
                "x-hub-signature-256",
                "sha256=0000000000000000000000000000000000000000000000000000000000000000",
            )],
            Some(("application/json", b"{}".to_vec())),
        )
        .await;
    forged.expect(401);
    // Another commit on top: the signed webhook's pull below moves the checkout straight to
    // it, so a checkout that ever stood at the first commit was pulled by a refused webhook.
    g.remote.write("alice", "later", MINIMAL);
    let signed_push = g.remote.push("later");

    let t = Instant::now();
    assert_eq!(g.webhook().await, 202);
    g.root
        .wait_running("alice", "web", Duration::from_secs(10))
        .await;
    let took = t.elapsed();
    g.root.wait_running("alice", "later", T).await;
    let clone = g.root.path().join("state");
    let checkouts = git(&clone, &["reflog", "--format=%H", "HEAD"]);
    assert!(checkouts.contains(&signed_push), "{checkouts}");
    assert!(
        !checkouts.contains(&unsigned_push),
        "a refused webhook pulled: the checkout stood at {unsigned_push}\n{checkouts}"
    );
    // `interval` is an hour: only the webhook can have pulled. How fast is printed, not held
    // to a figure (a loaded machine is slower).
    println!("git mode: signed webhook -> container running in {took:?}");
    let audit = g.api.get("/audit?tail=5", &g.admin).await.text;
    assert!(audit.contains("\"actor\":\"webhook\""), "{audit}");
}

#[tokio::test]
async fn a_broken_push_freezes_one_app_and_a_mass_deletion_is_held() {
    let apps = ["a1", "a2", "a3", "a4"];
    let g = GitRoot::start("gitbad", "1h", |r| {
        for a in apps {
            r.write("alice", a, MINIMAL);
        }
        r.push("four apps");
    })
    .await;
    for a in apps {
        g.root.wait_running("alice", a, T).await;
    }
    let a1 = g.root.id("alice", "a1").await;
    let a2 = g.root.id("alice", "a2").await;

    g.remote.write("alice", "a1", "template = [\n");
    g.remote
        .write("alice", "a2", "template = \"bb-v1\"\n[env]\nX = \"1\"\n");
    g.remote.push("break a1, change a2");
    assert_eq!(g.webhook().await, 202);
    wait_until(T, "a2 to be recreated from the push", || async {
        g.root.running("alice", "a2").await && g.root.id("alice", "a2").await != a2
    })
    .await;
    wait_until(T, "a1 to be frozen", || async {
        g.api.get("/apps/alice/a1", &g.alice).await.json()["phase"] == "frozen"
    })
    .await;
    assert_eq!(
        g.root.id("alice", "a1").await,
        a1,
        "the frozen app keeps its container"
    );
    assert!(g.root.running("alice", "a1").await);

    for a in apps {
        g.remote.remove("alice", a);
    }
    g.remote.push("delete everything");
    assert_eq!(g.webhook().await, 202);
    wait_until(T, "the guard to hold the removal", || async {
        let apps = g.api.get("/apps", &g.admin).await.text;
        apps.matches("prune-blocked").count() >= 3
    })
    .await;
    // A whole pass asked for through the daemon after the hold: the guard still holds.
    g.root.berth(&["apply"]).await.expect_contains("prune");
    for a in apps {
        assert!(
            g.root.container("alice", a).await.is_some(),
            "{a} was removed"
        );
    }
}

#[tokio::test]
async fn a_force_push_or_a_lost_remote_is_reported_and_the_apps_stay() {
    let g = GitRoot::start("gitforce", "1h", |r| {
        r.write("alice", "a1", MINIMAL);
        r.push("a1");
    })
    .await;
    g.root.wait_running("alice", "a1", T).await;
    g.remote.write("alice", "a2", MINIMAL);
    let b = g.remote.push("a2");
    assert_eq!(g.webhook().await, 202);
    g.root.wait_running("alice", "a2", T).await;

    // Rewrite history: drop the a2 commit, add another one, force-push.
    git(&g.remote.dev, &["reset", "--quiet", "--hard", "HEAD~1"]);
    g.remote.write("alice", "a3", MINIMAL);
    git(&g.remote.dev, &["add", "-A"]);
    git(&g.remote.dev, &["commit", "--quiet", "-m", "rewritten"]);
    git(
        &g.remote.dev,
        &["push", "--quiet", "--force", "origin", "main"],
    );
    assert_eq!(g.webhook().await, 202);
    wait_until(T, "the divergence to be reported", || async {
        g.git_status().await["diverged"] == true
    })
    .await;
    let st = g.git_status().await;
    assert_eq!(st["last_sync"], "diverged");
    assert!(
        st["last_error"].as_str().unwrap().contains("rewritten"),
        "{st}"
    );
    assert_eq!(
        st["head"],
        b.as_str(),
        "the checkout stays at the last good commit"
    );
    let metrics = g.api.send(Method::GET, "/metrics", &[], None).await.text;
    assert!(metrics.contains("berth_git_diverged 1"), "{metrics}");
    assert!(
        metrics.contains("berth_git_syncs_total{result=\"diverged\"}"),
        "{metrics}"
    );
    // A whole pass asked for through the daemon after the divergence: a3 still not run.
    g.root.berth(&["apply"]).await.expect_code(0);
    assert!(g.root.running("alice", "a1").await && g.root.running("alice", "a2").await);
    assert!(
        g.root.container("alice", "a3").await.is_none(),
        "nothing of the rewritten history runs"
    );
    // An API write while diverged is committed locally and not pushed: neither side is lost.
    g.api
        .create_app(&g.alice, "local", "bb-v1")
        .await
        .expect(201);
    g.root.wait_running("alice", "local", T).await;
    let clone = g.root.path().join("state");
    assert!(git(&clone, &["log", "-1", "--format=%s"]).contains("create alice/local"));
    assert!(
        !g.remote.log().contains("alice/local"),
        "{}",
        g.remote.log()
    );
    assert!(g.remote.log().contains("rewritten"));
    assert_eq!(g.git_status().await["diverged"], true);

    // The remote disappears: the fetch fails, is reported, and nothing changes.
    std::fs::rename(&g.remote.bare, g.root.path().join("remote-moved.git")).unwrap();
    assert_eq!(g.webhook().await, 202);
    wait_until(T, "the failed fetch to be reported", || async {
        g.git_status().await["last_sync"] == "error"
    })
    .await;
    assert!(g.git_status().await["last_error"]
        .as_str()
        .unwrap()
        .contains("fetch"));
    assert!(g.root.running("alice", "a1").await && g.root.running("alice", "a2").await);
    let status = g.root.berth(&["status"]).await;
    status.expect_code(0).expect_contains("git: error");
}

#[tokio::test]
async fn api_writes_become_commits_in_the_clone_and_the_remote() {
    let g = GitRoot::start("gitapi", "1h", |_| {}).await;
    g.api.create_app(&g.alice, "web", "bb-v1").await.expect(201);
    g.root.wait_running("alice", "web", T).await;
    g.api
        .post("/apps/alice/web/stop", &g.alice, None)
        .await
        .expect(200);
    let clone = g.root.path().join("state");
    let local = git(&clone, &["log", "--format=%an|%s", "-2"]);
    assert_eq!(
        local.lines().collect::<Vec<_>>(),
        [
            "alice|berth api: stop alice/web (by alice)",
            "alice|berth api: create alice/web (by alice)"
        ],
        "{local}"
    );
    wait_until(T, "berth to push its commits", || async {
        g.remote
            .log()
            .starts_with("alice|berth api: stop alice/web (by alice)\nalice|berth api: create")
    })
    .await;
    assert_eq!(
        git(&clone, &["status", "--porcelain"]),
        "",
        "the clone is clean"
    );

    // A developer's push on top of berth's commits is followed as usual.
    git(&g.remote.dev, &["pull", "--quiet", "origin", "main"]);
    g.remote.write(
        "alice",
        "web",
        "template = \"bb-v1\"\nstate = \"running\"\n",
    );
    let pushed = g.remote.push("start web again");
    assert_eq!(g.webhook().await, 202);
    wait_until(T, "berth to pull the developer's commit", || async {
        g.git_status().await["head"] == pushed.as_str()
    })
    .await;
    g.root.wait_running("alice", "web", T).await;
    // A rollback is a commit too: roll back to the oldest kept version that differs from now.
    let current = std::fs::read_to_string(clone.join("apps/alice/web.toml")).unwrap();
    let revs = g
        .api
        .get("/apps/alice/web/revisions", &g.alice)
        .await
        .json();
    let target = revs["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["content"].as_str() != Some(current.as_str()))
        .unwrap_or_else(|| panic!("no earlier version to roll back to: {revs}"))["revision"]
        .as_u64()
        .unwrap();
    g.api
        .post(
            "/apps/alice/web/rollback",
            &g.alice,
            Some(json!({"revision": target})),
        )
        .await
        .expect(200);
    let want = format!("alice|berth api: roll back to revision {target} of alice/web");
    wait_until(T, "the rollback commit to reach the remote", || async {
        g.remote.log().starts_with(&want)
    })
    .await;
    g.api.delete("/apps/alice/web", &g.alice).await.expect(200);
    g.root.wait_gone("alice", "web", T).await;
    wait_until(T, "the delete commit to reach the remote", || async {
        g.remote
            .log()
            .starts_with("alice|berth api: delete alice/web")
    })
    .await;
}

#[tokio::test]
async fn a_force_push_that_only_rewinds_is_not_undone() {
    let g = GitRoot::start("gitrewind", "1h", |r| {
        r.write("alice", "a1", MINIMAL);
        r.push("a1");
    })
    .await;
    g.root.wait_running("alice", "a1", T).await;
    g.remote.write("alice", "bad", MINIMAL);
    let bad = g.remote.push("a bad commit");
    assert_eq!(g.webhook().await, 202);
    g.root.wait_running("alice", "bad", T).await;

    // Drop the bad commit by rewinding the branch: the remote is now behind berth's checkout.
    git(&g.remote.dev, &["reset", "--quiet", "--hard", "HEAD~1"]);
    git(
        &g.remote.dev,
        &["push", "--quiet", "--force", "origin", "main"],
    );
    let rewound = git(&g.remote.dev, &["rev-parse", "HEAD"]);
    // Someone fetches in state/ first: the remote-tracking ref already shows the rewound tip,
    // and berth must still see the rewrite.
    let clone = g.root.path().join("state");
    git(&clone, &["fetch", "--quiet", "origin"]);
    assert_eq!(g.webhook().await, 202);
    wait_until(T, "the rewrite to be reported", || async {
        g.git_status().await["diverged"] == true
    })
    .await;
    assert!(g.git_status().await["last_error"]
        .as_str()
        .unwrap()
        .contains("rewritten"));
    // berth must not push the dropped commit back, not now (the sync that reported the
    // rewrite has ended: it pushes before it reports) and not on the next sync.
    assert_eq!(git(&g.remote.bare, &["rev-parse", "main"]), rewound);
    assert_eq!(g.git_status().await["head"], bad.as_str());
    let before = syncs(&g).await;
    assert_eq!(g.webhook().await, 202);
    wait_until(T, "the next sync to end", || async {
        syncs(&g).await > before
    })
    .await;
    assert_eq!(git(&g.remote.bare, &["rev-parse", "main"]), rewound);
    assert_eq!(g.git_status().await["diverged"], true);
    assert!(
        g.root.running("alice", "bad").await,
        "the last good checkout keeps running"
    );

    // A person resolves it by resetting state/ to the remote: berth follows again.
    git(&clone, &["reset", "--quiet", "--hard", "origin/main"]);
    assert_eq!(g.webhook().await, 202);
    wait_until(T, "the resolution to be seen", || async {
        g.git_status().await["diverged"] == false
    })
    .await;
    g.root.wait_gone("alice", "bad", T).await;
    assert!(g.root.running("alice", "a1").await);
}

/// Syncs berth has ended, whatever their result (`berth_git_syncs_total`).
async fn syncs(g: &GitRoot) -> u64 {
    let metrics = g.api.send(Method::GET, "/metrics", &[], None).await.text;
    let counts = metrics
        .lines()
        .filter(|l| l.starts_with("berth_git_syncs_total{"));
    counts
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
