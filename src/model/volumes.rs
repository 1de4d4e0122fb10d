//! Named volumes (docs/guides/volumes-and-rename.md): `[[volumes]]` in template.toml become Docker volumes, one per app
//! and name, labelled like the app's containers. They outlive deploys, stops and deletes; only
//! a confirmed purge drops them. Their Docker names are derived here, so every layer agrees.

use serde::{Deserialize, Serialize};

use crate::model::names::AppKey;

/// `[[volumes]]` as a template declares it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeDecl {
    /// Short name, unique in the template (`data`): a-z, 0-9 and '-', starting with a letter.
    #[schemars(regex(pattern = "^[a-z][a-z0-9-]{0,31}$"))]
    pub name: String,
    /// Absolute path inside the container, unique in the template.
    #[schemars(schema_with = "crate::model::schema::container_path")]
    pub target: String,
}

/// One app's volume as the container spec carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// The Docker volume's name.
    pub volume: String,
    /// Where it is mounted.
    pub target: String,
}

/// The Docker volume of `key`'s volume `name` under `instance`:
/// `berth-<instance>-<user>-<app>.<name>`. Instances and users have no `-` and app names no
/// `.`, so no two apps' volumes share a name (`db-x` + `data` is not `db` + `x-data`).
pub fn volume_name(instance: &str, key: &AppKey, name: &str) -> String {
    format!("berth-{instance}-{}-{}.{name}", key.userid, key.appname)
}

/// `key`'s volumes under `instance`, in template order.
pub fn specs(instance: &str, key: &AppKey, decls: &[VolumeDecl]) -> Vec<VolumeSpec> {
    decls
        .iter()
        .map(|v| VolumeSpec {
            volume: volume_name(instance, key, &v.name),
            target: v.target.clone(),
        })
        .collect()
}

/// The declarations checked: names `[a-z][a-z0-9-]*` (at most 32), each once; targets
/// absolute, without `..` or `:`, each once.
pub fn check_decls(decls: &[VolumeDecl]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    let mut targets = std::collections::BTreeSet::new();
    for v in decls {
        let name_ok = v.name.len() <= 32
            && v.name.starts_with(|c: char| c.is_ascii_lowercase())
            && v.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(format!("[[volumes]] name {:?}: use lower-case letters, digits and '-', starting with a letter (at most 32)", v.name));
        }
        if !v.target.starts_with('/')
            || v.target.contains(':')
            || v.target.split('/').any(|c| c == "..")
        {
            return Err(format!(
                "[[volumes]] {}: target {:?} must be an absolute path without ':' or '..'",
                v.name, v.target
            ));
        }
        if !names.insert(&v.name) || !targets.insert(&v.target) {
            return Err(format!(
                "[[volumes]] {}: each name and target may appear once",
                v.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, target: &str) -> VolumeDecl {
        VolumeDecl {
            name: name.into(),
            target: target.into(),
        }
    }

    #[test]
    fn names_are_derived_and_declarations_checked() {
        let key = AppKey::new("alice", "db").unwrap();
        assert_eq!(
            volume_name("main", &key, "data"),
            "berth-main-alice-db.data"
        );
        let other = AppKey::new("alice", "db-x").unwrap();
        assert_ne!(
            volume_name("main", &other, "data"),
            volume_name("main", &key, "x-data")
        );
        check_decls(&[v("data", "/data"), v("logs", "/var/log/x")]).unwrap();
        for (bad, want) in [
            (vec![v("Data", "/data")], "lower-case"),
            (vec![v("data", "data")], "absolute"),
            (vec![v("data", "/a/../b")], "absolute"),
            (vec![v("data", "/a"), v("data", "/b")], "once"),
            (vec![v("a", "/x"), v("b", "/x")], "once"),
        ] {
            let e = check_decls(&bad).unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }
}
