//! What a built app's context holds, as one digest (docs/guides/builds.md): every file's
//! path, mode and contents, every link's target, read without following a link, so a change
//! anywhere in the context is a new image tag and nothing outside it counts.
//!
//! Each pass reads the context again; a file whose size, mtime and inode are what they were
//! is not read again (its hash is kept), so an unchanged context costs one walk of
//! `lstat`s.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// At most this many entries in a context: more is refused with the count.
pub const MAX_ENTRIES: usize = 50_000;
/// At most this many bytes of files in a context.
pub const MAX_BYTES: u64 = 2 << 30;

/// (size, mtime in ns, inode) of a file whose hash is kept.
type Stamp = (u64, i64, u64);

/// File hashes kept between passes, by path.
static KEPT: Mutex<Option<HashMap<PathBuf, (Stamp, blake3::Hash)>>> = Mutex::new(None);

/// The digest of the context `rel` under the workspace `app_dir`: refused when a part of
/// its path is a link or not a directory, or when it is over the caps.
pub fn digest(app_dir: &Path, rel: &str) -> Result<String, String> {
    let dir = checked_dir(app_dir, rel)?;
    let mut walk = Walk::default();
    walk.dir(&dir, Path::new(""))?;
    Ok(walk.hasher.finalize().to_hex().to_string())
}

/// `app_dir/rel`, each part of it checked to be a real directory.
fn checked_dir(app_dir: &Path, rel: &str) -> Result<PathBuf, String> {
    let mut dir = app_dir.to_path_buf();
    let parts = std::iter::once("").chain(rel.split('/').filter(|p| *p != "."));
    for part in parts {
        if !part.is_empty() {
            dir.push(part);
        }
        let meta = fs::symlink_metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "{} is a link; berth does not follow it",
                dir.display()
            ));
        }
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
    }
    Ok(dir)
}

#[derive(Default)]
struct Walk {
    hasher: blake3::Hasher,
    entries: usize,
    bytes: u64,
}

impl Walk {
    /// Hashes `dir` (shown as `rel`) in name order.
    fn dir(&mut self, dir: &Path, rel: &Path) -> Result<(), String> {
        let read = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut names: Vec<_> = read
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        names.sort();
        for name in names {
            self.entry(&dir.join(&name), &rel.join(&name))?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, rel: &Path) -> Result<(), String> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} files and directories"));
        }
        let meta = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let kind = meta.file_type();
        self.record(rel, meta.permissions().mode());
        if kind.is_symlink() {
            let target = fs::read_link(path).map_err(|e| format!("{}: {e}", path.display()))?;
            self.hasher.update(b"link\0");
            self.hasher.update(target.as_os_str().as_encoded_bytes());
        } else if kind.is_dir() {
            self.hasher.update(b"dir\0");
            self.dir(path, rel)?;
        } else if kind.is_file() {
            self.bytes += meta.len();
            if self.bytes > MAX_BYTES {
                return Err(format!("more than {MAX_BYTES} bytes of files"));
            }
            self.hasher.update(b"file\0");
            self.hasher.update(file_hash(path, &meta)?.as_bytes());
        }
        // Sockets, FIFOs and devices: their name and mode only; a build cannot read them.
        Ok(())
    }

    fn record(&mut self, rel: &Path, mode: u32) {
        self.hasher.update(rel.as_os_str().as_encoded_bytes());
        self.hasher.update(b"\0");
        self.hasher.update(&mode.to_le_bytes());
    }
}

/// Opens the file `meta` describes, never a link or FIFO swapped in since (no link is
/// followed, no open blocks, and the open file must be the one that was listed).
fn open_same_file(path: &Path, meta: &fs::Metadata) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let now = file.metadata()?;
    if !now.is_file() || now.ino() != meta.ino() || now.dev() != meta.dev() {
        return Err(std::io::Error::other("changed while it was read"));
    }
    Ok(file)
}

/// The hash of a file's contents, kept while its size, mtime and inode stand.
fn file_hash(path: &Path, meta: &fs::Metadata) -> Result<blake3::Hash, String> {
    let stamp = (
        meta.len(),
        meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
        meta.ino(),
    );
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    let kept = kept.get_or_insert_with(HashMap::new);
    if kept.len() > 4 * MAX_ENTRIES {
        // Files gone long ago stay in the map: start again rather than grow without end.
        kept.clear();
    }
    if let Some((s, h)) = kept.get(path) {
        if *s == stamp {
            return Ok(*h);
        }
    }
    let mut hasher = blake3::Hasher::new();
    let file = open_same_file(path, meta).map_err(|e| format!("{}: {e}", path.display()))?;
    hasher
        .update_reader(std::io::Read::take(file, meta.len()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let hash = hasher.finalize();
    kept.insert(path.to_path_buf(), (stamp, hash));
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("web/src")).unwrap();
        fs::write(t.path().join("web/Dockerfile"), "FROM x\n").unwrap();
        fs::write(t.path().join("web/src/a.txt"), "a").unwrap();
        t
    }

    #[test]
    fn a_change_to_a_file_a_name_a_mode_or_a_link_changes_the_digest() {
        let t = tree();
        let d0 = digest(t.path(), "web").unwrap();
        assert_eq!(
            digest(t.path(), "web").unwrap(),
            d0,
            "same files, same digest"
        );
        fs::write(t.path().join("web/src/a.txt"), "b").unwrap();
        let d1 = digest(t.path(), "web").unwrap();
        assert_ne!(d1, d0, "contents");
        fs::rename(
            t.path().join("web/src/a.txt"),
            t.path().join("web/src/b.txt"),
        )
        .unwrap();
        let d2 = digest(t.path(), "web").unwrap();
        assert_ne!(d2, d1, "name");
        let p = t.path().join("web/src/b.txt");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        let d3 = digest(t.path(), "web").unwrap();
        assert_ne!(d3, d2, "mode");
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("web/l")).unwrap();
        assert_ne!(
            digest(t.path(), "web").unwrap(),
            d3,
            "a link, by its target"
        );
    }

    #[test]
    fn files_outside_the_context_do_not_count_and_a_linked_context_is_refused() {
        let t = tree();
        let d0 = digest(t.path(), "web").unwrap();
        fs::write(t.path().join("outside.txt"), "x").unwrap();
        assert_eq!(digest(t.path(), "web").unwrap(), d0);
        assert_ne!(digest(t.path(), ".").unwrap(), d0, "the whole workspace");
        std::os::unix::fs::symlink(t.path().join("web"), t.path().join("ln")).unwrap();
        let err = digest(t.path(), "ln").unwrap_err();
        assert!(err.contains("is a link"), "{err}");
        let err = digest(t.path(), "web/Dockerfile").unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        let err = digest(t.path(), "nope").unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }
}
