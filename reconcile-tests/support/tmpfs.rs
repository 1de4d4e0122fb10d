//! A small tmpfs mounted for one test (the tests run as root, as CI does), filled to the last
//! byte on demand: a real full disk under the database or the state directory. Unmounted on
//! drop (lazily, so a file still open does not keep it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as mount's `size=` takes it: `8m`) at `dir`, made if missing.
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs at {}", dir.display());
        Tmpfs { dir: dir.into() }
    }

    /// Writes `.fill` until the file system is full.
    pub fn fill(&self) {
        let mut f = std::fs::File::create(self.dir.join(".fill")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = f.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
        // The last partial chunk may have fit: take the remaining bytes too.
        while f.write_all(&[0u8; 512]).is_ok() {}
    }

    /// Fills the file system but for `bytes` (whole pages).
    pub fn fill_but(&self, bytes: usize) {
        let reserve = self.dir.join(".reserve");
        std::fs::write(&reserve, vec![0u8; bytes]).unwrap();
        self.fill();
        std::fs::remove_file(reserve).unwrap();
    }

    /// Frees what [`fill`](Self::fill) took.
    pub fn free(&self) {
        std::fs::remove_file(self.dir.join(".fill")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
