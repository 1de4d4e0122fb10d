//! berth: a small PaaS node agent. TOML manifests under `state/apps/` are the desired state;
//! a level-triggered reconcile loop makes the Docker engine match them. See ARCHITECTURE.md.
//!
//! One folder per layer; dependencies run one way, checked by `code_rules`:
//! `model` <- `reconcile` <- `runtime`, `state`, `store` <- `api` <- `portal` <- `daemon` <- `cli`.

pub mod api;
pub mod cli;
pub mod daemon;
pub mod error_chain;
pub mod metrics;
pub mod model;
pub mod portal;
pub mod reconcile;
pub mod runtime;
pub mod state;
pub mod store;

#[cfg(test)]
mod code_rules;
