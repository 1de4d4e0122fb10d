//! `[http]` in berth.toml: how the API's HTTP server guards itself like a public endpoint.
//! A client has `header_timeout` to send a request's head (and a kept-alive connection may
//! idle that long between requests), `body_timeout` to send its body, and at most
//! `max_connections` connections are served at once (fewer when the descriptor limit is low:
//! the loop, the watcher and the database always keep theirs).

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
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

impl HttpLimits {
    /// Refuses limits no server can run with.
    pub fn check(&self) -> Result<(), String> {
        let second = Duration::from_millis(100);
        if self.header_timeout < second || self.body_timeout < second {
            return Err("header_timeout and body_timeout must be at least 100ms".into());
        }
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        Ok(())
    }
}
