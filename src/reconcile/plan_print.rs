//! How a plan reads to people: `berth plan`, `berth apply` and the API's plan print these
//! lines, one per change, then what is held back and why.

use std::fmt;

use super::plan::{Action, AppChange, Plan};

impl fmt::Display for AppChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.duplicates {
            writeln!(
                f,
                "  {:<24} remove duplicate {}",
                self.key.to_string(),
                d.name
            )?;
        }
        let Some(action) = &self.action else {
            return Ok(());
        };
        let and_start = |s: bool| if s { " and start" } else { " (stays stopped)" };
        let (what, why) = match action {
            Action::Create { start } => (
                format!("create{}", and_start(*start)),
                "no container yet".to_string(),
            ),
            Action::Recreate {
                start,
                changed,
                strategy,
                ..
            } => (
                format!("recreate{} ({})", and_start(*start), strategy.as_str()),
                format!("changed: {}", changed.join("; ")),
            ),
            Action::Settle { container } => (
                "settle".into(),
                format!("rename {} after an interrupted rollout", container.name),
            ),
            Action::Start {
                exited: Some(Some(code)),
                ..
            } => ("start".into(), format!("container exited with code {code}")),
            Action::Start {
                exited: Some(None), ..
            } => ("start".into(), "container is stopped".into()),
            Action::Start { exited: None, .. } => (
                "start".into(),
                "container was created but not started".into(),
            ),
            Action::Stop { .. } => ("stop".into(), "manifest says state = \"stopped\"".into()),
            Action::Rename { from, containers } => (
                format!("rename from {}", from.appname),
                match containers.first() {
                    Some(c) => format!("takes over {}, its volumes and workspace", c.name),
                    None => "takes over its volumes and workspace".to_string(),
                },
            ),
            Action::Remove { containers, .. } => {
                let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
                (
                    "remove".into(),
                    format!("no manifest; removes {}", names.join(", ")),
                )
            }
        };
        writeln!(f, "  {:<24} {:<26} {}", self.key.to_string(), what, why)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_noop() && self.prune_blocked.is_empty() && self.refused.is_empty() {
            writeln!(f, "no changes: the engine matches the manifests")?;
        }
        for c in &self.changes {
            write!(f, "{c}")?;
        }
        if !self.prune_blocked.is_empty() {
            let keys: Vec<String> = self.prune_blocked.iter().map(|k| k.to_string()).collect();
            writeln!(
                f,
                "prune blocked: {} apps would be removed ({}); nothing is removed until `berth apply --allow-mass-prune` (with serve stopped) or a confirmed `POST /prune/release`",
                keys.len(),
                keys.join(", ")
            )?;
        }
        for (k, r) in &self.refused {
            writeln!(
                f,
                "  {:<24} {:<26} {}\n  {:<24} (edit the manifest or deploy to try again)",
                k.to_string(),
                r.phase().as_str(),
                r.shown(),
                ""
            )?;
        }
        for k in &self.held {
            writeln!(
                f,
                "  {:<24} held (frozen or over quota): its container is left as it is",
                k.to_string()
            )?;
        }
        Ok(())
    }
}
