//! The API's policy check before a write (docs/guides/tenancy.md). The per-app rules are judged exactly as
//! the loop judges them (the state directory scanned, this file put in its place, the desired
//! state built). The rules shared between apps need the containers, which files cannot show,
//! so the API judges them by what the write changes, never by path order:
//! - a host port or domain the write newly asks for, which any other manifest asks for too, is
//!   refused (`port_taken`, `domain_conflict`); a claim the app's current file already has is
//!   never refused here, so a holder's own edits always pass (the loop's holder rule decides);
//! - a write that raises the memory the user's apps want to run with past
//!   `max_memory_per_user` is refused; one that does not raise it always passes.

use crate::model::config::Config;
use crate::model::desired::{DesiredState, Entry, Scan};
use crate::model::manifest::{Manifest, RunState};
use crate::model::names::AppKey;
use crate::model::policy::Violation;
use crate::model::resources::Memory;
use crate::state::scan::{scan, ScanError};

/// Why a write is not admitted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A policy rule refuses it.
    #[error("{0}")]
    Policy(Violation),
    /// The state directory could not be scanned to judge it.
    #[error(transparent)]
    Scan(#[from] ScanError),
}

/// Judges `manifest` (parsed from `text`) as `key`'s manifest among all the others. Blocking
/// (it reads the state directory): call it off the async workers.
pub fn admit(config: &Config, key: &AppKey, manifest: Manifest, text: &str) -> Result<(), Refusal> {
    let found = scan(&config.apps_state_dir(), &config.root)?;
    let current = match found.manifests.get(key) {
        Some(Ok((m, _))) => Some(m.clone()),
        _ => None,
    };
    let mut after = found.clone();
    after
        .manifests
        .insert(key.clone(), Ok((manifest.clone(), text.to_string())));
    claimed_elsewhere(&after, key, &manifest, current.as_ref())
        .map_or(Ok(()), |v| Err(Refusal::Policy(v)))?;
    let (before, after) = (build(found, config), build(after, config));
    if let Some(Entry::Refused(v)) = after.apps.get(key) {
        return Err(Refusal::Policy(v.clone()));
    }
    let limit = config.policy.rules(&key.userid).max_memory_per_user;
    let (was, will) = (
        wanted_memory(&before, &key.userid),
        wanted_memory(&after, &key.userid),
    );
    if will > limit && will > was {
        let message = format!(
            "user {}'s apps would want {} to run, over max_memory_per_user = {}",
            key.userid,
            Memory(will),
            Memory(limit)
        );
        return Err(Refusal::Policy(Violation {
            code: "user_memory_over_limit",
            message,
        }));
    }
    Ok(())
}

/// The desired state the rules are judged on. A built app's context is not read: no rule
/// looks at what it holds, and reading every built app's context twice per API write would
/// put a walk of every workspace on the write path.
fn build(mut found: Scan, config: &Config) -> DesiredState {
    found.contexts = crate::state::scan::unread_contexts(&found);
    crate::state::scan::desired_from(found, config)
}

/// The memory `user`'s valid apps that should run ask for, together.
fn wanted_memory(desired: &DesiredState, user: &str) -> u64 {
    desired
        .apps
        .iter()
        .filter(|(k, _)| k.userid == user)
        .filter_map(|(_, e)| match e {
            Entry::Valid(app) if app.run == RunState::Running => Some(app.spec.memory_total()),
            _ => None,
        })
        .sum()
}

/// A host port or domain that `new` asks for and `current` (the app's file now) does not,
/// which another manifest asks for.
fn claimed_elsewhere(
    found: &Scan,
    key: &AppKey,
    new: &Manifest,
    current: Option<&Manifest>,
) -> Option<Violation> {
    let port = new
        .host_port
        .map(|p| p.0)
        .filter(|p| current.is_none_or(|c| c.host_port.map(|x| x.0) != Some(*p)));
    let domain = new.domain.as_ref().map(|d| d.0.clone());
    let domain =
        domain.filter(|d| current.is_none_or(|c| c.domain.as_ref().map(|x| &x.0) != Some(d)));
    for (other, parsed) in &found.manifests {
        let Ok((theirs, _)) = parsed else { continue };
        if other == key {
            continue;
        }
        let who = if other.userid == key.userid {
            other.to_string()
        } else {
            "another user's app".into()
        };
        if port.is_some() && theirs.host_port.map(|p| p.0) == port {
            let message = format!("host port {} is held by {who}", port.unwrap_or(0));
            return Some(Violation {
                code: "port_taken",
                message,
            });
        }
        if domain.is_some() && theirs.domain.as_ref().map(|d| &d.0) == domain.as_ref() {
            let message = format!(
                "domain {} is held by {who}",
                domain.clone().unwrap_or_default()
            );
            return Some(Violation {
                code: "domain_conflict",
                message,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(files: &[(&str, &str)], policy: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("templates/t");
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("template.toml"), "image = \"x:1\"\nport = 3000\n").unwrap();
        for (path, text) in files {
            let p = dir.path().join("state/apps").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::write(dir.path().join("berth.toml"), policy).unwrap();
        let config = Config::load(None, Some(dir.path())).unwrap();
        (dir, config)
    }

    fn judge(config: &Config, app: &str, text: &str) -> Option<&'static str> {
        let (u, a) = app.split_once('/').unwrap();
        let m = Manifest::parse(std::path::Path::new("m.toml"), text).unwrap();
        match admit(config, &AppKey::new(u, a).unwrap(), m, text) {
            Ok(()) => None,
            Err(Refusal::Policy(v)) => Some(v.code),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_new_claim_on_a_held_port_is_refused_and_the_holders_edits_pass() {
        let held = "template = \"t\"\nhost_port = 8080\n";
        let (_d, c) = root(&[("zed/owner.toml", held)], "");
        assert_eq!(judge(&c, "aaa/thief", held), Some("port_taken"));
        let edited = "template = \"t\"\nhost_port = 8080\n[env]\nA = \"1\"\n";
        assert_eq!(judge(&c, "zed/owner", edited), None);
    }

    #[test]
    fn only_a_write_that_raises_a_users_memory_past_the_limit_is_refused() {
        let app = |mem: &str| format!("template = \"t\"\n[resources]\nmemory = \"{mem}\"\n");
        let files = [
            ("alice/aaa.toml", app("200m")),
            ("alice/zzz.toml", app("200m")),
        ];
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let (_d, c) = root(&files, "[policy]\nmax_memory_per_user = \"300m\"\n");
        let edited = format!("{}[env]\nA = \"1\"\n", app("200m"));
        assert_eq!(
            judge(&c, "alice/zzz", &edited),
            None,
            "no more memory than before"
        );
        assert_eq!(
            judge(&c, "alice/bbb", &app("100m")),
            Some("user_memory_over_limit")
        );
        let stopped = "template = \"t\"\nstate = \"stopped\"\n[resources]\nmemory = \"100m\"\n";
        assert_eq!(judge(&c, "alice/bbb", stopped), None);
    }

    #[test]
    fn a_swarm_apps_memory_counts_once_per_replica() {
        let swarm = "runtime = \"swarm\"\nregistry = \"127.0.0.1:5000\"\n\
                     [policy]\nmax_memory_per_user = \"500m\"\n";
        let (_d, c) = root(&[], swarm);
        let app =
            |n: u16| format!("template = \"t\"\nreplicas = {n}\n[resources]\nmemory = \"200m\"\n");
        assert_eq!(
            judge(&c, "alice/web", &app(2)),
            None,
            "2 x 200m fits in 500m"
        );
        assert_eq!(
            judge(&c, "alice/web", &app(3)),
            Some("user_memory_over_limit"),
            "3 x 200m is over 500m"
        );
    }
}
