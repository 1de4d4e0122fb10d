//! The app manifest (docs/reference/manifest.md): what one `state/apps/<userid>/<appname>.toml` may say.
//!
//! Every field is checked while it is deserialized, so each error carries the line and column
//! of the offending key or value, and unknown keys are rejected (`deny_unknown_fields`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use crate::model::health::HealthSettings;
use crate::model::resources::ResourceOverrides;
use crate::model::source_error::SourceError;

/// Manifests larger than this are refused before parsing: no app needs a megabyte of TOML.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// One app's desired state as the user wrote it. userid and appname come from the path.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["template"]}, {"required": ["build", "port"]}]))]
pub struct Manifest {
    /// Which directory under `templates/` shapes this app; an app with `[build]` has none.
    pub template: Option<TemplateId>,
    /// `[build]`: the app's image is built from a Dockerfile in its workspace
    /// (docs/guides/builds.md); then `port` is required and `template` is not given.
    pub build: Option<crate::model::build::BuildDecl>,
    /// Whether the container should run.
    #[serde(default)]
    pub state: RunState,
    /// Public host name; becomes label `paas.domain` for a proxy to route by.
    pub domain: Option<Domain>,
    /// Container port the app listens on; default from the template.
    pub port: Option<Port>,
    /// Host port to publish the container port on; nothing is published without it.
    pub host_port: Option<Port>,
    /// Address to publish on; 127.0.0.1 unless set, so nothing is public by accident.
    #[serde(default)]
    #[schemars(schema_with = "crate::model::schema::ip")]
    pub host_ip: Option<IpAddr>,
    /// A nonce: changing it changes the spec hash and so recreates the container (deploy).
    pub restart: Option<RestartNonce>,
    /// Plain environment variables.
    #[serde(default)]
    pub env: EnvVars,
    /// `[secrets]`: environment variables kept encrypted to the server's key (docs/guides/secrets.md).
    #[serde(default)]
    pub secrets: crate::model::secrets::SealedSecrets,
    /// Memory and CPU limits; unset ones come from berth.toml, then the template.
    #[serde(default)]
    pub resources: ResourceOverrides,
    /// `[health]`: overrides the template's health check field by field.
    pub health: Option<HealthSettings>,
    /// `[values]`: the template's values this app sets (docs/guides/templates-and-values.md), checked against the
    /// template's declarations when the desired state is built.
    #[serde(default)]
    #[schemars(schema_with = "crate::model::schema::manifest_values")]
    pub values: BTreeMap<String, toml::Value>,
    /// Set by a rename (`POST /apps/:u/:a/rename`, `berth mv`, or by hand with the file
    /// moved): the app's earlier name, whose container, volumes, workspace and records this
    /// app takes over. berth removes the line once the move is done.
    pub renamed_from: Option<AppName>,
    /// How many tasks of the app run (`runtime = "swarm"`; 1 to 64). A single engine runs one.
    #[schemars(range(min = 1, max = 64))]
    pub replicas: Option<u16>,
    /// Swarm placement constraints (`runtime = "swarm"`), passed through as written, e.g.
    /// `"node.labels.disk == ssd"`: at most 16, each an `==` or `!=` comparison.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub constraints: Vec<String>,
    /// `[[jobs]]`: commands run on a schedule, each run in a fresh container of the app
    /// (docs/guides/jobs.md). Not part of the container's spec: a job change recreates nothing.
    #[serde(default)]
    pub jobs: crate::model::jobs::Jobs,
    /// `[backup]`: this app's data backed up with restic (docs/guides/backups-and-recovery.md):
    /// schedule, retention and target.
    pub backup: Option<crate::model::backup::BackupDecl>,
}

/// An app name inside a manifest (`renamed_from`), checked like the file stem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppName(pub String);

impl<'de> Deserialize<'de> for AppName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let check = |s: &str| crate::model::names::validate_appname(s).map_err(|e| e.to_string());
        checked_string(d, check).map(AppName)
    }
}

impl Manifest {
    /// Parses manifest text; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, SourceError> {
        let m: Manifest =
            toml::from_str(text).map_err(|e| SourceError::from_toml(path, text, &e))?;
        m.check_source()
            .map_err(|e| SourceError::whole_file(path, e))?;
        Ok(m)
    }

    /// An app is shaped by a template or built from its Dockerfile: exactly one of the two,
    /// and a built app names its container port (no template gives a default).
    fn check_source(&self) -> Result<(), String> {
        match (&self.template, &self.build) {
            (Some(_), Some(_)) => Err("`template` and `[build]` are both given: an app is made from a template or built from its Dockerfile, not both".into()),
            (None, None) => Err("missing `template` (or a `[build]` table): say what the app is made from".into()),
            (None, Some(_)) if self.port.is_none() => Err("`[build]` needs `port`: the port the built app listens on (no template gives a default)".into()),
            _ => Ok(()),
        }
    }

    /// The template's id, for an app made from one.
    pub fn template_id(&self) -> Option<&str> {
        self.template.as_ref().map(|t| t.0.as_str())
    }
}

/// `running` (default) or `stopped`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// The container should exist and run.
    #[default]
    Running,
    /// The container should exist and not run.
    Stopped,
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RunState {
    /// `running` or `stopped`, as the manifest says it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Stopped => "stopped",
        }
    }
}

/// Deserializes a string and checks it with `check`, so the error points at the value.
fn checked_string<'de, D: Deserializer<'de>>(
    d: D,
    check: fn(&str) -> Result<(), String>,
) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

/// A template id: `^[a-z][a-z0-9-]{0,63}$`, so it is always a plain directory name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TemplateId(pub String);

/// Checks a template id; also used for directory names found under `templates/`.
pub fn check_template_id(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid template id {s:?}: must be 1-64 characters of a-z, 0-9 and '-', starting with a letter"
        ))
    }
}

impl<'de> Deserialize<'de> for TemplateId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_string(d, check_template_id).map(TemplateId)
    }
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A DNS host name in lower case (labels of a-z, 0-9, '-', at most 253 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain(pub String);

fn check_domain(s: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    };
    if s.len() <= 253 && s.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "invalid domain {s:?}: expected a lower-case host name such as \"hello.example.com\""
        ))
    }
}

impl<'de> Deserialize<'de> for Domain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked_string(d, check_domain).map(Domain)
    }
}

/// A TCP port, 1-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(Port(p)),
            _ => Err(serde::de::Error::custom(format!(
                "port {n} must be between 1 and 65535"
            ))),
        }
    }
}

/// The `restart` nonce: any short string, or a TOML date-time written without quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartNonce(pub String);

impl<'de> Deserialize<'de> for RestartNonce {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            When(toml::value::Datetime),
            Number(i64),
        }
        let s = match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("restart must be a string, a date-time or a number")
        })? {
            Raw::Text(s) => s,
            Raw::When(t) => t.to_string(),
            Raw::Number(n) => n.to_string(),
        };
        if s.len() > 128 || s.chars().any(char::is_control) {
            return Err(serde::de::Error::custom(
                "restart must be at most 128 printable characters",
            ));
        }
        Ok(RestartNonce(s))
    }
}

/// Environment variables with names a shell accepts and values Docker can carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvVars(pub BTreeMap<String, String>);

/// Set by berth from `port`; a manifest may not set it, or the app would listen elsewhere.
pub const RESERVED_ENV: &[&str] = &["PORT"];
const MAX_ENV_VARS: usize = 256;
const MAX_ENV_VALUE: usize = 32 * 1024;

fn check_env(name: &str, value: &str) -> Result<(), String> {
    check_env_name(name)?;
    if value.contains('\0') || value.len() > MAX_ENV_VALUE {
        return Err(format!(
            "env {name}: value must be at most 32 KiB with no NUL character"
        ));
    }
    Ok(())
}

/// A name a shell accepts for a variable, and not one berth sets itself (env and secrets).
pub fn check_env_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let name_ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if !name_ok {
        return Err(format!(
            "invalid env name {name:?}: use letters, digits and '_', not starting with a digit"
        ));
    }
    if RESERVED_ENV.contains(&name) {
        return Err(format!(
            "env {name} is set by berth from `port`; set `port` instead"
        ));
    }
    Ok(())
}

impl<'de> Deserialize<'de> for EnvVars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        if map.len() > MAX_ENV_VARS {
            return Err(serde::de::Error::custom(format!(
                "at most {MAX_ENV_VARS} env variables"
            )));
        }
        for (k, v) in &map {
            check_env(k, v).map_err(serde::de::Error::custom)?;
        }
        Ok(EnvVars(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(Path::new("state/apps/alice/hello.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_the_spec_example() {
        let m = parse(
            r#"
# state/apps/alice/hello.toml
template = "node-lite-v1"
state = "running"
domain = "hello.example.com"
port = 3000
host_port = 8101
restart = "2026-11-23T07:00:00Z"
[env]
GREETING = "hello"
[resources]
memory = "256m"
cpus = 0.5
"#,
        )
        .unwrap();
        assert_eq!(m.template_id(), Some("node-lite-v1"));
        assert_eq!(m.state, RunState::Running);
        assert_eq!(m.host_port, Some(Port(8101)));
        assert_eq!(m.env.0["GREETING"], "hello");
        assert_eq!(m.resources.memory.unwrap().0, 256 << 20);
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = parse("template = \"node-lite-v1\"").unwrap();
        assert_eq!(m.state, RunState::Running);
        assert!(m.env.0.is_empty() && m.port.is_none() && m.restart.is_none());
    }

    #[test]
    fn unquoted_datetime_restart_is_accepted() {
        let m = parse("template = \"t\"\nrestart = 2026-11-23T07:00:00Z").unwrap();
        assert_eq!(m.restart.unwrap().0, "2026-11-23T07:00:00Z");
    }

    #[test]
    fn hostile_manifests_name_file_line_and_column() {
        let p = "state/apps/alice/hello.toml";
        let cases = [
            (
                "template = \"t\"\nimage = \"evil\"",
                "2:1",
                "unknown field `image`",
            ),
            ("", "", "missing `template`"),
            ("template = \"t\"\n[build]", "", "not both"),
            ("[build]", "", "`[build]` needs `port`"),
            (
                "port = 80\n[build]\ncontext = \"../x\"",
                "3:11",
                "invalid path",
            ),
            ("template = \"../../etc\"", "1:12", "invalid template id"),
            ("template = \"T\"", "1:12", "invalid template id"),
            (
                "template = \"t\"\nstate = \"paused\"",
                "2:9",
                "unknown variant",
            ),
            ("template = \"t\"\nport = 0", "2:8", "between 1 and 65535"),
            (
                "template = \"t\"\nhost_port = 70000",
                "2:13",
                "between 1 and 65535",
            ),
            (
                "template = \"t\"\ndomain = \"Evil.COM\"",
                "2:10",
                "invalid domain",
            ),
            ("template = \"t\"\nhost_ip = \"localhost\"", "2:11", ""),
            ("template = \"t\"\n[env]\nPORT = \"1\"", "", "set by berth"),
            (
                "template = \"t\"\n[env]\n\"A-B\" = \"1\"",
                "",
                "invalid env name",
            ),
            ("template = \"t\"\n[env]\nA = 1", "3:5", ""),
            (
                "template = \"t\"\n[resources]\nmemory = \"1t\"",
                "3:10",
                "unknown unit",
            ),
            (
                "template = \"t\"\n[resources]\ncpus = -1",
                "3:8",
                "between 0.01",
            ),
            (
                "template = \"t\"\n[resources]\ndisk = \"1g\"",
                "3:1",
                "unknown field `disk`",
            ),
            ("template = \"t\"\ntemplate = \"u\"", "2:1", "duplicate key"),
            ("template = \"t\"\nrestart = [1]", "2:11", "restart must be"),
            ("template = \"t\" garbage", "1:16", ""),
        ];
        for (text, at, msg) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(p), "{text:?} -> {e}");
            assert!(e.contains(&format!("{p}:{at}")), "{text:?} -> {e}");
            assert!(e.contains(msg), "{text:?} -> {e}");
        }
    }
}
