//! `GET /apps` answers, kept while nothing they were made from has changed: the status
//! board (its generation moves with every pass and every API create) and the container list
//! (the informer's copy, the same while Docker's events say nothing changed). A portal polling every open tab
//! then costs a lookup, not 200 apps rendered again.

use std::collections::HashMap;
use std::sync::Mutex;

use std::sync::Arc;

use axum::body::Bytes;

use crate::model::observed::Observed;

/// Whose list: every app (admins) or one user's.
pub type Scope = Option<String>;

/// The inputs an answer was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Made {
    /// The board's generation.
    pub board: u64,
    /// Which container list (the reader's shared copy, by address; the entry holds the list,
    /// so the address cannot be reused while the entry stands).
    pub containers: usize,
}

/// One kept answer: what it was made from (holding the list), and the body.
type Entry = (Made, Arc<Vec<Observed>>, Bytes);

/// The last answer per scope.
#[derive(Default)]
pub struct ListCache {
    answers: Mutex<HashMap<Scope, Entry>>,
}

/// Most scopes kept; past it the cache starts over.
const MAX_SCOPES: usize = 1024;

impl ListCache {
    /// The answer for `scope`, if it was made from `made`.
    pub fn get(&self, scope: &Scope, made: Made) -> Option<Bytes> {
        let answers = self.answers.lock().expect("list cache");
        let (at, _, body) = answers.get(scope)?;
        (*at == made).then(|| body.clone())
    }

    /// Keeps `body`, made from `made` (whose container list is `list`), for `scope`.
    pub fn put(&self, scope: Scope, made: Made, list: Arc<Vec<Observed>>, body: Bytes) {
        let mut answers = self.answers.lock().expect("list cache");
        if answers.len() >= MAX_SCOPES {
            answers.clear();
        }
        answers.insert(scope, (made, list, body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_kept_only_for_the_inputs_it_was_made_from() {
        let c = ListCache::default();
        let made = Made {
            board: 1,
            containers: 7,
        };
        let list = Arc::new(Vec::new());
        c.put(Some("alice".into()), made, list, Bytes::from_static(b"[1]"));
        assert_eq!(c.get(&Some("alice".into()), made).unwrap(), "[1]");
        assert!(c.get(&None, made).is_none(), "another scope");
        assert!(c
            .get(&Some("alice".into()), Made { board: 2, ..made })
            .is_none());
        assert!(c
            .get(
                &Some("alice".into()),
                Made {
                    containers: 8,
                    ..made
                }
            )
            .is_none());
    }
}
