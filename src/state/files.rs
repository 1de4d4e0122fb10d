//! Manifest files on disk: read, validate, and write them atomically. The files stay the
//! single source of truth; every writer reaches this through [`ManifestWriter`]
//! (crate::state::writer::ManifestWriter), which adds the lock, history, commit and wake-up.
//!
//! **Invariants: a manifest is replaced atomically (temp file, fsync, rename, fsync of the
//! directory) and only with text that parses and names an existing template; the read, the
//! etag check and the write happen under one lock, so of two writers holding the same etag
//! exactly one wins.** Temp files start with `.`, which the scanner and watcher ignore.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::model::config::Config;
use crate::model::manifest::{Manifest, MAX_MANIFEST_BYTES};
use crate::model::names::AppKey;
use crate::model::template::Template;
use crate::state::admission::{admit, Refusal};

/// Why a manifest write was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No manifest for this app.
    #[error("app {0} does not exist")]
    NotFound(AppKey),
    /// A manifest already exists.
    #[error("app {0} already exists")]
    Exists(AppKey),
    /// Another change to this app must finish first (a rename under way).
    #[error("{0}")]
    Busy(String),
    /// A quota from berth.toml would be exceeded.
    #[error("{0}")]
    Quota(String),
    /// The new text does not parse or validate; carries file:line:col.
    #[error("{0}")]
    Invalid(String),
    /// The manifest names a template that does not exist or is broken.
    #[error("{0}")]
    UnknownTemplate(String),
    /// `If-Match` did not match the current file.
    #[error("the manifest changed since it was read (etag {current}); read it again and retry")]
    Stale {
        /// The current etag.
        current: String,
    },
    /// A path berth would write is not what it must be (a link, a file where a directory
    /// belongs); berth refuses to write through it.
    #[error("{0}")]
    OddPath(String),
    /// The file system failed on `path` (as users know it).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory, relative to the root.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// A tenancy rule refuses the manifest (docs/guides/tenancy.md); the violation names the rule.
    #[error("{0}")]
    Policy(crate::model::policy::Violation),
    /// The quota count could not scan `state/apps`.
    #[error(transparent)]
    Scan(#[from] crate::state::scan::ScanError),
    /// Git mode could not commit the change, which was undone.
    #[error("cannot commit the change to the state repository, so it was undone")]
    Commit(#[source] crate::state::git::GitError),
    /// The server's secrets key cannot be read, so nothing can be sealed.
    #[error("{0}")]
    SecretsKey(String),
    /// The task carrying the write ended before it did (a panic or shutdown).
    #[error("the write task ended early")]
    Task(#[source] tokio::task::JoinError),
}

/// The etag of a manifest: blake3 of its bytes, hex.
pub fn etag(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// One manifest as read.
#[derive(Debug, Clone)]
pub struct Current {
    /// Its text.
    pub text: String,
    /// Its etag.
    pub etag: String,
}

/// Reads and writes `state/apps/<userid>/<appname>.toml` for the API.
pub struct ManifestFiles {
    /// Paths, templates and quotas.
    pub(in crate::state) config: Arc<Config>,
    /// Serializes every write: reads-then-writes (etag checks, quota counts) must not
    /// interleave. Writes are rare; one lock keeps the reasoning simple.
    lock: Mutex<()>,
}

impl ManifestFiles {
    /// Files under `config`'s state directory.
    pub fn new(config: Arc<Config>) -> ManifestFiles {
        ManifestFiles {
            config,
            lock: Mutex::new(()),
        }
    }

    fn user_dir(&self, key: &AppKey) -> PathBuf {
        self.config.apps_state_dir().join(&key.userid)
    }

    fn path(&self, key: &AppKey) -> PathBuf {
        self.user_dir(key).join(format!("{}.toml", key.appname))
    }

    /// How the file is named in messages: relative to the root, as users know it.
    fn shown(&self, key: &AppKey) -> PathBuf {
        let p = self.path(key);
        p.strip_prefix(&self.config.root)
            .map(Path::to_path_buf)
            .unwrap_or(p)
    }

    /// The current manifest, or `None` when the app has none. Read as the scanner reads it
    /// (no links followed, one hard link, at most 1 MiB): anything else is refused.
    pub fn read(&self, key: &AppKey) -> Result<Option<Current>, WriteError> {
        self.check_user_dir(key)?;
        let path = self.path(key);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&self.shown(key), e)),
            Ok(_) => {}
        }
        let bytes = crate::state::scan::read_capped(&path)
            .map_err(|why| WriteError::OddPath(format!("{}: {why}", self.shown(key).display())))?;
        let etag = etag(&bytes);
        Ok(Some(Current {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            etag,
        }))
    }

    /// Refuses a user directory that is a link (a checkout may hold one) or not a directory:
    /// reading or unlinking through it would reach outside `state/apps`. A missing one is fine.
    fn check_user_dir(&self, key: &AppKey) -> Result<(), WriteError> {
        let dir = self.user_dir(key);
        match std::fs::symlink_metadata(&dir) {
            Ok(md) if md.file_type().is_symlink() || !md.is_dir() => {
                Err(WriteError::OddPath(format!(
                    "{} is not a directory; berth does not follow links",
                    dir.strip_prefix(&self.config.root)
                        .unwrap_or(&dir)
                        .display()
                )))
            }
            _ => Ok(()),
        }
    }

    /// Checks manifest text as if it were at `key`'s path.
    pub fn validate(&self, key: &AppKey, text: &str) -> Result<Manifest, WriteError> {
        let shown = self.shown(key);
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(WriteError::Invalid(format!(
                "{}: larger than {MAX_MANIFEST_BYTES} bytes",
                shown.display()
            )));
        }
        let m = Manifest::parse(&shown, text).map_err(|e| WriteError::Invalid(e.to_string()))?;
        let t = self.template_of(&shown, &m)?;
        crate::model::desired::check_runtime(&m, &t, &self.config)
            .map_err(|e| WriteError::Invalid(format!("{}: {e}", shown.display())))?;
        crate::state::values_fill::check(&self.config, (key, &shown), &t, &m)
            .map_err(WriteError::Invalid)?;
        Ok(m)
    }

    fn template_of(&self, shown: &Path, m: &Manifest) -> Result<Template, WriteError> {
        let Some(id) = m.template_id() else {
            // A built app: no values, hooks or mounts of a template to check against.
            return Ok(crate::model::build::template(
                String::new(),
                m.port.map_or(0, |p| p.0),
                None,
            ));
        };
        Template::load(&self.config, id).map_err(|e| {
            WriteError::UnknownTemplate(format!("{}: template {id}: {e}", shown.display()))
        })
    }

    /// `text` with the template's generated secrets it lacks filled in (docs/guides/templates-and-values.md); a text
    /// that does not parse is returned as it is, for `validate` to refuse.
    fn with_generated(&self, key: &AppKey, text: &str) -> Result<String, WriteError> {
        let shown = self.shown(key);
        let Ok(m) = Manifest::parse(&shown, text) else {
            return Ok(text.to_string());
        };
        let t = self.template_of(&shown, &m)?;
        crate::state::values_fill::fill_generated(&self.config, key, &t, text)
            .map_err(|e| WriteError::Invalid(format!("{}: {e}", shown.display())))
    }

    /// [`validate`](Self::validate), then the policy as the loop would apply it
    /// (`state::admission`), on a blocking thread: it reads the whole state directory.
    /// `stopping` skips the policy: setting `state = "stopped"` must work on an app the policy
    /// refuses, whose container keeps running until then.
    async fn admitted(
        &self,
        key: &AppKey,
        text: &str,
        stopping: bool,
    ) -> Result<Manifest, WriteError> {
        let m = self.validate(key, text)?;
        if stopping {
            return Ok(m);
        }
        let (config, key, text, parsed) = (
            self.config.clone(),
            key.clone(),
            text.to_string(),
            m.clone(),
        );
        tokio::task::spawn_blocking(move || admit(&config, &key, parsed, &text))
            .await
            .map_err(WriteError::Task)?
            .map_err(|e| match e {
                Refusal::Policy(v) => WriteError::Policy(v),
                Refusal::Scan(e) => WriteError::Scan(e),
            })?;
        Ok(m)
    }

    /// Creates a new app's manifest naming `template`, within the quotas.
    pub(in crate::state) async fn create(
        &self,
        key: &AppKey,
        template: &str,
    ) -> Result<Current, WriteError> {
        let text = format!("# created through the berth API\ntemplate = \"{template}\"\n");
        self.create_text(key, &text).await
    }

    /// Creates a new app's manifest from `text` (a new app's first version), within the quotas.
    pub(in crate::state) async fn create_text(
        &self,
        key: &AppKey,
        text: &str,
    ) -> Result<Current, WriteError> {
        let _guard = self.lock.lock().await;
        if self.read(key)?.is_some() {
            return Err(WriteError::Exists(key.clone()));
        }
        let text = self.with_generated(key, text)?;
        self.admitted(key, &text, false).await?;
        self.check_quota(key)?;
        self.write(key, &text).await
    }

    /// Counts manifests on disk the way the reconciler does (path order, same files); a name
    /// that a rename under way is taking over is not free either.
    fn check_quota(&self, key: &AppKey) -> Result<(), WriteError> {
        let found = crate::state::scan::scan(&self.config.apps_state_dir(), &self.config.root)?;
        crate::state::rename::check_not_taken_over(&found, key)?;
        let total = found.manifests.len();
        let mine = found
            .manifests
            .keys()
            .filter(|k| k.userid == key.userid)
            .count();
        if mine >= self.config.max_apps_per_user {
            return Err(WriteError::Quota(format!(
                "user {} already has {mine} apps; the limit is max_apps_per_user = {}",
                key.userid, self.config.max_apps_per_user
            )));
        }
        if total >= self.config.max_total_apps {
            return Err(WriteError::Quota(format!(
                "the server already has {total} apps; the limit is max_total_apps = {}",
                self.config.max_total_apps
            )));
        }
        Ok(())
    }

    /// Replaces the manifest with `text` if its etag is still `if_match`.
    pub(in crate::state) async fn replace(
        &self,
        key: &AppKey,
        text: &str,
        if_match: &str,
    ) -> Result<Current, WriteError> {
        let _guard = self.lock.lock().await;
        let current = self
            .read(key)?
            .ok_or_else(|| WriteError::NotFound(key.clone()))?;
        if current.etag != if_match {
            return Err(WriteError::Stale {
                current: current.etag,
            });
        }
        let text = self.with_generated(key, text)?;
        self.admitted(key, &text, false).await?;
        self.write(key, &text).await
    }

    /// Writes `text` (an earlier revision) over the current manifest, whatever its etag.
    pub(in crate::state) async fn restore(
        &self,
        key: &AppKey,
        text: &str,
    ) -> Result<Current, WriteError> {
        let _guard = self.lock.lock().await;
        if self.read(key)?.is_none() {
            return Err(WriteError::NotFound(key.clone()));
        }
        self.admitted(key, text, false).await?;
        self.write(key, text).await
    }

    /// Changes top-level keys of the manifest, keeping the user's comments and layout.
    pub(in crate::state) async fn edit(
        &self,
        key: &AppKey,
        change: impl FnOnce(&mut toml_edit::DocumentMut),
    ) -> Result<Current, WriteError> {
        let _guard = self.lock.lock().await;
        let current = self
            .read(key)?
            .ok_or_else(|| WriteError::NotFound(key.clone()))?;
        let mut doc: toml_edit::DocumentMut = current.text.parse().map_err(|e| {
            WriteError::Invalid(format!(
                "{}: the current manifest does not parse, fix it first (PUT .../manifest): {e}",
                self.shown(key).display()
            ))
        })?;
        change(&mut doc);
        let text = doc.to_string();
        if text == current.text {
            return Ok(current);
        }
        let stopping = doc.get("state").and_then(|v| v.as_str()) == Some("stopped");
        let text = self.with_generated(key, &text)?;
        self.admitted(key, &text, stopping).await?;
        self.write(key, &text).await
    }

    /// Moves `old`'s manifest to `new`, with `renamed_from` added (a rename): the new file is
    /// whole on disk before the old one goes. The text was admitted as `old`'s and a rename
    /// changes no rule's answer, so neither the policy nor the quotas are asked again.
    pub(in crate::state) async fn rename(
        &self,
        old: &AppKey,
        new: &AppKey,
    ) -> Result<Current, WriteError> {
        let written = {
            let _guard = self.lock.lock().await;
            let current = self
                .read(old)?
                .ok_or_else(|| WriteError::NotFound(old.clone()))?;
            if self.read(new)?.is_some() {
                return Err(WriteError::Exists(new.clone()));
            }
            let text =
                crate::state::rename::with_renamed_from(&self.shown(old), &current.text, old)?;
            self.validate(new, &text)?;
            self.write(new, &text).await?
        };
        self.delete(old).await?;
        Ok(written)
    }

    /// Removes the manifest, even one berth will not read (too large, hard-linked): its
    /// owner must be able to get rid of it. The user directory must be a real one.
    pub(in crate::state) async fn delete(&self, key: &AppKey) -> Result<(), WriteError> {
        let _guard = self.lock.lock().await;
        self.check_user_dir(key)?;
        match std::fs::symlink_metadata(self.path(key)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WriteError::NotFound(key.clone()))
            }
            Err(e) => return Err(io(&self.shown(key), e)),
            Ok(_) => {}
        }
        let (path, dir, shown) = (self.path(key), self.user_dir(key), self.shown(key));
        blocking(move || {
            std::fs::remove_file(&path)
                .and_then(|()| sync_dir(&dir))
                .map_err(|e| io(&shown, e))
        })
        .await
    }

    /// Writes on a blocking thread: the fsyncs must not stall the async workers.
    async fn write(&self, key: &AppKey, text: &str) -> Result<Current, WriteError> {
        let (dir, path, shown) = (self.user_dir(key), self.path(key), self.shown(key));
        let (appname, text) = (key.appname.clone(), text.to_string());
        blocking(move || write_atomic(&dir, &path, &shown, &appname, &text)).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WriteError> + Send + 'static,
) -> Result<T, WriteError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(WriteError::Task)?
}

/// Replaces `path` (in `dir`, named `shown` in messages) with `text`: temp file, fsync,
/// rename, fsync of the directory.
fn write_atomic(
    dir: &Path,
    path: &Path,
    shown: &Path,
    appname: &str,
    text: &str,
) -> Result<Current, WriteError> {
    let made_dir = match std::fs::symlink_metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(WriteError::OddPath(format!(
                "{} is not a directory; berth does not write through links",
                dir.display()
            )))
        }
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io(shown, e))?;
            true
        }
        Err(e) => return Err(io(shown, e)),
    };
    // A fresh random name, created exclusively: a planted file or symlink of that name
    // (state/ may be a git checkout anyone can push to) makes the write fail instead of
    // writing through it. The leading '.' keeps the scanner and watcher away.
    let tmp = dir.join(format!(
        ".{appname}.toml.{}.tmp",
        crate::store::tokens::new_key_id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        if made_dir {
            let _ = std::fs::remove_dir(dir); // only if still empty: a full disk leaves nothing
        }
        return Err(io(shown, e));
    }
    Ok(Current {
        text: text.to_string(),
        etag: etag(text.as_bytes()),
    })
}

fn io(shown: &Path, e: std::io::Error) -> WriteError {
    WriteError::Io {
        path: shown.to_path_buf(),
        source: e,
    }
}

/// Makes a rename or unlink in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
