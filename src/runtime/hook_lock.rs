//! The per-template hook lock that other processes see: an exclusive `flock` on
//! `<dir>/<template>.lock`. The in-process mutex keeps one berth's hooks of a template in
//! line; this keeps a `serve` and a `berth apply` (or a second serve on the same root) in
//! line too. The kernel drops the lock when its holder dies, even by SIGKILL, so a killed berth
//! never leaves a template locked.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A held lock; released on drop (closing the file releases the `flock`).
pub struct TemplateLock {
    _file: std::fs::File,
}

impl TemplateLock {
    /// Waits for the lock of `template` in `dir` (made if missing), on a blocking thread.
    pub async fn acquire(dir: &Path, template: &str) -> std::io::Result<TemplateLock> {
        let path: PathBuf = dir.join(format!("{template}.lock"));
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            // std opens with O_CLOEXEC: the hook does not inherit the lock and cannot keep it
            // past its berth.
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            loop {
                // SAFETY: flock on a descriptor this function owns.
                if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                    return Ok(TemplateLock { _file: file });
                }
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        })
        .await
        .map_err(std::io::Error::other)?
    }
}
