//! The one lock every deciding process holds on its root: an exclusive `flock` on
//! `<root>/berth.lock`. `serve` holds it for its life; `apply` and `mv` without a daemon hold
//! it for their pass. A second decider on the same root, whatever database or socket its own
//! config names, is refused with the holder's pid instead of racing the first one for the same
//! containers and files. The kernel drops the lock with the process, so a killed berth leaves
//! nothing to clean up; the file itself stays (it only names the last holder).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file's name under the root.
pub const LOCK_FILE: &str = "berth.lock";

/// Why the root lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum RootLockError {
    /// Another process decides for this root.
    #[error("{} is held by another berth ({holder}): one process decides for a root; stop it or use its socket", path.display())]
    Held {
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote of itself (`pid 1234: berth serve`).
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The failed call.
        #[source]
        source: std::io::Error,
    },
}

/// A held root lock; released when dropped (closing the file releases the `flock`).
#[derive(Debug)]
pub struct RootLock {
    _file: File,
}

impl RootLock {
    /// Takes the lock on `root` without waiting, and writes `pid <pid>: <what>` into it.
    pub fn acquire(root: &Path, what: &str) -> Result<RootLock, RootLockError> {
        let path = root.join(LOCK_FILE);
        let io = |source| RootLockError::Io {
            path: path.clone(),
            source,
        };
        // Opened close-on-exec (std's default): a hook must not inherit the lock and hold it
        // past its berth.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        if !try_lock(&file).map_err(io)? {
            let holder = holder(&mut file);
            // A berth killed while a child of it was between fork and exec leaves that child
            // holding the lock for a moment: a holder that is gone is waited for, briefly.
            if !(holder_is_gone(&holder) && lock_within(&file, GONE_HOLDER_WAIT).map_err(io)?) {
                return Err(RootLockError::Held { holder, path });
            }
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        let line = format!("pid {}: {what}\n", std::process::id());
        file.write_all(line.as_bytes()).map_err(io)?;
        Ok(RootLock { _file: file })
    }
}

/// [`RootLock::acquire`] for a command that asked the daemon first and found none answering:
/// the error says so, since a holder then is a `serve` whose socket is gone.
pub fn acquire_without_daemon(root: &Path, what: &str) -> Result<RootLock, String> {
    RootLock::acquire(root, what).map_err(|e| {
        format!(
            "no daemon answers on its socket, and {}",
            crate::error_chain::chain(&e)
        )
    })
}

/// How long a lock whose holder is gone may take to be released.
const GONE_HOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Takes the lock if no one holds it.
fn try_lock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a descriptor the caller owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        true => Ok(false),
        false => Err(err),
    }
}

/// Tries the lock again until `wait` has passed.
fn lock_within(file: &File, wait: std::time::Duration) -> std::io::Result<bool> {
    let until = std::time::Instant::now() + wait;
    while std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if try_lock(file)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the process the lock file names (`pid N: ...`) no longer exists.
fn holder_is_gone(holder: &str) -> bool {
    let pid = holder
        .strip_prefix("pid ")
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse::<libc::pid_t>().ok());
    // SAFETY: signal 0 only checks that the process exists.
    pid.is_some_and(|pid| {
        pid > 0
            && unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    })
}

/// What the holder wrote of itself, or a placeholder when it has not written yet.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.take(200).read_to_string(&mut text);
    match text.trim() {
        "" => "a process that has not said which yet".to_string(),
        said => said.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = RootLock::acquire(dir.path(), "berth serve").unwrap();
        let err = RootLock::acquire(dir.path(), "berth apply").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, RootLockError::Held { .. }), "{text}");
        let pid = format!("pid {}: berth serve", std::process::id());
        assert!(text.contains(&pid), "{text}");
        assert!(text.contains("berth.lock"), "{text}");
        drop(first);
        RootLock::acquire(dir.path(), "berth apply").expect("free once the first is dropped");
    }

    #[test]
    fn a_missing_root_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = RootLock::acquire(&dir.path().join("nope"), "berth serve").unwrap_err();
        assert!(matches!(err, RootLockError::Io { .. }));
        assert!(err.to_string().contains("nope/berth.lock"), "{err}");
    }

    #[test]
    fn a_lock_whose_holder_is_gone_is_waited_for_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let held = RootLock::acquire(dir.path(), "berth serve").unwrap();
        // As a killed berth's child between fork and exec would: the lock is held, and the
        // file names a process that no longer exists.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        std::fs::write(
            dir.path().join(LOCK_FILE),
            format!("pid {dead}: berth serve\n"),
        )
        .unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        RootLock::acquire(dir.path(), "berth serve").expect("waited for the gone holder");
        release.join().unwrap();
    }
}
