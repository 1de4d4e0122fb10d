//! The files of a fetched commit on disk (`sources/<user>/<app>/tree-<commit>/`), which a
//! `[build] git` build reads: unpacked whole or not at all, held to the same caps as a
//! workspace context, synced before they count, and removed when no longer the commit
//! fetched last or the one before it.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::state::build_context::{MAX_BYTES, MAX_ENTRIES};

/// Unpacks `commit`'s files into `tree` through a temp directory renamed into place:
/// `git archive` (with none of berth's git settings) read by the tar crate, which refuses a
/// path that would leave the directory. Past [`MAX_ENTRIES`] entries or [`MAX_BYTES`] bytes
/// it stops and nothing is kept.
pub async fn unpack(
    repo: PathBuf,
    commit: String,
    tree: PathBuf,
    home: PathBuf,
) -> Result<(), String> {
    tokio::task::spawn_blocking(move || {
        let tmp = tree.with_file_name(format!(".unpack-{commit}"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let unpacked = archive_into(&repo, &commit, &home, &tmp);
        let synced = unpacked.and_then(|()| sync(&tmp));
        if let Err(e) = synced {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &tree).map_err(|e| format!("{}: {e}", tree.display()))
    })
    .await
    .map_err(|e| format!("unpacking: {e}"))?
}

fn archive_into(repo: &Path, commit: &str, home: &Path, tmp: &Path) -> Result<(), String> {
    let mut child = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["archive", "--format=tar", commit])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("git archive: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let unpacked = unpack_capped(stdout, tmp);
    if unpacked.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| format!("git archive: {e}"))?;
    unpacked.map_err(|e| format!("unpacking {commit}: {e}"))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!("git archive {commit}: {status}")),
    }
}

/// Unpacks entry by entry, counting entries and bytes against the caps.
fn unpack_capped(stream: impl Read, into: &Path) -> Result<(), String> {
    let mut archive = tar::Archive::new(stream);
    let (mut entries, mut bytes) = (0usize, 0u64);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        entries += 1;
        bytes += entry.header().size().unwrap_or(0);
        if entries > MAX_ENTRIES || bytes > MAX_BYTES {
            return Err(format!(
                "the commit holds more than {MAX_ENTRIES} entries or {} GiB",
                MAX_BYTES >> 30
            ));
        }
        entry.unpack_in(into).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Flushes the unpacked files to disk before the rename makes them count: a tree that
/// exists is whole, and the image built from it is kept under its commit for good.
fn sync(dir: &Path) -> Result<(), String> {
    let f = std::fs::File::open(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs on a descriptor this function owns.
    match unsafe { libc::syncfs(f.as_raw_fd()) } {
        0 => Ok(()),
        _ => Err(format!(
            "{}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        )),
    }
}

/// Removes every unpacked tree but those of `keep`: another commit is unpacked again when
/// asked.
pub fn remove_others(dir: &Path, keep: &[Option<&str>]) {
    let keep: Vec<String> = keep.iter().flatten().map(|c| format!("tree-{c}")).collect();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = name.starts_with("tree-") || name.starts_with(".unpack-");
        if stale && !keep.contains(&name) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_past_the_entry_cap_is_refused() {
        let mut builder = tar::Builder::new(Vec::new());
        for i in 0..=MAX_ENTRIES {
            let mut h = tar::Header::new_gnu();
            h.set_size(0);
            h.set_mode(0o644);
            h.set_cksum();
            builder
                .append_data(&mut h, format!("f{i}"), std::io::empty())
                .unwrap();
        }
        let bytes = builder.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_capped(bytes.as_slice(), dir.path()).unwrap_err();
        assert!(err.contains("more than 50000 entries"), "{err}");
    }

    #[test]
    fn only_the_kept_trees_stay() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["tree-a", "tree-b", "tree-c", ".unpack-d", "repo.git"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        remove_others(dir.path(), &[Some("a"), Some("c"), None]);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["repo.git", "tree-a", "tree-c"]);
    }
}
