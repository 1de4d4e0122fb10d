//! The README's tour run step by step as written. "An app": its manifest block is written
//! where its first line says, and each `berth` command of the block after it is run on that
//! root (`berth serve` aside: it does not return; `apply` does the same pass once). "A domain",
//! "A deploy" and "The portal": the domain step's berth.toml block (pointed at a real Caddy of
//! the test's, with Caddy's own CA for `tls`, as no ACME server is reachable) and its `domain`
//! line on the app's manifest, then `berth serve`, the deploy step's shell block run as written
//! against it, and a browser's sign-in with the token it made. The root's `node-lite-v1` is a
//! busybox httpd answering `$GREETING` on `$PORT`, so the steps, not node, are under test; the
//! README's host port and API address become free ones.

use std::path::Path;
use std::time::Duration;

use crate::portal_hostile::Session;
use crate::support::caddy::Caddy;
use crate::support::{free_port, http_get, wait_until, Serve, TestRoot};

/// Answers `$GREETING` on `$PORT`, as the README says node-lite-v1 does.
const GREETING_TEMPLATE: &str = r#"image = "berth-test-busybox:1"
command = ["sh", "-c", "mkdir -p /tmp/w && echo \"$GREETING\" > /tmp/w/index.html && exec httpd -f -p $PORT -h /tmp/w"]
workdir = "/"
port = 3000
"#;

/// The text of the tour's step `title`, up to the next step.
fn step(title: &str) -> String {
    let readme = super::read(Path::new("README.md"));
    let (_, rest) = readme
        .split_once(&format!("### {title}\n"))
        .unwrap_or_else(|| panic!("the tour's step {title:?}"));
    rest.split("\n### ").next().unwrap().to_string()
}

/// The only block of `lang` in `text`.
fn block(text: &str, lang: &str) -> String {
    let (blocks, _) = super::split(text);
    let mut of: Vec<_> = blocks.into_iter().filter(|b| b.lang == lang).collect();
    assert_eq!(of.len(), 1, "one {lang} block in {text}");
    of.remove(0).text
}

/// The tour's manifest block and the shell block after it.
fn tour_blocks() -> (String, String) {
    let tour = step("An app");
    let (blocks, _) = super::split(&tour);
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

/// The domain step: its berth.toml block for `caddy`, and the app step's manifest with the
/// step's `domain = "..."` line in place of its host port.
fn domain_step(caddy: &Caddy) -> (String, String, String) {
    let text = step("A domain");
    let config = block(&text, "toml");
    let proxy = caddy.proxy_table();
    let admin = proxy
        .lines()
        .find(|l| l.starts_with("caddy_admin"))
        .unwrap();
    let ports: Vec<&str> = proxy.lines().filter(|l| l.contains("_port = ")).collect();
    for written in ["caddy_admin = \"http://127.0.0.1:2019\"", "tls = \"acme\""] {
        assert!(config.contains(written), "{written} in {config}");
    }
    let config = config
        .replace("caddy_admin = \"http://127.0.0.1:2019\"", admin)
        .replacen(
            "tls = \"acme\"",
            &format!("tls = \"internal\"\n{}", ports.join("\n")),
            1,
        );
    let line = text
        .split('`')
        .find(|s| s.starts_with("domain = \""))
        .expect("the step's domain line")
        .to_string();
    let domain = line.split('"').nth(1).unwrap().to_string();
    let manifest = tour_blocks().0;
    let at = manifest.find("host_port = ").expect("the app's host port");
    let end = at + manifest[at..].find('\n').unwrap() + 1;
    let manifest = format!("{}{line}\n{}", &manifest[..at], &manifest[end..]);
    (config, manifest, domain)
}

#[tokio::test]
async fn the_readme_tour_domain_deploy_and_portal_steps_run_as_written() {
    let caddy = Caddy::start();
    let root = TestRoot::new("tourdom").await;
    root.write_template("node-lite-v1", GREETING_TEMPLATE);
    let (config, manifest, domain) = domain_step(&caddy);
    root.config(&[], &config);
    root.write_manifest("alice", "hello", &manifest);
    let mut serve = Serve::start(&root);
    let base = serve.api_base();
    let answers = |want: &'static str| {
        let domain = domain.clone();
        let client = caddy.client();
        move || {
            let (domain, client) = (domain.clone(), client.clone());
            async move { client.get(&domain).1.starts_with(want) }
        }
    };
    wait_until(
        Duration::from_secs(60),
        "the tour's domain",
        answers("hello"),
    )
    .await;

    // A deploy: the step's shell block as written (only the API address is the test's).
    let sh = block(&step("A deploy"), "sh");
    let default_api = "API=http://127.0.0.1:7070\n";
    assert!(sh.starts_with(default_api), "{sh}");
    let script = sh.replacen(default_api, &format!("API={base}\n"), 1) + "echo \"TOKEN=$TOKEN\"\n";
    let out = crate::readme::run_bash("the tour's deploy step", root.path(), &script).await;
    assert!(out.contains("\"revision\":"), "{out}");
    // The step deploys, then rolls back to version 1: when the loop sees both writes in one
    // pass, the first container rightly stays, so only the answer is waited for.
    wait_until(
        Duration::from_secs(60),
        "the domain answering after the deploy step",
        answers("hello"),
    )
    .await;
    let written = std::fs::read_to_string(root.manifest_path("alice", "hello")).unwrap();
    assert_eq!(written, manifest, "the rollback wrote version 1 back");

    // The portal: alice signs in with the token the deploy step made, sees her app and
    // creates another from a template.
    let token = out.rsplit_once("TOKEN=").unwrap().1.trim();
    let portal = Session::sign_in(&base, token).await;
    let (_, page) = portal.get("/ui/apps").await;
    assert!(page.contains("/ui/apps/alice/hello"), "{page}");
    let form = format!("csrf={}&appname=second&template=node-lite-v1", portal.csrf);
    let (status, page) = portal.post("/ui/apps", &form, &[]).await;
    assert!(status.is_success(), "{status}: {page}");
    root.wait_running("alice", "second", Duration::from_secs(60))
        .await;
    serve.assert_alive();
}
