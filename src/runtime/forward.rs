//! berth's own TCP forwarder per domain app (docs/guides/deploys-and-rollback.md): Caddy's
//! route dials a loopback port berth holds for the app, and every connection accepted there
//! goes on to the app's current container. A rollout's switch moves that target here, inside
//! berth, so a deploy changes nothing in Caddy's configuration. That matters because every
//! admin config load makes Caddy 2.6 bind new listeners (`SO_REUSEPORT`) and close the old
//! ones, and a connection still in an old listener's accept queue is reset unanswered.
//!
//! A connection keeps the container it was opened to until it ends, so an old container
//! drains what it has. Caddy opens one connection per request to a forwarder (its keep-alive
//! to these upstreams is off, `reconcile::routes`), so every request sent after a switch
//! reaches the new container.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::model::names::AppKey;

/// How long a connection waits for its target to accept (a container whose accept queue is
/// full for a moment, a target being switched): as Caddy's own `try_duration` did.
const TRY_FOR: Duration = Duration::from_secs(5);
/// The pause between two tries.
const TRY_INTERVAL: Duration = Duration::from_millis(100);

/// Where one app's connections go now (`address:port`, the first that accepts).
type Target = Arc<Mutex<Arc<Vec<String>>>>;

/// One forwarder per app, by app.
#[derive(Default)]
pub struct Forwarders {
    by_app: Mutex<BTreeMap<AppKey, Forwarder>>,
}

/// One app's loopback listener and its target.
struct Forwarder {
    addr: SocketAddr,
    target: Target,
    accept: JoinHandle<()>,
}

impl Drop for Forwarder {
    /// Stops accepting; connections already forwarded run to their end.
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Forwarders {
    /// Sends `key`'s new connections to `dials` from now on, and returns the loopback address
    /// Caddy dials for it (bound on the first call for `key`).
    pub fn point(&self, key: &AppKey, dials: &[String]) -> std::io::Result<SocketAddr> {
        let mut by_app = self.by_app.lock().expect("forwarders");
        if let Some(f) = by_app.get(key) {
            let mut target = f.target.lock().expect("target");
            if target.as_slice() != dials {
                debug!(app = %key, upstream = ?dials, "forwarder: target moved");
                *target = Arc::new(dials.to_vec());
            }
            return Ok(f.addr);
        }
        let f = Forwarder::bind(key, dials)?;
        let addr = f.addr;
        by_app.insert(key.clone(), f);
        Ok(addr)
    }

    /// Closes the listeners of apps `keep` says no to (their routes no longer dial them).
    pub fn retain(&self, keep: impl Fn(&AppKey) -> bool) {
        self.by_app
            .lock()
            .expect("forwarders")
            .retain(|key, _| keep(key));
    }
}

impl Forwarder {
    fn bind(key: &AppKey, dials: &[String]) -> std::io::Result<Forwarder> {
        let std = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std)?;
        let addr = listener.local_addr()?;
        let target: Target = Arc::new(Mutex::new(Arc::new(dials.to_vec())));
        let accept = tokio::spawn(accept(listener, key.clone(), target.clone()));
        debug!(app = %key, %addr, upstream = ?dials, "forwarder: listening");
        Ok(Forwarder {
            addr,
            target,
            accept,
        })
    }
}

async fn accept(listener: TcpListener, key: AppKey, target: Target) {
    loop {
        match listener.accept().await {
            Ok((inbound, _)) => {
                tokio::spawn(forward(inbound, key.clone(), target.clone()));
            }
            Err(e) => {
                // Out of descriptors, most likely: the connection waits in the queue.
                warn!(app = %key, cause = %e, "forwarder: cannot accept");
                tokio::time::sleep(TRY_INTERVAL).await;
            }
        }
    }
}

/// Joins `inbound` to the app's target as it is now, until either side closes.
async fn forward(mut inbound: TcpStream, key: AppKey, target: Target) {
    let Some(mut outbound) = connect(&target).await else {
        let dials = target.lock().expect("target").clone();
        warn!(app = %key, upstream = ?dials, "forwarder: no upstream accepted within {TRY_FOR:?}");
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await {
        debug!(app = %key, cause = %e, "forwarder: connection ended");
    }
}

/// A connection to the first dial of the current target that accepts, tried until
/// [`TRY_FOR`] is over; the target is read again before each try, so a switch is followed.
async fn connect(target: &Target) -> Option<TcpStream> {
    let deadline = Instant::now() + TRY_FOR;
    loop {
        let dials = target.lock().expect("target").clone();
        for dial in dials.iter() {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Ok(Ok(stream)) = tokio::time::timeout(left, TcpStream::connect(dial)).await {
                return Some(stream);
            }
        }
        if Instant::now() + TRY_INTERVAL >= deadline {
            return None;
        }
        tokio::time::sleep(TRY_INTERVAL).await;
    }
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
