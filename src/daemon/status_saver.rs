//! The status saver of `berth serve`: the board written to the database when it changes,
//! and at least every minute, so `berth status` without a daemon and a restart see it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::error_chain::chain;
use crate::reconcile::status::StatusBoard;
use crate::store::Store;

/// Saves the status board to the database when it changes, and at least every minute so
/// `last_reconcile` stays fresh. (`serve` saves once more after the loop has stopped.)
pub async fn save_status(board: Arc<StatusBoard>, store: Arc<Store>, shutdown: CancellationToken) {
    const EVERY: Duration = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = board.changed.notified() => {}
            _ = tokio::time::sleep(EVERY) => {}
        }
        if !board.is_filled() {
            continue;
        }
        let (board2, store2) = (board.clone(), store.clone());
        let saved = tokio::task::spawn_blocking(move || {
            store2.check_on_disk()?;
            store2.replace_statuses(&board2.snapshot())
        })
        .await;
        if let Ok(Err(e)) = saved {
            warn!(cause = %chain(&e), "cannot save app status to the database");
        }
    }
}
