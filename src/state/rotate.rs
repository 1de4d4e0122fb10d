//! `berth secrets rotate` (docs/guides/secrets.md): every `[secrets]` value re-encrypted to a new key. The
//! new key is written beside the old one first (`berth.key.next`), every manifest is
//! rewritten sealing to it while both keys open, and only then does it replace the old key. A
//! rotation cut short leaves both keys, so every manifest still decrypts, and the next rotate
//! resumes with the same new key. A finished rotation with `--keep-old` keeps the old key in
//! `berth.key.old` (opening bound values only), so what it could not reach (a manifest that does not read, an older
//! revision, a commit not yet pulled) still opens. Fingerprints are keyed by a key the rotation carries over, so
//! no container is recreated.

use std::collections::BTreeMap;

use crate::model::config::Config;
use crate::model::names::AppKey;
use crate::model::secrets::{seal_carrying, Keyring, Scope};
use crate::model::template::Template;
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
    /// Whether the backup repository's password was re-sealed too (not counted in `values`).
    pub backup_password: bool,
    /// `user/app NAME: why` for values that decrypt with neither key (left as they are).
    pub left: Vec<String>,
    /// Whether the new key replaced the old one (not while values are left, unless
    /// `--keep-old`).
    pub finished: bool,
    /// What became of the old key, in words.
    pub old_key: String,
}

/// Ends the rotation when it may: every value re-sealed, or `keep_old` (the old key then
/// kept in `berth.key.old`, opening only). With values left and no `keep_old`, both keys
/// stay and the rotation stays under way: the operator fixes what is listed and runs it
/// again, which resumes with the same new key.
pub fn finish(config: &Config, rotated: &mut Rotated, keep_old: bool) -> Result<(), String> {
    let path = &config.secrets_key;
    if !rotated.left.is_empty() && !keep_old {
        rotated.old_key = format!(
            "still in {}: the rotation is not finished while values are left (fix them and run it again, or use --keep-old)",
            path.display()
        );
        return Ok(());
    }
    secrets_key::finish_rotation(path, keep_old)?;
    rotated.finished = true;
    rotated.old_key = match keep_old {
        true => format!(
            "kept in {}, opening only, until `berth secrets forget-old`",
            secrets_key::retired_path(path).display()
        ),
        false => "removed: nothing sealed to it opens any more".into(),
    };
    Ok(())
}

/// For each of the template's secret values that one `[env]` entry is exactly
/// (`NAME = "{values.x}"`): that entry's name, whose fingerprint a re-seal carries.
fn env_of(
    config: &Config,
    parsed: &Result<
        (crate::model::manifest::Manifest, String),
        crate::model::source_error::SourceError,
    >,
) -> BTreeMap<String, String> {
    let Ok((m, _)) = parsed else {
        return BTreeMap::new();
    };
    let Some(Ok(t)) = m.template_id().map(|id| Template::load(config, id)) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (env, text) in &t.env {
        let whole = text
            .strip_prefix("{values.")
            .and_then(|r| r.strip_suffix('}'));
        if let Some(name) = whole.filter(|n| !n.contains('}')) {
            out.entry(name.to_string()).or_insert_with(|| env.clone());
        }
    }
    out
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
        let envs = env_of(config, parsed);
        let change = |doc: &mut toml_edit::DocumentMut| {
            (values, left) = reseal(doc, &keyring, key, &envs);
        };
        match files.edit(key, change).await {
            Ok(_) => {}
            Err(e) if parsed.is_err() => {
                out.left.push(format!(
                    "{key}: the manifest does not read ({}); its values open with the old key only",
                    crate::error_chain::chain(&e),
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
    // The backup repository's password is sealed to the same key: without it the snapshots
    // would not open once the old key goes.
    match crate::state::backup_key::reseal(config, &keyring) {
        Ok(true) => out.backup_password = true,
        Ok(false) => {}
        Err(e) => out
            .left
            .push(format!("the backup repository's password: {e}")),
    }
    // A user directory that cannot be listed may hold values sealed to the old key: the
    // rotation must not finish (and delete that key) without them.
    for (user, e) in &found.frozen_users {
        out.left.push(format!(
            "user {user}: {e}; its manifests were not re-encrypted"
        ));
    }
    Ok(out)
}

/// Re-seals every `[secrets]` value and every sealed `[values]` entry (a template's secret
/// value) of `doc`, the manifest of `key`, that `keyring` opens for `key` (or, while a rename
/// is under way, for the app it takes over): bound to `key` and sealed to the keyring's
/// current key, each carrying the fingerprint the spec shows for it now, so neither a
/// rotation nor a rename changes a spec (a `[values]` entry carries the fingerprint of the
/// `[env]` entry `envs` names for it: one the template fills with that value alone; a value
/// used inside a longer text is fingerprinted anew after a rotation). Returns how many, and
/// the names (with why) of those it cannot open.
pub fn reseal(
    doc: &mut toml_edit::DocumentMut,
    keyring: &Keyring,
    key: &AppKey,
    envs: &BTreeMap<String, String>,
) -> (usize, Vec<String>) {
    let renamed_from = doc
        .get("renamed_from")
        .and_then(|v| v.as_str())
        .and_then(|old| AppKey::new(&key.userid, old).ok());
    let (mut done, mut left) = (0, Vec::new());
    for table_name in ["secrets", "values"] {
        let Some(table) = doc.get_mut(table_name).and_then(|t| t.as_table_like_mut()) else {
            continue;
        };
        for (name, item) in table.iter_mut() {
            let Some(sealed) = item.as_str().filter(|s| s.starts_with("age:")) else {
                continue;
            };
            let scope = match table_name {
                "secrets" => Scope::secret(key, &name),
                _ => Scope::value(key, &name),
            };
            let scope = scope.taking_over(renamed_from.clone());
            match keyring.open(sealed, &scope) {
                Ok(opened) => {
                    let fp = match table_name {
                        "secrets" => Some(keyring.fingerprint_of(&name, &opened)),
                        _ => opened.fingerprint.clone().or_else(|| {
                            let env = envs.get(&*name)?;
                            Some(keyring.fingerprint(env, &opened.value))
                        }),
                    };
                    let bound = Scope::secret(key, scope.name());
                    let again =
                        seal_carrying(&keyring.recipient(), &bound, &opened.value, fp.as_deref());
                    *item = toml_edit::value(again);
                    done += 1;
                }
                Err(why) => left.push(format!("[{table_name}] {name}: {why}")),
            }
        }
    }
    (done, left)
}

/// A whole rotation without a daemon (not in git mode: there the daemon commits it).
pub async fn rotate_here(
    config: &std::sync::Arc<Config>,
    keep_old: bool,
) -> Result<Rotated, String> {
    if config.git.is_some() {
        return Err("in git mode the rotation is one commit made by `berth serve`: start it and run this again".into());
    }
    // A `serve` whose socket is gone may be sealing to the key this would delete.
    let _decides =
        crate::state::root_lock::acquire_without_daemon(&config.root, "berth secrets rotate")?;
    let files = ManifestFiles::new(config.clone());
    let mut rotated = reencrypt_all(&files, config).await?;
    finish(config, &mut rotated, keep_old)?;
    Ok(rotated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::secrets::{seal, SecretValue};

    #[test]
    fn a_reseal_binds_to_the_app_and_carries_the_fingerprint_its_spec_shows() {
        let old = Keyring::generate();
        let db = AppKey::new("alice", "db").unwrap();
        let pw = SecretValue::new("pw".into());
        let text = format!(
            "template = \"redis-v1\"\n[values]\npassword = \"{}\"\n[secrets]\nTOKEN = \"{}\"\n",
            seal(&old.recipient(), &Scope::value(&db, "password"), &pw),
            seal(&old.recipient(), &Scope::secret(&db, "TOKEN"), &pw),
        );
        let mut doc: toml_edit::DocumentMut = text.parse().unwrap();
        let next = old.successor();
        let next_alone = Keyring::parse(&next.to_file_text()).unwrap();
        let rotating = Keyring::parse(&old.to_file_text())
            .unwrap()
            .rotating_to(next);
        let envs = BTreeMap::from([("password".to_string(), "REDIS_PASSWORD".to_string())]);
        let (done, left) = reseal(&mut doc, &rotating, &db, &envs);
        assert_eq!((done, left.len()), (2, 0), "{left:?}");
        let value = doc["values"]["password"].as_str().unwrap();
        let opened = next_alone
            .open(value, &Scope::value(&db, "password"))
            .unwrap();
        assert_eq!(
            opened.fingerprint,
            Some(old.fingerprint("REDIS_PASSWORD", &pw)),
            "the spec's fingerprint of REDIS_PASSWORD would change"
        );
        let token = doc["secrets"]["TOKEN"].as_str().unwrap();
        let opened = next_alone
            .open(token, &Scope::secret(&db, "TOKEN"))
            .unwrap();
        assert_eq!(
            next_alone.fingerprint_of("TOKEN", &opened),
            old.fingerprint("TOKEN", &pw)
        );
        let bob = AppKey::new("bob", "db").unwrap();
        assert!(next_alone
            .open(token, &Scope::secret(&bob, "TOKEN"))
            .is_err());
        // A value sealed for another app is left as it is, named.
        let mut moved: toml_edit::DocumentMut = text.parse().unwrap();
        let (done, left) = reseal(&mut moved, &rotating, &bob, &envs);
        assert_eq!(done, 0);
        assert!(left[0].contains("sealed for alice/db/"), "{left:?}");
    }
}
