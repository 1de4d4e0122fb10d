//! `[registry_login]` in berth.toml (docs/guides/swarm.md): who berth is at a registry that asks for a
//! login. The password lives in a file of its own, so berth.toml can sit in git and commands
//! that only read the files (`validate`) work without it; berth reads it when it connects to
//! the engine to change things, and gives it with every push and every service create and
//! update (so the nodes can pull), never in a log or an error.

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

/// `[registry_login]` checked: the user, and where its password is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLoginSource {
    /// The registry user.
    pub username: String,
    /// The password's file, absolute.
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

/// Whether `text` reaches Docker intact. bollard 0.21 encodes the login header in standard
/// base64 and Docker decodes it as URL-safe base64, dropping a login it cannot decode without
/// a word: in JSON of printable ASCII only `?`, `>` and `~` can make the `+` or `/` that
/// break it, so those (and anything outside printable ASCII) are refused.
fn passes_to_docker(text: &str) -> bool {
    text.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && !b"?>~".contains(&b))
}

impl RegistryLoginFile {
    /// Checks the user (its value is never shown: a password pasted there would be) and
    /// makes the password file's path absolute under `root`.
    pub fn resolve(&self, root: &Path) -> Result<RegistryLoginSource, String> {
        let u = &self.username;
        if u.is_empty() || u.contains(':') || !passes_to_docker(u) {
            return Err("[registry_login] username must be a registry user name: not empty, no ':', printable ASCII without '?', '>' or '~'".into());
        }
        Ok(RegistryLoginSource {
            username: u.clone(),
            password_file: root.join(&self.password_file),
        })
    }
}

impl RegistryLoginSource {
    /// The login, its password read from its file now.
    pub fn read(&self) -> Result<RegistryLogin, String> {
        let shown = self.password_file.display();
        let text = std::fs::read_to_string(&self.password_file)
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
        if !passes_to_docker(password) {
            return Err(format!(
                "[registry_login] password_file {shown}: the password holds '?', '>', '~' or a character outside printable ASCII, which berth's Docker client (bollard 0.21) encodes in a way Docker drops without a word; choose another"
            ));
        }
        Ok(RegistryLogin {
            username: self.username.clone(),
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

    fn read(dir: &Path, file: &RegistryLoginFile) -> Result<RegistryLogin, String> {
        file.resolve(dir)?.read()
    }

    #[test]
    fn the_password_is_the_files_one_line_and_never_shown() {
        for written in [&b"s3cret"[..], b"s3cret\n", b"s3cret\r\n"] {
            let (dir, file) = login("berth", Some(written));
            let got = read(dir.path(), &file).unwrap();
            let pair = (got.username.as_str(), got.password.as_str());
            assert_eq!(pair, ("berth", "s3cret"));
            assert!(!format!("{got:?}").contains("s3cret"));
        }
        let quoted = br#"a "q" \b $x: y"#;
        let (dir, file) = login("berth", Some(quoted));
        assert_eq!(read(dir.path(), &file).unwrap().password.as_bytes(), quoted);
    }

    #[test]
    fn a_bad_login_is_refused_naming_the_field_or_file_never_the_password() {
        for (user, password, want) in [
            ("berth", None, "password_file"),
            ("berth", Some(&b""[..]), "is empty"),
            ("berth", Some(b"\n"), "is empty"),
            ("berth", Some(b"one\ntwo\n"), "one line"),
            ("berth", Some(b"two?"), "'?', '>', '~'"),
            ("berth", Some(b"two>"), "'?', '>', '~'"),
            ("berth", Some(b"two~"), "'?', '>', '~'"),
            ("berth", Some("twö".as_bytes()), "printable ASCII"),
            ("", Some(b"pw"), "username"),
            ("berth:two", Some(b"pw"), "username"),
            ("a\ttwo", Some(b"pw"), "username"),
        ] {
            let (dir, file) = login(user, password);
            let e = read(dir.path(), &file).unwrap_err();
            assert!(
                e.contains(want) && e.contains("[registry_login]"),
                "{user:?}: {e}"
            );
            assert!(
                !e.contains("two"),
                "neither password nor user is shown: {e}"
            );
        }
    }

    /// The rule against the real encoding: every printable ASCII character the rule lets
    /// through, at every position mod 3, encodes without `+` or `/`; each refused one makes
    /// one at some position.
    #[test]
    fn the_refused_characters_are_exactly_those_that_break_the_header() {
        use base64::Engine as _;
        let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        for b in 0x20u8..0x7f {
            let c = char::from(b);
            let breaks = (0..3).any(|pad| {
                let s = format!("{}{c}", "a".repeat(pad));
                encode(&s).contains(['+', '/'])
            });
            assert_eq!(breaks, !passes_to_docker(&c.to_string()), "{c:?}");
        }
    }
}
