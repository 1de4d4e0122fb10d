//! The local half of a sync, under the state write lock: compare the checkout with the
//! fetched remote and fast-forward, ask for a push, or report a divergence or a rewrite.
//! berth never merges or rewrites history.

use tracing::{info, warn};

use super::{short, GitError, GitSync, Step, SEEN};

/// The two commits a sync compares.
struct Heads {
    local: String,
    remote: String,
}

impl GitSync {
    /// Follows the remote when it only moved forward; `old_remote` is the remote commit berth
    /// last accepted (to tell a force-push from a fast-forward).
    pub(super) async fn follow(&self, old_remote: Option<&str>) -> Result<Step, GitError> {
        let upstream = self.upstream();
        let heads = Heads {
            local: self.git(&["rev-parse", "HEAD"]).await?,
            remote: self.git(&["rev-parse", &upstream]).await?,
        };
        {
            let mut st = self.status.lock().expect("git status");
            st.head = Some(heads.local.clone());
            st.remote_head = Some(heads.remote.clone());
        }
        let mut old_remote = old_remote.map(str::to_string);
        if let Some(at) = self.diverged_at() {
            match self.recheck_divergence(&heads, &at).await? {
                Some(step) => return Ok(step),
                None if heads.local != heads.remote => old_remote = Some(heads.remote.clone()),
                None => {}
            }
        }
        let (local, remote) = (&heads.local, &heads.remote);
        let rewritten = match old_remote.as_deref() {
            Some(old) if old != remote => !self.is_ancestor(old, remote).await?,
            _ => false,
        };
        if local == remote {
            self.git(&["update-ref", SEEN, remote]).await?;
            self.finish("up-to-date", None, false);
            return Ok(Step::Stay);
        }
        if !rewritten && self.is_ancestor(local, remote).await? {
            return self.fast_forward(&heads, &upstream).await;
        }
        if !rewritten && self.is_ancestor(remote, local).await? {
            return Ok(Step::Push {
                lease: remote.clone(),
            });
        }
        self.diverged(
            &heads,
            rewritten.then_some(old_remote.as_deref().unwrap_or("")),
        );
        Ok(Step::Stay)
    }

    /// While diverged at `at`: the two match again (follow), nothing changed (stay), or a
    /// person changed `state/` (follow the usual rules again, from the remote as it is now).
    async fn recheck_divergence(&self, heads: &Heads, at: &str) -> Result<Option<Step>, GitError> {
        let (local, remote) = (&heads.local, &heads.remote);
        if local == remote {
            info!("state/ matches the remote again; following it");
            self.set_diverged_at(None);
        } else if local == at {
            let why = format!(
                "still diverged: local {} and origin/{} {}; berth follows and pushes nothing until {} is changed by hand",
                short(local),
                self.config.branch,
                short(remote),
                self.dir.display()
            );
            self.finish("diverged", Some(why), true);
            return Ok(Some(Step::Stay));
        } else {
            info!(
                "state/ was changed by hand since the divergence; following the usual rules again"
            );
            self.set_diverged_at(None);
            // The person has seen the remote as it is now and chose what to keep.
            self.git(&["update-ref", SEEN, remote]).await?;
        }
        Ok(None)
    }

    async fn fast_forward(&self, heads: &Heads, upstream: &str) -> Result<Step, GitError> {
        let (local, remote) = (&heads.local, &heads.remote);
        self.note_pulled(local, remote).await?;
        self.git(&["merge", "--quiet", "--ff-only", upstream])
            .await?;
        self.git(&["update-ref", SEEN, remote]).await?;
        self.status.lock().expect("git status").head = Some(remote.clone());
        info!(from = %local, to = %remote, "pulled the state repository");
        self.finish("pulled", None, false);
        Ok(Step::Pulled)
    }

    /// Stops following: `rewritten_from` is the remote commit berth had accepted when the
    /// remote was force-pushed, `None` when both sides have commits.
    fn diverged(&self, heads: &Heads, rewritten_from: Option<&str>) {
        let (local, remote, branch) = (&heads.local, &heads.remote, &self.config.branch);
        let why = match rewritten_from {
            Some(old) => format!(
                "origin/{branch} was rewritten (a force-push: {} is no longer in its history, it is now {}); berth stopped following and pushing and keeps running {}; resolve it in {} by hand",
                short(old),
                short(remote),
                short(local),
                self.dir.display()
            ),
            None => format!(
                "local {} and origin/{branch} {} have diverged (commits on both sides); berth stopped following and pushing and keeps running the last good checkout; resolve it in {} by hand",
                short(local),
                short(remote),
                self.dir.display()
            ),
        };
        warn!("{why}");
        self.set_diverged_at(Some(local));
        self.finish("diverged", Some(why), true);
    }
}
