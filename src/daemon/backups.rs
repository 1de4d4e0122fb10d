//! The daemon's side of app backups: finds the app as the files describe it now (a scan under
//! the state lock, like a pass's), has `runtime::backup` do the work in containers, and
//! records every outcome in the database and the metrics, so a failure is visible until a
//! backup succeeds after it. Never called from the reconcile loop.

use std::sync::Arc;

use serde_json::{json, Value};
use tracing::{error, info};

use crate::api::backups::{AppBackups, Later};
use crate::api::ApiError;
use crate::error_chain::chain;
use crate::metrics::Metrics;
use crate::model::config::Config;
use crate::model::desired::{DesiredApp, Entry};
use crate::model::names::AppKey;
use crate::runtime::backup::{BackupError, Backups};
use crate::store::{unix_now, Store};

/// What the API's backup routes run on.
pub struct BackupService {
    pub(crate) config: Arc<Config>,
    pub(crate) state_lock: Arc<tokio::sync::Mutex<()>>,
    pub(crate) backups: Backups,
    pub(crate) store: Arc<Store>,
    pub(crate) metrics: Arc<Metrics>,
}

impl BackupService {
    /// Sets the metrics' last-success gauge from the database (at start).
    pub fn seed_metrics(&self) {
        match self.store.backup_statuses() {
            Ok(all) => {
                for (app, s) in all {
                    if let Some(at) = s.last_success {
                        self.metrics.backup_seen(&app, at);
                    }
                }
            }
            Err(e) => error!(cause = %chain(&e), "cannot read the backup statuses"),
        }
    }

    /// `key` as its manifest describes it now; a frozen or refused app is a conflict.
    async fn app(&self, key: &AppKey) -> Result<DesiredApp, ApiError> {
        let config = self.config.clone();
        let held = self.state_lock.lock().await;
        let desired =
            tokio::task::spawn_blocking(move || crate::state::scan::load_desired(&config))
                .await
                .map_err(|e| ApiError::Internal(format!("scan task failed: {e}")))?
                .map_err(|e| ApiError::Internal(chain(&e)))?;
        drop(held);
        match desired.apps.get(key) {
            Some(Entry::Valid(app)) => Ok((**app).clone()),
            Some(Entry::Frozen(why) | Entry::OverQuota(why)) => Err(ApiError::Conflict(format!(
                "{key} is not running as its files say: {why}"
            ))),
            Some(Entry::Refused(v)) => Err(ApiError::Conflict(format!("{key} is refused: {v}"))),
            None => Err(ApiError::NotFound(format!("app {key} does not exist"))),
        }
    }

    /// Records one backup's outcome (database, metrics, log).
    async fn record(&self, key: &AppKey, outcome: Result<&str, &str>) {
        let at = unix_now();
        let (store, k) = (self.store.clone(), key.clone());
        let (ok, why) = match outcome {
            Ok(id) => (Some(id.to_string()), None),
            Err(w) => (None, Some(w.to_string())),
        };
        let saved = tokio::task::spawn_blocking(move || {
            let outcome = match (&ok, &why) {
                (Some(id), _) => Ok(id.as_str()),
                (_, w) => Err(w.as_deref().unwrap_or_default()),
            };
            store.record_backup(&k, at, outcome)
        })
        .await;
        if let Ok(Err(e)) = saved {
            error!(app = %key, cause = %chain(&e), "cannot record the backup's outcome");
        }
        self.metrics
            .backup(&key.to_string(), outcome.is_ok().then_some(at));
    }

    async fn run_now(&self, key: AppKey) -> Result<Value, ApiError> {
        let app = self.app(&key).await?;
        match self.backups.run(&app, "manual").await {
            Ok(taken) => {
                self.record(&key, Ok(&taken.id)).await;
                Ok(json!({
                    "snapshot": short(&taken.id),
                    "id": taken.id,
                    "retention_error": taken.retention_error,
                }))
            }
            Err(e) => {
                let why = chain(&e);
                error!(app = %key, cause = %why, "backup failed");
                self.record(&key, Err(&why)).await;
                Err(answer(e))
            }
        }
    }

    async fn restore_now(&self, key: AppKey, snapshot: Option<String>) -> Result<Value, ApiError> {
        let app = self.app(&key).await?;
        let restored = self
            .backups
            .restore(&app, snapshot.as_deref())
            .await
            .map_err(|e| {
                error!(app = %key, cause = %chain(&e), "restore failed");
                answer(e)
            })?;
        self.record(&key, Ok(&restored.safety)).await;
        info!(app = %key, snapshot = %restored.snapshot, "restore done");
        Ok(json!({
            "restored": short(&restored.snapshot),
            "safety_snapshot": short(&restored.safety),
        }))
    }
}

impl AppBackups for BackupService {
    fn run(&self, key: AppKey) -> Later<'_> {
        Box::pin(self.run_now(key))
    }

    fn list(&self, key: AppKey) -> Later<'_> {
        Box::pin(async move {
            self.app(&key).await?;
            let snapshots = self.backups.list(&key).await.map_err(answer)?;
            Ok(json!({ "snapshots": snapshots }))
        })
    }

    fn restore(&self, key: AppKey, snapshot: Option<String>) -> Later<'_> {
        Box::pin(self.restore_now(key, snapshot))
    }
}

/// restic's short id: the first 8 hex digits.
fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// How a backup error is answered: the reason is the caller's to see (it is about their
/// app), except an engine or file failure, which is the server's.
fn answer(e: BackupError) -> ApiError {
    let message = chain(&e);
    match e {
        BackupError::Unsupported(_) => ApiError::Unprocessable {
            code: "no_backup",
            message,
        },
        BackupError::NoSnapshot(_) => ApiError::NotFound(message),
        BackupError::Failed(_) => ApiError::Refused {
            status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            code: "backup_failed",
            message,
        },
        BackupError::Engine(_) | BackupError::Io { .. } => ApiError::Internal(message),
    }
}

/// The service `serve` hands the API, or none (logged) when the repository's password cannot
/// be opened: everything else runs on, and the backup routes answer 503.
pub fn service(
    config: Arc<Config>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    state_lock: Arc<tokio::sync::Mutex<()>>,
    exec: &crate::runtime::executor::Executor,
) -> Option<Arc<dyn AppBackups>> {
    let password = match crate::state::backup_key::ensure(&config) {
        Ok(p) => p,
        Err(why) => {
            error!(cause = %why, "app backups are off: the repository's password cannot be opened");
            return None;
        }
    };
    let backups = Backups::new(
        exec.engine().clone(),
        &config,
        password,
        exec.holds().clone(),
    );
    let s = BackupService {
        config,
        state_lock,
        backups,
        store,
        metrics,
    };
    s.seed_metrics();
    Some(Arc::new(s))
}
