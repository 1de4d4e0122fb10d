//! Health checks (docs/guides/deploys-and-rollback.md): `[health]` in template.toml, overridable field by field by
//! `[health]` in a manifest. A new container must pass its check before it takes traffic or
//! replaces the old one; berth probes it itself (an HTTP GET from the host to the container's
//! address), so nothing here reaches Docker and nothing here is part of the spec hash.

use std::time::Duration;

use serde::Deserialize;

/// Longest `timeout` accepted: a rollout holds its app for at most this long.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Shortest `interval` accepted, so a check cannot hammer a booting app.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest `path` accepted.
const MAX_PATH: usize = 256;

/// `[health]` as written: every field optional, so a manifest can change one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, try_from = "RawHealth")]
pub struct HealthSettings {
    /// Request path.
    pub path: Option<String>,
    /// How long a new container has to become healthy.
    pub timeout: Option<Duration>,
    /// Time between two probes.
    pub interval: Option<Duration>,
    /// The command a Swarm task runs to check itself (`runtime = "swarm"`).
    pub probe: Option<Vec<String>>,
    /// Checked by a TCP connect instead of an HTTP request (a database).
    pub tcp: Option<bool>,
}

/// The fields as written (their docs are the schema's descriptions).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    /// Path to GET; a 2xx or 3xx answer is healthy. Default "/". Printable ASCII without
    /// spaces, starting with '/', at most 256 characters.
    #[schemars(regex(pattern = "^/[!-~]*$"), length(max = 256))]
    path: Option<String>,
    /// How long a new container has to become healthy: 1s to 600s (default "30s").
    #[serde(default, with = "humantime_serde")]
    #[schemars(schema_with = "crate::model::schema::duration")]
    timeout: Option<Duration>,
    /// Time between two probes: 100ms to 60s (default "500ms", at most the timeout).
    #[serde(default, with = "humantime_serde")]
    #[schemars(schema_with = "crate::model::schema::duration")]
    interval: Option<Duration>,
    /// With `runtime = "swarm"`, the command each task runs inside itself to check its health
    /// (berth cannot reach a task on another node to probe it): exit 0 is healthy. `{port}`
    /// and `{path}` are replaced by the app's port and the health path. 1 to 16 arguments, at
    /// most 1024 characters each. Ignored on one engine, where berth probes over HTTP.
    #[schemars(length(min = 1, max = 16))]
    probe: Option<Vec<String>>,
    /// `true`: healthy once the container accepts a TCP connection on its port, for a server
    /// that speaks no HTTP (a database); `path` is then unused. Default false.
    tcp: Option<bool>,
}

impl TryFrom<RawHealth> for HealthSettings {
    type Error = String;

    fn try_from(raw: RawHealth) -> Result<Self, String> {
        if let Some(path) = &raw.path {
            check_path(path)?;
        }
        if let Some(t) = raw.timeout {
            if t < Duration::from_secs(1) || t > MAX_TIMEOUT {
                return Err(format!(
                    "health timeout must be between 1s and {}s",
                    MAX_TIMEOUT.as_secs()
                ));
            }
        }
        if let Some(i) = raw.interval {
            if i < MIN_INTERVAL || i > Duration::from_secs(60) {
                return Err("health interval must be between 100ms and 60s".into());
            }
        }
        if let Some(p) = &raw.probe {
            check_probe(p)?;
        }
        Ok(HealthSettings {
            path: raw.path,
            timeout: raw.timeout,
            interval: raw.interval,
            probe: raw.probe,
            tcp: raw.tcp,
        })
    }
}

/// An absolute request path of printable ASCII: it goes into an HTTP request line as is.
fn check_path(path: &str) -> Result<(), String> {
    let printable = path.bytes().all(|b| b.is_ascii_graphic());
    if !path.starts_with('/') || !printable || path.len() > MAX_PATH {
        return Err(format!(
            "health path {path:?} must start with '/' and be at most {MAX_PATH} printable characters without spaces"
        ));
    }
    Ok(())
}

/// A probe command Docker can run: 1 to 16 arguments of 1 to 1024 characters, no NUL.
fn check_probe(probe: &[String]) -> Result<(), String> {
    let fits = |a: &String| !a.is_empty() && a.len() <= 1024 && !a.contains('\0');
    if probe.is_empty() || probe.len() > 16 || !probe.iter().all(fits) {
        return Err(
            "health probe must be 1 to 16 arguments of 1 to 1024 characters (no NUL)".into(),
        );
    }
    Ok(())
}

/// The check one app's new containers must pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `GET` this path on the container port; a 2xx or 3xx answer is healthy.
    pub path: String,
    /// The new container must be healthy within this.
    pub timeout: Duration,
    /// Time between two probes.
    pub interval: Duration,
    /// The command a Swarm task runs to check itself, `{port}` and `{path}` still in it.
    pub probe: Option<Vec<String>>,
    /// A TCP connect instead of `GET path`.
    pub tcp: bool,
}

impl HealthCheck {
    /// The template's check with the manifest's fields over it; none when neither declares
    /// `[health]`. An interval longer than the timeout is cut to it.
    pub fn resolve(
        template: Option<&HealthSettings>,
        manifest: Option<&HealthSettings>,
    ) -> Option<HealthCheck> {
        if template.is_none() && manifest.is_none() {
            return None;
        }
        let pick =
            |f: fn(&HealthSettings) -> Option<_>| manifest.and_then(f).or(template.and_then(f));
        let path = manifest
            .and_then(|m| m.path.clone())
            .or(template.and_then(|t| t.path.clone()))
            .unwrap_or_else(|| "/".into());
        let timeout = pick(|s| s.timeout).unwrap_or(Duration::from_secs(30));
        let interval = pick(|s| s.interval)
            .unwrap_or(Duration::from_millis(500))
            .min(timeout);
        let probe = manifest
            .and_then(|m| m.probe.clone())
            .or(template.and_then(|t| t.probe.clone()));
        let tcp = manifest
            .and_then(|m| m.tcp)
            .or(template.and_then(|t| t.tcp))
            .unwrap_or(false);
        Some(HealthCheck {
            path,
            timeout,
            interval,
            probe,
            tcp,
        })
    }

    /// The probe as a task runs it: `{port}` and `{path}` filled in.
    pub fn probe_for(&self, port: u16) -> Option<Vec<String>> {
        let fill = |a: &String| {
            a.replace("{port}", &port.to_string())
                .replace("{path}", &self.path)
        };
        Some(self.probe.as_ref()?.iter().map(fill).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HealthSettings, String> {
        #[derive(Deserialize)]
        struct Doc {
            health: HealthSettings,
        }
        toml::from_str::<Doc>(text)
            .map(|d| d.health)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn manifest_fields_override_the_template_one_by_one() {
        let t = parse("[health]\npath = \"/up\"\ntimeout = \"10s\"").unwrap();
        let m = parse("[health]\ntimeout = \"40s\"").unwrap();
        let h = HealthCheck::resolve(Some(&t), Some(&m)).unwrap();
        assert_eq!(h.path, "/up");
        assert_eq!(h.timeout, Duration::from_secs(40));
        assert_eq!(h.interval, Duration::from_millis(500));
        assert_eq!(HealthCheck::resolve(None, None), None);
        let only_manifest = HealthCheck::resolve(None, Some(&m)).unwrap();
        assert_eq!(only_manifest.path, "/");
    }

    #[test]
    fn a_probe_is_taken_from_the_manifest_first_and_filled_with_port_and_path() {
        let t = parse(
            "[health]\npath = \"/up\"\nprobe = [\"check\", \"http://127.0.0.1:{port}{path}\"]",
        )
        .unwrap();
        let h = HealthCheck::resolve(Some(&t), None).unwrap();
        let want = vec!["check".to_string(), "http://127.0.0.1:3000/up".to_string()];
        assert_eq!(h.probe_for(3000), Some(want));
        let m = parse("[health]\nprobe = [\"true\"]").unwrap();
        let h = HealthCheck::resolve(Some(&t), Some(&m)).unwrap();
        assert_eq!(h.probe_for(3000), Some(vec!["true".to_string()]));
        let none = HealthCheck::resolve(None, Some(&parse("[health]\npath = \"/\"").unwrap()));
        assert_eq!(none.unwrap().probe_for(3000), None);
    }

    #[test]
    fn interval_never_exceeds_timeout() {
        let s = parse("[health]\ntimeout = \"1s\"\ninterval = \"5s\"").unwrap();
        let h = HealthCheck::resolve(Some(&s), None).unwrap();
        assert_eq!(h.interval, Duration::from_secs(1));
    }

    #[test]
    fn hostile_settings_are_refused_with_the_rule() {
        for (text, needle) in [
            ("path = \"up\"", "must start with '/'"),
            ("path = \"/a b\"", "without spaces"),
            ("path = \"/a\\r\\nHost: x\"", "printable"),
            ("timeout = \"0s\"", "between 1s"),
            ("timeout = \"2h\"", "between 1s"),
            ("interval = \"1ms\"", "between 100ms"),
            ("timeout = \"soon\"", "invalid"),
            ("retries = 3", "unknown field"),
            ("probe = []", "1 to 16 arguments"),
            ("probe = [\"\"]", "1 to 16 arguments"),
            ("probe = [\"a\\u0000\"]", "no NUL"),
            ("probe = \"wget\"", "invalid type"),
        ] {
            let err = parse(&format!("[health]\n{text}")).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let long = format!("[health]\npath = \"/{}\"", "a".repeat(300));
        assert!(parse(&long).is_err());
    }
}
