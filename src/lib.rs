//! berth: a small PaaS node agent. TOML manifests under `state/apps/` are the desired state;
//! a level-triggered reconcile loop makes the Docker engine match them. See ARCHITECTURE.md.

pub mod config;
pub mod desired;
pub mod labels;
pub mod manifest;
pub mod names;
pub mod observed;
pub mod plan;
pub mod resources;
pub mod scan;
pub mod source_error;
pub mod spec;
pub mod template;
