//! Client keys that checked out, remembered in memory so the bridge's hot path does no
//! database read and no blocking-thread hop. An entry is trusted only while the database is
//! exactly as it was when the entry was read: every commit, of any table, bumps the handle's
//! generation, and an entry from an older generation is read again. So a revocation, an
//! ended incarnation or a new key is seen by the very next request.

use std::collections::HashMap;
use std::sync::Mutex;

use super::keys::{ClientKeyInfo, KeyCheck, LAST_USED_EVERY};
use super::{tokens, Store};

/// One key as last read: its hash and scope, and the database generation it was read at.
struct Cached {
    generation: u64,
    secret_hash: blake3::Hash,
    info: std::sync::Arc<ClientKeyInfo>,
}

/// Remembered keys, by id.
#[derive(Default)]
pub(super) struct KeyCache {
    entries: Mutex<HashMap<String, Cached>>,
}

/// Most keys remembered; past it the cache starts over (a key is then read once more).
const MAX_ENTRIES: usize = 10_000;

impl Store {
    /// Checks `presented` from memory when it can: `None` when the database must be asked (a
    /// key not remembered, remembered from before a commit, or due a `last_used` write).
    pub fn check_client_key_cached(&self, presented: &str, now: u64) -> Option<KeyCheck> {
        let Some(p) = tokens::parse_client_key(presented) else {
            return Some(KeyCheck::Invalid);
        };
        let entries = self.key_cache.entries.lock().expect("key cache");
        let c = entries.get(p.name)?;
        if c.generation != self.db.generation() {
            return None;
        }
        // blake3::Hash equality is constant-time. The record's name is `client:<id>`.
        let hash = tokens::keyed_hash_of(&self.hash_key, &["client:", p.name], p.secret);
        if hash != c.secret_hash {
            return Some(KeyCheck::Invalid);
        }
        let last = c.info.last_used_at;
        if last.is_none_or(|t| now.saturating_sub(t) >= LAST_USED_EVERY) {
            return None;
        }
        Some(KeyCheck::Valid(c.info.clone()))
    }

    /// Remembers a key the database just vouched for, as of `generation` (read before the
    /// database was).
    pub(super) fn remember_key(
        &self,
        generation: u64,
        secret_hash: blake3::Hash,
        info: &std::sync::Arc<ClientKeyInfo>,
    ) {
        let mut entries = self.key_cache.entries.lock().expect("key cache");
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        let cached = Cached {
            generation,
            secret_hash,
            info: info.clone(),
        };
        entries.insert(info.id.clone(), cached);
    }
}

#[cfg(test)]
mod tests {
    use crate::model::names::AppKey;
    use crate::store::KeyCheck;

    #[test]
    fn a_remembered_key_is_answered_from_memory_until_any_commit() {
        let (_d, s) = crate::store::temp_store();
        let app = AppKey::new("alice", "web").unwrap();
        let (info, key) = s.issue_client_key(&app, 10, 20).unwrap();
        let now = 100;
        assert_eq!(
            s.check_client_key_cached(&key, now),
            None,
            "not remembered yet"
        );
        // The first check writes last_used (a commit), so only the second is remembered.
        for _ in 0..2 {
            assert!(matches!(
                s.check_client_key(&key, now).unwrap(),
                KeyCheck::Valid(_)
            ));
        }
        assert!(matches!(
            s.check_client_key_cached(&key, now),
            Some(KeyCheck::Valid(_))
        ));
        assert_eq!(
            s.check_client_key_cached(&key, now + super::LAST_USED_EVERY),
            None,
            "due a last_used write"
        );
        let wrong = format!("{}x", &key[..key.len() - 1]);
        assert_eq!(
            s.check_client_key_cached(&wrong, now),
            Some(KeyCheck::Invalid)
        );
        // A revocation is a commit: the memory is not trusted past it.
        s.revoke_client_key(&app, &info.id).unwrap();
        assert_eq!(s.check_client_key_cached(&key, now), None);
        assert_eq!(s.check_client_key(&key, now).unwrap(), KeyCheck::Invalid);
    }
}
