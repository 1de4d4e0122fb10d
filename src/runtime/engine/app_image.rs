//! Workspaces as images (`runtime = "swarm"`, SPEC §12): a bind mount exists on one node only,
//! so an app's image is its template's image with every mount's source copied in at its
//! target, tagged with the spec hash and pushed to the registry every node pulls from. An image
//! whose tag is already here is pushed as it is, never rebuilt: a rollback ships the bytes
//! that ran before. The build context never follows a link: a workspace link to `/etc/shadow`
//! goes in as a link.

use bytes::Bytes;
use futures_util::StreamExt;

use super::{fail, Engine, EngineError};
use crate::model::desired::DesiredApp;

impl Engine {
    /// The image `app` runs in swarm mode, built and pushed to `registry` unless it is there.
    pub(in crate::runtime) async fn ensure_app_image(
        &self,
        app: &DesiredApp,
        registry: &str,
    ) -> Result<String, EngineError> {
        let tag = app_image_tag(registry, &self.instance, app);
        let have = self.docker.call("inspect_image").inspect_image(&tag).await;
        if have.is_err() {
            self.ensure_image(&app.spec.image).await?;
            self.build(app, &tag).await?;
        }
        self.push(&tag).await?;
        Ok(tag)
    }

    async fn build(&self, app: &DesiredApp, tag: &str) -> Result<(), EngineError> {
        let context = build_context(app).map_err(|e| EngineError {
            op: format!("pack the build context of {tag}"),
            source: bollard::errors::Error::IOError { err: e },
        })?;
        let opts = bollard::query_parameters::BuildImageOptions {
            t: Some(tag.to_string()),
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let body = bollard::body_full(Bytes::from(context));
        let mut out = self
            .docker
            .call("build")
            .build_image(opts, None, Some(body));
        while let Some(step) = out.next().await {
            let step = step.map_err(fail(format!("build {tag}")))?;
            if let Some(e) = step.error_detail.and_then(|d| d.message) {
                return Err(failed(format!("build {tag}"), e));
            }
        }
        Ok(())
    }

    async fn push(&self, tag: &str) -> Result<(), EngineError> {
        let (name, version) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
        let opts = bollard::query_parameters::PushImageOptions {
            tag: Some(version.to_string()),
            ..Default::default()
        };
        let mut out = self.docker.call("push").push_image(name, Some(opts), None);
        while let Some(step) = out.next().await {
            let step = step.map_err(fail(format!("push {tag}")))?;
            if let Some(e) = step.error_detail.and_then(|d| d.message) {
                return Err(failed(format!("push {tag}"), e));
            }
        }
        Ok(())
    }
}

/// `<registry>/berth-<instance>/<userid>-<appname>:<spec hash, 32 digits>`.
pub fn app_image_tag(registry: &str, instance: &str, app: &DesiredApp) -> String {
    let hash = &app.hash[..app.hash.len().min(32)];
    format!(
        "{registry}/berth-{instance}/{}-{}:{hash}",
        app.key.userid, app.key.appname
    )
}

fn failed(op: String, message: String) -> EngineError {
    EngineError {
        op,
        source: bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message,
        },
    }
}

/// A tar of `Dockerfile` (`FROM` the template's image, one `COPY` per mount) and each mount's
/// source under `m<i>/`, links kept as links.
fn build_context(app: &DesiredApp) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let mut dockerfile = format!("FROM {}\n", app.spec.image);
    for (i, m) in app.spec.mounts.iter().enumerate() {
        let source = std::path::Path::new(&m.source);
        let inside = format!("m{i}");
        match std::fs::symlink_metadata(source) {
            Ok(md) if md.is_dir() => tar.append_dir_all(&inside, source)?,
            Ok(md) if md.is_file() => tar.append_path_with_name(source, &inside)?,
            // A missing source (a workspace not made yet) ships as an empty directory.
            _ => append_empty_dir(&mut tar, &inside)?,
        }
        dockerfile.push_str(&format!("COPY {inside} {}\n", m.target));
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
    tar.into_inner()
}

fn append_empty_dir(tar: &mut tar::Builder<Vec<u8>>, name: &str) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o755);
    header.set_cksum();
    tar.append_data(&mut header, name, std::io::empty())
}
