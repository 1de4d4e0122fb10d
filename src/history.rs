//! Records the manifest versions the reconcile loop takes up into the revision history, and
//! remembers where a pending write came from (the API, a git pull) so its revision can say so;
//! anything else is a `file` edit.
//!
//! **The recorded spec hash is computed from the recorded text**, not taken from the pass, so
//! the two always belong together even when the file changes between the pass and the read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use crate::config::Config;
use crate::manifest::Manifest;
use crate::manifest_files::etag;
use crate::names::AppKey;
use crate::spec::ContainerSpec;
use crate::store::{unix_now, Store};
use crate::template::Template;

/// Sources noted at most; the oldest notes are dropped beyond this.
const MAX_NOTES: usize = 1000;

/// The recorder `serve` hands to the reconcile loop.
pub struct History {
    /// Paths and templates, to derive spec hashes.
    config: Arc<Config>,
    /// Where revisions go.
    store: Arc<Store>,
    /// Revisions kept per app.
    keep: usize,
    /// The etag last recorded (or found current) per app, so unchanged files cost one read.
    last: Mutex<HashMap<AppKey, String>>,
    /// Source of an expected version: (app, etag) -> `api:alice`, `git:<sha>`.
    notes: Mutex<HashMap<(AppKey, String), String>>,
    /// The state write lock: a recording run reads the files under it, so it never reads a
    /// file git is rewriting.
    state_lock: Arc<tokio::sync::Mutex<()>>,
    /// Held for a whole recording run.
    running: Mutex<()>,
}

impl History {
    /// A recorder keeping `keep` revisions per app.
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        keep: usize,
        state_lock: Arc<tokio::sync::Mutex<()>>,
    ) -> History {
        History {
            config,
            store,
            keep,
            last: Mutex::default(),
            notes: Mutex::default(),
            state_lock,
            running: Mutex::default(),
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

    /// Records a new revision for every app in `valid` whose file changed since last time.
    /// Blocking: call it from a blocking thread.
    pub fn record(&self, valid: &[AppKey]) {
        // One run at a time, so revisions go in the order their files were read.
        let _run = self.running.lock().expect("recorder");
        // Files are read under the state lock (never mid-checkout); the database writes
        // happen after it is released, so a big pull does not hold up API writes.
        let found = {
            let _held = self.state_lock.blocking_lock();
            self.read_changed(valid)
        };
        for (key, text, hash, source, tag) in found {
            match self
                .store
                .record_revision(&key, &text, &hash, &source, unix_now(), self.keep)
            {
                Ok(Some(n)) => {
                    info!(app = %key, revision = n, source = %source, "recorded revision")
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(app = %key, cause = %e, "cannot record the revision");
                    continue;
                }
            }
            self.last.lock().expect("last").insert(key, tag);
        }
    }

    /// (app, text, spec hash, source, etag) for every app in `valid` whose file changed
    /// since it was last recorded and still parses.
    fn read_changed(&self, valid: &[AppKey]) -> Vec<(AppKey, String, String, String, String)> {
        let mut out = Vec::new();
        for key in valid {
            let path = self
                .config
                .apps_state_dir()
                .join(&key.userid)
                .join(format!("{}.toml", key.appname));
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let tag = etag(&bytes);
            if self.last.lock().expect("last").get(key) == Some(&tag) {
                continue;
            }
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            // Changed since the pass and now broken: the next pass decides; record nothing.
            let Ok(m) = Manifest::parse(&path, &text) else {
                continue;
            };
            let Ok(t) = Template::load(&self.config, &m.template.0) else {
                continue;
            };
            let hash = ContainerSpec::derive(key, &m, &t, &self.config).hash();
            let source = self
                .notes
                .lock()
                .expect("notes")
                .remove(&(key.clone(), tag.clone()))
                .unwrap_or_else(|| "file".into());
            out.push((key.clone(), text, hash, source, tag));
        }
        out
    }
}
