//! An app built from its own Dockerfile (docs/guides/builds.md): the manifest's `[build]`
//! table, checked while it is read; the `BuildSpec` a container spec carries; and the image
//! tag, a hash of everything the build reads, so the same inputs are never built twice and a
//! change to any of them is a new spec (a deploy).
//!
//! What the context holds is measured by the state layer (`state::build_context`), which
//! hands the digest in; this module does no I/O.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::model::config::Config;
use crate::model::manifest::Manifest;
use crate::model::names::AppKey;
use crate::model::source_error::SourceError;
use crate::model::template::Template;

/// At most this many build arguments: a build needs a handful.
pub const MAX_BUILD_ARGS: usize = 64;

/// The label `paas.template` of a built app: not a directory name, so no template can clash.
pub const BUILT: &str = "(build)";

/// `[build]`: the app's image is built from a Dockerfile in its workspace.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildDecl {
    /// The Dockerfile, relative to the context; default `Dockerfile`.
    #[serde(default = "default_dockerfile", deserialize_with = "relative_path")]
    #[schemars(schema_with = "crate::model::schema::relative_path")]
    pub dockerfile: String,
    /// The build context, a directory relative to the app's workspace; default `.`.
    #[serde(default = "default_context", deserialize_with = "relative_path")]
    #[schemars(schema_with = "crate::model::schema::relative_path")]
    pub context: String,
    /// The stage to build (`docker build --target`); default the last.
    #[serde(default, deserialize_with = "stage")]
    pub target: Option<String>,
    /// Build arguments (`ARG`), passed as given. Not for secrets: they stay in the image's
    /// history.
    #[serde(default, deserialize_with = "build_args")]
    #[schemars(length(max = 64))]
    pub args: BTreeMap<String, String>,
    /// Names from `[secrets]` a `RUN --mount=type=secret,id=NAME` step may read: handed to
    /// BuildKit as build secrets, never as arguments, so no layer, history or log holds them.
    #[serde(default, deserialize_with = "secret_names")]
    #[schemars(length(max = 16))]
    pub secrets: Vec<String>,
    /// A git repository to build instead of the workspace: `https://`, `ssh://`, `git://` or
    /// `user@host:path`; never a local path or `file://`. `context` and `dockerfile` are then
    /// inside the repository.
    #[serde(default, deserialize_with = "git_url")]
    pub git: Option<String>,
    /// The branch, tag or commit of `git` to build; default `HEAD` (the remote's default
    /// branch).
    #[serde(default, rename = "ref", deserialize_with = "git_ref")]
    #[schemars(rename = "ref")]
    pub reference: Option<String>,
    /// How often `berth serve` fetches `git` again to follow a branch (at least `1m`); left
    /// out, the ref is fetched when it is not the one fetched last (a new app, a changed `git`
    /// or `ref`), on `berth apply` and on `berth build`.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub poll: Option<std::time::Duration>,
}

fn git_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let url = String::deserialize(d)?;
    crate::model::git_source::remote_host(&url).map_err(serde::de::Error::custom)?;
    Ok(Some(url))
}

fn git_ref<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let r = String::deserialize(d)?;
    crate::model::git_source::check_ref(&r).map_err(serde::de::Error::custom)?;
    Ok(Some(r))
}

impl BuildDecl {
    /// The repository to build, when `git` is given.
    pub fn source(&self) -> Option<crate::model::git_source::GitSource> {
        let url = self.git.as_deref()?;
        crate::model::git_source::GitSource::parse(url, self.reference.as_deref()).ok()
    }
}

fn default_dockerfile() -> String {
    "Dockerfile".into()
}

fn default_context() -> String {
    ".".into()
}

/// What a container spec says about the build of its image (left out of the canonical JSON
/// for apps that are not built, so their hashes are what they were).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSpec {
    /// The context directory on the host, absolute.
    pub context: String,
    /// The Dockerfile, relative to the context.
    pub dockerfile: String,
    /// The stage built.
    pub target: Option<String>,
    /// Build arguments.
    pub args: BTreeMap<String, String>,
    /// blake3 of the context's files (names, modes, contents, link targets).
    pub context_digest: String,
    /// Build secrets by name, as the keyed fingerprints of their values (`bind_secrets`).
    pub secrets: BTreeMap<String, String>,
}

impl BuildSpec {
    /// The spec of `decl` for the app whose workspace is `app_dir`, with the digest of what
    /// its context holds.
    pub fn new(decl: &BuildDecl, app_dir: &std::path::Path, context_digest: String) -> BuildSpec {
        BuildSpec {
            context: context_dir(decl, app_dir).to_string_lossy().into_owned(),
            dockerfile: decl.dockerfile.clone(),
            target: decl.target.clone(),
            args: decl.args.clone(),
            context_digest,
            secrets: decl
                .secrets
                .iter()
                .map(|n| (n.clone(), String::new()))
                .collect(),
        }
    }

    /// The image tag: the app's name and a hash of every input. Not of the context's path,
    /// so another root with the same app and files shares the image.
    pub fn tag(&self, key: &AppKey) -> String {
        let inputs = serde_json::json!({
            "dockerfile": self.dockerfile,
            "target": self.target,
            "args": self.args,
            "context": self.context_digest,
            "secrets": self.secrets,
        });
        let hash = blake3::hash(inputs.to_string().as_bytes()).to_hex();
        format!("berth-build/{}/{}:{}", key.userid, key.appname, &hash[..20])
    }
}

/// The context directory of `decl` under `app_dir`.
pub fn context_dir(decl: &BuildDecl, app_dir: &std::path::Path) -> PathBuf {
    match decl.context.as_str() {
        "." => app_dir.to_path_buf(),
        c => app_dir.join(c),
    }
}

/// The template a built app is made from: its image is `image` (the build's tag), its port
/// the manifest's, its `build`; no hooks, mounts, values or install.
pub fn template(image: String, port: u16, build: Option<BuildSpec>) -> Template {
    Template {
        id: BUILT.into(),
        dir: PathBuf::new(),
        image,
        command: Vec::new(),
        workdir: None,
        port,
        defaults: Default::default(),
        mounts: Vec::new(),
        hooks: BTreeMap::new(),
        spec_files: BTreeMap::new(),
        health: None,
        env: BTreeMap::new(),
        values: BTreeMap::new(),
        volumes: Vec::new(),
        install: None,
        install_version: None,
        build,
        backup: None,
    }
}

/// What `m` is made from: its template, or for `[build]` the template of a built app, whose
/// image is tagged by the digest of its context.
pub fn made_from(
    key: &AppKey,
    m: &Manifest,
    config: &Config,
    context: Option<Result<String, String>>,
    template: &mut dyn FnMut(&str) -> Result<Template, SourceError>,
) -> Result<Template, String> {
    if let Some(id) = m.template_id() {
        return template(id).map_err(|e| format!("template {id}: {e}"));
    }
    let (Some(decl), Some(port)) = (&m.build, m.port) else {
        return Err("neither a template nor a [build]".into());
    };
    check_decl(decl)?;
    if !config.builds.enabled {
        return Err("[build]: builds are off on this server ([builds] enabled = true in berth.toml turns them on; see docs/guides/builds.md)".into());
    }
    if let Some(name) = decl.secrets.iter().find(|n| !m.secrets.0.contains_key(*n)) {
        return Err(format!(
            "[build] secrets names {name}, which is not in [secrets]: seal it there first (berth secrets encrypt {name} --app {key})"
        ));
    }
    let digest = context
        .unwrap_or_else(|| Err("its build context was not read".into()))
        .map_err(|e| match decl.git {
            Some(_) => format!("[build] git: {e}"),
            None => format!("[build] context: {e}"),
        })?;
    let base = match decl.git {
        None => config.app_dir(key),
        Some(_) => git_base(key, decl, config, &digest)?,
    };
    let mut build = BuildSpec::new(decl, &base, digest);
    if decl.git.is_some() {
        // A commit's digest says nothing of which directory of it is built.
        build.context_digest = format!("{} {}", build.context_digest, decl.context);
    }
    let tag = build.tag(key);
    Ok(self::template(tag, port.0, Some(build)))
}

/// The unpacked tree of a `[build] git` app's fetched commit (`digest` is `git:<commit>`),
/// once its host is one `[policy] git_hosts` allows.
fn git_base(
    key: &AppKey,
    decl: &BuildDecl,
    config: &Config,
    digest: &str,
) -> Result<PathBuf, String> {
    let source = decl
        .source()
        .ok_or("[build] git: not a repository berth fetches")?;
    let rules = config.policy.rules(&key.userid);
    if rules.git_host(&key.userid, &source.host) == crate::model::policy::GitHost::Refused {
        return Err(format!(
            "[build] git: host {} matches none of user {}'s [policy] git_hosts",
            source.host, key.userid
        ));
    }
    match digest.strip_prefix("git:") {
        Some(commit) => Ok(config.source_tree(key, commit)),
        None => Err(format!("[build] git: {} was not fetched", source.url)),
    }
}

/// What is wrong with `decl` on its own: a ref or poll without a repository, a poll too
/// often.
pub fn check_decl(decl: &BuildDecl) -> Result<(), String> {
    if decl.git.is_none() && (decl.reference.is_some() || decl.poll.is_some()) {
        return Err("[build] ref and poll need git (a repository to fetch)".into());
    }
    if decl
        .poll
        .is_some_and(|p| p < std::time::Duration::from_secs(60))
    {
        return Err("[build] poll: at least 1m (each poll is a fetch from the remote)".into());
    }
    Ok(())
}

/// Gives a built app's build secrets the fingerprints of their opened values (`spec.secrets`)
/// and tags the image again, so a new value is a new build.
pub fn bind_secrets(spec: &mut crate::model::spec::ContainerSpec, key: &AppKey) {
    let Some(build) = spec.build.as_mut() else {
        return;
    };
    for (name, fingerprint) in build.secrets.iter_mut() {
        if let Some(f) = spec.secrets.get(name) {
            fingerprint.clone_from(f);
        }
    }
    spec.image = build.tag(key);
}

/// A path inside the workspace: relative, no `..`, no empty or `.` part past the first, no
/// NUL or backslash, at most 255 bytes.
pub fn check_relative_path(s: &str) -> Result<(), String> {
    let bad_part = |p: &str| p.is_empty() || p == ".." || (p == "." && s != ".");
    if s.is_empty()
        || s.len() > 255
        || s.starts_with('/')
        || s.contains(['\0', '\\'])
        || s.split('/').any(bad_part)
    {
        return Err(format!(
            "invalid path {s:?}: must be relative to the app's workspace, without '..', '//' or a leading '/'"
        ));
    }
    Ok(())
}

fn relative_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check_relative_path(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

/// A stage name as Dockerfiles allow: `[a-z][a-z0-9._-]*`, at most 64.
fn check_stage(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    ok.then_some(()).ok_or_else(|| {
        format!("invalid target {s:?}: a stage name of letters, digits, '.', '_' and '-'")
    })
}

fn stage<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    check_stage(&s).map_err(serde::de::Error::custom)?;
    Ok(Some(s))
}

/// An `ARG` name: letters, digits and `_`, not starting with a digit.
fn check_arg_name(k: &str) -> Result<(), String> {
    if k.to_ascii_uppercase().starts_with("BUILDKIT_") {
        return Err(format!(
            "build argument {k}: BUILDKIT_* arguments steer BuildKit itself (its frontend, its cache namespace) and are not allowed"
        ));
    }
    let ok = !k.is_empty()
        && k.len() <= 128
        && !k.as_bytes()[0].is_ascii_digit()
        && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    ok.then_some(()).ok_or_else(|| {
        format!(
            "invalid build argument name {k:?}: letters, digits and '_', not starting with a digit"
        )
    })
}

fn secret_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    if names.len() > 16 {
        return Err(serde::de::Error::custom("at most 16 build secrets"));
    }
    for n in &names {
        crate::model::secrets::check_secret_name(n).map_err(serde::de::Error::custom)?;
    }
    Ok(names)
}

fn build_args<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let args = BTreeMap::<String, String>::deserialize(d)?;
    if args.len() > MAX_BUILD_ARGS {
        return Err(serde::de::Error::custom(format!(
            "{} build arguments; at most {MAX_BUILD_ARGS}",
            args.len()
        )));
    }
    for (k, v) in &args {
        check_arg_name(k).map_err(serde::de::Error::custom)?;
        if v.contains('\0') || v.len() > 4096 {
            return Err(serde::de::Error::custom(format!(
                "build argument {k}: the value must be under 4096 bytes, without NUL"
            )));
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BuildDecl, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn spec(text: &str, digest: &str) -> BuildSpec {
        BuildSpec::new(
            &parse(text).unwrap(),
            std::path::Path::new("/r/apps/alice/api"),
            digest.into(),
        )
    }

    #[test]
    fn defaults_are_the_workspace_and_its_dockerfile() {
        let d = parse("").unwrap();
        assert_eq!(
            (d.dockerfile.as_str(), d.context.as_str()),
            ("Dockerfile", ".")
        );
        let s = spec(
            "context = \"web\"\ndockerfile = \"docker/Dockerfile.prod\"",
            "d",
        );
        assert_eq!(s.context, "/r/apps/alice/api/web");
    }

    #[test]
    fn paths_out_of_the_workspace_and_odd_names_are_refused_by_name() {
        for bad in [
            "context = \"..\"",
            "context = \"a/../../b\"",
            "context = \"/etc\"",
            "dockerfile = \"\"",
            "dockerfile = \"a//b\"",
            "dockerfile = \"a\\\\b\"",
            "target = \"1st\"",
            "target = \"a b\"",
            "args = { \"A-B\" = \"1\" }",
            "args = { \"9A\" = \"1\" }",
            "args = { BUILDKIT_CACHE_MOUNT_NS = \"bob\" }",
            "args = { buildkit_syntax = \"x\" }",
            "git = \"file:///etc\"",
            "git = \"/srv/other.git\"",
            "ref = \"--upload-pack=x\"",
            "secrets = [\"A-B\"]",
            "secrets = [\"PORT\"]",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(
                [
                    "invalid",
                    "unknown field",
                    "set by berth",
                    "not allowed",
                    "only remote repositories",
                    "not a branch, tag or commit",
                ]
                .iter()
                .any(|m| err.contains(m)),
                "{bad}: {err}"
            );
        }
        assert!(
            parse("context = \"./web\"").is_err(),
            "a '.' part past the first"
        );
        assert!(parse("context = \"web/api\"\ntarget = \"run-time_1.2\"").is_ok());
    }

    #[test]
    fn the_tag_changes_with_every_input_and_not_with_the_path() {
        let key = AppKey::new("alice", "api").unwrap();
        let base = spec("", "d1").tag(&key);
        assert!(base.starts_with("berth-build/alice/api:"), "{base}");
        for other in [
            spec("", "d2"),
            spec("dockerfile = \"Other\"", "d1"),
            spec("target = \"run\"", "d1"),
            spec("args = { A = \"1\" }", "d1"),
        ] {
            assert_ne!(other.tag(&key), base, "{other:?}");
        }
        let mut sealed = spec("secrets = [\"T\"]", "d1");
        sealed.secrets.insert("T".into(), "fingerprint-1".into());
        let first = sealed.tag(&key);
        sealed.secrets.insert("T".into(), "fingerprint-2".into());
        assert_ne!(sealed.tag(&key), first, "a new secret value is a new build");
        let mut moved = spec("", "d1");
        moved.context = "/elsewhere".into();
        assert_eq!(moved.tag(&key), base);
    }
}
