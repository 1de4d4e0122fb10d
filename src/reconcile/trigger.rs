//! Why a pass runs. Every source of work names itself with a [`Trigger`]; the loop collects
//! the triggers of a burst into one [`Triggers`] set, so logs and the pass metric can say
//! "this pass ran because of a Docker event" instead of "something happened".
//!
//! [`Wake`] is the handle writers hold (the API's write path, the watcher, the Docker event
//! forwarder, swarm mode's task watch, git mode): it records the reason and wakes the loop. It is a plain
//! synchronisation primitive (an atomic set plus a `Notify`), so holding one gives no other
//! power over the loop.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::model::names::AppKey;

/// One reason for a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    /// The daemon just started.
    Start,
    /// A manifest or template changed on disk (watcher).
    File,
    /// A manifest written through berth (API today; portal and CLI use the same path).
    ApiWrite,
    /// Git mode moved the checkout.
    Git,
    /// A container of this instance changed (Docker event stream).
    DockerEvent,
    /// A change the loop started has finished.
    ActionFinished,
    /// A retry or crash-restart delay ran out.
    Backoff,
    /// The periodic resync.
    Resync,
    /// The previous pass could not run (engine or state directory unreachable).
    Retry,
    /// `berth apply` asked the running daemon to converge now.
    Apply,
    /// Swarm mode: the tasks Swarm runs changed (a task restarted, moved or started, on any
    /// node), seen by reading the task list.
    SwarmTasks,
}

impl Trigger {
    /// Every trigger, in the order a set names them.
    pub const ALL: [Trigger; 11] = [
        Trigger::Start,
        Trigger::Apply,
        Trigger::ApiWrite,
        Trigger::Git,
        Trigger::File,
        Trigger::DockerEvent,
        Trigger::SwarmTasks,
        Trigger::ActionFinished,
        Trigger::Backoff,
        Trigger::Resync,
        Trigger::Retry,
    ];

    /// The label used in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::File => "file",
            Trigger::ApiWrite => "api_write",
            Trigger::Git => "git",
            Trigger::DockerEvent => "docker_event",
            Trigger::ActionFinished => "action_finished",
            Trigger::Backoff => "backoff",
            Trigger::Resync => "resync",
            Trigger::Retry => "retry",
            Trigger::Apply => "apply",
            Trigger::SwarmTasks => "swarm_tasks",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The reasons gathered for one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Triggers(u16);

impl Triggers {
    /// A set holding only `t`.
    pub fn of(t: Trigger) -> Triggers {
        Triggers(t.bit())
    }

    /// Adds `t`.
    pub fn add(&mut self, t: Trigger) {
        self.0 |= t.bit();
    }

    /// Adds every reason in `other`.
    pub fn merge(&mut self, other: Triggers) {
        self.0 |= other.0;
    }

    /// Whether `t` is in the set.
    pub fn contains(self, t: Trigger) -> bool {
        self.0 & t.bit() != 0
    }

    /// True when nothing was recorded.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether a pass for these causes reads back what berth wrote outside the engine
    /// (Caddy's config, the isolation rules) to heal a hand edit: at start, on the resync
    /// tick and when `berth apply` asks. Other passes trust what they last wrote, so a pass
    /// a file change or an event started runs no `iptables` and reads nothing from Caddy.
    pub fn verifies_outside(self) -> bool {
        [Trigger::Resync, Trigger::Start, Trigger::Apply]
            .into_iter()
            .any(|t| self.contains(t))
    }
}

impl fmt::Display for Triggers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Trigger::ALL
            .into_iter()
            .filter(|t| self.contains(*t))
            .map(Trigger::label)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// Wakes the loop, saying why. Cheap to clone; every clone feeds the same loop.
#[derive(Clone, Default)]
pub struct Wake {
    inner: Arc<WakeInner>,
}

#[derive(Default)]
struct WakeInner {
    pending: AtomicU16,
    notify: Notify,
    /// The apps Docker events were about since the last take; `None` in it when one was about
    /// no app berth knows (or the stream was re-made): that one always needs a pass.
    event_apps: std::sync::Mutex<BTreeSet<Option<AppKey>>>,
}

impl Wake {
    /// Records `why` and wakes the loop (or makes its next wait return at once).
    pub fn wake(&self, why: Trigger) {
        self.inner.pending.fetch_or(why.bit(), Ordering::AcqRel);
        self.inner.notify.notify_one();
    }

    /// A Docker event about `app` (`None`: unknown, or events may have been missed).
    pub fn docker_event(&self, app: Option<AppKey>) {
        self.lock_apps().insert(app);
        self.wake(Trigger::DockerEvent);
    }

    /// Takes the apps of the Docker events since the last call; `None` when any event was
    /// about no known app (a pass is needed whatever is busy).
    pub fn take_event_apps(&self) -> Option<BTreeSet<AppKey>> {
        let taken = std::mem::take(&mut *self.lock_apps());
        taken.into_iter().collect()
    }

    fn lock_apps(&self) -> std::sync::MutexGuard<'_, BTreeSet<Option<AppKey>>> {
        self.inner
            .event_apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until someone calls [`wake`](Self::wake). The reasons stay pending until
    /// [`take`](Self::take), so a burst is gathered after the first one arrives.
    pub async fn notified(&self) {
        self.inner.notify.notified().await
    }

    /// Takes every reason recorded since the last take.
    pub fn take(&self) -> Triggers {
        Triggers(self.inner.pending.swap(0, Ordering::AcqRel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_names_every_reason() {
        let mut t = Triggers::of(Trigger::DockerEvent);
        t.add(Trigger::File);
        assert_eq!(t.to_string(), "file,docker_event");
        assert!(!t.contains(Trigger::Git));
        assert!(Triggers::default().is_empty());
    }

    #[test]
    fn only_start_resync_and_apply_check_what_berth_wrote_outside_the_engine() {
        for t in [Trigger::Start, Trigger::Resync, Trigger::Apply] {
            let mut why = Triggers::of(Trigger::File);
            why.add(t);
            assert!(why.verifies_outside(), "{why}");
        }
        for t in [
            Trigger::File,
            Trigger::DockerEvent,
            Trigger::ApiWrite,
            Trigger::Backoff,
        ] {
            assert!(!Triggers::of(t).verifies_outside(), "{t:?}");
        }
    }

    #[tokio::test]
    async fn wake_gathers_reasons_until_taken() {
        let w = Wake::default();
        w.wake(Trigger::ApiWrite);
        w.clone().wake(Trigger::Git);
        w.notified().await;
        let got = w.take();
        assert!(got.contains(Trigger::ApiWrite) && got.contains(Trigger::Git));
        assert!(w.take().is_empty());
    }

    #[test]
    fn docker_events_remember_their_apps_until_taken() {
        let w = Wake::default();
        let a = AppKey::new("alice", "a").unwrap();
        w.docker_event(Some(a.clone()));
        w.docker_event(Some(a.clone()));
        assert_eq!(w.take_event_apps(), Some([a.clone()].into()));
        assert_eq!(w.take_event_apps(), Some(BTreeSet::new()));
        w.docker_event(Some(a));
        w.docker_event(None);
        assert_eq!(w.take_event_apps(), None, "an unknown event needs a pass");
        assert!(w.take().contains(Trigger::DockerEvent));
    }
}
