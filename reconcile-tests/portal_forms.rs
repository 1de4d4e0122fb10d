//! The portal's forms against one-click loss and silent rewrites, over plain HTTP: the
//! create and add-user forms carry the server's name rules, a plain Delete and an admin's
//! Remove user ask on a page of their own first, and a saved file or manifest keeps its line
//! ends although a browser submits every line break as CRLF.

use reqwest::StatusCode;

use crate::portal_hostile::{manifest, Session};
use crate::support::api::ApiRoot;

/// The value of the first hidden field `name` in `html`.
fn field_in(html: &str, name: &str) -> String {
    let start = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&start)
        .unwrap_or_else(|| panic!("no {name} field in {html}"));
    let rest = &html[at + start.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[tokio::test]
async fn forms_follow_the_name_rule_saves_keep_line_ends_and_one_click_removes_nothing() {
    let mut r = ApiRoot::start("phost8", &[]).await;
    let base = r.serve.api_base();
    r.api.create_app(&r.alice, "web", "bb-v1").await.expect(201);
    let dir = r.root.app_dir("alice", "web");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dos.txt"), "a\r\nb\r\n").unwrap();
    std::fs::write(dir.join("unix.txt"), "x\ny\n").unwrap();
    let s = Session::sign_in(&base, &r.alice).await;

    // The create form holds the app name rule the server holds.
    let (_, page) = s.get("/ui/apps").await;
    assert!(
        page.contains(r#"pattern="[a-z][a-z0-9\-]{0,29}""#) && page.contains(r#"maxlength="30""#),
        "{page}"
    );

    // A browser submits every line break as CRLF: the file keeps its own.
    for (file, submitted, want) in [
        ("dos.txt", "a%0D%0Ab%0D%0Ac%0D%0A", "a\r\nb\r\nc\r\n"),
        ("unix.txt", "x%0D%0Ay%0D%0Az%0D%0A", "x\ny\nz\n"),
    ] {
        let path = format!("/ui/apps/alice/web/files/{file}");
        let (_, page) = s.get(&path).await;
        let (etag, eol) = (field_in(&page, "etag"), field_in(&page, "eol"));
        let body = format!("csrf={}&etag={etag}&eol={eol}&content={submitted}", s.csrf);
        let (status, page) = s.post(&path, &body, &[]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains(&format!("{file} saved")), "{page}");
        let bytes = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(String::from_utf8_lossy(&bytes), want, "{file} ({eol})");
    }

    // The manifest editor too.
    let crlf = "template = \"bb-v1\"\r\n# written on Windows\r\n";
    r.root.write_manifest("alice", "web", crlf);
    let (_, page) = s.get("/ui/apps/alice/web").await;
    let (etag, eol) = (field_in(&page, "etag"), field_in(&page, "eol"));
    let submitted = "template+%3D+%22bb-v1%22%0D%0A%23+written+on+Windows%0D%0A%5Benv%5D%0D%0AA+%3D+%221%22%0D%0A";
    let body = format!("csrf={}&etag={etag}&eol={eol}&manifest={submitted}", s.csrf);
    let (_, page) = s.post("/ui/apps/alice/web/manifest", &body, &[]).await;
    assert!(page.contains("manifest saved"), "{page}");
    assert_eq!(
        manifest(&r, "alice", "web"),
        format!("{crlf}[env]\r\nA = \"1\"\r\n")
    );

    // Delete: the first click asks on a page of its own; only its form deletes.
    let body = format!("csrf={}", s.csrf);
    let (status, page) = s.post("/ui/apps/alice/web/delete", &body, &[]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("Delete app alice/web?") && page.contains("Cancel"),
        "{page}"
    );
    assert!(
        r.root.manifest_path("alice", "web").exists(),
        "one click deleted the app"
    );
    let body = format!("csrf={}&confirmed=yes", s.csrf);
    let (status, page) = s.post("/ui/apps/alice/web/delete", &body, &[]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("deleted alice/web"), "{page}");
    assert!(!r.root.manifest_path("alice", "web").exists());

    // Remove user: the same, and the add form holds the user id rule.
    let admin = Session::sign_in(&base, &r.admin).await;
    let (_, page) = admin.get("/ui/admin/users").await;
    assert!(page.contains(r#"pattern="[a-z][a-z0-9]{0,29}""#), "{page}");
    let has_bob = || async {
        let users = r.api.get("/users", &r.admin).await.json();
        let list = users["users"].as_array().cloned().unwrap_or_default();
        list.iter().any(|u| u["name"] == "bob")
    };
    let body = format!("csrf={}&name=bob", admin.csrf);
    let (status, page) = admin.post("/ui/admin/users/remove", &body, &[]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Remove user bob?"), "{page}");
    assert!(has_bob().await, "one click removed bob");
    let body = format!("csrf={}&name=bob&confirmed=yes", admin.csrf);
    let (_, page) = admin.post("/ui/admin/users/remove", &body, &[]).await;
    assert!(page.contains("user bob removed"), "{page}");
    assert!(!has_bob().await);
}
