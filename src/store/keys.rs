//! Client keys (docs/reference/http-api.md): `client.<id>.<secret>`, scoped at issue to one (userid, appname)
//! and bound to that app's incarnation. Stored by id with the keyed hash of the secret;
//! revoking deletes the record. An app has at most the policy's `max_client_keys_per_app`.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{db_err, from_json, to_json, Store, StoreError, CLIENT_KEYS};
use crate::model::names::AppKey;
use crate::store::tokens;

/// `last_used_at` is written at most this often per key (seconds), so a busy client does not
/// turn every request into a database write.
pub const LAST_USED_EVERY: u64 = 300;

/// A key as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    userid: String,
    appname: String,
    /// Hex of the keyed blake3 hash of the secret.
    secret_hash: String,
    created_at: u64,
    last_used_at: Option<u64>,
    /// The app incarnation it was issued for; keys from before incarnations existed have
    /// none and live as long as their app does.
    #[serde(default)]
    incarnation: Option<String>,
}

impl KeyRecord {
    fn of(&self, app: &AppKey) -> bool {
        self.userid == app.userid && self.appname == app.appname
    }
}

/// Keys from before incarnations existed: bound to their app's incarnation when the app is in
/// `present`, removed when it is gone (and its user not frozen). Returns how many were removed.
pub(super) fn settle_legacy(
    store: &Store,
    txn: &WriteTransaction,
    present: &std::collections::BTreeSet<AppKey>,
    frozen_users: &std::collections::BTreeSet<String>,
) -> Result<usize, StoreError> {
    let mut legacy = Vec::new();
    {
        let table = txn.open_table(CLIENT_KEYS).map_err(db_err)?;
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let record: KeyRecord = from_json("client_keys", k.value(), v.value())?;
            if record.incarnation.is_none() {
                legacy.push((k.value().to_string(), record));
            }
        }
    }
    let mut removed = 0;
    for (id, mut record) in legacy {
        let app = AppKey::new(&record.userid, &record.appname).map_err(StoreError::Name)?;
        let mut table = txn.open_table(CLIENT_KEYS).map_err(db_err)?;
        if present.contains(&app) {
            drop(table);
            record.incarnation = Some(super::incarnations::current_or_new(store, txn, &app)?);
            let mut table = txn.open_table(CLIENT_KEYS).map_err(db_err)?;
            table
                .insert(id.as_str(), to_json(&record).as_str())
                .map_err(db_err)?;
        } else if !frozen_users.contains(&app.userid) {
            table.remove(id.as_str()).map_err(db_err)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes every key of `app` inside `txn`; returns how many.
pub(super) fn remove_keys_of(txn: &WriteTransaction, app: &AppKey) -> Result<usize, StoreError> {
    let mut table = txn.open_table(CLIENT_KEYS).map_err(db_err)?;
    let mut ids = Vec::new();
    for row in table.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let record: KeyRecord = from_json("client_keys", k.value(), v.value())?;
        if record.of(app) {
            ids.push(k.value().to_string());
        }
    }
    for id in &ids {
        table.remove(id.as_str()).map_err(db_err)?;
    }
    Ok(ids.len())
}

/// Moves every key of `old` to `new` (bound to `incarnation`) inside `txn`: a rename keeps
/// its app's keys. Returns how many.
pub(super) fn move_keys(
    txn: &WriteTransaction,
    old: &AppKey,
    new: &AppKey,
    incarnation: &str,
) -> Result<usize, StoreError> {
    let mut table = txn.open_table(CLIENT_KEYS).map_err(db_err)?;
    let mut moved = Vec::new();
    for row in table.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let record: KeyRecord = from_json("client_keys", k.value(), v.value())?;
        if record.of(old) {
            moved.push((k.value().to_string(), record));
        }
    }
    for (id, mut record) in moved.iter().cloned() {
        record.appname = new.appname.clone();
        record.incarnation = Some(incarnation.to_string());
        table
            .insert(id.as_str(), to_json(&record).as_str())
            .map_err(db_err)?;
    }
    Ok(moved.len())
}

/// A key as shown: never the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientKeyInfo {
    /// Public id (the middle part of the key).
    pub id: String,
    /// Scope: owner.
    pub userid: String,
    /// Scope: app.
    pub appname: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds, updated at most every [`LAST_USED_EVERY`].
    pub last_used_at: Option<u64>,
}

/// The outcome of checking a presented key.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// Not a key, unknown, revoked or wrong secret: all look the same to the caller.
    Invalid,
    /// A genuine key, with its scope (shared with the key cache: the hot path copies no
    /// strings).
    Valid(std::sync::Arc<ClientKeyInfo>),
}

pub(super) fn record_name(id: &str) -> String {
    format!("client:{id}")
}

fn info(id: String, r: KeyRecord) -> ClientKeyInfo {
    ClientKeyInfo {
        id,
        userid: r.userid,
        appname: r.appname,
        created_at: r.created_at,
        last_used_at: r.last_used_at,
    }
}

impl Store {
    /// Issues a key for `app` (at most `max` per app), bound to its current incarnation
    /// (made now if the loop has not seen the app yet); returns what is shown in lists and
    /// the full key, which exists nowhere else.
    pub fn issue_client_key(
        &self,
        app: &AppKey,
        now: u64,
        max: u32,
    ) -> Result<(ClientKeyInfo, String), StoreError> {
        let (id, secret) = (tokens::new_key_id(), tokens::new_secret());
        let txn = self.db.begin_write()?;
        let incarnation = super::incarnations::current_or_new(self, &txn, app)?;
        let record = KeyRecord {
            userid: app.userid.clone(),
            appname: app.appname.clone(),
            secret_hash: tokens::keyed_hash(&self.hash_key, &record_name(&id), &secret)
                .to_hex()
                .to_string(),
            created_at: now,
            last_used_at: None,
            incarnation: Some(incarnation),
        };
        {
            let mut table = txn.open_table(CLIENT_KEYS).map_err(db_err)?;
            let mut count = 0u64;
            for row in table.iter().map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                count +=
                    u64::from(from_json::<KeyRecord>("client_keys", k.value(), v.value())?.of(app));
            }
            if count >= u64::from(max) {
                return Err(StoreError::Limit(format!(
                    "{app} already has {count} client keys; the limit is max_client_keys_per_app = {max} (revoke one first)"
                )));
            }
            table
                .insert(id.as_str(), to_json(&record).as_str())
                .map_err(db_err)?;
        }
        self.db.commit(txn)?;
        let key = tokens::client_key(&id, &secret);
        Ok((info(id, record), key))
    }

    /// The keys of one app, by id.
    pub fn client_keys(&self, app: &AppKey) -> Result<Vec<ClientKeyInfo>, StoreError> {
        Ok(self
            .read_all::<KeyRecord>(CLIENT_KEYS)?
            .into_iter()
            .filter(|(_, r)| r.of(app))
            .map(|(id, r)| info(id, r))
            .collect())
    }

    /// Revokes one key of `app`. A key of another app is `NotFound`, as if it did not exist.
    pub fn revoke_client_key(&self, app: &AppKey, id: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(CLIENT_KEYS).map_err(db_err)?;
            let owned = match table.get(id).map_err(db_err)? {
                Some(v) => {
                    let r: KeyRecord = from_json("client_keys", id, v.value())?;
                    r.userid == app.userid && r.appname == app.appname
                }
                None => false,
            };
            if !owned {
                return Err(StoreError::NotFound(format!(
                    "no client key {id:?} for {app}"
                )));
            }
            table.remove(id).map_err(db_err)?;
        }
        self.db.commit(txn)?;
        Ok(())
    }

    /// Checks a presented key at time `now`, and records the use when the stored
    /// `last_used_at` is older than [`LAST_USED_EVERY`].
    pub fn check_client_key(&self, presented: &str, now: u64) -> Result<KeyCheck, StoreError> {
        // Read before the database is: a commit after this makes what is remembered stale.
        let generation = self.db.generation();
        let Some(p) = tokens::parse_client_key(presented) else {
            return Ok(KeyCheck::Invalid);
        };
        let Some(record) = self.read_one::<KeyRecord>(CLIENT_KEYS, p.name)? else {
            return Ok(KeyCheck::Invalid);
        };
        let Ok(stored) = blake3::Hash::from_hex(&record.secret_hash) else {
            return Ok(KeyCheck::Invalid);
        };
        // blake3::Hash equality is constant-time.
        if tokens::keyed_hash(&self.hash_key, &record_name(p.name), p.secret) != stored {
            return Ok(KeyCheck::Invalid);
        }
        // A key lives exactly as long as the incarnation it was issued for.
        let app = AppKey::new(&record.userid, &record.appname).map_err(StoreError::Name)?;
        let current = self.incarnation(&app)?;
        // A key from before incarnations lives until the first pass binds or removes it.
        let alive = match (&current, &record.incarnation) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(now), Some(issued)) => now == issued,
        };
        if !alive {
            return Ok(KeyCheck::Invalid);
        }
        let mut record = record;
        if record
            .last_used_at
            .is_none_or(|t| now.saturating_sub(t) >= LAST_USED_EVERY)
        {
            record.last_used_at = Some(now);
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(CLIENT_KEYS).map_err(db_err)?;
                // Revoked meanwhile: do not bring it back.
                if table.get(p.name).map_err(db_err)?.is_none() {
                    return Ok(KeyCheck::Invalid);
                }
                table
                    .insert(p.name, to_json(&record).as_str())
                    .map_err(db_err)?;
            }
            self.db.commit(txn)?;
            return Ok(KeyCheck::Valid(info(p.name.to_string(), record).into()));
        }
        let shown = std::sync::Arc::new(info(p.name.to_string(), record));
        self.remember_key(generation, stored, &shown);
        Ok(KeyCheck::Valid(shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::temp_store as store;

    fn key(u: &str, a: &str) -> AppKey {
        AppKey::new(u, a).unwrap()
    }

    #[test]
    fn issue_check_revoke() {
        let (_d, s) = store();
        let app = key("alice", "web");
        let (info, full) = s.issue_client_key(&app, 1000, 20).unwrap();
        assert!(full.starts_with(&format!("client.{}.", info.id)));
        match s.check_client_key(&full, 1001).unwrap() {
            KeyCheck::Valid(k) => {
                assert_eq!((k.userid.as_str(), k.appname.as_str()), ("alice", "web"))
            }
            other => panic!("{other:?}"),
        }
        // Another app cannot revoke it.
        assert!(matches!(
            s.revoke_client_key(&key("alice", "other"), &info.id),
            Err(StoreError::NotFound(_))
        ));
        s.revoke_client_key(&app, &info.id).unwrap();
        assert_eq!(s.check_client_key(&full, 1002).unwrap(), KeyCheck::Invalid);
        assert!(s.client_keys(&app).unwrap().is_empty());
    }

    #[test]
    fn wrong_secret_and_garbage_are_invalid() {
        let (_d, s) = store();
        let (info, full) = s.issue_client_key(&key("alice", "web"), 0, 20).unwrap();
        let mut wrong = full.clone().into_bytes();
        let last = wrong.len() - 1;
        wrong[last] = if wrong[last] == b'A' { b'B' } else { b'A' };
        let wrong = String::from_utf8(wrong).unwrap();
        for bad in [
            wrong.as_str(),
            "",
            "client",
            &format!("client.{}.", info.id),
            "💥",
        ] {
            assert_eq!(
                s.check_client_key(bad, 1).unwrap(),
                KeyCheck::Invalid,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn last_used_is_written_at_most_every_five_minutes() {
        let (_d, s) = store();
        let app = key("alice", "web");
        let (_, full) = s.issue_client_key(&app, 0, 20).unwrap();
        let used = |now| {
            s.check_client_key(&full, now).unwrap();
            s.client_keys(&app).unwrap()[0].last_used_at
        };
        assert_eq!(used(10), Some(10));
        assert_eq!(used(11), Some(10));
        assert_eq!(used(10 + LAST_USED_EVERY - 1), Some(10));
        assert_eq!(used(10 + LAST_USED_EVERY), Some(10 + LAST_USED_EVERY));
    }

    #[test]
    fn a_key_never_outlives_its_incarnation_whatever_the_clock_says() {
        let (_d, s) = store();
        let app = key("alice", "web");
        let valid =
            |k: &str, now| matches!(s.check_client_key(k, now).unwrap(), KeyCheck::Valid(_));
        let (_, old) = s.issue_client_key(&app, 5000, 20).unwrap();
        let began = std::time::Instant::now();
        // A pass that began now and no longer sees the app ends it, and its key.
        let gone = s
            .sync_incarnations(&Default::default(), &Default::default(), began)
            .unwrap();
        assert_eq!((gone.ended, gone.keys_revoked), (1, 1));
        assert!(!valid(&old, 5001));
        // The app made again: a new incarnation; a key issued with the clock an hour back works,
        // and a later pass that sees the app keeps it.
        let (_, new) = s.issue_client_key(&app, 5000 - 3600, 20).unwrap();
        let present = [app.clone()].into();
        s.sync_incarnations(&present, &Default::default(), std::time::Instant::now())
            .unwrap();
        assert!(valid(&new, 1));
    }

    #[test]
    fn a_pass_that_began_before_the_first_key_cannot_end_its_incarnation() {
        let (_d, s) = store();
        let app = key("alice", "new");
        let began = std::time::Instant::now();
        let (_, k) = s.issue_client_key(&app, 0, 20).unwrap();
        let synced = s
            .sync_incarnations(&Default::default(), &Default::default(), began)
            .unwrap();
        assert_eq!(
            synced,
            Default::default(),
            "that pass scanned before the app existed"
        );
        assert!(matches!(
            s.check_client_key(&k, 1).unwrap(),
            KeyCheck::Valid(_)
        ));
        let frozen = ["alice".to_string()].into();
        let later = std::time::Instant::now();
        assert_eq!(
            s.sync_incarnations(&Default::default(), &frozen, later)
                .unwrap()
                .ended,
            0,
            "an unreadable user says nothing"
        );
    }

    #[test]
    fn an_app_has_at_most_the_policys_keys() {
        let (_d, s) = store();
        let app = key("alice", "web");
        for _ in 0..3 {
            s.issue_client_key(&app, 0, 3).unwrap();
        }
        let e = s.issue_client_key(&app, 0, 3).unwrap_err();
        assert!(
            matches!(e, StoreError::Limit(_))
                && e.to_string().contains("max_client_keys_per_app = 3"),
            "{e}"
        );
        assert!(
            s.issue_client_key(&key("alice", "api"), 0, 3).is_ok(),
            "per app"
        );
    }

    #[test]
    fn deleting_an_app_revokes_its_keys_only() {
        let (_d, s) = store();
        let (_, a1) = s.issue_client_key(&key("alice", "web"), 0, 20).unwrap();
        let (_, a2) = s.issue_client_key(&key("alice", "web"), 0, 20).unwrap();
        let (_, b) = s.issue_client_key(&key("alice", "api"), 0, 20).unwrap();
        assert_eq!(s.end_incarnation(&key("alice", "web")).unwrap(), 2);
        assert_eq!(s.check_client_key(&a1, 1).unwrap(), KeyCheck::Invalid);
        assert_eq!(s.check_client_key(&a2, 1).unwrap(), KeyCheck::Invalid);
        assert!(matches!(
            s.check_client_key(&b, 1).unwrap(),
            KeyCheck::Valid(_)
        ));
    }
}
