//! Caddy's admin API: reads berth's objects back and writes only those that differ from what a
//! pass rendered (`reconcile::routes`). berth touches its own servers under
//! `apps.http.servers` and its own TLS policy (found by `@id`), nothing else in Caddy's config;
//! missing parents (a fresh Caddy) are made without replacing anything beside them.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use serde_json::{json, Value};

use crate::model::proxy::AdminEndpoint;
use crate::reconcile::routes::Rendered;
use crate::runtime::http1::handshake;

/// The longest one admin call may take.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The longest one sync may take.
const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A call to Caddy's admin API that failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Caddy could not be reached or the connection broke.
    #[error("caddy admin {addr}: {op}")]
    Unreachable {
        /// The admin address.
        addr: String,
        /// What berth was doing.
        op: String,
        /// The I/O or HTTP error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A rollout asked for a switch before any pass gave the front door its routes.
    #[error("no pass has rendered berth's routes yet")]
    NoPass,
    /// Caddy answered with an error.
    #[error("caddy admin {method} {path}: {status}: {body}")]
    Refused {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Caddy's message.
        body: String,
    },
}

/// One Caddy, through its admin endpoint.
pub struct Caddy {
    endpoint: AdminEndpoint,
    /// `endpoint` as shown in errors and sent as `Host`.
    addr: String,
    /// Writes made so far (POST, PATCH, DELETE), for metrics and tests.
    writes: AtomicU64,
}

impl Caddy {
    /// Caddy's admin API at `addr` (`host:port`).
    pub fn new(endpoint: AdminEndpoint) -> Caddy {
        Caddy {
            addr: endpoint.to_string(),
            endpoint,
            writes: AtomicU64::new(0),
        }
    }

    /// Makes Caddy hold exactly `rendered` of berth's objects; returns the writes it made
    /// (zero when Caddy already matched).
    /// Order matters to Caddy: a new TLS policy goes in before the servers that need it (else
    /// automatic HTTPS starts a public ACME order for a new name), servers are removed before
    /// others are set (a port moves between them), and a policy goes only after its servers.
    /// The whole sync is bounded by [`SYNC_TIMEOUT`], so a hung Caddy cannot hold the loop.
    pub async fn sync(
        &self,
        rendered: &Rendered,
        tls_id: &str,
        servers_owned: &[String],
    ) -> Result<u64, ProxyError> {
        let run = async {
            let before = self.writes.load(Ordering::Relaxed);
            let policy = rendered.tls_policy.as_ref().map(|(_, p)| p);
            if policy.is_some() {
                self.sync_tls(policy, tls_id).await?;
            }
            for name in servers_owned
                .iter()
                .filter(|n| !rendered.servers.contains_key(*n))
            {
                self.remove(&["apps", "http", "servers", name.as_str()])
                    .await?;
            }
            for (name, want) in &rendered.servers {
                self.set(&["apps", "http", "servers", name.as_str()], want)
                    .await?;
            }
            if policy.is_none() {
                self.sync_tls(None, tls_id).await?;
            }
            Ok(self.writes.load(Ordering::Relaxed) - before)
        };
        match tokio::time::timeout(SYNC_TIMEOUT, run).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out(format!("sync (no answer within {SYNC_TIMEOUT:?})"))),
        }
    }

    fn timed_out(&self, op: String) -> ProxyError {
        ProxyError::Unreachable {
            addr: self.addr.clone(),
            op,
            source: "timed out".into(),
        }
    }

    /// Puts `want` at `keys` unless it is there already. Missing parents are made by one
    /// POST at the deepest one that exists, so nothing beside them is replaced.
    async fn set(&self, keys: &[&str], want: &Value) -> Result<(), ProxyError> {
        if self.get(&config_path(keys)).await?.as_ref() == Some(want) {
            return Ok(());
        }
        let mut depth = keys.len() - 1;
        while depth > 0 && !self.has(&config_path(&keys[..depth])).await? {
            depth -= 1;
        }
        let value = keys[depth + 1..]
            .iter()
            .rev()
            .fold(want.clone(), |v, k| json!({ *k: v }));
        if depth == 0 && !self.has("/config/").await? {
            // An empty Caddy: the whole config is null, so set it from the top.
            return self
                .write(Method::POST, "/config/", &json!({ keys[0]: value }))
                .await;
        }
        self.write(Method::POST, &config_path(&keys[..=depth]), &value)
            .await
    }

    /// Whether `path` holds something other than null.
    async fn has(&self, path: &str) -> Result<bool, ProxyError> {
        Ok(self.get(path).await?.is_some_and(|v| !v.is_null()))
    }

    async fn remove(&self, keys: &[&str]) -> Result<(), ProxyError> {
        let path = config_path(keys);
        // A missing key under an existing map reads as `null`: nothing to remove.
        if self.has(&path).await? {
            self.write(Method::DELETE, &path, &Value::Null).await?;
        }
        Ok(())
    }

    /// Berth's TLS policy, found by its `@id`: replaced, appended, or removed. It is looked
    /// for in the TLS app's policies, read whole: Caddy logs an error for every lookup of an
    /// unknown id, which would be one per resync wherever berth wants no policy.
    async fn sync_tls(&self, want: Option<&Value>, id: &str) -> Result<(), ProxyError> {
        let by_id = format!("/id/{id}");
        let keys = ["apps", "tls", "automation", "policies"];
        let tls = self.get("/config/apps/tls").await?;
        let policies = tls.as_ref().and_then(|t| t.pointer("/automation/policies"));
        let have = (policies.and_then(Value::as_array).into_iter().flatten())
            .find(|p| p.get("@id").and_then(Value::as_str) == Some(id));
        match (want, have) {
            (Some(w), Some(h)) if w == h => Ok(()),
            (Some(w), Some(_)) => self.write(Method::PATCH, &by_id, w).await,
            (Some(w), None) => match policies {
                // First in the list: Caddy uses the first policy that matches a name.
                Some(Value::Array(_)) => {
                    let first = format!("{}/0", config_path(&keys));
                    self.write(Method::PUT, &first, w).await
                }
                _ => self.set(&keys, &json!([w])).await,
            },
            (None, Some(_)) => self.write(Method::DELETE, &by_id, &Value::Null).await,
            (None, None) => Ok(()),
        }
    }

    /// The JSON at `path`, or `None` when Caddy has nothing there.
    async fn get(&self, path: &str) -> Result<Option<Value>, ProxyError> {
        let (status, body) = self.call(Method::GET, path, None).await?;
        match status {
            200 => Ok(Some(serde_json::from_slice(&body).unwrap_or(Value::Null))),
            400 | 404 => Ok(None),
            _ => Err(refused("GET", path, status, &body)),
        }
    }

    async fn write(&self, method: Method, path: &str, body: &Value) -> Result<(), ProxyError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let body = (method != Method::DELETE).then(|| body.to_string());
        let (status, answer) = self.call(method.clone(), path, body).await?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(refused(method.as_str(), path, status, &answer))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Bytes), ProxyError> {
        let op = format!("{method} {path} (no answer within {CALL_TIMEOUT:?})");
        match tokio::time::timeout(CALL_TIMEOUT, self.call_once(method, path, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(self.timed_out(op)),
        }
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Bytes), ProxyError> {
        let op = format!("{method} {path}");
        let unreachable = |e: Box<dyn std::error::Error + Send + Sync>| ProxyError::Unreachable {
            addr: self.addr.clone(),
            op: op.clone(),
            source: e,
        };
        let mut sender = match &self.endpoint {
            AdminEndpoint::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| unreachable(e.into()))?;
                handshake(stream).await.map_err(|e| unreachable(e.into()))?
            }
            AdminEndpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| unreachable(e.into()))?;
                handshake(stream).await.map_err(|e| unreachable(e.into()))?
            }
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| unreachable(e.into()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(e.into()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.into()))?
            .to_bytes();
        Ok((status, bytes))
    }
}

impl Caddy {
    /// The `Host` header Caddy's admin API accepts: the TCP address it listens on, or an
    /// empty one on a unix socket.
    fn host(&self) -> &str {
        match &self.endpoint {
            AdminEndpoint::Tcp(addr) => addr,
            AdminEndpoint::Unix(_) => "",
        }
    }
}

fn config_path(keys: &[&str]) -> String {
    format!("/config/{}", keys.join("/"))
}

fn refused(method: &str, path: &str, status: u16, body: &[u8]) -> ProxyError {
    ProxyError::Refused {
        method: method.to_string(),
        path: path.to_string(),
        status,
        body: String::from_utf8_lossy(body).chars().take(300).collect(),
    }
}
