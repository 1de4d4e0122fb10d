//! Old app images in swarm mode (docs/guides/swarm.md): every deploy of a new spec builds an image on the
//! manager, so without pruning its disk fills with one image per edit. After a deploy berth
//! keeps the image the app runs and the newest others up to `revisions_kept` in all (enough to
//! go back to a recent manifest without a rebuild), and removes the rest from this engine; a
//! deleted app's images all go. An image a running task still uses is left for the next prune;
//! one only exited tasks use (Swarm keeps a few as task history) loses its tag, and its layers
//! stay until those tasks are gone and `docker image prune` runs.
//! The tags kept here are the ones the registry keeps too (`runtime::registry_prune`).

use std::collections::HashMap;

use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions};

use super::{fail, Engine, EngineError};
use crate::model::names::AppKey;

impl Engine {
    /// Removes `key`'s images on this engine but `current` (the tag it runs, if any) and the
    /// newest others up to `keep` images in all; answers how many went, and the tags kept.
    pub(in crate::runtime) async fn prune_app_images(
        &self,
        key: &AppKey,
        registry: &str,
        current: Option<&str>,
        keep: usize,
    ) -> Result<(usize, Vec<String>), EngineError> {
        let repo = app_image_repo(registry, &self.instance, key);
        let filters = HashMap::from([("reference".to_string(), vec![format!("{repo}:*")])]);
        let opts = ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let images = self.docker.call("image_list").list_images(Some(opts)).await;
        let images = images.map_err(fail(format!("list the images of {repo}")))?;
        let tagged = images.into_iter().flat_map(|i| {
            let created = i.created;
            let ours = i
                .repo_tags
                .into_iter()
                .filter(|t| t.starts_with(&format!("{repo}:")));
            ours.map(move |t| (t, created)).collect::<Vec<_>>()
        });
        let tagged: Vec<(String, i64)> = tagged.collect();
        let doomed = stale(tagged.clone(), current, keep);
        let kept = (tagged.into_iter().map(|(t, _)| t))
            .filter(|t| !doomed.contains(t))
            .collect();
        let mut removed = 0;
        for tag in doomed {
            // Forced: Swarm keeps exited tasks (its task history) and they would hold every
            // image; a running container's image is still refused.
            let opts = RemoveImageOptions {
                force: true,
                ..Default::default()
            };
            match self
                .docker
                .call("image_rm")
                .remove_image(&tag, Some(opts), None)
                .await
            {
                Ok(_) => removed += 1,
                // In use by a running container (a task shutting down): the next prune takes it.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404 | 409,
                    ..
                }) => {}
                Err(e) => return Err(fail(format!("remove image {tag}"))(e)),
            }
        }
        Ok((removed, kept))
    }
}

/// `<registry>/berth-<instance>/<userid>-<appname>`: the repository of `key`'s images.
pub fn app_image_repo(registry: &str, instance: &str, key: &AppKey) -> String {
    format!("{registry}/berth-{instance}/{}-{}", key.userid, key.appname)
}

/// The tags to remove: all but `current` and the newest others, `keep` images in all.
fn stale(mut tags: Vec<(String, i64)>, current: Option<&str>, keep: usize) -> Vec<String> {
    tags.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let others = keep.saturating_sub(usize::from(current.is_some()));
    tags.into_iter()
        .map(|(t, _)| t)
        .filter(|t| Some(t.as_str()) != current)
        .skip(others)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[(&str, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(t, c)| (t.to_string(), *c)).collect()
    }

    #[test]
    fn keeps_the_running_image_and_the_newest_others_up_to_keep() {
        let all = tags(&[("r/a:1", 10), ("r/a:2", 20), ("r/a:3", 30), ("r/a:4", 40)]);
        // Back on an old manifest: its image stays, with the newest one other.
        assert_eq!(stale(all.clone(), Some("r/a:1"), 2), vec!["r/a:3", "r/a:2"]);
        assert_eq!(stale(all.clone(), Some("r/a:4"), 3), vec!["r/a:1"]);
        assert!(stale(all.clone(), Some("r/a:4"), 20).is_empty());
        assert_eq!(stale(all.clone(), Some("r/a:4"), 1).len(), 3);
        assert_eq!(
            stale(all, None, 0).len(),
            4,
            "a deleted app's images all go"
        );
    }
}
