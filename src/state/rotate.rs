//! `berth secrets rotate` (SPEC §10): every `[secrets]` value re-encrypted to a new key. The
//! new key is written beside the old one first (`berth.key.next`), every manifest is
//! rewritten sealing to it while both keys open, and only then does it replace the old key. A
//! rotation cut short leaves both keys, so every manifest still decrypts, and the next rotate
//! resumes with the same new key. A finished rotation keeps the old key in `berth.key.old`
//! (opening only), so what it could not reach (a manifest that does not read, an older
//! revision, a commit not yet pulled) still opens. Fingerprints are keyed by a key the rotation carries over, so
//! no container is recreated.

use crate::model::config::Config;
use crate::model::secrets::{seal, Keyring};
use crate::state::files::ManifestFiles;
use crate::state::scan::{holds_secrets, scan};
use crate::state::secrets_key;

/// What a rotation did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Rotated {
    /// Manifests rewritten.
    pub manifests: usize,
    /// Values re-encrypted.
    pub values: usize,
    /// `user/app NAME: why` for values that decrypt with neither key (left as they are).
    pub left: Vec<String>,
}

/// Re-encrypts every manifest's secrets to the next key (made when needed). The caller holds
/// the state lock (the daemon) or is the only writer (no daemon), then commits in git mode
/// and calls [`secrets_key::finish_rotation`].
pub async fn reencrypt_all(files: &ManifestFiles, config: &Config) -> Result<Rotated, String> {
    secrets_key::begin_rotation(&config.secrets_key)?;
    let keyring = secrets_key::load(&config.secrets_key)?;
    let found = scan(&config.apps_state_dir(), &config.root).map_err(|e| e.to_string())?;
    let mut out = Rotated::default();
    for (key, parsed) in &found.manifests {
        // A manifest that does not read may still hold secrets: it is tried too.
        if parsed.is_ok() && !holds_secrets(parsed) {
            continue;
        }
        let mut values = 0;
        let mut left = Vec::new();
        let change = |doc: &mut toml_edit::DocumentMut| {
            (values, left) = reseal(doc, &keyring);
        };
        match files.edit(key, change).await {
            Ok(_) => {}
            Err(e) if parsed.is_err() => {
                let retired = secrets_key::retired_path(&config.secrets_key);
                out.left.push(format!(
                    "{key}: the manifest does not read ({}); its values still open with the old key, kept in {}",
                    crate::error_chain::chain(&e),
                    retired.display()
                ));
                continue;
            }
            Err(e) => return Err(format!("{key}: {}", crate::error_chain::chain(&e))),
        }
        out.manifests += 1;
        out.values += values;
        out.left
            .extend(left.into_iter().map(|l| format!("{key} {l}")));
    }
    Ok(out)
}

/// Re-seals every `[secrets]` value and every sealed `[values]` entry (a template's secret
/// value) of `doc` that `keyring` opens; returns how many, and the names (with why) of those
/// it cannot open.
fn reseal(doc: &mut toml_edit::DocumentMut, keyring: &Keyring) -> (usize, Vec<String>) {
    let (mut done, mut left) = (0, Vec::new());
    for table_name in ["secrets", "values"] {
        let Some(table) = doc.get_mut(table_name).and_then(|t| t.as_table_like_mut()) else {
            continue;
        };
        for (name, item) in table.iter_mut() {
            let Some(sealed) = item.as_str().filter(|s| s.starts_with("age:")) else {
                continue;
            };
            match keyring.open(sealed) {
                Ok(value) => {
                    *item = toml_edit::value(seal(&keyring.recipient(), &value));
                    done += 1;
                }
                Err(why) => left.push(format!("[{table_name}] {name}: {why}")),
            }
        }
    }
    (done, left)
}

/// A whole rotation without a daemon (not in git mode: there the daemon commits it).
pub async fn rotate_here(config: &std::sync::Arc<Config>) -> Result<Rotated, String> {
    if config.git.is_some() {
        return Err("in git mode the rotation is one commit made by `berth serve`: start it and run this again".into());
    }
    let files = ManifestFiles::new(config.clone());
    let rotated = reencrypt_all(&files, config).await?;
    secrets_key::finish_rotation(&config.secrets_key)?;
    Ok(rotated)
}
