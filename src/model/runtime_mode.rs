//! `runtime` in berth.toml (docs/guides/swarm.md): `"docker"` runs every app as a container on this
//! engine; `"swarm"` runs every app as a Swarm service across the swarm this engine manages,
//! its workspace shipped as an image through `registry`; `swarm_publish_domain_ports` is the
//! operator's consent to a domain app's port being open on every address of its nodes.

use serde::Deserialize;

use crate::model::policy::Publishing;
use crate::model::registry_login::RegistryLoginSource;

/// `runtime` as written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Containers on this engine.
    #[default]
    Docker,
    /// Services on this engine's swarm.
    Swarm,
}

/// The resolved runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// Containers on this engine.
    Docker,
    /// Services on this engine's swarm; app images go through `registry` (`host:port`).
    Swarm {
        /// Where app images are pushed and every node pulls them from.
        registry: String,
        /// `[registry_login]`, for a registry that asks for one.
        login: Option<RegistryLoginSource>,
        /// `swarm_publish_domain_ports`: domain apps may run, their engine-picked port open
        /// on every address of each node their tasks run on.
        publish_domain_ports: bool,
    },
}

impl Runtime {
    /// `runtime`, `registry` and `[registry_login]` as berth.toml gives them.
    pub fn resolve(
        kind: RuntimeKind,
        registry: Option<&str>,
        login: Option<RegistryLoginSource>,
    ) -> Result<Runtime, String> {
        if kind == RuntimeKind::Docker && login.is_some() {
            return Err(
                "[registry_login] is for runtime = \"swarm\" (no registry is used here)".into(),
            );
        }
        match (kind, registry) {
            (RuntimeKind::Docker, None) => Ok(Runtime::Docker),
            (RuntimeKind::Docker, Some(_)) => {
                Err("registry is for runtime = \"swarm\" (apps run from their workspaces here)".into())
            }
            (RuntimeKind::Swarm, None) => Err(
                "runtime = \"swarm\" needs registry = \"host:port\": the registry every node pulls app images from".into(),
            ),
            (RuntimeKind::Swarm, Some(r)) => check_registry(r).map(|()| Runtime::Swarm {
                registry: r.to_string(),
                login,
                publish_domain_ports: false,
            }),
        }
    }

    /// Whether apps are Swarm services.
    pub fn is_swarm(&self) -> bool {
        matches!(self, Runtime::Swarm { .. })
    }

    /// This runtime with berth.toml's `swarm_publish_domain_ports`, which only swarm mode has.
    pub fn with_domain_ports(self, publish: bool) -> Result<Runtime, String> {
        match self {
            Runtime::Docker if publish => Err(
                "swarm_publish_domain_ports is for runtime = \"swarm\" (here Caddy reaches a domain app on its own network, with no published port)".into(),
            ),
            Runtime::Docker => Ok(Runtime::Docker),
            Runtime::Swarm {
                registry, login, ..
            } => Ok(Runtime::Swarm {
                registry,
                login,
                publish_domain_ports: publish,
            }),
        }
    }

    /// Where this runtime publishes ports, for the policy check (`policy::check_app`).
    pub fn publishing(&self) -> Publishing {
        match self {
            Runtime::Docker => Publishing::Confined,
            Runtime::Swarm {
                publish_domain_ports,
                ..
            } => Publishing::EveryAddress {
                domain_ports: *publish_domain_ports,
            },
        }
    }
}

/// `host:port` (or `host`), a registry reference's first part: no scheme, no path.
fn check_registry(r: &str) -> Result<(), String> {
    let ok = !r.is_empty()
        && r.len() <= 253
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "registry {r:?} must be host:port, as image names begin (no scheme, no path)"
        ))
    }
}

/// What the manifest asks of the runtime (`replicas`, `constraints`) is something this
/// server's runtime can do. The loop freezes a file that fails it and the API refuses the
/// write with the same message (`state::files`): one rule, both paths.
pub fn check_runtime(
    m: &crate::model::manifest::Manifest,
    template: &crate::model::template::Template,
    config: &crate::model::config::Config,
) -> Result<(), String> {
    check_replicas(m.replicas, config)?;
    check_constraints(&m.constraints, config)?;
    crate::model::jobs::check_runtime(&m.jobs, config)?;
    if config.runtime.is_swarm() && m.build.is_some() {
        return Err("[build] runs on the docker runtime only: with runtime = \"swarm\" a built image would have to reach every node through the registry, which berth does not do yet".into());
    }
    if config.runtime.is_swarm() && !template.volumes.is_empty() && m.replicas > Some(1) {
        return Err(format!(
            "template {} has [[volumes]]: with runtime = \"swarm\" such an app runs one task, on the manager berth runs on (a volume lives on one node); remove replicas",
            template.id
        ));
    }
    Ok(())
}

/// `replicas` is 1 to 64, and more than one needs Swarm.
fn check_replicas(
    replicas: Option<u16>,
    config: &crate::model::config::Config,
) -> Result<(), String> {
    match replicas {
        Some(n) if !(1..=64).contains(&n) => Err(format!("replicas = {n}: must be 1 to 64")),
        Some(n) if n > 1 && !config.runtime.is_swarm() => Err(format!(
            "replicas = {n} needs runtime = \"swarm\" in berth.toml (one engine runs one container per app)"
        )),
        _ => Ok(()),
    }
}

/// At most 16 constraints, each one comparison (`==` or `!=`) of printable text; only Swarm
/// places tasks.
fn check_constraints(
    constraints: &[String],
    config: &crate::model::config::Config,
) -> Result<(), String> {
    if !constraints.is_empty() && !config.runtime.is_swarm() {
        return Err(
            "constraints need runtime = \"swarm\" in berth.toml (one engine has no placement)"
                .into(),
        );
    }
    if constraints.len() > 16 {
        return Err("constraints: at most 16".into());
    }
    let bad = constraints.iter().find(|c| !is_one_comparison(c));
    match bad {
        Some(c) => Err(format!("constraints: {c:?} must be one comparison such as \"node.labels.disk == ssd\" (== or !=)")),
        None => Ok(()),
    }
}

/// `<field> == <value>` or `!=`: both sides plain (no `=`, `!`, control or format
/// characters such as bidi overrides), at most 256 bytes in all.
fn is_one_comparison(c: &str) -> bool {
    let plain = |side: &str| {
        let side = side.trim();
        !side.is_empty()
            && side
                .chars()
                .all(|ch| ch == ' ' || (ch.is_ascii_graphic() && ch != '=' && ch != '!'))
    };
    let split = c.split_once("==").or_else(|| c.split_once("!="));
    c.len() <= 256 && split.is_some_and(|(l, r)| plain(l) && plain(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_needs_a_registry_and_docker_takes_none() {
        assert_eq!(
            Runtime::resolve(RuntimeKind::Docker, None, None),
            Ok(Runtime::Docker)
        );
        let swarm = Runtime::resolve(RuntimeKind::Swarm, Some("10.0.0.1:5000"), None).unwrap();
        assert!(swarm.is_swarm());
        for (kind, registry, want) in [
            (RuntimeKind::Swarm, None, "needs registry"),
            (RuntimeKind::Docker, Some("r:5000"), "is for runtime"),
            (RuntimeKind::Swarm, Some("https://r:5000"), "no scheme"),
            (RuntimeKind::Swarm, Some("r:5000/x"), "no scheme"),
            (RuntimeKind::Swarm, Some(""), "host:port"),
        ] {
            let e = Runtime::resolve(kind, registry, None).unwrap_err();
            assert!(e.contains(want), "{kind:?} {registry:?}: {e}");
        }
    }

    #[test]
    fn a_registry_login_is_for_swarm_mode() {
        let login = RegistryLoginSource {
            username: "berth".into(),
            password_file: "/etc/berth/pw".into(),
        };
        let e = Runtime::resolve(RuntimeKind::Docker, None, Some(login.clone())).unwrap_err();
        assert!(e.contains("[registry_login] is for runtime"), "{e}");
        let swarm = Runtime::resolve(RuntimeKind::Swarm, Some("r:5000"), Some(login.clone()));
        let want = Runtime::Swarm {
            registry: "r:5000".into(),
            login: Some(login),
            publish_domain_ports: false,
        };
        assert_eq!(swarm, Ok(want));
    }

    #[test]
    fn domain_ports_are_published_in_swarm_mode_only_when_the_operator_says_so() {
        let docker = Runtime::Docker;
        assert_eq!(docker.publishing(), Publishing::Confined);
        let e = Runtime::Docker.with_domain_ports(true).unwrap_err();
        assert!(
            e.contains("swarm_publish_domain_ports is for runtime"),
            "{e}"
        );
        let swarm = Runtime::resolve(RuntimeKind::Swarm, Some("r:5000"), None).unwrap();
        let closed = Publishing::EveryAddress {
            domain_ports: false,
        };
        assert_eq!(swarm.publishing(), closed, "safe by default");
        let open = swarm.with_domain_ports(true).unwrap().publishing();
        assert_eq!(open, Publishing::EveryAddress { domain_ports: true });
    }
}
