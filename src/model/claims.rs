//! What apps share and only one may have (docs/guides/tenancy.md): host ports, domains, and a user's memory.
//!
//! A port or domain belongs to the app that has it — its container (running or stopped), or,
//! while its container is being replaced or its create is being retried, the app that owned it
//! last pass — for as long as that app's manifest still asks for it (or is held, so berth
//! cannot tell). Only when the owner's manifest gives it up or is deleted is it free; a free one
//! goes to the first manifest in path order that asks. Every other app asking is refused
//! (`port_taken`, `domain_conflict`) and held like a frozen app.
//!
//! A user's memory (`max_memory_per_user`) counts, first, the containers that run now (held
//! apps' included, at what they run with), then the apps that want to run, in path order: an app
//! that already runs is never pushed out by a newcomer earlier in path order.

use std::collections::BTreeMap;

use crate::model::desired::{DesiredState, Entry};
use crate::model::manifest::RunState;
use crate::model::names::AppKey;
use crate::model::observed::Observed;
use crate::model::policy::{Policy, Violation};
use crate::model::resources::Memory;

/// One thing only one app may have.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Claim {
    /// A host port.
    Port(u16),
    /// A domain.
    Domain(String),
}

/// Who has each claim after a pass; the next pass starts from it.
pub type Owners = BTreeMap<Claim, AppKey>;

impl Claim {
    fn refuse(&self, holder: &AppKey, asker: &AppKey) -> Violation {
        // Another user's app names are theirs: say only that one holds it.
        let who = if holder.userid == asker.userid {
            holder.to_string()
        } else {
            "another user's app".to_string()
        };
        match self {
            Claim::Port(p) => Violation {
                code: "port_taken",
                message: format!("host port {p} is held by {who}"),
            },
            Claim::Domain(d) => Violation {
                code: "domain_conflict",
                message: format!("domain {d} is held by {who}"),
            },
        }
    }
}

/// What an entry asks for; `None` when its manifest cannot be read (frozen, over quota,
/// refused), so what it has stays its own.
fn wanted(entry: &Entry) -> Option<Vec<Claim>> {
    let Entry::Valid(app) = entry else {
        return None;
    };
    let port = app.spec.host_port.map(Claim::Port);
    let domain = app.spec.domain.clone().map(Claim::Domain);
    Some(port.into_iter().chain(domain).collect())
}

/// Whether `key`'s manifest still asks for `claim` (or cannot say).
fn keeps(desired: &DesiredState, key: &AppKey, claim: &Claim) -> bool {
    match desired.apps.get(key) {
        None => desired.frozen_users.contains_key(&key.userid),
        Some(entry) => wanted(entry).is_none_or(|w| w.contains(claim)),
    }
}

/// The claims that are had: by containers, else by last pass's owner. Of two containers with
/// one claim, last pass's owner keeps it.
fn held(desired: &DesiredState, observed: &[Observed], previous: &Owners) -> Owners {
    let mut out = Owners::new();
    for o in observed {
        let Some(spec) = &o.spec else { continue };
        let port = spec.host_port.map(Claim::Port);
        for claim in port
            .into_iter()
            .chain(spec.domain.clone().map(Claim::Domain))
        {
            if !keeps(desired, &o.key, &claim) {
                continue;
            }
            let theirs = previous.get(&claim) == Some(&o.key);
            if theirs || !out.contains_key(&claim) {
                out.insert(claim, o.key.clone());
            }
        }
    }
    for (claim, key) in previous {
        if !out.contains_key(claim) && keeps(desired, key, claim) {
            out.insert(claim.clone(), key.clone());
        }
    }
    out
}

/// Refuses every valid app that asks for a port or domain another app has (or was given first
/// in path order this pass), then every app past its user's memory; returns the owners.
pub fn resolve(
    desired: &mut DesiredState,
    observed: &[Observed],
    previous: &Owners,
    policy: &Policy,
) -> Owners {
    // A renamed app has what its old name's containers have, as if they were its own.
    let (taken_over, previous) = as_renamed(desired, observed, previous);
    let observed = taken_over.as_deref().unwrap_or(observed);
    let previous = &previous;
    let mut owner = held(desired, observed, previous);
    for (key, entry) in desired.apps.iter_mut() {
        let Some(claims) = wanted(entry) else {
            continue;
        };
        let taken = claims
            .iter()
            .find_map(|c| owner.get(c).filter(|h| *h != key).map(|h| c.refuse(h, key)));
        match taken {
            Some(v) => *entry = Entry::Refused(v),
            None => {
                for c in claims {
                    owner.insert(c, key.clone());
                }
            }
        }
    }
    limit_memory(desired, observed, policy);
    // What the next pass remembers: claims of apps that got them, and of containers that have
    // them; not those of an app refused meanwhile that never had one.
    owner.retain(|claim, key| {
        matches!(desired.apps.get(key), Some(Entry::Valid(_))) || has(observed, key, claim)
    });
    owner
}

/// `observed` and `previous` with each renamed app's old name read as its new one (no copy
/// of the containers when nothing is being renamed).
fn as_renamed(
    desired: &DesiredState,
    observed: &[Observed],
    previous: &Owners,
) -> (Option<Vec<Observed>>, Owners) {
    let new_name = |k: &AppKey| desired.renames.get(k).unwrap_or(k).clone();
    let previous = previous
        .iter()
        .map(|(c, k)| (c.clone(), new_name(k)))
        .collect();
    if desired.renames.is_empty() {
        return (None, previous);
    }
    let renamed = observed
        .iter()
        .map(|o| Observed {
            key: new_name(&o.key),
            ..o.clone()
        })
        .collect();
    (Some(renamed), previous)
}

/// Whether a container of `key` has `claim`.
fn has(observed: &[Observed], key: &AppKey, claim: &Claim) -> bool {
    observed
        .iter()
        .filter(|o| &o.key == key)
        .filter_map(|o| o.spec.as_ref())
        .any(|s| match claim {
            Claim::Port(p) => s.host_port == Some(*p),
            Claim::Domain(d) => s.domain.as_ref() == Some(d),
        })
}

/// Refuses the valid apps that would take a user past `max_memory_per_user`: running
/// containers count first, then the apps that want to run, in path order.
fn limit_memory(desired: &mut DesiredState, observed: &[Observed], policy: &Policy) {
    let mut used: BTreeMap<String, u64> = BTreeMap::new();
    let running: Vec<&Observed> = observed.iter().filter(|o| o.is_running()).collect();
    let runs = |key: &AppKey| running.iter().any(|o| &o.key == key);
    for o in &running {
        let held = !matches!(desired.apps.get(&o.key), Some(Entry::Valid(_)));
        if let (true, Some(spec)) = (held, &o.spec) {
            *used.entry(o.key.userid.clone()).or_default() += spec.memory_total();
        }
    }
    let mut order: Vec<AppKey> = desired.apps.keys().cloned().collect();
    order.sort_by_key(|k| !runs(k));
    for key in order {
        let Some(Entry::Valid(app)) = desired.apps.get(&key) else {
            continue;
        };
        if app.run != RunState::Running {
            continue;
        }
        let limit = policy.rules(&key.userid).max_memory_per_user;
        let sum = used.entry(key.userid.clone()).or_default();
        let wants = app.spec.memory_total();
        if *sum + wants <= limit {
            *sum += wants;
            continue;
        }
        let message = format!(
            "user {}'s running apps would use {} (others use {}), over max_memory_per_user = {}",
            key.userid,
            Memory(*sum + wants),
            Memory(*sum),
            Memory(limit)
        );
        let v = Violation {
            code: "user_memory_over_limit",
            message,
        };
        desired.apps.insert(key, Entry::Refused(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{app, desired, key, wanted_container};
    use crate::model::observed::ContainerState;
    use crate::model::policy::Policy;

    fn with_port(k: &str, port: u16) -> (AppKey, Entry) {
        app(k, &format!("template = \"web-v1\"\nhost_port = {port}\n"))
    }

    /// A container of `k` publishing `port`, running or not.
    fn holding(k: &str, port: u16, state: ContainerState) -> Observed {
        wanted_container(&desired(vec![with_port(k, port)]), k, "c", state)
    }

    fn refused(d: &DesiredState, k: &str) -> Option<&'static str> {
        match &d.apps[&key(k)] {
            Entry::Refused(v) => Some(v.code),
            _ => None,
        }
    }

    #[test]
    fn the_container_holding_a_port_keeps_it_whoever_comes_first() {
        for state in [ContainerState::Running, ContainerState::Exited(Some(0))] {
            let mut d = desired(vec![
                with_port("aaa/thief", 8080),
                with_port("zed/owner", 8080),
            ]);
            resolve(
                &mut d,
                &[holding("zed/owner", 8080, state)],
                &Owners::new(),
                &Policy::default(),
            );
            assert_eq!(refused(&d, "aaa/thief"), Some("port_taken"));
            assert_eq!(refused(&d, "zed/owner"), None);
        }
    }

    #[test]
    fn a_renamed_app_keeps_what_its_old_name_holds_and_its_memory_counts_once() {
        let renamed = "template = \"web-v1\"\nrenamed_from = \"old\"\nhost_port = 8080\n";
        let mut d = desired(vec![
            with_port("alice/aaa", 8080),
            app("alice/new", renamed),
        ]);
        let old = holding("alice/old", 8080, ContainerState::Running);
        let previous = Owners::from([(Claim::Port(8080), key("alice/old"))]);
        let file: crate::model::policy::PolicyFile =
            toml::from_str("max_memory_per_user = \"300m\"").unwrap();
        let policy = Policy::resolve(&file).unwrap();
        let owners = resolve(&mut d, &[old], &previous, &policy);
        assert_eq!(
            refused(&d, "alice/new"),
            None,
            "not refused for port or memory"
        );
        assert_eq!(refused(&d, "alice/aaa"), Some("port_taken"));
        assert_eq!(owners[&Claim::Port(8080)], key("alice/new"));
    }

    #[test]
    fn a_free_port_goes_to_the_first_in_path_order() {
        let mut d = desired(vec![with_port("bob/b", 9000), with_port("alice/a", 9000)]);
        resolve(&mut d, &[], &Owners::new(), &Policy::default());
        assert_eq!(refused(&d, "alice/a"), None);
        assert_eq!(refused(&d, "bob/b"), Some("port_taken"));
    }

    #[test]
    fn a_holder_that_gives_the_port_up_or_is_deleted_frees_it() {
        let holder = holding("zed/owner", 8080, ContainerState::Running);
        let mut moved = desired(vec![
            with_port("aaa/next", 8080),
            with_port("zed/owner", 9090),
        ]);
        resolve(
            &mut moved,
            std::slice::from_ref(&holder),
            &Owners::new(),
            &Policy::default(),
        );
        assert_eq!(refused(&moved, "aaa/next"), None);
        let mut deleted = desired(vec![with_port("aaa/next", 8080)]);
        resolve(&mut deleted, &[holder], &Owners::new(), &Policy::default());
        assert_eq!(refused(&deleted, "aaa/next"), None);
    }

    #[test]
    fn a_frozen_holder_keeps_what_its_container_has() {
        let holder = holding("zed/owner", 8080, ContainerState::Running);
        let frozen = (key("zed/owner"), Entry::Frozen("bad toml".into()));
        let mut d = desired(vec![with_port("aaa/thief", 8080), frozen]);
        resolve(&mut d, &[holder], &Owners::new(), &Policy::default());
        assert_eq!(refused(&d, "aaa/thief"), Some("port_taken"));
    }

    #[test]
    fn domains_are_held_like_ports() {
        let m = |port| {
            format!("template = \"web-v1\"\ndomain = \"shop.example.com\"\nhost_port = {port}\n")
        };
        let mut d = desired(vec![app("alice/a", &m(8001)), app("bob/b", &m(8002))]);
        resolve(&mut d, &[], &Owners::new(), &Policy::default());
        assert_eq!(refused(&d, "bob/b"), Some("domain_conflict"));
        let Entry::Refused(v) = &d.apps[&key("bob/b")] else {
            unreachable!()
        };
        assert!(v.message.contains("another user's app"), "{v}");
    }

    #[test]
    fn while_its_container_is_replaced_the_owner_keeps_what_it_had() {
        let mut first = desired(vec![
            with_port("aaa/thief", 8080),
            with_port("zed/owner", 8080),
        ]);
        let holder = holding("zed/owner", 8080, ContainerState::Running);
        let owners = resolve(&mut first, &[holder], &Owners::new(), &Policy::default());
        assert_eq!(owners[&Claim::Port(8080)], key("zed/owner"));
        // Next pass: the owner's old container is gone (recreate in flight), none is new yet.
        let mut next = desired(vec![
            with_port("aaa/thief", 8080),
            with_port("zed/owner", 8080),
        ]);
        let again = resolve(&mut next, &[], &owners, &Policy::default());
        assert_eq!(refused(&next, "aaa/thief"), Some("port_taken"));
        assert_eq!(again[&Claim::Port(8080)], key("zed/owner"));
        // Both have a container (the thief's from before): the owner of last pass keeps it.
        let both = [
            holding("aaa/thief", 8080, ContainerState::Running),
            holding("zed/owner", 8080, ContainerState::Running),
        ];
        let mut third = desired(vec![
            with_port("aaa/thief", 8080),
            with_port("zed/owner", 8080),
        ]);
        resolve(&mut third, &both, &again, &Policy::default());
        assert_eq!(refused(&third, "aaa/thief"), Some("port_taken"));
    }

    fn memory_app(k: &str, mem: &str) -> (AppKey, Entry) {
        app(
            k,
            &format!("template = \"web-v1\"\n[resources]\nmemory = \"{mem}\"\n"),
        )
    }

    #[test]
    fn an_app_that_runs_is_never_pushed_out_by_a_newcomer_earlier_in_path_order() {
        let policy: Policy = {
            let file: crate::model::policy::PolicyFile =
                toml::from_str("max_memory_per_user = \"300m\"").unwrap();
            Policy::resolve(&file).unwrap()
        };
        let mut d = desired(vec![
            memory_app("alice/aaa", "200m"),
            memory_app("alice/zzz", "200m"),
        ]);
        let running = wanted_container(&d, "alice/zzz", "c", ContainerState::Running);
        resolve(
            &mut d,
            std::slice::from_ref(&running),
            &Owners::new(),
            &policy,
        );
        assert_eq!(refused(&d, "alice/aaa"), Some("user_memory_over_limit"));
        assert_eq!(refused(&d, "alice/zzz"), None);
        // A held app's running container counts at what it runs with.
        let mut held = desired(vec![
            memory_app("alice/aaa", "200m"),
            (key("alice/zzz"), Entry::Frozen("bad".into())),
        ]);
        resolve(&mut held, &[running], &Owners::new(), &policy);
        assert_eq!(refused(&held, "alice/aaa"), Some("user_memory_over_limit"));
    }

    #[test]
    fn a_swarm_app_counts_its_memory_once_per_replica() {
        let policy: Policy = {
            let file: crate::model::policy::PolicyFile =
                toml::from_str("max_memory_per_user = \"500m\"").unwrap();
            Policy::resolve(&file).unwrap()
        };
        let replicated = |k: &str, n: u16| {
            let (key, mut e) = memory_app(k, "200m");
            if let Entry::Valid(app) = &mut e {
                app.spec.replicas = Some(n);
            }
            (key, e)
        };
        let mut d = desired(vec![replicated("alice/web", 3)]);
        resolve(&mut d, &[], &Owners::new(), &policy);
        assert_eq!(
            refused(&d, "alice/web"),
            Some("user_memory_over_limit"),
            "3 x 200m is 600m, over 500m"
        );
        // A running service holds memory x replicas too: a newcomer cannot fit beside it.
        let mut d = desired(vec![
            replicated("alice/web", 2),
            memory_app("alice/api", "200m"),
        ]);
        let running = wanted_container(&d, "alice/web", "c", ContainerState::Running);
        d.apps.insert(key("alice/web"), Entry::Frozen("bad".into()));
        resolve(&mut d, &[running], &Owners::new(), &policy);
        assert_eq!(refused(&d, "alice/api"), Some("user_memory_over_limit"));
    }
}
