//! How far the serve loop has got: the last pass begun, the last pass finished, and whether
//! nothing was in flight after it. `berth apply` through the daemon waits on it for a pass
//! that began after its request and left nothing running, so "applied" means what it means
//! without a daemon: every change the files asked for was carried out (or failed).

/// The loop's progress, published after every pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The number of the last pass that began.
    pub begun: u64,
    /// The number of the last pass that finished.
    pub finished: u64,
    /// No change was in flight when that pass finished.
    pub idle: bool,
    /// That pass could not read desired or observed state (engine down, state unreadable).
    pub failed: bool,
}

impl Progress {
    /// Whether a pass that began after pass `begun` has finished and left nothing in flight:
    /// everything on disk at that moment has been carried out.
    pub fn settled_after(&self, begun: u64) -> bool {
        self.finished > begun && self.idle && !self.failed
    }

    /// Whether a pass that began after pass `begun` could not run at all.
    pub fn failed_after(&self, begun: u64) -> bool {
        self.finished > begun && self.failed
    }
}

/// Where the loop publishes its [`Progress`]; subscribers wait on it.
pub type ProgressCell = std::sync::Arc<tokio::sync::watch::Sender<Progress>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_idle_pass_begun_after_the_request_settles_it() {
        let asked_at = 7;
        let p = |finished, idle| Progress {
            begun: finished,
            finished,
            idle,
            failed: false,
        };
        assert!(
            !p(7, true).settled_after(asked_at),
            "began before the request"
        );
        assert!(
            !p(8, false).settled_after(asked_at),
            "changes still running"
        );
        assert!(p(8, true).settled_after(asked_at));
        assert!(p(9, true).settled_after(asked_at));
        let failed = Progress {
            failed: true,
            ..p(8, true)
        };
        assert!(!failed.settled_after(asked_at) && failed.failed_after(asked_at));
        assert!(!p(8, true).failed_after(asked_at));
    }
}
