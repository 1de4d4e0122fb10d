//! Every curl example in the docs that calls the HTTP API, run as written against a running
//! `berth serve`, so the documentation cannot drift from the code (`docs.rs` fails when a
//! block calls the API and none of these runs it). The HTTP API reference's session
//! (docs/reference/http-api.md) runs on its own root; a block marked
//! `<!-- api-run: app -->` runs with alice signed up (`$TOKEN`, `$AUTH`, `$API` as the
//! session sets them) and her app `web`; `<!-- api-run: git -->` on a root in git mode. Only
//! the API address (and, for git, the webhook secret) is this test's, and in a marked block
//! every curl fails on an error answer. The roots'
//! `node-lite-v1` is the busybox test template: the calls, not node, are under test.

use std::path::Path;
use std::time::Duration;

use crate::docs::curl::{api_run_fixture, calls_the_api};
use crate::docs::{md_files, read, split};
use crate::support::git::{GitRoot, SECRET};
use crate::support::{Serve, TestRoot, BB_TEMPLATE, BERTH};

/// The address every example in the docs calls.
const DOCS_API: &str = "http://127.0.0.1:7070";

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

/// Every block calling the API that is marked `<!-- api-run: fixture -->`, as
/// (`file:line`, text).
fn marked_blocks(fixture: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for file in md_files() {
        for b in split(&read(&file)).0 {
            if calls_the_api(&b) && api_run_fixture(&b) == Some(fixture) {
                out.push((format!("{}:{}", file.display(), b.line), b.text));
            }
        }
    }
    assert!(!out.is_empty(), "no block is marked api-run: {fixture}");
    out
}

/// Put before a marked block: an example that prints an error answer and carries on would
/// pass unseen, so every curl in it without its own `-f` fails on an HTTP error (and shows
/// the answer).
const CURL_FAILS: &str = "curl() { case \" $* \" in *' -f'* | *' --fail'*) command curl \"$@\" ;; \
                          *) command curl --fail-with-body \"$@\" ;; esac; }\n";

/// Runs `script` under `bash -euo pipefail` in `dir` with this build's `berth` first on
/// PATH; panics with its output, named by `what`, unless it exits 0. Returns its stdout.
pub(crate) async fn run_bash(what: &str, dir: &Path, script: &str) -> String {
    let bin_dir = Path::new(BERTH).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(dir)
            .env("PATH", path)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{what} took over 2 minutes"))
    .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({})\n--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}

#[tokio::test]
async fn the_readme_curl_session_works_as_written() {
    let root = TestRoot::new("readme").await;
    root.write_template("node-lite-v1", BB_TEMPLATE);
    let mut serve = Serve::start(&root);
    let base = serve.api_base();
    let script = readme_session();
    let default_api = format!("API={DOCS_API}\n");
    assert!(script.starts_with(&default_api), "{script}");
    let script = script.replacen(&default_api, &format!("API={base}\n"), 1);

    let stdout = run_bash("the API reference session", root.path(), &script).await;
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

#[tokio::test]
async fn every_curl_example_marked_api_run_app_works_as_written() {
    crate::node_lite::ensure_image("scripts/build-redis-image.sh", "berth-test-redis:1");
    let root = TestRoot::new("docsapi").await;
    root.config(
        &[],
        "[templates.redis-v1]\nimage = \"berth-test-redis:1\"\n",
    );
    root.write_template("node-lite-v1", BB_TEMPLATE);
    crate::node_lite::copy_dir(
        &crate::node_lite::repo().join("templates/redis-v1"),
        &root.template_dir("redis-v1"),
    );
    root.write_manifest("alice", "web", "template = \"node-lite-v1\"\n");
    let token = crate::support::api::add_user(&root, "alice", false).await;
    let mut serve = Serve::start(&root);
    let base = serve.api_base();
    let setup = format!(
        "API={base}\nTOKEN={token}\nAUTH=\"Authorization: Bearer $TOKEN\"\n\
         curl -fsS -o /dev/null -H \"$AUTH\" \"$API/apps/alice/web\"\n"
    );
    for (at, text) in marked_blocks("app") {
        let script = format!("{setup}{CURL_FAILS}{}", text.replace(DOCS_API, &base));
        run_bash(&at, root.path(), &script).await;
    }
    serve.assert_alive();
}

#[tokio::test]
async fn every_curl_example_marked_api_run_git_works_as_written() {
    let g = GitRoot::start("docsgit", "1h", |_| {}).await;
    let base = g.api.base.clone();
    for (at, text) in marked_blocks("git") {
        assert!(text.contains("\"change-me\""), "{at}: the guide's secret");
        let script = CURL_FAILS.to_string()
            + &text
                .replace(DOCS_API, &base)
                .replace("\"change-me\"", &format!("\"{SECRET}\""));
        run_bash(&at, g.root.path(), &script).await;
    }
}
