//! Renames as the files state them: a manifest with `renamed_from = "<old>"` takes over the
//! app of that name (same user) — its container, volumes, workspace and records — once the
//! old manifest is gone. The rule that keeps this unambiguous: exactly one manifest may take
//! an old name over, and only while no manifest of that name exists; anything else holds the
//! renamed app with an error naming both files, and touches nothing.

use std::collections::BTreeMap;

use crate::model::desired::DesiredState;
#[cfg(test)]
use crate::model::desired::Entry;
use crate::model::manifest::Manifest;
use crate::model::names::AppKey;
use crate::model::source_error::SourceError;

/// The app `m` (the manifest of `key`) takes over, checked to be another app of the same user.
pub fn source(key: &AppKey, m: &Manifest) -> Result<Option<AppKey>, String> {
    let Some(old) = &m.renamed_from else {
        return Ok(None);
    };
    if old.0 == key.appname {
        return Err(format!("renamed_from = {:?} names this app itself", old.0));
    }
    AppKey::new(&key.userid, &old.0)
        .map(Some)
        .map_err(|e| format!("renamed_from: {e}"))
}

fn file(key: &AppKey) -> String {
    format!("state/apps/{}/{}.toml", key.userid, key.appname)
}

/// The renames the manifests ask for, `old → new`, from every manifest that parses (a renamed
/// app held for another reason still holds on to its old name: its containers are not
/// removed), and the renamed apps to freeze: one whose old manifest still exists, and every
/// taker of an old name but the first in path order.
pub fn find(
    manifests: &BTreeMap<AppKey, Result<(Manifest, String), SourceError>>,
) -> (BTreeMap<AppKey, AppKey>, Vec<(AppKey, String)>) {
    let (mut taken, mut frozen) = (BTreeMap::<AppKey, AppKey>::new(), Vec::new());
    for (key, parsed) in manifests {
        let Ok((m, _)) = parsed else { continue };
        let Ok(Some(old)) = source(key, m) else {
            continue;
        };
        if manifests.contains_key(&old) {
            frozen.push((key.clone(), format!(
                "{}: renamed_from = {:?}, but {} exists too: the rename cannot go on until one of them is removed (or the renamed_from line)",
                file(key), old.appname, file(&old)
            )));
        } else if let Some(first) = taken.get(&old) {
            frozen.push((
                key.clone(),
                format!(
                    "{}: renamed_from = {:?}, which {} takes over already",
                    file(key),
                    old.appname,
                    file(first)
                ),
            ));
        } else {
            taken.insert(old, key.clone());
        }
    }
    (taken, frozen)
}

/// The renames under way in `desired`, `(from, to)`.
pub fn under_way(desired: &DesiredState) -> Vec<(AppKey, AppKey)> {
    desired
        .renames
        .iter()
        .map(|(old, new)| (old.clone(), new.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Config;
    use crate::model::desired::Scan;
    use crate::model::fixtures::template;
    use crate::model::secrets::Keyring;
    use std::path::Path;

    fn desired(items: &[(&str, &str)]) -> DesiredState {
        let mut s = Scan::default();
        for (a, text) in items {
            let m = Manifest::parse(Path::new("m.toml"), text).map(|m| (m, text.to_string()));
            s.manifests.insert(AppKey::new("alice", a).unwrap(), m);
        }
        let config = Config::load(None, Some(Path::new("/r"))).unwrap();
        let keys: Result<Keyring, String> = Err("none".into());
        DesiredState::build(s, &config, &keys, &mut |_| Ok(template()))
    }

    fn frozen(d: &DesiredState, app: &str) -> Option<String> {
        match d.apps.get(&AppKey::new("alice", app).unwrap()) {
            Some(Entry::Frozen(why)) => Some(why.clone()),
            _ => None,
        }
    }

    const RENAMED: &str = "template = \"web-v1\"\nrenamed_from = \"old\"\n";

    #[test]
    fn a_rename_whose_old_manifest_is_gone_is_under_way() {
        let d = desired(&[("new", RENAMED)]);
        let pair = (
            AppKey::new("alice", "old").unwrap(),
            AppKey::new("alice", "new").unwrap(),
        );
        assert_eq!(under_way(&d), vec![pair.clone()]);
        assert_eq!(d.seen().renames, vec![pair]);
    }

    #[test]
    fn an_old_manifest_that_still_exists_holds_the_rename_and_names_both_files() {
        let d = desired(&[("new", RENAMED), ("old", "template = \"web-v1\"\n")]);
        let why = frozen(&d, "new").expect("held");
        assert!(why.contains("state/apps/alice/new.toml"), "{why}");
        assert!(
            why.contains("state/apps/alice/old.toml exists too"),
            "{why}"
        );
        assert!(frozen(&d, "old").is_none());
        assert!(under_way(&d).is_empty());
    }

    #[test]
    fn one_old_name_is_taken_over_once_in_path_order() {
        let d = desired(&[("b", RENAMED), ("a", RENAMED)]);
        assert!(frozen(&d, "a").is_none());
        let why = frozen(&d, "b").expect("the second taker is held");
        assert!(
            why.contains("state/apps/alice/a.toml takes over already"),
            "{why}"
        );
    }

    #[test]
    fn a_bad_or_circular_renamed_from_is_refused_with_the_rule() {
        let d = desired(&[
            ("self", "template = \"web-v1\"\nrenamed_from = \"self\"\n"),
            (
                "bad",
                "template = \"web-v1\"\nrenamed_from = \"Not/Valid\"\n",
            ),
        ]);
        assert!(frozen(&d, "self")
            .unwrap()
            .contains("names this app itself"));
        let why = frozen(&d, "bad").unwrap();
        assert!(why.contains("invalid appname"), "{why}");
    }
}
