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
    /// The last fetch that worked, and the last try.
    fetched: Option<Instant>,
    tried: Option<Instant>,
    asked: bool,
}

/// The fetches of one `serve`.
pub struct SourceFetcher {
    config: Arc<Config>,
    wake: Wake,
    seen: Mutex<HashMap<AppKey, Seen>>,
}

impl SourceFetcher {
    pub fn new(config: Arc<Config>, wake: Wake) -> Arc<SourceFetcher> {
        Arc::new(SourceFetcher {
            config,
            wake,
            seen: Mutex::default(),
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

    async fn run(&self, key: AppKey, wanted: WantedSource) {
        let before = build_source::read_resolved(&self.config.source_dir(&key));
        let fetched = build_source::fetch(&self.config, &key, &wanted.source).await;
        let mut seen = self.seen.lock().expect("seen");
        let s = seen.entry(key.clone()).or_default();
        s.running = false;
        match fetched {
            Ok(commit) => {
                s.fetched = Some(Instant::now());
                if before.is_none_or(|b| b.commit != commit) {
                    info!(app = %key, commit = %commit, reference = %wanted.source.reference, "fetched a new commit to build");
                }
            }
            Err(why) => {
                warn!(app = %key, url = %wanted.source.url, cause = %why, "cannot fetch the build's repository")
            }
        }
        // Woken either way: a new commit is built, a failure shows in the app's status.
        self.wake.wake(Trigger::Source);
    }
}

/// Whether an app's repository is to be fetched now: not while a fetch runs; when its ref is
/// not the one fetched (unless a try failed within [`RETRY`]), when asked, when `poll` ran out.
fn due(s: &Seen, current: bool, poll: Option<Duration>, now: Instant) -> bool {
    if s.running {
        return false;
    }
    let waited = |since: Option<Instant>, d: Duration| since.is_none_or(|t| now >= t + d);
    if !current || s.asked {
        return s.asked || waited(s.tried, RETRY);
    }
    poll.is_some_and(|p| waited(s.fetched.or(s.tried), p))
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
            fetched: Some(now),
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
    }
}
