//! Per-user write limits: a token bucket per caller for mutating calls, so one user cannot
//! flood the audit log or the write path for everyone else. The bucket holds a minute's worth
//! (`api_writes_per_minute` from the caller's policy) and refills evenly; 0 means unlimited.
//! Memory is bounded by the number of callers, which is bounded by the users and keys berth
//! issued.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before idle ones (refilled for a minute) are dropped.
const MAX_BUCKETS: usize = 10_000;

/// One caller's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by caller name.
#[derive(Debug, Default)]
pub struct WriteLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl WriteLimiter {
    /// Takes one write for `who` under a limit of `per_minute`; `Err` with how long to wait
    /// when the bucket is empty.
    pub fn take(&self, who: &str, per_minute: u32, now: Instant) -> Result<(), Duration> {
        if per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(per_minute);
        let per_sec = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > MAX_BUCKETS {
            // A bucket that has refilled says nothing a new one would not.
            buckets.retain(|_, b| now.saturating_duration_since(b.at) < Duration::from_secs(60));
        }
        let b = buckets.entry(who.to_string()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - b.tokens) / per_sec).max(Duration::from_secs(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minutes_worth_then_one_per_refill_and_callers_are_separate() {
        let (l, t0) = (WriteLimiter::default(), Instant::now());
        for _ in 0..60 {
            assert!(l.take("bob", 60, t0).is_ok());
        }
        let wait = l.take("bob", 60, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(
            l.take("alice", 60, t0).is_ok(),
            "bob's flood is bob's alone"
        );
        assert!(l.take("bob", 60, t0 + Duration::from_secs(1)).is_ok());
        assert!(l.take("bob", 60, t0 + Duration::from_secs(1)).is_err());
        for _ in 0..1000 {
            assert!(l.take("root", 0, t0).is_ok(), "0 is unlimited");
        }
    }
}
