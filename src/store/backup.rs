//! `berth backup FILE`: a consistent copy of the database while it is in use. One read
//! transaction is one snapshot, so every table is copied as of the same commit, while writers
//! go on. The copy is a new redb file, written beside its destination under a temporary name,
//! synced, then renamed: a cut backup never leaves a file that looks whole.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use super::{db_err, Store, StoreError, APP_STATUS, AUDIT, CLIENT_KEYS, INCARNATIONS, META};
use super::{REVISIONS, USERS};

/// What a backup copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// Rows, every table together.
    pub rows: u64,
}

impl Store {
    /// Writes a consistent copy to `dest`, which must not exist yet (0600, like the
    /// original).
    pub fn backup_to(&self, dest: &Path) -> Result<Copied, StoreError> {
        if dest.exists() {
            return Err(StoreError::Exists(format!(
                "{} exists; berth does not write over a file",
                dest.display()
            )));
        }
        let tmp = dest.with_extension(format!("tmp-{}", super::tokens::new_key_id()));
        let result = self.copy_into(&tmp).and_then(|copied| {
            std::fs::rename(&tmp, dest).map_err(|e| foreign(dest, e))?;
            Ok(copied)
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn copy_into(&self, tmp: &Path) -> Result<Copied, StoreError> {
        super::private_file(tmp).map_err(|e| foreign(tmp, e))?;
        let copy = Database::create(tmp).map_err(db_err)?;
        let snapshot = self.db.begin_read()?;
        let txn = copy.begin_write().map_err(db_err)?;
        let mut copied = Copied::default();
        for def in [
            META,
            USERS,
            CLIENT_KEYS,
            APP_STATUS,
            REVISIONS,
            INCARNATIONS,
        ] {
            copied.rows += copy_table(&snapshot, &txn, def)?;
        }
        copied.rows += copy_table(&snapshot, &txn, AUDIT)?;
        txn.commit().map_err(db_err)?;
        drop(copy);
        std::fs::File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| foreign(tmp, e))?;
        Ok(copied)
    }
}

fn copy_table<K: redb::Key + 'static>(
    from: &redb::ReadTransaction,
    to: &redb::WriteTransaction,
    def: TableDefinition<K, &str>,
) -> Result<u64, StoreError> {
    let source = from.open_table(def).map_err(db_err)?;
    let mut target = to.open_table(def).map_err(db_err)?;
    let mut rows = 0;
    for row in source.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        target.insert(k.value(), v.value()).map_err(db_err)?;
        rows += 1;
    }
    Ok(rows)
}

fn foreign(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Foreign {
        path: path.into(),
        why: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditEntry, Retention, Role};

    #[test]
    fn a_backup_opens_as_the_same_database_and_never_overwrites() {
        let (dir, store) = crate::store::temp_store();
        let token = store.add_user("alice", Role::Admin).unwrap();
        let entry = AuditEntry {
            at: 1,
            actor: "alice".into(),
            action: "POST /users".into(),
            status: 201,
        };
        let keep = Retention {
            max_entries: 10,
            keep_secs: 0,
        };
        store.audit(&entry, keep).unwrap();
        let dest = dir.path().join("copy.redb");
        let copied = store.backup_to(&dest).unwrap();
        assert!(copied.rows >= 4, "{copied:?}");
        let err = store.backup_to(&dest).unwrap_err();
        assert!(err.to_string().contains("exists"), "{err}");
        drop(store);
        let restored = Store::open(&dest).unwrap();
        assert_eq!(restored.list_users().unwrap()[0].name, "alice");
        assert!(restored.authenticate(&token).unwrap().is_some());
        assert_eq!(restored.audit_tail(5).unwrap().len(), 1);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains("tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
