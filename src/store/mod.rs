//! The redb database (docs/reference/files-on-disk.md `berth.redb`): users and their hashed admin tokens, client keys,
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
mod backup_status;
mod file;
mod handle;
mod incarnations;
mod jobs;
mod key_cache;
mod keys;
mod renames;
mod revisions;
mod status;
pub mod tokens;
mod users;

use file::{marker_path, private_file, MARKER_TEXT};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, DatabaseError, ReadableTable, TableDefinition, TableHandle};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use audit::{AuditEntry, Retention};
pub use backup::Snapshot;
pub use backup_status::BackupStatus;
pub use incarnations::Synced;
pub use jobs::{JobRun, LastFire};
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
const BACKUP_STATUS: TableDefinition<&str, &str> = TableDefinition::new("backup_status");
/// The tables of JSON rows keyed by text, made with the database.
const JSON_TABLES: [TableDefinition<&str, &str>; 6] = [
    USERS,
    CLIENT_KEYS,
    APP_STATUS,
    REVISIONS,
    INCARNATIONS,
    BACKUP_STATUS,
];

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
    /// The file system refuses berth its own file (immutable, read-only, permissions).
    #[error("{}: cannot write the database: {}", path.display(), file::io_why(source))]
    Unwritable {
        /// The database file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
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
        redb::Error::Io(io) if is_refused(&io) => StoreError::Unwritable {
            path: PathBuf::from("the database"),
            source: io,
        },
        other => StoreError::Db(Box::new(other)),
    }
}

/// A write that failed for want of space (or of quota).
pub fn is_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// A write the file system refuses whatever the space: immutable, read-only, permissions.
fn is_refused(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::EACCES | libc::EROFS)
    )
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

/// The open database.
pub struct Store {
    /// redb handle, reopened after a failed write; it knows the file's stamp, so a
    /// deletion, replacement or overwrite while berth runs is noticed, not written past.
    db: handle::Handle,
    /// The file.
    path: PathBuf,
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
        refuse_lost(path, &marker)?;
        private_file(path).map_err(|source| StoreError::Unwritable {
            path: path.into(),
            source,
        })?;
        // redb panics on some damaged files (issue 36: exit 101 after a truncation): a damaged
        // file is refused as one, with its name, not a crash.
        let opened = std::panic::catch_unwind(|| {
            let db = Database::create(path)?;
            Ok::<_, DatabaseError>((init_schema(&db, path), db))
        });
        let (hash_key, db) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(StoreError::Busy { path: path.into() })
            }
            Ok(Err(DatabaseError::Storage(redb::StorageError::Io(source))))
                if is_refused(&source) =>
            {
                return Err(StoreError::Unwritable {
                    path: path.into(),
                    source,
                })
            }
            Ok(Err(other)) => return Err(foreign(path, other.to_string())),
            Err(_) => {
                return Err(foreign(
                    path,
                    "redb could not read it: the file is damaged".into(),
                ))
            }
        };
        let hash_key = hash_key?;
        if !marker.exists() {
            std::fs::write(&marker, MARKER_TEXT).map_err(|e| StoreError::Foreign {
                path: path.into(),
                why: format!("cannot write its marker {}: {e}", marker.display()),
            })?;
        }
        Ok(Store {
            db: handle::Handle::new(path, db),
            path: path.into(),
            hash_key,
            born: Default::default(),
            key_cache: Default::default(),
            legacy_settled: Default::default(),
        })
    }

    /// Whether the file berth opened is still at its path, and still a redb file. Refuses
    /// (as [`StoreError::Gone`]) when it was deleted, replaced, emptied or overwritten in
    /// place: writes would be lost, or would damage what is there now.
    pub fn check_on_disk(&self) -> Result<(), StoreError> {
        self.db.check_on_disk()
    }

    /// Why the last commit failed, while it is the last word (`/readyz` says it).
    pub fn last_write_failure(&self) -> Option<String> {
        self.db.last_failure()
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

fn foreign(path: &Path, why: String) -> StoreError {
    StoreError::Foreign {
        path: path.into(),
        why,
    }
}

/// Refuses to make a database where berth made one before (its marker is there) and the file
/// is gone or empty: a fresh one would drop every user and key without a word.
fn refuse_lost(path: &Path, marker: &Path) -> Result<(), StoreError> {
    if !marker.exists() {
        return Ok(());
    }
    let what = match std::fs::metadata(path) {
        Err(_) => "is gone",
        Ok(m) if m.len() == 0 => "is empty (0 bytes)",
        Ok(_) => return Ok(()),
    };
    Err(StoreError::Gone {
        path: path.into(),
        why: format!(
            "berth's database was here and {what} (its marker {} remains); nothing was made in its place; restore the file from the copy `berth backup` made, or remove the file and the marker to start with no users and no keys",
            marker.display()
        ),
    })
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
    for def in JSON_TABLES {
        txn.open_table(def)
            .map_err(|e| foreign(format!("table {}: {e}", def.name())))?;
    }
    txn.open_table(AUDIT)
        .map_err(|e| foreign(format!("table audit: {e}")))?;
    audit::index(&txn)?;
    jobs::init(&txn)?;
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
mod open_tests;
