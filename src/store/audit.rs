//! The audit log: one row per mutating API call (who, what, when, result), numbered in order.
//! Rows are appended, never changed; past [`MAX_AUDIT_ENTRIES`] the oldest are dropped so the
//! file cannot grow without bound.

use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use redb::ReadableTableMetadata;

use super::{db_err, from_json, to_json, Store, StoreError, AUDIT};

/// Entries kept; each append beyond this drops the oldest.
pub const MAX_AUDIT_ENTRIES: u64 = 100_000;

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
    /// Appends one entry, dropping the oldest past [`MAX_AUDIT_ENTRIES`].
    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.audit_keeping(entry, MAX_AUDIT_ENTRIES)
    }

    fn audit_keeping(&self, entry: &AuditEntry, keep: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(AUDIT).map_err(db_err)?;
            let next = match table.last().map_err(db_err)? {
                Some((k, _)) => k.value() + 1,
                None => 1,
            };
            table
                .insert(next, to_json(entry).as_str())
                .map_err(db_err)?;
            while table.len().map_err(db_err)? > keep {
                table.pop_first().map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)
    }

    /// The newest `n` entries, oldest first, with their sequence numbers.
    pub fn audit_tail(&self, n: usize) -> Result<Vec<(u64, AuditEntry)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
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

    #[test]
    fn entries_are_numbered_and_tailed_in_order() {
        let (_dir, s) = crate::store::temp_store();
        for i in 0..5u16 {
            s.audit(&AuditEntry {
                at: i as u64,
                actor: "alice".into(),
                action: format!("POST /apps/alice/a{i}/stop"),
                status: 200 + i,
            })
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
            s.audit_keeping(&e, 3).unwrap();
        }
        let seqs: Vec<u64> = s.audit_tail(100).unwrap().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            seqs,
            [5, 6, 7],
            "numbering continues; only the newest 3 remain"
        );
    }
}
