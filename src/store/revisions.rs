//! Revision history: every manifest version the reconcile loop took up, per app, numbered from
//! 1, with its spec hash and where it came from. Keys are `<userid>/<appname>/<rev, 10 digits>`
//! so one app's revisions are one ordered range; only the newest `keep` are kept.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{db_err, from_json, to_json, Store, StoreError, REVISIONS};
use crate::model::names::AppKey;

/// One manifest version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// 1, 2, ... per app; never reused, even after old ones are dropped.
    pub revision: u64,
    /// The manifest text.
    pub content: String,
    /// The spec hash it produced (label `paas.spec-hash`).
    pub spec_hash: String,
    /// `file` (an edit on disk), `api:<caller>`, `git:<commit>`.
    pub source: String,
    /// Unix seconds.
    pub at: u64,
}

/// The range of `app`'s keys: `u/a/` up to (not including) `u/a0` (`'0'` follows `'/'`).
pub(super) fn range(app: &AppKey) -> (String, String) {
    (format!("{app}/"), format!("{app}0"))
}

impl Store {
    /// Records `content` as `app`'s next revision unless it equals the newest one; keeps the
    /// newest `keep`. Returns the new revision number.
    pub fn record_revision(
        &self,
        app: &AppKey,
        content: &str,
        spec_hash: &str,
        source: &str,
        at: u64,
        keep: usize,
    ) -> Result<Option<u64>, StoreError> {
        let (lo, hi) = range(app);
        let txn = self.db.begin_write()?;
        let next = {
            let mut table = txn.open_table(REVISIONS).map_err(db_err)?;
            let last: Option<Revision> = match table
                .range(lo.as_str()..hi.as_str())
                .map_err(db_err)?
                .next_back()
            {
                Some(row) => {
                    let (k, v) = row.map_err(db_err)?;
                    Some(from_json("revisions", k.value(), v.value())?)
                }
                None => None,
            };
            if last.as_ref().is_some_and(|r| r.content == content) {
                return Ok(None);
            }
            let next = last.map_or(1, |r| r.revision + 1);
            let rev = Revision {
                revision: next,
                content: content.to_string(),
                spec_hash: spec_hash.to_string(),
                source: source.to_string(),
                at,
            };
            table
                .insert(format!("{app}/{next:010}").as_str(), to_json(&rev).as_str())
                .map_err(db_err)?;
            let keys: Vec<String> = table
                .range(lo.as_str()..hi.as_str())
                .map_err(db_err)?
                .map(|r| r.map(|(k, _)| k.value().to_string()))
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            for old in keys.iter().take(keys.len().saturating_sub(keep.max(1))) {
                table.remove(old.as_str()).map_err(db_err)?;
            }
            next
        };
        self.db.commit(txn)?;
        Ok(Some(next))
    }

    /// `app`'s kept revisions, oldest first.
    pub fn revisions(&self, app: &AppKey) -> Result<Vec<Revision>, StoreError> {
        let (lo, hi) = range(app);
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REVISIONS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.range(lo.as_str()..hi.as_str()).map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            out.push(from_json("revisions", k.value(), v.value())?);
        }
        Ok(out)
    }

    /// One kept revision.
    pub fn revision(&self, app: &AppKey, n: u64) -> Result<Option<Revision>, StoreError> {
        self.read_one(REVISIONS, &format!("{app}/{n:010}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_changes_only_and_keeps_the_newest() {
        let (_dir, s) = crate::store::temp_store();
        let web = AppKey::new("alice", "web").unwrap();
        let web2 = AppKey::new("alice", "web-2").unwrap();
        let rec =
            |app: &AppKey, text: &str| s.record_revision(app, text, "h", "file", 0, 3).unwrap();
        assert_eq!(rec(&web, "a"), Some(1));
        assert_eq!(rec(&web, "a"), None, "same content is not a new revision");
        assert_eq!(rec(&web2, "x"), Some(1), "apps are numbered separately");
        for (i, t) in ["b", "c", "d", "e"].iter().enumerate() {
            assert_eq!(rec(&web, t), Some(i as u64 + 2));
        }
        let kept: Vec<u64> = s
            .revisions(&web)
            .unwrap()
            .iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(kept, [3, 4, 5]);
        assert_eq!(s.revision(&web, 4).unwrap().unwrap().content, "d");
        assert_eq!(s.revision(&web, 1).unwrap(), None);
        assert_eq!(
            s.revisions(&web2).unwrap().len(),
            1,
            "a prefix-sharing app is separate"
        );
        // Going back to an old text is a new revision.
        assert_eq!(rec(&web, "a"), Some(6));
    }
}
