//! Workspaces as images (`runtime = "swarm"`, docs/guides/swarm.md): a bind mount exists on one node only,
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
    /// The image `app` runs in swarm mode, pinned by digest (`<tag>@sha256:...`), so every
    /// node runs the same bytes. A tag the registry has is used as it is: never rebuilt, never
    /// pushed over (a rollback runs what ran before). Otherwise it is built (unless this
    /// engine has it) and pushed.
    pub(in crate::runtime) async fn ensure_app_image(
        &self,
        app: &DesiredApp,
        registry: &str,
    ) -> Result<String, EngineError> {
        let tag = app_image_tag(registry, &self.instance, app);
        if let Some(digest) = self.registry_digest(&tag).await {
            return Ok(format!("{tag}@{digest}"));
        }
        let have = self.docker.call("inspect_image").inspect_image(&tag).await;
        if have.is_err() {
            self.ensure_image(&app.spec.image).await?;
            self.build(app, &tag).await?;
        }
        self.push(&tag).await?;
        match self.registry_digest(&tag).await {
            Some(digest) => Ok(format!("{tag}@{digest}")),
            None => Err(failed(
                format!("push {tag}"),
                "the registry does not show the pushed image".into(),
            )),
        }
    }

    /// The digest `registry` holds under `tag`, as this engine reads it there.
    async fn registry_digest(&self, tag: &str) -> Option<String> {
        let found = self
            .docker
            .call("distribution_inspect")
            .inspect_registry_image(tag, self.registry_auth.clone())
            .await;
        found.ok().and_then(|d| d.descriptor.digest)
    }

    async fn build(&self, app: &DesiredApp, tag: &str) -> Result<(), EngineError> {
        let packed = {
            let app = app.clone();
            tokio::task::spawn_blocking(move || build_context(&app)).await
        };
        let context = packed
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| EngineError {
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
        let mut out =
            self.docker
                .call("push")
                .push_image(name, Some(opts), self.registry_auth.clone());
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
    let repo = super::image_prune::app_image_repo(registry, instance, &app.key);
    format!("{repo}:{hash}")
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

/// Most bytes of files one build context may hold (the tar is made in memory).
const MAX_CONTEXT: u64 = 512 << 20;

/// A tar of `Dockerfile` (`FROM` the template's image, one `COPY` per mount) and each mount's
/// source under `m<i>/`. Walked without following any link: a link goes in as a link, a file
/// is opened with `O_NOFOLLOW`, and sockets, FIFOs and devices are left out.
fn build_context(app: &DesiredApp) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut budget = MAX_CONTEXT;
    let mut dockerfile = format!("FROM {}\n", app.spec.image);
    for (i, m) in app.spec.mounts.iter().enumerate() {
        let inside = format!("m{i}");
        let source = std::path::Path::new(&m.source);
        match std::fs::symlink_metadata(source) {
            Ok(md) if md.is_dir() => append_tree(&mut tar, source, &inside, &mut budget)?,
            Ok(md) if md.is_file() => append_file(&mut tar, source, &inside, &mut budget)?,
            Ok(_) => return Err(odd(source, "is a link or not a file or directory")),
            // A missing source (a workspace not made yet) ships as an empty directory.
            Err(_) => append_dir(&mut tar, &inside, 0o755)?,
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

fn odd(path: &std::path::Path, what: &str) -> std::io::Error {
    std::io::Error::other(format!("{} {what}", path.display()))
}

fn append_tree(
    tar: &mut tar::Builder<Vec<u8>>,
    dir: &std::path::Path,
    inside: &str,
    budget: &mut u64,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::symlink_metadata(dir)?;
    if !md.is_dir() {
        return Err(odd(dir, "changed while it was read"));
    }
    append_dir(tar, inside, md.permissions().mode())?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let (path, name) = (
            e.path(),
            format!("{inside}/{}", e.file_name().to_string_lossy()),
        );
        let kind = e.file_type()?;
        if kind.is_symlink() {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            tar.append_link(&mut header, &name, std::fs::read_link(&path)?)?;
        } else if kind.is_dir() {
            append_tree(tar, &path, &name, budget)?;
        } else if kind.is_file() {
            append_file(tar, &path, &name, budget)?;
        }
    }
    Ok(())
}

fn append_file(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &std::path::Path,
    name: &str,
    budget: &mut u64,
) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let md = file.metadata()?;
    if !md.is_file() {
        return Err(odd(path, "changed while it was read"));
    }
    *budget = budget.checked_sub(md.len()).ok_or_else(|| {
        odd(
            path,
            &format!(
                "makes the build context larger than {} MiB",
                MAX_CONTEXT >> 20
            ),
        )
    })?;
    let mut header = tar::Header::new_gnu();
    header.set_size(md.len());
    header.set_mode(md.permissions().mode() & 0o777);
    header.set_cksum();
    tar.append_data(&mut header, name, std::io::Read::take(file, md.len()))
}

fn append_dir(tar: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(mode & 0o777);
    header.set_cksum();
    tar.append_data(&mut header, name, std::io::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar: &[u8]) -> Vec<(String, tar::EntryType, u32)> {
        let mut archive = tar::Archive::new(tar);
        let all = archive.entries().unwrap().map(|e| {
            let e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().to_string();
            (path, e.header().entry_type(), e.header().mode().unwrap())
        });
        all.collect()
    }

    #[test]
    fn a_workspace_goes_in_with_links_as_links_and_without_sockets_or_setuid_bits() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w");
        std::fs::create_dir_all(w.join("sub")).unwrap();
        std::fs::write(w.join("sub/a.txt"), "a").unwrap();
        std::fs::write(w.join("run"), "x").unwrap();
        std::fs::set_permissions(w.join("run"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", w.join("shadow")).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(w.join("sock")).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut budget = MAX_CONTEXT;
        append_tree(&mut tar, &w, "m0", &mut budget).unwrap();
        let got = entries(&tar.into_inner().unwrap());
        let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["m0", "m0/run", "m0/shadow", "m0/sub", "m0/sub/a.txt"]
        );
        assert_eq!(
            got[2].1,
            tar::EntryType::Symlink,
            "the link is a link, not /etc/shadow"
        );
        assert_eq!(got[1].2, 0o755, "no setuid bit ships");
        let mut small = 0;
        let e = append_tree(&mut tar::Builder::new(Vec::new()), &w, "m0", &mut small);
        assert!(e.unwrap_err().to_string().contains("larger than"));
    }
}
