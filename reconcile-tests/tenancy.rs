//! Tenancy (docs/guides/tenancy.md): what one user's manifest may ask for, held to the server's `[policy]`
//! whether the file comes through the API (422 naming the rule, the file untouched) or by hand
//! (the app frozen naming the rule, nothing created); ports and domains kept by the app whose
//! container has them, in either order and while the holder is stopped.

use crate::support::api::ApiRoot;
use crate::support::{free_port, TestRoot, MINIMAL};

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
    // Another user's app names are not told.
    let who = if holder.0 == thief.0 {
        format!("{}/{}", holder.0, holder.1)
    } else {
        "another user's app".to_string()
    };
    let held = format!(
        "{}/{}: frozen: policy port_taken: host port {port} is held by {who}",
        thief.0, thief.1
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
        "alice/shop: frozen: policy domain_conflict: domain shop.example.test is held by another user's app",
    );
    assert!(root.container("alice", "shop").await.is_none());
    assert!(root.running("zed", "shop").await);
}

#[tokio::test]
async fn env_values_appear_in_no_label_and_no_docker_event() {
    let root = TestRoot::new("tenenv").await;
    let since = std::time::SystemTime::now();
    let events = crate::support::docker::EventLog::start(&root.docker, &root.instance, since);
    let secret = format!("s3cret-{}", root.instance);
    root.write_manifest(
        "alice",
        "web",
        &format!("{MINIMAL}[env]\nTOKEN = \"{secret}\"\n"),
    );
    root.berth(&["apply"]).await.expect_code(0);
    let c = root.container("alice", "web").await.unwrap();
    let config = c.config.unwrap();
    let env = config.env.unwrap_or_default();
    assert!(
        env.contains(&format!("TOKEN={secret}")),
        "the app gets its value: {env:?}"
    );
    let labels = serde_json::to_string(&config.labels).unwrap();
    assert!(
        labels.contains("TOKEN") && !labels.contains(&secret),
        "{labels}"
    );
    // The container's start is the apply's last event: once it is seen (events arrive in
    // order), every event of the apply has been.
    let name = root.container_name("alice", "web");
    crate::support::wait_until(
        std::time::Duration::from_secs(10),
        "the app's start event",
        || async {
            !crate::support::docker::action_times(&events.all(), "start", &name).is_empty()
        },
    )
    .await;
    let seen = serde_json::to_string(&events.all()).unwrap();
    assert!(
        seen.contains("paas.spec") && !seen.contains(&secret),
        "{seen}"
    );
}

#[tokio::test]
async fn a_symlinked_workspace_is_refused_not_mounted() {
    let root = TestRoot::new("tenlink").await;
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("apps")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), root.path().join("apps/alice")).unwrap();
    root.write_manifest("alice", "web", MINIMAL);
    let apply = root.berth(&["apply"]).await;
    apply
        .expect_code(1)
        .expect_contains("apps/alice is a symlink; berth does not follow it");
    assert!(root.container("alice", "web").await.is_none());
    assert_eq!(
        std::fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "wrote through the link"
    );
}

/// The permission bits of `path`.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_database_and_manifests_are_private_after_start() {
    use std::os::unix::fs::PermissionsExt;
    let root = TestRoot::new("tenmodes").await;
    root.write_manifest("alice", "old", MINIMAL);
    let token = crate::support::api::add_user(&root, "alice", false).await;
    let db = root.path().join("berth.redb");
    let open = |p: &std::path::Path, m| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    open(&db, 0o644);
    open(&root.manifest_path("alice", "old"), 0o644);
    open(&root.path().join("state/apps/alice"), 0o755);
    let mut serve = crate::support::Serve::start(&root);
    let api = crate::support::api::Api::new(serve.api_base());
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&root.manifest_path("alice", "old")), 0o600);
    assert_eq!(mode(&root.path().join("state/apps/alice")), 0o700);
    assert!(
        serve
            .log()
            .contains("made state/apps readable by berth's user only"),
        "{}",
        serve.log()
    );
    api.create_app(&token, "new", "bb-v1").await.expect(201);
    assert_eq!(mode(&root.manifest_path("alice", "new")), 0o600);
}

#[tokio::test]
async fn a_stopped_app_still_starts_after_its_users_other_app_is_removed() {
    let root = TestRoot::new("tennetkeep").await;
    root.write_manifest("alice", "a", MINIMAL);
    root.write_manifest("alice", "b", &format!("{MINIMAL}state = \"stopped\"\n"));
    root.berth(&["apply"]).await.expect_code(0);
    root.remove_manifest("alice", "a");
    root.berth(&["apply"]).await.expect_code(0);
    root.write_manifest("alice", "b", MINIMAL);
    let start = root.berth(&["apply"]).await;
    start.expect_code(0);
    assert!(root.running("alice", "b").await, "{}", start.text());
}

#[tokio::test]
async fn a_network_of_the_users_name_that_berth_did_not_make_is_not_joined() {
    let root = TestRoot::new("tenforeign").await;
    let name = format!("berth-{}-alice", root.instance);
    crate::support::docker::docker_cli(&["network", "create", &name]);
    root.write_manifest("alice", "web", MINIMAL);
    let apply = root.berth(&["apply"]).await;
    let _ = std::process::Command::new("docker")
        .args(["network", "rm", &name])
        .output();
    apply
        .expect_code(1)
        .expect_contains("exists and is not berth's");
    assert!(root.container("alice", "web").await.is_none());
}

/// A berth.toml whose neighbours hold ports inside `host_ports`: Caddy's admin API, its HTTP
/// and HTTPS ports, and one the operator lists. The manifests that ask for each, with the
/// neighbour the refusal must name.
fn neighbours() -> (String, Vec<(String, String)>) {
    let (admin, http, https, listed) = (free_port(), free_port(), free_port(), free_port());
    let extra = format!(
        "[policy]\nreserved_ports = [{listed}]\napi_writes_per_minute = 1000\n\
         [proxy]\ncaddy_admin = \"http://127.0.0.1:{admin}\"\nhttp_port = {http}\n\
         https_port = {https}\ntls = \"off\"\n"
    );
    let cases = [
        (admin, "Caddy's admin API (caddy_admin in [proxy])"),
        (http, "Caddy's HTTP port (http_port in [proxy])"),
        (https, "Caddy's HTTPS port (https_port in [proxy])"),
        (listed, "listed in [policy] reserved_ports"),
    ];
    let cases = cases
        .iter()
        .map(|(port, holder)| {
            (
                format!("template = \"bb-v1\"\nhost_port = {port}\n"),
                format!("policy port_reserved: host port {port} is reserved: {holder}"),
            )
        })
        .collect();
    (extra, cases)
}

/// Swarm-only fields on the docker runtime, and the rule both paths must name.
const SWARM_ONLY: [(&str, &str); 2] = [
    (
        "template = \"bb-v1\"\nreplicas = 2\n",
        "replicas = 2 needs runtime = \"swarm\"",
    ),
    (
        "template = \"bb-v1\"\nconstraints = [\"node.role == worker\"]\n",
        "constraints need runtime = \"swarm\"",
    ),
];

#[tokio::test]
async fn hand_written_claims_on_neighbours_ports_and_swarm_fields_are_frozen_naming_the_rule() {
    let root = TestRoot::new("tenhood").await;
    let (extra, cases) = neighbours();
    root.config(&[("max_apps_per_user", "20")], &extra);
    for (i, (text, _)) in cases.iter().enumerate() {
        root.write_manifest("alice", &format!("port{i}"), text);
    }
    for (i, (text, _)) in SWARM_ONLY.iter().enumerate() {
        root.write_manifest("alice", &format!("swarm{i}"), text);
    }
    let apply = root.berth(&["apply"]).await;
    apply.expect_code(1);
    for (i, (_, said)) in cases.iter().enumerate() {
        apply.expect_contains(&format!("alice/port{i}: frozen: {said}"));
        assert!(root.container("alice", &format!("port{i}")).await.is_none());
    }
    for (i, (_, rule)) in SWARM_ONLY.iter().enumerate() {
        apply.expect_contains(&format!("alice/swarm{i}: frozen: "));
        apply.expect_contains(rule);
    }
}

#[tokio::test]
async fn the_api_refuses_neighbours_ports_and_swarm_fields_with_the_loops_rule() {
    let (extra, cases) = neighbours();
    let r = ApiRoot::start_with("tenhoodapi", &[], &extra).await;
    let (api, alice) = (&r.api, r.alice.as_str());
    api.create_app(alice, "web", "bb-v1").await.expect(201);
    let path = r.root.manifest_path("alice", "web");
    let before = std::fs::read(&path).unwrap();
    let etag = api.get("/apps/alice/web", alice).await.etag();
    let answers = cases
        .iter()
        .map(|(text, said)| (text.as_str(), "port_reserved", said.clone()));
    let swarm = SWARM_ONLY
        .iter()
        .map(|(text, rule)| (*text, "invalid_manifest", rule.to_string()));
    for (text, code, said) in answers.chain(swarm) {
        let resp = api
            .put_manifest("/apps/alice/web/manifest", alice, &etag, text)
            .await;
        resp.expect(422);
        assert_eq!(resp.code(), code, "{text}: {}", resp.text);
        let said = said.trim_start_matches("policy port_reserved: ");
        let message = resp.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(message.contains(said), "{text}: {}", resp.text);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "{text} changed the file"
        );
    }
}
