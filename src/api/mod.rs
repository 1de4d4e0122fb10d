//! The HTTP API (docs/reference/http-api.md), served by `berth serve` on `listen` and on a unix socket beside
//! the database. One `AppState`; one `router()` per module, merged here; one middleware that
//! counts every request for `/metrics` and writes every mutating call to the audit log.
//!
//! **Invariant: handlers change desired state only by writing manifests (through the
//! `ManifestWriter`, which wakes the reconcile loop); they never ask Docker to change
//! anything.** `AppState` holds no executor and no engine: Docker is only read here, through
//! a `ContainerReader` (the container list, cached, and logs), so a handler that tried to
//! create, start, stop or remove a container would not compile.

mod apps;
mod auth;
pub mod backups;
mod bridge;
mod builds;
pub mod confirm;
pub mod converge;
mod error;
mod extract;
mod files;
mod git;
mod jobs;
mod keys;
pub mod limiter;
mod list_cache;
mod listen;
mod openapi;
mod ops;
mod rename;
mod revisions;
mod secrets;
mod slots;
mod templates;
mod users;
mod write_limit;

use std::future::Future;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::{Extension, Router};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tracing::error;

pub use auth::{source_ip, LocalSocket};
pub use error::ApiError;
pub use ops::BACKUP_ROWS;

use crate::error_chain::chain;

use crate::metrics::Metrics;
use crate::model::config::Config;
use crate::model::names::AppKey;
use crate::reconcile::loop_state::PruneRelease;
use crate::reconcile::progress::ProgressCell;
use crate::reconcile::status::StatusBoard;
use crate::reconcile::trigger::Wake;
use crate::runtime::reader::ContainerReader;
use crate::runtime::removals::RemovalRequests;
use crate::state::files::ManifestFiles;
use crate::state::git::GitSync;
use crate::state::history::History;
use crate::state::workspace_files::WorkspaceFiles;
use crate::state::writer::{Held, ManifestWriter};
use crate::store::{unix_now, AuditEntry, Retention, Store};

/// Largest request body accepted; a manifest is far smaller. (The files API's `PUT` has its
/// own limit, `workspace_files::MAX_FILE_BYTES`.)
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Everything a handler can reach. Note what is absent: the executor and the engine. The API
/// reads containers through a [`ContainerReader`] and changes desired state only through the
/// [`ManifestWriter`]; it cannot make a Docker write.
pub struct AppState {
    /// Paths, instance, quotas.
    pub config: Arc<Config>,
    /// Users, keys, audit.
    pub store: Arc<Store>,
    /// The only way handlers change desired state.
    pub writer: Arc<ManifestWriter>,
    /// The reconcile loop's latest status per app.
    pub board: Arc<StatusBoard>,
    /// The engine's container list (cached) and logs: reads only.
    pub containers: ContainerReader,
    /// Where a confirmed purge is recorded for the pass that removes the app.
    pub removals: Arc<RemovalRequests>,
    /// Wakes the reconcile loop (a released mass removal; writes wake it themselves).
    pub wake: Wake,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Failed-authentication bookkeeping.
    pub limiter: limiter::FailureLimiter,
    /// Mutating calls per caller (token buckets).
    pub writes: write_limit::WriteLimiter,
    /// Outstanding confirm tokens for destructive calls.
    pub confirmations: confirm::Confirmations,
    /// Set to the held removals a confirmed call released, for the loop's next pass.
    pub prune_release: PruneRelease,
    /// Revision history: a rollback notes its own source here.
    pub history: Arc<History>,
    /// Git mode: sync status and the webhook's wake-up.
    pub git: Option<Arc<GitSync>>,
    /// The loop's planner (`GET /plan`, `POST /apply`).
    pub planner: Option<Arc<dyn converge::Planner>>,
    /// The loop's progress, which `POST /apply` waits on.
    pub progress: ProgressCell,
    /// `GET /apps` answers, kept while the board and the container list stand.
    pub list_cache: list_cache::ListCache,
    /// Apps' workspace files (the files API): read and written without following a link.
    pub workspaces: Arc<WorkspaceFiles>,
    /// `[build] git` fetches (`POST .../build` asks for one).
    pub sources: Option<Arc<crate::state::source_fetcher::SourceFetcher>>,
    /// The job scheduler: runs asked for now, jobs with their next run.
    pub jobs: crate::runtime::job_asks::JobAsks,
    /// App backups and restores (none without a daemon or a repository).
    pub backups: Option<Arc<dyn backups::AppBackups>>,
}

impl AppState {
    /// `key`'s manifest as it is on disk; 404 naming the app when it has none.
    pub fn manifest(
        &self,
        key: &crate::model::names::AppKey,
    ) -> Result<crate::state::files::Current, ApiError> {
        self.files()
            .read(key)?
            .ok_or_else(|| ApiError::NotFound(format!("app {key} does not exist")))
    }

    /// Runs a database call on a blocking thread: redb commits fsync, which must not stall
    /// the async workers (two of them on the reference box).
    pub async fn db<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.check_on_disk().and_then(|()| call(&store)))
            .await
            .map_err(|e| ApiError::Internal(format!("database task failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// The manifest files, for reads (writes go through [`write`](Self::write)).
    pub fn files(&self) -> &ManifestFiles {
        self.writer.files()
    }

    /// The state write lock, for a handler that must not race a write (issuing a key).
    pub async fn write_lock(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.writer.lock().await
    }

    /// One manifest change by `who` through the write protocol ([`ManifestWriter::write`]):
    /// `change` gets the state and the [`Held`] right to write, and returns its answer and the
    /// new etag (none for a delete).
    pub async fn write<T, F, Fut>(
        self: &Arc<Self>,
        key: &AppKey,
        who: &str,
        action: &str,
        change: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<AppState>, Held) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(T, Option<String>), ApiError>> + Send + 'static,
    {
        let s = self.clone();
        self.writer
            .write(key, who, action, move |held| change(s, held))
            .await
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
        .merge(converge::router())
        .merge(secrets::router())
        .merge(templates::router())
        .merge(openapi::router())
        .merge(files::router())
        .merge(rename::router())
        .merge(builds::router())
        .merge(jobs::router())
        .merge(backups::router())
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
    // Only a write is audited: a read's path is not copied.
    let audited = !auth::is_read_method(&method);
    let path: String = match audited {
        true => redacted(req.uri().path_and_query().map_or("", |p| p.as_str()))
            .chars()
            .take(512)
            .collect(),
        false => String::new(),
    };
    let actor_handle = auth::AuditActor::default();
    req.extensions_mut().insert(actor_handle.clone());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    state.metrics.request(method_label(&method), &route, status);
    let who = actor_handle.0.get().cloned();
    if let (true, Some(actor)) = (audited, who) {
        let entry = AuditEntry {
            at: unix_now(),
            actor,
            user: actor_handle.user(),
            action: format!("{} {}", method_label(&method), path.escape_debug()),
            status,
        };
        let store = state.store.clone();
        let keep = Retention {
            max_entries: state.config.audit_max_entries,
            keep_secs: u64::from(state.config.audit_keep_days) * 86_400,
        };
        // redb commits fsync: keep them off the async workers.
        let written = tokio::task::spawn_blocking(move || {
            store
                .audit(&entry, keep)
                .map_err(|e| (chain(&e), entry.action))
        });
        match written.await {
            Ok(Err((cause, action))) => {
                error!(cause = %cause, action = %action, "cannot write the audit log")
            }
            Err(e) => error!(cause = %e, "audit task failed"),
            Ok(Ok(())) => {}
        }
    }
    resp
}

/// The path and query as the audit log keeps them: a `confirm` token is a one-time secret,
/// so its value is replaced.
fn redacted(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let pairs: Vec<&str> = query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(k, _)| k);
            match percent_decoded(name).eq_ignore_ascii_case("confirm") {
                true => "confirm=<redacted>",
                false => pair,
            }
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// `%XX` escapes (and `+`) decoded, as the query extractor will decode the name.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves the API, and `beside` it (the portal), on TCP until `shutdown`, with at most
/// `max_connections` connections.
pub async fn serve_tcp(
    listener: TcpListener,
    state: Arc<AppState>,
    beside: Router,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let guard = guard(&state, max_connections);
    let app = router(state).merge(beside);
    listen::serve(listener, app, guard, |a| Some(ConnectInfo(*a)), shutdown).await
}

/// Serves the API on the unix socket until `shutdown`; its callers are local admins.
pub async fn serve_unix(
    listener: UnixListener,
    state: Arc<AppState>,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let guard = guard(&state, max_connections);
    let app = router(state).layer(Extension(LocalSocket));
    listen::serve(listener, app, guard, |_| None, shutdown).await
}

fn guard(state: &AppState, max_connections: usize) -> listen::Guard {
    let http = &state.config.http;
    listen::Guard {
        header_timeout: http.header_timeout,
        body_timeout: http.body_timeout,
        write_timeout: http.write_timeout,
        caps: slots::Caps {
            max: max_connections,
            per_address: http.max_connections_per_address,
            reserve: http.reserved_connections,
            exempt: state.config.trusted_proxies.clone(),
        },
        probes: &["/healthz", "/readyz"],
        metrics: state.metrics.clone(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn confirm_tokens_never_reach_the_audit_log() {
        let r = super::redacted("/apps/a/b?purge=true&confirm=abc123&x=1");
        assert_eq!(r, "/apps/a/b?purge=true&confirm=<redacted>&x=1");
        assert_eq!(
            super::redacted("/ops/prune/release?CONFIRM=zz"),
            "/ops/prune/release?confirm=<redacted>"
        );
        assert_eq!(super::redacted("/apps"), "/apps");
        let encoded = super::redacted("/apps/a/b?purge=true&%63onfirm=secret");
        assert!(!encoded.contains("secret"), "{encoded}");
    }
}
