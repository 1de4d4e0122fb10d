//! The portal's only way to read or change anything: an in-process request to the API's own
//! router, carrying the signed-in user's token as `Authorization: Bearer`. So a page shows
//! exactly what the API would answer that user, a click is exactly an API call (same rules,
//! same write path, same limits, same audit entry), and the portal has nothing to keep in step.

use axum::body::{Body, Bytes};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, IF_MATCH};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower_service::Service;

use super::layout::Notice;
use super::signin::SignedIn;

/// Largest API answer the portal reads (logs are the big one: 10 000 lines at most).
const MAX_REPLY: usize = 8 * 1024 * 1024;

/// What the API answered.
#[derive(Debug)]
pub struct Reply {
    /// Its status.
    pub status: StatusCode,
    /// Its headers (`ETag`).
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl Reply {
    /// 2xx.
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The body as JSON (`null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The API's error message (`{"error":{"message"}}`), or the status's name.
    pub fn message(&self) -> String {
        let v = self.json();
        v["error"]["message"]
            .as_str()
            .or_else(|| v["warning"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| self.status.to_string())
    }

    /// The `ETag` header without its quotes.
    pub fn etag(&self) -> Option<String> {
        let v = self.headers.get("etag")?.to_str().ok()?;
        Some(v.trim_matches('"').to_string())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A change's outcome as a page shows it: `done` on success, else the API's message with
    /// the API's status.
    pub fn outcome(&self, done: impl Into<String>) -> (Option<Notice>, StatusCode) {
        match self.ok() {
            true => (Some(Notice::Done(done.into())), StatusCode::OK),
            false => (Some(Notice::Failed(self.message())), self.status),
        }
    }

    /// A read's outcome: `notice` and `status` as they were on success, else the API's message
    /// with the API's status.
    pub fn shown(
        &self,
        notice: Option<Notice>,
        status: StatusCode,
    ) -> (Option<Notice>, StatusCode) {
        match self.ok() {
            true => (notice, status),
            false => (Some(Notice::Failed(self.message())), self.status),
        }
    }
}

/// A request to the API as one signed-in user, from the browser's own address (so the API's
/// failure limiter counts that browser, not the portal).
pub struct Call<'a> {
    method: Method,
    uri: String,
    who: &'a SignedIn,
    body: Body,
    content_type: Option<&'static str>,
    if_match: Option<String>,
    create_only: bool,
}

impl<'a> Call<'a> {
    /// `method uri` as `who`.
    pub fn new(method: Method, uri: impl Into<String>, who: &'a SignedIn) -> Self {
        Call {
            method,
            uri: uri.into(),
            who,
            body: Body::empty(),
            content_type: None,
            if_match: None,
            create_only: false,
        }
    }

    /// GET `uri`.
    pub fn get(uri: impl Into<String>, who: &'a SignedIn) -> Self {
        Call::new(Method::GET, uri, who)
    }

    /// With a JSON body.
    pub fn json(mut self, body: &Value) -> Self {
        self.body = Body::from(body.to_string());
        self.content_type = Some("application/json");
        self
    }

    /// With a raw body (a manifest, a file).
    pub fn bytes(mut self, body: impl Into<Bytes>, content_type: &'static str) -> Self {
        self.body = Body::from(body.into());
        self.content_type = Some(content_type);
        self
    }

    /// With `If-Match: "<etag>"`.
    pub fn if_match(mut self, etag: &str) -> Self {
        self.if_match = Some(format!("\"{etag}\""));
        self
    }

    /// With `If-None-Match: *`: create, never replace.
    pub fn create_only(mut self) -> Self {
        self.create_only = true;
        self
    }

    /// Sends it through `api` and reads the answer.
    pub async fn send(self, api: &Router) -> Reply {
        let mut req = Request::builder()
            .method(self.method)
            .uri(&self.uri)
            .header(AUTHORIZATION, format!("Bearer {}", self.who.session.token));
        if let Some(forwarded) = &self.who.forwarded_for {
            req = req.header("x-forwarded-for", forwarded);
        }
        if let Some(peer) = self.who.peer {
            req = req.extension(axum::extract::ConnectInfo(peer));
        }
        if let Some(ct) = self.content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        if let Some(etag) = &self.if_match {
            req = req.header(IF_MATCH, etag);
        }
        if self.create_only {
            req = req.header(axum::http::header::IF_NONE_MATCH, "*");
        }
        let req = match req.body(self.body) {
            Ok(r) => r,
            Err(e) => return failed(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let Ok(resp) = api.clone().call(req).await;
        let (parts, body) = resp.into_parts();
        match http_body_util::Limited::new(body, MAX_REPLY)
            .collect()
            .await
        {
            Ok(collected) => Reply {
                status: parts.status,
                headers: parts.headers,
                body: collected.to_bytes(),
            },
            Err(e) => failed(StatusCode::BAD_GATEWAY, &format!("reading the answer: {e}")),
        }
    }
}

fn failed(status: StatusCode, message: &str) -> Reply {
    let body = serde_json::json!({"error": {"code": "portal", "message": message}});
    Reply {
        status,
        headers: HeaderMap::new(),
        body: Bytes::from(body.to_string()),
    }
}

/// One URL path segment, percent-encoded (a file path's parts, a key id).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A relative file path, each part encoded, joined with `/`.
pub fn path_segments(path: &str) -> String {
    path.split('/').map(segment).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_encoded_so_nothing_changes_the_route() {
        assert_eq!(super::segment("a b/../c?d#e"), "a%20b%2F..%2Fc%3Fd%23e");
        assert_eq!(super::path_segments("src/a b.js"), "src/a%20b.js");
    }
}
