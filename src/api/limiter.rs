//! Failed-authentication limiter: after [`MAX_FAILURES`] bad tokens or keys from one source
//! address within [`WINDOW`], that address gets 429 until the window ends. Pure bookkeeping
//! with the clock passed in, so it is tested without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed per address per window.
pub const MAX_FAILURES: u32 = 10;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; beyond this, expired entries are dropped first.
const MAX_TRACKED: usize = 10_000;

/// Failure counts per source address.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    /// Address -> (failures, window start).
    seen: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailureLimiter {
    /// `Some(seconds to wait)` when `ip` is locked out at `now`.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let seen = self.seen.lock().expect("limiter");
        let (n, start) = *seen.get(&ip)?;
        let end = start + WINDOW;
        (n >= MAX_FAILURES && now < end).then(|| (end - now).as_secs().max(1))
    }

    /// Records one failed attempt from `ip` at `now`.
    pub fn fail(&self, ip: IpAddr, now: Instant) {
        let mut seen = self.seen.lock().expect("limiter");
        if seen.len() >= MAX_TRACKED {
            seen.retain(|_, (_, start)| now < *start + WINDOW);
        }
        let entry = seen.entry(ip).or_insert((0, now));
        if now >= entry.1 + WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_max_failures_until_the_window_ends() {
        let l = FailureLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(l.blocked(ip, t0), None, "after {i} failures");
            l.fail(ip, t0);
        }
        assert_eq!(l.blocked(ip, t0), Some(WINDOW.as_secs()));
        assert_eq!(l.blocked(ip, t0 + Duration::from_secs(59)), Some(1));
        assert_eq!(l.blocked(other, t0), None, "other addresses are unaffected");
        assert_eq!(l.blocked(ip, t0 + WINDOW), None);
        // A new window starts counting from zero.
        l.fail(ip, t0 + WINDOW);
        assert_eq!(l.blocked(ip, t0 + WINDOW), None);
    }
}
