//! The backup metrics (docs/reference/metrics.md): every run by result, and per app the time
//! of its last success, so an alert on a stale backup is one Prometheus rule
//! (`time() - berth_backup_last_success_timestamp_seconds > 2 * 86400`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: String,
}

/// berth_backup_runs_total{result} and berth_backup_last_success_timestamp_seconds{app}.
pub(super) struct BackupMetrics {
    runs: Family<RunLabels, Counter>,
    last_success: Family<AppLabels, Gauge>,
}

impl BackupMetrics {
    pub(super) fn register(r: &mut Registry) -> BackupMetrics {
        let runs = Family::default();
        r.register(
            "backup_runs",
            "App backups run, by result (succeeded, failed)",
            runs.clone(),
        );
        let last_success = Family::default();
        r.register(
            "backup_last_success_timestamp_seconds",
            "Unix time of each app's last backup that saved a snapshot",
            last_success.clone(),
        );
        BackupMetrics { runs, last_success }
    }

    pub(super) fn run(&self, app: &str, success_at: Option<u64>) {
        let result = if success_at.is_some() {
            "succeeded"
        } else {
            "failed"
        };
        self.runs
            .get_or_create(&RunLabels {
                result: result.into(),
            })
            .inc();
        if let Some(at) = success_at {
            self.seen(app, at);
        }
    }

    pub(super) fn seen(&self, app: &str, at: u64) {
        self.last_success
            .get_or_create(&AppLabels { app: app.into() })
            .set(at as i64);
    }
}
