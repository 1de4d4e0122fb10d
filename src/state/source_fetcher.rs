//! `berth serve`'s fetches of `[build] git` repositories (`state::build_source`), beside the
//! loop and never in it: each pass hands over the sources its manifests name, and an app's
//! repository is fetched when its ref is not the one fetched last, when its `poll` is due, or
//! when asked (`refetch`). One fetch per app at a time; a failed one is tried again after
//! [`RETRY`]. A fetch that lands on a new commit wakes the loop, whose next scan builds it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::model::config::Config;
use crate::model::git_source::WantedSource;
use crate::model::names::AppKey;
use crate::reconcile::trigger::{Trigger, Wake};
use crate::state::build_source;

/// A failed fetch waits this long before the next try.
pub const RETRY: Duration = Duration::from_secs(30);

/// What the fetcher remembers of one app.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    running: bool,
    /// The last try, failed or not.
    tried: Option<Instant>,
    asked: bool,
}

/// The fetches of one `serve`.
pub struct SourceFetcher {
    config: Arc<Config>,
    wake: Wake,
    seen: Mutex<HashMap<AppKey, Seen>>,
    /// The apps of the last sweep: sources are swept when that set changes, not every pass.
    swept: Mutex<Option<std::collections::BTreeSet<AppKey>>>,
}

impl SourceFetcher {
    pub fn new(config: Arc<Config>, wake: Wake) -> Arc<SourceFetcher> {
        Arc::new(SourceFetcher {
            config,
            wake,
            seen: Mutex::default(),
            swept: Mutex::default(),
        })
    }

    /// Asks for `key`'s repository to be fetched again at the next pass.
    pub fn refetch(&self, key: &AppKey) {
        self.seen
            .lock()
            .expect("seen")
            .entry(key.clone())
            .or_default()
            .asked = true;
        self.wake.wake(Trigger::Source);
    }

    /// Starts the fetches `sources` (this pass's manifests) call for now; with `all` (a pass
    /// `berth apply` asked for), every repository not being fetched already.
    pub fn want(
        self: &Arc<Self>,
        sources: &BTreeMap<AppKey, WantedSource>,
        all: bool,
        now: Instant,
    ) {
        let mut seen = self.seen.lock().expect("seen");
        seen.retain(|key, s| s.running || sources.contains_key(key));
        let keys: std::collections::BTreeSet<AppKey> = sources.keys().cloned().collect();
        let mut swept = self.swept.lock().expect("swept");
        if swept.as_ref() != Some(&keys) {
            self.sweep(sources, &seen);
            *swept = Some(keys);
        }
        drop(swept);
        for (key, wanted) in sources {
            let s = seen.entry(key.clone()).or_default();
            s.asked |= all;
            let current = build_source::resolved(&self.config, key, &wanted.source).is_ok();
            if !due(s, current, wanted.poll, now) {
                continue;
            }
            s.running = true;
            s.asked = false;
            s.tried = Some(now);
            let (me, key, wanted) = (self.clone(), key.clone(), wanted.clone());
            tokio::spawn(async move { me.run(key, wanted).await });
        }
    }

    /// Removes the sources of apps that no longer build from a repository (deleted, renamed,
    /// back to a workspace build): their space, and a stale commit a new app of the same name
    /// would otherwise be built from.
    fn sweep(&self, sources: &BTreeMap<AppKey, WantedSource>, seen: &HashMap<AppKey, Seen>) {
        let root = self.config.sources_dir();
        let Ok(users) = std::fs::read_dir(&root) else {
            return;
        };
        for user in users.flatten() {
            let Ok(apps) = std::fs::read_dir(user.path()) else {
                continue;
            };
            for app in apps.flatten() {
                let key = AppKey::new(
                    &user.file_name().to_string_lossy(),
                    &app.file_name().to_string_lossy(),
                );
                let Ok(key) = key else { continue };
                let busy = seen.get(&key).is_some_and(|s| s.running);
                if !busy && !sources.contains_key(&key) {
                    let _ = std::fs::remove_dir_all(app.path());
                }
            }
        }
    }

    async fn run(&self, key: AppKey, wanted: WantedSource) {
        let dir = self.config.source_dir(&key);
        let before = (
            build_source::read_resolved(&dir),
            build_source::read_error(&dir),
        );
        let fetched = build_source::fetch(&self.config, &key, &wanted.source).await;
        let after = (
            build_source::read_resolved(&dir),
            build_source::read_error(&dir),
        );
        let mut seen = self.seen.lock().expect("seen");
        let s = seen.entry(key.clone()).or_default();
        s.running = false;
        match fetched {
            Ok(commit) if before.0 != after.0 => {
                info!(app = %key, commit = %commit, reference = %wanted.source.reference, "fetched a new commit to build")
            }
            Ok(_) => {}
            Err(why) => {
                warn!(app = %key, url = %wanted.source.url, cause = %why, "cannot fetch the build's repository")
            }
        }
        drop(seen);
        // A new commit is built, a new failure shows in the app's status; the same answer
        // again needs no pass.
        if before != after {
            self.wake.wake(Trigger::Source);
        }
    }
}

/// Whether an app's repository is to be fetched now: not while a fetch runs; when its ref is
/// not the one fetched (unless a try failed within [`RETRY`]), when asked, when `poll` ran out.
fn due(s: &Seen, current: bool, poll: Option<Duration>, now: Instant) -> bool {
    if s.running {
        return false;
    }
    let waited = |d: Duration| s.tried.is_none_or(|t| now >= t + d);
    match (s.asked, current) {
        (true, _) => true,
        (false, false) => waited(RETRY),
        // From the last try, failed or not: a failing poll waits its interval too.
        (false, true) => poll.is_some_and(waited),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ref_not_fetched_is_fetched_and_a_failure_waits_its_retry() {
        let now = Instant::now();
        assert!(due(&Seen::default(), false, None, now));
        let failed = Seen {
            tried: Some(now),
            ..Seen::default()
        };
        assert!(!due(&failed, false, None, now + Duration::from_secs(5)));
        assert!(due(&failed, false, None, now + RETRY));
        let running = Seen {
            running: true,
            ..Seen::default()
        };
        assert!(!due(&running, false, None, now), "two fetches of one app");
    }

    #[test]
    fn a_current_ref_is_fetched_again_only_when_asked_or_its_poll_ran_out() {
        let now = Instant::now();
        let fetched = Seen {
            tried: Some(now),
            ..Seen::default()
        };
        assert!(!due(&fetched, true, None, now + Duration::from_secs(3600)));
        let poll = Some(Duration::from_secs(60));
        assert!(!due(&fetched, true, poll, now + Duration::from_secs(59)));
        assert!(due(&fetched, true, poll, now + Duration::from_secs(60)));
        let asked = Seen {
            asked: true,
            ..fetched
        };
        assert!(due(&asked, true, None, now));
        // A failing poll (the ref still fetched) waits its interval from the failed try.
        let failed_poll = Seen {
            tried: Some(now + Duration::from_secs(60)),
            ..fetched
        };
        assert!(!due(
            &failed_poll,
            true,
            poll,
            now + Duration::from_secs(61)
        ));
    }
}
