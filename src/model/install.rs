//! A template's shared dependency install (docs/guides/templates-and-values.md): `[install]` in template.toml names a
//! command, the template files it reads and what it produces. berth runs it in a one-off
//! container of the template's own image (so the server needs only Docker), once per version
//! of its inputs, into `shared/<templateId>/`, and apps mount the result read-only. This module
//! is the declaration and the version; running it is `runtime::install`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// `[install]` as a template declares it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallDecl {
    /// Run in the install directory (`/install`), with the inputs copied into it.
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// Template files the install reads (copied to `/install` by file name); their contents
    /// name the install's version.
    #[schemars(length(min = 1), schema_with = "crate::model::schema::template_paths")]
    pub inputs: Vec<String>,
    /// What the command leaves in `/install` (`node_modules`): `shared/<id>/<output>` points at
    /// the current version's. A plain name.
    #[schemars(regex(pattern = "^[^./][^/]*$"))]
    pub output: String,
    /// The image to run it in; default: the template's (after berth.toml's override).
    #[serde(default)]
    pub image: Option<String>,
}

/// Where the command runs inside the install container.
pub const WORKDIR: &str = "/install";

impl InstallDecl {
    /// The declaration checked: a command, inputs inside the template, a plain output name.
    pub fn check(&self) -> Result<(), String> {
        if self.command.is_empty() {
            return Err("[install] command must not be empty".into());
        }
        if self.inputs.is_empty() {
            return Err("[install] needs inputs (the files whose contents name a version)".into());
        }
        for rel in &self.inputs {
            let ok = !rel.starts_with('/') && rel.split('/').all(|c| !c.is_empty() && c != "..");
            if !ok {
                return Err(format!(
                    "[install] input {rel:?} must be a relative path inside the template"
                ));
            }
        }
        let o = &self.output;
        let ok = !o.is_empty() && !o.starts_with('.') && !o.contains('/') && o != "..";
        match ok {
            true => Ok(()),
            false => Err(format!(
                "[install] output {o:?} must be a plain name (node_modules)"
            )),
        }
    }

    /// The version of an install: 16 hex digits of a blake3 over the command, the image it
    /// runs in (`image`, the template's after berth.toml's override, unless `[install]` names
    /// its own: a new image means new native builds) and the inputs under `dir` by name and
    /// content; and the inputs' contents by file name.
    pub fn version(
        &self,
        dir: &Path,
        image: &str,
    ) -> Result<(String, BTreeMap<String, Vec<u8>>), String> {
        let mut h = blake3::Hasher::new();
        h.update(self.command.join("\0").as_bytes()).update(&[1]);
        h.update(self.image.as_deref().unwrap_or(image).as_bytes())
            .update(&[1]);
        let mut files = BTreeMap::new();
        for rel in &self.inputs {
            let bytes = std::fs::read(dir.join(rel))
                .map_err(|e| format!("[install] input {rel:?}: cannot read: {e}"))?;
            h.update(rel.as_bytes())
                .update(&[0])
                .update(&bytes)
                .update(&[1]);
            let name = rel.rsplit('/').next().unwrap_or(rel).to_string();
            files.insert(name, bytes);
        }
        Ok((h.finalize().to_hex()[..16].to_string(), files))
    }

    /// A mount source of the shared install (`{shared_dir}/<output>...`) pinned to
    /// `version`'s own directory, so a container mounts exactly the install its spec names
    /// (and a new version changes the spec): other sources are returned as they are.
    pub fn pinned_source(&self, source: &str, version: &str) -> String {
        let shared = format!("{{shared_dir}}/{}", self.output);
        match source.strip_prefix(&shared) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                format!("{{shared_dir}}/.installs/{version}/{}{rest}", self.output)
            }
            _ => source.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl() -> InstallDecl {
        InstallDecl {
            command: vec!["npm".into(), "ci".into()],
            inputs: vec![
                "files/package.json".into(),
                "files/package-lock.json".into(),
            ],
            output: "node_modules".into(),
            image: None,
        }
    }

    #[test]
    fn the_version_follows_the_inputs_and_the_declaration_is_checked() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("files")).unwrap();
        std::fs::write(d.path().join("files/package.json"), "{}").unwrap();
        std::fs::write(d.path().join("files/package-lock.json"), "v1").unwrap();
        let (v1, files) = decl().version(d.path(), "img:1").unwrap();
        assert_eq!(v1.len(), 16);
        assert_eq!(files["package-lock.json"], b"v1");
        assert_eq!(decl().version(d.path(), "img:1").unwrap().0, v1, "stable");
        std::fs::write(d.path().join("files/package-lock.json"), "v2").unwrap();
        assert_ne!(decl().version(d.path(), "img:1").unwrap().0, v1);
        let v2 = decl().version(d.path(), "img:1").unwrap().0;
        assert_ne!(
            decl().version(d.path(), "img:2").unwrap().0,
            v2,
            "the image is part of it"
        );
        let pinned = decl().pinned_source("{shared_dir}/node_modules", &v2);
        assert_eq!(
            pinned,
            format!("{{shared_dir}}/.installs/{v2}/node_modules")
        );
        assert_eq!(
            decl().pinned_source("{shared_dir}/node_modulesx", &v2),
            "{shared_dir}/node_modulesx"
        );
        assert_eq!(decl().pinned_source("{app_dir}", &v2), "{app_dir}");
        decl().check().unwrap();
        let mut bad = decl();
        bad.inputs = vec!["../x".into()];
        assert!(bad.check().unwrap_err().contains("inside the template"));
        let mut bad = decl();
        bad.output = "../x".into();
        assert!(bad.check().unwrap_err().contains("plain name"));
        let mut bad = decl();
        bad.command.clear();
        assert!(bad.check().is_err());
    }
}
