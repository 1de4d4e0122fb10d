//! The server's secrets key on disk (`secrets_key`, default `berth.key` beside the database):
//! an age X25519 identity, 0600. Made at the first start of `serve`, but never while
//! manifests hold secrets (they were encrypted to a key that is gone, and a new one would
//! only hide that); a key readable by others is refused.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::model::secrets::Keyring;

/// Where a rotation keeps the new key until every manifest is re-encrypted.
pub fn next_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    path.with_file_name(name)
}

/// Where a rotation run with `--keep-old` keeps the key it retired (`berth.key.old`):
/// opening only, so a value it could not reach (an old revision rolled back to, a commit not
/// yet pulled) still opens. `berth secrets forget-old` removes it; so does the next rotation
/// without `--keep-old`.
pub fn retired_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".old");
    path.with_file_name(name)
}

/// Reads the key at `path`, with a rotation's next key when one is under way (sealing to the
/// next, opening with both) and the retired keys (opening only); the error says what is
/// wrong and what to do.
pub fn load(path: &Path) -> Result<Keyring, String> {
    let mut keyring = load_one(path)?;
    let next = next_path(path);
    if next.exists() {
        keyring = keyring.rotating_to(load_one(&next)?);
    }
    let retired = retired_path(path);
    if !retired.exists() {
        return Ok(keyring);
    }
    let text = read_private(&retired)?;
    keyring
        .also_opening(&text)
        .map_err(|e| format!("{}: {e}", retired.display()))
}

/// Starts a rotation (idempotent): writes the next key (a new identity and fingerprint key).
pub fn begin_rotation(path: &Path) -> Result<(), String> {
    let next = next_path(path);
    if next.exists() {
        return load_one(&next).map(drop); // a rotation cut short: resume with its key
    }
    let successor = load_one(path)?.successor();
    write_new(&next, &successor).map_err(|e| format!("cannot write {}: {e}", next.display()))
}

/// Ends a rotation: the next key replaces the old one. With `keep_old` the old key joins the
/// retired ones first (opening only); without, it is gone, and so are the keys earlier
/// rotations kept: nothing sealed to them opens any more.
pub fn finish_rotation(path: &Path, keep_old: bool) -> Result<(), String> {
    let next = next_path(path);
    let retired = retired_path(path);
    if keep_old {
        retire(&retired, &load_one(path)?)
            .map_err(|e| format!("cannot keep the old key in {}: {e}", retired.display()))?;
    }
    std::fs::rename(&next, path)
        .and_then(|()| sync_dir(path))
        .map_err(|e| format!("cannot put {} in place: {e}", next.display()))?;
    if keep_old {
        return Ok(());
    }
    forget_old(path).map(drop)
}

/// `berth secrets forget-old`: removes the retired keys (`berth.key.old`); whether there were.
pub fn forget_old(path: &Path) -> Result<bool, String> {
    let retired = retired_path(path);
    match std::fs::remove_file(&retired) {
        Ok(()) => sync_dir(&retired)
            .map(|()| true)
            .map_err(|e| format!("cannot sync {}: {e}", retired.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("cannot remove {}: {e}", retired.display())),
    }
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Appends `old`'s identity to the retired keys' file (0600), durably.
fn retire(retired: &Path, old: &Keyring) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(retired)?;
    let line = old.identity_line();
    f.write_all(format!("# retired by a rotation\n{line}\n").as_bytes())?;
    f.sync_all()?;
    sync_dir(retired)
}

fn load_one(path: &Path) -> Result<Keyring, String> {
    let text = read_private(path)?;
    Keyring::parse(&text).map_err(|e| format!("the secrets key {}: {e}", path.display()))
}

/// The text of a key file that only its owner can read.
fn read_private(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("the secrets key {shown} is missing; restore it from a backup (berth does not make a new one while manifests hold secrets)"))
        }
        Err(e) => return Err(format!("cannot read the secrets key {shown}: {e}")),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "the secrets key {shown} is readable by others (mode {mode:o}); chmod 600 it"
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read the secrets key {shown}: {e}"))
}

/// What [`ensure`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Ensured {
    /// The key was there and is private.
    Present,
    /// A new key was made.
    Made,
    /// None is there, and manifests hold secrets: none was made (their apps stay frozen).
    MissingWithSecrets,
}

/// At `serve`'s start: makes the key when there is none and no manifest holds secrets;
/// refuses (the error) a key that others can read or that does not parse.
pub fn ensure(path: &Path, manifests_hold_secrets: bool) -> Result<Ensured, String> {
    if !path.exists() {
        if manifests_hold_secrets {
            return Ok(Ensured::MissingWithSecrets);
        }
        make(path).map_err(|e| format!("cannot make the secrets key {}: {e}", path.display()))?;
        return Ok(Ensured::Made);
    }
    load(path).map(|_| Ensured::Present)
}

fn make(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_new(path, &Keyring::generate())
}

fn write_new(path: &Path, keyring: &Keyring) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(keyring.to_file_text().as_bytes())?;
    f.sync_all()?;
    sync_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_private_refused_when_readable_and_never_made_over_secrets() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("berth.key");
        assert_eq!(ensure(&key, true).unwrap(), Ensured::MissingWithSecrets);
        assert!(!key.exists());
        assert!(load(&key).unwrap_err().contains("missing"));
        assert_eq!(ensure(&key, false).unwrap(), Ensured::Made);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(ensure(&key, true).unwrap(), Ensured::Present);
        load(&key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(ensure(&key, false).unwrap_err().contains("chmod 600"));
    }

    #[test]
    fn a_rotation_leaves_no_old_key_unless_asked_to_keep_it_until_forgotten() {
        use crate::model::secrets::{seal, SecretValue};
        let sc = crate::model::secrets::Scope::secret(
            &crate::model::names::AppKey::new("a", "b").unwrap(),
            "T",
        );
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("berth.key");
        ensure(&key, false).unwrap();
        let sealed_to =
            |k: &Keyring, v: &str| seal(&k.recipient(), &sc, &SecretValue::new(v.into()));
        let first = sealed_to(&load(&key).unwrap(), "one");
        begin_rotation(&key).unwrap();
        assert!(load(&key).unwrap().unseal(&first).is_ok(), "mid-rotation");
        finish_rotation(&key, true).unwrap();
        let retired = retired_path(&key);
        let mode = std::fs::metadata(&retired).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let kept = load(&key).unwrap();
        assert_eq!(
            kept.unseal(&first).unwrap().value.expose(),
            "one",
            "--keep-old"
        );
        let second = sealed_to(&kept, "two");
        std::fs::set_permissions(&retired, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&key).unwrap_err().contains("chmod 600"));
        std::fs::set_permissions(&retired, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(forget_old(&key).unwrap());
        assert!(!forget_old(&key).unwrap());
        assert!(load(&key).unwrap().unseal(&first).is_err(), "forgotten");

        // Without --keep-old: the old key is gone, and any kept before it too.
        finish_rotation_kept_then_plain(&key);
        let now = load(&key).unwrap();
        let e = now.unseal(&second).unwrap_err();
        assert!(e.contains("another key"), "{e}");
        assert!(!retired.exists());
        assert!(!next_path(&key).exists());
        let on_disk = std::fs::read_to_string(&key).unwrap();
        assert_eq!(
            on_disk.matches("AGE-SECRET-KEY-").count(),
            1,
            "one key on disk"
        );
    }

    /// A rotation with `--keep-old`, then one without.
    fn finish_rotation_kept_then_plain(key: &Path) {
        begin_rotation(key).unwrap();
        finish_rotation(key, true).unwrap();
        assert!(retired_path(key).exists());
        begin_rotation(key).unwrap();
        finish_rotation(key, false).unwrap();
    }
}
