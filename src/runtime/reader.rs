//! Read-only access to the engine for surfaces (the API, the portal through it): the container
//! list, taken from the loop's [`Informer`] (so a surface polled while nothing changes asks
//! Docker nothing, and while containers change lists at most every
//! [`CONTAINER_CACHE_TTL`]), and a container's logs. It holds the [`Engine`] privately and
//! exposes no write, so a holder of a `ContainerReader` cannot change a container.

use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;

use crate::model::observed::Observed;
use crate::runtime::engine::{Engine, EngineError};
use crate::runtime::informer::Informer;

/// How old a list events made stale may be and still answer a surface.
pub const CONTAINER_CACHE_TTL: Duration = Duration::from_secs(5);

/// The engine's reads, the container list through the informer.
pub struct ContainerReader {
    engine: Engine,
    informer: Arc<Informer>,
}

impl ContainerReader {
    /// A reader over `engine`, listing through `informer`.
    pub fn new(engine: Engine, informer: Arc<Informer>) -> ContainerReader {
        ContainerReader { engine, informer }
    }

    /// This instance's containers; refused while the engine does not answer its pings, since
    /// a kept list would go on showing what ran before it hung.
    pub async fn list(&self) -> Result<Arc<Vec<Observed>>, EngineError> {
        if let Err(why) = self.informer.engine_answers() {
            return Err(EngineError {
                op: format!("list containers: {why}"),
                source: bollard::errors::Error::RequestTimeoutError,
            });
        }
        let listed = self.informer.list_within(CONTAINER_CACHE_TTL).await?;
        Ok(listed.containers)
    }

    /// Ok while the engine answered its last ping in time (bounded), else why not.
    pub fn engine_answers(&self) -> Result<(), String> {
        self.informer.engine_answers()
    }

    /// The last `tail` lines container `name` wrote, streamed; in swarm mode, what the tasks
    /// of service `name` wrote, on whichever node they run.
    pub fn logs(
        &self,
        name: &str,
        tail: u32,
    ) -> impl Stream<Item = Result<bytes::Bytes, EngineError>> + Send + 'static {
        self.engine.logs(name, tail, self.informer.services())
    }
}
