//! An HTTP client for a running `berth serve`: every call returns status, headers and body,
//! and every response body is kept, so a test can check where a secret appeared.

use std::sync::Mutex;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;

/// One answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Resp {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// The error code of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The ETag header without quotes.
    pub fn etag(&self) -> String {
        self.headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim_matches('"')
            .to_string()
    }
}

/// A client bound to one daemon.
pub struct Api {
    pub base: String,
    http: reqwest::Client,
    /// Every response body so far, in order.
    pub seen: Mutex<Vec<String>>,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            base,
            http: reqwest::Client::new(),
            seen: Mutex::default(),
        }
    }

    /// Sends a request. `auth` is a header (name, value) or none; `body` is sent as-is with
    /// `content_type` when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Resp {
        let sent = self.try_send(method, path, headers, body).await;
        sent.unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// [`send`](Self::send), with a failure to send given back rather than a panic.
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Resp, reqwest::Error> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some((ct, bytes)) = body {
            if !ct.is_empty() {
                req = req.header("content-type", ct);
            }
            req = req.body(bytes);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        self.seen.lock().unwrap().push(text.clone());
        Ok(Resp {
            status,
            headers,
            text,
        })
    }

    /// A call with a bearer token and an optional JSON body.
    pub async fn call(&self, method: Method, path: &str, token: &str, json: Option<Value>) -> Resp {
        let auth = format!("Bearer {token}");
        let body = json.map(|j| ("application/json", j.to_string().into_bytes()));
        self.send(method, path, &[("authorization", &auth)], body)
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, json: Option<Value>) -> Resp {
        self.call(Method::POST, path, token, json).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.call(Method::DELETE, path, token, None).await
    }

    /// `PUT .../manifest` with `If-Match`.
    pub async fn put_manifest(&self, path: &str, token: &str, etag: &str, text: &str) -> Resp {
        let auth = format!("Bearer {token}");
        let if_match = format!("\"{etag}\"");
        self.send(
            Method::PUT,
            path,
            &[("authorization", &auth), ("if-match", &if_match)],
            Some(("application/toml", text.as_bytes().to_vec())),
        )
        .await
    }

    /// `POST /apps` for `appname` on `template`, as `token`.
    pub async fn create_app(&self, token: &str, appname: &str, template: &str) -> Resp {
        let body = serde_json::json!({"appname": appname, "templateId": template});
        self.post("/apps", token, Some(body)).await
    }

    /// Issues a client key for `user`/`app` as `token` (expecting 201); returns the key.
    pub async fn issue_key(&self, token: &str, user: &str, app: &str) -> String {
        let issued = self
            .post(&format!("/apps/{user}/{app}/client-keys"), token, None)
            .await;
        issued.expect(201);
        issued.json()["key"].as_str().unwrap().to_string()
    }

    /// A bridge call with `X-App-Key` (or none).
    pub async fn bridge(&self, method: Method, path: &str, key: Option<&str>) -> Resp {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-app-key", k)).into_iter().collect();
        self.send(method, path, &headers, None).await
    }
}

/// `berth users add <name> [--admin]`; returns the token (the last line of stdout).
pub async fn add_user(root: &super::TestRoot, name: &str, admin: bool) -> String {
    let mut args = vec!["users", "add", name];
    if admin {
        args.push("--admin");
    }
    let run = root.berth(&args).await;
    run.expect_code(0);
    run.stdout.lines().last().unwrap_or("").trim().to_string()
}

/// A root with `berth serve` running, an admin `root` and users `alice` and `bob`.
pub struct ApiRoot {
    pub serve: super::Serve,
    pub api: Api,
    pub admin: String,
    pub alice: String,
    pub bob: String,
    /// Declared last so it drops after serve: its containers are removed once serve is gone
    /// and cannot bring them back.
    pub root: super::TestRoot,
}

impl ApiRoot {
    /// Sets it up; `config` overrides berth.toml keys.
    pub async fn start(prefix: &str, config: &[(&str, &str)]) -> ApiRoot {
        ApiRoot::start_with(prefix, config, "").await
    }

    /// [`start`](Self::start) with `extra` tables (such as a `[policy]`) in berth.toml.
    pub async fn start_with(prefix: &str, config: &[(&str, &str)], extra: &str) -> ApiRoot {
        let root = super::TestRoot::new(prefix).await;
        root.config(config, extra);
        let admin = add_user(&root, "root", true).await;
        let alice = add_user(&root, "alice", false).await;
        let bob = add_user(&root, "bob", false).await;
        let mut serve = super::Serve::start(&root);
        let api = Api::new(serve.api_base());
        ApiRoot {
            root,
            serve,
            api,
            admin,
            alice,
            bob,
        }
    }
}

/// Sends one request exactly as given (no client-side URL normalization, so `..` and `%2e`
/// reach the server) and returns the status and body.
pub async fn raw_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the API");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}
