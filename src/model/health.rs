//! Health checks (SPEC §9): `[health]` in template.toml, overridable field by field by
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
        Ok(HealthSettings {
            path: raw.path,
            timeout: raw.timeout,
            interval: raw.interval,
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

/// The check one app's new containers must pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `GET` this path on the container port; a 2xx or 3xx answer is healthy.
    pub path: String,
    /// The new container must be healthy within this.
    pub timeout: Duration,
    /// Time between two probes.
    pub interval: Duration,
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
        Some(HealthCheck {
            path,
            timeout,
            interval,
        })
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
        ] {
            let err = parse(&format!("[health]\n{text}")).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let long = format!("[health]\npath = \"/{}\"", "a".repeat(300));
        assert!(parse(&long).is_err());
    }
}
