//! The HTTP API reference's curl session (docs/reference/http-api.md), run exactly as written (only the API address is this test's)
//! against a running `berth serve`, so the documentation cannot drift from the code. The
//! root's `node-lite-v1` is the busybox test template: the calls, not node, are under test.

use std::time::Duration;

use crate::support::{Serve, TestRoot, BB_TEMPLATE, BERTH};

/// The shell block between the `api-example` markers.
fn readme_session() -> String {
    let readme = include_str!("../docs/reference/http-api.md");
    let start = readme
        .find("<!-- api-example:start -->")
        .expect("start marker");
    let end = readme.find("<!-- api-example:end -->").expect("end marker");
    let block = &readme[start..end];
    let body = block.split_once("```sh\n").expect("```sh fence").1;
    body.rsplit_once("```")
        .expect("closing fence")
        .0
        .to_string()
}

#[tokio::test]
async fn the_readme_curl_session_works_as_written() {
    let root = TestRoot::new("readme").await;
    root.write_template("node-lite-v1", BB_TEMPLATE);
    let mut serve = Serve::start(&root);
    let base = serve.api_base();
    let script = readme_session();
    let default_api = "API=http://127.0.0.1:7070\n";
    assert!(script.starts_with(default_api), "{script}");
    let script = script.replacen(default_api, &format!("API={base}\n"), 1);

    let bin_dir = std::path::Path::new(BERTH).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(root.path())
            .env("PATH", path)
            .output(),
    )
    .await
    .expect("the API reference session took over 2 minutes")
    .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "API reference session failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // What the session did is what happened.
    assert!(stdout.contains("\"appname\":\"hello\""), "{stdout}");
    assert!(
        stdout.contains("\"state\":\"running\""),
        "bridge activate answered: {stdout}"
    );
    assert!(stdout.contains("\"revoked\""), "{stdout}");
    assert!(
        !root.manifest_path("alice", "hello").exists(),
        "the session deletes the app"
    );
    root.wait_gone("alice", "hello", Duration::from_secs(30))
        .await;
    serve.assert_alive();
}
