//! The last status the reconcile loop computed for each app, so `berth status` has an answer
//! when no daemon runs. The daemon's in-memory board is the live copy; this one trails it.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::{db_err, to_json, Store, StoreError, APP_STATUS};
use crate::model::names::AppKey;
use crate::reconcile::plan::Refusal;
use crate::reconcile::status::AppStatus;

/// One app's status as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredStatus {
    /// `running`, `frozen`, ... (see `status::Phase`).
    pub phase: String,
    /// Docker's view of its container.
    pub container: String,
    /// Why it is failed, frozen or held.
    pub last_error: Option<String>,
    /// Unix seconds of the pass that computed it.
    pub last_reconcile: u64,
    /// The spec hash a failed rollout refused (phase `rollout-failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_hash: Option<String>,
}

impl StoredStatus {
    /// The stored form of a live status.
    pub fn from_live(s: &AppStatus) -> StoredStatus {
        StoredStatus {
            phase: s.phase.to_string(),
            container: s.container.clone(),
            last_error: s.last_error.clone(),
            refused_hash: s.refused_hash.clone(),
            last_reconcile: s
                .updated
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

impl Store {
    /// Replaces the whole table with `board` in one transaction.
    pub fn replace_statuses(&self, board: &BTreeMap<AppKey, AppStatus>) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(APP_STATUS).map_err(db_err)?;
            table.retain(|_, _| false).map_err(db_err)?;
            for (key, s) in board {
                table
                    .insert(
                        key.to_string().as_str(),
                        to_json(&StoredStatus::from_live(s)).as_str(),
                    )
                    .map_err(db_err)?;
            }
        }
        self.db.commit(txn)
    }

    /// The rollouts refused on record, so a restarted daemon does not try them again.
    pub fn refusals(&self) -> Result<BTreeMap<AppKey, Refusal>, StoreError> {
        let mut out = BTreeMap::new();
        for (key, s) in self.statuses()? {
            let key = key
                .split_once('/')
                .and_then(|(u, a)| AppKey::new(u, a).ok());
            let (Some(hash), Some(key)) = (&s.refused_hash, key) else {
                continue;
            };
            let shown = s.last_error.as_deref().unwrap_or_default();
            out.insert(key, Refusal::from_shown(hash, shown));
        }
        Ok(out)
    }

    /// Every stored status, by `userid/appname`.
    pub fn statuses(&self) -> Result<Vec<(String, StoredStatus)>, StoreError> {
        self.read_all(APP_STATUS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::status::Phase;
    use std::time::{Duration, SystemTime};

    #[test]
    fn replace_drops_apps_that_are_gone() {
        let (_dir, s) = crate::store::temp_store();
        let st = |phase| AppStatus {
            phase,
            refused_hash: None,
            container: "running".into(),
            last_error: None,
            updated: UNIX_EPOCH + Duration::from_secs(5),
        };
        let a = AppKey::new("alice", "a").unwrap();
        let b = AppKey::new("alice", "b").unwrap();
        s.replace_statuses(&BTreeMap::from([
            (a.clone(), st(Phase::Running)),
            (b, st(Phase::Failed)),
        ]))
        .unwrap();
        assert_eq!(s.statuses().unwrap().len(), 2);
        s.replace_statuses(&BTreeMap::from([(a, st(Phase::Stopped))]))
            .unwrap();
        let all = s.statuses().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, "alice/a");
        assert_eq!(all[0].1.phase, "stopped");
        assert_eq!(all[0].1.last_reconcile, 5);
        let _ = SystemTime::now();
    }
}
