//! The files under `state/`, berth's only source of truth: reading them (the scan that feeds
//! every pass), writing them (the one write path every writer goes through: validated, atomic,
//! etag-checked, noted in the history, committed in git mode, the loop woken), the revision
//! history, git mode, and the files of apps' workspaces (`workspace_files`, for the files API).
//!
//! **Owns** the state write lock and every byte berth writes under `state/`.
//! **Must not know about** Docker, HTTP or the serve loop's scheduling; it wakes the loop only
//! through the [`Wake`](crate::reconcile::trigger::Wake) handle it is given. Depends on
//! `model`, `reconcile` (the wake handle), `store` (revisions) and `metrics` (git syncs).

pub mod admission;
pub mod backup_key;
pub mod build_context;
pub mod build_source;
pub mod files;
pub mod git;
pub mod history;
pub mod leftovers;
pub mod modes;
pub mod rename;
pub mod root_lock;
pub mod rotate;
pub mod scan;
pub mod secrets_key;
pub mod source_fetcher;
pub mod source_tree;
pub mod values_fill;
pub mod workspace_files;
pub mod writer;
