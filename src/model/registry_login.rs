//! `[registry_login]` in berth.toml (SPEC §12): who berth is at a registry that asks for a
//! login. The password lives in a file of its own, so berth.toml can sit in git; berth reads
//! it when it loads its configuration and gives it with every push and every service create
//! and update (so the nodes can pull), never in a log or an error.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[registry_login]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLoginFile {
    /// The registry user.
    pub username: String,
    /// A file holding the password on its one line (relative to the root).
    pub password_file: PathBuf,
}

/// A registry user and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    /// The registry user.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl RegistryLoginFile {
    /// The login, its password read from `password_file` (taken relative to `root`).
    pub fn read(&self, root: &Path) -> Result<RegistryLogin, String> {
        let u = &self.username;
        if u.is_empty() || u.contains(':') || u.chars().any(char::is_control) {
            return Err(format!(
                "[registry_login] username {u:?} must be a registry user name: not empty, no ':' and no control characters"
            ));
        }
        let path = root.join(&self.password_file);
        let shown = path.display();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("[registry_login] password_file {shown}: cannot read: {e}"))?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() {
            return Err(format!("[registry_login] password_file {shown} is empty"));
        }
        if password.contains(['\n', '\r']) {
            return Err(format!(
                "[registry_login] password_file {shown} must hold the password on one line"
            ));
        }
        Ok(RegistryLogin {
            username: u.clone(),
            password: password.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(username: &str, password: Option<&[u8]>) -> (tempfile::TempDir, RegistryLoginFile) {
        let dir = tempfile::tempdir().unwrap();
        if let Some(p) = password {
            std::fs::write(dir.path().join("pw"), p).unwrap();
        }
        let file = RegistryLoginFile {
            username: username.into(),
            password_file: "pw".into(),
        };
        (dir, file)
    }

    #[test]
    fn the_password_is_the_files_one_line_and_never_shown() {
        for written in [&b"s3cret"[..], b"s3cret\n", b"s3cret\r\n"] {
            let (dir, file) = login("berth", Some(written));
            let read = file.read(dir.path()).unwrap();
            assert_eq!(
                (read.username.as_str(), read.password.as_str()),
                ("berth", "s3cret")
            );
            assert!(!format!("{read:?}").contains("s3cret"));
        }
    }

    #[test]
    fn a_bad_login_is_refused_naming_the_field_or_file() {
        for (user, password, want) in [
            ("berth", None, "password_file"),
            ("berth", Some(&b""[..]), "is empty"),
            ("berth", Some(b"\n"), "is empty"),
            ("berth", Some(b"one\ntwo\n"), "one line"),
            ("", Some(b"pw"), "username"),
            ("a:b", Some(b"pw"), "username"),
            ("a\tb", Some(b"pw"), "username"),
        ] {
            let (dir, file) = login(user, password);
            let e = file.read(dir.path()).unwrap_err();
            assert!(
                e.contains(want) && e.contains("[registry_login]"),
                "{user:?}: {e}"
            );
            assert!(!e.contains("two"), "the password is not shown: {e}");
        }
    }
}
