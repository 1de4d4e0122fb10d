//! App incarnations: an id made when an app first appears and dropped when it is gone, kept
//! in the database. A client key is bound to the incarnation it was issued for, so it never
//! outlives its app, whatever the clock does: a new app of the same name is a new
//! incarnation, and the old app's keys go with the old one.
//!
//! The serve loop reports after each pass which apps have a manifest
//! ([`sync_incarnations`](Store::sync_incarnations)); that writes only when something changed,
//! so a pass over an unchanged state directory costs one read transaction.

use std::collections::BTreeSet;
use std::time::Instant;

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{db_err, from_json, to_json, unix_now, Store, StoreError, INCARNATIONS};
use crate::model::names::AppKey;
use crate::store::tokens;

/// One incarnation as stored (by `userid/appname`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Incarnation {
    id: String,
    /// Unix seconds, for people reading a dump.
    since: u64,
}

/// What one sync changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Synced {
    /// Apps that got a new incarnation.
    pub started: usize,
    /// Apps whose incarnation ended.
    pub ended: usize,
    /// Client keys revoked with them.
    pub keys_revoked: usize,
}

/// The table key of `app`.
pub(super) fn name(app: &AppKey) -> String {
    format!("{}/{}", app.userid, app.appname)
}

/// `app`'s incarnation id inside `txn`, made now if it has none.
pub(super) fn current_or_new(
    store: &Store,
    txn: &WriteTransaction,
    app: &AppKey,
) -> Result<String, StoreError> {
    let mut table = txn.open_table(INCARNATIONS).map_err(db_err)?;
    let key = name(app);
    if let Some(v) = table.get(key.as_str()).map_err(db_err)? {
        return Ok(from_json::<Incarnation>("incarnations", &key, v.value())?.id);
    }
    let fresh = Incarnation {
        id: tokens::new_key_id(),
        since: unix_now(),
    };
    table
        .insert(key.as_str(), to_json(&fresh).as_str())
        .map_err(db_err)?;
    store
        .born
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, Instant::now());
    Ok(fresh.id)
}

/// Removes `app`'s incarnation and every client key of `app` inside `txn`; returns how many
/// keys went.
fn end(store: &Store, txn: &WriteTransaction, app: &AppKey) -> Result<usize, StoreError> {
    store
        .born
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&name(app));
    txn.open_table(INCARNATIONS)
        .map_err(db_err)?
        .remove(name(app).as_str())
        .map_err(db_err)?;
    super::keys::remove_keys_of(txn, app)
}

impl Store {
    /// `app`'s current incarnation id, if it has one.
    pub fn incarnation(&self, app: &AppKey) -> Result<Option<String>, StoreError> {
        let key = name(app);
        Ok(self
            .read_one::<Incarnation>(INCARNATIONS, &key)?
            .map(|i| i.id))
    }

    /// Ends `app`'s incarnation now (its manifest was deleted through the API): its client
    /// keys are revoked at once; returns how many.
    pub fn end_incarnation(&self, app: &AppKey) -> Result<usize, StoreError> {
        let txn = self.db.begin_write()?;
        let n = end(self, &txn, app)?;
        self.db.commit(txn)?;
        Ok(n)
    }

    /// Brings the incarnations in line with a pass that began at `began`: every app in
    /// `present` (it has a manifest, valid or not) has one; every other app loses its own and
    /// its keys, unless its user is in `frozen_users` (a directory that could not be read says
    /// nothing) or its incarnation was made after `began` (the pass could not have seen it).
    pub fn sync_incarnations(
        &self,
        present: &BTreeSet<AppKey>,
        frozen_users: &BTreeSet<String>,
        began: Instant,
    ) -> Result<Synced, StoreError> {
        let younger = |k: &AppKey| {
            let born = self.born.lock().unwrap_or_else(|e| e.into_inner());
            born.get(&name(k)).is_some_and(|at| *at >= began)
        };
        let known: BTreeSet<AppKey> = self
            .read_all::<Incarnation>(INCARNATIONS)?
            .into_iter()
            .filter_map(|(k, _)| k.split_once('/').and_then(|(u, a)| AppKey::new(u, a).ok()))
            .collect();
        let new: Vec<&AppKey> = present.iter().filter(|k| !known.contains(*k)).collect();
        let gone: Vec<&AppKey> = known
            .iter()
            .filter(|k| !present.contains(*k) && !frozen_users.contains(&k.userid) && !younger(k))
            .collect();
        let mut out = Synced::default();
        let legacy = !self
            .legacy_settled
            .load(std::sync::atomic::Ordering::Acquire);
        if new.is_empty() && gone.is_empty() && !legacy {
            return Ok(out);
        }
        let txn = self.db.begin_write()?;
        if legacy {
            out.keys_revoked += super::keys::settle_legacy(self, &txn, present, frozen_users)?;
        }
        for app in new {
            current_or_new(self, &txn, app)?;
            out.started += 1;
        }
        for app in gone {
            out.keys_revoked += end(self, &txn, app)?;
            out.ended += 1;
        }
        self.db.commit(txn)?;
        self.legacy_settled
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(out)
    }
}
