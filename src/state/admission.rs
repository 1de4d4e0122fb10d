//! The API's policy check before a write (SPEC §14): the manifest text is judged exactly as the
//! loop would judge it — the whole state directory scanned, this file put in its place, the
//! desired state built — so the API refuses with the rule's code what the loop would freeze.
//! Claims are judged more strictly than the loop can: without the container list, a port or
//! domain any other manifest asks for counts as held.

use std::collections::BTreeMap;

use crate::model::config::Config;
use crate::model::desired::{DesiredState, Entry};
use crate::model::manifest::Manifest;
use crate::model::names::AppKey;
use crate::model::policy::Violation;
use crate::model::source_error::SourceError;
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

/// Judges `manifest` (parsed from `text`) as `key`'s manifest among all the others.
pub fn admit(config: &Config, key: &AppKey, manifest: Manifest, text: &str) -> Result<(), Refusal> {
    let mut found = scan(&config.apps_state_dir(), &config.root)?;
    found
        .manifests
        .insert(key.clone(), Ok((manifest, text.to_string())));
    let mut templates: BTreeMap<String, Result<Template, SourceError>> = BTreeMap::new();
    let desired = DesiredState::build(found, config, &mut |id| {
        templates
            .entry(id.to_string())
            .or_insert_with(|| Template::load(config, id))
            .clone()
    });
    match desired.apps.get(key) {
        Some(Entry::Refused(v)) => Err(Refusal::Policy(v.clone())),
        Some(Entry::Valid(app)) => {
            claimed_elsewhere(&desired, key, &app.spec).map_or(Ok(()), |v| Err(Refusal::Policy(v)))
        }
        _ => Ok(()),
    }
}

/// A port or domain of `spec` that another valid manifest asks for.
fn claimed_elsewhere(
    desired: &DesiredState,
    key: &AppKey,
    spec: &crate::model::spec::ContainerSpec,
) -> Option<Violation> {
    desired
        .apps
        .iter()
        .filter(|(k, _)| *k != key)
        .find_map(|(other, entry)| {
            let Entry::Valid(app) = entry else {
                return None;
            };
            if spec.host_port.is_some() && app.spec.host_port == spec.host_port {
                let message = format!(
                    "host port {} is held by {other}",
                    spec.host_port.unwrap_or(0)
                );
                return Some(Violation {
                    code: "port_taken",
                    message,
                });
            }
            match (&spec.domain, &app.spec.domain) {
                (Some(d), Some(theirs)) if d == theirs => Some(Violation {
                    code: "domain_conflict",
                    message: format!("domain {d} is held by {other}"),
                }),
                _ => None,
            }
        })
}
