//! `berth init [DIR]`: a working root in one command — berth.toml with every setting shown at
//! its default (commented out), the templates shipped with this binary, a first app manifest,
//! and the directories berth works in. Nothing that exists is overwritten: a root that has a
//! berth.toml is refused, and a template directory already there is kept as it is.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

use crate::cli::admin::Outcome;

mod shipped {
    include!(concat!(env!("OUT_DIR"), "/shipped_templates.rs"));
}

/// berth.toml as `init` writes it: every line `# key = value` is the default.
pub const CONFIG: &str = include_str!("init_berth.toml");

/// The first app: the shipped node-lite-v1 template on a host port.
const FIRST_APP: &str = r#"# Your first app: userid "demo", appname "hello" (from this file's path). Edit it and run
# `berth plan` to see what would change; `berth serve` keeps the engine matching the files.
template = "node-lite-v1"
host_port = 8201

[env]
GREETING = "hello from berth"
"#;

/// Makes `dir` a berth root.
pub fn init(dir: &Path) -> anyhow::Result<Outcome> {
    let config = dir.join("berth.toml");
    if fs::symlink_metadata(&config).is_ok() {
        return Ok(Outcome::failed(format!(
            "{} exists: {} is a berth root already (nothing was changed)",
            config.display(),
            dir.display()
        )));
    }
    for sub in ["state/apps/demo", "templates", "shared", "apps"] {
        let path = dir.join(sub);
        fs::create_dir_all(&path).with_context(|| format!("making {}", path.display()))?;
    }
    let kept = write_templates(&dir.join("templates"))?;
    write_new(&dir.join("state/apps/demo/hello.toml"), FIRST_APP, 0o600)?;
    write_new(&config, CONFIG, 0o644)?;
    let mut out = vec![format!(
        "made a berth root in {}: berth.toml, templates/, state/apps/demo/hello.toml",
        dir.display()
    )];
    out.extend(kept.iter().map(|t| format!("kept templates/{t} as it was")));
    out.push(format!(
        "next: berth --root {0} plan    then    berth --root {0} serve",
        dir.display()
    ));
    out.push("then: curl http://127.0.0.1:8201/".into());
    Ok(Outcome::ok(out))
}

/// Writes the shipped templates under `templates`; answers the ids of those already there,
/// which are left untouched (a file beside them, such as a schema, is written when missing).
fn write_templates(templates: &Path) -> anyhow::Result<Vec<String>> {
    let existing = |rel: &str| fs::symlink_metadata(templates.join(rel)).is_ok();
    let mut kept: Vec<String> = shipped::FILES
        .iter()
        .filter_map(|(rel, _, _)| rel.split_once('/').map(|(top, _)| top))
        .filter(|top| existing(top))
        .map(str::to_string)
        .collect();
    kept.dedup();
    for (rel, bytes, exec) in shipped::FILES {
        let in_kept = rel
            .split_once('/')
            .is_some_and(|(top, _)| kept.iter().any(|k| k == top));
        if in_kept || existing(rel) {
            continue;
        }
        let path = templates.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("making {}", parent.display()))?;
        }
        write_new(&path, bytes, if *exec { 0o755 } else { 0o644 })?;
    }
    Ok(kept)
}

/// Creates `path` with `bytes`; never replaces a file.
fn write_new(path: &Path, bytes: impl AsRef<[u8]>, mode: u32) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes.as_ref())
        .with_context(|| format!("writing {}", path.display()))?;
    // The umask may have narrowed the mode: a hook must stay executable.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Config;

    fn load(dir: &Path, text: &str) -> Result<Config, String> {
        let path = dir.join("berth.toml");
        fs::write(&path, text).unwrap();
        Config::load(Some(&path), Some(dir)).map_err(|e| e.to_string())
    }

    /// Every `# key = value` line (and `# [table]` header) of the written berth.toml,
    /// uncommented, up to the first table when `top_only`.
    fn uncommented(top_only: bool) -> String {
        let mut out = String::new();
        for line in CONFIG.lines() {
            let Some(rest) = line.strip_prefix("# ") else {
                continue;
            };
            let is_setting = rest.starts_with('[') || rest.split_once(" = ").is_some();
            if top_only && rest.starts_with('[') {
                break;
            }
            if is_setting && !rest.starts_with("domains") {
                out.push_str(rest);
                out.push('\n');
            }
        }
        out
    }

    #[test]
    fn the_written_config_shows_the_defaults_it_claims() {
        let dir = tempfile::tempdir().unwrap();
        let empty = format!("{:?}", load(dir.path(), "").unwrap());
        assert_eq!(format!("{:?}", load(dir.path(), CONFIG).unwrap()), empty);
        let top = uncommented(true);
        assert!(top.lines().count() >= 20, "{top}");
        let shown = format!("{:?}", load(dir.path(), &top).unwrap());
        assert_eq!(shown, empty, "a commented value is not the default:\n{top}");
        let all = uncommented(false);
        load(dir.path(), &all).unwrap_or_else(|e| panic!("{e}\n{all}"));
    }

    #[test]
    fn init_makes_a_root_whose_first_app_validates_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        fs::create_dir_all(root.join("templates/node-lite-v1")).unwrap();
        fs::write(root.join("templates/node-lite-v1/template.toml"), "mine").unwrap();
        let done = init(&root).unwrap();
        assert!(done.error.is_none(), "{:?}", done.error);
        assert!(done
            .out
            .iter()
            .any(|l| l.contains("kept templates/node-lite-v1")));
        let kept = fs::read_to_string(root.join("templates/node-lite-v1/template.toml")).unwrap();
        assert_eq!(kept, "mine");
        let hook = root.join("templates/python-lite-v1/hooks/pre-create");
        assert_eq!(
            fs::metadata(hook).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(root.join("templates/redis-v1/template.toml").is_file());
        assert!(root.join("state/apps/demo/hello.toml").is_file());

        let again = init(&root).unwrap();
        let why = again.error.expect("a second init is refused");
        assert!(why.contains("berth.toml exists"), "{why}");
    }
}
