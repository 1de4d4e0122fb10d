//! `[builds]` in berth.toml (docs/reference/berth-toml.md): how builds of apps with `[build]`
//! run on this node. A build runs the engine's BuildKit through a docker CLI that has it
//! (`docker`), at most `max_builds` at once; all running builds together may use `memory`
//! (the engine's BuildKit cgroup is held to it, so a build that needs more is killed, not
//! the server's apps) and each may take `timeout`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::model::resources::Memory;

/// The `[builds]` table; every key optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildLimits {
    /// Whether apps may have `[build]` at all. Off by default: a build runs the user's
    /// Dockerfile on the engine's shared BuildKit (docs/guides/builds.md#what-a-build-shares).
    pub enabled: bool,
    /// The docker CLI that runs builds: one with BuildKit built in (Debian's docker.io,
    /// 20.10) or with the buildx plugin.
    pub docker: PathBuf,
    /// Builds at once on this node.
    pub max_builds: usize,
    /// Memory all running builds may use together.
    pub memory: Memory,
    /// Time one build may take; then it is stopped and reported as timed out.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for BuildLimits {
    fn default() -> Self {
        BuildLimits {
            enabled: false,
            docker: "docker".into(),
            max_builds: 1,
            memory: Memory(1 << 30),
            timeout: Duration::from_secs(30 * 60),
        }
    }
}

impl BuildLimits {
    /// The ranges a node can live with.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=16).contains(&self.max_builds) {
            return Err(format!("max_builds = {}: must be 1 to 16", self.max_builds));
        }
        if self.memory.0 < 64 << 20 {
            return Err("memory: at least 64m (a build of anything needs that)".into());
        }
        if self.timeout < Duration::from_secs(10) {
            return Err("timeout: at least 10s".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_settings_are_refused_by_name() {
        for (text, key) in [
            ("max_builds = 0", "max_builds"),
            ("max_builds = 17", "max_builds"),
            ("memory = \"10m\"", "memory"),
            ("timeout = \"1s\"", "timeout"),
        ] {
            let l: BuildLimits = toml::from_str(text).unwrap();
            let e = l.check().unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
        let l: BuildLimits = toml::from_str("").unwrap();
        assert_eq!(l, BuildLimits::default());
        assert!(l.check().is_ok());
    }
}
