//! A Docker call that failed: what berth was doing, bollard's error, and the statuses the
//! executor tells apart (404 gone, 409 a conflict another writer can cause).

/// A Docker call that failed, naming what berth was doing.
#[derive(Debug, thiserror::Error)]
#[error("docker {op}: {source}")]
pub struct EngineError {
    /// What berth asked for ("create paas-app-alice-hello", "pull node:22-alpine", ...).
    pub op: String,
    /// bollard's error.
    #[source]
    pub source: bollard::errors::Error,
}

impl EngineError {
    /// The HTTP status Docker answered, if it answered.
    fn status(&self) -> Option<u16> {
        match &self.source {
            bollard::errors::Error::DockerResponseServerError { status_code, .. } => {
                Some(*status_code)
            }
            _ => None,
        }
    }

    /// Whether Docker answered 404: the container (or image) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether Docker answered 409: a name or state conflict, which another writer on the
    /// engine can cause and which says nothing about the spec berth asked for.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
}

pub(super) fn fail(op: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> EngineError {
    let op = op.into();
    move |source| EngineError { op, source }
}
