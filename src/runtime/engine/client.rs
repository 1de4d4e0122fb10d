//! The Docker client behind a counter: the only way to reach it is [`Client::call`], which
//! names the operation and counts it, so every request berth makes to the engine is counted
//! (`berth_engine_calls_total{op}`) and none can be made uncounted.
//!
//! It also bounds the writes in time ([`Client::bounded`]): an engine whose ping answers can
//! still hang a create, start, stop or remove (moby#46661), and bollard would wait two
//! minutes, holding the app's change all that while. A write past its bound is given up with
//! an error naming the operation and the container, counted in
//! `berth_engine_timeouts_total{op}`; the loop retries it as it retries any failed action.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;

use super::error::EngineError;

/// Told the operation of every call made to the engine ("list", "create", ...).
pub type CallCounter = Arc<dyn Fn(&'static str) + Send + Sync>;

/// What a write may take when `engine_timeout` is not set: a healthy engine creates, starts
/// and removes a container in well under a second, tens of seconds on a loaded host.
pub const DEFAULT_WRITE_BOUND: Duration = Duration::from_secs(60);

/// The negotiated client and the counters its calls go through.
#[derive(Clone)]
pub(super) struct Client {
    /// Private to this module: reached only through [`Client::call`].
    docker: Docker,
    counter: CallCounter,
    /// Told the operation of every write given up past its bound.
    timeouts: CallCounter,
    /// How long a create, start or remove may take (a stop: its grace period more).
    write_bound: Duration,
}

impl Client {
    /// A client whose calls are told to `counter`.
    pub(super) fn new(docker: Docker, counter: CallCounter) -> Client {
        Client {
            docker,
            counter,
            timeouts: uncounted(),
            write_bound: DEFAULT_WRITE_BOUND,
        }
    }

    /// The client, for one call of operation `op` (counted now).
    pub(super) fn call(&self, op: &'static str) -> &Docker {
        (self.counter)(op);
        &self.docker
    }

    /// How long a write may take (a stop: its grace period more).
    pub(super) fn write_bound(&self) -> Duration {
        self.write_bound
    }

    /// `call`, a write of operation `op` on `what` ("start paas-app-alice-web"): its own
    /// answer, or given up after `bound` with an error saying so (and counted).
    pub(super) async fn bounded<T>(
        &self,
        (op, what): (&'static str, &str),
        bound: Duration,
        call: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<Result<T, bollard::errors::Error>, EngineError> {
        let Ok(answer) = tokio::time::timeout(bound, call).await else {
            (self.timeouts)(op);
            tracing::warn!(
                op,
                action = what,
                bound_s = bound.as_secs(),
                "engine write given up: no answer in time"
            );
            return Err(EngineError {
                op: format!(
                    "{what}: no answer within {}s (engine_timeout): is the engine hung?",
                    bound.as_secs()
                ),
                source: bollard::errors::Error::RequestTimeoutError,
            });
        };
        Ok(answer)
    }
}

impl super::Engine {
    /// This engine giving up a create, start or remove after `bound` (a stop after its grace
    /// period and `bound`), telling `timeouts` of each one given up.
    pub fn bounding_writes(mut self, bound: Duration, timeouts: CallCounter) -> super::Engine {
        self.docker.write_bound = bound;
        self.docker.timeouts = timeouts;
        self
    }
}

/// A counter that counts nothing (`berth apply`, the benches).
pub fn uncounted() -> CallCounter {
    Arc::new(|_| {})
}
