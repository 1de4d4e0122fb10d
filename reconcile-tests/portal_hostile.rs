//! The portal under attack, over plain HTTP (a forger does not use our forms) and in a real
//! browser (a stored script must not run): forged cross-site posts, missing, wrong and other
//! sessions' CSRF tokens, the sign-in failure limiter, the security headers on every page,
//! HTML and script in env values, log lines and file contents shown escaped, and path tricks
//! through the portal's file routes.

use std::time::Duration;

use reqwest::redirect::Policy;
use reqwest::StatusCode;

use crate::support::api::ApiRoot;
use crate::support::browser::Browser;
use crate::support::wait_until;

const T: Duration = Duration::from_secs(30);

/// A signed-in portal session driven with raw form posts.
pub(crate) struct Session {
    base: String,
    cookie: String,
    pub(crate) csrf: String,
    http: reqwest::Client,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The value of the first `name="csrf"` field in `html`.
fn csrf_in(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a csrf field");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

impl Session {
    pub(crate) async fn sign_in(base: &str, token: &str) -> Session {
        let http = client();
        let resp = http
            .post(format!("{base}/ui/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "signed in");
        let set = resp.headers()["set-cookie"].to_str().unwrap().to_string();
        let cookie = set.split(';').next().unwrap().to_string();
        let mut s = Session {
            base: base.into(),
            cookie,
            csrf: String::new(),
            http,
        };
        let (_, page) = s.get("/ui/apps").await;
        s.csrf = csrf_in(&page);
        s
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie);
        let resp = r.send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    /// POSTs `body` (urlencoded, as given) with extra `headers`.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string());
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let resp = r.send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }
}

/// What a forged post is, its body, and its extra headers.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);

pub(crate) fn manifest(r: &ApiRoot, user: &str, app: &str) -> String {
    std::fs::read_to_string(r.root.manifest_path(user, app)).unwrap()
}

#[tokio::test]
async fn forged_and_tokenless_posts_change_nothing() {
    let mut r = ApiRoot::start("phost1", &[]).await;
    let base = r.serve.api_base();
    r.api.create_app(&r.alice, "web", "bb-v1").await.expect(201);
    let before = manifest(&r, "alice", "web");
    let alice = Session::sign_in(&base, &r.alice).await;
    let bob = Session::sign_in(&base, &r.bob).await;
    let stop = "/ui/apps/alice/web/stop";
    let good = format!("csrf={}", alice.csrf);

    let cases: Vec<Case> = vec![
        (
            "another site's form",
            good.clone(),
            vec![("origin", "https://evil.example")],
        ),
        ("a null origin", good.clone(), vec![("origin", "null")]),
        (
            "sec-fetch-site cross-site",
            good.clone(),
            vec![("sec-fetch-site", "cross-site")],
        ),
        ("no csrf field", String::new(), vec![]),
        ("an empty csrf", "csrf=".into(), vec![]),
        ("a wrong csrf", format!("csrf={}", "0".repeat(64)), vec![]),
        ("bob's csrf", format!("csrf={}", bob.csrf), vec![]),
        (
            "a truncated csrf",
            format!("csrf={}", &alice.csrf[..63]),
            vec![],
        ),
    ];
    for (what, body, headers) in &cases {
        let (status, page) = alice.post(stop, body, headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {page}");
        assert!(page.contains("nothing was done"), "{what}: {page}");
    }
    assert_eq!(
        manifest(&r, "alice", "web"),
        before,
        "no forged post landed"
    );
    // No session at all: sent to sign in, nothing done.
    let anon = client()
        .post(format!("{base}{stop}"))
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::SEE_OTHER);
    // Bob's own valid session cannot stop alice's app: the API refuses it.
    let (status, page) = bob.post(stop, &format!("csrf={}", bob.csrf), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert_eq!(manifest(&r, "alice", "web"), before);
    // The real thing works, from the same origin.
    let origin = base.clone();
    let (status, page) = alice.post(stop, &good, &[("origin", &origin)]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(manifest(&r, "alice", "web").contains("state = \"stopped\""));
}

#[tokio::test]
async fn every_page_sends_the_security_headers_and_the_cookie_is_locked_down() {
    let mut r = ApiRoot::start("phost2", &[]).await;
    let base = r.serve.api_base();
    r.api.create_app(&r.alice, "web", "bb-v1").await.expect(201);
    let s = Session::sign_in(&base, &r.alice).await;
    for page in [
        "/ui/login",
        "/ui/apps",
        "/ui/apps/alice/web",
        "/ui/apps/alice/web/keys",
        "/ui/apps/alice/web/revisions",
        "/ui/apps/nobody/x",
        "/ui/static/portal.js",
    ] {
        let resp = s
            .http
            .get(format!("{base}{page}"))
            .header("cookie", &s.cookie)
            .send()
            .await
            .unwrap();
        let csp = resp
            .headers()
            .get("content-security-policy")
            .map(|v| v.to_str().unwrap().to_string());
        let csp = csp.unwrap_or_else(|| panic!("{page}: no CSP"));
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{page}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{page}: {csp}");
        assert_eq!(
            resp.headers()["x-content-type-options"],
            "nosniff",
            "{page}"
        );
        let html = resp.text().await.unwrap();
        assert!(!html.contains("<script>"), "{page}: no inline script");
    }
    let login = client()
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", r.alice))
        .send()
        .await
        .unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
}

#[tokio::test]
async fn failed_sign_ins_are_counted_by_the_api_limiter() {
    let mut r = ApiRoot::start("phost3", &[]).await;
    let base = r.serve.api_base();
    let http = client();
    let mut statuses = vec![];
    for i in 0..40 {
        let resp = http
            .post(format!("{base}/ui/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token=berth.alice.wrong{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(statuses[0], StatusCode::UNAUTHORIZED);
    assert_eq!(
        *statuses.last().unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
        "{statuses:?}"
    );
    // The same address is locked out of the API too, even with a good token: one limiter.
    let api = r.api.get("/apps", &r.alice).await;
    assert_eq!(api.status, 429, "{}", api.text);
    // And a right token on the sign-in form is refused while locked out.
    let resp = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", r.alice))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// A busybox template whose container logs markup and keeps running.
const LOUD_TEMPLATE: &str = r#"image = "berth-test-busybox:1"
command = ["sh", "-c", "echo '<script>alert(\"log\")</script><img src=x onerror=alert(2)>'; exec sleep 3600"]
workdir = "/"
port = 8080
"#;

#[tokio::test]
async fn markup_in_env_values_logs_and_files_is_shown_as_text() {
    let mut r = ApiRoot::start("phost4", &[]).await;
    let base = r.serve.api_base();
    r.root.write_template("loud-v1", LOUD_TEMPLATE);
    let text = "template = \"loud-v1\"\n[env]\nGREETING = \"<script>alert('env')</script>\"\n";
    r.root.write_manifest("alice", "web", text);
    r.root.wait_running("alice", "web", T).await;
    let dir = r.root.app_dir("alice", "web");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("evil.html"), "<script>alert('file')</script>").unwrap();

    let s = Session::sign_in(&base, &r.alice).await;
    let (_, page) = s.get("/ui/apps/alice/web").await;
    assert!(
        page.contains("&lt;script&gt;alert('env')&lt;/script&gt;"),
        "{page}"
    );
    wait_until(T, "the log page to show the app's output", || async {
        s.get("/ui/apps/alice/web/logs").await.1.contains("onerror")
    })
    .await;
    for path in [
        "/ui/apps/alice/web",
        "/ui/apps/alice/web/logs",
        "/ui/apps/alice/web/files/evil.html",
    ] {
        let (_, page) = s.get(path).await;
        assert!(
            !page.contains("<script>alert") && !page.contains("<img src=x"),
            "{path}: {page}"
        );
    }
    // In a real browser, nothing runs: no dialog opens on any of these pages.
    let b = Browser::start().await;
    crate::portal::sign_in(&b, &base, &r.alice).await;
    for path in [
        "/ui/apps/alice/web",
        "/ui/apps/alice/web/logs",
        "/ui/apps/alice/web/files/evil.html",
    ] {
        b.goto(&format!("{base}{path}")).await;
        // Loaded, and the page's scripts had their turn: a dialog would have opened by now.
        let settled = b.settled().await;
        assert!(settled.is_ok(), "{path}: a script ran: {settled:?}");
        assert!(!b.alert_open().await, "{path}: a script ran");
    }
    // The check above can fail: a page script's dialog is seen the same way.
    b.run_script("setTimeout(() => alert('canary'), 0)").await;
    let canary = b.settled().await;
    assert!(
        canary.as_ref().is_err_and(|e| e.contains("alert")),
        "a dialog went unseen: {canary:?}"
    );
    b.goto(&format!("{base}/ui/apps/alice/web/logs")).await;
    assert!(
        b.text("#log")
            .await
            .contains("<img src=x onerror=alert(2)>"),
        "logs shown as text"
    );
}

#[tokio::test]
async fn path_tricks_through_the_portal_files_routes_reach_nothing() {
    let mut r = ApiRoot::start("phost5", &[]).await;
    let base = r.serve.api_base();
    r.api.create_app(&r.alice, "web", "bb-v1").await.expect(201);
    let dir = r.root.app_dir("alice", "web");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("etc")).unwrap();
    let s = Session::sign_in(&base, &r.alice).await;
    for path in [
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e/%2e%2e/etc/passwd",
        "etc/passwd",
        "%2Fetc%2Fpasswd",
        "a%00b",
    ] {
        let (status, page) = s.get(&format!("/ui/apps/alice/web/files/{path}")).await;
        assert!(status.is_client_error(), "{path}: {status}");
        assert!(!page.contains("root:x:0:0"), "{path}: /etc/passwd leaked");
        let body = format!("csrf={}&etag=x&content=pwned", s.csrf);
        let (status, page) = s
            .post(&format!("/ui/apps/alice/web/files/{path}"), &body, &[])
            .await;
        // Refused for its path (400 invalid_path, 409 symlink_refused, 404), never merely
        // for the made-up etag (412), which would hide a path check that let it through.
        assert!(
            status.is_client_error() && status != StatusCode::PRECONDITION_FAILED,
            "{path}: write {status}: {page}"
        );
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(!passwd.contains("pwned"));
}

#[tokio::test]
async fn a_new_file_is_created_empty_never_over_an_existing_one_and_only_inside() {
    let mut r = ApiRoot::start("phost6", &[]).await;
    let base = r.serve.api_base();
    r.api.create_app(&r.alice, "web", "bb-v1").await.expect(201);
    let dir = r.root.app_dir("alice", "web");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep.js"), "precious").unwrap();
    let s = Session::sign_in(&base, &r.alice).await;
    let form = |path: &str| format!("csrf={}&path={path}", s.csrf);
    let (status, page) = s
        .post("/ui/apps/alice/web/files", &form("lib%2Fnew.js"), &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("lib/new.js created"), "{page}");
    assert_eq!(std::fs::read_to_string(dir.join("lib/new.js")).unwrap(), "");
    let (status, _) = s
        .post("/ui/apps/alice/web/files", &form("keep.js"), &[])
        .await;
    assert_eq!(
        status,
        StatusCode::PRECONDITION_FAILED,
        "an existing file is not replaced"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("keep.js")).unwrap(),
        "precious"
    );
    let (status, _) = s
        .post(
            "/ui/apps/alice/web/files",
            &form("..%2F..%2Fescape.js"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!r.root.path().join("apps/escape.js").exists());
}

/// The hidden `confirm` field of a purge's second step.
fn confirm_in(html: &str) -> String {
    let at = html
        .find("name=\"confirm\" value=\"")
        .expect("a confirm field");
    let rest = &html[at + "name=\"confirm\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[tokio::test]
async fn secrets_revisions_rollback_purge_and_the_admin_pages_work_from_plain_forms() {
    let mut r = ApiRoot::start("phost7", &[]).await;
    let base = r.serve.api_base();
    let created = r.api.create_app(&r.alice, "web", "bb-v1").await;
    created.expect(201);
    let first = manifest(&r, "alice", "web");
    let second = format!("{first}[env]\nCOLOUR = \"blue\"\n");
    let revisions = |n: usize| {
        let (api, alice) = (&r.api, &r.alice);
        async move {
            let v = api.get("/apps/alice/web/revisions", alice).await.json();
            v["revisions"].as_array().map_or(0, Vec::len) >= n
        }
    };
    wait_until(T, "the first revision", || revisions(1)).await;
    let path = "/apps/alice/web/manifest";
    let etag = created.etag();
    let put = r.api.put_manifest(path, &r.alice, &etag, &second);
    put.await.expect(200);
    wait_until(T, "two revisions", || revisions(2)).await;
    let s = Session::sign_in(&base, &r.alice).await;

    // Secrets: set (the value never shown), then delete.
    let body = format!("csrf={}&name=TOKEN&value=s3cr3t-value", s.csrf);
    let (status, page) = s.post("/ui/apps/alice/web/secrets", &body, &[]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("secret TOKEN set") && !page.contains("s3cr3t-value"),
        "{page}"
    );
    assert!(manifest(&r, "alice", "web").contains("TOKEN = \"age:"));
    let body = format!("csrf={}&name=TOKEN", s.csrf);
    let (_, page) = s
        .post("/ui/apps/alice/web/secrets/delete", &body, &[])
        .await;
    assert!(page.contains("secret TOKEN deleted"), "{page}");
    assert!(!manifest(&r, "alice", "web").contains("TOKEN"));

    // Revisions: the diff of revision 2 shows the added line; rolling back to 1 removes it.
    let (_, page) = s.get("/ui/apps/alice/web/revisions?diff=2").await;
    assert!(page.contains("<ins>+ COLOUR = &quot;blue&quot;"), "{page}");
    let body = format!("csrf={}&revision=1", s.csrf);
    let (_, page) = s.post("/ui/apps/alice/web/revisions", &body, &[]).await;
    assert!(page.contains("rolled back to revision 1"), "{page}");
    assert!(!manifest(&r, "alice", "web").contains("COLOUR"));

    // Purge: the API's warning first; a wrongly typed name deletes nothing; the right one does.
    let body = format!("csrf={}&purge=true", s.csrf);
    let (status, page) = s.post("/ui/apps/alice/web/delete", &body, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{page}");
    let token = confirm_in(&page);
    let confirm = |typed: &str| format!("csrf={}&purge=true&confirm={token}&typed={typed}", s.csrf);
    let (status, _) = s
        .post("/ui/apps/alice/web/delete", &confirm("alice%2Fweb2"), &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        r.root.manifest_path("alice", "web").exists(),
        "nothing deleted"
    );
    let (status, page) = s
        .post("/ui/apps/alice/web/delete", &confirm("alice%2Fweb"), &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("deleted alice/web"), "{page}");
    assert!(!r.root.manifest_path("alice", "web").exists());

    // Admin pages: a user's release is refused by the API; an admin sees them.
    let body = format!("csrf={}", s.csrf);
    let (status, page) = s.post("/ui/admin/prune", &body, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("admin role required"), "{page}");
    let admin = Session::sign_in(&base, &r.admin).await;
    let (status, page) = admin.get("/ui/admin/prune").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Nothing is held."), "{page}");
    let (_, page) = admin.get("/ui/admin/audit").await;
    assert!(
        page.contains("DELETE /apps/alice/web?purge=true&amp;confirm=&lt;redacted&gt;"),
        "{page}"
    );
}

#[tokio::test]
async fn a_rename_from_the_portal_goes_through_the_api_and_its_refusals_are_shown() {
    let mut r = ApiRoot::start("phost8", &[]).await;
    let base = r.serve.api_base();
    r.api.create_app(&r.alice, "web", "bb-v1").await.expect(201);
    r.api
        .create_app(&r.alice, "taken", "bb-v1")
        .await
        .expect(201);
    let s = Session::sign_in(&base, &r.alice).await;
    let (_, page) = s.get("/ui/apps/alice/web").await;
    assert!(page.contains("/ui/apps/alice/web/rename"), "a rename form");
    let form = |name: &str| format!("csrf={}&appname={name}", s.csrf);
    let (status, page) = s
        .post("/ui/apps/alice/web/rename", &form("taken"), &[])
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{page}");
    assert!(page.contains("already exists"), "{page}");
    let (status, _) = s
        .post("/ui/apps/alice/web/rename", &form("Bad%2Fname"), &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let forged = "csrf=nope&appname=site";
    let (status, _) = s.post("/ui/apps/alice/web/rename", forged, &[]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "no rename without the form's token"
    );
    assert!(r.root.manifest_path("alice", "web").exists());
    let (status, _) = s
        .post("/ui/apps/alice/web/rename", &form("site"), &[])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "to the renamed app's page");
    let (status, page) = s.get("/ui/apps/alice/site").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("alice/site"), "{page}");
    assert!(manifest(&r, "alice", "site").starts_with("renamed_from = \"web\"\n"));
    assert!(!r.root.manifest_path("alice", "web").exists());
}
