//! The canonical container spec (docs/reference/labels.md): everything berth sends to Docker for one app,
//! derived from manifest + template + config, and its blake3 hash (label `paas.spec-hash`).
//!
//! **Invariant: the hash is a function of this struct only.** It is serialized as JSON with a
//! fixed field order and sorted maps, so comments, key order and whitespace in the TOML cannot
//! change it, and every field that reaches Docker does. Fixed hardening settings are fields too,
//! so changing them in code rolls every container on the next pass.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::config::Config;
use crate::model::manifest::Manifest;
use crate::model::names::AppKey;
use crate::model::policy::NetworkMode;
use crate::model::resources::{DEFAULT_CPUS, DEFAULT_MEMORY};
use crate::model::template::{MountDirs, Template};

/// Highest number of processes in one app container: stops fork bombs, fits Node comfortably.
pub const PIDS_LIMIT: i64 = 256;

/// One bind mount, placeholders filled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Absolute host path.
    pub source: String,
    /// Absolute container path.
    pub target: String,
    /// Read-only bind.
    pub read_only: bool,
}

/// What a container of one app is, as berth asks Docker for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Template id (label `paas.template`).
    pub template: String,
    /// Image reference.
    pub image: String,
    /// Command; empty means the image's own.
    pub command: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// Environment, including `PORT`.
    pub env: BTreeMap<String, String>,
    /// Bind mounts in template order.
    pub mounts: Vec<MountSpec>,
    /// Memory limit in bytes.
    pub memory: u64,
    /// CPU limit in nano-CPUs.
    pub nano_cpus: i64,
    /// Process limit.
    pub pids_limit: i64,
    /// Container port the app listens on.
    pub port: u16,
    /// Published host port, if any.
    pub host_port: Option<u16>,
    /// Address the host port is published on.
    pub host_ip: String,
    /// Label `paas.domain`.
    pub domain: Option<String>,
    /// Deploy nonce from the manifest.
    pub restart: Option<String>,
    /// blake3 of the template's `spec_files` (e.g. its lockfile): a change rolls every app.
    pub template_files: BTreeMap<String, String>,
    /// Docker init as PID 1 so SIGTERM reaches the app and stops are quick.
    pub init: bool,
    /// `no-new-privileges` and friends.
    pub security_opt: Vec<String>,
    /// Capabilities dropped (all).
    pub cap_drop: Vec<String>,
    /// json-file log rotation: (max-size, max-file).
    pub log_max_size: String,
    /// See `log_max_size`.
    pub log_max_file: u32,
    /// The user's own Docker network (`network = "per-user"`); none: Docker's default bridge.
    /// Left out of the canonical JSON when none, so bridge-mode hashes are what they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `[secrets]` by name, as keyed fingerprints of their values (never the values: those
    /// reach only the container's environment). Left out when empty, like `network`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// The template's named volumes for this app. Left out when none, like `network`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::model::volumes::VolumeSpec>,
    /// Tasks of a Swarm service (`replicas`); left out when the manifest sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u16>,
    /// Swarm placement constraints; left out when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// How the image is built (`[build]`); left out for an app made from a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<crate::model::build::BuildSpec>,
}

/// Memory and CPUs: the manifest's, else berth.toml's defaults, else the template's.
fn limits(
    m: &Manifest,
    t: &Template,
    config: &Config,
) -> (
    crate::model::resources::Memory,
    crate::model::resources::Cpus,
) {
    let memory = m
        .resources
        .memory
        .or(config.defaults.memory)
        .or(t.defaults.memory)
        .unwrap_or(DEFAULT_MEMORY);
    let cpus = m
        .resources
        .cpus
        .or(config.defaults.cpus)
        .or(t.defaults.cpus)
        .unwrap_or(DEFAULT_CPUS);
    (memory, cpus)
}

impl ContainerSpec {
    /// Derives the spec for `key` from its manifest, template and the config.
    pub fn derive(key: &AppKey, m: &Manifest, t: &Template, config: &Config) -> ContainerSpec {
        let (app_dir, shared_dir) = (config.app_dir(key), config.shared_dir.join(&t.id));
        let dirs = MountDirs {
            app_dir: &app_dir,
            shared_dir: &shared_dir,
        };
        let port = m.port.map_or(t.port, |p| p.0);
        let mut env = m.env.0.clone();
        env.insert("PORT".into(), port.to_string());
        let (memory, cpus) = limits(m, t, config);
        ContainerSpec {
            template: t.id.clone(),
            image: t.image.clone(),
            command: t.command.clone(),
            workdir: t.workdir.clone(),
            env,
            mounts: t
                .mounts
                .iter()
                .map(|mt| MountSpec {
                    source: t.fill_mount_source(&mt.source, &dirs),
                    target: mt.target.clone(),
                    read_only: mt.read_only,
                })
                .collect(),
            memory: memory.0,
            nano_cpus: cpus.0,
            pids_limit: PIDS_LIMIT,
            port,
            host_port: m.host_port.map(|p| p.0),
            host_ip: m
                .host_ip
                .map_or_else(|| "127.0.0.1".to_string(), |ip| ip.to_string()),
            domain: m.domain.as_ref().map(|d| d.0.clone()),
            restart: m.restart.as_ref().map(|r| r.0.clone()),
            template_files: t.spec_files.clone(),
            init: true,
            security_opt: vec!["no-new-privileges".into()],
            cap_drop: vec!["ALL".into()],
            log_max_size: "10m".into(),
            log_max_file: 3,
            network: match config.policy.rules(&key.userid).network {
                NetworkMode::PerUser => Some(user_network(&config.instance, &key.userid)),
                NetworkMode::Bridge => None,
            },
            secrets: BTreeMap::new(),
            volumes: crate::model::volumes::specs(&config.instance, key, &t.volumes),
            // One is what a container is: left out, so `replicas = 1` recreates nothing.
            replicas: m.replicas.filter(|n| *n != 1),
            constraints: m.constraints.clone(),
            build: t.build.clone(),
        }
    }

    /// The canonical bytes: JSON, fields in declaration order, maps sorted.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("a spec always serializes")
    }

    /// The spec as the `paas.spec` label carries it: every env value replaced by its digest
    /// ([`env_digest`]), so neither `docker ps` nor the event stream shows a value, while a
    /// changed value still shows as changed.
    pub fn for_label(&self) -> ContainerSpec {
        let mut shown = self.clone();
        for (k, v) in shown.env.iter_mut() {
            *v = env_digest(k, v);
        }
        shown
    }

    /// The memory the app holds while it runs: `memory` for each of its tasks (a Swarm
    /// service runs `replicas` of them; a container is one).
    pub fn memory_total(&self) -> u64 {
        self.memory
            .saturating_mul(u64::from(self.replicas.unwrap_or(1).max(1)))
    }

    /// blake3 of the canonical bytes, hex.
    pub fn hash(&self) -> String {
        blake3::hash(self.canonical_json().as_bytes())
            .to_hex()
            .to_string()
    }
}

/// The name of `userid`'s Docker network under berth `instance`.
pub fn user_network(instance: &str, userid: &str) -> String {
    format!("berth-{instance}-{userid}")
}

/// What the label shows of env value `value` of `name`: `b3:` and 16 hex digits of a blake3
/// hash. It tells whether a value changed; it is not a secret's protection (`docker inspect`
/// shows a container's environment to whoever may use Docker).
pub fn env_digest(name: &str, value: &str) -> String {
    let mut h = blake3::Hasher::new_derive_key("berth 2026 env label digest");
    h.update(name.as_bytes())
        .update(&[0])
        .update(value.as_bytes());
    format!("b3:{}", &h.finalize().to_hex()[..16])
}

/// `<what> NAME added / changed / removed` between two maps, naming keys only.
fn named_changes(
    what: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter_map(|k| match (old.get(k), new.get(k)) {
            (None, Some(_)) => Some(format!("{what} {k} added")),
            (Some(_), None) => Some(format!("{what} {k} removed")),
            (Some(a), Some(b)) if a != b => Some(format!("{what} {k} changed")),
            _ => None,
        })
        .collect()
}

/// Names what differs between the running spec and the wanted one, for `plan`'s "why".
/// Env values are never shown (they may be secrets); other fields show old -> new.
pub fn changed_fields(old: &ContainerSpec, new: &ContainerSpec) -> Vec<String> {
    let (serde_json::Value::Object(a), serde_json::Value::Object(b)) = (
        serde_json::to_value(old).unwrap_or_default(),
        serde_json::to_value(new).unwrap_or_default(),
    ) else {
        return vec!["spec".into()];
    };
    let mut out = Vec::new();
    for (field, new_v) in &b {
        let old_v = a.get(field).unwrap_or(&serde_json::Value::Null);
        if old_v == new_v {
            continue;
        }
        if field == "env" {
            for (k, v) in &new.env {
                // The running spec comes from the label, which carries digests.
                match old.env.get(k) {
                    None => out.push(format!("env.{k} added")),
                    Some(o) if *o != env_digest(k, v) && o != v => {
                        out.push(format!("env.{k} changed"))
                    }
                    _ => {}
                }
            }
            out.extend(
                old.env
                    .keys()
                    .filter(|k| !new.env.contains_key(*k))
                    .map(|k| format!("env.{k} removed")),
            );
        } else if field == "secrets" {
            out.extend(named_changes("secret", &old.secrets, &new.secrets));
        } else if field == "template_files" {
            let names = old.template_files.keys().chain(new.template_files.keys());
            let changed: std::collections::BTreeSet<&String> = names
                .filter(|k| old.template_files.get(*k) != new.template_files.get(*k))
                .collect();
            out.extend(
                changed
                    .into_iter()
                    .map(|k| format!("template file {k} changed")),
            );
        } else {
            out.push(format!("{field}: {old_v} -> {new_v}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture() -> (tempfile::TempDir, Config, Template) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("templates/web-v1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("template.toml"),
            "image = \"img:1\"\ncommand = [\"node\", \"server.js\"]\nport = 3000\n\
             [defaults]\ncpus = 0.25\n[[mounts]]\nsource = \"{app_dir}\"\ntarget = \"/app\"\n",
        )
        .unwrap();
        let mut config = Config::load(None, Some(root.path())).unwrap();
        let t = Template::load(&config, "web-v1").unwrap();
        // Pin the paths so specs from different temp roots compare equal.
        config.apps_dir = "/r/apps".into();
        (root, config, t)
    }

    fn spec_of(text: &str) -> ContainerSpec {
        let (_root, config, t) = fixture();
        let m = Manifest::parse(Path::new("m.toml"), text).unwrap();
        ContainerSpec::derive(&AppKey::new("alice", "hello").unwrap(), &m, &t, &config)
    }

    #[test]
    fn derives_limits_ports_and_mounts() {
        let s = spec_of("template = \"web-v1\"\nhost_port = 8101\n[env]\nA = \"1\"\n");
        assert_eq!(s.memory, 256 << 20, "built-in default");
        assert_eq!(s.nano_cpus, 250_000_000, "template default");
        assert_eq!(s.env["PORT"], "3000");
        assert_eq!((s.host_port, s.host_ip.as_str()), (Some(8101), "127.0.0.1"));
        assert!(
            s.mounts[0].source.ends_with("apps/alice/hello"),
            "{:?}",
            s.mounts
        );
        assert!(s.init && s.cap_drop == ["ALL"] && s.security_opt == ["no-new-privileges"]);
    }

    #[test]
    fn formatting_comments_and_key_order_do_not_change_the_hash() {
        let a = spec_of("template = \"web-v1\"\n[env]\nA = \"1\"\nB = \"2\"\n");
        let b = spec_of(
            "template   = \"web-v1\"   # which\n\n# note\n[env]\nB   =   \"2\" # why\nA = \"1\"\n",
        );
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
    }

    #[test]
    fn every_docker_field_changes_the_hash() {
        let base = spec_of("template = \"web-v1\"");
        let variants = [
            "template = \"web-v1\"\n[env]\nA = \"1\"",
            "template = \"web-v1\"\nport = 8080",
            "template = \"web-v1\"\nhost_port = 9000",
            "template = \"web-v1\"\nhost_ip = \"0.0.0.0\"",
            "template = \"web-v1\"\ndomain = \"a.example.com\"",
            "template = \"web-v1\"\nrestart = \"1\"",
            "template = \"web-v1\"\n[resources]\nmemory = \"512m\"",
            "template = \"web-v1\"\n[resources]\ncpus = 1",
        ];
        for v in variants {
            assert_ne!(spec_of(v).hash(), base.hash(), "{v}");
        }
        // Desired run state is not part of the container: stopping must not recreate.
        assert_eq!(
            spec_of("template = \"web-v1\"\nstate = \"stopped\"").hash(),
            base.hash()
        );
    }

    #[test]
    fn changed_secrets_are_named_by_their_fingerprints_only() {
        let with = |fps: &[(&str, &str)]| {
            let mut s = spec_of("template = \"web-v1\"\n");
            s.secrets = fps
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            s
        };
        let old = with(&[("DB", "k3:aaaa"), ("GONE", "k3:bbbb")]);
        let new = with(&[("DB", "k3:cccc"), ("NEW", "k3:dddd")]);
        let changes = changed_fields(&old, &new).join("; ");
        assert_eq!(
            changes,
            "secret DB changed; secret GONE removed; secret NEW added"
        );
        assert!(changed_fields(&old, &old).is_empty());
        // No secret: the canonical JSON (and so every existing hash) is what it was.
        assert!(!with(&[]).canonical_json().contains("secrets"));
        assert_ne!(old.hash(), new.hash());
    }

    #[test]
    fn changed_fields_name_fields_but_hide_env_values() {
        let old = spec_of("template = \"web-v1\"\n[env]\nSECRET = \"hunter2\"\nGONE = \"x\"");
        let new =
            spec_of("template = \"web-v1\"\nport = 8080\n[env]\nSECRET = \"hunter3\"\nNEW = \"y\"");
        let changes = changed_fields(&old, &new).join("; ");
        for want in [
            "env.SECRET changed",
            "env.NEW added",
            "env.GONE removed",
            "port: 3000 -> 8080",
        ] {
            assert!(changes.contains(want), "{changes}");
        }
        assert!(!changes.contains("hunter"), "{changes}");
        assert!(changed_fields(&old, &old).is_empty());
        let labelled = old.for_label();
        assert!(!labelled.canonical_json().contains("hunter2"));
        assert!(
            changed_fields(&labelled, &old).is_empty(),
            "a digest matches its value"
        );
        assert_eq!(
            changed_fields(&labelled, &new)
                .iter()
                .filter(|c| c.contains("SECRET"))
                .count(),
            1
        );
        let mut rolled = old.clone();
        rolled
            .template_files
            .insert("files/package-lock.json".into(), "abc".into());
        assert_eq!(
            changed_fields(&old, &rolled),
            ["template file files/package-lock.json changed"]
        );
    }
}
