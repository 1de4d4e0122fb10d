//! The portal in a real headless Chromium (WebDriver) against a real `berth serve` on a real
//! engine: sign in, the apps page, stop / start / deploy with the container following, the
//! manifest editor's conflict, a client key shown once, another user's app out of reach by URL,
//! and sign-out ending the session on the server. Screenshots of the main pages are saved
//! (support::browser::screenshot_dir).

use std::time::Duration;

use crate::support::api::ApiRoot;
use crate::support::browser::Browser;
use crate::support::wait_until;

const T: Duration = Duration::from_secs(30);

/// Signs `token` in through the sign-in form.
pub async fn sign_in(b: &Browser, base: &str, token: &str) {
    b.goto(&format!("{base}/ui/login")).await;
    b.fill("#token", token).await;
    b.click("form[action='/ui/login'] button").await;
    b.wait_for_url("/ui/apps").await;
}

/// Waits until the page at `url`, reloaded, contains `needle`.
async fn wait_page(b: &Browser, url: &str, needle: &str) {
    wait_until(T, &format!("{url} to show {needle}"), || async {
        b.goto(url).await;
        b.source().await.contains(needle)
    })
    .await;
}

#[tokio::test]
async fn a_user_signs_in_and_runs_an_app_from_the_browser() {
    let mut r = ApiRoot::start("portal1", &[]).await;
    let base = r.serve.api_base();
    let b = Browser::start().await;
    sign_in(&b, &base, &r.alice).await;
    assert!(b.text("header").await.contains("alice"));

    // Create from the form.
    b.fill("#appname", "web").await;
    b.click("form[action='/ui/apps'] button").await;
    b.wait_for("created web").await;
    r.root.wait_running("alice", "web", T).await;
    wait_page(&b, &format!("{base}/ui/apps"), "<td>running</td>").await;
    assert!(b.text("#apps").await.contains("alice/web"));
    b.screenshot("apps").await;

    // Stop: the container stops; Start: it runs again; Deploy: a new container.
    b.click("a[href='/ui/apps/alice/web']").await;
    b.click("form[action='/ui/apps/alice/web/stop'] button")
        .await;
    b.wait_for("asked to stop").await;
    wait_until(T, "the container to stop", || async {
        !r.root.running("alice", "web").await
    })
    .await;
    let manifest = std::fs::read_to_string(r.root.manifest_path("alice", "web")).unwrap();
    assert!(manifest.contains("state = \"stopped\""), "{manifest}");
    b.click("form[action='/ui/apps/alice/web/start'] button")
        .await;
    r.root.wait_running("alice", "web", T).await;
    let before = r.root.id("alice", "web").await;
    b.click("form[action='/ui/apps/alice/web/deploy'] button")
        .await;
    wait_until(T, "a new container after deploy", || async {
        r.root.running("alice", "web").await && r.root.id("alice", "web").await != before
    })
    .await;
    wait_page(&b, &format!("{base}/ui/apps/alice/web"), "phase running").await;
    b.screenshot("app").await;

    // Every action went through the API's write path: audited under alice's name.
    let audit = r.api.get("/audit?tail=50", &r.admin).await.json();
    let actions: Vec<String> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "alice")
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "POST /apps",
        "POST /apps/alice/web/stop",
        "POST /apps/alice/web/start",
        "POST /apps/alice/web/deploy",
    ] {
        assert!(actions.iter().any(|a| a == want), "{want} in {actions:?}");
    }
}

#[tokio::test]
async fn a_stale_manifest_edit_shows_the_conflict_and_loses_nothing() {
    let mut r = ApiRoot::start("portal2", &[]).await;
    let base = r.serve.api_base();
    r.api.create_app(&r.alice, "web", "bb-v1").await.expect(201);
    let b = Browser::start().await;
    sign_in(&b, &base, &r.alice).await;
    b.goto(&format!("{base}/ui/apps/alice/web")).await;
    let opened = b.value("#manifest").await;
    assert!(opened.contains("template = \"bb-v1\""), "{opened}");

    // Someone else changes the manifest after the editor opened.
    let one = r.api.get("/apps/alice/web", &r.alice).await;
    let theirs = format!(
        "{}# their change\n",
        one.json()["manifest"].as_str().unwrap()
    );
    r.api
        .put_manifest("/apps/alice/web/manifest", &r.alice, &one.etag(), &theirs)
        .await
        .expect(200);

    let mine = format!("{opened}# my change\n");
    b.fill("#manifest", &mine).await;
    b.click("form[action='/ui/apps/alice/web/manifest'] button")
        .await;
    b.wait_for("changed by someone else").await;
    assert_eq!(
        b.value("#draft").await.replace("\r\n", "\n"),
        mine,
        "my text is kept"
    );
    assert!(
        b.value("#manifest").await.contains("# their change"),
        "the editor holds theirs"
    );
    let on_disk = std::fs::read_to_string(r.root.manifest_path("alice", "web")).unwrap();
    assert_eq!(on_disk, theirs, "nothing overwritten");
    b.screenshot("conflict").await;

    // Saving again from the fresh editor works.
    let merged = format!("{}# merged\n", b.value("#manifest").await);
    b.fill("#manifest", &merged).await;
    b.click("form[action='/ui/apps/alice/web/manifest'] button")
        .await;
    b.wait_for("manifest saved").await;
    let on_disk = std::fs::read_to_string(r.root.manifest_path("alice", "web")).unwrap();
    assert!(on_disk.ends_with("# merged\n"), "{on_disk}");
}

#[tokio::test]
async fn a_client_key_is_shown_once_and_works_on_the_bridge() {
    let mut r = ApiRoot::start("portal3", &[]).await;
    let base = r.serve.api_base();
    r.api.create_app(&r.alice, "web", "bb-v1").await.expect(201);
    let b = Browser::start().await;
    sign_in(&b, &base, &r.alice).await;
    b.goto(&format!("{base}/ui/apps/alice/web/keys")).await;
    b.click("form[action='/ui/apps/alice/web/keys'] button")
        .await;
    let key = b.text("#new-key").await.trim().to_string();
    assert!(key.starts_with("client."), "{key}");
    let bridge = r
        .api
        .bridge(reqwest::Method::GET, "/bridge/apps/alice/web", Some(&key))
        .await;
    bridge.expect(200);
    b.screenshot("keys").await;

    b.goto(&format!("{base}/ui/apps/alice/web/keys")).await;
    let page = b.source().await;
    assert!(b.try_find("#new-key").await.is_none(), "shown once only");
    let secret = key.rsplit('.').next().unwrap();
    assert!(!page.contains(secret), "the secret never shows again");

    // Revoke from the page: the key stops working at once.
    b.click("#keys form button").await;
    b.wait_for("revoked").await;
    let after = r
        .api
        .bridge(reqwest::Method::GET, "/bridge/apps/alice/web", Some(&key))
        .await;
    after.expect(401);
}

#[tokio::test]
async fn another_users_app_is_out_of_reach_by_url() {
    let mut r = ApiRoot::start("portal4", &[]).await;
    let base = r.serve.api_base();
    r.api
        .create_app(&r.bob, "secret-app", "bb-v1")
        .await
        .expect(201);
    let b = Browser::start().await;
    sign_in(&b, &base, &r.alice).await;
    assert!(!b.source().await.contains("secret-app"), "not listed");
    for page in ["", "/logs", "/revisions", "/keys", "/secrets", "/files"] {
        b.goto(&format!("{base}/ui/apps/bob/secret-app{page}"))
            .await;
        let html = b.source().await;
        assert!(
            html.contains("may not reach apps of user bob"),
            "{page}: {html}"
        );
        assert!(!html.contains("template = "), "{page}: no manifest shown");
    }
    // Admin pages refuse a user too.
    b.goto(&format!("{base}/ui/admin/users")).await;
    b.wait_for("admin role required").await;
}

#[tokio::test]
async fn sign_out_ends_the_session_on_the_server() {
    let mut r = ApiRoot::start("portal5", &[]).await;
    let base = r.serve.api_base();
    let b = Browser::start().await;
    sign_in(&b, &base, &r.alice).await;
    let cookie = b.cookie("berth_session").await.expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    let id = cookie["value"].as_str().unwrap().to_string();

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let with_cookie = || {
        client
            .get(format!("{base}/ui/apps"))
            .header("cookie", format!("berth_session={id}"))
            .send()
    };
    assert_eq!(
        with_cookie().await.unwrap().status(),
        200,
        "the cookie works"
    );
    b.click("form[action='/ui/logout'] button").await;
    b.wait_for_url("/ui/login").await;
    let old = with_cookie().await.unwrap();
    assert_eq!(old.status(), 303, "the old cookie gets nothing");
    assert_eq!(old.headers()["location"], "/ui/login");
    // The admin pages work for an admin, and the sign-in page is screenshotted signed out.
    b.screenshot("login").await;
    sign_in(&b, &base, &r.admin).await;
    b.goto(&format!("{base}/ui/admin/users")).await;
    b.fill("#user-name", "carol").await;
    b.click("form[action='/ui/admin/users'] button").await;
    let token = b.text("#new-token").await;
    assert!(token.trim().starts_with("berth"), "{token}");
    let me = r.api.get("/apps", token.trim()).await;
    me.expect(200);
    b.goto(&format!("{base}/ui/admin/audit")).await;
    assert!(b.text("#audit").await.contains("POST /users"));
}

#[tokio::test]
async fn server_js_edited_in_the_files_view_then_deployed_serves_the_new_code() {
    use crate::node_lite;
    node_lite::ensure_node_image();
    let image = format!(
        "[templates.{}]\nimage = \"{}\"\n",
        node_lite::TEMPLATE,
        node_lite::NODE_IMAGE
    );
    let config = [("hook_timeout", "\"120s\""), ("stop_timeout", "\"3s\"")];
    let mut r = ApiRoot::start_with("portal6", &config, &image).await;
    let base = r.serve.api_base();
    let template = r.root.template_dir(node_lite::TEMPLATE);
    node_lite::copy_dir(
        &node_lite::repo()
            .join("templates")
            .join(node_lite::TEMPLATE),
        &template,
    );
    let created = r.api.create_app(&r.alice, "web", node_lite::TEMPLATE).await;
    created.expect(201);
    let port = crate::support::free_port();
    let manifest = node_lite::manifest(port, "hello", "1");
    r.api
        .put_manifest(
            "/apps/alice/web/manifest",
            &r.alice,
            &created.etag(),
            &manifest,
        )
        .await
        .expect(200);
    node_lite::wait_for_body(port, "hello from node-lite-v1").await;

    let b = Browser::start().await;
    sign_in(&b, &base, &r.alice).await;
    b.goto(&format!("{base}/ui/apps/alice/web/files")).await;
    b.click("a[href='/ui/apps/alice/web/files/server.js']")
        .await;
    let current = b.value("#content").await;
    let edited = current.replace("from node-lite-v1", "from the portal");
    assert_ne!(edited, current, "server.js says where it is from");
    b.fill("#content", &edited).await;
    b.screenshot("file").await;
    b.click("form[action='/ui/apps/alice/web/files/server.js'] button")
        .await;
    b.wait_for("server.js saved").await;
    let on_disk = std::fs::read_to_string(r.root.app_dir("alice", "web").join("server.js"));
    assert_eq!(on_disk.unwrap(), edited);

    // A file with CRLF line ends keeps them when Chromium (which submits every break as
    // CRLF, and shows each as one) saves it.
    let dos = r.root.app_dir("alice", "web").join("dos.txt");
    std::fs::write(&dos, "one\r\ntwo\r\n").unwrap();
    b.goto(&format!("{base}/ui/apps/alice/web/files/dos.txt"))
        .await;
    let shown = b.value("#content").await;
    b.fill("#content", &shown.replace("two", "TWO")).await;
    b.click("form[action='/ui/apps/alice/web/files/dos.txt'] button")
        .await;
    b.wait_for("dos.txt saved").await;
    assert_eq!(std::fs::read(&dos).unwrap(), b"one\r\nTWO\r\n");

    b.goto(&format!("{base}/ui/apps/alice/web")).await;
    b.click("form[action='/ui/apps/alice/web/deploy'] button")
        .await;
    wait_until(
        Duration::from_secs(60),
        "the deploy to serve the edited code",
        || async {
            crate::support::http_get(port)
                .is_some_and(|body| body.contains("hello from the portal"))
        },
    )
    .await;
}

#[tokio::test]
async fn an_app_is_created_from_the_catalogue_with_its_values() {
    let image = "[templates.redis-v1]\nimage = \"berth-test-redis:1\"\n";
    let mut r = ApiRoot::start_with("portal7", &[], image).await;
    crate::node_lite::copy_dir(
        &crate::node_lite::repo().join("templates/redis-v1"),
        &r.root.template_dir("redis-v1"),
    );
    let base = r.serve.api_base();
    let b = Browser::start().await;
    sign_in(&b, &base, &r.alice).await;
    b.fill("#appname", "cache").await;
    let select = b.find("#template option[value='redis-v1']").await;
    assert!(!select.is_empty());
    b.click("#template option[value='redis-v1']").await;
    b.click("form[action='/ui/apps'] button").await;
    b.wait_for("Create cache from redis-v1").await;
    assert_eq!(
        b.value("#value-version").await,
        "7",
        "the default is chosen"
    );
    b.fill("#value-maxmemory_mb", "48").await;
    b.screenshot("create").await;
    b.click("form[action='/ui/apps'] button").await;
    b.wait_for("created cache").await;
    let manifest = std::fs::read_to_string(r.root.manifest_path("alice", "cache")).unwrap();
    assert!(manifest.contains("maxmemory_mb = 48"), "{manifest}");
    assert!(
        manifest.contains("password = \"age:"),
        "generated and sealed: {manifest}"
    );
    r.root.wait_running("alice", "cache", T).await;
}
