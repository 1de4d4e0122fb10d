//! Confirm tokens for destructive calls (the seed's "protection layer"): the first call
//! answers 202 with a warning and a one-time token; repeating the call with the token, by the
//! same caller, for the same target, before it expires, carries it out. Tokens live in memory:
//! a restart forgets them, which only means asking again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;

/// One outstanding confirmation.
#[derive(Debug)]
struct Pending {
    /// What it confirms, e.g. `purge alice/web`.
    action: String,
    /// Who asked; only they may redeem it.
    caller: String,
    /// When it stops working.
    expires: Instant,
}

/// Outstanding tokens.
#[derive(Debug)]
pub struct Confirmations {
    /// Lifetime of a token (`confirm_ttl`).
    ttl: Duration,
    /// By token.
    pending: Mutex<HashMap<String, Pending>>,
}

/// Most tokens outstanding at once, and per caller; the oldest go first beyond these, so
/// one caller cannot push out everyone else's.
const MAX_PENDING: usize = 1000;
const MAX_PER_CALLER: usize = 20;

impl Confirmations {
    /// Tokens living `ttl`.
    pub fn new(ttl: Duration) -> Confirmations {
        Confirmations {
            ttl,
            pending: Mutex::default(),
        }
    }

    /// A new token for `caller` to confirm `action`.
    fn issue(&self, action: &str, caller: &str, now: Instant) -> String {
        let token = format!(
            "{}{}",
            crate::store::tokens::new_key_id(),
            crate::store::tokens::new_key_id()
        );
        let mut pending = self.pending.lock().expect("confirmations");
        pending.retain(|_, p| p.expires > now);
        let mine = pending.values().filter(|p| p.caller == caller).count();
        if mine >= MAX_PER_CALLER || pending.len() >= MAX_PENDING {
            let only_mine = mine >= MAX_PER_CALLER;
            if let Some(oldest) = pending
                .iter()
                .filter(|(_, p)| !only_mine || p.caller == caller)
                .min_by_key(|(_, p)| p.expires)
                .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(
            token.clone(),
            Pending {
                action: action.to_string(),
                caller: caller.to_string(),
                expires: now + self.ttl,
            },
        );
        token
    }

    /// The two steps in one: without a token, `Ok(Some(202))` carrying `warning` (what would
    /// happen; `{ttl}` is filled in), a new token and the fields of `extra`; with a token,
    /// `Ok(None)` once it is redeemed, and the caller goes ahead.
    pub fn confirm(
        &self,
        token: Option<&str>,
        action: &str,
        caller: &str,
        warning: &str,
        extra: serde_json::Value,
    ) -> Result<Option<Response>, ApiError> {
        let now = Instant::now();
        if let Some(token) = token {
            return self.redeem(token, action, caller, now).map(|()| None);
        }
        let mut body = serde_json::json!({
            "warning": warning.replace("{ttl}", &humantime::format_duration(self.ttl).to_string()),
            "confirm": self.issue(action, caller, now),
            "expires_in_seconds": self.ttl.as_secs(),
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        Ok(Some((StatusCode::ACCEPTED, Json(body)).into_response()))
    }

    /// Spends `token` for `action` by `caller`. A token is gone after one try, whether the
    /// try matched or not, so it cannot be guessed at or reused.
    fn redeem(
        &self,
        token: &str,
        action: &str,
        caller: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        let refused = |why: &str| {
            ApiError::ConfirmRefused(format!("confirm token {why}; ask again without it"))
        };
        let Some(p) = self.pending.lock().expect("confirmations").remove(token) else {
            return Err(refused("unknown or already used"));
        };
        if p.expires <= now {
            return Err(refused("expired"));
        }
        if p.action != action || p.caller != caller {
            return Err(refused(
                "was issued for another call, another caller, or a target that has changed since",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_time_scoped_and_expiring() {
        let c = Confirmations::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let t = c.issue("purge alice/web", "alice", t0);
        assert!(c.redeem(&t, "purge alice/web", "alice", t0).is_ok());
        assert!(
            c.redeem(&t, "purge alice/web", "alice", t0).is_err(),
            "reused"
        );

        let t = c.issue("purge alice/web", "alice", t0);
        assert!(
            c.redeem(&t, "purge alice/other", "alice", t0).is_err(),
            "other target"
        );
        assert!(
            c.redeem(&t, "purge alice/web", "alice", t0).is_err(),
            "spent by the miss"
        );

        let t = c.issue("purge alice/web", "alice", t0);
        assert!(
            c.redeem(&t, "purge alice/web", "bob", t0).is_err(),
            "other caller"
        );

        let t = c.issue("purge alice/web", "alice", t0);
        let late = t0 + Duration::from_secs(60);
        let e = c.redeem(&t, "purge alice/web", "alice", late).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        assert!(c.redeem("nonsense", "x", "alice", t0).is_err());
    }

    #[test]
    fn one_caller_cannot_push_out_another_callers_tokens() {
        let c = Confirmations::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let bobs = c.issue("purge bob/x", "bob", t0);
        for i in 0..200 {
            c.issue(&format!("purge mallory/a{i}"), "mallory", t0);
        }
        assert!(c.redeem(&bobs, "purge bob/x", "bob", t0).is_ok());
        assert!(c.pending.lock().unwrap().len() <= MAX_PER_CALLER);
    }
}
