//! The API's policy check before a write (SPEC §14): the manifest text is judged as the loop
//! would judge it — the whole state directory scanned, this file put in its place, the desired
//! state built and its shared claims (ports, domains, a user's memory) settled — so the API
//! refuses with the rule's code what the loop would freeze. Without the container list the
//! check is stricter than the loop in one way: a port or domain that another manifest asks for
//! counts as held, unless the app's current file already asks for it too (then the loop's
//! holder rule decides, and the holder's own edits are never refused for it).

use std::collections::BTreeMap;

use crate::model::claims::{resolve, Owners};
use crate::model::config::Config;
use crate::model::desired::{DesiredState, Entry, Scan};
use crate::model::manifest::Manifest;
use crate::model::names::AppKey;
use crate::model::policy::Violation;
use crate::model::source_error::SourceError;
use crate::model::spec::ContainerSpec;
use crate::model::template::Template;
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
    let mut after_scan = found.clone();
    after_scan
        .manifests
        .insert(key.clone(), Ok((manifest, text.to_string())));
    let before = settle(found, config);
    let after = settle(after_scan, config);
    if let Some(Entry::Refused(v)) = after.apps.get(key) {
        return Err(Refusal::Policy(v.clone()));
    }
    // A write must not push another app of the user out (their memory is shared).
    let pushed = after.apps.iter().find(|(k, e)| {
        *k != key
            && k.userid == key.userid
            && matches!(e, Entry::Refused(_))
            && matches!(before.apps.get(*k), Some(Entry::Valid(_)))
    });
    if let Some((other, Entry::Refused(v))) = pushed {
        let message = format!("this change would stop {other}: {}", v.message);
        return Err(Refusal::Policy(Violation {
            code: v.code,
            message,
        }));
    }
    match (after.apps.get(key), before.apps.get(key)) {
        (Some(Entry::Valid(app)), current) => {
            let had = match current {
                Some(Entry::Valid(a)) => Some(&a.spec),
                _ => None,
            };
            claimed_elsewhere(&after, key, &app.spec, had)
                .map_or(Ok(()), |v| Err(Refusal::Policy(v)))
        }
        _ => Ok(()),
    }
}

/// The desired state of `found` with the shared claims settled as far as files can tell.
fn settle(found: Scan, config: &Config) -> DesiredState {
    let mut templates: BTreeMap<String, Result<Template, SourceError>> = BTreeMap::new();
    let mut desired = DesiredState::build(found, config, &mut |id| {
        templates
            .entry(id.to_string())
            .or_insert_with(|| Template::load(config, id))
            .clone()
    });
    resolve(&mut desired, &[], &Owners::new(), &config.policy);
    desired
}

/// A port or domain of `spec`, new to this app (`had` is its current spec), that another
/// manifest asks for.
fn claimed_elsewhere(
    desired: &DesiredState,
    key: &AppKey,
    spec: &ContainerSpec,
    had: Option<&ContainerSpec>,
) -> Option<Violation> {
    let new_port = spec
        .host_port
        .filter(|p| had.is_none_or(|h| h.host_port != Some(*p)));
    let new_domain = spec
        .domain
        .as_ref()
        .filter(|d| had.is_none_or(|h| h.domain.as_ref() != Some(*d)));
    let others = desired.apps.iter().filter(|(k, _)| *k != key);
    for (other, entry) in others {
        let theirs = match entry {
            Entry::Valid(app) => &app.spec,
            Entry::Refused(_) | Entry::Frozen(_) | Entry::OverQuota(_) => continue,
        };
        let who = if other.userid == key.userid {
            other.to_string()
        } else {
            "another user's app".into()
        };
        if new_port.is_some() && theirs.host_port == new_port {
            let message = format!("host port {} is held by {who}", new_port.unwrap_or(0));
            return Some(Violation {
                code: "port_taken",
                message,
            });
        }
        if new_domain.is_some() && theirs.domain.as_ref() == new_domain {
            let message = format!(
                "domain {} is held by {who}",
                new_domain.cloned().unwrap_or_default()
            );
            return Some(Violation {
                code: "domain_conflict",
                message,
            });
        }
    }
    None
}
