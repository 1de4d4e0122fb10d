//! Records the manifest versions the reconcile loop takes up into the revision history, and
//! remembers where a pending write came from (the API, a git pull) so its revision can say so;
//! anything else is a `file` edit.
//!
//! **A revision is the text a pass parsed and the spec hash that pass derived from it**, so
//! the two always belong together; nothing is read again from disk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use crate::model::desired::TakenUp;
use crate::model::names::AppKey;
use crate::state::files::etag;
use crate::store::{unix_now, Store};

/// Sources noted at most; the oldest notes are dropped beyond this.
const MAX_NOTES: usize = 1000;

/// The recorder `serve` hands to the reconcile loop.
pub struct History {
    /// Where revisions go.
    store: Arc<Store>,
    /// Revisions kept per app.
    keep: usize,
    /// The etag last recorded (or found current) per app, so an unchanged manifest costs a hash.
    last: Mutex<HashMap<AppKey, String>>,
    /// Source of an expected version: (app, etag) -> `api:alice`, `git:<sha>`.
    notes: Mutex<HashMap<(AppKey, String), String>>,
    /// The newest pass recorded. Held for a whole run: runs go one at a time, and a run for an
    /// older pass that comes late records nothing over a newer one.
    newest_pass: Mutex<u64>,
}

impl History {
    /// A recorder keeping `keep` revisions per app.
    pub fn new(store: Arc<Store>, keep: usize) -> History {
        History {
            store,
            keep,
            last: Mutex::default(),
            notes: Mutex::default(),
            newest_pass: Mutex::default(),
        }
    }

    /// The next time `key`'s file has etag `etag`, its revision's source is `source`.
    pub fn note_source(&self, key: &AppKey, etag: &str, source: String) {
        let mut notes = self.notes.lock().expect("notes");
        if notes.len() >= MAX_NOTES {
            notes.clear();
        }
        notes.insert((key.clone(), etag.to_string()), source);
    }

    /// Records a new revision for every manifest pass `pass` (numbered upwards) took up whose
    /// text changed since it was last recorded. Blocking: call it from a blocking thread.
    pub fn record(&self, pass: u64, taken: &[TakenUp]) {
        let mut newest = self.newest_pass.lock().expect("recorder");
        if pass < *newest {
            return;
        }
        *newest = pass;
        for app in taken {
            let tag = etag(app.text.as_bytes());
            if self.last.lock().expect("last").get(&app.key) == Some(&tag) {
                continue;
            }
            let source = self
                .notes
                .lock()
                .expect("notes")
                .remove(&(app.key.clone(), tag.clone()))
                .unwrap_or_else(|| "file".into());
            match self.store.record_revision(
                &app.key,
                &app.text,
                &app.hash,
                &source,
                unix_now(),
                self.keep,
            ) {
                Ok(Some(n)) => {
                    info!(app = %app.key, revision = n, source = %source, "recorded revision")
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(app = %app.key, cause = %crate::error_chain::chain(&e), "cannot record the revision");
                    continue;
                }
            }
            self.last.lock().expect("last").insert(app.key.clone(), tag);
        }
    }
}
