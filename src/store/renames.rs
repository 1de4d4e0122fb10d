//! A renamed app keeps its records: its incarnation (so its client keys go on working, under
//! the new name) and its revision history move from the old name to the new one in one
//! transaction. Both the API (right after the rename's commit) and the serve loop (after
//! every pass that sees a rename under way) ask for it, so a crash between the files and the
//! database is healed by the next pass; a second call finds nothing left to move.

use std::time::Instant;

use redb::{ReadableTable, WriteTransaction};

use super::incarnations::name;
use super::{db_err, from_json, to_json, Store, StoreError, INCARNATIONS, REVISIONS};
use crate::model::names::AppKey;
use crate::store::revisions::Revision;

/// What one adoption moved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Client keys now scoped to the new name.
    pub keys: usize,
    /// Revisions now under the new name.
    pub revisions: usize,
}

impl Store {
    /// Moves `old`'s incarnation, client keys and revisions to `new`. A no-op (one read) when
    /// `old` has none left.
    pub fn adopt(&self, old: &AppKey, new: &AppKey) -> Result<Adopted, StoreError> {
        let has_incarnation = self.incarnation(old)?.is_some();
        if !has_incarnation && self.revisions(old)?.is_empty() {
            return Ok(Adopted::default());
        }
        let txn = self.db.begin_write()?;
        let incarnation = move_incarnation(self, &txn, old, new)?;
        let keys = super::keys::move_keys(&txn, old, new, &incarnation)?;
        let revisions = move_revisions(&txn, old, new)?;
        self.db.commit(txn)?;
        Ok(Adopted { keys, revisions })
    }
}

/// `new`'s incarnation afterwards: `old`'s, unless `new` has one of its own already.
fn move_incarnation(
    store: &Store,
    txn: &WriteTransaction,
    old: &AppKey,
    new: &AppKey,
) -> Result<String, StoreError> {
    {
        let mut table = txn.open_table(INCARNATIONS).map_err(db_err)?;
        let moved = table
            .remove(name(old).as_str())
            .map_err(db_err)?
            .map(|v| v.value().to_string());
        if let Some(record) = moved {
            if table.get(name(new).as_str()).map_err(db_err)?.is_none() {
                table
                    .insert(name(new).as_str(), record.as_str())
                    .map_err(db_err)?;
            }
        }
    }
    // Born now, as far as a pass that began before this is concerned: such a pass did not
    // see the new manifest and must not end what it never saw.
    let mut born = store.born.lock().unwrap_or_else(|e| e.into_inner());
    born.remove(&name(old));
    born.insert(name(new), Instant::now());
    drop(born);
    super::incarnations::current_or_new(store, txn, new)
}

/// Moves `old`'s revisions under `new`, oldest first, numbered before any `new` has.
fn move_revisions(txn: &WriteTransaction, old: &AppKey, new: &AppKey) -> Result<usize, StoreError> {
    let mut table = txn.open_table(REVISIONS).map_err(db_err)?;
    let rows = |app: &AppKey| -> Result<Vec<(String, Revision)>, StoreError> {
        let (lo, hi) = super::revisions::range(app);
        let mut out = Vec::new();
        for row in table.range(lo.as_str()..hi.as_str()).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            out.push((
                k.value().to_string(),
                from_json("revisions", k.value(), v.value())?,
            ));
        }
        Ok(out)
    };
    let (from, mine) = (rows(old)?, rows(new)?);
    let moved = from.len();
    for (k, _) in from.iter().chain(&mine) {
        table.remove(k.as_str()).map_err(db_err)?;
    }
    let all = from.into_iter().chain(mine).map(|(_, r)| r);
    for (n, mut r) in (1u64..).zip(all) {
        r.revision = n;
        table
            .insert(format!("{new}/{n:010}").as_str(), to_json(&r).as_str())
            .map_err(db_err)?;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn key(a: &str) -> AppKey {
        AppKey::new("alice", a).unwrap()
    }

    #[test]
    fn a_renamed_app_keeps_its_keys_and_history_and_a_second_adoption_moves_nothing() {
        let (_dir, s) = crate::store::temp_store();
        let (old, new) = (key("old"), key("new"));
        let present = BTreeSet::from([old.clone()]);
        s.sync_incarnations(&present, &BTreeSet::new(), Instant::now())
            .unwrap();
        let (_, issued) = s.issue_client_key(&old, 0, 5).unwrap();
        s.record_revision(&old, "a", "h1", "file", 0, 10).unwrap();
        s.record_revision(&old, "b", "h2", "file", 0, 10).unwrap();
        let began = Instant::now();
        let moved = s.adopt(&old, &new).unwrap();
        assert_eq!(
            moved,
            Adopted {
                keys: 1,
                revisions: 2
            }
        );
        assert_eq!(s.adopt(&old, &new).unwrap(), Adopted::default());
        let texts: Vec<String> = s
            .revisions(&new)
            .unwrap()
            .into_iter()
            .map(|r| r.content)
            .collect();
        assert_eq!(texts, ["a", "b"]);
        assert!(s.revisions(&old).unwrap().is_empty());
        // A pass that began before the adoption saw the old name only: it ends nothing.
        s.sync_incarnations(&present, &BTreeSet::new(), began)
            .unwrap();
        let now = BTreeSet::from([new.clone()]);
        s.sync_incarnations(&now, &BTreeSet::new(), Instant::now())
            .unwrap();
        match s.check_client_key(&issued, 0).unwrap() {
            crate::store::keys::KeyCheck::Valid(info) => assert_eq!(info.appname, "new"),
            other => panic!("the key stopped working: {other:?}"),
        }
    }

    #[test]
    fn history_the_new_name_already_has_follows_the_old_names() {
        let (_dir, s) = crate::store::temp_store();
        let (old, new) = (key("old"), key("new"));
        s.record_revision(&old, "a", "h1", "file", 0, 10).unwrap();
        s.record_revision(&new, "c", "h3", "file", 0, 10).unwrap();
        s.adopt(&old, &new).unwrap();
        let got: Vec<(u64, String)> = s
            .revisions(&new)
            .unwrap()
            .into_iter()
            .map(|r| (r.revision, r.content))
            .collect();
        assert_eq!(got, [(1, "a".to_string()), (2, "c".to_string())]);
    }
}
