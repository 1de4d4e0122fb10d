//! Retry timing for the serve loop, in the manner of kube-runtime's `error_policy`: a failed
//! change is retried after an exponentially growing delay, and a container that keeps exiting
//! is restarted with growing gaps and reported as crash-looping. Pure: callers pass `now`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::model::names::AppKey;

/// First retry delay.
pub const BASE: Duration = Duration::from_secs(1);
/// Longest delay between tries.
pub const MAX: Duration = Duration::from_secs(300);
/// Restarts inside this window count toward a crash loop.
pub const CRASH_WINDOW: Duration = Duration::from_secs(600);
/// Restarts in the window from which an app is shown as crash-looping.
pub const CRASH_LOOP_AT: usize = 3;

/// `BASE * 2^(n-1)`, capped at `MAX`; zero for `n == 0`.
pub fn delay(n: u32) -> Duration {
    if n == 0 {
        return Duration::ZERO;
    }
    BASE.saturating_mul(1u32 << (n - 1).min(16)).min(MAX)
}

/// Failure state of one app's changes.
#[derive(Debug, Clone)]
struct Failing {
    /// Consecutive failures.
    count: u32,
    /// No retry before this.
    retry_at: Instant,
    /// The desired spec hash that failed: an edit to the manifest retries at once.
    hash: Option<String>,
    /// The last error, for status.
    error: String,
}

/// Backoff bookkeeping for every app.
#[derive(Debug, Default)]
pub struct Backoffs {
    /// Apps whose last change failed.
    failing: HashMap<AppKey, Failing>,
    /// When berth restarted each app's exited container, newest last.
    restarts: HashMap<AppKey, VecDeque<Instant>>,
}

impl Backoffs {
    /// `Ok` if a change for `key` (wanting spec `hash`) may run now, else when it may.
    pub fn ready(
        &self,
        key: &AppKey,
        hash: Option<&str>,
        is_restart: bool,
        now: Instant,
    ) -> Result<(), Instant> {
        if let Some(f) = self.failing.get(key) {
            if f.hash.as_deref() == hash && now < f.retry_at {
                return Err(f.retry_at);
            }
        }
        if is_restart {
            if let Some(last) = self.restarts.get(key).and_then(|r| r.back()) {
                let at = *last + delay(self.recent_restarts(key, now) as u32);
                if now < at {
                    return Err(at);
                }
            }
        }
        Ok(())
    }

    /// Records a failed change; returns the delay before the next try.
    pub fn failed(
        &mut self,
        key: &AppKey,
        hash: Option<&str>,
        error: String,
        now: Instant,
    ) -> Duration {
        let f = self.failing.entry(key.clone()).or_insert(Failing {
            count: 0,
            retry_at: now,
            hash: None,
            error: String::new(),
        });
        if f.hash.as_deref() != hash {
            f.count = 0;
        }
        f.count += 1;
        f.hash = hash.map(str::to_owned);
        f.error = error;
        let d = delay(f.count);
        f.retry_at = now + d;
        d
    }

    /// Records a successful change. A new container starts with a clean crash history.
    pub fn succeeded(&mut self, key: &AppKey, new_container: bool) {
        self.failing.remove(key);
        if new_container {
            self.restarts.remove(key);
        }
    }

    /// Records that berth restarted an exited container.
    pub fn restarted(&mut self, key: &AppKey, now: Instant) {
        let r = self.restarts.entry(key.clone()).or_default();
        r.push_back(now);
        while r
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            r.pop_front();
        }
    }

    /// Restarts inside the crash window.
    pub fn recent_restarts(&self, key: &AppKey, now: Instant) -> usize {
        self.restarts.get(key).map_or(0, |r| {
            r.iter()
                .filter(|t| now.duration_since(**t) <= CRASH_WINDOW)
                .count()
        })
    }

    /// The last error of a failing app and its failure count.
    pub fn failure(&self, key: &AppKey) -> Option<(&str, u32)> {
        self.failing.get(key).map(|f| (f.error.as_str(), f.count))
    }

    /// Forgets apps that no longer exist anywhere.
    pub fn retain(&mut self, keep: impl Fn(&AppKey) -> bool) {
        self.failing.retain(|k, _| keep(k));
        self.restarts.retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k() -> AppKey {
        AppKey::new("alice", "a").unwrap()
    }

    #[test]
    fn delays_double_and_cap() {
        let ds: Vec<u64> = (0..12).map(|n| delay(n).as_secs()).collect();
        assert_eq!(ds, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(delay(u32::MAX), MAX);
    }

    #[test]
    fn failures_back_off_until_the_spec_changes() {
        let mut b = Backoffs::default();
        let t0 = Instant::now();
        assert_eq!(
            b.failed(&k(), Some("h1"), "boom".into(), t0),
            Duration::from_secs(1)
        );
        assert_eq!(
            b.failed(&k(), Some("h1"), "boom".into(), t0),
            Duration::from_secs(2)
        );
        assert_eq!(
            b.ready(&k(), Some("h1"), false, t0 + Duration::from_secs(1)),
            Err(t0 + Duration::from_secs(2))
        );
        assert!(b
            .ready(&k(), Some("h1"), false, t0 + Duration::from_secs(2))
            .is_ok());
        assert!(
            b.ready(&k(), Some("h2"), false, t0).is_ok(),
            "an edit retries at once"
        );
        assert_eq!(b.failure(&k()), Some(("boom", 2)));
        b.succeeded(&k(), false);
        assert!(b.failure(&k()).is_none());
    }

    #[test]
    fn restarts_space_out_and_count_as_a_crash_loop() {
        let mut b = Backoffs::default();
        let t0 = Instant::now();
        assert!(
            b.ready(&k(), None, true, t0).is_ok(),
            "first restart is immediate"
        );
        b.restarted(&k(), t0);
        assert_eq!(
            b.ready(&k(), None, true, t0),
            Err(t0 + Duration::from_secs(1))
        );
        b.restarted(&k(), t0 + Duration::from_secs(1));
        b.restarted(&k(), t0 + Duration::from_secs(3));
        assert_eq!(
            b.recent_restarts(&k(), t0 + Duration::from_secs(3)),
            CRASH_LOOP_AT
        );
        assert_eq!(
            b.ready(&k(), None, true, t0 + Duration::from_secs(3)),
            Err(t0 + Duration::from_secs(7))
        );
        assert_eq!(
            b.recent_restarts(&k(), t0 + CRASH_WINDOW + Duration::from_secs(4)),
            0
        );
        b.succeeded(&k(), true);
        assert!(b
            .ready(&k(), None, true, t0 + Duration::from_secs(3))
            .is_ok());
    }
}
