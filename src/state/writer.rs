//! The manifest write protocol, the one entry point for every writer (the API today; the
//! portal and the CLI use the same): take the state write lock, run the change (which writes
//! through [`ManifestFiles`]), note the revision's source, wake the loop, and in git mode
//! commit the file — all in a task of its own, so a client that hangs up cannot leave a
//! write uncommitted.
//!
//! **Invariant: a write and its commit are one step.** The state lock is held from before the
//! file changes until the commit exists; git pulls and the loop's scan take the same lock, so
//! a fast-forward never lands between the two and a scan never sees half a change.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::model::names::AppKey;
use crate::model::secrets::Keyring;
use crate::reconcile::trigger::{Trigger, Wake};
use crate::state::files::{Current, ManifestFiles, WriteError};
use crate::state::git::GitSync;
use crate::state::history::History;
use crate::state::secrets_key;

/// The right to change manifests, handed to a change only by [`ManifestWriter::write`] (its
/// field is private), under the state lock. The file mutators are `pub(in crate::state)`:
/// outside `state/` this is the only way to reach them.
pub struct Held {
    writer: Arc<ManifestWriter>,
}

impl Held {
    /// Creates a new app's manifest naming `template`, within the quotas.
    pub async fn create(&self, key: &AppKey, template: &str) -> Result<Current, WriteError> {
        self.writer.files.create(key, template).await
    }

    /// Creates a new app's manifest naming `template` with `values` set (`POST /apps`).
    pub async fn create_with_values(
        &self,
        key: &AppKey,
        template: &str,
        values: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<Current, WriteError> {
        let config = &self.writer.files.config;
        let text = crate::state::values_fill::initial_text(config, key, template, values).map_err(
            |e| {
                WriteError::Invalid(format!(
                    "state/apps/{}/{}.toml: {e}",
                    key.userid, key.appname
                ))
            },
        )?;
        self.writer.files.create_text(key, &text).await
    }

    /// Replaces the manifest with `text` if its etag is still `if_match`.
    pub async fn replace(
        &self,
        key: &AppKey,
        text: &str,
        if_match: &str,
    ) -> Result<Current, WriteError> {
        self.writer.files.replace(key, text, if_match).await
    }

    /// Writes `text` (an earlier revision) over the current manifest, whatever its etag.
    pub async fn restore(&self, key: &AppKey, text: &str) -> Result<Current, WriteError> {
        self.writer.files.restore(key, text).await
    }

    /// Removes the manifest.
    pub async fn delete(&self, key: &AppKey) -> Result<(), WriteError> {
        self.writer.files.delete(key).await
    }

    /// The files, for reads inside the change.
    pub fn files(&self) -> &ManifestFiles {
        &self.writer.files
    }
}

/// Writes manifests the one way they are written.
pub struct ManifestWriter {
    files: ManifestFiles,
    history: Arc<History>,
    git: Option<Arc<GitSync>>,
    state_lock: Arc<Mutex<()>>,
    wake: Wake,
}

impl ManifestWriter {
    /// A writer over `files`, noting sources in `history`, committing through `git` when set,
    /// serialised by `state_lock`, waking the loop through `wake`.
    pub fn new(
        files: ManifestFiles,
        history: Arc<History>,
        git: Option<Arc<GitSync>>,
        state_lock: Arc<Mutex<()>>,
        wake: Wake,
    ) -> ManifestWriter {
        ManifestWriter {
            files,
            history,
            git,
            state_lock,
            wake,
        }
    }

    /// The files, for reads and for the change a [`write`](Self::write) runs.
    pub fn files(&self) -> &ManifestFiles {
        &self.files
    }

    /// The state write lock, for a caller that must not race a write (issuing a client key
    /// for an app that is being deleted).
    pub async fn lock(&self) -> OwnedMutexGuard<()> {
        self.state_lock.clone().lock_owned().await
    }

    /// One manifest change by `who`, carried to the end in its own task: under the state
    /// lock, run `change` with the [`Held`] right to write (it returns its answer and the new
    /// etag, none for a delete), note the revision's source (`api:<who>`), wake the loop and
    /// commit in git mode. A change that fails has written nothing, so nothing is committed.
    pub async fn write<T, E, F, Fut>(
        self: &Arc<Self>,
        key: &AppKey,
        who: &str,
        action: &str,
        change: F,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<WriteError> + Send + 'static,
        F: FnOnce(Held) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(T, Option<String>), E>> + Send + 'static,
    {
        let me = self.clone();
        let (key, who, action) = (key.clone(), who.to_string(), action.to_string());
        tokio::spawn(async move {
            let _lock = me.lock().await;
            let held = Held { writer: me.clone() };
            let (answer, etag) = change(held).await?;
            if let Some(etag) = etag {
                me.history.note_source(&key, &etag, format!("api:{who}"));
            }
            let message = format!("berth api: {action} {key} (by {who})");
            me.announce(&[&manifest_file(&key)], &who, &message).await?;
            Ok(answer)
        })
        .await
        .map_err(|e| E::from(WriteError::Task(e)))?
    }

    /// [`write`](Self::write) for a change that leaves a manifest behind; answers with it.
    pub async fn write_file<E, F, Fut>(
        self: &Arc<Self>,
        key: &AppKey,
        who: &str,
        action: &str,
        change: F,
    ) -> Result<Current, E>
    where
        E: From<WriteError> + Send + 'static,
        F: FnOnce(Held) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Current, E>> + Send + 'static,
    {
        let written = |held| async move {
            let c = change(held).await?;
            let etag = c.etag.clone();
            Ok((c, Some(etag)))
        };
        self.write(key, who, action, written).await
    }

    /// Sets one top-level key of `key`'s manifest (`state`, `restart`), keeping the rest of
    /// the file as its author wrote it.
    pub async fn set_field(
        self: &Arc<Self>,
        key: &AppKey,
        who: &str,
        action: &str,
        field: &'static str,
        value: String,
    ) -> Result<Current, WriteError> {
        let doc = move |doc: &mut toml_edit::DocumentMut| doc[field] = toml_edit::value(value);
        self.edit(key, who, action, doc).await
    }

    /// Changes `key`'s manifest through `change` on its TOML document, keeping the rest of
    /// the file (comments, order) as its author wrote it.
    pub async fn edit(
        self: &Arc<Self>,
        key: &AppKey,
        who: &str,
        action: &str,
        change: impl FnOnce(&mut toml_edit::DocumentMut) + Send + 'static,
    ) -> Result<Current, WriteError> {
        let k = key.clone();
        let edit = move |held: Held| async move { held.writer.files.edit(&k, change).await };
        self.write_file(key, who, action, edit).await
    }

    /// [`edit`](Self::edit) for a change that seals values: `change` gets the server's
    /// keyring, read under the state lock. A rotation holds the same lock from before it
    /// makes the next key until the old one is gone, so what `change` seals to is the key
    /// that stays (or the next one, mid-rotation), never one a rotation is deleting.
    pub async fn edit_sealing(
        self: &Arc<Self>,
        key: &AppKey,
        who: &str,
        action: &str,
        change: impl FnOnce(&mut toml_edit::DocumentMut, &Keyring) + Send + 'static,
    ) -> Result<Current, WriteError> {
        let k = key.clone();
        let edit = move |held: Held| async move {
            let files = &held.writer.files;
            let keyring =
                secrets_key::load(&files.config.secrets_key).map_err(WriteError::SecretsKey)?;
            files.edit(&k, |doc| change(doc, &keyring)).await
        };
        self.write_file(key, who, action, edit).await
    }

    /// Renames `old` to `new` by `who` (`state::rename`): the new manifest written with
    /// `renamed_from`, the old one removed, one commit in git mode; then `adopt` moves the
    /// app's records (a failure there is only logged: the loop adopts them on its next pass).
    pub async fn rename(
        self: &Arc<Self>,
        old: &AppKey,
        new: &AppKey,
        who: &str,
        adopt: impl FnOnce() -> Result<(), String> + Send + 'static,
    ) -> Result<Current, WriteError> {
        let (me, who) = (self.clone(), who.to_string());
        let (old, new) = (old.clone(), new.clone());
        tokio::spawn(async move {
            let _lock = me.lock().await;
            let current = me.files.rename(&old, &new).await?;
            me.history.note_source(&new, &current.etag, format!("api:{who}"));
            let files = [&old, &new].map(manifest_file);
            let message = format!("berth api: rename {old} to {} (by {who})", new.appname);
            me.announce(&[&files[0], &files[1]], &who, &message).await?;
            let adopted = tokio::task::spawn_blocking(adopt).await;
            if let Some(e) = adopted.map_or_else(|e| Some(e.to_string()), Result::err) {
                tracing::warn!(app = %new, cause = %e, "cannot move the app's records yet; the loop will");
            }
            Ok(current)
        })
        .await
        .map_err(WriteError::Task)?
    }

    /// Drops `renamed_from` from `key`'s manifest once the loop has taken `old` over, as
    /// berth; the app then gets its container. In git mode one commit, which also records
    /// the old manifest's removal if a rename cut short left it uncommitted.
    pub async fn finish_rename(
        self: &Arc<Self>,
        old: &AppKey,
        key: &AppKey,
    ) -> Result<Current, WriteError> {
        let (me, old, key) = (self.clone(), old.clone(), key.clone());
        tokio::spawn(async move {
            let _lock = me.lock().await;
            let finish = crate::state::rename::finishing(&me.files.config, &key);
            let current = me.files.edit(&key, finish).await?;
            me.history
                .note_source(&key, &current.etag, "api:berth".into());
            let [new_file, old_file] = [&key, &old].map(manifest_file);
            let mut files = vec![new_file.as_str()];
            // A rename cut short may have left the old file's removal uncommitted.
            if let Some(git) = &me.git {
                if git.tracks(&old_file).await {
                    files.push(&old_file);
                }
            }
            let message = format!("berth: finish the rename of {old} to {}", key.appname);
            me.announce(&files, "berth", &message).await?;
            Ok(current)
        })
        .await
        .map_err(WriteError::Task)?
    }

    /// `berth secrets rotate` through the daemon: under the state lock, every manifest's
    /// secrets re-encrypted to a new key, one commit in git mode, then the new key put in
    /// place. Cut short anywhere (a failed commit, a kill), both keys stay and both open, and
    /// the next rotation resumes with the same new key.
    pub async fn rotate_secrets(
        self: &Arc<Self>,
        who: &str,
        config: Arc<crate::model::config::Config>,
        keep_old: bool,
    ) -> Result<crate::state::rotate::Rotated, String> {
        let (me, who) = (self.clone(), who.to_string());
        tokio::spawn(async move {
            let _lock = me.lock().await;
            let mut rotated = crate::state::rotate::reencrypt_all(&me.files, &config).await?;
            let message = format!("berth: rotate the secrets key (by {who})");
            me.announce(&["apps"], &who, &message)
                .await
                .map_err(|e| crate::error_chain::chain(&e))?;
            crate::state::rotate::finish(&config, &mut rotated, keep_old)?;
            Ok(rotated)
        })
        .await
        .map_err(|e| format!("the rotation task ended early: {e}"))?
    }
}

impl ManifestWriter {
    /// After a change made under the state lock: wakes the loop and, in git mode, commits
    /// `files` as `who` (a commit that fails undoes the change: `GitSync::commit_held`).
    async fn announce(&self, files: &[&str], who: &str, message: &str) -> Result<(), WriteError> {
        self.wake.wake(Trigger::ApiWrite);
        match &self.git {
            Some(git) => git
                .commit_held(files, who, message)
                .await
                .map_err(WriteError::Commit),
            None => Ok(()),
        }
    }
}

/// `key`'s manifest, relative to `state/`.
fn manifest_file(key: &AppKey) -> String {
    format!("apps/{}/{}.toml", key.userid, key.appname)
}
