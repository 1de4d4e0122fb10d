//! The Docker client behind a counter: the only way to reach it is [`Client::call`], which
//! names the operation and counts it, so every request berth makes to the engine is counted
//! (`berth_engine_calls_total{op}`) and none can be made uncounted.

use std::sync::Arc;

use bollard::Docker;

/// Told the operation of every call made to the engine ("list", "create", ...).
pub type CallCounter = Arc<dyn Fn(&'static str) + Send + Sync>;

/// The negotiated client and the counter its calls go through.
#[derive(Clone)]
pub(super) struct Client {
    /// Private to this module: reached only through [`Client::call`].
    docker: Docker,
    counter: CallCounter,
}

impl Client {
    /// A client whose calls are told to `counter`.
    pub(super) fn new(docker: Docker, counter: CallCounter) -> Client {
        Client { docker, counter }
    }

    /// The client, for one call of operation `op` (counted now).
    pub(super) fn call(&self, op: &'static str) -> &Docker {
        (self.counter)(op);
        &self.docker
    }
}

/// A counter that counts nothing (`berth apply`, the benches).
pub fn uncounted() -> CallCounter {
    Arc::new(|_| {})
}
