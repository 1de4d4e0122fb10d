//! The backup repository's password (docs/guides/backups-and-recovery.md): generated once,
//! kept only sealed with the server's secrets key in `<root>/backups/restic.key` (0600, in a
//! 0700 directory), opened in memory when the daemon starts. A rotation seals it again to
//! its next key (`state::rotate`), and so does every start.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::model::config::Config;
use crate::model::names::AppKey;
use crate::model::secret_scope::Scope;
use crate::model::secrets::{seal, Keyring, SecretValue};

/// The sealed password's file under the root.
pub fn path(config: &Config) -> PathBuf {
    config.root.join("backups").join("restic.key")
}

/// What the sealed value is bound to: no user's app (`berth` is no user name a person can
/// choose an app under: the file lives outside `state/`, where no copy reaches it).
fn scope() -> Scope {
    let key = AppKey {
        userid: "berth".into(),
        appname: "backups".into(),
    };
    Scope::secret(&key, "RESTIC_PASSWORD")
}

/// The repository's password: opened from its file, or generated and sealed when there is
/// none. The error names the file and what is wrong.
pub fn ensure(config: &Config) -> Result<SecretValue, String> {
    let keyring = crate::state::secrets_key::load(&config.secrets_key)?;
    let file = path(config);
    match std::fs::read_to_string(&file) {
        Ok(text) => open(&keyring, &file, text.trim()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let password = crate::model::values::generate_secret();
            write(&file, &seal(&keyring.recipient(), &scope(), &password))?;
            Ok(password)
        }
        Err(e) => Err(format!("{}: cannot read: {e}", file.display())),
    }
}

/// A rotation's step: the password, when there is one, sealed again to the key values are
/// sealed to now (the rotation's next key), so finishing the rotation leaves it readable.
/// Answers whether there was one.
pub fn reseal(config: &Config, keyring: &Keyring) -> Result<bool, String> {
    let file = path(config);
    match std::fs::read_to_string(&file) {
        Ok(text) => open(keyring, &file, text.trim()).map(|_| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("{}: cannot read: {e}", file.display())),
    }
}

/// Opens the sealed text and seals it again to the key values are sealed to now, so a
/// rotation finished since the last start leaves it readable.
fn open(keyring: &Keyring, file: &Path, sealed: &str) -> Result<SecretValue, String> {
    let opened = keyring.open(sealed, &scope()).map_err(|why| {
        format!(
            "{}: does not decrypt with the secrets key: {why}",
            file.display()
        )
    })?;
    write(file, &seal(&keyring.recipient(), &scope(), &opened.value))?;
    Ok(opened.value)
}

/// Writes `sealed` whole: a temp file (0600), fsync, rename.
fn write(file: &Path, sealed: &str) -> Result<(), String> {
    let dir = file.parent().expect("under the root");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = file.with_extension("key.tmp");
    let fail = |e: std::io::Error| format!("{}: {e}", file.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(format!("{sealed}\n").as_bytes())
        .map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, file).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_generated_once_and_never_written_in_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(None, Some(dir.path())).unwrap();
        crate::state::secrets_key::ensure(&config.secrets_key, false).unwrap();
        let first = ensure(&config).unwrap();
        let text = std::fs::read_to_string(path(&config)).unwrap();
        assert!(text.starts_with("age:"), "{text}");
        assert!(!text.contains(first.expose()));
        let again = ensure(&config).unwrap();
        assert_eq!(again.expose(), first.expose(), "opened, not made anew");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(&config))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A rotation re-seals it to the next key: the old key's removal leaves it readable.
        crate::state::secrets_key::begin_rotation(&config.secrets_key).unwrap();
        let keyring = crate::state::secrets_key::load(&config.secrets_key).unwrap();
        assert!(reseal(&config, &keyring).unwrap());
        crate::state::secrets_key::finish_rotation(&config.secrets_key, false).unwrap();
        assert_eq!(ensure(&config).unwrap().expose(), first.expose());
        std::fs::write(path(&config), "age:garbage\n").unwrap();
        let err = ensure(&config).unwrap_err();
        assert!(err.contains("restic.key: does not decrypt"), "{err}");
    }
}
