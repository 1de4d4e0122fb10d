//! One error shape for every file a user writes (manifests, template.toml, berth.toml):
//! `path:line:col: message`, the form editors and CI logs already know how to jump to.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem in a user-written file, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// The file, as berth found it (relative to the root when it came from a scan).
    pub path: PathBuf,
    /// 1-based line and column, when the problem is at a place in the text.
    pub location: Option<(usize, usize)>,
    /// What is wrong, in one line.
    pub message: String,
}

impl SourceError {
    /// An error about the file as a whole (unreadable, a symlink, a bad name).
    pub fn whole_file(path: &Path, message: impl Into<String>) -> SourceError {
        SourceError {
            path: path.to_path_buf(),
            location: None,
            message: message.into(),
        }
    }

    /// Converts a TOML error, turning its byte span into line and column.
    pub fn from_toml(path: &Path, text: &str, err: &toml::de::Error) -> SourceError {
        let location = err.span().map(|span| line_col(text, span.start));
        SourceError {
            path: path.to_path_buf(),
            location,
            message: err.message().trim().replace('\n', " "),
        }
    }

    /// An error at a byte offset in `text`, for checks made after parsing.
    pub fn at(path: &Path, text: &str, offset: usize, message: impl Into<String>) -> SourceError {
        SourceError {
            path: path.to_path_buf(),
            location: Some(line_col(text, offset)),
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.path.display(), self.message)
            }
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for SourceError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_errors_carry_line_and_column() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: i32,
        }
        let text = "a = 1\nbogus = 2\n";
        let err = toml::from_str::<T>(text).unwrap_err();
        let e = SourceError::from_toml(Path::new("x.toml"), text, &err);
        assert_eq!(e.location, Some((2, 1)));
        assert!(
            e.to_string()
                .starts_with("x.toml:2:1: unknown field `bogus`"),
            "{e}"
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(line_col("é = 1", 3), (1, 3));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
