//! Failed-authentication limiter: after [`MAX_FAILURES`] bad tokens or keys from one source
//! address within [`WINDOW`], that address gets 429 until the window ends. IPv6 addresses
//! count per /64, since one host usually holds a whole /64. Pure bookkeeping with the clock
//! passed in, so it is tested without sleeping.

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

/// The unit that is counted: the address itself for IPv4, its /64 for IPv6.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl FailureLimiter {
    /// `Some(seconds to wait)` when `ip` is locked out at `now`.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let seen = self.seen.lock().expect("limiter");
        let (n, start) = *seen.get(&bucket(ip))?;
        let end = start + WINDOW;
        (n >= MAX_FAILURES && now < end).then(|| (end - now).as_secs().max(1))
    }

    /// Records one failed attempt from `ip` at `now`.
    pub fn fail(&self, ip: IpAddr, now: Instant) {
        let ip = bucket(ip);
        let mut seen = self.seen.lock().expect("limiter");
        if seen.len() >= MAX_TRACKED && !seen.contains_key(&ip) {
            seen.retain(|_, (_, start)| now < *start + WINDOW);
            // Still full of live entries: forget the oldest window, so memory stays bounded.
            if seen.len() >= MAX_TRACKED {
                if let Some(oldest) = seen.iter().min_by_key(|(_, (_, s))| *s).map(|(k, _)| *k) {
                    seen.remove(&oldest);
                }
            }
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

    #[test]
    fn ipv6_counts_per_slash_64_and_mapped_v4_as_v4() {
        let l = FailureLimiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            l.fail(ip, t0);
        }
        let neighbour: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(l.blocked(neighbour, t0).is_some());
        assert_eq!(l.blocked(elsewhere, t0), None);
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            l.fail(mapped, t0);
        }
        assert!(l.blocked(v4, t0).is_some());
    }

    #[test]
    fn memory_stays_bounded_under_many_live_addresses() {
        let l = FailureLimiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 500) {
            l.fail(IpAddr::V4(i.into()), t0);
        }
        assert!(l.seen.lock().unwrap().len() <= MAX_TRACKED);
    }
}
