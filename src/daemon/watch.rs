//! Turns file-system events under `state/` and `templates/` into reconcile triggers. Only
//! events that can change desired state count: manifests and user directories under
//! `state/apps`, and anything in a template that is not hidden or a backup file. Reads (our own
//! scans) and `.git` churn never trigger a pass.

use std::path::{Component, Path};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::model::config::Config;
use crate::reconcile::trigger::{Trigger, Wake};
use crate::state::scan::is_ignored_file_name;

/// Watches the config's state and templates directories; `wake` is told of every
/// relevant event. Keep the returned watcher alive for as long as events are wanted.
pub fn watch(config: &Config, wake: Wake) -> notify::Result<RecommendedWatcher> {
    let apps = config.apps_state_dir();
    let templates = config.templates_dir.clone();
    let (apps_w, templates_w) = (apps.clone(), templates.clone());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        if event
            .paths
            .iter()
            .any(|p| is_relevant(&apps_w, &templates_w, p))
        {
            debug!(paths = ?event.paths, "file event");
            wake.wake(Trigger::File);
        }
    })?;
    watcher.watch(&apps, RecursiveMode::Recursive)?;
    watcher.watch(&templates, RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// Which directory a path names now (links followed): a replaced `state/` (renamed away, a
/// symlink swapped, a restore) has a new identity, and a watch on the old one sees nothing.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Keeps `watcher` pointed at the directories the config names: every `CHECK`, when one of
/// them has been replaced, watches it anew and wakes a pass (the swap may have changed any
/// manifest). Runs until `shutdown`.
/// `armed` says, for `/readyz` and `berth_watcher_armed`, whether the watch follows the
/// directories the config names.
pub async fn keep_armed(
    mut watcher: RecommendedWatcher,
    config: Arc<Config>,
    wake: Wake,
    armed: impl Fn(bool) + Send,
    shutdown: CancellationToken,
) {
    const CHECK: Duration = Duration::from_millis(500);
    let dirs = [config.apps_state_dir(), config.templates_dir.clone()];
    let mut seen: Vec<_> = dirs.iter().map(|d| identity(d)).collect();
    armed(seen.iter().all(Option::is_some));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CHECK) => {}
        }
        let now: Vec<_> = dirs.iter().map(|d| identity(d)).collect();
        if now == seen {
            armed(now.iter().all(Option::is_some));
            continue;
        }
        match watch(&config, wake.clone()) {
            Ok(fresh) => {
                info!("a watched directory was replaced; watching the new one");
                // The old watch follows a directory that is no longer the config's.
                drop(std::mem::replace(&mut watcher, fresh));
                seen = now;
                armed(true);
                wake.wake(Trigger::File);
            }
            // Gone for the moment (mid-swap): tried again next check.
            Err(e) => {
                armed(false);
                debug!(cause = %e, "cannot watch the replaced directories yet")
            }
        }
    }
}

/// Whether a changed path can change desired state.
pub fn is_relevant(apps_dir: &Path, templates_dir: &Path, path: &Path) -> bool {
    let names = |rel: &Path| -> Option<Vec<String>> {
        rel.components()
            .map(|c| match c {
                Component::Normal(n) => n.to_str().map(str::to_owned),
                _ => None,
            })
            .collect()
    };
    if let Ok(rel) = path.strip_prefix(apps_dir) {
        return match names(rel).as_deref() {
            Some([user]) => !user.starts_with('.'),
            Some([user, file]) => !user.starts_with('.') && !is_ignored_file_name(file),
            _ => false,
        };
    }
    if let Ok(rel) = path.strip_prefix(templates_dir) {
        return names(rel).is_some_and(|parts| {
            !parts.is_empty()
                && parts
                    .iter()
                    .all(|p| !p.starts_with('.') && !p.ends_with('~'))
        });
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_manifests_and_template_files_are_relevant() {
        let (a, t) = (Path::new("/r/state/apps"), Path::new("/r/templates"));
        let yes = [
            "/r/state/apps/alice",
            "/r/state/apps/alice/hello.toml",
            "/r/templates/node-lite-v1/template.toml",
            "/r/templates/x/hooks/pre-create",
        ];
        let no = [
            "/r/state/apps/alice/.hello.toml.swp",
            "/r/state/apps/alice/hello.toml~",
            "/r/state/apps/alice/notes.txt",
            "/r/state/apps/.git/index",
            "/r/state/apps/alice/sub/x.toml",
            "/r/state/README.md",
            "/r/state/.git/HEAD",
            "/r/templates/x/.template.toml.swp",
            "/r/templates/x/template.toml~",
            "/r/apps/alice/hello/server.js",
        ];
        for p in yes {
            assert!(is_relevant(a, t, Path::new(p)), "{p}");
        }
        for p in no {
            assert!(!is_relevant(a, t, Path::new(p)), "{p}");
        }
    }
}
