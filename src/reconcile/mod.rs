//! Decisions: the planner (docs/reference/reconcile-rules.md), retry and crash-restart timing, status derivation and the
//! serve loop's state machine (which changes start now, what a finished one means, which purge
//! requests are settled). The decisions are pure: inputs in, decisions out, time passed in.
//! Beside them live the three small shared cells the loop publishes and listens through: the
//! status board, the wake handle and the prune-release cell (a mutex or a `Notify` each, no
//! tasks, no I/O).
//!
//! **Owns** every rule about *what* to do next.
//! **Must not know about** how it is done: no Docker, hooks, files, database or tokio tasks
//! (`runtime` and `daemon` carry the decisions out). Depends on `model` only.

pub mod backoff;
pub mod jobs;
pub mod loop_state;
pub mod plan;
mod plan_print;
pub mod progress;
pub mod routes;
pub mod status;
pub mod trigger;
