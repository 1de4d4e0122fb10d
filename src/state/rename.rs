//! The files' side of a rename: the new manifest is the old text with one line put first,
//! `renamed_from = "<old>"`, which the loop reads as "take the old app over" (see
//! `model::rename`) and drops once it has. Because the line is put first and nothing else
//! changes, a rename cut between writing the new file and removing the old one is recognised
//! exactly at the next start, and finished.

use std::path::Path;

use crate::model::names::AppKey;
use crate::state::files::WriteError;

/// The line a rename puts first.
fn line(old: &AppKey) -> String {
    format!("renamed_from = \"{}\"\n", old.appname)
}

/// `text` (the manifest of `old`, shown as `file`) as the renamed app's manifest. An app whose
/// own rename is not finished is not renamed again: its old name would be left to nobody.
pub fn with_renamed_from(file: &Path, text: &str, old: &AppKey) -> Result<String, WriteError> {
    let under_way = text
        .parse::<toml_edit::DocumentMut>()
        .is_ok_and(|doc| doc.contains_key("renamed_from"));
    if under_way {
        return Err(WriteError::Busy(format!(
            "{}: this app's own rename is not finished yet (renamed_from is still set); try again when it is",
            file.display()
        )));
    }
    Ok(format!("{}{text}", line(old)))
}

/// Refuses to make `key` anew while a rename is taking the app of that name over: the new app
/// would inherit its container, workspace and volumes.
pub fn check_not_taken_over(
    found: &crate::model::desired::Scan,
    key: &AppKey,
) -> Result<(), WriteError> {
    let (renames, _) = crate::model::rename::find(&found.manifests);
    match renames.get(key) {
        Some(new) => Err(WriteError::Busy(format!(
            "{key} is being renamed to {}; wait until the rename is done (berth status shows it)",
            new.appname
        ))),
        None => Ok(()),
    }
}

/// Whether `new_text` is exactly what a rename of `old` (whose text is `old_text`) writes.
pub fn is_rename_of(new_text: &str, old: &AppKey, old_text: &str) -> bool {
    new_text
        .strip_prefix(&line(old))
        .is_some_and(|rest| rest == old_text)
}

/// In one user's directory `dir` of `userid`: removes each old manifest a cut rename left
/// beside the new one. Returns how many.
pub fn finish_cut(dir: &Path, userid: &str) -> usize {
    let mut done = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".toml")) else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Some(old) = renamed_from(&text).and_then(|o| AppKey::new(userid, &o).ok()) else {
            continue;
        };
        let old_path = dir.join(format!("{}.toml", old.appname));
        let is_file = std::fs::symlink_metadata(&old_path).is_ok_and(|m| m.is_file());
        let old_text = std::fs::read_to_string(&old_path).unwrap_or_default();
        let cut = stem != old.appname && is_file && is_rename_of(&text, &old, &old_text);
        if cut && std::fs::remove_file(&old_path).is_ok() {
            tracing::info!(file = %old_path.display(), "finished a rename cut short: removed the old manifest");
            done += 1;
        }
    }
    done
}

/// Finishes the rename of `old` to `key` without the daemon (`berth apply`): the records
/// adopted in the database, then `renamed_from` dropped from the file in place, keeping the
/// rest as written. In git mode a commit is the daemon's to make, so this leaves both for
/// `serve`, which finishes the rename.
pub async fn finish_offline(
    config: std::sync::Arc<crate::model::config::Config>,
    old: &AppKey,
    key: &AppKey,
) -> Result<(), WriteError> {
    if config.git.is_some() {
        tracing::info!(app = %key, "the rename's takeover is done; `berth serve` drops renamed_from (git mode)");
        return Ok(());
    }
    crate::store::Store::open(&config.database)
        .and_then(|s| s.adopt(old, key))
        .map_err(|e| {
            WriteError::Busy(format!(
                "cannot move the app's records: {}",
                crate::error_chain::chain(&e)
            ))
        })?;
    let finish = finishing(&config, key);
    let files = crate::state::files::ManifestFiles::new(config);
    files.edit(key, finish).await.map(drop)
}

/// A rename without the daemon (`berth mv` while `serve` is not running, not in git mode).
pub async fn rename_offline(
    config: std::sync::Arc<crate::model::config::Config>,
    old: &AppKey,
    new: &AppKey,
) -> Result<crate::state::files::Current, WriteError> {
    crate::state::files::ManifestFiles::new(config)
        .rename(old, new)
        .await
}

/// A finished rename's manifest (`key`'s): every sealed value re-sealed for the new name
/// (it was sealed for the old one, and opened here only while `renamed_from` said so), then
/// the `renamed_from` line dropped, the rest as written. One write, so a rename cut before it
/// still has both the line and values that open; after it, neither is needed.
pub fn finishing(
    config: &crate::model::config::Config,
    key: &AppKey,
) -> impl FnOnce(&mut toml_edit::DocumentMut) {
    let keyring = crate::state::secrets_key::load(&config.secrets_key);
    let key = key.clone();
    move |doc: &mut toml_edit::DocumentMut| {
        if let Ok(keyring) = &keyring {
            let (_, left) = crate::state::rotate::reseal(doc, keyring, &key, &Default::default());
            for why in left {
                tracing::warn!(app = %key, value = %why, "a sealed value was not re-sealed for the new name");
            }
        }
        doc.remove("renamed_from");
    }
}

/// The old name in a first line `renamed_from = "<old>"`.
fn renamed_from(text: &str) -> Option<String> {
    let first = text.lines().next()?;
    let quoted = first.strip_prefix("renamed_from = \"")?.strip_suffix('"')?;
    Some(quoted.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_rename_is_finished_and_nothing_else_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let old = AppKey::new("alice", "old").unwrap();
        let text = "# mine\ntemplate = \"web-v1\"\n";
        let renamed = with_renamed_from(Path::new("x"), text, &old).unwrap();
        std::fs::write(dir.path().join("old.toml"), text).unwrap();
        std::fs::write(dir.path().join("new.toml"), &renamed).unwrap();
        // Same renamed_from, but the old file was edited since: a person's doing, kept.
        std::fs::write(dir.path().join("kept.toml"), text.replace("mine", "edited")).unwrap();
        std::fs::write(
            dir.path().join("other.toml"),
            "renamed_from = \"kept\"\ntemplate = \"web-v1\"\n",
        )
        .unwrap();
        assert_eq!(finish_cut(dir.path(), "alice"), 1);
        assert!(!dir.path().join("old.toml").exists());
        assert!(dir.path().join("new.toml").exists());
        assert!(dir.path().join("kept.toml").exists());
        assert_eq!(finish_cut(dir.path(), "alice"), 0);
    }

    #[test]
    fn an_app_whose_rename_is_under_way_is_not_renamed_again() {
        let old = AppKey::new("alice", "b").unwrap();
        let err = with_renamed_from(
            Path::new("state/apps/alice/b.toml"),
            "renamed_from = \"a\"\ntemplate = \"t\"\n",
            &old,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("state/apps/alice/b.toml: this app's own rename is not finished"),
            "{err}"
        );
    }

    #[test]
    fn a_name_being_taken_over_is_not_free_for_a_new_app() {
        let mut found = crate::model::desired::Scan::default();
        let text = "renamed_from = \"hi\"\ntemplate = \"t\"\n";
        let m = crate::model::manifest::Manifest::parse(Path::new("m"), text).unwrap();
        let hello = AppKey::new("alice", "hello").unwrap();
        found.manifests.insert(hello, Ok((m, text.to_string())));
        let err = check_not_taken_over(&found, &AppKey::new("alice", "hi").unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .contains("alice/hi is being renamed to hello"),
            "{err}"
        );
        assert!(check_not_taken_over(&found, &AppKey::new("bob", "hi").unwrap()).is_ok());
    }
}
