//! Read-only access to the engine for surfaces (the API, later the portal): the container
//! list, reused for [`CONTAINER_CACHE_TTL`] so polling clients don't hammer Docker, and a
//! container's logs. It holds the [`Engine`] privately and exposes no write, so a holder of
//! a `ContainerReader` cannot change a container.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::Stream;
use tokio::sync::Mutex;

use crate::model::observed::Observed;
use crate::runtime::engine::{Engine, EngineError};

/// How long the engine's container list is reused.
pub const CONTAINER_CACHE_TTL: Duration = Duration::from_secs(5);

/// The engine's reads, with a time-bounded copy of the container list.
pub struct ContainerReader {
    engine: Engine,
    /// When the list was fetched, and what. Callers arriving while a refresh runs wait for
    /// it rather than starting their own.
    cached: Mutex<Option<(Instant, Arc<Vec<Observed>>)>>,
}

impl ContainerReader {
    /// A reader over `engine`.
    pub fn new(engine: Engine) -> ContainerReader {
        ContainerReader {
            engine,
            cached: Mutex::new(None),
        }
    }

    /// This instance's containers, fetched when the copy is older than the TTL.
    pub async fn list(&self) -> Result<Arc<Vec<Observed>>, EngineError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, list)) = cached.as_ref() {
            if at.elapsed() < CONTAINER_CACHE_TTL {
                return Ok(list.clone());
            }
        }
        let list = Arc::new(self.engine.list().await?);
        *cached = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// The last `tail` lines container `name` wrote, streamed.
    pub fn logs(
        &self,
        name: &str,
        tail: u32,
    ) -> impl Stream<Item = Result<bytes::Bytes, EngineError>> + Send + 'static {
        self.engine.logs(name, tail)
    }
}
