//! `runtime` in berth.toml (docs/guides/swarm.md): `"docker"` runs every app as a container on this
//! engine; `"swarm"` runs every app as a Swarm service across the swarm this engine manages,
//! its workspace shipped as an image through `registry`.

use serde::Deserialize;

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
            }),
        }
    }

    /// Whether apps are Swarm services.
    pub fn is_swarm(&self) -> bool {
        matches!(self, Runtime::Swarm { .. })
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
        };
        assert_eq!(swarm, Ok(want));
    }
}
