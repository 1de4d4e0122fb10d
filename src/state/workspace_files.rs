//! An app's workspace files (`apps/<userid>/<appname>/`, docs/reference/files-on-disk.md and docs/guides/portal.md), as the files API
//! lists, reads and writes them: the code a user edits, which the container mounts.
//!
//! **Invariant: nothing outside the workspace is read or written through it.** A path is
//! checked as text first ([`FilePath::parse`]: no `..`, `.`, empty component, absolute path,
//! NUL, backslash or control character, bounded length and depth), then walked one component
//! at a time from an open directory with `O_NOFOLLOW` (the `dir` module), so a symlink
//! anywhere on the path (the user directory, the workspace, a directory inside, the file
//! itself) is refused, never followed, and a rename elsewhere cannot redirect the walk. The
//! container can change its workspace at any moment; these checks hold on the descriptors
//! actually used, not on a path looked up twice.
//!
//! **A write is whole or absent**: a temp file (`.berth-tmp-…`) in the same directory,
//! fsync, `renameat` over the name, fsync of the directory. Writes through berth are
//! serialized by one lock, under which the etag is checked and the rename made, so of two
//! writers holding the same etag exactly one wins. Files are written 0644 (an existing
//! file's permission bits are kept, without group or other write).

mod dir;
mod listing;
mod path;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use dir::{Dir, Kind};
pub use listing::{Entry, Listing};
pub use path::FilePath;

use crate::model::names::AppKey;

/// Largest file the API reads or writes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Most components in a path (and deepest a listing goes).
pub const MAX_DEPTH: usize = 16;
/// Longest path, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Most entries one listing returns.
pub const MAX_LIST_ENTRIES: usize = 1000;
/// Most bytes one listing hashes for etags; files past it are listed without one.
pub const LIST_HASH_BUDGET: u64 = 32 * 1024 * 1024;
/// Names berth keeps for itself (its temp files); never listed, read or written.
pub const RESERVED_PREFIX: &str = ".berth-";
/// A directory never listed or served: the mount point of a template's shared modules.
pub const SKIPPED_DIR: &str = "node_modules";

/// Why a workspace file request was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path breaks a rule; `rule` says which.
    #[error("{shown}: {rule}")]
    InvalidPath {
        /// The path as asked, escaped.
        shown: String,
        /// The rule it breaks.
        rule: String,
    },
    /// A component of the path (or the workspace itself) is a symlink.
    #[error("{shown}: '{link}' is a symlink; berth never follows links in a workspace")]
    Symlink {
        /// The path as asked.
        shown: String,
        /// The component that is a link.
        link: String,
    },
    /// Something on the path is not what the call needs (a directory, a device, a file
    /// where a directory belongs).
    #[error("{shown}: '{name}' is {what}")]
    NotAFile {
        /// The path as asked.
        shown: String,
        /// The component at fault.
        name: String,
        /// What it is instead.
        what: &'static str,
    },
    /// No such file.
    #[error("{shown}: no such file")]
    NotFound {
        /// The path as asked.
        shown: String,
    },
    /// The app's workspace does not exist (yet: its first deploy makes it).
    #[error("app {0} has no workspace yet (its first deploy creates it)")]
    NoWorkspace(AppKey),
    /// A body over [`MAX_FILE_BYTES`].
    #[error("{shown}: {size} bytes; files are at most {MAX_FILE_BYTES} bytes")]
    TooLarge {
        /// The path as asked.
        shown: String,
        /// The body's size.
        size: u64,
    },
    /// A file over [`MAX_FILE_BYTES`], which the API does not serve.
    #[error("{shown}: {size} bytes; the files API serves files of at most {MAX_FILE_BYTES} bytes")]
    FileTooLarge {
        /// The path as asked.
        shown: String,
        /// The file's size.
        size: u64,
    },
    /// `If-Match` does not match the file (or the file does not exist).
    #[error("{shown} {}; read it again and retry", stale_why(.current.as_deref()))]
    Stale {
        /// The path as asked.
        shown: String,
        /// The file's etag now, if it exists.
        current: Option<String>,
    },
    /// `If-None-Match: *` but the file exists.
    #[error("{shown} already exists (etag {current}); send If-Match with its etag to replace it")]
    Exists {
        /// The path as asked.
        shown: String,
        /// Its etag.
        current: String,
    },
    /// Something on the path changed under the request (the container swapped a directory
    /// for a link, or removed what was just looked at): nothing escaped the workspace, and
    /// the request did nothing. The user's own container did it; asking again may succeed.
    #[error("{shown}: '{name}' changed while berth was working on it (a link or directory was swapped in or removed); nothing was written, try again")]
    Changed {
        /// The path as asked.
        shown: String,
        /// The component that changed.
        name: String,
    },
    /// The file system failed.
    #[error("{shown}: {source}")]
    Io {
        /// The path as asked.
        shown: String,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
}

impl FileError {
    /// Whether the disk is full (or over quota), so nothing could be written.
    pub fn is_full(&self) -> bool {
        matches!(self, FileError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)))
    }
}

fn stale_why(current: Option<&str>) -> String {
    match current {
        Some(e) => format!("changed since it was read (etag {e})"),
        None => "does not exist".to_string(),
    }
}

/// The etag of a file: blake3 of its bytes, hex (as a manifest's).
pub fn etag(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// One file as read.
#[derive(Debug)]
pub struct Content {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Their etag.
    pub etag: String,
}

/// What a write expects of the file it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// The file exists with this etag (`If-Match`).
    Matches(String),
    /// The file does not exist (`If-None-Match: *`).
    Absent,
}

/// A write's outcome.
#[derive(Debug)]
pub struct Written {
    /// The new etag.
    pub etag: String,
    /// Whether the file was created (rather than replaced).
    pub created: bool,
}

/// The workspaces under `apps_dir`.
#[derive(Debug)]
pub struct WorkspaceFiles {
    apps_dir: PathBuf,
    /// Serializes writes: the etag check and the rename of one write are not interleaved
    /// with another's.
    lock: Mutex<()>,
}

/// Maps an error of a step on `shown` at component `name`: a link or a non-directory is
/// named as such (looked up without following), anything else kept.
fn classify(at: &Dir, name: &str, shown: &str, e: std::io::Error) -> FileError {
    let kind = at.stat(name).map(|s| s.kind);
    match (e.raw_os_error(), kind) {
        (_, Ok(Kind::Symlink)) => FileError::Symlink {
            shown: shown.into(),
            link: name.into(),
        },
        (Some(libc::ENOENT), _) => FileError::NotFound {
            shown: shown.into(),
        },
        (Some(libc::ENOTDIR | libc::ELOOP), Ok(k)) => not_a(shown, name, k),
        _ => changed_or_io(shown, name, e),
    }
}

/// Errors a step can only get when the workspace changed between two system calls (the
/// container owns it and may rename, swap or remove anything at any moment) are a
/// [`FileError::Changed`] the user can retry, not a failure of berth's; others are I/O.
fn changed_or_io(shown: &str, name: &str, e: std::io::Error) -> FileError {
    let raced = matches!(
        e.raw_os_error(),
        Some(
            libc::ELOOP
                | libc::ENOTDIR
                | libc::EISDIR
                | libc::ENOENT
                | libc::EEXIST
                | libc::ENOTEMPTY
        )
    );
    match raced {
        true => FileError::Changed {
            shown: shown.into(),
            name: name.into(),
        },
        false => FileError::Io {
            shown: shown.into(),
            source: e,
        },
    }
}

fn not_a(shown: &str, name: &str, kind: Kind) -> FileError {
    let what = match kind {
        Kind::Dir => "a directory",
        Kind::File => "a file, not a directory",
        Kind::Symlink => "a symlink",
        Kind::Other => "not a regular file (a FIFO, socket or device)",
    };
    FileError::NotAFile {
        shown: shown.into(),
        name: name.into(),
        what,
    }
}

fn io(shown: &str) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        shown: shown.into(),
        source,
    }
}

impl WorkspaceFiles {
    /// Workspaces under `apps_dir` (berth.toml's, trusted: it is the one path resolved whole).
    pub fn new(apps_dir: PathBuf) -> WorkspaceFiles {
        WorkspaceFiles {
            apps_dir,
            lock: Mutex::new(()),
        }
    }

    /// Opens `apps/<userid>/<appname>` without following a link at either level.
    fn workspace(&self, key: &AppKey) -> Result<Dir, FileError> {
        let shown = format!("apps/{key}");
        let apps = Dir::open(&self.apps_dir).map_err(io("apps"))?;
        let mut at = apps;
        for name in [&key.userid, &key.appname] {
            at = match at.sub(name) {
                Ok(d) => d,
                Err(e) => match classify(&at, name, &shown, e) {
                    FileError::NotFound { .. } => return Err(FileError::NoWorkspace(key.clone())),
                    other => return Err(other),
                },
            };
        }
        Ok(at)
    }

    /// Walks to the directory holding `path`'s file. With `create`, missing directories are
    /// made (0755), each opened without following a link like any other.
    fn parent(&self, ws: Dir, path: &FilePath, create: bool) -> Result<Dir, FileError> {
        let shown = path.shown();
        let mut at = ws;
        for name in path.parents() {
            let made = create && at.mkdir(name).map_err(|e| classify(&at, name, &shown, e))?;
            let next = at.sub(name).map_err(|e| classify(&at, name, &shown, e))?;
            if made {
                next.chmod(0o755)
                    .map_err(|e| changed_or_io(&shown, name, e))?;
            }
            at = next;
        }
        Ok(at)
    }

    /// The file `path` names in `at` with its permission bits, or `None` when nothing has
    /// its name; a link or anything but a regular file is refused, never opened for reading.
    fn load(&self, at: &Dir, path: &FilePath) -> Result<Option<(Content, u32)>, FileError> {
        let (shown, name) = (path.shown(), path.name());
        let (st, bytes) = match at.read_file(name, MAX_FILE_BYTES as u64) {
            Ok(read) => read,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(classify(at, name, &shown, e)),
        };
        match (st.kind, bytes) {
            (Kind::File, Some(bytes)) => {
                let etag = etag(&bytes);
                Ok(Some((Content { bytes, etag }, st.mode)))
            }
            (Kind::File, None) => Err(FileError::FileTooLarge {
                shown,
                size: st.size,
            }),
            (Kind::Symlink, _) => Err(FileError::Symlink {
                shown,
                link: name.into(),
            }),
            (kind, _) => Err(not_a(&shown, name, kind)),
        }
    }

    /// The file's etag and permission bits, or `None` when nothing has its name.
    fn current(&self, at: &Dir, path: &FilePath) -> Result<Option<(String, u32)>, FileError> {
        Ok(self.load(at, path)?.map(|(c, mode)| (c.etag, mode)))
    }

    /// The file's bytes and etag.
    pub fn read(&self, key: &AppKey, path: &FilePath) -> Result<Content, FileError> {
        let shown = path.shown();
        let ws = match self.workspace(key) {
            Err(FileError::NoWorkspace(_)) => return Err(FileError::NotFound { shown }),
            other => other?,
        };
        let at = self.parent(ws, path, false)?;
        match self.load(&at, path)? {
            Some((content, _)) => Ok(content),
            None => Err(FileError::NotFound { shown }),
        }
    }

    /// Writes `bytes` as `path` if `pre` holds: atomically, under the write lock.
    pub fn write(
        &self,
        key: &AppKey,
        path: &FilePath,
        bytes: &[u8],
        pre: &Precondition,
    ) -> Result<Written, FileError> {
        let shown = path.shown();
        if bytes.len() > MAX_FILE_BYTES {
            let size = bytes.len() as u64;
            return Err(FileError::TooLarge { shown, size });
        }
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        // First without making directories: a refused write leaves nothing behind.
        let current = match self.parent(self.workspace(key)?, path, false) {
            Ok(at) => self.current(&at, path)?,
            Err(FileError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        check_precondition(&shown, current.as_ref().map(|c| &c.0), pre)?;
        let at = self.parent(self.workspace(key)?, path, true)?;
        let mode = current.as_ref().map_or(0o644, |c| c.1 & 0o755);
        replace(&at, path.name(), bytes, mode)
            .map_err(|e| changed_or_io(&shown, path.name(), e))?;
        Ok(Written {
            etag: etag(bytes),
            created: current.is_none(),
        })
    }

    /// Removes `path` if its etag is still `if_match`.
    pub fn delete(&self, key: &AppKey, path: &FilePath, if_match: &str) -> Result<(), FileError> {
        let shown = path.shown();
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let at = self.parent(self.workspace(key)?, path, false)?;
        let current = self.current(&at, path)?;
        let pre = Precondition::Matches(if_match.to_string());
        check_precondition(&shown, current.as_ref().map(|c| &c.0), &pre)?;
        at.unlink(path.name())
            .map_err(|e| changed_or_io(&shown, path.name(), e))?;
        at.sync().map_err(io(&shown))
    }

    /// The workspace's regular files and links, sorted, without `node_modules` and berth's
    /// temp files, at most [`MAX_LIST_ENTRIES`] of them and [`MAX_DEPTH`] deep.
    pub fn list(&self, key: &AppKey) -> Result<Listing, FileError> {
        let ws = self.workspace(key)?;
        listing::list(&ws).map_err(io(&format!("apps/{key}")))
    }
}

fn check_precondition(
    shown: &str,
    current: Option<&String>,
    pre: &Precondition,
) -> Result<(), FileError> {
    match (pre, current) {
        (Precondition::Matches(want), Some(have)) if want == have => Ok(()),
        (Precondition::Matches(_), current) => Err(FileError::Stale {
            shown: shown.into(),
            current: current.cloned(),
        }),
        (Precondition::Absent, None) => Ok(()),
        (Precondition::Absent, Some(have)) => Err(FileError::Exists {
            shown: shown.into(),
            current: have.clone(),
        }),
    }
}

/// Temp file in `at`, fsync, rename over `name`, fsync of `at`. The temp file is removed if
/// any step fails.
fn replace(at: &Dir, name: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(std::io::Error::other)?;
    let tmp = format!("{RESERVED_PREFIX}tmp-{}", hex::encode(random));
    let done = at.create(&tmp, mode).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()?;
        at.rename(&tmp, name)
    });
    if done.is_err() {
        let _ = at.unlink(&tmp);
    }
    done?;
    at.sync()
}

#[cfg(test)]
mod tests;
