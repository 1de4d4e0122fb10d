//! The audit log: one row per mutating API call (who, what, when, result), numbered in order.
//! Rows are appended, never changed. Retention is per user: each user (a client key counts
//! as its owner's, the unix socket as `@socket`) keeps at most [`HARD_FACTOR`] times the entry
//! limit, and past that that user's oldest entries go, whatever their age; past the entry
//! limit in all, the oldest entries older than the retention window go. So one user's flood
//! drops only that user's own entries, never another's recent ones (issue 36: a shared hard
//! ceiling let one token's flood push every user's recent entries out).
//!
//! **Invariant: `audit_by_user` holds one `(user, seq)` row per audit row and
//! `audit_counts` each user's number of rows**, written in the same transaction as the rows;
//! a database without them (an older berth's, or a backup's copy) has them rebuilt at open.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use redb::ReadableTableMetadata;

use super::{db_err, from_json, to_json, Store, StoreError, AUDIT};

/// Past `max_entries` times this entries of one user, that user's oldest go whatever their
/// age.
pub const HARD_FACTOR: u64 = 10;

/// Each audit row's user and sequence number, so a user's oldest row is found at once.
const BY_USER: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_by_user");
/// How many audit rows each user has.
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("audit_counts");

/// How many audit entries the log aims to keep, and for how long it keeps every entry.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Past this many entries, the oldest outside the window are dropped; past this many
    /// times [`HARD_FACTOR`] of one user, that user's oldest.
    pub max_entries: u64,
    /// Entries younger than this (seconds) are kept while their user is under the ceiling.
    pub keep_secs: u64,
}

/// One mutating call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unix seconds.
    pub at: u64,
    /// User name, `client:<id>` (a client key) or `@socket` (the unix socket).
    pub actor: String,
    /// The user whose share of the log the entry counts against when it is not the actor
    /// (a client key's owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Method, path and query, e.g. `DELETE /apps/alice/web?purge=true`.
    pub action: String,
    /// HTTP status of the answer.
    pub status: u16,
}

impl AuditEntry {
    /// The user whose share of the log this entry is.
    pub fn share(&self) -> &str {
        self.user.as_deref().unwrap_or(&self.actor)
    }
}

impl Store {
    /// Appends one entry, then drops its user's oldest entries past the per-user ceiling,
    /// then the oldest entries past `keep.max_entries` that are older than the window
    /// (measured from `entry.at`).
    pub fn audit(&self, entry: &AuditEntry, keep: Retention) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut t = Tables {
                rows: txn.open_table(AUDIT).map_err(db_err)?,
                by_user: txn.open_table(BY_USER).map_err(db_err)?,
                counts: txn.open_table(COUNTS).map_err(db_err)?,
            };
            let next = match t.rows.last().map_err(db_err)? {
                Some((k, _)) => k.value() + 1,
                None => 1,
            };
            t.rows
                .insert(next, to_json(entry).as_str())
                .map_err(db_err)?;
            let user = entry.share();
            t.by_user.insert((user, next), ()).map_err(db_err)?;
            let count = bump(&mut t.counts, user, 1)?;
            // The retention window yields to the per-user ceiling, so a disk cannot fill.
            let ceiling = keep.max_entries.saturating_mul(HARD_FACTOR).max(1);
            t.drop_oldest_of(user, count.saturating_sub(ceiling))?;
            t.drop_older_than(entry.at.saturating_sub(keep.keep_secs), keep.max_entries)?;
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

/// The log's rows and its per-user index, open in one write transaction.
struct Tables<'t> {
    rows: redb::Table<'t, u64, &'static str>,
    by_user: redb::Table<'t, (&'static str, u64), ()>,
    counts: redb::Table<'t, &'static str, u64>,
}

impl Tables<'_> {
    /// Drops `user`'s `n` oldest rows, whatever their age.
    fn drop_oldest_of(&mut self, user: &str, n: u64) -> Result<(), StoreError> {
        for _ in 0..n {
            let oldest = self
                .by_user
                .range((user, 0)..=(user, u64::MAX))
                .map_err(db_err)?
                .next()
                .transpose()
                .map_err(db_err)?
                .map(|(k, _)| k.value().1);
            let Some(seq) = oldest else { break };
            self.by_user.remove((user, seq)).map_err(db_err)?;
            self.rows.remove(seq).map_err(db_err)?;
            bump(&mut self.counts, user, -1)?;
        }
        Ok(())
    }

    /// Drops the oldest rows, whoever's, while there are more than `max` and the oldest is
    /// older than `oldest_kept`.
    fn drop_older_than(&mut self, oldest_kept: u64, max: u64) -> Result<(), StoreError> {
        while self.rows.len().map_err(db_err)? > max {
            let (seq, first) = match self.rows.first().map_err(db_err)? {
                Some((k, v)) => (
                    k.value(),
                    from_json::<AuditEntry>("audit", "first", v.value())?,
                ),
                None => break,
            };
            if first.at >= oldest_kept {
                break;
            }
            self.rows.remove(seq).map_err(db_err)?;
            self.by_user.remove((first.share(), seq)).map_err(db_err)?;
            bump(&mut self.counts, first.share(), -1)?;
        }
        Ok(())
    }
}

/// Adds `by` to `user`'s row count; a count that reaches zero is removed.
fn bump(counts: &mut redb::Table<&str, u64>, user: &str, by: i64) -> Result<u64, StoreError> {
    let now = counts.get(user).map_err(db_err)?.map_or(0, |v| v.value());
    let now = now.saturating_add_signed(by);
    match now {
        0 => counts.remove(user).map(drop).map_err(db_err)?,
        n => counts.insert(user, n).map(drop).map_err(db_err)?,
    }
    Ok(now)
}

/// Makes the per-user index and counts (at open): rebuilt from the rows when they do not
/// cover every row (a database an older berth wrote, or a backup, which copies the rows).
pub(super) fn index(txn: &WriteTransaction) -> Result<(), StoreError> {
    let table = txn.open_table(AUDIT).map_err(db_err)?;
    let mut by_user = txn.open_table(BY_USER).map_err(db_err)?;
    let mut counts = txn.open_table(COUNTS).map_err(db_err)?;
    if by_user.len().map_err(db_err)? == table.len().map_err(db_err)? {
        return Ok(());
    }
    by_user.retain(|_, _| false).map_err(db_err)?;
    counts.retain(|_, _| false).map_err(db_err)?;
    for row in table.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let seq = k.value();
        let e: AuditEntry = from_json("audit", &seq.to_string(), v.value())?;
        by_user.insert((e.share(), seq), ()).map_err(db_err)?;
        bump(&mut counts, e.share(), 1)?;
    }
    tracing::info!(
        rows = table.len().map_err(db_err)?,
        "indexed the audit log by user"
    );
    Ok(())
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
                    user: None,
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
                user: None,
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
            user: None,
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

    fn by(at: u64, actor: &str, user: Option<&str>) -> AuditEntry {
        AuditEntry {
            at,
            actor: actor.into(),
            user: user.map(Into::into),
            action: format!("POST /x{at}"),
            status: 200,
        }
    }

    fn shares(s: &Store) -> Vec<(u64, String)> {
        s.audit_tail(100_000)
            .unwrap()
            .into_iter()
            .map(|(_, e)| (e.at, e.share().to_string()))
            .collect()
    }

    #[test]
    fn at_the_ceiling_a_flood_drops_only_its_own_users_oldest_entries() {
        let (_dir, s) = crate::store::temp_store();
        // A window longer than the test: every entry is recent.
        let keep = Retention {
            max_entries: 3,
            keep_secs: 1_000_000,
        };
        let ceiling = 3 * HARD_FACTOR;
        s.audit(&by(1, "carol", None), keep).unwrap();
        s.audit(&by(2, "alice", None), keep).unwrap();
        // bob floods, through his own token and his client key, to twice the ceiling.
        for i in 0..2 * ceiling {
            let e = match i % 2 {
                0 => by(10 + i, "bob", None),
                _ => by(10 + i, "client:k1", Some("bob")),
            };
            s.audit(&e, keep).unwrap();
        }
        let kept = shares(&s);
        let bob: Vec<u64> = kept
            .iter()
            .filter(|(_, u)| u == "bob")
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(bob.len() as u64, ceiling, "bob is held at the ceiling");
        assert_eq!(bob[0], 10 + ceiling, "bob's oldest went, his newest stay");
        assert_eq!(
            kept[..2],
            [(1, "carol".to_string()), (2, "alice".to_string())],
            "bob's flood pushed out another user's recent entry"
        );
        // The index follows the rows: a reopen finds nothing to rebuild, and alice's next
        // entry still counts against alice alone.
        s.audit(&by(1000, "alice", None), keep).unwrap();
        assert_eq!(shares(&s).len() as u64, ceiling + 3);
    }

    #[test]
    fn the_index_is_rebuilt_for_a_log_written_without_it() {
        let (dir, s) = crate::store::temp_store();
        let keep = Retention {
            max_entries: 1,
            keep_secs: 1_000_000,
        };
        for i in 0..5 {
            s.audit(&by(i, "bob", None), keep).unwrap();
        }
        s.audit(&by(9, "alice", None), keep).unwrap();
        {
            // As an older berth (or a backup's copy) leaves it: rows, no index.
            let txn = s.db.begin_write().unwrap();
            txn.delete_table(BY_USER).unwrap();
            txn.delete_table(COUNTS).unwrap();
            s.db.commit(txn).unwrap();
        }
        drop(s);
        let s = Store::open(&dir.path().join("berth.redb")).unwrap();
        for i in 0..20 {
            s.audit(&by(10 + i, "bob", None), keep).unwrap();
        }
        let kept = shares(&s);
        assert!(kept.contains(&(9, "alice".into())), "{kept:?}");
        assert_eq!(kept.len() as u64, HARD_FACTOR + 1, "{kept:?}");
    }
}
