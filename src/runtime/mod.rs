//! The runtime: every side effect on containers. The Docker engine (bollard), the hook runner,
//! and the executor that carries out one app's planned change as ordered hook and engine calls.
//!
//! **Owns** the engine connection. Its write calls (create, start, stop, remove, pull) are
//! `pub(in crate::runtime)`: outside this folder only the [`Executor`](executor::Executor) can
//! change a container, and what the rest of berth may hold is read-only
//! ([`ContainerReader`](reader::ContainerReader)) or a purge request
//! ([`RemovalRequests`](removals::RemovalRequests)).
//! **Must not know about** scheduling (the daemon decides what runs when), HTTP, git or the
//! database. Depends on `model` and on `reconcile`'s plan types.

mod action_error;
pub mod backup;
pub mod build_cgroup;
pub mod builder;
pub mod caddy;
pub mod engine;
pub mod engine_check;
pub mod executor;
pub mod forward;
pub mod front;
pub mod health;
pub mod hook_groups;
pub mod hook_lock;
pub mod hook_shim;
pub mod hooks;
mod http1;
pub mod informer;
pub mod install;
pub mod isolation;
pub mod job_asks;
pub mod jobs;
pub mod observe;
pub mod reader;
pub mod registry_api;
mod registry_prune;
pub mod removals;
mod rename;
pub mod rollout;
mod swarm;
mod swarm_front;
