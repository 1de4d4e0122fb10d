//! An app's old images in the registry (docs/guides/swarm.md): after each deploy, the registry keeps the
//! tags kept on the manager (the image the app runs and the newest others up to
//! `revisions_kept`) and loses the rest; a deleted app's all go. A manifest is deleted by
//! digest, which takes every tag on it, so a digest a kept tag or the running image points at
//! is never deleted (two specs that differ only in what the image does not hold, such as
//! `env`, build the same image). A failure is logged, and the next deploy tries again.

use std::collections::BTreeSet;

use tracing::{info, warn};

use crate::model::names::AppKey;
use crate::runtime::engine::app_image_repo;
use crate::runtime::executor::Executor;
use crate::runtime::registry_api::{RegistryApi, RegistryApiError};

impl Executor {
    /// Deletes from `registry` the manifests of `key`'s tags not in `kept` (full references)
    /// and not the one `running` (`tag@digest`) points at.
    pub(in crate::runtime) async fn prune_registry(
        &self,
        key: &AppKey,
        registry: &str,
        kept: &[String],
        running: Option<&str>,
    ) {
        let repo = app_image_repo(registry, &self.config().instance, key);
        let path = repo.strip_prefix(&format!("{registry}/")).unwrap_or(&repo);
        let api = RegistryApi::new(registry, self.engine().registry_user());
        let kept: BTreeSet<String> = (kept.iter())
            .filter_map(|t| t.strip_prefix(&format!("{repo}:")))
            .map(str::to_string)
            .collect();
        let pinned = running.and_then(|r| r.split_once('@')).map(|(_, d)| d);
        match delete_old(&api, path, &kept, pinned).await {
            Ok(0) => {}
            Ok(n) => info!(app = %key, deleted = n, "swarm: old images deleted from the registry"),
            Err(e) => {
                warn!(app = %key, cause = %e, "swarm: cannot prune the registry's old images")
            }
        }
    }
}

/// Deletes `path`'s manifests but those of `kept` tags and `pinned`; answers how many went.
async fn delete_old(
    api: &RegistryApi,
    path: &str,
    kept: &BTreeSet<String>,
    pinned: Option<&str>,
) -> Result<usize, RegistryApiError> {
    let mut tags = Vec::new();
    for tag in api.tags(path).await? {
        let digest = api.digest(path, &tag).await?;
        tags.push((tag, digest));
    }
    let doomed = doomed(&tags, kept, pinned);
    for digest in &doomed {
        api.delete(path, digest).await?;
    }
    Ok(doomed.len())
}

/// The digests to delete: those of tags not kept, but none a kept tag or `pinned` shares.
fn doomed(
    tags: &[(String, Option<String>)],
    kept: &BTreeSet<String>,
    pinned: Option<&str>,
) -> BTreeSet<String> {
    let mut safe: BTreeSet<&str> = pinned.into_iter().collect();
    for (tag, digest) in tags {
        if let (true, Some(d)) = (kept.contains(tag), digest) {
            safe.insert(d);
        }
    }
    (tags.iter())
        .filter(|(tag, _)| !kept.contains(tag))
        .filter_map(|(_, d)| d.as_deref())
        .filter(|d| !safe.contains(d))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        let digest = |d: &str| (!d.is_empty()).then(|| d.to_string());
        list.iter()
            .map(|(t, d)| (t.to_string(), digest(d)))
            .collect()
    }

    fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tags_not_kept_go_by_digest() {
        let all = tags(&[("a", "sha256:1"), ("b", "sha256:2"), ("c", "sha256:3")]);
        assert_eq!(
            doomed(&all, &set(&["c"]), None),
            set(&["sha256:1", "sha256:2"])
        );
        assert_eq!(
            doomed(&all, &set(&[]), None).len(),
            3,
            "a deleted app's all go"
        );
    }

    #[test]
    fn a_digest_a_kept_tag_or_the_running_image_shares_is_never_deleted() {
        // b and c are one image (specs that differ only in env): keeping c keeps b's digest.
        let all = tags(&[("a", "sha256:1"), ("b", "sha256:2"), ("c", "sha256:2")]);
        assert_eq!(doomed(&all, &set(&["c"]), None), set(&["sha256:1"]));
        // The running image's digest, though its tag was not kept here.
        assert!(doomed(&all, &set(&[]), Some("sha256:1")).contains("sha256:2"));
        assert!(!doomed(&all, &set(&[]), Some("sha256:1")).contains("sha256:1"));
        // A tag the registry no longer resolves is skipped.
        assert!(doomed(&tags(&[("x", "")]), &set(&[]), None).is_empty());
    }
}
