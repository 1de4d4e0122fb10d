//! The scripts under `examples/`, run the way the README tells a person to run them
//! (`examples/run.sh`, `examples/run.sh hello`, `examples/gitops.sh`, and the others where
//! the guides name them), so an example that
//! breaks fails the suite. Each runs in a fresh copy of the repository's files (tracked ones
//! and new ones not yet committed, never ignored ones), so nothing an earlier run left behind
//! helps it. The scripts' environment overrides give each its own instance and free loopback
//! ports and the `berth` under test instead of a release build. Each run has a time limit
//! (then its whole process group is killed and the test fails), and a Drop guard removes the
//! instance's containers, pass or fail.

use crate::support::example::*;
use crate::support::http_get;

/// `command` (an `examples/run.sh` invocation) shows both apps answering with `greetings`
/// on free ports, says what to try next, leaves them running, converges to no change when
/// run again, and `examples/run.sh clean <name>` removes them.
fn run_sh_example(kind: &str, command: &str, name: &str, greetings: [&str; 2]) {
    assert_readme_says(command);
    let mut ex = Example::new(kind);
    let ports: [u16; 2] = free_ports();
    let env = [
        ("BERTH_EXAMPLE_INSTANCE", ex.instance.clone()),
        ("BERTH_EXAMPLE_PORTS", format!("{} {}", ports[0], ports[1])),
    ];
    let first = ex.run(command, &env);
    first.expect_success().expect_stdout("Next:");
    for (port, greeting) in ports.iter().zip(greetings) {
        first.expect_stdout(&format!("127.0.0.1:{port} -> {greeting}"));
        let body = http_get(*port);
        assert!(
            body.as_deref().is_some_and(|b| b.starts_with(greeting)),
            "after the script, port {port} answers {body:?}, not {greeting:?}\n{first}"
        );
    }
    assert_eq!(ex.containers(), 2, "{first}");

    // "Re-run it any time: the second apply changes nothing."
    let again = ex.run(command, &env);
    again
        .expect_success()
        .expect_stdout("apply: 0 changed, 0 failed");

    // Without the overrides: clean finds the instance in the example's berth.toml.
    let root = ex.repo().join("examples").join(name);
    assert!(root.join("apps").is_dir(), "{first}");
    let clean = ex.run(&format!("examples/run.sh clean {name}"), &[]);
    clean
        .expect_success()
        .expect_stdout(&format!("cleaned examples/{name}"));
    assert_eq!(ex.containers(), 0, "clean left containers\n{clean}");
    assert!(
        !root.join("apps").exists() && !root.join("shared").exists(),
        "{clean}"
    );
}

#[test]
fn examples_run_sh_runs_node_lite() {
    ensure_node_image();
    run_sh_example(
        "node",
        "examples/run.sh",
        "node-lite",
        ["hello from node-lite-v1", "hello, world from node-lite-v1"],
    );
}

#[test]
fn examples_run_sh_hello_runs_the_busybox_example() {
    ensure_busybox_image();
    run_sh_example(
        "hello",
        "examples/run.sh hello",
        "hello",
        ["hello from demo/hello", "hello from demo/world"],
    );
}

#[test]
fn examples_gitops_sh_follows_a_push_after_the_signed_webhook() {
    let command = "examples/gitops.sh";
    assert_readme_says(&format!("`{command}`"));
    ensure_busybox_image();
    let mut ex = Example::new("git");
    let [api, hello, world] = free_ports();
    let out = ex.run(
        command,
        &[
            ("BERTH_EXAMPLE_INSTANCE", ex.instance.clone()),
            ("BERTH_EXAMPLE_PORTS", format!("{hello} {world}")),
            ("BERTH_EXAMPLE_API_PORT", api.to_string()),
        ],
    );
    out.expect_success()
        .expect_stdout("berth cloned the remote and runs demo/hello:\nhello from demo/hello")
        .expect_stdout("Next:");
    // The second app answered only after the push and the signed webhook.
    let (_, after) = out
        .stdout
        .split_once("after the push and the webhook, demo/world answers too:")
        .unwrap_or_else(|| panic!("no webhook step\n{out}"));
    assert!(
        after.trim_start().starts_with("hello from demo/world"),
        "demo/world did not answer after the webhook\n{out}"
    );
    assert!(
        after.contains("\"source\":\"git:"),
        "demo/world's revision names no commit\n{out}"
    );
    // The end of the script stops berth and removes the example's containers.
    assert_eq!(ex.containers(), 0, "containers left behind\n{out}");
}

#[test]
fn examples_domains_sh_serves_two_apps_by_domain_over_https_through_caddy() {
    let command = "examples/domains.sh";
    assert_readme_says(&format!("`{command}`"));
    ensure_busybox_image();
    let mut ex = Example::new("dom");
    let [admin, http, https, api] = free_ports();
    let out = ex.run(
        command,
        &[
            ("BERTH_EXAMPLE_INSTANCE", ex.instance.clone()),
            ("BERTH_EXAMPLE_PORTS", format!("{admin} {http} {https}")),
            ("BERTH_EXAMPLE_API_PORT", api.to_string()),
        ],
    );
    out.expect_success()
        .expect_stdout(&format!(
            "https://shop.example.test:{https}/ answers through Caddy:\nhello from demo/shop"
        ))
        .expect_stdout(&format!(
            "https://blog.example.test:{https}/ answers through Caddy:\nhello from demo/blog"
        ))
        .expect_stdout("Next:");
    assert_eq!(ex.containers(), 0, "containers left behind\n{out}");
}

/// Runs `examples/<name>.sh` (which the guide `doc` must name) with this test's instance, the
/// `ports` as `BERTH_EXAMPLE_PORTS` when there are any, and `api` as its API port; it must
/// succeed and leave no container behind.
fn run_script(doc: &str, name: &str, ports: &[u16], api: u16) -> Outcome {
    let command = format!("examples/{name}.sh");
    assert_doc_says(doc, &format!("`{command}`"));
    let mut ex = Example::new(&name[..3]);
    let mut env = vec![
        ("BERTH_EXAMPLE_INSTANCE", ex.instance.clone()),
        ("BERTH_EXAMPLE_API_PORT", api.to_string()),
    ];
    if !ports.is_empty() {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        env.push(("BERTH_EXAMPLE_PORTS", ports.join(" ")));
    }
    let out = ex.run(&command, &env);
    out.expect_success().expect_stdout("Next:");
    assert_eq!(ex.containers(), 0, "containers left behind\n{out}");
    out
}

#[test]
fn examples_secrets_sh_shows_a_sealed_value_is_set_without_printing_it() {
    ensure_busybox_image();
    let [app, api] = free_ports();
    let out = run_script("docs/guides/secrets.md", "secrets", &[app], api);
    out.expect_stdout("berth secrets encrypt API_TOKEN --app demo/shop")
        .expect_stdout(&format!(
            "demo/shop answers on 127.0.0.1:{app}:\nAPI_TOKEN is set, sha256 "
        ))
        .expect_stdout("the same sha256 as the value sealed")
        .expect_stdout("the plain value is in neither");
}

#[test]
fn examples_deploy_rollback_sh_keeps_answering_through_a_refused_deploy_and_a_rollback() {
    ensure_busybox_image();
    let [admin, http, https, api] = free_ports();
    let out = run_script(
        "docs/guides/deploys-and-rollback.md",
        "deploy-rollback",
        &[admin, http, https],
        api,
    );
    out.expect_stdout("answers through Caddy: v1")
        .expect_stdout("answers: v2\ndeploying v3")
        .expect_stdout("rollout-failed")
        .expect_stdout("still answers: v2")
        .expect_stdout("is running v2 again: v2")
        .expect_stdout(": 0 not answered by v1 or v2");
}

#[test]
fn examples_portal_sh_signs_in_and_creates_an_app_with_the_form() {
    ensure_busybox_image();
    let [api] = free_ports();
    let out = run_script("docs/guides/portal.md", "portal", &[], api);
    out.expect_stdout("the apps page shows alice/hello running")
        .expect_stdout("template = \"static-httpd-v1\"");
}

#[test]
fn examples_python_redis_sh_counts_visits_in_the_users_redis() {
    ensure_python_redis_images();
    let [web, api] = free_ports();
    let out = run_script(
        "docs/guides/templates-and-values.md",
        "python-redis",
        &[web],
        api,
    );
    out.expect_stdout(&format!(
        "http://127.0.0.1:{web}/ answers:\nhello from python-lite-v1: visit "
    ))
    .expect_stdout("counted by redis at cache:6379");
}

/// A script or example root added under examples/ without a test here fails this.
#[test]
fn every_example_is_run_by_a_test() {
    let files = repo_files();
    let mut scripts = Vec::new();
    let mut roots = Vec::new();
    for f in &files {
        let Ok(rest) = f.strip_prefix("examples") else {
            continue;
        };
        let parts: Vec<_> = rest.iter().map(|p| p.to_string_lossy()).collect();
        if f.extension().is_some_and(|e| e == "sh") {
            scripts.push(f.to_string_lossy().into_owned());
        }
        if parts.len() == 2 && parts[1] == "berth.toml" {
            roots.push(parts[0].to_string());
        }
    }
    scripts.sort();
    roots.sort();
    assert_eq!(
        scripts, SCRIPTS,
        "scripts under examples/ vs the tests here"
    );
    assert_eq!(
        roots, RUN_SH_EXAMPLES,
        "examples/run.sh roots vs the tests here"
    );
}
