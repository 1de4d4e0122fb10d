//! `[git]` in berth.toml: git mode's remote, branch, pull interval and webhook secret.

use std::time::Duration;

use serde::Deserialize;

/// `[git]`: keep `state/` as a clone of `remote` and pull `branch` every `interval` (and on
/// a signed webhook); API writes become commits that are pushed back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitConfig {
    /// What `git clone` accepts: a path or URL.
    pub remote: String,
    /// The branch to follow.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// How often to pull.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Secret for `X-Hub-Signature-256` on `POST /hooks/git`; without it the webhook is off.
    pub webhook_secret: Option<String>,
}

fn default_branch() -> String {
    "main".into()
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}

impl GitConfig {
    /// True for a path on this machine (not `scheme://...` or scp-like `host:path`).
    pub(crate) fn is_local_path(&self) -> bool {
        let r = &self.remote;
        !r.contains("://") && r.find(':').is_none_or(|i| r[..i].contains('/'))
    }

    /// Refuses values that could be read as git options or are plainly wrong.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.remote.is_empty() || self.remote.starts_with('-') {
            return Err(format!("remote {:?} is not a path or URL", self.remote));
        }
        let branch_ok = !self.branch.is_empty()
            && !self.branch.starts_with('-')
            && !self.branch.contains("..")
            && self
                .branch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
        if !branch_ok {
            return Err(format!(
                "branch {:?} is not a plain branch name",
                self.branch
            ));
        }
        if self.interval.is_zero() {
            return Err("interval must be longer than 0s".into());
        }
        if self.webhook_secret.as_deref() == Some("") {
            return Err(
                "webhook_secret must not be empty (leave it out to turn the webhook off)".into(),
            );
        }
        Ok(())
    }
}
