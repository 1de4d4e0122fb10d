//! The database file on disk, apart from redb: its `.made` marker (a database was made here,
//! so its disappearance is noticed), its private mode, and [`OnDisk`], which tells berth's
//! file from another one put at its path.
//!
//! **Invariant: berth writes the file only while it is the file berth opened (device, inode)
//! and still a redb file (not empty, its magic bytes first).** A file deleted, replaced,
//! emptied or overwritten in place (issue 36: a truncation while `serve` ran was answered 201
//! and lost, and the next start panicked in redb) is then never written, reopened or made
//! again behind the operator's back. Not caught: another redb file copied over it in place.

use std::path::{Path, PathBuf};

/// Beside the database: says a database was made here, so its disappearance is noticed.
pub(super) fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".made");
    path.with_file_name(name)
}

pub(super) const MARKER_TEXT: &str = "berth made its database beside this file. If the \
database is gone, restore it from a backup; remove this file only to start over with no users \
and no keys.\n";

/// Which file berth has open (device and inode), and a read-only descriptor of it kept from the
/// start, so each check is one `stat` of the path and one `pread` of the first bytes: no open
/// per transaction (a hot path: every API call reads), and no false alarm when descriptors run
/// short.
#[derive(Debug)]
pub(super) struct OnDisk {
    dev: u64,
    ino: u64,
    head: std::fs::File,
}

/// The first bytes of every redb file.
const MAGIC: &[u8] = b"redb\x1A\x0A\xA9\x0D\x0A";

/// The device and inode at `path`; `None` when there is no file.
fn dev_ino(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}

impl OnDisk {
    /// The file at `path` as berth opens it; `None` when it cannot be read.
    pub(super) fn of(path: &Path) -> Option<OnDisk> {
        use std::os::unix::fs::MetadataExt;
        let head = std::fs::File::open(path).ok()?;
        let m = head.metadata().ok()?;
        Some(OnDisk {
            dev: m.dev(),
            ino: m.ino(),
            head,
        })
    }

    /// Why the file at `path` is no longer this one, or no longer a redb file: emptied, or
    /// overwritten in place from its start. (The file's length and time are not compared:
    /// redb changes them itself, a rollback too.)
    pub(super) fn changed(&self, path: &Path) -> Option<String> {
        use std::os::unix::fs::FileExt;
        match dev_ino(path) {
            None => return Some("the database file was deleted or replaced while berth runs (it is gone from its path)".into()),
            Some(now) if now != (self.dev, self.ino) => return Some("the database file was deleted or replaced while berth runs (another file is at its path)".into()),
            Some(_) => {}
        }
        let mut head = [0u8; MAGIC.len()];
        match self.head.read_at(&mut head, 0) {
            Err(e) => Some(format!("the database file cannot be read: {}", io_why(&e))),
            Ok(0) => Some("the database file was emptied (truncated to 0 bytes) while berth runs".into()),
            Ok(n) if head[..n] != *MAGIC => Some("the database file was overwritten in place by something other than berth while berth runs (it is no redb file any more)".into()),
            Ok(_) => None,
        }
    }
}

/// What to do about a database that changed under berth.
pub(super) const RECOVER: &str = "nothing more is written to it; stop berth, restore the copy \
`berth backup` made (or remove the file and its `.made` marker to start with no users and no \
keys), and start berth again";

/// Makes `path` a file only its owner can read (0600): created so when missing (before redb
/// opens it, so there is no moment it is readable), tightened with a log line when an older
/// berth left it readable by others. It holds revisions with env values.
pub(super) fn private_file(path: &Path) -> std::io::Result<()> {
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

/// The operator's words for an error the file system gave berth's own file: what is wrong,
/// not a guess.
pub(super) fn io_why(e: &std::io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => {
            " (is the file immutable? `lsattr` shows an `i`; `chattr -i` clears it)"
        }
        Some(libc::EACCES) => " (permission denied: check the file's owner and mode)",
        Some(libc::EROFS) => " (the file system is read-only)",
        _ => "",
    };
    format!("{e}{hint}")
}
