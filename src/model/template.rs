//! Templates (docs/reference/files-on-disk.md): `templates/<id>/template.toml` plus optional hooks, loaded and
//! validated, with the per-template image override from berth.toml applied.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::config::Config;
use crate::model::health::HealthSettings;
use crate::model::install::InstallDecl;
use crate::model::manifest::{check_template_id, Port};
use crate::model::resources::ResourceOverrides;
use crate::model::source_error::SourceError;
use crate::model::values::{ValueDecl, ValueKind};
use crate::model::volumes::VolumeDecl;

/// A template's `template.toml` (docs/reference/files-on-disk.md): the image, command, port, mounts, health check,
/// values, volumes and install of every app made from `templates/<id>/`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "berth template.toml")]
struct TemplateFile {
    /// Image to run; berth.toml's `[templates.<id>] image` overrides it. May use `{values.*}`.
    #[schemars(regex(pattern = "\\S"))]
    image: String,
    /// Container command; empty means the image's own. May use non-secret `{values.*}`.
    #[serde(default)]
    command: Vec<String>,
    /// Working directory inside the container.
    workdir: Option<String>,
    /// Default container port (a manifest's `port` wins).
    port: Port,
    /// Limits used when neither the manifest nor berth.toml set them.
    #[serde(default)]
    defaults: ResourceOverrides,
    /// Bind mounts; each target once.
    #[serde(default)]
    mounts: Vec<MountTemplate>,
    /// Template files that are part of every app's spec: editing one recreates every app.
    #[serde(default)]
    #[schemars(schema_with = "crate::model::schema::template_paths")]
    spec_files: Vec<String>,
    /// The check new containers must pass (a manifest's `[health]` overrides it field by field).
    health: Option<HealthSettings>,
    /// Environment every app gets (a manifest's `[env]` wins); may use `{values.*}`.
    #[serde(default)]
    #[schemars(schema_with = "crate::model::schema::env_map")]
    env: BTreeMap<String, String>,
    /// What an app may or must set under `[values]` (docs/guides/templates-and-values.md), by name.
    #[serde(default)]
    #[schemars(schema_with = "crate::model::schema::value_decls")]
    values: BTreeMap<String, ValueDecl>,
    /// Named Docker volumes every app gets, kept across deploys and deletes; names and targets
    /// unique.
    #[serde(default)]
    volumes: Vec<VolumeDecl>,
    /// The shared dependency install, run in a one-off container.
    install: Option<InstallDecl>,
    /// How an app's data is copied for a backup and put back (default with `[[volumes]]`:
    /// `kind = "volume"`).
    backup: Option<crate::model::backup::BackupMethod>,
}

/// template.toml's schema, from `generator`'s settings.
pub fn file_schema(generator: schemars::SchemaGenerator) -> schemars::Schema {
    generator.into_root_schema_for::<TemplateFile>()
}

/// A mount before its placeholders are filled in for one app.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MountTemplate {
    /// Host path; absolute, or starting with `{app_dir}`, `{shared_dir}` or `{template_dir}`.
    #[schemars(schema_with = "crate::model::schema::mount_source")]
    pub source: String,
    /// Absolute path inside the container.
    #[schemars(schema_with = "crate::model::schema::container_path")]
    pub target: String,
    /// Mounted read-only when true (shared `node_modules`).
    #[serde(default)]
    pub read_only: bool,
}

/// The three hook points of docs/reference/reconcile-rules.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookKind {
    /// Before the first container of an app is created.
    PreCreate,
    /// Before a container is recreated because its spec changed.
    PreDeploy,
    /// Before an app's container is removed because its manifest is gone.
    PreDelete,
}

impl HookKind {
    /// The file name under `hooks/`.
    pub fn file_name(self) -> &'static str {
        match self {
            HookKind::PreCreate => "pre-create",
            HookKind::PreDeploy => "pre-deploy",
            HookKind::PreDelete => "pre-delete",
        }
    }
}

/// A loaded, validated template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Directory name under `templates/`; label `paas.template`.
    pub id: String,
    /// `templates/<id>`, absolute; hooks run here and `{template_dir}` points here.
    pub dir: PathBuf,
    /// The image after berth.toml's override.
    pub image: String,
    /// Container command; empty means the image's own.
    pub command: Vec<String>,
    /// Working directory inside the container.
    pub workdir: Option<String>,
    /// Default container port.
    pub port: u16,
    /// Limits used when neither the manifest nor berth.toml set them.
    pub defaults: ResourceOverrides,
    /// Mounts with placeholders still in them.
    pub mounts: Vec<MountTemplate>,
    /// Executable hooks present, by kind.
    pub hooks: BTreeMap<HookKind, PathBuf>,
    /// blake3 (hex) of each file named in `spec_files`, by its path in the template. They are
    /// part of every app's spec, so editing one (a lockfile) rolls every app of the template
    /// through pre-deploy and a recreate.
    pub spec_files: BTreeMap<String, String>,
    /// `[health]`: the check new containers of its apps must pass (a manifest may override it).
    pub health: Option<HealthSettings>,
    /// `[env]`: environment every app gets (a manifest's own `[env]` wins); may use values.
    pub env: BTreeMap<String, String>,
    /// `[values.*]`: what an app may or must set (docs/guides/templates-and-values.md).
    pub values: BTreeMap<String, ValueDecl>,
    /// `[[volumes]]`: named volumes every app gets.
    pub volumes: Vec<VolumeDecl>,
    /// `[install]`: the shared dependency install, run in a container.
    pub install: Option<InstallDecl>,
    /// The version the install's inputs and image name now; its mounts are pinned to it.
    pub install_version: Option<String>,
    /// A built app's build (`[build]`): its image is built, never pulled. None for a template.
    pub build: Option<crate::model::build::BuildSpec>,
    /// How its apps' data is backed up; none for a template without volumes or `[backup]`.
    pub backup: Option<crate::model::backup::BackupMethod>,
}

/// Where one app's placeholders point.
pub struct MountDirs<'a> {
    /// `{app_dir}`: the app's workspace.
    pub app_dir: &'a Path,
    /// `{shared_dir}`: `shared/<templateId>`.
    pub shared_dir: &'a Path,
}

impl Template {
    /// Loads `templates_dir/<id>` and applies `config`'s override for it.
    pub fn load(config: &Config, id: &str) -> Result<Template, SourceError> {
        let dir = config.templates_dir.join(id);
        let path = dir.join("template.toml");
        check_template_id(id).map_err(|m| SourceError::whole_file(&dir, m))?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                format!("template {id:?} not found (no template.toml)")
            } else {
                format!("cannot read: {e}")
            };
            SourceError::whole_file(&path, why)
        })?;
        let file: TemplateFile =
            toml::from_str(&text).map_err(|e| SourceError::from_toml(&path, &text, &e))?;
        let bad = |m: String| SourceError::whole_file(&path, m);
        if file.image.trim().is_empty() {
            return Err(bad("image must not be empty".into()));
        }
        check_mounts(&file.mounts).map_err(bad)?;
        check_parts(&file).map_err(bad)?;
        let hooks = find_hooks(&dir)?;
        let spec_files = hash_spec_files(&dir, &file.spec_files).map_err(bad)?;
        let image = config
            .templates
            .get(id)
            .and_then(|o| o.image.clone())
            .unwrap_or(file.image);
        let install_version = match &file.install {
            Some(i) => Some(i.version(&dir, &image).map_err(bad)?.0),
            None => None,
        };
        let backup =
            crate::model::backup::method_of(file.backup.as_ref(), !file.volumes.is_empty());
        Ok(Template {
            id: id.to_string(),
            dir,
            image,
            command: file.command,
            workdir: file.workdir,
            port: file.port.0,
            defaults: file.defaults,
            mounts: file.mounts,
            hooks,
            spec_files,
            health: file.health,
            env: file.env,
            values: file.values,
            volumes: file.volumes,
            install: file.install,
            install_version,
            build: None,
            backup,
        })
    }

    /// Fills `{app_dir}`, `{shared_dir}` and `{template_dir}` for one app.
    pub fn fill_mount_source(&self, source: &str, dirs: &MountDirs<'_>) -> String {
        let pinned = match (&self.install, &self.install_version) {
            (Some(i), Some(v)) => i.pinned_source(source, v),
            _ => source.to_string(),
        };
        pinned
            .replace("{app_dir}", &dirs.app_dir.to_string_lossy())
            .replace("{shared_dir}", &dirs.shared_dir.to_string_lossy())
            .replace("{template_dir}", &self.dir.to_string_lossy())
    }
}

/// A mount must land on an absolute path, and its source must be absolute or start with a
/// known placeholder, so a template can never bind a path relative to wherever berth runs.
fn check_mount(m: &MountTemplate) -> Result<(), String> {
    const PLACEHOLDERS: [&str; 3] = ["{app_dir}", "{shared_dir}", "{template_dir}"];
    let target = without_values(&m.target);
    if !target.starts_with('/')
        || target.contains(['{', '}', ':'])
        || target.split('/').any(|c| c == "..")
    {
        return Err(format!(
            "mount target {:?} must be an absolute path without ':' or '..'",
            m.target
        ));
    }
    let mut rest = without_values(&m.source);
    for p in PLACEHOLDERS {
        rest = rest.replace(p, "");
    }
    if rest.contains('{') || rest.contains('}') {
        return Err(format!(
            "mount source {:?} has an unknown placeholder; known: {{app_dir}}, {{shared_dir}}, {{template_dir}}",
            m.source
        ));
    }
    let anchored =
        m.source.starts_with('/') || PLACEHOLDERS.iter().any(|p| m.source.starts_with(p));
    if !anchored || m.source.contains(':') || m.source.split('/').any(|c| c == "..") {
        return Err(format!(
            "mount source {:?} must start with '/' or a placeholder and contain no ':' or '..'",
            m.source
        ));
    }
    Ok(())
}

/// `text` with every `{values.*}` placeholder taken out (what is left must be a valid path).
fn without_values(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("{values.") {
        out.push_str(&rest[..at]);
        match rest[at..].find('}') {
            Some(end) => rest = &rest[at + end + 1..],
            None => return format!("{out}{{"),
        }
    }
    out + rest
}

/// Values, volumes and the install, each valid, and every `{values.*}` placeholder in the
/// image, command and env declared.
fn check_parts(file: &TemplateFile) -> Result<(), String> {
    crate::model::values::check_decls(&file.values)?;
    crate::model::volumes::check_decls(&file.volumes)?;
    if let Some(i) = &file.install {
        i.check()?;
    }
    for (name, v) in &file.env {
        crate::model::manifest::check_env_name(name).map_err(|e| format!("[env] {e}"))?;
        check_placeholders(v, &file.values)?;
    }
    for text in std::iter::once(&file.image).chain(&file.command) {
        check_placeholders(text, &file.values)?;
    }
    for m in &file.mounts {
        check_placeholders(&m.source, &file.values)?;
        check_placeholders(&m.target, &file.values)?;
        crate::model::values::check_path_values(&file.values, &[&m.source, &m.target])
            .map_err(|e| format!("mount {:?}: {e}", m.target))?;
    }
    // Only values from a closed set may shape the command or the image: a free string in an
    // `sh -c` is a shell injection, a free image a way around the template.
    let open_value = file.values.iter().find(|(n, d)| {
        let used = file
            .command
            .iter()
            .chain([&file.image])
            .any(|c| c.contains(&format!("{{values.{n}}}")));
        used && !matches!(d.kind, ValueKind::Int | ValueKind::Bool | ValueKind::Enum)
    });
    match open_value {
        Some((n, _)) => Err(format!("{{values.{n}}} is used in the command or image: only int, bool and enum values may be (a string or secret belongs in [env])")),
        None => Ok(()),
    }
}

/// Every `{values.<name>}` in `text` names a declared value.
fn check_placeholders(text: &str, decls: &BTreeMap<String, ValueDecl>) -> Result<(), String> {
    let mut rest = text;
    while let Some(at) = rest.find("{values.") {
        let after = &rest[at + "{values.".len()..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{text:?}: an unclosed {{values."))?;
        if !decls.contains_key(&after[..end]) {
            return Err(format!(
                "{text:?}: {{values.{}}} is not declared under [values]",
                &after[..end]
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Each mount valid, no target twice.
fn check_mounts(mounts: &[MountTemplate]) -> Result<(), String> {
    let mut targets = std::collections::BTreeSet::new();
    for m in mounts {
        check_mount(m)?;
        if !targets.insert(m.target.clone()) {
            return Err(format!("mount target {:?} appears twice", m.target));
        }
    }
    Ok(())
}

/// The hooks present in `dir/hooks`; one that exists but is not an executable file is an error.
fn find_hooks(dir: &Path) -> Result<BTreeMap<HookKind, PathBuf>, SourceError> {
    let mut hooks = BTreeMap::new();
    for kind in [
        HookKind::PreCreate,
        HookKind::PreDeploy,
        HookKind::PreDelete,
    ] {
        let hook = dir.join("hooks").join(kind.file_name());
        match std::fs::metadata(&hook) {
            Ok(md) if md.is_file() && md.permissions().mode() & 0o111 != 0 => {
                hooks.insert(kind, hook);
            }
            Ok(_) => {
                return Err(SourceError::whole_file(
                    &hook,
                    "hook is not an executable file",
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SourceError::whole_file(&hook, e.to_string())),
        }
    }
    Ok(hooks)
}

/// blake3 of each `spec_files` entry (relative paths inside the template only).
fn hash_spec_files(dir: &Path, files: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for rel in files {
        let ok = !rel.is_empty()
            && !rel.starts_with('/')
            && rel.split('/').all(|c| !c.is_empty() && c != "..");
        if !ok {
            return Err(format!(
                "spec_files entry {rel:?} must be a relative path inside the template"
            ));
        }
        let bytes = std::fs::read(dir.join(rel))
            .map_err(|e| format!("spec_files entry {rel:?}: cannot read: {e}"))?;
        out.insert(rel.clone(), blake3::hash(&bytes).to_hex().to_string());
    }
    Ok(out)
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
