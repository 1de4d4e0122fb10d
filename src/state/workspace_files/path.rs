//! The textual rules a workspace path must pass before anything on disk is touched.

use super::{FileError, MAX_DEPTH, MAX_PATH_BYTES, RESERVED_PREFIX, SKIPPED_DIR};

/// A path inside a workspace that passed every textual rule: 1 to [`MAX_DEPTH`] plain
/// components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePath {
    parts: Vec<String>,
}

impl FilePath {
    /// Checks `raw` (already percent-decoded: `%2F` is a `/` here and `%2e%2e` a `..`, so
    /// neither escapes the rules).
    pub fn parse(raw: &str) -> Result<FilePath, FileError> {
        let bad = |rule: &str| FileError::InvalidPath {
            shown: format!("files/{}", raw.escape_debug()),
            rule: rule.to_string(),
        };
        if raw.is_empty() {
            return Err(bad("an empty path is not allowed"));
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(bad(&format!("paths are at most {MAX_PATH_BYTES} bytes")));
        }
        if raw.starts_with('/') {
            return Err(bad("absolute paths are not allowed"));
        }
        if raw.contains('\0') {
            return Err(bad("NUL is not allowed"));
        }
        if raw.contains('\\') {
            return Err(bad("'\\' is not allowed (use '/')"));
        }
        if raw.chars().any(char::is_control) {
            return Err(bad("control characters are not allowed"));
        }
        let parts: Vec<String> = raw.split('/').map(str::to_string).collect();
        if parts.len() > MAX_DEPTH {
            return Err(bad(&format!("paths are at most {MAX_DEPTH} levels deep")));
        }
        for part in &parts {
            component_rule(part).map_err(bad)?;
        }
        Ok(FilePath { parts })
    }

    /// The path relative to the workspace, `/`-separated.
    pub fn as_str(&self) -> String {
        self.parts.join("/")
    }

    /// How messages name it.
    pub fn shown(&self) -> String {
        format!("files/{}", self.as_str())
    }

    pub(super) fn parents(&self) -> &[String] {
        &self.parts[..self.parts.len() - 1]
    }

    pub(super) fn name(&self) -> &str {
        &self.parts[self.parts.len() - 1]
    }
}

/// The rule one component breaks, if any.
fn component_rule(part: &str) -> Result<(), &'static str> {
    match part {
        "" => Err("empty components ('//', a trailing '/') are not allowed"),
        "." => Err("'.' is not allowed"),
        ".." => Err("'..' is not allowed"),
        p if p.len() > 255 => Err("names are at most 255 bytes"),
        SKIPPED_DIR => Err("node_modules is not served (the template's shared modules)"),
        p if p.starts_with(RESERVED_PREFIX) => Err("names starting with .berth- are berth's own"),
        _ => Ok(()),
    }
}
