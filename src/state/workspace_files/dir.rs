//! Directory-fd-relative file operations that never follow a symbolic link: every name is
//! one path component, opened with `openat(…, O_NOFOLLOW)` from an open directory, so what a
//! call reaches cannot change under it by a rename or a planted link elsewhere on the path.
//!
//! A file is first opened with `O_PATH` (which opens nothing on the device side: no FIFO
//! blocks, no device driver runs), checked to be a regular file on that very descriptor, and
//! only then reopened for reading through `/proc/self/fd`, which names the same inode. A
//! device node planted in a workspace is therefore never opened for reading.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What a name in a directory is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A FIFO, socket or device node.
    Other,
}

/// A name's kind, size and permission bits (`lstat`-like).
#[derive(Debug, Clone, Copy)]
pub(super) struct Stat {
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
}

fn stat_of(st: &libc::stat) -> Stat {
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    };
    Stat {
        kind,
        size: st.st_size as u64,
        mode: st.st_mode & 0o7777,
    }
}

fn cname(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn fstat(fd: libc::c_int) -> io::Result<Stat> {
    // SAFETY: `st` is a plain C struct filled by fstat on success; `fd` is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(stat_of(&st))
}

/// An open directory.
#[derive(Debug)]
pub(super) struct Dir(OwnedFd);

impl Dir {
    /// Opens `path` (berth's own configured `apps_dir`, which is trusted: this is the one
    /// open that resolves a whole path).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
        // SAFETY: a valid C string; the fd returned is owned below.
        let fd = check(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok(Dir(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn openat(&self, name: &str, flags: libc::c_int, mode: libc::c_uint) -> io::Result<OwnedFd> {
        let c = cname(name)?;
        // SAFETY: `self.0` is an open directory, `c` a valid C string.
        let fd = check(unsafe {
            libc::openat(
                self.0.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode,
            )
        })?;
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The directory `name` inside this one; a symlink there fails (`ELOOP` or `ENOTDIR`).
    pub fn sub(&self, name: &str) -> io::Result<Dir> {
        self.openat(name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .map(Dir)
    }

    /// What `name` is, without following it.
    pub fn stat(&self, name: &str) -> io::Result<Stat> {
        let c = cname(name)?;
        // SAFETY: as in `fstat`; AT_SYMLINK_NOFOLLOW makes it an lstat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        check(unsafe {
            libc::fstatat(
                self.0.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        Ok(stat_of(&st))
    }

    /// Makes the directory `name` (mode 0755); `false` when something already had the name.
    pub fn mkdir(&self, name: &str) -> io::Result<bool> {
        let c = cname(name)?;
        // SAFETY: `self.0` is an open directory, `c` a valid C string.
        match check(unsafe { libc::mkdirat(self.0.as_raw_fd(), c.as_ptr(), 0o755) }) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets this directory's permission bits (a directory berth made: 0755 whatever the umask).
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        // SAFETY: `self.0` is open.
        check(unsafe { libc::fchmod(self.0.as_raw_fd(), mode as libc::mode_t) }).map(drop)
    }

    /// Reads `name` if it is a regular file of at most `max` bytes: its stat and, when small
    /// enough, its bytes. A symlink, directory, FIFO, socket or device is reported by its
    /// [`Kind`] and never opened for reading.
    pub fn read_file(&self, name: &str, max: u64) -> io::Result<(Stat, Option<Vec<u8>>)> {
        let path = self.openat(name, libc::O_PATH, 0)?;
        let st = fstat(path.as_raw_fd())?;
        if st.kind != Kind::File || st.size > max {
            return Ok((st, None));
        }
        let proc = format!("/proc/self/fd/{}", path.as_raw_fd());
        let file = std::fs::OpenOptions::new().read(true).open(proc)?;
        let st = fstat(file.as_raw_fd())?;
        if st.kind != Kind::File {
            return Ok((st, None));
        }
        let mut bytes = Vec::new();
        file.take(max + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > max {
            let grown = Stat {
                size: bytes.len() as u64,
                ..st
            };
            return Ok((grown, None));
        }
        Ok((st, Some(bytes)))
    }

    /// Creates the new file `name` (never an existing one, never through a link) with exactly
    /// `mode`, open for writing.
    pub fn create(&self, name: &str, mode: u32) -> io::Result<File> {
        let fd = self.openat(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600)?;
        // SAFETY: `fd` is open; the umask does not apply to fchmod.
        check(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
        Ok(File::from(fd))
    }

    /// Renames `from` to `to`, both in this directory: `to` is replaced atomically (a link
    /// named `to` is replaced, never followed).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (f, t) = (cname(from)?, cname(to)?);
        let fd = self.0.as_raw_fd();
        // SAFETY: `fd` is an open directory, both names valid C strings.
        check(unsafe { libc::renameat(fd, f.as_ptr(), fd, t.as_ptr()) }).map(drop)
    }

    /// Removes the file (or link) `name` in this directory.
    pub fn unlink(&self, name: &str) -> io::Result<()> {
        let c = cname(name)?;
        // SAFETY: `self.0` is an open directory, `c` a valid C string.
        check(unsafe { libc::unlinkat(self.0.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
    }

    /// Makes renames and unlinks in this directory durable.
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: `self.0` is open.
        check(unsafe { libc::fsync(self.0.as_raw_fd()) }).map(drop)
    }

    /// The UTF-8 names in this directory (others cannot be named through the API), sorted.
    /// Read through `/proc/self/fd`, i.e. this very directory, not a path looked up again.
    pub fn names(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(format!("/proc/self/fd/{}", self.0.as_raw_fd()))? {
            if let Ok(name) = entry?.file_name().into_string() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }
}
