//! `berth serve` and the one-shot passes: the wiring of the long-running parts (the reconcile
//! loop, the file watcher, the Docker event subscription, git following, the API listeners,
//! the status saver) behind one shutdown token, and the loop driver that runs
//! `reconcile::loop_state` against the runtime.
//!
//! **Owns** tasks, timers and shutdown. It may use every layer but `cli`; no layer but `cli`
//! uses it.

pub mod backups;
pub mod events;
pub mod job_runs;
pub mod jobs;
pub mod pass;
pub mod process;
pub mod serve;
pub mod serve_loop;
pub mod status_saver;
pub mod watch;
