//! Whether the engine has an image: before a pull (`ensure_image`), and before a build of a
//! built app (docs/guides/builds.md), whose tag names its inputs, so an image that has it is
//! that build and nothing is built again.

use super::{fail, Engine, EngineError};

impl Engine {
    /// Whether the engine has `image`.
    pub(in crate::runtime) async fn has_image(&self, image: &str) -> Result<bool, EngineError> {
        match self.docker.call("inspect_image").inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(fail(format!("inspect image {image}"))(e)),
        }
    }
}
