//! A file the CLI writes whole or not at all (a backup): written under a temporary name
//! beside its destination (0600, made new), synced, then renamed to its name only if nothing
//! has that name (never written over), and the directory synced. Dropped before it is
//! finished, the temporary file is removed: a cut write never leaves a file that looks whole.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A new file being written; see the module.
pub struct NewFile {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    placed: bool,
}

impl NewFile {
    /// Starts writing `dest`, which must not exist (`AlreadyExists` otherwise).
    pub fn create(dest: &Path) -> io::Result<NewFile> {
        if dest.symlink_metadata().is_ok() {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let name = dest
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "names no file"))?;
        let tmp = dest.with_file_name(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            crate::store::tokens::new_key_id()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let new = NewFile {
            file,
            tmp,
            dest: dest.to_path_buf(),
            placed: false,
        };
        // 0600 whatever the umask: a backup holds every user's token hash.
        new.file
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(new)
    }

    /// Syncs the file, gives it its name (`AlreadyExists` if something took the name
    /// meanwhile: it is not written over) and syncs the directory.
    pub fn finish(mut self) -> io::Result<()> {
        self.file.sync_all()?;
        rename_no_replace(&self.tmp, &self.dest)?;
        self.placed = true;
        let dir = match self.dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    }
}

impl Write for NewFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `renameat2(RENAME_NOREPLACE)`; where the file system has no such rename, a hard link
/// (which never replaces either) and the removal of the old name.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths, relative to the working directory.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if done == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EINVAL) {
        return Err(e);
    }
    std::fs::hard_link(from, to)?;
    std::fs::remove_file(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_private_whole_and_never_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("copy.redb");
        let mut f = NewFile::create(&dest).unwrap();
        f.write_all(b"one").unwrap();
        // Someone takes the name meanwhile: it is kept, the write fails, no temp file stays.
        std::fs::write(&dest, b"theirs").unwrap();
        let e = f.finish().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&dest).unwrap(), b"theirs");
        let names = |d: &Path| -> Vec<_> {
            let entries = std::fs::read_dir(d).unwrap();
            entries.map(|e| e.unwrap().file_name()).collect()
        };
        assert_eq!(names(dir.path()), vec!["copy.redb"]);
        assert_eq!(
            NewFile::create(&dest).err().map(|e| e.kind()),
            Some(io::ErrorKind::AlreadyExists)
        );
        let other = dir.path().join("other.redb");
        let mut f = NewFile::create(&other).unwrap();
        f.write_all(b"two").unwrap();
        f.finish().unwrap();
        assert_eq!(std::fs::read(&other).unwrap(), b"two");
        let mode = std::fs::metadata(&other).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Dropped unfinished: nothing is left.
        let cut = NewFile::create(&dir.path().join("cut.redb")).unwrap();
        drop(cut);
        assert_eq!(names(dir.path()).len(), 2);
    }
}
