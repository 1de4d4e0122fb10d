//! `berth backup FILE`: a consistent copy of the database while it is in use. One read
//! transaction is one snapshot, so every table is copied as of the same commit, while writers
//! go on. The copy is a new redb database in a file with no name (`O_TMPFILE` in the
//! database's own directory, which the daemon may write under any sandbox), handed back open
//! at its start: the daemon streams it over its socket and the CLI writes the backup file
//! itself, where its user sees it. Nothing is left behind, whatever happens to the process.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

use redb::backends::FileBackend;
use redb::{ReadableTable, TableDefinition};

use super::{db_err, Store, StoreError, APP_STATUS, AUDIT, CLIENT_KEYS, INCARNATIONS, META};
use super::{REVISIONS, USERS};

/// A consistent copy of the database, ready to be read.
#[derive(Debug)]
pub struct Snapshot {
    /// The copy, a redb database, open at its start; it has no name, so it is gone once
    /// closed.
    pub file: File,
    /// Its size in bytes.
    pub len: u64,
    /// Rows, every table together.
    pub rows: u64,
}

impl Store {
    /// Copies the database as of one read transaction into a file without a name in the
    /// database's directory.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut file = unnamed_file(dir).map_err(io_err)?;
        let handle = file.try_clone().map_err(io_err)?;
        let backend = FileBackend::new(handle).map_err(db_err)?;
        let copy = redb::Builder::new()
            .create_with_backend(backend)
            .map_err(db_err)?;
        let snapshot = self.db.begin_read()?;
        let txn = copy.begin_write().map_err(db_err)?;
        let mut rows = 0;
        for def in [
            META,
            USERS,
            CLIENT_KEYS,
            APP_STATUS,
            REVISIONS,
            INCARNATIONS,
        ] {
            rows += copy_table(&snapshot, &txn, def)?;
        }
        rows += copy_table(&snapshot, &txn, AUDIT)?;
        txn.commit().map_err(db_err)?;
        drop(copy);
        let len = file
            .seek(SeekFrom::End(0))
            .and_then(|len| file.rewind().map(|()| len))
            .map_err(io_err)?;
        Ok(Snapshot { file, len, rows })
    }
}

/// A new 0600 file in `dir` that no name leads to: `O_TMPFILE`, or, where the file system
/// has none, a random name removed at once.
fn unnamed_file(dir: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = |path: &Path, flags| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(flags)
            .open(path)
    };
    match open(dir, libc::O_TMPFILE) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
            let path = dir.join(format!(".berth-backup-{}", super::tokens::new_key_id()));
            let file = open(&path, libc::O_CREAT | libc::O_EXCL)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        }
        r => r,
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

/// A file error while copying: redb's own kind, so a full disk is told as one.
fn io_err(e: std::io::Error) -> StoreError {
    db_err(redb::Error::Io(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditEntry, Retention, Role};
    use std::io::Read;

    #[test]
    fn a_snapshot_opens_as_the_same_database_and_leaves_no_file() {
        let (dir, store) = crate::store::temp_store();
        let token = store.add_user("alice", Role::Admin).unwrap();
        let entry = AuditEntry {
            at: 1,
            actor: "alice".into(),
            user: None,
            action: "POST /users".into(),
            status: 201,
        };
        let keep = Retention {
            max_entries: 10,
            keep_secs: 0,
        };
        store.audit(&entry, keep).unwrap();
        let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        let mut snap = store.snapshot().unwrap();
        assert!(snap.rows >= 4, "{snap:?}");
        let mut bytes = Vec::new();
        snap.file.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, snap.len);
        drop(snap);
        let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(after.len(), before.len(), "the copy left a file");
        drop(store);
        let dest = dir.path().join("copy.redb");
        std::fs::write(&dest, &bytes).unwrap();
        let restored = Store::open(&dest).unwrap();
        assert_eq!(restored.list_users().unwrap()[0].name, "alice");
        assert!(restored.authenticate(&token).unwrap().is_some());
        assert_eq!(restored.audit_tail(5).unwrap().len(), 1);
    }
}
