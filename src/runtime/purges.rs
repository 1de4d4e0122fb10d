//! Purge requests: apps whose deletion asked for their workspace to go too. The API records
//! one after it has removed the manifest; the pass that removes the app's container gives its
//! pre-delete hook `BERTH_PURGE=1` and then removes the workspace; the loop settles requests
//! no removal will carry out (`reconcile::loop_state`). Held in memory: a restart before the
//! pass forgets them, and the workspace stays.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::model::names::AppKey;

/// Outstanding purge requests, with when each was made.
#[derive(Debug, Default)]
pub struct PurgeRequests {
    requests: Mutex<HashMap<AppKey, Instant>>,
}

impl PurgeRequests {
    /// Asks that `key`'s coming removal also drop its workspace.
    pub fn request(&self, key: &AppKey) {
        self.lock().insert(key.clone(), Instant::now());
    }

    /// Withdraws a request (the manifest is back, or the purge is done).
    pub fn cancel(&self, key: &AppKey) {
        self.lock().remove(key);
    }

    /// Whether `key` has a request outstanding.
    pub fn is_requested(&self, key: &AppKey) -> bool {
        self.lock().contains_key(key)
    }

    /// Every outstanding request, with when it was made.
    pub fn pending(&self) -> Vec<(AppKey, Instant)> {
        self.lock().iter().map(|(k, t)| (k.clone(), *t)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AppKey, Instant>> {
        // A panic while holding this map cannot leave it half-changed: recover it.
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }
}
