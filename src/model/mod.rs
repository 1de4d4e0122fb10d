//! The model: what berth's files say and what follows from them, as pure data and rules.
//! Names, `berth.toml`, manifests, templates, the canonical container spec and its hash, the
//! desired state of one pass, the labels berth writes and the containers it observes.
//!
//! **Owns** parsing and validating the files it is handed (a config or template file is read
//! here; walking `state/` is `state::scan`), and every derivation from them.
//! **Must not know about** Docker, git, the database, the clock or HTTP: nothing here writes
//! anything, and every function gives the same answer for the same input.

pub mod backup;
pub mod build;
pub mod build_limits;
pub mod claims;
pub mod config;
pub mod desired;
pub mod git_config;
pub mod git_source;
pub mod health;
pub mod http_limits;
pub mod install;
pub mod jobs;
pub mod labels;
pub mod manifest;
pub mod names;
pub mod observed;
pub mod policy;
pub mod proxy;
pub mod registry_login;
pub mod rename;
pub mod resources;
pub mod runtime_mode;
pub mod schedule;
pub mod schema;
pub mod secret_scope;
pub mod secrets;
pub mod source_error;
pub mod spec;
pub mod template;
pub mod values;
pub mod volumes;

#[cfg(test)]
pub(crate) mod fixtures;
