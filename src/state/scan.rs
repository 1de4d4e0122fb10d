//! Finds manifests under `state/apps/<userid>/<appname>.toml` (docs/reference/manifest.md) without following
//! symlinks or leaving the directory, and sorts what it finds into parsed manifests, frozen
//! apps and users, and stray files it can only report.
//!
//! **Invariant: a file that cannot be read or parsed freezes its app, and a user directory that
//! cannot be read freezes the whole user**, so a bad or half-written file never looks like a
//! deleted app.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::model::config::Config;
use crate::model::desired::{DesiredState, Scan};
use crate::model::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::model::names::{validate_userid, AppKey};
use crate::model::source_error::SourceError;
use crate::model::template::Template;

/// Why the whole scan failed: `state/apps` exists but cannot be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", path.display())]
pub struct ScanError {
    /// The directory.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Scans the state directory and loads the templates its manifests name (each once): the
/// desired state of one pass.
pub fn load_desired(config: &Config) -> Result<DesiredState, ScanError> {
    let found = scan(&config.apps_state_dir(), &config.root)?;
    Ok(build_desired(found, config))
}

/// The desired state of what a scan `found`: its templates loaded (each once) and its
/// secrets decrypted with the server's key (read now, so a restored or rotated key counts).
pub fn build_desired(mut found: Scan, config: &Config) -> DesiredState {
    found.contexts = build_contexts(&found, config);
    desired_from(found, config)
}

/// For each built app, a digest that says its context was not read (for judging rules only).
pub fn unread_contexts(found: &Scan) -> BTreeMap<AppKey, Result<String, String>> {
    let built = found
        .manifests
        .iter()
        .filter(|(_, parsed)| parsed.as_ref().is_ok_and(|(m, _)| m.build.is_some()));
    built
        .map(|(key, _)| (key.clone(), Ok("unread".to_string())))
        .collect()
}

/// The desired state of `found` with its contexts as they are.
pub fn desired_from(found: Scan, config: &Config) -> DesiredState {
    let keys = match found.manifests.values().any(holds_secrets) {
        true => crate::state::secrets_key::load(&config.secrets_key),
        false => Err("no manifest holds secrets".into()),
    };
    let mut templates: BTreeMap<String, Result<Template, SourceError>> = BTreeMap::new();
    DesiredState::build(found, config, &keys, &mut |id| {
        templates
            .entry(id.to_string())
            .or_insert_with(|| Template::load(config, id))
            .clone()
    })
}

/// The digest of each built app's context (`state::build_context`), or for a `[build] git`
/// app the commit fetched last (`state::build_source`).
fn build_contexts(found: &Scan, config: &Config) -> BTreeMap<AppKey, Result<String, String>> {
    let built = found.manifests.iter().filter_map(|(key, parsed)| {
        let decl = parsed.as_ref().ok()?.0.build.as_ref()?;
        let digest = match decl.source() {
            Some(source) => git_context(config, key, &source, &decl.context),
            None => crate::state::build_context::digest(&config.app_dir(key), &decl.context),
        };
        Some((key.clone(), digest))
    });
    built.collect()
}

/// A `[build] git` app's fetched commit (`git:<commit>`), once its `context` inside that
/// commit's tree is checked as a workspace's is: no link on the way, within the caps (a
/// repository's link must not take a build to another user's files).
fn git_context(
    config: &Config,
    key: &AppKey,
    source: &crate::model::git_source::GitSource,
    context: &str,
) -> Result<String, String> {
    let fetched = crate::state::build_source::resolved(config, key, source)?;
    let commit = fetched.trim_start_matches("git:");
    crate::state::build_context::digest(&config.source_tree(key, commit), context)
        .map_err(|e| format!("context {context}: {e}"))?;
    Ok(fetched)
}

/// Whether a scanned manifest has `[secrets]`.
pub fn holds_secrets(parsed: &Result<(Manifest, String), SourceError>) -> bool {
    parsed.as_ref().is_ok_and(|(m, _)| {
        let sealed_value = m
            .values
            .values()
            .any(|v| v.as_str().is_some_and(|s| s.starts_with("age:")));
        !m.secrets.0.is_empty() || sealed_value
    })
}

/// True for names an editor or git leaves behind: hidden files and non-`.toml` files.
pub fn is_ignored_file_name(name: &str) -> bool {
    name.starts_with('.') || !name.ends_with(".toml")
}

/// Scans `apps_state_dir` (`state/apps`). `shown_from` is stripped from paths in messages so
/// errors read `state/apps/alice/hello.toml`, as users know the file.
pub fn scan(apps_state_dir: &Path, shown_from: &Path) -> Result<Scan, ScanError> {
    let mut out = Scan::default();
    let shown = |p: &Path| p.strip_prefix(shown_from).unwrap_or(p).to_path_buf();
    let users = match std::fs::read_dir(apps_state_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => {
            return Err(ScanError {
                path: apps_state_dir.to_path_buf(),
                source,
            })
        }
    };
    let mut user_entries: Vec<_> = users.filter_map(Result::ok).collect();
    user_entries.sort_by_key(|e| e.file_name());
    for entry in user_entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            if path.is_dir() && !entry.file_name().to_string_lossy().starts_with('.') {
                let why = "user directory name is not UTF-8";
                out.stray.push(SourceError::whole_file(&shown(&path), why));
            }
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if md.file_type().is_file() {
            continue; // a README beside the user directories
        }
        if let Err(e) = validate_userid(&name) {
            out.stray
                .push(SourceError::whole_file(&shown(&path), e.to_string()));
            continue;
        }
        if md.file_type().is_symlink() || !md.is_dir() {
            let err = SourceError::whole_file(
                &shown(&path),
                "user directory is a symlink or not a directory; not followed",
            );
            out.frozen_users.insert(name, err);
            continue;
        }
        scan_user(&path, &name, &shown, &mut out);
    }
    Ok(out)
}

fn scan_user(dir: &Path, userid: &str, shown: &dyn Fn(&Path) -> PathBuf, out: &mut Scan) {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            out.frozen_users.insert(
                userid.to_string(),
                SourceError::whole_file(&shown(dir), format!("cannot list: {e}")),
            );
            return;
        }
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            // Only a name that would otherwise be a manifest is worth reporting.
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(file_name.as_os_str());
            if !bytes.starts_with(b".") && bytes.ends_with(b".toml") {
                out.stray
                    .push(SourceError::whole_file(&shown(&path), "name is not UTF-8"));
            }
            continue;
        };
        if is_ignored_file_name(name) {
            continue;
        }
        let stem = &name[..name.len() - ".toml".len()];
        let key = match AppKey::new(userid, stem) {
            Ok(k) => k,
            Err(e) => {
                out.stray
                    .push(SourceError::whole_file(&shown(&path), e.to_string()));
                continue;
            }
        };
        let shown_path = shown(&path);
        out.manifests.insert(key, read_manifest(&path, &shown_path));
    }
}

/// Reads a manifest file's bytes the one way berth reads them: without following a symlink
/// (`O_NOFOLLOW`), only a regular file with one link (a hard link could make a file berth
/// must not read look like a manifest), and no more than [`MAX_MANIFEST_BYTES`]. The checks
/// are made on the opened file, so a swap between check and read cannot slip past them.
pub fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "manifest is a symlink; not followed".to_string(),
            _ => e.to_string(),
        })?;
    let md = file.metadata().map_err(|e| e.to_string())?;
    if !md.is_file() {
        return Err("manifest is not a regular file".into());
    }
    if md.nlink() > 1 {
        return Err(format!(
            "manifest has {} hard links; berth reads only files with one",
            md.nlink()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err("manifest is larger than 1 MiB".into());
    }
    Ok(bytes)
}

/// Reads and parses one manifest ([`read_capped`]); returns it with its text.
pub fn read_manifest(path: &Path, shown: &Path) -> Result<(Manifest, String), SourceError> {
    let bytes = read_capped(path).map_err(|e| SourceError::whole_file(shown, e))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| SourceError::whole_file(shown, "manifest is not UTF-8 text"))?;
    let manifest = Manifest::parse(shown, &text)?;
    Ok((manifest, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn keys(s: &Scan) -> Vec<String> {
        s.manifests.keys().map(|k| k.to_string()).collect()
    }

    #[test]
    fn finds_manifests_and_ignores_editor_files() {
        let d = tempfile::tempdir().unwrap();
        let apps = d.path().join("state/apps");
        write(&apps, "alice/hello.toml", "template = \"t\"");
        write(&apps, "alice/.hello.toml.swp", "junk");
        write(&apps, "alice/hello.toml~", "junk");
        write(&apps, "alice/notes.txt", "junk");
        write(&apps, "README.md", "junk");
        write(&apps, ".git/config", "junk");
        write(&apps, "bob/web.toml", "template = \"t\"");
        let odd = std::ffi::OsStr::from_bytes(b"web\xff.bak");
        std::fs::write(apps.join("bob").join(odd), "junk").unwrap();
        let s = scan(&apps, d.path()).unwrap();
        assert_eq!(keys(&s), ["alice/hello", "bob/web"]);
        assert!(s.stray.is_empty() && s.frozen_users.is_empty(), "{s:?}");
    }

    #[test]
    fn missing_directory_is_empty_not_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(scan(&d.path().join("state/apps"), d.path())
            .unwrap()
            .manifests
            .is_empty());
    }

    #[test]
    fn bad_names_are_stray_and_bad_files_freeze_their_app() {
        let d = tempfile::tempdir().unwrap();
        let apps = d.path().join("state/apps");
        write(&apps, "Alice/x.toml", "template = \"t\"");
        write(&apps, "bob/Bad.Name.toml", "template = \"t\"");
        write(&apps, "bob/broken.toml", "template = ");
        write(&apps, "bob/invalid-utf8.toml", "");
        std::fs::write(apps.join("bob/invalid-utf8.toml"), [0xff, 0xfe]).unwrap();
        let s = scan(&apps, d.path()).unwrap();
        let stray: Vec<String> = s.stray.iter().map(|e| e.to_string()).collect();
        assert!(
            stray.iter().any(|e| e.starts_with("state/apps/Alice:")),
            "{stray:?}"
        );
        assert!(
            stray
                .iter()
                .any(|e| e.starts_with("state/apps/bob/Bad.Name.toml:")),
            "{stray:?}"
        );
        let broken = &s.manifests[&AppKey::new("bob", "broken").unwrap()];
        assert!(broken
            .as_ref()
            .unwrap_err()
            .to_string()
            .starts_with("state/apps/bob/broken.toml:1:"));
        assert!(s.manifests[&AppKey::new("bob", "invalid-utf8").unwrap()].is_err());
    }

    #[test]
    fn symlinks_are_rejected_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let apps = d.path().join("state/apps");
        write(d.path(), "outside/evil.toml", "template = \"t\"");
        std::fs::create_dir_all(apps.join("alice")).unwrap();
        std::os::unix::fs::symlink(
            d.path().join("outside/evil.toml"),
            apps.join("alice/evil.toml"),
        )
        .unwrap();
        std::os::unix::fs::symlink(d.path().join("outside"), apps.join("mallory")).unwrap();
        let s = scan(&apps, d.path()).unwrap();
        let e = s.manifests[&AppKey::new("alice", "evil").unwrap()]
            .as_ref()
            .unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(s.frozen_users.contains_key("mallory"));
    }

    #[test]
    fn oversized_manifest_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let apps = d.path().join("state/apps");
        write(
            &apps,
            "alice/big.toml",
            &format!("template = \"t\"\n#{}", "x".repeat(2 << 20)),
        );
        let s = scan(&apps, d.path()).unwrap();
        let e = s.manifests[&AppKey::new("alice", "big").unwrap()]
            .as_ref()
            .unwrap_err();
        assert!(e.to_string().contains("larger than 1 MiB"));
    }

    #[test]
    fn only_a_regular_file_with_one_link_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(&file, "template = \"t\"\n").unwrap();
        assert!(read_capped(&file).is_ok());
        std::fs::hard_link(&file, dir.path().join("b.toml")).unwrap();
        let e = read_capped(&file).unwrap_err();
        assert!(e.contains("2 hard links"), "{e}");
        let fifo = dir.path().join("fifo.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a path in our own temp dir.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_capped(&fifo).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        let e = read_capped(&link).unwrap_err();
        assert!(e.contains("symlink"), "{e}");
    }
}
