//! Tenancy (SPEC §14): what one user's manifest may ask for, held to the server's `[policy]`
//! whether the file comes through the API (422 naming the rule, the file untouched) or by hand
//! (the app frozen naming the rule, nothing created); ports and domains kept by the app whose
//! container has them, in either order and while the holder is stopped.

use crate::support::api::ApiRoot;
use crate::support::{free_port, TestRoot};

/// Each manifest body breaks exactly one rule of the default policy (the code it must name).
fn violations(listen: u16) -> Vec<(&'static str, String)> {
    let t = "template = \"bb-v1\"\n";
    vec![
        ("host_port_not_allowed", format!("{t}host_port = 80\n")),
        (
            "host_ip_not_allowed",
            format!("{t}host_port = {}\nhost_ip = \"0.0.0.0\"\n", free_port()),
        ),
        (
            "host_ip_not_allowed",
            format!("{t}host_port = {}\nhost_ip = \"::\"\n", free_port()),
        ),
        ("port_reserved", format!("{t}host_port = {listen}\n")),
        (
            "memory_over_limit",
            format!("{t}[resources]\nmemory = \"1024g\"\n"),
        ),
        ("cpus_over_limit", format!("{t}[resources]\ncpus = 1024\n")),
        (
            "domain_not_allowed",
            format!("{t}domain = \"shop.bob.apps.test\"\n"),
        ),
    ]
}

const POLICY: &str =
    "[policy]\ndomains = [\"*.{userid}.apps.test\"]\napi_writes_per_minute = 1000\n";

#[tokio::test]
async fn a_hand_written_file_that_breaks_a_rule_is_frozen_naming_it_and_nothing_runs() {
    let root = TestRoot::new("tenfile").await;
    let listen = free_port();
    let listen_addr = format!("\"127.0.0.1:{listen}\"");
    root.config(
        &[("listen", &listen_addr), ("max_apps_per_user", "20")],
        POLICY,
    );
    let cases = violations(listen);
    for (i, (_, text)) in cases.iter().enumerate() {
        root.write_manifest("alice", &format!("bad{i}"), text);
    }
    root.write_manifest(
        "alice",
        "good",
        "template = \"bb-v1\"\ndomain = \"web.alice.apps.test\"\n",
    );
    let apply = root.berth(&["apply"]).await;
    apply.expect_code(1);
    for (i, (code, _)) in cases.iter().enumerate() {
        apply.expect_contains(&format!("alice/bad{i}: frozen: policy {code}:"));
        assert!(
            root.container("alice", &format!("bad{i}")).await.is_none(),
            "bad{i} got a container"
        );
    }
    assert!(
        root.running("alice", "good").await,
        "an app within the policy runs\n{}",
        apply.text()
    );
}

#[tokio::test]
async fn the_api_refuses_a_manifest_that_breaks_a_rule_with_its_code_and_changes_nothing() {
    let r = ApiRoot::start_with("tenapi", &[], POLICY).await;
    let (api, alice) = (&r.api, r.alice.as_str());
    api.create_app(alice, "web", "bb-v1").await.expect(201);
    let path = r.root.manifest_path("alice", "web");
    let before = std::fs::read(&path).unwrap();
    let etag = api.get("/apps/alice/web", alice).await.etag();
    let listen: u16 = r.api.base.rsplit(':').next().unwrap().parse().unwrap();
    for (code, text) in violations(listen) {
        let resp = api
            .put_manifest("/apps/alice/web/manifest", alice, &etag, &text)
            .await;
        resp.expect(422);
        assert_eq!(resp.code(), code, "{text}: {}", resp.text);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file changed after {code}"
        );
    }
    let ok = "template = \"bb-v1\"\ndomain = \"web.alice.apps.test\"\n";
    api.put_manifest("/apps/alice/web/manifest", alice, &etag, ok)
        .await
        .expect(200);
}

#[tokio::test]
async fn a_users_running_apps_share_one_memory_limit_in_path_order() {
    let root = TestRoot::new("tenmem").await;
    root.config(
        &[],
        "[policy]\nmax_memory = \"256m\"\nmax_memory_per_user = \"300m\"\n",
    );
    let app = |mem: &str, state: &str| {
        format!("template = \"bb-v1\"\nstate = \"{state}\"\n[resources]\nmemory = \"{mem}\"\n")
    };
    root.write_manifest("alice", "a", &app("200m", "running"));
    root.write_manifest("alice", "b", &app("200m", "running"));
    root.write_manifest("alice", "c", &app("200m", "stopped"));
    root.write_manifest("bob", "a", &app("200m", "running"));
    let apply = root.berth(&["apply"]).await;
    apply
        .expect_code(1)
        .expect_contains("alice/b: frozen: policy user_memory_over_limit:");
    assert!(root.running("alice", "a").await && root.running("bob", "a").await);
    assert!(root.container("alice", "b").await.is_none());
    assert!(
        root.container("alice", "c").await.is_some(),
        "a stopped app uses no memory"
    );
}

/// Manifest of `app` publishing `port` (and claiming `domain`).
fn publishing(port: u16, domain: Option<&str>) -> String {
    let domain = domain.map_or(String::new(), |d| format!("domain = \"{d}\"\n"));
    format!("template = \"bb-v1\"\nhost_port = {port}\n{domain}")
}

/// `holder` gets `port` first; then `thief` asks for it: refused while the holder's manifest
/// wants it, stopped or not; free once the holder gives it up.
async fn port_stays_with_its_holder(root: &TestRoot, holder: (&str, &str), thief: (&str, &str)) {
    let port = free_port();
    root.write_manifest(holder.0, holder.1, &publishing(port, None));
    root.berth(&["apply"]).await.expect_code(0);
    root.write_manifest(thief.0, thief.1, &publishing(port, None));
    let held = format!(
        "{}/{}: frozen: policy port_taken: host port {port} is held by {}/{}",
        thief.0, thief.1, holder.0, holder.1
    );
    root.berth(&["apply"])
        .await
        .expect_code(1)
        .expect_contains(&held);
    assert!(root.container(thief.0, thief.1).await.is_none());
    assert!(root.running(holder.0, holder.1).await);
    root.write_manifest(
        holder.0,
        holder.1,
        &format!("{}state = \"stopped\"\n", publishing(port, None)),
    );
    root.berth(&["apply"])
        .await
        .expect_code(1)
        .expect_contains(&held);
    assert!(
        root.container(thief.0, thief.1).await.is_none(),
        "took the port of a stopped app"
    );
    root.write_manifest(holder.0, holder.1, "template = \"bb-v1\"\n");
    root.berth(&["apply"]).await.expect_code(0);
    assert!(
        root.running(thief.0, thief.1).await,
        "the port was given up"
    );
}

#[tokio::test]
async fn a_host_port_stays_with_the_app_whose_container_has_it_in_either_path_order() {
    let root = TestRoot::new("tenport").await;
    port_stays_with_its_holder(&root, ("zed", "owner"), ("alice", "thief")).await;
    port_stays_with_its_holder(&root, ("alice", "first"), ("zed", "late")).await;
}

#[tokio::test]
async fn a_domain_stays_with_the_app_whose_container_has_it() {
    let root = TestRoot::new("tendom").await;
    root.config(&[], "[policy]\ndomains = [\"*.example.test\"]\n");
    let shop = Some("shop.example.test");
    root.write_manifest("zed", "shop", &publishing(free_port(), shop));
    root.berth(&["apply"]).await.expect_code(0);
    root.write_manifest("alice", "shop", &publishing(free_port(), shop));
    let apply = root.berth(&["apply"]).await;
    apply.expect_code(1).expect_contains(
        "alice/shop: frozen: policy domain_conflict: domain shop.example.test is held by zed/shop",
    );
    assert!(root.container("alice", "shop").await.is_none());
    assert!(root.running("zed", "shop").await);
}
