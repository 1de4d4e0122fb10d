//! Removal requests: apps whose manifest was deleted through the API (or the portal), and
//! whether the workspace goes too (purge). The API records one after it has removed the
//! manifest. Such a removal was asked for, one app at a time and confirmed by its owner, so
//! the mass-removal guard (which protects against an emptied or half-checked-out state
//! directory) neither holds nor counts it. The pass that removes the app's container gives its
//! pre-delete hook `BERTH_PURGE=1` for a purge and then removes the workspace; the loop settles
//! requests no removal will carry out (`reconcile::loop_state`). Held in memory: a restart
//! before the pass forgets them (the removal is then judged like a hand-deleted file, and a
//! purge's workspace stays).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use crate::model::names::AppKey;

/// One request: when it was made and whether the workspace goes too.
#[derive(Debug, Clone, Copy)]
struct Request {
    at: Instant,
    purge: bool,
}

/// Outstanding removal requests.
#[derive(Debug, Default)]
pub struct RemovalRequests {
    requests: Mutex<HashMap<AppKey, Request>>,
}

impl RemovalRequests {
    /// Records that `key`'s manifest was deleted on request; with `purge`, its coming removal
    /// also drops its workspace.
    pub fn request(&self, key: &AppKey, purge: bool) {
        let at = Instant::now();
        self.lock().insert(key.clone(), Request { at, purge });
    }

    /// Withdraws a request (the manifest is back, or the removal is done).
    pub fn cancel(&self, key: &AppKey) {
        self.lock().remove(key);
    }

    /// Whether `key`'s removal should drop its workspace.
    pub fn wants_purge(&self, key: &AppKey) -> bool {
        self.lock().get(key).is_some_and(|r| r.purge)
    }

    /// Every app whose removal was asked for (the guard lets them through).
    pub fn asked(&self) -> BTreeSet<AppKey> {
        self.lock().keys().cloned().collect()
    }

    /// Every outstanding request, with when it was made.
    pub fn pending(&self) -> Vec<(AppKey, Instant)> {
        self.lock().iter().map(|(k, r)| (k.clone(), r.at)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AppKey, Request>> {
        // A panic while holding this map cannot leave it half-changed: recover it.
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }
}
