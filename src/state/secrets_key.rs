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

/// Where finished rotations keep the keys they retired (`berth.key.old`): opening only, so a
/// value no rotation could reach (a manifest that did not read, an old revision rolled back
/// to, a commit not yet pulled) still opens. Delete it once nothing needs those keys.
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
        keyring = keyring.rotating_to(load_one(&next)?)?;
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

/// Starts a rotation (idempotent): writes the next key, which keeps the fingerprint key.
pub fn begin_rotation(path: &Path) -> Result<(), String> {
    let next = next_path(path);
    if next.exists() {
        return load_one(&next).map(drop); // a rotation cut short: resume with its key
    }
    let successor = load_one(path)?.successor();
    write_new(&next, &successor).map_err(|e| format!("cannot write {}: {e}", next.display()))
}

/// Ends a rotation: the old key joins the retired ones, then the next key replaces it.
pub fn finish_rotation(path: &Path) -> Result<(), String> {
    let next = next_path(path);
    let retired = retired_path(path);
    retire(&retired, &load_one(path)?)
        .map_err(|e| format!("cannot keep the old key in {}: {e}", retired.display()))?;
    std::fs::rename(&next, path)
        .and_then(|()| sync_dir(path))
        .map_err(|e| format!("cannot put {} in place: {e}", next.display()))
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
    fn a_finished_rotation_keeps_every_older_key_for_opening_only() {
        use crate::model::secrets::{seal, SecretValue};
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("berth.key");
        ensure(&key, false).unwrap();
        let first = seal(
            &load(&key).unwrap().recipient(),
            &SecretValue::new("one".into()),
        );
        for _ in 0..2 {
            begin_rotation(&key).unwrap();
            finish_rotation(&key).unwrap();
        }
        let keyring = load(&key).unwrap();
        assert_eq!(
            keyring.open(&first).unwrap().expose(),
            "one",
            "two rotations later"
        );
        let now = seal(&keyring.recipient(), &SecretValue::new("two".into()));
        let current_only = Keyring::parse(&std::fs::read_to_string(&key).unwrap()).unwrap();
        assert!(
            current_only.open(&now).is_ok(),
            "new values seal to the current key"
        );
        assert!(current_only.open(&first).is_err());
        let retired = retired_path(&key);
        let mode = std::fs::metadata(&retired).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&retired, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&key).unwrap_err().contains("chmod 600"));
    }
}
