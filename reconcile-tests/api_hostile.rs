//! Hostile input to the API: names in URLs, bodies, headers. Every answer is a 4xx with a
//! JSON error, never a 500, and nothing on disk changes.

use std::path::Path;

use reqwest::Method;

use crate::support::api::ApiRoot;

/// Every file under `dir` with its bytes, to prove nothing changed.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn hostile_names_bodies_and_headers_are_4xx_and_change_nothing() {
    let r = ApiRoot::start("apihostile", &[]).await;
    let (api, admin) = (&r.api, r.admin.as_str());
    api.create_app(&r.alice, "web", "bb-v1").await.expect(201);
    let state = r.root.path().join("state");
    let before = snapshot(&state);
    let long = "a".repeat(200);

    // Sent raw, so `..` and `%2e%2e` reach the server as written: each is a bad name (400),
    // whichever route and method, and every answer is the JSON error shape.
    let names = [
        "..",
        "%2e%2e",
        "%2E%2E",
        ".",
        "ALICE",
        "Web",
        "h%C3%A9llo",
        "%F0%9F%92%A5",
        long.as_str(),
        "a%2Fb",
        "a%00b",
        "a%0Ab",
        "a.b",
        "-web",
        "web%20",
        "%ff",
        "%",
    ];
    let auth = format!("Bearer {admin}");
    let mut checked = 0;
    for name in names {
        for (method, path) in [
            ("GET", format!("/apps/alice/{name}")),
            ("DELETE", format!("/apps/alice/{name}")),
            ("GET", format!("/apps/{name}/web")),
            ("PUT", format!("/apps/{name}/{name}/manifest")),
            ("POST", format!("/apps/alice/{name}/stop")),
            ("POST", format!("/apps/alice/{name}/deploy")),
            ("GET", format!("/apps/alice/{name}/logs")),
            ("POST", format!("/apps/alice/{name}/client-keys")),
            ("DELETE", format!("/apps/alice/web/client-keys/{name}")),
            ("DELETE", format!("/users/{name}")),
        ] {
            let (status, body) = crate::support::api::raw_request(
                &api.base,
                method,
                &path,
                &[("authorization", &auth), ("if-match", "\"x\"")],
            )
            .await;
            assert_eq!(status, 400, "{method} {path}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body)
                .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {body}"));
            assert_eq!(v["error"]["code"], "bad_request", "{method} {path}: {body}");
            checked += 1;
        }
    }
    assert_eq!(checked, names.len() * 10);
    // The bridge checks the key before the name: no key, no information about names.
    let (status, _) =
        crate::support::api::raw_request(&api.base, "GET", "/bridge/apps/alice/..", &[]).await;
    assert_eq!(status, 401);
    let wrong_method = api
        .send(Method::PATCH, "/apps", &[("authorization", &auth)], None)
        .await;
    wrong_method.expect(405);
    assert_eq!(wrong_method.code(), "method_not_allowed");

    // Bodies: bad JSON, unknown fields, wrong types, wrong content type, 10 MB.
    let auth = format!("Bearer {}", r.alice);
    let post = |body: &'static [u8], ct: &'static str| {
        let auth = auth.clone();
        async move {
            api.send(
                Method::POST,
                "/apps",
                &[("authorization", &auth)],
                Some((ct, body.to_vec())),
            )
            .await
        }
    };
    post(b"{", "application/json").await.expect(400);
    post(b"[]", "application/json").await.expect(422);
    post(
        br#"{"appname":"x","templateId":"bb-v1","extra":1}"#,
        "application/json",
    )
    .await
    .expect(422);
    post(br#"{"appname":5,"templateId":"bb-v1"}"#, "application/json")
        .await
        .expect(422);
    post(br#"{"appname":"x","templateId":"bb-v1"}"#, "text/plain")
        .await
        .expect(415);
    post(br#"{"appname":"x","templateId":"bb-v1"}"#, "")
        .await
        .expect(415);
    let bad_template = post(
        br#"{"appname":"x","templateId":"../../etc"}"#,
        "application/json",
    )
    .await;
    bad_template.expect(422);
    assert_eq!(bad_template.code(), "unknown_template");
    post(
        br#"{"appname":"x","templateId":"no-such"}"#,
        "application/json",
    )
    .await
    .expect(422);
    post(
        br#"{"appname":"Bad Name","templateId":"bb-v1"}"#,
        "application/json",
    )
    .await
    .expect(400);

    // The server answers 413 from the length alone and closes; a client still sending may
    // see that close before the answer (a reset), which is a refusal too. Nothing changes
    // either way (checked at the end).
    let too_large = |sent: Result<crate::support::api::Resp, reqwest::Error>| match sent {
        Ok(r) => {
            r.expect(413);
            assert_eq!(r.code(), "payload_too_large");
        }
        Err(e) => assert!(e.is_request() || e.is_body(), "not a refusal: {e}"),
    };
    let ten_mb = vec![b' '; 10 * 1024 * 1024];
    let auth_only = [("authorization", auth.as_str())];
    let body = Some(("application/json", ten_mb.clone()));
    too_large(api.try_send(Method::POST, "/apps", &auth_only, body).await);
    let etag = api.get("/apps/alice/web", &r.alice).await.etag();
    let headers = [
        ("authorization", auth.as_str()),
        ("if-match", etag.as_str()),
    ];
    let body = Some(("application/toml", ten_mb));
    too_large(
        api.try_send(Method::PUT, "/apps/alice/web/manifest", &headers, body)
            .await,
    );

    // Headers: garbage credentials are 401, never 500.
    for value in [
        "",
        "Bearer",
        "Bearer ",
        "Basic YWxpY2U6eA==",
        "Bearer berth.alice.short",
    ] {
        let resp = api
            .send(Method::GET, "/apps", &[("authorization", value)], None)
            .await;
        resp.expect(401);
    }
    let bytes = api
        .send(
            Method::GET,
            "/apps",
            &[("authorization", "Bearer berth.alice.\u{e9}")],
            None,
        )
        .await;
    assert_eq!(bytes.status, 401, "{}", bytes.text);
    let q = api
        .send(
            Method::DELETE,
            "/apps/alice/web?purge=maybe",
            &[("authorization", &auth)],
            None,
        )
        .await;
    q.expect(400);
    api.send(Method::GET, "/nope", &[], None).await.expect(404);

    assert_eq!(
        snapshot(&state),
        before,
        "hostile calls changed files under state/"
    );
    assert!(!r.serve.log().contains("panicked"), "{}", r.serve.log());
}

/// Sends only the head of a POST announcing a 10 MiB body, and returns what the server
/// answers within 5 s without any of the body (nothing when it waits for the body).
fn answer_without_body(base: &str, path: &str, extra: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n{extra}\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[tokio::test]
async fn the_webhook_reads_no_body_of_a_request_it_refuses() {
    let r = ApiRoot::start("hooknobody", &[]).await;
    let base = r.api.base.clone();
    let answer = tokio::task::spawn_blocking(move || answer_without_body(&base, "/hooks/git", ""))
        .await
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 404"),
        "git mode is off: {answer:?}"
    );
}
