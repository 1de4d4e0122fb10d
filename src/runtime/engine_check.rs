//! Whether the engine answers now. A pass that lists says the engine answered then, but a
//! kept list (the informer's) asks the engine nothing, so a hung engine (dockerd stopped or
//! deadlocked) looked healthy for as long as no event arrived (issue 36: 25 s of SIGSTOP,
//! `/readyz` 200 throughout). A ping bounded by [`PING_BOUND`], every [`EVERY`], says
//! whether it answers; readiness and the surfaces' container list believe the last one.
//!
//! **Invariant: no engine check waits longer than its bound**; a ping that does not answer in
//! time counts as a failure, told as one ("no answer within 2s: is the engine hung?").

use std::sync::Mutex;
use std::time::Duration;

/// How long a ping may take before the engine counts as hung.
pub const PING_BOUND: Duration = Duration::from_secs(2);
/// How often the engine is pinged.
pub const EVERY: Duration = Duration::from_secs(1);

/// The last ping's outcome.
#[derive(Debug, Default)]
pub struct EngineCheck {
    /// Why the last ping failed; `None` when it answered (or none has run yet: the passes'
    /// own check covers a daemon that never reached the engine).
    failing: Mutex<Option<String>>,
}

impl EngineCheck {
    /// Records one ping; returns whether the verdict changed.
    pub fn record(&self, outcome: Result<(), String>) -> bool {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        let now = outcome.err();
        let changed = *failing != now;
        *failing = now;
        changed
    }

    /// Ok while the last ping answered in time, else why not.
    pub fn verdict(&self) -> Result<(), String> {
        let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match failing.as_ref() {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }
}

/// `call`, failed as a timeout (told in the error as a hung engine) when the engine has not
/// answered within `bound`.
pub(crate) async fn bounded<T>(
    op: &str,
    bound: Duration,
    call: impl std::future::Future<Output = Result<T, crate::runtime::engine::EngineError>>,
) -> Result<T, crate::runtime::engine::EngineError> {
    match tokio::time::timeout(bound, call).await {
        Ok(answer) => answer,
        Err(_) => Err(crate::runtime::engine::EngineError {
            op: format!(
                "{op} (no answer within {}s: is the engine hung?)",
                bound.as_secs()
            ),
            source: bollard::errors::Error::RequestTimeoutError,
        }),
    }
}

/// How long a container list may take: a pass or a surface waiting on a hung engine fails
/// (and says so) instead of waiting for bollard's two minutes.
pub(crate) const LIST_BOUND: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_ping_decides_and_a_change_is_told_once() {
        let check = EngineCheck::default();
        assert!(check.verdict().is_ok(), "no ping yet: the passes decide");
        assert!(check.record(Err("no answer within 2s".into())));
        assert!(!check.record(Err("no answer within 2s".into())));
        assert_eq!(check.verdict().unwrap_err(), "no answer within 2s");
        assert!(check.record(Ok(())));
        assert!(check.verdict().is_ok());
    }
}
