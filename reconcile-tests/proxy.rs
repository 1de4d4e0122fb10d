//! Traffic through a real Caddy (docs/guides/deploys-and-rollback.md): domain apps answer over HTTPS by name (Caddy's
//! local CA), a stopped app answers 503, a pass that changes nothing writes nothing to Caddy,
//! a restarted Caddy or a hand-deleted server of berth's gets berth's routes back within one
//! resync, a server someone else added to Caddy is left exactly as it was, and an app applied
//! without `serve` keeps answering after `apply` exits.

use std::time::Duration;

use crate::support::caddy::Caddy;
use crate::support::{wait_until, Serve, TestRoot, WWW_TEMPLATE};

const T: Duration = Duration::from_secs(30);

/// A `www-v1` app answering `hello-<name>` on `domain`.
fn site(name: &str, domain: &str, state: &str) -> String {
    format!("template = \"www-v1\"\ndomain = \"{domain}\"\nstate = \"{state}\"\n[env]\nNAME = \"{name}\"\n")
}

/// Waits until `domain`, through Caddy, answers with `want`'s status and a body holding its text.
async fn answers(caddy: &Caddy, domain: &str, want: (u16, &str)) {
    let what = format!("{domain} to answer {want:?}");
    wait_until(T, &what, || async {
        let (status, body) = caddy.get(domain);
        status == want.0 && body.contains(want.1)
    })
    .await;
}

/// A root whose berth.toml has `proxy_table`, a 1 s resync, domains under `example.test`
/// allowed, and the `www-v1` template.
async fn proxied_root(prefix: &str, proxy_table: &str) -> TestRoot {
    let root = TestRoot::new(prefix).await;
    let policy = "[policy]\ndomains = [\"*.example.test\"]\n";
    root.config(&[("resync", "\"1s\"")], &format!("{proxy_table}\n{policy}"));
    root.write_template("www-v1", WWW_TEMPLATE);
    root
}

/// Over a few passes (1 s resync) with nothing changed, berth writes nothing to Caddy, and
/// its reads make Caddy log no error.
async fn no_writes_while_nothing_changes(caddy: &Caddy) {
    let writes = caddy.admin_writes();
    let errors = || caddy.log().matches("\"request error\"").count();
    let errors_before = errors();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        caddy.admin_writes(),
        writes,
        "passes over unchanged state wrote to Caddy"
    );
    // Their read-backs ask only for what exists: an operator's Caddy log stays clean.
    assert_eq!(errors(), errors_before, "{}", caddy.log());
}

#[tokio::test]
async fn domain_apps_answer_over_https_through_caddy_and_berth_keeps_the_routes() {
    let mut caddy = Caddy::start();
    let root = proxied_root("proxy", &caddy.proxy_table()).await;
    root.write_manifest(
        "alice",
        "shop",
        &site("shop", "shop.example.test", "running"),
    );
    root.write_manifest("bob", "blog", &site("blog", "blog.example.test", "running"));
    let _serve = Serve::start(&root);
    answers(&caddy, "shop.example.test", (200, "hello-shop")).await;
    answers(&caddy, "blog.example.test", (200, "hello-blog")).await;

    no_writes_while_nothing_changes(&caddy).await;

    root.write_manifest(
        "alice",
        "shop",
        &site("shop", "shop.example.test", "stopped"),
    );
    answers(
        &caddy,
        "shop.example.test",
        (503, "this site is not running"),
    )
    .await;

    caddy.restart();
    answers(&caddy, "blog.example.test", (200, "hello-blog")).await;
    assert_eq!(
        caddy.get("other.example.test").0,
        0,
        "an unknown name gets no certificate"
    );
    hand_edits_are_repaired_and_other_servers_kept(&caddy, &root).await;
}

/// Someone adds a server of their own and deletes berth's by hand: within a resync berth's
/// routes answer again, and the other server is still there, unchanged.
async fn hand_edits_are_repaired_and_other_servers_kept(caddy: &Caddy, root: &TestRoot) {
    let theirs = format!(
        r#"{{"listen": [":{}"], "routes": [{{"handle": [{{"handler": "static_response", "body": "theirs"}}]}}]}}"#,
        crate::support::free_port()
    );
    let servers = "/config/apps/http/servers";
    let (status, _) = caddy.admin("POST", &format!("{servers}/theirs"), &theirs);
    assert_eq!(status, 200, "adding a server by hand");
    let berths = format!("{servers}/berth-{}", root.instance);
    assert_eq!(
        caddy.admin("DELETE", &berths, "").0,
        200,
        "deleting berth's server by hand"
    );
    answers(caddy, "blog.example.test", (200, "hello-blog")).await;
    let (status, kept) = caddy.admin("GET", &format!("{servers}/theirs"), "");
    assert_eq!(status, 200);
    let kept: serde_json::Value = serde_json::from_str(&kept).unwrap();
    let want: serde_json::Value = serde_json::from_str(&theirs).unwrap();
    assert_eq!(kept, want, "berth changed a server that is not its own");
}

#[tokio::test]
async fn a_domain_moves_with_its_manifest_and_a_claim_never_steals_it() {
    let caddy = Caddy::start();
    let root = proxied_root("proxymove", &caddy.proxy_table()).await;
    root.write_manifest("alice", "old", &site("old", "shop.example.test", "running"));
    let _serve = Serve::start(&root);
    answers(&caddy, "shop.example.test", (200, "hello-old")).await;
    // Another user asking for it gets nothing, however long it waits.
    root.write_manifest(
        "bob",
        "thief",
        &site("thief", "shop.example.test", "running"),
    );
    // A pass saw bob's claim and refused it by name: berth's status says so.
    wait_until(T, "bob/thief refused for domain_conflict", || async {
        let st = root.berth(&["status"]).await;
        st.code == Some(0)
            && st.stdout.lines().any(|l| {
                l.starts_with("bob/thief ")
                    && l.split_whitespace().nth(1) == Some("frozen")
                    && l.contains("domain_conflict")
            })
    })
    .await;
    // After that pass: the domain still answers alice's app and bob has no container.
    assert_eq!(
        caddy.get("shop.example.test"),
        (200, "hello-old".to_string())
    );
    assert!(root.container("bob", "thief").await.is_none());
    // alice gives it to her new app: it moves.
    root.write_manifest("alice", "old", &site("old", "old.example.test", "running"));
    root.remove_manifest("bob", "thief");
    root.write_manifest("alice", "new", &site("new", "shop.example.test", "running"));
    answers(&caddy, "shop.example.test", (200, "hello-new")).await;
    answers(&caddy, "old.example.test", (200, "hello-old")).await;
}

#[tokio::test]
async fn without_caddy_apps_still_converge_and_the_failure_is_counted() {
    let dead = crate::support::free_port();
    let table = format!("[proxy]\ncaddy_admin = \"http://127.0.0.1:{dead}\"\ntls = \"off\"\nhttp_port = {}\nhttps_port = {}\n", crate::support::free_port(), crate::support::free_port());
    let root = proxied_root("proxydown", &table).await;
    root.write_manifest(
        "alice",
        "shop",
        &site("shop", "shop.example.test", "running"),
    );
    let mut serve = Serve::start(&root);
    let api = crate::support::api::Api::new(serve.api_base());
    root.wait_running("alice", "shop", T).await;
    wait_until(T, "the failed Caddy sync to be counted", || async {
        let m = api
            .send(reqwest::Method::GET, "/metrics", &[], None)
            .await
            .text;
        m.lines()
            .any(|l| l.starts_with("berth_proxy_sync_errors_total ") && !l.ends_with(" 0"))
    })
    .await;
    assert!(
        serve.log().contains("cannot bring Caddy in line"),
        "{}",
        serve.log()
    );
}

#[tokio::test]
async fn with_tls_off_an_unchanged_pass_writes_nothing_either() {
    let caddy = Caddy::start();
    let table = caddy
        .proxy_table()
        .replace("tls = \"internal\"", "tls = \"off\"");
    let root = proxied_root("proxyoff", &table).await;
    // The operator's own TLS app, without a policy of berth's: left alone, and looked into
    // without an error in Caddy's log.
    let theirs = r#"[{"subjects":["theirs.example.test"],"issuers":[{"module":"internal"}]}]"#;
    let tls = format!(r#"{{"tls":{{"automation":{{"policies":{theirs}}}}}}}"#);
    assert_eq!(caddy.admin("POST", "/config/apps", &tls).0, 200);
    let ours = caddy.admin_writes();
    root.write_manifest(
        "alice",
        "shop",
        &site("shop", "shop.example.test", "running"),
    );
    let _serve = Serve::start(&root);
    root.wait_running("alice", "shop", T).await;
    wait_until(T, "berth's server in Caddy", || async {
        caddy.admin_writes() > ours
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    no_writes_while_nothing_changes(&caddy).await;
    let (_, kept) = caddy.admin("GET", "/config/apps/tls/automation/policies", "");
    let kept: serde_json::Value = serde_json::from_str(&kept).unwrap();
    assert_eq!(
        kept,
        serde_json::from_str::<serde_json::Value>(theirs).unwrap()
    );
}

#[tokio::test]
async fn caddys_admin_api_on_a_unix_socket_works_the_same() {
    let caddy = Caddy::start_unix();
    let table = caddy.proxy_table();
    assert!(table.contains("caddy_admin = \"unix/"), "{table}");
    let root = proxied_root("proxyunix", &table).await;
    root.write_manifest(
        "alice",
        "shop",
        &site("shop", "shop.example.test", "running"),
    );
    let _serve = Serve::start(&root);
    answers(&caddy, "shop.example.test", (200, "hello-shop")).await;
}

/// `berth apply` without `serve` exits after its pass: the route it leaves must not dial a
/// forwarder of its own, which closed with it.
#[tokio::test]
async fn a_domain_app_applied_without_serve_answers_after_apply_exits() {
    let caddy = Caddy::start();
    let root = proxied_root("proxyapply", &caddy.proxy_table()).await;
    root.write_manifest(
        "alice",
        "shop",
        &site("shop", "shop.example.test", "running"),
    );
    root.berth(&["apply"]).await.expect_code(0);
    answers(&caddy, "shop.example.test", (200, "hello-shop")).await;
}
