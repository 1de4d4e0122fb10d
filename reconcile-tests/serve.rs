//! `berth serve`, the long-running loop. Every root here has `resync = "1h"`, so whatever
//! happens within a test came from the file watcher or from Docker events, never from the
//! periodic resync: watcher latency, edits and deletions, template changes, crash restarts
//! with backoff, healing a hand-removed container, and a clean exit on SIGTERM.

use std::time::{Duration, Instant, SystemTime};

use crate::support::docker::{action_times, describe, docker_cli};
use crate::support::{wait_until, EventLog, Serve, TestRoot, BB_TEMPLATE, MINIMAL};

/// Time for serve's first pass on a loaded CI box.
const STARTUP: Duration = Duration::from_secs(30);

#[tokio::test]
async fn serve_reacts_to_a_manifest_write_without_waiting_for_resync() {
    let root = TestRoot::new("watch").await;
    root.write_manifest("alice", "first", MINIMAL);
    let mut serve = Serve::start(&root);
    root.wait_running("alice", "first", STARTUP).await;
    serve.assert_alive();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t = Instant::now();
    root.write_manifest("bob", "second", MINIMAL);
    // Resync is an hour: a container within 30 s can only come from the watcher's wake-up.
    wait_until(
        Duration::from_secs(30),
        "bob/second to run after its manifest was written",
        || root.running("bob", "second"),
    )
    .await;
    println!(
        "serve: manifest write -> container running in {:?}",
        t.elapsed()
    );
    serve.assert_alive();
}

#[tokio::test]
async fn serve_applies_edits_deletions_and_template_changes() {
    let root = TestRoot::new("edits").await;
    root.write_manifest("alice", "web", MINIMAL);
    root.write_manifest("bob", "api", MINIMAL);
    let mut serve = Serve::start(&root);
    root.wait_running("alice", "web", STARTUP).await;
    root.wait_running("bob", "api", STARTUP).await;
    let web = root.id("alice", "web").await;

    // An env edit recreates alice/web.
    root.write_manifest("alice", "web", "template = \"bb-v1\"\n[env]\nX = \"1\"\n");
    let what = "alice/web recreated after an env edit";
    wait_until(Duration::from_secs(10), what, || async {
        match root.container("alice", "web").await {
            Some(c) => {
                c.id.as_deref() != Some(web.as_str()) && c.state.unwrap().running == Some(true)
            }
            None => false,
        }
    })
    .await;

    // A template edit (default memory) reaches every app of the template.
    let api = root.id("bob", "api").await;
    root.write_template(
        "bb-v1",
        &BB_TEMPLATE.replace("memory = \"64m\"", "memory = \"80m\""),
    );
    let what = "bob/api recreated with 80m after a template edit";
    wait_until(Duration::from_secs(10), what, || async {
        match root.container("bob", "api").await {
            Some(c) => {
                c.id.as_deref() != Some(api.as_str())
                    && c.host_config.unwrap().memory == Some(80 * 1024 * 1024)
                    && c.state.unwrap().running == Some(true)
            }
            None => false,
        }
    })
    .await;

    // Deleting a manifest removes its container.
    root.remove_manifest("alice", "web");
    root.wait_gone("alice", "web", Duration::from_secs(10))
        .await;
    assert!(root.running("bob", "api").await);
    serve.assert_alive();
}

#[tokio::test]
async fn serve_restarts_a_crashing_app_with_backoff() {
    let root = TestRoot::new("crash").await;
    let crashing = BB_TEMPLATE.replace(
        "command = [\"sleep\", \"3600\"]",
        "command = [\"sh\", \"-c\", \"sleep 1; exit 1\"]",
    );
    root.write_template("bb-crash", &crashing);
    root.write_manifest("alice", "crashy", "template = \"bb-crash\"\n");
    let name = root.container_name("alice", "crashy");
    let events = EventLog::start(&root.docker, &root.instance, SystemTime::now());

    let mut serve = Serve::start(&root);
    let starts = || action_times(&events.all(), "start", &name);
    wait_until(STARTUP, "the first start of alice/crashy", || async {
        !starts().is_empty()
    })
    .await;
    let first = Instant::now();
    // Watch for a while: at least one restart must come, later ones further apart.
    let _ = tokio::time::timeout(
        Duration::from_secs(12),
        wait_until(Duration::from_secs(60), "four starts", || async {
            starts().len() >= 4
        }),
    )
    .await;
    let times = starts();
    let gaps: Vec<Duration> = times
        .windows(2)
        .map(|w| Duration::from_nanos((w[1] - w[0]) as u64))
        .collect();
    println!(
        "crash loop: {} starts in {:?}; gaps {gaps:?}",
        times.len(),
        first.elapsed()
    );
    assert!(
        times.len() >= 2,
        "serve restarted the crashed app at least once: {:?}",
        describe(&events.all())
    );
    let c = root
        .container("alice", "crashy")
        .await
        .expect("container kept");
    assert!(
        c.restart_count.unwrap_or(0) == 0,
        "the restarts came from berth, not Docker's restart policy"
    );
    serve.assert_alive();
}

#[tokio::test]
async fn serve_heals_a_container_removed_by_hand() {
    let root = TestRoot::new("heal").await;
    root.write_manifest("alice", "web", MINIMAL);
    let mut serve = Serve::start(&root);
    root.wait_running("alice", "web", STARTUP).await;
    let old = root.id("alice", "web").await;

    docker_cli(&["rm", "-f", &root.container_name("alice", "web")]);
    let took = wait_until(
        Duration::from_secs(10),
        "alice/web to come back",
        || async {
            match root.container("alice", "web").await {
                Some(c) => {
                    c.id.as_deref() != Some(old.as_str()) && c.state.unwrap().running == Some(true)
                }
                None => false,
            }
        },
    )
    .await;
    println!("serve: hand-removed container back in {took:?}");
    serve.assert_alive();
}

#[tokio::test]
async fn serve_exits_cleanly_on_sigterm() {
    let root = TestRoot::new("sigterm").await;
    root.write_manifest("alice", "web", MINIMAL);
    let mut serve = Serve::start(&root);
    root.wait_running("alice", "web", STARTUP).await;
    serve.assert_alive();

    let t = Instant::now();
    let (status, in_time) = serve.stop(Duration::from_secs(10));
    assert!(
        in_time,
        "serve exits within 10 s of SIGTERM\n{}",
        serve.log()
    );
    assert!(
        status.success(),
        "serve exits 0 on SIGTERM: {status}\n{}",
        serve.log()
    );
    println!("serve: exited {status} {:?} after SIGTERM", t.elapsed());
}

#[tokio::test]
async fn what_a_killed_write_left_is_cleaned_at_start() {
    let root = crate::support::TestRoot::new("leftovers").await;
    root.write_manifest("alice", "web", crate::support::MINIMAL);
    let temp = root
        .manifest_path("alice", "web")
        .with_file_name(".web.toml.3f9a.tmp");
    std::fs::write(&temp, "template = \"bb-v1\"\n[env]\nHALF = \"wr").unwrap();
    // bob's directory holds only a cut create's temp file: berth made it, berth removes it.
    let cut = root
        .manifest_path("bob", "x")
        .with_file_name(".x.toml.77c1.tmp");
    std::fs::create_dir_all(cut.parent().unwrap()).unwrap();
    std::fs::write(&cut, "template = \"bb-v1\"\n").unwrap();
    // carol's was made by hand, empty: an operator's, not a cut write's.
    let by_hand = root
        .manifest_path("carol", "x")
        .parent()
        .unwrap()
        .to_path_buf();
    std::fs::create_dir_all(&by_hand).unwrap();
    let mut serve = crate::support::Serve::start(&root);
    root.wait_running("alice", "web", std::time::Duration::from_secs(30))
        .await;
    assert!(!temp.exists(), "the temp file of a cut write is left");
    assert!(
        !cut.parent().unwrap().exists(),
        "the user directory a cut create left is kept"
    );
    assert!(
        by_hand.is_dir(),
        "an empty user directory made by hand was removed at start"
    );
    assert!(root.manifest_path("alice", "web").exists());
    serve.assert_alive();
}

#[tokio::test]
async fn serve_raises_its_open_file_limit_to_the_hard_limit() {
    let root = TestRoot::new("nofile").await;
    let log = root.path().join("nofile.log");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 256 && exec \"$0\" --root \"$1\" serve >\"$2\" 2>&1")
        .arg(crate::support::BERTH)
        .arg(root.path())
        .arg(&log)
        .spawn()
        .unwrap();
    let limits = format!("/proc/{}/limits", child.id());
    let open_files = || -> Option<(String, String)> {
        let text = std::fs::read_to_string(&limits).ok()?;
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        let mut cols = line["Max open files".len()..].split_whitespace();
        Some((cols.next()?.to_string(), cols.next()?.to_string()))
    };
    wait_until(Duration::from_secs(30), "serve to start", || async {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("berth serving"))
    })
    .await;
    let (soft, hard) = open_files().expect("serve's limits");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(soft, hard, "the soft limit stayed below the hard one");
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("raised the open-file limit"));
}

#[tokio::test]
async fn the_watcher_follows_a_state_directory_that_was_replaced() {
    let root = TestRoot::new("stateswap").await;
    root.config(&[("resync", "\"10m\"")], "");
    root.write_manifest("alice", "web", MINIMAL);
    let mut serve = Serve::start(&root);
    let api = crate::support::Api::new(serve.api_base());
    root.wait_running("alice", "web", Duration::from_secs(30))
        .await;
    let watcher_ok =
        || async { api.get("/readyz", "").await.json()["checks"]["watcher"]["ok"] == true };
    assert!(watcher_ok().await);
    // A restore: the whole state directory is swapped for another one. While none is
    // there, readiness says the watcher is blind.
    let state = root.path().join("state");
    let restored = root.path().join("state.restored");
    std::fs::create_dir_all(restored.join("apps/alice")).unwrap();
    std::fs::write(restored.join("apps/alice/web.toml"), MINIMAL).unwrap();
    std::fs::rename(&state, root.path().join("state.old")).unwrap();
    wait_until(
        Duration::from_secs(10),
        "readyz to report the watcher",
        || async { !watcher_ok().await },
    )
    .await;
    std::fs::rename(&restored, &state).unwrap();
    wait_until(Duration::from_secs(10), "the watcher re-armed", watcher_ok).await;
    // An edit in the new directory converges without waiting for the (10 min) resync.
    root.write_manifest("alice", "api", MINIMAL);
    let what = "alice/api from an edit in the swapped-in state directory";
    wait_until(Duration::from_secs(10), what, || {
        root.running("alice", "api")
    })
    .await;
    drop(serve);
}
