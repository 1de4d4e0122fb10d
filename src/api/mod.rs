//! The HTTP API (SPEC §7), served by `berth serve` on `listen` and on a unix socket beside
//! the database. One `AppState`; one `router()` per module, merged here; one middleware that
//! counts every request for `/metrics` and writes every mutating call to the audit log.
//!
//! **Invariant: handlers change desired state only by writing manifests (through
//! `ManifestFiles`) and then nudging the reconcile loop; they never ask Docker to change
//! anything.** Docker is only read here (the container list, cached, and logs).

mod apps;
mod auth;
mod bridge;
pub mod confirm;
mod error;
mod extract;
mod git;
mod keys;
pub mod limiter;
mod ops;
mod revisions;
mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::{Extension, Router};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tracing::error;

pub use auth::LocalSocket;
pub use error::ApiError;

use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::executor::Executor;
use crate::manifest_files::{Current, ManifestFiles};
use crate::metrics::Metrics;
use crate::observed::Observed;
use crate::status::StatusBoard;
use crate::store::{unix_now, AuditEntry, Store};

/// Largest request body accepted; a manifest is far smaller.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// How long the engine's container list is reused, so polling clients don't hammer Docker.
pub const CONTAINER_CACHE_TTL: Duration = Duration::from_secs(5);

/// Everything a handler can reach.
pub struct AppState {
    /// Paths, instance, quotas.
    pub config: Arc<Config>,
    /// Users, keys, audit.
    pub store: Arc<Store>,
    /// The only way handlers change desired state.
    pub files: ManifestFiles,
    /// The reconcile loop's latest status per app.
    pub board: Arc<StatusBoard>,
    /// For purge requests and engine reads.
    pub executor: Arc<Executor>,
    /// Wakes the reconcile loop after a write.
    pub trigger: Arc<Notify>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Failed-authentication bookkeeping.
    pub limiter: limiter::FailureLimiter,
    /// The engine's container list, reused for [`CONTAINER_CACHE_TTL`].
    pub containers: ContainerCache,
    /// Outstanding confirm tokens for destructive calls.
    pub confirmations: confirm::Confirmations,
    /// Set to the held removals a confirmed call released, for the loop's next pass.
    pub prune_release:
        Arc<std::sync::Mutex<Option<std::collections::BTreeSet<crate::names::AppKey>>>>,
    /// Revision history: API writes note their source here.
    pub history: Arc<crate::history::History>,
    /// Git mode: API writes become commits.
    pub git: Option<Arc<crate::gitsync::GitSync>>,
    /// Held by every API write from before the file changes until it is committed, and by
    /// every git pull: the two never interleave.
    pub state_lock: Arc<Mutex<()>>,
}

impl AppState {
    /// Runs a database call on a blocking thread: redb commits fsync, which must not stall
    /// the async workers (two of them on the reference box).
    pub async fn db<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || call(&store))
            .await
            .map_err(|e| ApiError::Internal(format!("database task failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// The engine (reads only).
    pub fn engine(&self) -> &Engine {
        self.executor.engine()
    }

    /// Tells the reconcile loop that desired state changed.
    pub fn nudge(&self) {
        self.trigger.notify_one();
    }

    /// The state write lock, for a handler that must not race a write (issuing a key).
    pub async fn write_lock(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.state_lock.clone().lock_owned().await
    }

    /// One manifest change by `who`, carried to the end in its own task even if the client
    /// hangs up: take the state lock, run `change` (which writes through `files` and returns
    /// its answer and the new etag, none for a delete), then note the revision's source
    /// (`api:<who>` unless the change noted its own), commit in git mode and wake the loop.
    /// A change that fails writes nothing, so there is nothing to commit.
    pub async fn write<T, F, Fut>(
        self: &Arc<Self>,
        key: &crate::names::AppKey,
        who: &str,
        action: &str,
        change: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<AppState>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(T, Option<String>), ApiError>> + Send + 'static,
    {
        let state = self.clone();
        let (key, who, action) = (key.clone(), who.to_string(), action.to_string());
        tokio::spawn(async move {
            // Held until the commit exists: a pull never lands between the two.
            let _lock = state.write_lock().await;
            let (answer, etag) = change(state.clone()).await?;
            if let Some(etag) = etag {
                state.history.note_source(&key, &etag, format!("api:{who}"));
            }
            state.nudge();
            if let Some(git) = &state.git {
                let file = format!("apps/{}/{}.toml", key.userid, key.appname);
                let message = format!("berth api: {action} {key} (by {who})");
                git.commit_held(&file, &who, &message).await;
            }
            Ok(answer)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("write task failed: {e}")))?
    }

    /// [`write`](Self::write) for a change that leaves a manifest behind; answers with it.
    pub async fn write_file<F, Fut>(
        self: &Arc<Self>,
        key: &crate::names::AppKey,
        who: &str,
        action: &str,
        change: F,
    ) -> Result<Current, ApiError>
    where
        F: FnOnce(Arc<AppState>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Current, ApiError>> + Send + 'static,
    {
        self.write(key, who, action, move |s| async move {
            let c = change(s).await?;
            let etag = c.etag.clone();
            Ok((c, Some(etag)))
        })
        .await
    }

    /// Sets one top-level key of `key`'s manifest (`state`, `restart`), keeping the rest of
    /// the file as the user wrote it.
    pub async fn set_field(
        self: &Arc<Self>,
        key: &crate::names::AppKey,
        who: &str,
        action: &str,
        field: &'static str,
        value: String,
    ) -> Result<Current, ApiError> {
        let k = key.clone();
        self.write_file(key, who, action, move |s| async move {
            Ok(s.files
                .edit(&k, |doc| doc[field] = toml_edit::value(value))
                .await?)
        })
        .await
    }
}

/// A time-bounded copy of the engine's container list. Callers arriving while a refresh
/// runs wait for it rather than starting their own.
#[derive(Default)]
pub struct ContainerCache {
    /// When it was fetched, and what.
    cached: Mutex<Option<(Instant, Arc<Vec<Observed>>)>>,
}

impl ContainerCache {
    /// The list, fetched from `engine` when the copy is older than the TTL.
    pub async fn get(&self, engine: &Engine) -> Result<Arc<Vec<Observed>>, EngineError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, list)) = cached.as_ref() {
            if at.elapsed() < CONTAINER_CACHE_TTL {
                return Ok(list.clone());
            }
        }
        let list = Arc::new(engine.list().await?);
        *cached = Some((Instant::now(), list.clone()));
        Ok(list)
    }
}

/// Every route, with the JSON fallbacks, the body limit and the observing middleware.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(apps::router())
        .merge(keys::router())
        .merge(bridge::router())
        .merge(users::router())
        .merge(ops::router())
        .merge(revisions::router())
        .merge(git::router())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Methods reported by name in metrics; anything else is "other", so clients cannot grow
/// the label set.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts the request and, for mutating methods, appends it to the audit log with the
/// caller the auth extractor found. Calls that never authenticated have no "who" and are
/// only counted (in `berth_api_requests_total`), so anonymous traffic cannot flood the log.
async fn observe(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let path: String = req
        .uri()
        .path_and_query()
        .map_or("", |p| p.as_str())
        .chars()
        .take(512)
        .collect();
    let actor = auth::AuditActor::default();
    req.extensions_mut().insert(actor.clone());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    state.metrics.request(method_label(&method), &route, status);
    let who = actor.0.get().cloned();
    if let (false, Some(actor)) = (
        matches!(method, Method::GET | Method::HEAD | Method::OPTIONS),
        who,
    ) {
        let entry = AuditEntry {
            at: unix_now(),
            actor,
            action: format!("{} {}", method_label(&method), path.escape_debug()),
            status,
        };
        let store = state.store.clone();
        // redb commits fsync: keep them off the async workers.
        match tokio::task::spawn_blocking(move || store.audit(&entry).map_err(|e| (e, entry))).await
        {
            Ok(Err((e, entry))) => {
                error!(cause = %e, action = %entry.action, "cannot write the audit log")
            }
            Err(e) => error!(cause = %e, "audit task failed"),
            Ok(Ok(())) => {}
        }
    }
    resp
}

/// Serves the API on TCP until `shutdown`.
pub async fn serve_tcp(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
}

/// Serves the API on the unix socket until `shutdown`; its callers are local admins.
pub async fn serve_unix(
    listener: UnixListener,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state).layer(Extension(LocalSocket));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
