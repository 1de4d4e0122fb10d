//! berth: a small PaaS node agent. TOML manifests under `state/apps/` are the desired state;
//! a level-triggered reconcile loop makes the Docker engine match them. See ARCHITECTURE.md.

pub mod backoff;
pub mod config;
pub mod desired;
pub mod engine;
pub mod executor;
pub mod hooks;
pub mod labels;
pub mod manifest;
pub mod manifest_files;
pub mod names;
pub mod observed;
pub mod plan;
pub mod reconciler;
pub mod resources;
pub mod scan;
pub mod secret;
pub mod serve;
pub mod source_error;
pub mod spec;
pub mod status;
pub mod store;
pub mod template;
pub mod watch;
