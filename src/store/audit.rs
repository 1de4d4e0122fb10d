//! The audit log: one row per mutating API call (who, what, when, result), numbered in order.
//! Rows are appended, never changed. Past the entry limit the oldest are dropped, but never
//! one younger than the retention window: one user's flood cannot push everyone else's recent
//! entries out (the API's per-user write limits bound how fast it grows meanwhile).

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use redb::ReadableTableMetadata;

use super::{db_err, from_json, to_json, Store, StoreError, AUDIT};

/// Past `max_entries` times this, the oldest entries go whatever their age.
pub const HARD_FACTOR: u64 = 10;

/// How many entries the log aims to keep, and for how long it keeps every entry.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Past this many entries, the oldest outside the window are dropped.
    pub max_entries: u64,
    /// Entries younger than this (seconds) are always kept.
    pub keep_secs: u64,
}

/// One mutating call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: u64,
    /// User name, `client:<id>` (a client key) or `@socket` (the unix socket).
    pub actor: String,
    /// Method, path and query, e.g. `DELETE /apps/alice/web?purge=true`.
    pub action: String,
    /// HTTP status of the answer.
    pub status: u16,
}

impl Store {
    /// Appends one entry, then drops the oldest entries past `keep.max_entries` that are
    /// older than the window (measured from `entry.at`).
    pub fn audit(&self, entry: &AuditEntry, keep: Retention) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(AUDIT).map_err(db_err)?;
            let next = match table.last().map_err(db_err)? {
                Some((k, _)) => k.value() + 1,
                None => 1,
            };
            table
                .insert(next, to_json(entry).as_str())
                .map_err(db_err)?;
            let oldest_kept = entry.at.saturating_sub(keep.keep_secs);
            // The retention window yields only past a hard ceiling, so a disk cannot fill.
            while table.len().map_err(db_err)? > keep.max_entries.saturating_mul(HARD_FACTOR) {
                table.pop_first().map_err(db_err)?;
            }
            while table.len().map_err(db_err)? > keep.max_entries {
                let first_at = match table.first().map_err(db_err)? {
                    Some((_, first)) => {
                        from_json::<AuditEntry>("audit", "first", first.value())?.at
                    }
                    None => break,
                };
                if first_at >= oldest_kept {
                    break;
                }
                table.pop_first().map_err(db_err)?;
            }
        }
        self.db.commit(txn)
    }

    /// The newest `n` entries, oldest first, with their sequence numbers.
    pub fn audit_tail(&self, n: usize) -> Result<Vec<(u64, AuditEntry)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(AUDIT).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)?.rev().take(n) {
            let (k, v) = row.map_err(db_err)?;
            let n: u64 = k.value();
            out.push((
                n,
                from_json::<AuditEntry>("audit", &n.to_string(), v.value())?,
            ));
        }
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOTS: Retention = Retention {
        max_entries: 1000,
        keep_secs: 0,
    };

    #[test]
    fn entries_are_numbered_and_tailed_in_order() {
        let (_dir, s) = crate::store::temp_store();
        for i in 0..5u16 {
            s.audit(
                &AuditEntry {
                    at: i as u64,
                    actor: "alice".into(),
                    action: format!("POST /apps/alice/a{i}/stop"),
                    status: 200 + i,
                },
                LOTS,
            )
            .unwrap();
        }
        let tail = s.audit_tail(2).unwrap();
        assert_eq!(s.audit_tail(100).unwrap().len(), 5);
        assert_eq!(tail.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(tail[1].1.status, 204);
    }

    #[test]
    fn the_oldest_entries_go_past_the_limit() {
        let (_dir, s) = crate::store::temp_store();
        for i in 0..7u64 {
            let e = AuditEntry {
                at: i,
                actor: "a".into(),
                action: "POST /x".into(),
                status: 200,
            };
            let keep = Retention {
                max_entries: 3,
                keep_secs: 0,
            };
            s.audit(&e, keep).unwrap();
        }
        let seqs: Vec<u64> = s.audit_tail(100).unwrap().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            seqs,
            [5, 6, 7],
            "numbering continues; only the newest 3 remain"
        );
    }

    #[test]
    fn a_flood_cannot_push_out_entries_younger_than_the_window() {
        let (_dir, s) = crate::store::temp_store();
        let keep = Retention {
            max_entries: 5,
            keep_secs: 100,
        };
        let entry = |at, actor: &str| AuditEntry {
            at,
            actor: actor.into(),
            action: "POST /x".into(),
            status: 200,
        };
        s.audit(&entry(1, "carol"), keep).unwrap();
        s.audit(&entry(1000, "alice"), keep).unwrap();
        for i in 0..40 {
            s.audit(&entry(1001 + i, "bob"), keep).unwrap();
        }
        let actors: Vec<String> = s
            .audit_tail(1000)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.actor)
            .collect();
        assert_eq!(actors.len(), 41, "every entry of the last 100 s is kept");
        assert_eq!(
            actors[0], "alice",
            "bob's flood left alice's entry; carol's was old"
        );
    }
}
