//! The redb database (SPEC §2 `berth.redb`): users and their hashed admin tokens, client keys,
//! the last known status of every app, the revision history of manifests, and the audit log. Nothing in it decides what runs: the
//! manifests do. One process holds it at a time (`berth serve`, or a CLI command when no daemon
//! runs).
//!
//! **Invariant: every table belongs to schema version [`SCHEMA_VERSION`], recorded in `meta`; a
//! database with another version, or one that is not berth's, is refused at open and never
//! written.** Values are JSON so a human can read a dump; keys are plain strings or sequence
//! numbers.
//!
//! Calls are synchronous: each is one short transaction on a local file; callers in async code
//! run them on a blocking thread, since a commit fsyncs.
//!
//! **Must not know about** Docker, git, HTTP or the files under `state/`. Depends on `model`
//! and on `reconcile`'s status types (what it saves).

mod audit;
mod backup;
mod handle;
mod incarnations;
mod key_cache;
mod keys;
mod renames;
mod revisions;
mod status;
pub mod tokens;
mod users;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, DatabaseError, ReadableTable, TableDefinition, TableHandle};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use audit::{AuditEntry, Retention};
pub use backup::Snapshot;
pub use incarnations::Synced;
pub use keys::{ClientKeyInfo, KeyCheck, LAST_USED_EVERY};
pub use revisions::Revision;
pub use status::StoredStatus;
pub use users::{Role, UserInfo};

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const USERS: TableDefinition<&str, &str> = TableDefinition::new("users");
const CLIENT_KEYS: TableDefinition<&str, &str> = TableDefinition::new("client_keys");
const APP_STATUS: TableDefinition<&str, &str> = TableDefinition::new("app_status");
const AUDIT: TableDefinition<u64, &str> = TableDefinition::new("audit");
const REVISIONS: TableDefinition<&str, &str> = TableDefinition::new("revisions");
const INCARNATIONS: TableDefinition<&str, &str> = TableDefinition::new("incarnations");

/// Beside the database: says a database was made here, so its disappearance is noticed.
fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".made");
    path.with_file_name(name)
}

const MARKER_TEXT: &str = "berth made its database beside this file. If the database is gone, \
restore it from a backup; remove this file only to start over with no users and no keys.\n";

/// (device, inode) of the file at `path`.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the file open.
    #[error("{}: the database is in use by another process (is `berth serve` running?)", path.display())]
    Busy {
        /// The database file.
        path: PathBuf,
    },
    /// The database file was deleted or replaced while berth had it open, or is missing
    /// where berth made one before (its marker is there).
    #[error("{}: {why}", path.display())]
    Gone {
        /// The database file.
        path: PathBuf,
        /// What happened and what to do.
        why: String,
    },
    /// Written by a berth with another schema.
    #[error("{}: schema version {found} is not one this berth can read (it reads version {SCHEMA_VERSION}); use the berth release that wrote it, or move the file away to start empty", path.display())]
    Schema {
        /// The database file.
        path: PathBuf,
        /// Version found in `meta`.
        found: String,
    },
    /// A redb file without berth's meta table, or not a redb file at all.
    #[error("{}: not a berth database ({why}); move it away or point `database` elsewhere", path.display())]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
    /// A name that is already taken.
    #[error("{0}")]
    Exists(String),
    /// A record that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A limit from berth.toml would be passed.
    #[error("{0}")]
    Limit(String),
    /// A name that breaks the rules.
    #[error(transparent)]
    Name(#[from] crate::model::names::NameError),
    /// The disk holding the database is full: nothing was written.
    #[error("the disk holding the database is full; nothing was written (free space, then retry)")]
    Full(#[source] std::io::Error),
    /// The file is being reopened after a failed write; the call may be retried.
    #[error("{}: the database is being reopened after a failed write ({why}); retry shortly", path.display())]
    Reopening {
        /// The database file.
        path: PathBuf,
        /// Why it is not open yet.
        why: String,
    },
    /// redb failed mid-call (I/O, corruption).
    #[error("database")]
    Db(#[source] Box<redb::Error>),
    /// A record that does not decode.
    #[error("database record {table}/{key} does not decode")]
    Decode {
        /// The table.
        table: String,
        /// The record's key.
        key: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(io) if is_full(&io) => StoreError::Full(io),
        other => StoreError::Db(Box::new(other)),
    }
}

/// A write that failed for want of space (or of quota).
pub fn is_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialize")
}

fn from_json<T: DeserializeOwned>(table: &str, key: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Decode {
        table: table.to_string(),
        key: key.to_string(),
        source,
    })
}

/// Makes `path` a file only its owner can read (0600): created so when missing (before redb
/// opens it, so there is no moment it is readable), tightened with a log line when an older
/// berth left it readable by others. It holds revisions with env values.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        tracing::info!(file = %path.display(), was = format!("{mode:o}"), "tightened the database to 0600");
    }
    Ok(())
}

/// The open database.
pub struct Store {
    /// redb handle, reopened after a failed write.
    db: handle::Handle,
    /// The file, and which file it was when opened (device, inode): a deletion or a
    /// replacement while berth runs is noticed, not written past.
    path: PathBuf,
    identity: Option<(u64, u64)>,
    /// Key for the keyed hashes of secrets; made once when the database is created.
    hash_key: [u8; 32],
    /// When this process made each incarnation it made (monotonic), so a pass that scanned
    /// before an app's first key was issued cannot end the incarnation that key is bound to.
    born: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Client keys that checked out, for the bridge's hot path.
    key_cache: key_cache::KeyCache,
    /// Set once this process has bound or removed the keys from before incarnations.
    legacy_settled: std::sync::atomic::AtomicBool,
}

impl Store {
    /// Opens `path`, creating it (and the schema) if it does not exist.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Foreign {
                path: path.into(),
                why: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        let marker = marker_path(path);
        if !path.exists() && marker.exists() {
            return Err(StoreError::Gone {
                path: path.into(),
                why: format!(
                    "berth's database was here and is gone (its marker {} remains); restore the file from a backup, or remove the marker to start with no users and no keys",
                    marker.display()
                ),
            });
        }
        private_file(path).map_err(|e| StoreError::Foreign {
            path: path.into(),
            why: format!("cannot make it private (0600): {e}"),
        })?;
        let db = Database::create(path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Busy { path: path.into() },
            other => StoreError::Foreign {
                path: path.into(),
                why: other.to_string(),
            },
        })?;
        let hash_key = init_schema(&db, path)?;
        if !marker.exists() {
            std::fs::write(&marker, MARKER_TEXT).map_err(|e| StoreError::Foreign {
                path: path.into(),
                why: format!("cannot write its marker {}: {e}", marker.display()),
            })?;
        }
        Ok(Store {
            db: handle::Handle::new(path, db),
            path: path.into(),
            identity: identity(path),
            hash_key,
            born: Default::default(),
            key_cache: Default::default(),
            legacy_settled: Default::default(),
        })
    }

    /// Whether the file berth opened is still the one at its path. Refuses (as
    /// [`StoreError::Gone`]) when it was deleted or replaced: writes would go to an unlinked
    /// file and be lost at the next start.
    pub fn check_on_disk(&self) -> Result<(), StoreError> {
        if identity(&self.path) == self.identity {
            return Ok(());
        }
        Err(StoreError::Gone {
            path: self.path.clone(),
            why: "the database file was deleted or replaced while berth runs; nothing more is written to it. Restore it from a backup and restart berth".into(),
        })
    }

    /// Whether writes work: true unless the last commit failed; then a small probe write
    /// (the time, in `meta`) is tried, so readiness comes back once the disk has room again
    /// without waiting for a user's write.
    pub fn writable(&self) -> bool {
        if !self.db.is_failing() {
            return true;
        }
        let probe = || -> Result<(), StoreError> {
            let txn = self.db.begin_write()?;
            txn.open_table(META)
                .map_err(db_err)?
                .insert("write_probe", unix_now().to_string().as_str())
                .map_err(db_err)?;
            self.db.commit(txn)
        };
        probe().is_ok()
    }

    /// Reads every row of a JSON table.
    fn read_all<T: DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &str>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(def).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            out.push((
                k.value().to_string(),
                from_json(def.name(), k.value(), v.value())?,
            ));
        }
        Ok(out)
    }

    /// Reads one row of a JSON table.
    fn read_one<T: DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &str>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(def).map_err(db_err)?;
        let Some(v) = table.get(key).map_err(db_err)? else {
            return Ok(None);
        };
        Ok(Some(from_json(def.name(), key, v.value())?))
    }
}

/// Creates the tables of a new database, or checks the version of an existing one. Returns
/// the hash key.
fn init_schema(db: &Database, path: &Path) -> Result<[u8; 32], StoreError> {
    let foreign = |why: String| StoreError::Foreign {
        path: path.into(),
        why,
    };
    let txn = db.begin_write().map_err(db_err)?;
    let existing: Vec<String> = txn
        .list_tables()
        .map_err(db_err)?
        .map(|h| h.name().to_string())
        .collect();
    let key = {
        let mut meta = txn
            .open_table(META)
            .map_err(|e| foreign(format!("table meta: {e}")))?;
        let version = meta
            .get("schema_version")
            .map_err(db_err)?
            .map(|v| v.value().to_string());
        match version {
            Some(v) if v == SCHEMA_VERSION.to_string() => {}
            Some(found) => {
                return Err(StoreError::Schema {
                    path: path.into(),
                    found,
                })
            }
            None if !existing.is_empty() => {
                return Err(foreign(format!(
                    "it has tables ({}) but no schema version",
                    existing.join(", ")
                )))
            }
            None => {
                let key = crate::store::tokens::new_hash_key();
                meta.insert("schema_version", SCHEMA_VERSION.to_string().as_str())
                    .map_err(db_err)?;
                meta.insert("hash_key", blake3::Hash::from_bytes(key).to_hex().as_str())
                    .map_err(db_err)?;
            }
        }
        let hex = meta
            .get("hash_key")
            .map_err(db_err)?
            .map(|v| v.value().to_string())
            .ok_or_else(|| foreign("meta has no hash_key".into()))?;
        blake3::Hash::from_hex(hex.as_str()).map_err(|e| foreign(format!("meta hash_key: {e}")))?
    };
    for def in [USERS, CLIENT_KEYS, APP_STATUS, REVISIONS, INCARNATIONS] {
        txn.open_table(def)
            .map_err(|e| foreign(format!("table {}: {e}", def.name())))?;
    }
    txn.open_table(AUDIT)
        .map_err(|e| foreign(format!("table audit: {e}")))?;
    audit::index(&txn)?;
    txn.commit().map_err(db_err)?;
    Ok(*key.as_bytes())
}

/// A fresh database in a temp directory, for unit tests (the directory lives as long as the
/// returned guard).
#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("berth.redb")).unwrap();
    (dir, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    #[test]
    fn reopen_keeps_the_hash_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        let k1 = Store::open(&path).unwrap().hash_key;
        let k2 = Store::open(&path).unwrap().hash_key;
        assert_eq!(k1, k2);
    }

    #[test]
    fn a_second_open_in_one_process_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        let _held = Store::open(&path).unwrap();
        let err = Store::open(&path).err().expect("second open must fail");
        assert!(matches!(err, StoreError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("berth.redb"), "{err}");
    }

    #[test]
    fn another_schema_version_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("schema_version", "99")
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(&path).err().expect("must refuse");
        let msg = err.to_string();
        assert!(msg.contains("schema version 99"), "{msg}");
        assert!(msg.contains("berth.redb"), "{msg}");
        // Nothing of ours was written: the version stands and no berth table appeared.
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let tables: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        assert_eq!(tables, ["meta"]);
        let meta = txn.open_table(META).unwrap();
        assert_eq!(meta.get("schema_version").unwrap().unwrap().value(), "99");
    }

    #[test]
    fn foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.redb");
        std::fs::write(
            &junk,
            b"this is not a database at all, just text\n".repeat(100),
        )
        .unwrap();
        let err = Store::open(&junk).err().expect("must refuse");
        assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("junk.redb"), "{err}");

        let other = dir.path().join("other.redb");
        {
            let db = Database::create(&other).unwrap();
            let txn = db.begin_write().unwrap();
            let t: TableDefinition<&str, u64> = TableDefinition::new("something");
            txn.open_table(t).unwrap().insert("x", &1).unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(&other).err().expect("must refuse");
        assert!(err.to_string().contains("no schema version"), "{err}");
    }
}

#[cfg(test)]
mod marker_tests {
    use super::*;

    #[test]
    fn a_database_that_vanished_is_not_made_again_and_a_replaced_one_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        let store = Store::open(&path).unwrap();
        store.check_on_disk().unwrap();
        std::fs::remove_file(&path).unwrap();
        let err = store.check_on_disk().unwrap_err();
        assert!(err.to_string().contains("deleted or replaced"), "{err}");
        drop(store);
        let err = Store::open(&path).err().expect("opened a fresh database");
        assert!(matches!(err, StoreError::Gone { .. }), "{err}");
        assert!(err.to_string().contains("restore"), "{err}");
        assert!(!path.exists());
        std::fs::remove_file(marker_path(&path)).unwrap();
        Store::open(&path).expect("starting over on purpose");
    }
}
