//! `[proxy]` in berth.toml (docs/guides/deploys-and-rollback.md): the Caddy that puts domain apps on the web, reached
//! through its admin API, and how it gets certificates.

use std::time::Duration;

use serde::Deserialize;

use crate::model::policy::ReservedPort;

/// Where Caddy's admin API answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminEndpoint {
    /// `host:port` over TCP.
    Tcp(String),
    /// A unix socket.
    Unix(std::path::PathBuf),
}

impl std::fmt::Display for AdminEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminEndpoint::Tcp(addr) => f.write_str(addr),
            AdminEndpoint::Unix(path) => write!(f, "unix/{}", path.display()),
        }
    }
}

/// How Caddy gets certificates for berth's domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Public certificates from an ACME CA (Let's Encrypt), Caddy's default.
    Acme,
    /// Certificates from Caddy's own local CA (tests, intranets).
    Internal,
    /// Plain HTTP on `http_port` only.
    Off,
}

/// `[proxy]`: the Caddy that routes domain apps, reached through its admin API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Caddy's admin endpoint, `http://host:port`.
    #[serde(default = "default_caddy_admin")]
    pub caddy_admin: String,
    /// Where Caddy serves plain HTTP.
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    /// Where Caddy serves HTTPS.
    #[serde(default = "default_https_port")]
    pub https_port: u16,
    /// Certificates: `acme`, `internal` or `off`.
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    /// Contact for the ACME account.
    pub acme_email: Option<String>,
    /// How long an old container may finish its requests after a switch.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain: Duration,
    /// Route each domain app through a loopback forwarder of `serve`'s whose target a deploy
    /// moves, so a deploy changes nothing in Caddy (docs/guides/deploys-and-rollback.md).
    /// Off by default: it puts berth in the data path.
    #[serde(default)]
    pub forwarders: bool,
}

fn default_caddy_admin() -> String {
    "http://127.0.0.1:2019".into()
}
fn default_http_port() -> u16 {
    80
}
fn default_https_port() -> u16 {
    443
}
fn default_tls() -> TlsMode {
    TlsMode::Acme
}
fn default_drain() -> Duration {
    Duration::from_secs(10)
}

impl ProxyConfig {
    /// The admin endpoint: `http://host:port`, or `unix//path/to/admin.sock` (Caddy's own
    /// notation for a unix socket).
    pub fn admin_endpoint(&self) -> Result<AdminEndpoint, String> {
        let bad = || {
            format!(
                "caddy_admin {:?} must be http://host:port or unix//path/to/admin.sock",
                self.caddy_admin
            )
        };
        if let Some(path) = self.caddy_admin.strip_prefix("unix/") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(bad());
            }
            return Ok(AdminEndpoint::Unix(path.into()));
        }
        let rest = self.caddy_admin.strip_prefix("http://").ok_or_else(bad)?;
        let addr = rest.trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') || !addr.contains(':') {
            return Err(bad());
        }
        Ok(AdminEndpoint::Tcp(addr.to_string()))
    }

    /// The host ports this Caddy needs: its admin API (when it listens on TCP), `http_port`
    /// and `https_port`. An app publishing on one would take it from Caddy, or fail to start.
    pub fn reserved_ports(&self) -> Vec<ReservedPort> {
        let held = |port, holder: &str| ReservedPort {
            port,
            holder: holder.to_string(),
        };
        let mut out = vec![
            held(self.http_port, "Caddy's HTTP port (http_port in [proxy])"),
            held(
                self.https_port,
                "Caddy's HTTPS port (https_port in [proxy])",
            ),
        ];
        if let Ok(AdminEndpoint::Tcp(addr)) = self.admin_endpoint() {
            if let Some(port) = addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()) {
                out.push(held(port, "Caddy's admin API (caddy_admin in [proxy])"));
            }
        }
        out
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        self.admin_endpoint()?;
        if self.http_port == 0 || self.https_port == 0 || self.http_port == self.https_port {
            return Err("http_port and https_port must be two different ports".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(admin: &str) -> ProxyConfig {
        toml::from_str(&format!("caddy_admin = \"{admin}\"")).unwrap()
    }

    #[test]
    fn the_admin_endpoint_is_tcp_or_a_unix_socket() {
        let tcp = proxy("http://127.0.0.1:2019/").admin_endpoint().unwrap();
        assert_eq!(tcp, AdminEndpoint::Tcp("127.0.0.1:2019".into()));
        let unix = proxy("unix//run/caddy/admin.sock")
            .admin_endpoint()
            .unwrap();
        assert_eq!(unix, AdminEndpoint::Unix("/run/caddy/admin.sock".into()));
        assert_eq!(unix.to_string(), "unix//run/caddy/admin.sock");
        let ports =
            |p: &ProxyConfig| -> Vec<u16> { p.reserved_ports().iter().map(|r| r.port).collect() };
        assert_eq!(ports(&proxy("http://127.0.0.1:2019/")), [80, 443, 2019]);
        assert_eq!(ports(&proxy("unix//run/caddy/admin.sock")), [80, 443]);
        for bad in [
            "https://x:1",
            "http://host",
            "http://h:1/path",
            "unix/relative",
            "unix/",
            "2019",
        ] {
            assert!(proxy(bad).admin_endpoint().is_err(), "{bad}");
        }
    }
}
