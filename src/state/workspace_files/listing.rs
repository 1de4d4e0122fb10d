//! Listing a workspace: its regular files (with etags) and links (never followed), sorted,
//! capped in entries, depth and bytes hashed.

use super::dir::{Dir, Kind};
use super::{
    etag, LIST_HASH_BUDGET, MAX_DEPTH, MAX_FILE_BYTES, MAX_LIST_ENTRIES, RESERVED_PREFIX,
    SKIPPED_DIR,
};

/// One listed name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// Relative to the workspace, `/`-separated.
    pub path: String,
    /// `file` or `symlink` (a link is listed, never followed).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Bytes (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The file's etag; none for links, for files over [`MAX_FILE_BYTES`] and past the
    /// listing's hash budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// A workspace's files.
#[derive(Debug, Default, serde::Serialize)]
pub struct Listing {
    /// Sorted by path.
    pub files: Vec<Entry>,
    /// Whether [`MAX_LIST_ENTRIES`] cut the listing short.
    pub truncated: bool,
}

/// Lists the workspace open as `ws`.
pub(super) fn list(ws: &Dir) -> std::io::Result<Listing> {
    let mut walk = Walk {
        out: Listing::default(),
        budget: LIST_HASH_BUDGET,
    };
    walk.dir(ws, "", 1)?;
    Ok(walk.out)
}

/// A listing in progress.
struct Walk {
    out: Listing,
    /// Bytes that may still be hashed.
    budget: u64,
}

impl Walk {
    /// Lists `at` (whose files are `depth` components deep) under `prefix`.
    fn dir(&mut self, at: &Dir, prefix: &str, depth: usize) -> std::io::Result<()> {
        for name in at.names()? {
            if name == SKIPPED_DIR || name.starts_with(RESERVED_PREFIX) {
                continue;
            }
            if self.out.files.len() >= MAX_LIST_ENTRIES {
                self.out.truncated = true;
                return Ok(());
            }
            let path = format!("{prefix}{name}");
            // A name that vanished or changed since it was read is skipped, not an error.
            let Ok(st) = at.stat(&name) else { continue };
            match st.kind {
                Kind::Dir if depth < MAX_DEPTH => {
                    if let Ok(sub) = at.sub(&name) {
                        self.dir(&sub, &format!("{path}/"), depth + 1)?;
                    }
                }
                Kind::File => {
                    let etag = self.etag(at, &name, st.size);
                    let (size, kind) = (Some(st.size), "file");
                    self.out.files.push(Entry {
                        path,
                        kind,
                        size,
                        etag,
                    });
                }
                Kind::Symlink => self.out.files.push(Entry {
                    path,
                    kind: "symlink",
                    size: None,
                    etag: None,
                }),
                Kind::Dir | Kind::Other => {}
            }
        }
        Ok(())
    }

    fn etag(&mut self, at: &Dir, name: &str, size: u64) -> Option<String> {
        if size > MAX_FILE_BYTES as u64 || size > self.budget {
            return None;
        }
        let (st, bytes) = at.read_file(name, MAX_FILE_BYTES as u64).ok()?;
        self.budget = self.budget.saturating_sub(st.size);
        bytes.map(|b| etag(&b))
    }
}
