//! Traffic through a real Caddy (SPEC §9): domain apps answer over HTTPS by name (Caddy's
//! local CA), a stopped app answers 503, a pass that changes nothing writes nothing to Caddy,
//! and a restarted Caddy gets berth's routes back within one resync.

use std::time::Duration;

use crate::support::caddy::Caddy;
use crate::support::{wait_until, Serve, TestRoot};

const T: Duration = Duration::from_secs(30);

/// Serves `hello-$NAME` on port 8080.
const WWW_TEMPLATE: &str = r#"image = "berth-test-busybox:1"
command = ["sh", "-c", "mkdir -p /tmp/w && echo hello-$NAME > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"]
workdir = "/"
port = 8080

[defaults]
memory = "32m"
cpus = 0.25
"#;

fn site(name: &str, domain: &str, state: &str) -> String {
    format!("template = \"www-v1\"\ndomain = \"{domain}\"\nstate = \"{state}\"\n[env]\nNAME = \"{name}\"\n")
}

async fn answers(caddy: &Caddy, domain: &str, want: (u16, &str)) {
    let what = format!("{domain} to answer {want:?}");
    wait_until(T, &what, || async {
        let (status, body) = caddy.get(domain);
        status == want.0 && body.contains(want.1)
    })
    .await;
}

#[tokio::test]
async fn domain_apps_answer_over_https_through_caddy_and_berth_keeps_the_routes() {
    let root = TestRoot::new("proxy").await;
    let mut caddy = Caddy::start();
    let policy = "[policy]\ndomains = [\"*.example.test\"]\n";
    root.config(
        &[("resync", "\"1s\"")],
        &format!("{}\n{policy}", caddy.proxy_table()),
    );
    root.write_template("www-v1", WWW_TEMPLATE);
    root.write_manifest(
        "alice",
        "shop",
        &site("shop", "shop.example.test", "running"),
    );
    root.write_manifest("bob", "blog", &site("blog", "blog.example.test", "running"));
    let _serve = Serve::start(&root);
    answers(&caddy, "shop.example.test", (200, "hello-shop")).await;
    answers(&caddy, "blog.example.test", (200, "hello-blog")).await;

    let writes = caddy.admin_writes();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        caddy.admin_writes(),
        writes,
        "passes over unchanged state wrote to Caddy"
    );

    root.write_manifest(
        "alice",
        "shop",
        &site("shop", "shop.example.test", "stopped"),
    );
    answers(
        &caddy,
        "shop.example.test",
        (503, "alice/shop is not running"),
    )
    .await;

    caddy.restart();
    answers(&caddy, "blog.example.test", (200, "hello-blog")).await;
    assert_eq!(
        caddy.get("other.example.test").0,
        0,
        "an unknown name gets no certificate"
    );
}
