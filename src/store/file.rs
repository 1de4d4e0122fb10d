//! The database file on disk, apart from redb: its `.made` marker (a database was made here,
//! so its disappearance is noticed), its private mode, and its [`Stamp`], which tells berth's
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

/// Which file berth has open: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
}

/// The first bytes of every redb file.
const MAGIC: &[u8] = b"redb\x1A\x0A\xA9\x0D\x0A";

/// The stamp of the file at `path`; `None` when there is none.
pub(super) fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// Why the file at `path` is no longer the one berth has open (compared with `was`), or no
/// longer a redb file: emptied, or overwritten in place from its start. (The file's length
/// and time are not compared: redb changes them itself, a rollback too.)
pub(super) fn changed(path: &Path, was: Stamp) -> Option<String> {
    use std::io::Read;
    match stamp(path) {
        None => return Some("the database file was deleted or replaced while berth runs (it is gone from its path)".into()),
        Some(now) if now != was => return Some("the database file was deleted or replaced while berth runs (another file is at its path)".into()),
        Some(_) => {}
    }
    let mut head = Vec::with_capacity(MAGIC.len());
    let read =
        std::fs::File::open(path).and_then(|f| f.take(MAGIC.len() as u64).read_to_end(&mut head));
    match read {
        Err(e) => Some(format!("the database file cannot be read: {}", io_why(&e))),
        Ok(0) => Some("the database file was emptied (truncated to 0 bytes) while berth runs".into()),
        Ok(_) if head != MAGIC => Some("the database file was overwritten in place by something other than berth while berth runs (it is no redb file any more)".into()),
        Ok(_) => None,
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
