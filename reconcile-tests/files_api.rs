//! The files API (docs/guides/portal.md) over real HTTP against `berth serve`: listing, reading with
//! etags, etag-checked writes (428, 412, 413), path tricks sent raw (`..`, absolute paths,
//! `%2F`, `%2e%2e`, NUL, backslashes), symlinks planted in a workspace (to `/etc`, to another
//! user's workspace, the workspace itself a link) that are never followed, scope (403, 404),
//! file contents served byte-exact, the audit log, and an edit of a running node app's
//! `server.js` through the API that a deploy then serves.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;

use crate::node_lite;
use crate::support::api::{raw_request, Api, ApiRoot, Resp};
use crate::support::{free_port, wait_until};

const SERVER_JS: &str = "require('http').createServer((q, s) => s.end('v1')).listen(3000);\n";

/// alice's `web` (bb-v1) with a workspace holding `server.js`, `src/a.js` and a
/// `node_modules` that is never listed.
async fn with_workspace(r: &ApiRoot) -> std::path::PathBuf {
    r.api.create_app(&r.alice, "web", "bb-v1").await.expect(201);
    let ws = r.root.app_dir("alice", "web");
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::create_dir_all(ws.join("node_modules/ms")).unwrap();
    std::fs::write(ws.join("server.js"), SERVER_JS).unwrap();
    std::fs::write(ws.join("src/a.js"), "a").unwrap();
    std::fs::write(ws.join("node_modules/ms/index.js"), "ms").unwrap();
    ws
}

async fn put(api: &Api, path: &str, token: &str, pre: Option<(&str, &str)>, body: &[u8]) -> Resp {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend(pre);
    let body = Some(("application/octet-stream", body.to_vec()));
    api.send(Method::PUT, path, &headers, body).await
}

fn blake3_hex(bytes: &[u8]) -> String {
    berth::state::workspace_files::etag(bytes)
}

/// A GET's raw bytes and headers (the test client's `Resp` keeps text only).
async fn get_bytes(
    base: &str,
    path: &str,
    token: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn files_are_listed_read_and_written_with_etags() {
    let r = ApiRoot::start("filesapi", &[]).await;
    let (api, alice) = (&r.api, r.alice.as_str());
    let base = "/apps/alice/web/files";
    r.api.create_app(alice, "fresh", "bb-v1").await.expect(201);
    let none = api.get("/apps/alice/fresh/files", alice).await;
    none.expect(409);
    assert_eq!(none.code(), "no_workspace");
    let ws = with_workspace(&r).await;

    let list = api.get(base, alice).await;
    list.expect(200);
    let files = list.json()["files"].clone();
    assert_eq!(files.as_array().unwrap().len(), 2, "{files}");
    assert_eq!(files[0]["path"], "server.js");
    assert_eq!(files[0]["type"], "file");
    assert_eq!(files[0]["size"], SERVER_JS.len());
    assert_eq!(files[0]["etag"], blake3_hex(SERVER_JS.as_bytes()));
    assert_eq!(files[1]["path"], "src/a.js");
    assert!(!list.text.contains("node_modules"), "{}", list.text);

    let got = api.get(&format!("{base}/server.js"), alice).await;
    got.expect(200);
    assert_eq!(got.text, SERVER_JS);
    assert_eq!(got.etag(), blake3_hex(SERVER_JS.as_bytes()));
    assert_eq!(got.headers["content-type"], "application/octet-stream");
    let etag = got.etag();
    // `%2F` is a `/` inside the workspace: the same file, nothing more.
    let encoded = api.get(&format!("{base}/src%2Fa.js"), alice).await;
    assert_eq!((encoded.status, encoded.text.as_str()), (200, "a"));
    api.get(&format!("{base}/nope.js"), alice).await.expect(404);

    // Writes: If-Match required (428), stale (412), right (200 + the new etag).
    let path = format!("{base}/server.js");
    let no_pre = put(api, &path, alice, None, b"x").await;
    no_pre.expect(428);
    assert_eq!(no_pre.code(), "precondition_required");
    put(api, &path, alice, Some(("if-match", "*")), b"x")
        .await
        .expect(428);
    let stale = put(api, &path, alice, Some(("if-match", "\"0000\"")), b"x").await;
    stale.expect(412);
    assert_eq!(stale.code(), "precondition_failed");
    put(api, &path, alice, Some(("if-none-match", "*")), b"x")
        .await
        .expect(412);
    let quoted = format!("\"{etag}\"");
    let v2 = b"require('http').createServer((q, s) => s.end('v2')).listen(3000);\n";
    let ok = put(api, &path, alice, Some(("if-match", &quoted)), v2).await;
    ok.expect(200);
    assert_eq!(ok.etag(), blake3_hex(v2));
    assert_eq!(ok.json()["created"], false);
    assert_eq!(std::fs::read(ws.join("server.js")).unwrap(), v2);
    put(api, &path, alice, Some(("if-match", &quoted)), b"v3")
        .await
        .expect(412);
    assert_eq!(
        std::fs::read(ws.join("server.js")).unwrap(),
        v2,
        "a stale write changes nothing"
    );

    // Creating: If-None-Match: *, directories made on the way.
    let made = put(
        api,
        &format!("{base}/lib/util/x.js"),
        alice,
        Some(("if-none-match", "*")),
        b"x",
    )
    .await;
    made.expect(201);
    assert_eq!(std::fs::read(ws.join("lib/util/x.js")).unwrap(), b"x");
    let names: Vec<_> = std::fs::read_dir(&ws)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.to_string_lossy().starts_with(".berth-")),
        "{names:?}"
    );

    // Sizes: over the router's 256 KiB JSON limit is fine, over 1 MiB is a JSON 413.
    let medium = vec![b'm'; 300 * 1024];
    put(
        api,
        &format!("{base}/medium.txt"),
        alice,
        Some(("if-none-match", "*")),
        &medium,
    )
    .await
    .expect(201);
    let big = vec![b'b'; 1024 * 1024 + 1];
    let too_big = put(
        api,
        &format!("{base}/big.txt"),
        alice,
        Some(("if-none-match", "*")),
        &big,
    )
    .await;
    too_big.expect(413);
    assert_eq!(too_big.code(), "payload_too_large");
    assert!(!ws.join("big.txt").exists());
    let exact = vec![b'e'; 1024 * 1024];
    put(
        api,
        &format!("{base}/exact.txt"),
        alice,
        Some(("if-none-match", "*")),
        &exact,
    )
    .await
    .expect(201);

    // Delete, with If-Match.
    let x = format!("{base}/lib/util/x.js");
    api.delete(&x, alice).await.expect(428);
    let del = api
        .send(
            Method::DELETE,
            &x,
            &[
                ("authorization", &format!("Bearer {alice}")),
                ("if-match", &format!("\"{}\"", blake3_hex(b"x"))),
            ],
            None,
        )
        .await;
    del.expect(200);
    assert!(!ws.join("lib/util/x.js").exists());

    // The writes are in the audit log with their caller and answer.
    let audit = api.get("/audit?tail=50", &r.admin).await;
    let actions: Vec<String> = audit.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["status"]
            )
        })
        .collect();
    for want in [
        "alice PUT /apps/alice/web/files/server.js 200",
        "alice PUT /apps/alice/web/files/server.js 412",
        "alice PUT /apps/alice/web/files/server.js 428",
        "alice PUT /apps/alice/web/files/lib/util/x.js 201",
        "alice DELETE /apps/alice/web/files/lib/util/x.js 200",
    ] {
        assert!(
            actions.iter().any(|a| a == want),
            "audit lacks {want:?}: {actions:#?}"
        );
    }
}

#[tokio::test]
async fn another_users_token_gets_403_and_unknown_apps_404() {
    let r = ApiRoot::start("filesscope", &[]).await;
    let ws = with_workspace(&r).await;
    let (api, bob) = (&r.api, r.bob.as_str());
    api.get("/apps/alice/web/files", bob).await.expect(403);
    api.get("/apps/alice/web/files/server.js", bob)
        .await
        .expect(403);
    let p = "/apps/alice/web/files/server.js";
    let etag = format!("\"{}\"", blake3_hex(SERVER_JS.as_bytes()));
    put(api, p, bob, Some(("if-match", &etag)), b"bob was here")
        .await
        .expect(403);
    // A 403 is answered before the body is read, even an oversized one.
    put(api, p, bob, Some(("if-match", &etag)), &vec![b'b'; 2 << 20])
        .await
        .expect(403);
    assert_eq!(
        std::fs::read_to_string(ws.join("server.js")).unwrap(),
        SERVER_JS
    );
    api.get("/apps/alice/web/files", "berth.nobody.x")
        .await
        .expect(401);
    // The admin reaches alice's files; an app without a manifest is a 404 whoever asks.
    api.get("/apps/alice/web/files/server.js", &r.admin)
        .await
        .expect(200);
    api.get("/apps/alice/nope/files", &r.alice)
        .await
        .expect(404);
    api.get("/apps/alice/nope/files/server.js", &r.admin)
        .await
        .expect(404);
}

#[tokio::test]
async fn html_and_script_in_files_come_back_byte_exact_and_inert() {
    let r = ApiRoot::start("fileshtml", &[]).await;
    let ws = with_workspace(&r).await;
    let mut body = b"<script>alert('x')</script><img src=x onerror=alert(1)>&amp;\"'\n".to_vec();
    body.extend_from_slice(&[0, 0xff, 0xfe, b'\r', b'\n']);
    let path = "/apps/alice/web/files/index.html";
    put(&r.api, path, &r.alice, Some(("if-none-match", "*")), &body)
        .await
        .expect(201);
    assert_eq!(std::fs::read(ws.join("index.html")).unwrap(), body);
    let (status, headers, bytes) = get_bytes(&r.api.base, path, &r.alice).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, body, "served exactly as written, not escaped");
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
}

/// Sends `method path` raw (no client-side normalization) as alice; (status, body).
async fn raw(
    r: &ApiRoot,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {}", r.alice);
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    let (status, body) = raw_request(&r.api.base, method, path, &headers).await;
    let json =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {body}"));
    (status, json)
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.extend(snapshot(&e.path()));
        } else if ft.is_file() {
            out.push((
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn path_tricks_are_400_invalid_path_and_escape_nothing() {
    let r = ApiRoot::start("filespath", &[]).await;
    with_workspace(&r).await;
    // Files one and two levels above the workspace, which `..` would reach.
    std::fs::write(r.root.path().join("apps/alice/above.txt"), "above").unwrap();
    std::fs::write(r.root.path().join("apps/above.txt"), "above").unwrap();
    let before = snapshot(r.root.path());
    let cases = [
        ("..", "'..' is not allowed"),
        ("../above.txt", "'..' is not allowed"),
        ("src/../../above.txt", "'..' is not allowed"),
        ("../../../../../../../../etc/passwd", "'..' is not allowed"),
        ("%2e%2e/above.txt", "'..' is not allowed"),
        ("%2E%2E%2Fabove.txt", "'..' is not allowed"),
        ("src%2F..%2F..%2Fabove.txt", "'..' is not allowed"),
        ("..%2F..%2F..%2F..%2Fetc%2Fpasswd", "'..' is not allowed"),
        ("%2Fetc%2Fpasswd", "absolute paths are not allowed"),
        ("/etc/passwd", "absolute paths are not allowed"),
        ("%2F%2Fetc/passwd", "absolute paths are not allowed"),
        ("./server.js", "'.' is not allowed"),
        ("src/./a.js", "'.' is not allowed"),
        ("src//a.js", "empty components"),
        ("src/", "empty components"),
        ("a%00b", "NUL is not allowed"),
        ("..%5Cabove.txt", "'\\' is not allowed"),
        ("%5C..%5C..%5Cabove.txt", "'\\' is not allowed"),
        ("a%0Ab", "control characters"),
        ("node_modules/ms/index.js", "node_modules is not served"),
        (".berth-tmp-1", "berth's own"),
    ];
    for (tail, rule) in cases {
        let path = format!("/apps/alice/web/files/{tail}");
        for (method, extra) in [
            ("GET", None),
            ("PUT", Some(("if-none-match", "*"))),
            ("DELETE", Some(("if-match", "\"x\""))),
        ] {
            let (status, body) = raw(&r, method, &path, extra.as_slice()).await;
            assert_eq!(status, 400, "{method} {path}: {body}");
            assert_eq!(
                body["error"]["code"], "invalid_path",
                "{method} {path}: {body}"
            );
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.starts_with("files/") && message.contains(rule),
                "{method} {path}: {message}"
            );
        }
    }
    assert_eq!(
        snapshot(r.root.path())
            .into_iter()
            .filter(|(p, _)| !p.ends_with("serve.log") && !p.ends_with(".redb"))
            .collect::<Vec<_>>(),
        before
            .into_iter()
            .filter(|(p, _)| !p.ends_with("serve.log") && !p.ends_with(".redb"))
            .collect::<Vec<_>>(),
        "nothing changed on disk"
    );
}

#[tokio::test]
async fn symlinks_planted_in_a_workspace_are_never_followed() {
    let r = ApiRoot::start("fileslink", &[]).await;
    let ws = with_workspace(&r).await;
    let api = &r.api;
    // bob's workspace, and a link to it and to /etc inside alice's.
    api.create_app(&r.bob, "api", "bb-v1").await.expect(201);
    let bobs = r.root.app_dir("bob", "api");
    std::fs::create_dir_all(&bobs).unwrap();
    std::fs::write(bobs.join("server.js"), "bob's secret").unwrap();
    std::os::unix::fs::symlink("/etc", ws.join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", ws.join("passwd")).unwrap();
    std::os::unix::fs::symlink(&bobs, ws.join("bobs")).unwrap();
    // alice's `web2` whose workspace itself is a link to bob's.
    api.create_app(&r.alice, "web2", "bb-v1").await.expect(201);
    std::os::unix::fs::symlink(&bobs, r.root.app_dir("alice", "web2")).unwrap();
    let passwd = std::fs::read("/etc/passwd").unwrap();
    let bob_before = snapshot(&bobs);
    let planted = format!("berth-files-api-{}", std::process::id());

    let base = "/apps/alice/web/files";
    let etag_passwd = format!("\"{}\"", blake3_hex(&passwd));
    let etag_bob = format!("\"{}\"", blake3_hex(b"bob's secret"));
    let planted_path = format!("etc/{planted}");
    let attempts = [
        ("passwd", Some(("if-match", etag_passwd.as_str())), "passwd"),
        (
            "etc/passwd",
            Some(("if-match", etag_passwd.as_str())),
            "etc",
        ),
        (planted_path.as_str(), Some(("if-none-match", "*")), "etc"),
        (
            "bobs/server.js",
            Some(("if-match", etag_bob.as_str())),
            "bobs",
        ),
        ("bobs/new.js", Some(("if-none-match", "*")), "bobs"),
    ];
    for (tail, pre, link) in attempts {
        let path = format!("{base}/{tail}");
        let read = api.get(&path, &r.alice).await;
        read.expect(409);
        assert_eq!(read.code(), "symlink_refused", "{path}");
        assert!(
            read.text.contains(&format!("'{link}' is a symlink")),
            "{path}: {}",
            read.text
        );
        assert!(
            !read.text.contains("root:") && !read.text.contains("secret"),
            "{}",
            read.text
        );
        let write = put(api, &path, &r.alice, pre, b"pwned").await;
        write.expect(409);
        assert_eq!(write.code(), "symlink_refused", "{path}");
    }
    let web2 = api.get("/apps/alice/web2/files/server.js", &r.alice).await;
    web2.expect(409);
    assert_eq!(web2.code(), "symlink_refused");
    api.get("/apps/alice/web2/files", &r.alice)
        .await
        .expect(409);
    put(
        api,
        "/apps/alice/web2/files/server.js",
        &r.alice,
        Some(("if-match", &etag_bob)),
        b"pwned",
    )
    .await
    .expect(409);

    // The list names the links as links and shows nothing behind them.
    let list = api.get(base, &r.alice).await;
    list.expect(200);
    let entries: Vec<(String, String)> = list.json()["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for link in ["bobs", "etc", "passwd"] {
        assert!(
            entries.contains(&(link.to_string(), "symlink".to_string())),
            "{entries:?}"
        );
    }
    assert!(
        !entries
            .iter()
            .any(|(p, _)| p.contains('/') && !p.starts_with("src/")),
        "{entries:?}"
    );

    let leaked = Path::new("/etc").join(&planted);
    let escaped = leaked.exists();
    let _ = std::fs::remove_file(&leaked);
    assert!(!escaped, "a write went through the link to /etc");
    assert_eq!(
        std::fs::read("/etc/passwd").unwrap(),
        passwd,
        "/etc/passwd untouched"
    );
    assert_eq!(snapshot(&bobs), bob_before, "bob's workspace untouched");
    for link in ["etc", "passwd", "bobs"] {
        assert!(
            ws.join(link)
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink(),
            "{link} is still the link"
        );
    }
}

#[tokio::test]
async fn editing_server_js_through_the_api_then_deploying_serves_the_new_code() {
    node_lite::ensure_node_image();
    let image = format!(
        "[templates.{}]\nimage = \"{}\"\n",
        node_lite::TEMPLATE,
        node_lite::NODE_IMAGE
    );
    let config = [("hook_timeout", "\"120s\""), ("stop_timeout", "\"3s\"")];
    let r = ApiRoot::start_with("filesnode", &config, &image).await;
    let template = r.root.template_dir(node_lite::TEMPLATE);
    node_lite::copy_dir(
        &node_lite::repo()
            .join("templates")
            .join(node_lite::TEMPLATE),
        &template,
    );
    let (api, alice) = (&r.api, r.alice.as_str());
    let created = api.create_app(alice, "web", node_lite::TEMPLATE).await;
    created.expect(201);
    let port = free_port();
    api.put_manifest(
        "/apps/alice/web/manifest",
        alice,
        &created.etag(),
        &node_lite::manifest(port, "hello", "1"),
    )
    .await
    .expect(200);
    node_lite::wait_for_body(port, "hello from node-lite-v1").await;

    let list = api.get("/apps/alice/web/files", alice).await;
    list.expect(200);
    assert!(list.text.contains("\"server.js\""), "{}", list.text);
    let current = api.get("/apps/alice/web/files/server.js", alice).await;
    current.expect(200);
    let edited = current
        .text
        .replace("from node-lite-v1", "from the files API");
    assert_ne!(edited, current.text);
    let if_match = format!("\"{}\"", current.etag());
    put(
        api,
        "/apps/alice/web/files/server.js",
        alice,
        Some(("if-match", &if_match)),
        edited.as_bytes(),
    )
    .await
    .expect(200);
    assert_eq!(
        std::fs::read_to_string(r.root.app_dir("alice", "web").join("server.js")).unwrap(),
        edited
    );
    api.post("/apps/alice/web/deploy", alice, None)
        .await
        .expect(200);
    wait_until(
        Duration::from_secs(60),
        "the deploy to serve the edited code",
        || async {
            crate::support::http_get(port).is_some_and(|b| b.contains("hello from the files API"))
        },
    )
    .await;
}
