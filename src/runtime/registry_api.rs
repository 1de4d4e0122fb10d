//! The registry's own HTTP API (distribution v2), for what the engine API cannot do: delete
//! an app's old images from the registry every node pulls from (docs/guides/swarm.md), so it does not
//! keep one image per edit for ever. Only three calls: a repository's tags, a tag's manifest
//! digest, and a manifest's deletion (the registry needs `storage: delete: enabled: true`;
//! its blobs go at the operator's `garbage-collect`).
//!
//! Reached as Docker reaches it: HTTPS trusting the system's CAs and those in
//! `/etc/docker/certs.d/<registry>/`, and plain HTTP only for a loopback registry that
//! speaks it (Docker's default insecure range). `[registry_login]` goes as basic auth; a
//! registry that wants a bearer token is not supported.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{ACCEPT, AUTHORIZATION, HOST};
use hyper::{Method, Request};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::runtime::http1::handshake;

/// The manifest kinds berth's images are pushed as (Docker 20.10 pushes the first).
const MANIFESTS: &str = "application/vnd.docker.distribution.manifest.v2+json, \
                         application/vnd.oci.image.manifest.v1+json";

/// The system's CA bundle (Debian's path).
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryApiError {
    /// Nothing answered, or not over HTTP.
    #[error("registry {registry}: {op}: {source}")]
    Unreachable {
        registry: String,
        op: String,
        #[source]
        source: BoxError,
    },
    /// It answered with an error status.
    #[error("registry {registry}: {op}: answered {status}{hint}")]
    Refused {
        registry: String,
        op: String,
        status: u16,
        hint: &'static str,
    },
}

/// One registry, as berth reaches it.
pub struct RegistryApi {
    /// `host:port`.
    registry: String,
    /// `Basic ...`, from `[registry_login]`.
    auth: Option<String>,
    tls: Arc<rustls::ClientConfig>,
    /// A loopback registry's answer to "plain HTTP?", once asked.
    plain: tokio::sync::OnceCell<bool>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl RegistryApi {
    /// The registry at `registry` (`host:port`), with `login` (user, password) if any.
    pub fn new(registry: &str, login: Option<(&str, &str)>) -> RegistryApi {
        let auth = login.map(|(user, password)| {
            let pair = format!("{user}:{password}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        RegistryApi {
            registry: registry.to_string(),
            auth,
            tls: Arc::new(tls_config(registry)),
            plain: tokio::sync::OnceCell::new(),
        }
    }

    /// The tags of `repo` (the path after the registry); none when it has none.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, RegistryApiError> {
        let path = format!("/v2/{repo}/tags/list");
        let (status, body) = self.call(Method::GET, &path).await?;
        match status {
            200 => {
                let list: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let tags = list["tags"].as_array().cloned().unwrap_or_default();
                Ok(tags
                    .iter()
                    .filter_map(|t| Some(t.as_str()?.to_string()))
                    .collect())
            }
            404 => Ok(Vec::new()),
            _ => Err(self.refused(format!("GET {path}"), status)),
        }
    }

    /// The digest of `repo:tag`'s manifest, if the registry has that tag.
    pub async fn digest(&self, repo: &str, tag: &str) -> Result<Option<String>, RegistryApiError> {
        let path = format!("/v2/{repo}/manifests/{tag}");
        let (status, digest) = self.head_digest(&path).await?;
        match status {
            200 => Ok(digest),
            404 => Ok(None),
            _ => Err(self.refused(format!("HEAD {path}"), status)),
        }
    }

    /// Deletes the manifest `digest` of `repo` (every tag on it goes with it).
    pub async fn delete(&self, repo: &str, digest: &str) -> Result<(), RegistryApiError> {
        let path = format!("/v2/{repo}/manifests/{digest}");
        match self.call(Method::DELETE, &path).await?.0 {
            200..=299 | 404 => Ok(()),
            status => Err(self.refused(format!("DELETE {path}"), status)),
        }
    }

    fn refused(&self, op: String, status: u16) -> RegistryApiError {
        let hint = match status {
            405 => " (deletion is off: `storage: delete: enabled: true` in its config)",
            401 | 403 => " (check [registry_login])",
            _ => "",
        };
        RegistryApiError::Refused {
            registry: self.registry.clone(),
            op,
            status,
            hint,
        }
    }

    async fn head_digest(&self, path: &str) -> Result<(u16, Option<String>), RegistryApiError> {
        let resp = self.send(Method::HEAD, path).await?;
        let digest = resp.headers().get("docker-content-digest");
        let digest = digest.and_then(|d| d.to_str().ok()).map(str::to_string);
        Ok((resp.status().as_u16(), digest))
    }

    async fn call(&self, method: Method, path: &str) -> Result<(u16, Bytes), RegistryApiError> {
        let op = format!("{method} {path}");
        let resp = self.send(method, path).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await;
        let body = body.map_err(|e| self.unreachable(&op, e.into()))?;
        Ok((status, body.to_bytes()))
    }

    /// One request on a new connection: HTTPS, or plain HTTP to a loopback registry that
    /// answers it (asked first: a plain server given a TLS hello may wait for more).
    async fn send(
        &self,
        method: Method,
        path: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, RegistryApiError> {
        let op = format!("{method} {path}");
        let tls = !(is_loopback(&self.registry) && self.plain().await);
        let sent = self.send_on(tls, method, path).await;
        sent.map_err(|e| self.unreachable(&op, e))
    }

    /// Whether the registry speaks plain HTTP: its `/v2/` answers without TLS, and not with
    /// the 400 a TLS server gives a plain request. Asked once.
    async fn plain(&self) -> bool {
        let asked = self.plain.get_or_init(|| async {
            let answer = self.send_on(false, Method::GET, "/v2/").await;
            answer.is_ok_and(|r| r.status() != hyper::StatusCode::BAD_REQUEST)
        });
        *asked.await
    }

    async fn send_on(
        &self,
        tls: bool,
        method: Method,
        path: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, BoxError> {
        let tcp = TcpStream::connect(&self.registry).await?;
        let mut sender = if tls {
            let name = ServerName::try_from(host_of(&self.registry).to_string())?;
            let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
            handshake(connector.connect(name, tcp).await?).await?
        } else {
            handshake(tcp).await?
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.registry)
            .header(ACCEPT, MANIFESTS);
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth);
        }
        let req = req.body(Empty::<Bytes>::new())?;
        Ok(sender.send_request(req).await?)
    }

    fn unreachable(&self, op: &str, source: BoxError) -> RegistryApiError {
        RegistryApiError::Unreachable {
            registry: self.registry.clone(),
            op: op.to_string(),
            source,
        }
    }
}

/// TLS trusting what Docker trusts for `registry`: the system's CAs and the `.crt` files in
/// `/etc/docker/certs.d/<registry>/`. A file that cannot be read adds nothing.
fn tls_config(registry: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let mut files = vec![std::path::PathBuf::from(SYSTEM_CAS)];
    let dir = Path::new("/etc/docker/certs.d").join(registry);
    let listed = std::fs::read_dir(&dir).into_iter().flatten().flatten();
    files.extend(
        listed
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt")),
    );
    for file in files {
        for cert in CertificateDer::pem_file_iter(&file)
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = roots.add(cert);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The host of `host:port` (an IPv6 address without its brackets).
fn host_of(registry: &str) -> &str {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether `registry` is on this machine: 127.0.0.0/8, ::1 or localhost.
fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_a_registry_and_whether_it_is_loopback() {
        assert_eq!(host_of("10.0.0.1:5000"), "10.0.0.1");
        assert_eq!(host_of("registry.local"), "registry.local");
        assert_eq!(host_of("[::1]:5000"), "::1");
        assert!(is_loopback("127.0.0.1:5000") && is_loopback("127.1.2.3:1"));
        assert!(is_loopback("localhost:5000") && is_loopback("[::1]:5000"));
        assert!(!is_loopback("10.0.0.1:5000") && !is_loopback("registry.local:5000"));
    }
}
