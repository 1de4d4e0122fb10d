//! The README's tour, "An app", run step by step as written: its manifest block is written
//! where its first line says, and each `berth` command of the block after it is run on that
//! root (`berth serve` aside: it does not return; `apply` does the same pass once). The root's
//! `node-lite-v1` is a busybox httpd answering `$GREETING` on `$PORT`, so the steps, not node,
//! are under test; the README's host port becomes a free one.

use std::path::Path;
use std::time::Duration;

use crate::support::{free_port, http_get, wait_until, TestRoot};

/// Answers `$GREETING` on `$PORT`, as the README says node-lite-v1 does.
const GREETING_TEMPLATE: &str = r#"image = "berth-test-busybox:1"
command = ["sh", "-c", "mkdir -p /tmp/w && echo \"$GREETING\" > /tmp/w/index.html && exec httpd -f -p $PORT -h /tmp/w"]
workdir = "/"
port = 3000
"#;

/// The tour's manifest block and the shell block after it.
fn tour_blocks() -> (String, String) {
    let readme = super::read(Path::new("README.md"));
    let tour = readme
        .split_once("### An app")
        .expect("the tour's app step")
        .1;
    let tour = tour.split("\n### ").next().unwrap();
    let (blocks, _) = super::split(tour);
    let manifest = blocks
        .iter()
        .find(|b| b.lang == "toml")
        .expect("a toml block");
    let sh = blocks.iter().find(|b| b.lang == "sh").expect("a sh block");
    (manifest.text.clone(), sh.text.clone())
}

#[tokio::test]
async fn the_readme_tour_app_step_runs_as_written() {
    let root = TestRoot::new("tour").await;
    root.write_template("node-lite-v1", GREETING_TEMPLATE);
    let (manifest, sh) = tour_blocks();
    let first = manifest.lines().next().unwrap();
    let rel = first
        .trim_start_matches("# ")
        .split_whitespace()
        .next()
        .unwrap();
    assert_eq!(rel, "state/apps/alice/hello.toml", "{manifest}");
    let port = free_port();
    assert!(manifest.contains("host_port = 8101"), "{manifest}");
    let manifest = manifest.replace("host_port = 8101", &format!("host_port = {port}"));
    let path = root.path().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, manifest).unwrap();

    let mut ran = Vec::new();
    for argv in super::berth_commands(&sh) {
        if argv[1] == "serve" {
            continue;
        }
        // A relative path in the README is relative to the root it is run in.
        let abs: Vec<String> = argv[1..]
            .iter()
            .map(|a| match a.starts_with("state/") {
                true => root.path().join(a).display().to_string(),
                false => a.clone(),
            })
            .collect();
        let args: Vec<&str> = abs.iter().map(String::as_str).collect();
        root.berth(&args).await.expect_code(0);
        ran.push(argv[1].clone());
    }
    assert_eq!(ran, ["validate", "plan", "apply", "status"]);
    wait_until(
        Duration::from_secs(30),
        "the tour's app to answer",
        || async { http_get(port).is_some_and(|b| b.starts_with("hello")) },
    )
    .await;
}
