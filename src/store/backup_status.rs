//! Each app's last backup outcome (docs/guides/backups-and-recovery.md): when one last
//! succeeded (and its snapshot), when one last failed and why. Kept in the database so a
//! failure stays visible across restarts until a backup succeeds after it.

use serde::{Deserialize, Serialize};

use super::{db_err, to_json, Store, StoreError, BACKUP_STATUS};
use crate::model::names::AppKey;

/// One app's backup record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStatus {
    /// Unix seconds of the last backup that saved a snapshot.
    pub last_success: Option<u64>,
    /// Its snapshot (restic's full id).
    pub last_snapshot: Option<String>,
    /// Unix seconds of the last backup that failed.
    pub last_failure: Option<u64>,
    /// Why it failed.
    pub last_failure_reason: Option<String>,
}

impl Store {
    /// `key`'s record (empty when it never ran).
    pub fn backup_status(&self, key: &AppKey) -> Result<BackupStatus, StoreError> {
        Ok(self
            .read_one(BACKUP_STATUS, &key.to_string())?
            .unwrap_or_default())
    }

    /// Every app's record, by `user/app`.
    pub fn backup_statuses(&self) -> Result<Vec<(String, BackupStatus)>, StoreError> {
        self.read_all(BACKUP_STATUS)
    }

    /// Records one outcome at `at`: a snapshot id, or a failure's reason.
    pub fn record_backup(
        &self,
        key: &AppKey,
        at: u64,
        outcome: Result<&str, &str>,
    ) -> Result<BackupStatus, StoreError> {
        let mut s = self.backup_status(key)?;
        match outcome {
            Ok(id) => {
                s.last_success = Some(at);
                s.last_snapshot = Some(id.to_string());
            }
            Err(why) => {
                s.last_failure = Some(at);
                s.last_failure_reason = Some(why.to_string());
            }
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(BACKUP_STATUS).map_err(db_err)?;
            table
                .insert(key.to_string().as_str(), to_json(&s).as_str())
                .map_err(db_err)?;
        }
        self.db.commit(txn)?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_stays_beside_the_last_success() {
        let (_dir, store) = crate::store::temp_store();
        let key = AppKey::new("alice", "db").unwrap();
        assert_eq!(store.backup_status(&key).unwrap(), BackupStatus::default());
        store.record_backup(&key, 10, Ok("abc")).unwrap();
        let s = store
            .record_backup(&key, 20, Err("the dump exited with 1"))
            .unwrap();
        assert_eq!(s.last_success, Some(10));
        assert_eq!(s.last_snapshot.as_deref(), Some("abc"));
        assert_eq!(s.last_failure, Some(20));
        assert_eq!(store.backup_status(&key).unwrap(), s);
        assert_eq!(store.backup_statuses().unwrap().len(), 1);
    }
}
