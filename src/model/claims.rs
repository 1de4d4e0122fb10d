//! Who holds each host port and domain (SPEC §14). A port or domain belongs to the app whose
//! container has it, running or stopped, for as long as that app's manifest still asks for it
//! (or is frozen, so berth cannot tell); only when the holder's manifest gives it up or is
//! deleted is it free. A free one goes to the first manifest in path order that asks. Every
//! other app asking is refused (`port_taken`, `domain_conflict`) and held like a frozen app, so
//! a thief never gets a port because its holder stopped.

use std::collections::BTreeMap;

use crate::model::desired::{DesiredState, Entry};
use crate::model::names::AppKey;
use crate::model::observed::Observed;
use crate::model::policy::Violation;

/// One thing only one app may have.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Claim {
    Port(u16),
    Domain(String),
}

impl Claim {
    fn refuse(&self, holder: &AppKey) -> Violation {
        match self {
            Claim::Port(p) => Violation {
                code: "port_taken",
                message: format!("host port {p} is held by {holder}"),
            },
            Claim::Domain(d) => Violation {
                code: "domain_conflict",
                message: format!("domain {d} is held by {holder}"),
            },
        }
    }
}

/// What an entry asks for; `None` when its manifest cannot be read (frozen, over quota,
/// refused), so what its container holds stays held.
fn wanted(entry: &Entry) -> Option<Vec<Claim>> {
    let Entry::Valid(app) = entry else {
        return None;
    };
    let port = app.spec.host_port.map(Claim::Port);
    let domain = app.spec.domain.clone().map(Claim::Domain);
    Some(port.into_iter().chain(domain).collect())
}

/// The claims containers hold for apps whose manifests still want them (or are held).
fn held(desired: &DesiredState, observed: &[Observed]) -> BTreeMap<Claim, AppKey> {
    let mut out = BTreeMap::new();
    for o in observed {
        let Some(spec) = &o.spec else { continue };
        let has = spec
            .host_port
            .map(Claim::Port)
            .into_iter()
            .chain(spec.domain.clone().map(Claim::Domain));
        for claim in has {
            let keeps = match desired.apps.get(&o.key) {
                None => desired.frozen_users.contains_key(&o.key.userid),
                Some(entry) => wanted(entry).is_none_or(|w| w.contains(&claim)),
            };
            if keeps {
                out.entry(claim).or_insert_with(|| o.key.clone());
            }
        }
    }
    out
}

/// Refuses every valid app that asks for a port or domain another app holds or was given
/// first (path order) in this pass.
pub fn resolve(desired: &mut DesiredState, observed: &[Observed]) {
    let mut owner = held(desired, observed);
    for (key, entry) in desired.apps.iter_mut() {
        let Some(claims) = wanted(entry) else {
            continue;
        };
        let taken = claims
            .iter()
            .find_map(|c| owner.get(c).filter(|h| *h != key).map(|h| c.refuse(h)));
        match taken {
            Some(v) => *entry = Entry::Refused(v),
            None => {
                for c in claims {
                    owner.insert(c, key.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{app, container, desired, key};
    use crate::model::observed::ContainerState;

    fn with_port(k: &str, port: u16) -> (AppKey, Entry) {
        app(k, &format!("template = \"web-v1\"\nhost_port = {port}\n"))
    }

    /// A container of `k` publishing `port`, running or not.
    fn holding(k: &str, port: u16, state: ContainerState) -> Observed {
        let (_, Entry::Valid(a)) = with_port(k, port) else {
            unreachable!()
        };
        let mut c = container(k, "c", &a.hash, state);
        c.spec = Some(a.spec.clone());
        c
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
            resolve(&mut d, &[holding("zed/owner", 8080, state)]);
            assert_eq!(refused(&d, "aaa/thief"), Some("port_taken"));
            assert_eq!(refused(&d, "zed/owner"), None);
        }
    }

    #[test]
    fn a_free_port_goes_to_the_first_in_path_order() {
        let mut d = desired(vec![with_port("bob/b", 9000), with_port("alice/a", 9000)]);
        resolve(&mut d, &[]);
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
        resolve(&mut moved, std::slice::from_ref(&holder));
        assert_eq!(refused(&moved, "aaa/next"), None);
        let mut deleted = desired(vec![with_port("aaa/next", 8080)]);
        resolve(&mut deleted, &[holder]);
        assert_eq!(refused(&deleted, "aaa/next"), None);
    }

    #[test]
    fn a_frozen_holder_keeps_what_its_container_has() {
        let holder = holding("zed/owner", 8080, ContainerState::Running);
        let frozen = (key("zed/owner"), Entry::Frozen("bad toml".into()));
        let mut d = desired(vec![with_port("aaa/thief", 8080), frozen]);
        resolve(&mut d, &[holder]);
        assert_eq!(refused(&d, "aaa/thief"), Some("port_taken"));
    }

    #[test]
    fn domains_are_held_like_ports() {
        let m = |port| {
            format!("template = \"web-v1\"\ndomain = \"shop.example.com\"\nhost_port = {port}\n")
        };
        let mut d = desired(vec![app("alice/a", &m(8001)), app("bob/b", &m(8002))]);
        resolve(&mut d, &[]);
        assert_eq!(refused(&d, "bob/b"), Some("domain_conflict"));
        let Entry::Refused(v) = &d.apps[&key("bob/b")] else {
            unreachable!()
        };
        assert!(v.message.contains("alice/a"), "{v}");
    }
}
