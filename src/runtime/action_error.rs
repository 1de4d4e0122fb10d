//! Why an app's change failed (`ActionError`): each cause keeps its source, and the loop tells
//! apart the failures it retries from the refusals of a spec (a rollback, a failed build).

use crate::reconcile::plan::short;
use crate::runtime::caddy::ProxyError;
use crate::runtime::engine::EngineError;
use crate::runtime::hooks::HookError;

/// Why an app's change failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A hook failed or timed out.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// Docker refused or was unreachable.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// berth's rules between users' networks could not be brought in line, so no container
    /// joins a user's network (it would be reachable from other users' containers).
    #[error("isolating users' networks: {0}")]
    Isolation(#[from] crate::runtime::isolation::IsolationError),
    /// The app's workspace (or its user's directory) is a link or not a directory: berth
    /// will not run hooks in it or mount it, wherever it points.
    #[error("workspace {path} is {what}; berth does not follow it (remove it to let berth make a real directory)")]
    Workspace {
        /// The offending path.
        path: std::path::PathBuf,
        /// "a symlink", "not a directory".
        what: &'static str,
    },
    /// The workspace a running app's container mounts is gone (removed or moved). Nothing is
    /// touched: the running container keeps serving, and the change waits for the directory.
    #[error("workspace {path} is missing (removed or moved?); the app's container mounts it, so berth changes nothing for the app until it is back: restore or move it back, or make the directory (an empty one starts the app without its files)")]
    WorkspaceMissing {
        /// The workspace's path.
        path: std::path::PathBuf,
    },
    /// The new container failed its health check (or exited) and was removed; the old one
    /// is as it was. Not retried until the manifest asks for another spec.
    #[error("rolled back: the new container (spec {}) {reason}", short(hash))]
    RolledBack {
        /// The spec hash that failed.
        hash: String,
        /// The health check it failed (boxed: the error stays small on the happy path).
        health: Option<Box<crate::model::health::HealthCheck>>,
        /// Why, with its last log lines.
        reason: String,
    },
    /// The image's build failed on its inputs; what runs is untouched. Not built again until
    /// the inputs (so the spec) change.
    #[error("the image of spec {} was not built: {reason}", short(hash))]
    BuildFailed {
        /// The spec hash whose image failed.
        hash: String,
        /// Why, with the log's last lines.
        reason: String,
    },
    /// A build could not run (its CLI, its log); tried again.
    #[error(transparent)]
    Build(#[from] crate::runtime::builder::BuildError),
    /// The proxy could not switch to the new container; it was removed and is tried again.
    #[error("switching the route: {0}")]
    Proxy(#[from] ProxyError),
    /// The template's shared install failed; the old container, if any, is untouched.
    #[error(transparent)]
    Install(#[from] crate::runtime::install::InstallError),
    /// A rename could not take the old app over; nothing of it was lost.
    #[error("rename: {0}")]
    Rename(String),
    /// The plan and the desired state disagree (a bug, reported rather than panicking).
    #[error("internal: {0}")]
    Internal(String),
}
