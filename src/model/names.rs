//! Names: the rules for user ids, app names and instance names (docs/reference/manifest.md), the `AppKey` that
//! identifies an app everywhere, and the container name derived from it (docs/reference/labels.md).
//!
//! Every name that reaches a path, a label or a container name passes through here first, so
//! the rules live in exactly one place.

use std::fmt;

use thiserror::Error;

/// Ends the name of a rollout's new container until it is settled under the app's name.
pub const NEXT_SUFFIX: &str = "_next";
/// Ends the name of a rollout's old container from the switch on, until it is removed.
pub const OLD_SUFFIX: &str = "_old";

/// A name that broke the rules, with what it was meant to be.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {kind} {name:?}: {rule}")]
pub struct NameError {
    /// "userid", "appname" or "instance".
    pub kind: &'static str,
    /// The rejected text, escaped when printed so control characters stay visible.
    pub name: String,
    /// The rule it broke, in words a user can act on.
    pub rule: &'static str,
}

/// The user id rule in words.
pub const USERID_RULE: &str =
    "must be 1-30 characters of a-z and 0-9, starting with a letter (no hyphens)";
/// The app name rule in words.
pub const APPNAME_RULE: &str =
    "must be 1-30 characters of a-z, 0-9 and '-', starting with a letter";
/// Longest user id or app name.
pub const NAME_MAX_LEN: usize = 30;
/// The user id rule as an HTML `pattern` (which is anchored whole): the portal's forms use it
/// so a browser refuses what the server would.
pub const USERID_PATTERN: &str = "[a-z][a-z0-9]{0,29}";
/// The app name rule as an HTML `pattern`.
pub const APPNAME_PATTERN: &str = "[a-z][a-z0-9\\-]{0,29}";
const INSTANCE_RULE: &str =
    "must be 1-30 characters of a-z and 0-9, starting with a letter (no hyphens)";

/// Checks `^[a-z][a-z0-9]{0,29}$` (or with `-` allowed after the first letter).
fn matches_rule(name: &str, allow_hyphen: bool) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > 30 || !bytes[0].is_ascii_lowercase() {
        return false;
    }
    bytes[1..]
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || (allow_hyphen && b == b'-'))
}

/// Validates a user id. No hyphen, so `paas-app-<userid>-<appname>` can't collide.
pub fn validate_userid(name: &str) -> Result<(), NameError> {
    check(name, "userid", false, USERID_RULE)
}

/// Validates an app name.
pub fn validate_appname(name: &str) -> Result<(), NameError> {
    check(name, "appname", true, APPNAME_RULE)
}

/// Validates an instance name; same shape as a user id for the same collision reason.
pub fn validate_instance(name: &str) -> Result<(), NameError> {
    check(name, "instance", false, INSTANCE_RULE)
}

fn check(
    name: &str,
    kind: &'static str,
    hyphen: bool,
    rule: &'static str,
) -> Result<(), NameError> {
    if matches_rule(name, hyphen) {
        Ok(())
    } else {
        Err(NameError {
            kind,
            name: name.to_string(),
            rule,
        })
    }
}

/// The identity of one app: (userid, appname). Ordered by userid, then appname, which is
/// "path order" for quotas and for printing plans.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppKey {
    /// The owner; the directory name under `state/apps/`.
    pub userid: String,
    /// The app; the file stem of the manifest.
    pub appname: String,
}

impl AppKey {
    /// Builds a key after checking both names.
    pub fn new(userid: &str, appname: &str) -> Result<AppKey, NameError> {
        validate_userid(userid)?;
        validate_appname(appname)?;
        Ok(AppKey {
            userid: userid.to_string(),
            appname: appname.to_string(),
        })
    }

    /// [`new`](Self::new) for names already owned (the API's path parameters): no copy.
    pub fn from_owned(userid: String, appname: String) -> Result<AppKey, NameError> {
        validate_userid(&userid)?;
        validate_appname(&appname)?;
        Ok(AppKey { userid, appname })
    }

    /// The name of a container that replaces the app's current one during a rollout (and
    /// keeps it until settled). `_` cannot occur in an app name, so it never collides with
    /// another app's container.
    pub fn next_container_name(&self, instance: &str) -> String {
        format!("{}{NEXT_SUFFIX}", self.container_name(instance))
    }

    /// The name of a rollout's old container once the route has left it (until removed).
    pub fn old_container_name(&self, instance: &str) -> String {
        format!("{}{OLD_SUFFIX}", self.container_name(instance))
    }

    /// The Docker container name for this app in `instance` (docs/reference/labels.md).
    pub fn container_name(&self, instance: &str) -> String {
        if instance == "main" {
            format!("paas-app-{}-{}", self.userid, self.appname)
        } else {
            format!("paas-app-{}-{}-{}", instance, self.userid, self.appname)
        }
    }
}

impl fmt::Display for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.userid, self.appname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for n in ["a", "alice", "bob42", &"a".repeat(30)] {
            assert!(validate_userid(n).is_ok(), "{n}");
            assert!(validate_appname(n).is_ok(), "{n}");
        }
        assert!(validate_appname("my-app-2").is_ok());
        assert!(validate_instance("t0a1b2").is_ok());
    }

    #[test]
    fn rejects_hostile_names() {
        let long = "a".repeat(31);
        let hostile = [
            "", "..", ".", "a/b", "a\\b", "A", "Alice", "1abc", "-a", "a.b", "a b", "é", "аlice",
            "a\0", "a\n", ".hidden", "%2e%2e", &long,
        ];
        for n in hostile {
            assert!(validate_userid(n).is_err(), "userid {n:?}");
            assert!(validate_appname(n).is_err(), "appname {n:?}");
        }
    }

    #[test]
    fn userid_has_no_hyphen_so_container_names_cannot_collide() {
        assert!(validate_userid("a-b").is_err());
        assert!(validate_appname("b-c").is_ok());
        let k = AppKey::new("a", "b-c").unwrap();
        assert_eq!(k.container_name("main"), "paas-app-a-b-c");
        assert_eq!(k.container_name("t1"), "paas-app-t1-a-b-c");
        assert_eq!(k.next_container_name("main"), "paas-app-a-b-c_next");
        assert!(validate_appname("c_next").is_err());
    }

    #[test]
    fn error_names_the_rule() {
        let e = validate_userid("Bob").unwrap_err();
        assert!(e.to_string().contains("\"Bob\""));
        assert!(e.to_string().contains("no hyphens"));
    }

    #[test]
    fn keys_order_by_user_then_app() {
        let mut keys = [
            AppKey::new("bob", "a").unwrap(),
            AppKey::new("alice", "z").unwrap(),
            AppKey::new("alice", "b").unwrap(),
        ];
        keys.sort();
        let shown: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        assert_eq!(shown, ["alice/b", "alice/z", "bob/a"]);
    }

    #[test]
    fn the_forms_patterns_accept_exactly_what_the_rules_accept() {
        let whole = |p: &str| regex::Regex::new(&format!("^(?:{p})$")).unwrap();
        let (user, app) = (whole(USERID_PATTERN), whole(APPNAME_PATTERN));
        let long = "a".repeat(NAME_MAX_LEN);
        let too_long = "a".repeat(NAME_MAX_LEN + 1);
        for name in [
            "a", "web", "web-2", "9web", "-web", "Web", "w_b", "w.b", "", "a1", &long, &too_long,
            "web-", "a--b", "we b", "wéb",
        ] {
            assert_eq!(
                user.is_match(name),
                validate_userid(name).is_ok(),
                "{name:?}"
            );
            assert_eq!(
                app.is_match(name),
                validate_appname(name).is_ok(),
                "{name:?}"
            );
        }
    }
}
