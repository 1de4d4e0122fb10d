//! The redb handle, reopened after an I/O failure. redb latches a failed write (a full disk,
//! an EIO): every later write transaction answers "previous I/O error, reopen the database",
//! and a failed commit discards the allocator state until a reopen rebuilds it. Without a
//! reopen one full disk broke users, keys, audit and revisions until berth restarted; with it,
//! the first call after the disk is freed works again.
//!
//! **Invariant: a failed commit marks the handle broken, and the next transaction reopens the
//! file first.** Nothing is retried behind the caller's back but a transaction that had not
//! begun (a begin that met the latched error): a failed commit is reported, never replayed.
//!
//! **Invariant: no transaction, commit or reopen touches a file that is not the one berth
//! opened, or is no redb file any more** (`file`): every write path (the API's, the loop's
//! revisions and incarnations, the status saver) goes through [`Handle::commit`], which checks
//! it first, and a reopen opens only the file that is there (never creates one).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use redb::{Database, DatabaseError, ReadTransaction, ReadableDatabase, WriteTransaction};

use super::file::{self, OnDisk};
use super::StoreError;

/// The open database file, reopened when a write failed.
pub(super) struct Handle {
    path: PathBuf,
    db: RwLock<Option<Database>>,
    /// A commit (or a reopen) failed: the next transaction reopens first.
    broken: AtomicBool,
    /// The last commit failed: `/readyz` says the database is not writable until one
    /// succeeds.
    failing: AtomicBool,
    /// Commits made through this handle: what was read at one generation is still true while
    /// it is the same (the key cache relies on it; one process holds the file).
    generation: std::sync::atomic::AtomicU64,
    /// Which file berth opened (device, inode, a descriptor to read its first bytes).
    on_disk: Option<OnDisk>,
    /// What the last commit's failure was, while it is the last word.
    failure: Mutex<Option<String>>,
}

impl Handle {
    /// Wraps a database opened at `path`.
    pub(super) fn new(path: &Path, db: Database) -> Handle {
        Handle {
            path: path.into(),
            db: RwLock::new(Some(db)),
            broken: AtomicBool::new(false),
            failing: AtomicBool::new(false),
            generation: Default::default(),
            on_disk: OnDisk::of(path),
            failure: Mutex::default(),
        }
    }

    /// Refuses ([`StoreError::Gone`]) when the file is not the one berth opened, or no redb
    /// file any more.
    pub(super) fn check_on_disk(&self) -> Result<(), StoreError> {
        let why = match &self.on_disk {
            Some(was) => was.changed(&self.path),
            None => Some("the database file could not be read when berth opened it".into()),
        };
        match why {
            None => Ok(()),
            Some(why) => Err(StoreError::Gone {
                path: self.path.clone(),
                why: format!("{why}; {}", file::RECOVER),
            }),
        }
    }

    /// Why the last commit failed, while no commit has succeeded since.
    pub(super) fn last_failure(&self) -> Option<String> {
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.clone()
    }

    /// See the field `generation`.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// Whether the last commit failed.
    pub(super) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// A write transaction; reopens the file first when the last write failed, and once more
    /// when redb reports a latched I/O error at begin (nothing of the caller's ran yet).
    pub(super) fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        self.begin(|db| db.begin_write().map_err(super::db_err))
    }

    /// A read transaction, under the same rules (redb refuses reads too once a write failed).
    pub(super) fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        self.begin(|db| db.begin_read().map_err(super::db_err))
    }

    fn begin<T>(&self, f: impl Fn(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        // redb can panic reading a file changed under it: no transaction begins on one.
        self.check_on_disk()?;
        for attempt in 0..2 {
            if self.is_broken() || self.db.read().expect("db lock").is_none() {
                self.reopen()?;
            }
            match self.with(&f)? {
                Ok(txn) => return Ok(txn),
                Err(e) if attempt == 0 && latched(&e) => self.mark_broken(&e),
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Commits `txn`; a failure marks the handle broken so the next write reopens the file.
    /// A file changed under berth is refused before anything is written to it.
    pub(super) fn commit(&self, txn: WriteTransaction) -> Result<(), StoreError> {
        if let Err(gone) = self.check_on_disk() {
            let _ = txn.abort();
            self.note_failure(&gone);
            return Err(gone);
        }
        let committed = txn.commit().map_err(|e| self.named(super::db_err(e)));
        // Bumped whatever the outcome: a failed commit may have changed what a reader sees.
        self.generation.fetch_add(1, Ordering::AcqRel);
        match committed {
            Ok(()) => {
                self.broken.store(false, Ordering::Relaxed);
                self.failing.store(false, Ordering::Relaxed);
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(())
            }
            Err(e) => {
                self.failing.store(true, Ordering::Relaxed);
                self.note_failure(&e);
                self.mark_broken(&e);
                Err(e)
            }
        }
    }

    fn note_failure(&self, e: &StoreError) {
        let why = crate::error_chain::chain(e).to_string();
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    /// Names the file in an error that could not know it.
    fn named(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Unwritable { source, .. } => StoreError::Unwritable {
                path: self.path.clone(),
                source,
            },
            other => other,
        }
    }

    fn mark_broken(&self, cause: &StoreError) {
        if !self.broken.swap(true, Ordering::Relaxed) {
            tracing::error!(file = %self.path.display(), cause = %crate::error_chain::chain(cause), "a database write failed; the file is reopened before the next write");
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Database) -> T) -> Result<T, StoreError> {
        let guard = self.db.read().expect("db lock");
        match guard.as_ref() {
            Some(db) => Ok(f(db)),
            None => Err(self.closed("it is being reopened")),
        }
    }

    /// Drops the open handle and opens the file again (redb repairs it on open). Fails while
    /// another thread still holds a transaction of the old handle; the next call tries again.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().expect("db lock");
        if slot.is_some() && !self.is_broken() {
            return Ok(()); // another thread reopened it meanwhile
        }
        // Only the file berth wrote last is opened again, and never made: a missing,
        // replaced or overwritten file stays as the operator left it.
        self.check_on_disk()?;
        slot.take();
        let opened = std::panic::catch_unwind(|| Database::open(&self.path));
        let opened = opened.unwrap_or_else(|_| {
            Err(DatabaseError::Storage(redb::StorageError::Corrupted(
                "redb could not read it".into(),
            )))
        });
        match opened {
            Ok(db) => {
                *slot = Some(db);
                self.broken.store(false, Ordering::Relaxed);
                tracing::info!(file = %self.path.display(), "reopened the database after a failed write");
                Ok(())
            }
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                Err(self.closed("a transaction from before the failure is still open"))
            }
            Err(e) => {
                self.broken.store(true, Ordering::Relaxed);
                Err(self.named(super::db_err(e)))
            }
        }
    }

    fn closed(&self, why: &str) -> StoreError {
        StoreError::Reopening {
            path: self.path.clone(),
            why: why.into(),
        }
    }
}

impl Drop for Handle {
    /// redb writes its file when closed: one changed under berth is left as it is found (the
    /// handle is leaked instead; the process is ending, or the store is being given up).
    fn drop(&mut self) {
        if self.check_on_disk().is_err() {
            if let Some(db) = self.db.write().unwrap_or_else(|e| e.into_inner()).take() {
                std::mem::forget(db);
            }
        }
    }
}

/// A begin that failed on redb's latched I/O error or discarded allocator state: the file
/// must be reopened, and nothing of the transaction ran.
fn latched(e: &StoreError) -> bool {
    match e {
        StoreError::Db(e) => matches!(**e, redb::Error::PreviousIo | redb::Error::Corrupted(_)),
        _ => false,
    }
}
