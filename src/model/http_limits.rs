//! `[http]` in berth.toml: how the API's HTTP server guards itself like a public endpoint.
//! A client has `header_timeout` to send a request's head (and a kept-alive connection may
//! idle that long between requests), `body_timeout` to send its body, and at most
//! `max_connections` connections are served at once (fewer when the descriptor limit is low:
//! the loop, the watcher and the database always keep theirs), at most
//! `max_connections_per_address` of them from one client address. A response the client does
//! not read is cut once no byte of it could be sent for `write_timeout`. Past the cap,
//! `reserved_connections` more are accepted that answer only `/healthz` and `/readyz`, one
//! per address, so a probe always finds a slot.

use std::time::Duration;

use serde::Deserialize;

/// The `[http]` table; every key optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpLimits {
    /// Time to send a request's head; also the idle limit of a kept-alive connection.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time to send a request's body, from its head.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Connections served at once on the TCP listener.
    pub max_connections: usize,
    /// Of those, from one client address (a trusted proxy's are not counted per address).
    pub max_connections_per_address: usize,
    /// A response is cut once the client has taken none of it for this long (nginx's
    /// `send_timeout`: between two writes, not for the whole response).
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Past `max_connections`, connections that answer only the probes, one per address.
    pub reserved_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_address: 32,
            write_timeout: Duration::from_secs(30),
            reserved_connections: 16,
        }
    }
}

impl HttpLimits {
    /// Refuses limits no server can run with.
    pub fn check(&self) -> Result<(), String> {
        let second = Duration::from_millis(100);
        let timeouts = [self.header_timeout, self.body_timeout, self.write_timeout];
        if timeouts.iter().any(|t| *t < second) {
            return Err(
                "header_timeout, body_timeout and write_timeout must be at least 100ms".into(),
            );
        }
        let counts = [
            ("max_connections", self.max_connections),
            (
                "max_connections_per_address",
                self.max_connections_per_address,
            ),
            ("reserved_connections", self.reserved_connections),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        Ok(())
    }
}
