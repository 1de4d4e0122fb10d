//! Client keys (SPEC §7): `client.<id>.<secret>`, scoped at issue to one (userid, appname).
//! Stored by id with the keyed hash of the secret; revoking deletes the record.

use redb::ReadableTable;
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
    /// Unix milliseconds of the issue, to tell keys made before a removal from keys made
    /// after it (absent in records from before it existed: then `created_at`).
    #[serde(default)]
    created_ms: Option<u64>,
    last_used_at: Option<u64>,
}

impl KeyRecord {
    fn created_ms(&self) -> u64 {
        self.created_ms
            .unwrap_or(self.created_at.saturating_mul(1000))
    }
}

/// Unix milliseconds now.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
    /// A genuine key, with its scope.
    Valid(ClientKeyInfo),
}

fn record_name(id: &str) -> String {
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
    /// Issues a key for `app`; returns what is shown in lists and the full key, which exists
    /// nowhere else.
    pub fn issue_client_key(
        &self,
        app: &AppKey,
        now: u64,
    ) -> Result<(ClientKeyInfo, String), StoreError> {
        let id = tokens::new_key_id();
        let secret = tokens::new_secret();
        let record = KeyRecord {
            userid: app.userid.clone(),
            appname: app.appname.clone(),
            secret_hash: tokens::keyed_hash(&self.hash_key, &record_name(&id), &secret)
                .to_hex()
                .to_string(),
            created_at: now,
            created_ms: Some(unix_now_ms()),
            last_used_at: None,
        };
        let txn = self.db.begin_write().map_err(db_err)?;
        txn.open_table(CLIENT_KEYS)
            .map_err(db_err)?
            .insert(id.as_str(), to_json(&record).as_str())
            .map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        let key = tokens::client_key(&id, &secret);
        Ok((info(id, record), key))
    }

    /// The keys of one app, by id.
    pub fn client_keys(&self, app: &AppKey) -> Result<Vec<ClientKeyInfo>, StoreError> {
        Ok(self
            .read_all::<KeyRecord>(CLIENT_KEYS)?
            .into_iter()
            .filter(|(_, r)| r.userid == app.userid && r.appname == app.appname)
            .map(|(id, r)| info(id, r))
            .collect())
    }

    /// Revokes one key of `app`. A key of another app is `NotFound`, as if it did not exist.
    pub fn revoke_client_key(&self, app: &AppKey, id: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
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
        txn.commit().map_err(db_err)?;
        Ok(())
    }

    /// Revokes every key of `app` (its manifest was deleted); returns how many.
    pub fn revoke_app_keys(&self, app: &AppKey) -> Result<usize, StoreError> {
        self.revoke_app_keys_before(app, u64::MAX)
    }

    /// Revokes the keys of `app` issued before `before_ms` (unix milliseconds): those of an
    /// app that a removal planned at that time ended, not those of a new app of that name.
    pub fn revoke_app_keys_before(
        &self,
        app: &AppKey,
        before_ms: u64,
    ) -> Result<usize, StoreError> {
        let ids: Vec<String> = self
            .read_all::<KeyRecord>(CLIENT_KEYS)?
            .into_iter()
            .filter(|(_, r)| {
                r.userid == app.userid && r.appname == app.appname && r.created_ms() < before_ms
            })
            .map(|(id, _)| id)
            .collect();
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(CLIENT_KEYS).map_err(db_err)?;
            for id in &ids {
                table.remove(id.as_str()).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(ids.len())
    }

    /// Checks a presented key at time `now`, and records the use when the stored
    /// `last_used_at` is older than [`LAST_USED_EVERY`].
    pub fn check_client_key(&self, presented: &str, now: u64) -> Result<KeyCheck, StoreError> {
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
        let mut record = record;
        if record
            .last_used_at
            .is_none_or(|t| now.saturating_sub(t) >= LAST_USED_EVERY)
        {
            record.last_used_at = Some(now);
            let txn = self.db.begin_write().map_err(db_err)?;
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
            txn.commit().map_err(db_err)?;
        }
        Ok(KeyCheck::Valid(info(p.name.to_string(), record)))
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
        let (info, full) = s.issue_client_key(&app, 1000).unwrap();
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
        let (info, full) = s.issue_client_key(&key("alice", "web"), 0).unwrap();
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
        let (_, full) = s.issue_client_key(&app, 0).unwrap();
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
    fn revoking_before_a_time_keeps_newer_keys() {
        let (_d, s) = store();
        let app = key("alice", "web");
        let (_, old) = s.issue_client_key(&app, 0).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let cut = unix_now_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let (_, new) = s.issue_client_key(&app, 0).unwrap();
        assert_eq!(s.revoke_app_keys_before(&app, cut).unwrap(), 1);
        assert_eq!(s.check_client_key(&old, 1).unwrap(), KeyCheck::Invalid);
        assert!(matches!(
            s.check_client_key(&new, 1).unwrap(),
            KeyCheck::Valid(_)
        ));
    }

    #[test]
    fn deleting_an_app_revokes_its_keys_only() {
        let (_d, s) = store();
        let (_, a1) = s.issue_client_key(&key("alice", "web"), 0).unwrap();
        let (_, a2) = s.issue_client_key(&key("alice", "web"), 0).unwrap();
        let (_, b) = s.issue_client_key(&key("alice", "api"), 0).unwrap();
        assert_eq!(s.revoke_app_keys(&key("alice", "web")).unwrap(), 2);
        assert_eq!(s.check_client_key(&a1, 1).unwrap(), KeyCheck::Invalid);
        assert_eq!(s.check_client_key(&a2, 1).unwrap(), KeyCheck::Invalid);
        assert!(matches!(
            s.check_client_key(&b, 1).unwrap(),
            KeyCheck::Valid(_)
        ));
    }
}
