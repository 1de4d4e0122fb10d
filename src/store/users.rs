//! Users: a name (a valid userid, since a user's apps live under `state/apps/<name>/`), a
//! role, and the keyed hash of the user's admin token.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::{db_err, to_json, unix_now, Store, StoreError, USERS};
use crate::model::names::validate_userid;
use crate::store::tokens;

/// What a user may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Only its own userid's apps.
    User,
    /// Every app, and user management.
    Admin,
}

/// A user as stored.
#[derive(Debug, Serialize, Deserialize)]
struct UserRecord {
    role: Role,
    /// Hex of the keyed blake3 hash of the token's secret.
    token_hash: String,
    created_at: u64,
}

/// A user as shown (no hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// The user's name, which is also its userid.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Unix seconds.
    pub created_at: u64,
}

fn record_name(user: &str) -> String {
    format!("user:{user}")
}

impl Store {
    /// Adds a user and returns its admin token; the token exists nowhere else.
    pub fn add_user(&self, name: &str, role: Role) -> Result<String, StoreError> {
        validate_userid(name)?;
        let secret = tokens::new_secret();
        let record = UserRecord {
            role,
            token_hash: tokens::keyed_hash(&self.hash_key, &record_name(name), &secret)
                .to_hex()
                .to_string(),
            created_at: unix_now(),
        };
        let txn = self.db.begin_write()?;
        {
            let mut users = txn.open_table(USERS).map_err(db_err)?;
            if users.get(name).map_err(db_err)?.is_some() {
                return Err(StoreError::Exists(format!("user {name} already exists")));
            }
            users
                .insert(name, to_json(&record).as_str())
                .map_err(db_err)?;
        }
        self.db.commit(txn)?;
        Ok(tokens::admin_token(name, &secret))
    }

    /// Every user, by name.
    pub fn list_users(&self) -> Result<Vec<UserInfo>, StoreError> {
        Ok(self
            .read_all::<UserRecord>(USERS)?
            .into_iter()
            .map(|(name, r)| UserInfo {
                name,
                role: r.role,
                created_at: r.created_at,
            })
            .collect())
    }

    /// Removes a user; its token stops working at once. Its apps stay.
    pub fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let removed = txn
            .open_table(USERS)
            .map_err(db_err)?
            .remove(name)
            .map_err(db_err)?
            .is_some();
        self.db.commit(txn)?;
        if removed {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("no user {name:?}")))
        }
    }

    /// The user a bearer token belongs to, or `None` when it is malformed, unknown or wrong.
    pub fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, StoreError> {
        let Some(p) = tokens::parse_admin_token(token) else {
            return Ok(None);
        };
        let Some(record) = self.read_one::<UserRecord>(USERS, p.name)? else {
            return Ok(None);
        };
        let Ok(stored) = blake3::Hash::from_hex(&record.token_hash) else {
            return Ok(None);
        };
        let presented = tokens::keyed_hash(&self.hash_key, &record_name(p.name), p.secret);
        // blake3::Hash equality is constant-time.
        Ok((presented == stored).then(|| UserInfo {
            name: p.name.to_string(),
            role: record.role,
            created_at: record.created_at,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::temp_store as store;

    #[test]
    fn token_authenticates_its_user_only() {
        let (_d, s) = store();
        let alice = s.add_user("alice", Role::User).unwrap();
        let root = s.add_user("root", Role::Admin).unwrap();
        assert_eq!(s.authenticate(&alice).unwrap().unwrap().name, "alice");
        let r = s.authenticate(&root).unwrap().unwrap();
        assert_eq!((r.name.as_str(), r.role), ("root", Role::Admin));
        // Alice's secret under root's name must not pass.
        let forged = alice.replacen("alice", "root", 1);
        assert_eq!(s.authenticate(&forged).unwrap(), None);
        assert_eq!(s.authenticate("").unwrap(), None);
        assert_eq!(s.authenticate("berth.nobody.x").unwrap(), None);
    }

    #[test]
    fn removed_user_token_stops_working() {
        let (_d, s) = store();
        let t = s.add_user("bob", Role::User).unwrap();
        s.remove_user("bob").unwrap();
        assert_eq!(s.authenticate(&t).unwrap(), None);
        assert!(matches!(s.remove_user("bob"), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn names_follow_userid_rules_and_are_unique() {
        let (_d, s) = store();
        for bad in ["", "Alice", "a-b", "../x", "ü", &"a".repeat(31)] {
            assert!(
                matches!(s.add_user(bad, Role::User), Err(StoreError::Name(_))),
                "{bad:?}"
            );
        }
        s.add_user("carol", Role::User).unwrap();
        assert!(matches!(
            s.add_user("carol", Role::Admin),
            Err(StoreError::Exists(_))
        ));
        let names: Vec<String> = s
            .list_users()
            .unwrap()
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["carol"]);
    }

    #[test]
    fn the_token_is_not_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        let token = Store::open(&path)
            .unwrap()
            .add_user("dave", Role::User)
            .unwrap();
        let secret = token.rsplit('.').next().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
}
