//! Where a sealed value belongs (its scope) and the envelope that carries it inside the
//! encryption. A value is sealed for one app's one name, `userid/appname/NAME` for a
//! `[secrets]` entry and `userid/appname/values.NAME` for a sealed `[values]` entry, and
//! opens nowhere else: a ciphertext copied into another manifest (another user's, or another
//! app's of the same user) freezes that app with an error naming the scope it was sealed for,
//! as Sealed Secrets' strict scope does. The scope is inside the age payload, so it cannot be
//! changed without the server's key.
//!
//! The envelope also carries the fingerprint the spec shows for the value, once a rotation
//! has re-sealed it: the fingerprint key is rotated with the identity, and a value that did
//! not change must keep the fingerprint it had (else every container holding a secret would
//! be recreated by a rotation). A value sealed anew carries none: its fingerprint is computed
//! with the current key, so the spec changes exactly when the value does.
//!
//! Values sealed before scopes existed (a bare plaintext payload) open anywhere until a
//! `berth secrets rotate` re-seals them bound to the manifest they are in.

use std::fmt;

use crate::model::names::AppKey;
use crate::model::secrets::SecretValue;

/// The first bytes of a scoped payload. A secret value never holds a NUL (see
/// `check_secret_value`), so a legacy bare value can never be read as an envelope.
const MAGIC: &str = "berth-sealed-v1\0";

/// The app and name a value is sealed for, and (while a rename is under way) the app whose
/// values it may still open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    app: AppKey,
    name: String,
    renamed_from: Option<AppKey>,
}

impl Scope {
    /// A `[secrets]` entry's scope: `userid/appname/NAME`.
    pub fn secret(app: &AppKey, name: &str) -> Scope {
        Scope {
            app: app.clone(),
            name: name.to_string(),
            renamed_from: None,
        }
    }

    /// A sealed `[values]` entry's scope: `userid/appname/values.NAME`.
    pub fn value(app: &AppKey, name: &str) -> Scope {
        Scope::secret(app, &format!("values.{name}"))
    }

    /// Parses `userid/appname/NAME` (or `.../values.NAME`), as an API caller names a value
    /// to copy.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let mut parts = text.splitn(3, '/');
        let (Some(user), Some(app), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("{text:?} is not userid/appname/NAME"));
        };
        let key = AppKey::new(user, app).map_err(|e| e.to_string())?;
        match name.strip_prefix("values.") {
            Some(v) if !v.is_empty() => Ok(Scope::value(&key, v)),
            _ => {
                crate::model::secrets::check_secret_name(name)?;
                Ok(Scope::secret(&key, name))
            }
        }
    }

    /// This scope, also opening what was sealed for the same name of `old`: a manifest with
    /// `renamed_from` holds the old app's values until the finished rename re-seals them.
    pub fn taking_over(mut self, old: Option<AppKey>) -> Scope {
        self.renamed_from = old.filter(|o| o.userid == self.app.userid);
        self
    }

    /// The app this scope belongs to.
    pub fn app(&self) -> &AppKey {
        &self.app
    }

    /// The name within the app: `NAME` or `values.NAME`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a value bound to `bound` opens here.
    fn accepts(&self, bound: &str) -> bool {
        bound == self.to_string()
            || self
                .renamed_from
                .as_ref()
                .is_some_and(|old| bound == format!("{old}/{}", self.name))
    }

    /// Checks what a payload says it is bound to (`None`: a value sealed before scopes).
    pub fn check(&self, bound: Option<&str>) -> Result<(), String> {
        match bound {
            Some(b) if !self.accepts(b) => Err(format!(
                "sealed for {b}, not for {self}: a sealed value opens only in the app and name it was sealed for; seal it for this app (`berth secrets encrypt {} --app {}`, or PUT .../secrets)",
                self.name.trim_start_matches("values."),
                self.app
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.name)
    }
}

/// An opened payload: the value, the scope it is bound to (none for a value sealed before
/// scopes), and the fingerprint a rotation carried over (none for a value sealed anew).
#[derive(Debug)]
pub struct Envelope {
    pub value: SecretValue,
    pub scope: Option<String>,
    pub fingerprint: Option<String>,
}

/// The payload sealed for `scope`, carrying `fingerprint` when a rotation re-seals it.
pub fn encode(scope: &Scope, fingerprint: Option<&str>, value: &SecretValue) -> Vec<u8> {
    let fp = fingerprint.unwrap_or_default();
    format!("{MAGIC}{scope}\0{fp}\0{}", value.expose()).into_bytes()
}

/// Reads a payload: an envelope, or a bare value sealed before scopes.
pub fn decode(plain: String) -> Envelope {
    let Some(rest) = plain.strip_prefix(MAGIC) else {
        return Envelope {
            value: SecretValue::new(plain),
            scope: None,
            fingerprint: None,
        };
    };
    let mut parts = rest.splitn(3, '\0');
    let scope = parts.next().unwrap_or_default().to_string();
    let fp = parts.next().unwrap_or_default().to_string();
    let value = parts.next().unwrap_or_default().to_string();
    Envelope {
        value: SecretValue::new(value),
        scope: Some(scope),
        fingerprint: (!fp.is_empty()).then_some(fp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_accepts_its_own_name_and_a_renamed_apps_only() {
        let web = AppKey::new("alice", "web").unwrap();
        let s = Scope::secret(&web, "TOKEN");
        assert_eq!(s.to_string(), "alice/web/TOKEN");
        assert!(s.check(Some("alice/web/TOKEN")).is_ok());
        assert!(s.check(None).is_ok(), "a value sealed before scopes opens");
        let e = s.check(Some("bob/web/TOKEN")).unwrap_err();
        assert!(
            e.contains("sealed for bob/web/TOKEN, not for alice/web/TOKEN"),
            "{e}"
        );
        assert!(s.check(Some("alice/web/OTHER")).is_err());
        assert!(s.check(Some("alice/old/TOKEN")).is_err());
        let old = AppKey::new("alice", "old").unwrap();
        let renamed = Scope::secret(&web, "TOKEN").taking_over(Some(old));
        assert!(renamed.check(Some("alice/old/TOKEN")).is_ok());
        let bobs = AppKey::new("bob", "old").unwrap();
        let other_user = Scope::secret(&web, "TOKEN").taking_over(Some(bobs));
        assert!(other_user.check(Some("bob/old/TOKEN")).is_err());
        let v = Scope::value(&web, "password");
        assert_eq!(v.to_string(), "alice/web/values.password");
        assert_eq!(Scope::parse("alice/web/values.password").unwrap(), v);
        assert_eq!(Scope::parse("alice/web/TOKEN").unwrap(), s);
        assert!(Scope::parse("alice/web").is_err());
        assert!(Scope::parse("alice/web/1X").is_err());
    }

    #[test]
    fn an_envelope_round_trips_and_a_bare_value_is_legacy() {
        let s = Scope::secret(&AppKey::new("alice", "web").unwrap(), "T");
        let v = SecretValue::new("a=b\nc".into());
        let e = decode(String::from_utf8(encode(&s, Some("k3:00"), &v)).unwrap());
        assert_eq!(e.value, v);
        assert_eq!(e.scope.as_deref(), Some("alice/web/T"));
        assert_eq!(e.fingerprint.as_deref(), Some("k3:00"));
        let e = decode(String::from_utf8(encode(&s, None, &v)).unwrap());
        assert_eq!(e.fingerprint, None);
        let legacy = decode("plain".into());
        assert_eq!((legacy.value.expose(), legacy.scope), ("plain", None));
    }
}
