//! Bearer secrets: admin tokens (`berth.<user>.<secret>`) and client keys
//! (`client.<id>.<secret>`, docs/reference/http-api.md). Owns how secrets are made, parsed and hashed.
//!
//! **Invariant: a secret is never stored or logged; only its keyed blake3 hash is kept**, and
//! hashes are compared with `blake3::Hash`'s constant-time equality.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Bytes of randomness in every secret (docs/reference/http-api.md: 32).
pub const SECRET_BYTES: usize = 32;
/// Length of a secret once base64url-encoded without padding.
const SECRET_CHARS: usize = 43;
/// Bytes of randomness in a client key id (shown in lists; not secret).
const KEY_ID_BYTES: usize = 8;

/// A secret as handed to its owner, with the part that names its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    /// The user name (admin token) or key id (client key).
    pub name: &'a str,
    /// The random part.
    pub secret: &'a str,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source failed");
    b
}

/// A fresh random secret, base64url.
pub fn new_secret() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_BYTES>())
}

/// A fresh random client key id: 16 lower-case hex characters.
pub fn new_key_id() -> String {
    random_bytes::<KEY_ID_BYTES>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh key for keyed hashing, kept in the database's meta table.
pub fn new_hash_key() -> [u8; 32] {
    random_bytes::<32>()
}

/// `berth.<user>.<secret>`.
pub fn admin_token(user: &str, secret: &str) -> String {
    format!("berth.{user}.{secret}")
}

/// `client.<id>.<secret>`.
pub fn client_key(id: &str, secret: &str) -> String {
    format!("client.{id}.{secret}")
}

/// Splits `<prefix>.<name>.<secret>`; `None` for anything else (wrong prefix, missing parts,
/// a secret of the wrong shape). Never echoes the input back, so it cannot leak into errors.
fn parse<'a>(prefix: &str, text: &'a str) -> Option<Presented<'a>> {
    let rest = text.strip_prefix(prefix)?.strip_prefix('.')?;
    let (name, secret) = rest.split_once('.')?;
    let secret_ok = secret.len() == SECRET_CHARS
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (secret_ok && name_ok).then_some(Presented { name, secret })
}

/// Parses an admin token.
pub fn parse_admin_token(text: &str) -> Option<Presented<'_>> {
    parse("berth", text)
}

/// Parses a client key.
pub fn parse_client_key(text: &str) -> Option<Presented<'_>> {
    parse("client", text)
}

/// Keyed blake3 of a secret, bound to the record it belongs to so a hash copied between
/// records does not verify.
pub fn keyed_hash(key: &[u8; 32], record: &str, secret: &str) -> blake3::Hash {
    keyed_hash_of(key, &[record], secret)
}

/// [`keyed_hash`] of a record name given in parts (`["client:", id]`), hashed as if joined:
/// the hot path names no record in a new string.
pub fn keyed_hash_of(key: &[u8; 32], record: &[&str], secret: &str) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key);
    for part in record {
        h.update(part.as_bytes());
    }
    h.update(&[0]);
    h.update(secret.as_bytes());
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = new_secret();
        assert_eq!(s.len(), SECRET_CHARS);
        let id = new_key_id();
        let text = client_key(&id, &s);
        assert_eq!(
            parse_client_key(&text),
            Some(Presented {
                name: &id,
                secret: &s
            })
        );
        let tok = admin_token("alice", &s);
        assert_eq!(parse_admin_token(&tok).unwrap().name, "alice");
        assert_eq!(
            parse_client_key(&tok),
            None,
            "prefixes are not interchangeable"
        );
    }

    #[test]
    fn hostile_input_is_rejected() {
        let s = new_secret();
        for bad in [
            String::new(),
            "client".into(),
            "client.".into(),
            "client..".into(),
            format!("client.abc.{}", &s[1..]),
            format!("client.abc.{s}x"),
            format!("client.ABC.{s}"),
            format!("client.a/b.{s}"),
            format!("client.abc.{s}.extra"),
            format!("client.abc.{}", "é".repeat(22)),
            format!("client.{}.{s}", "a".repeat(65)),
            format!(" client.abc.{s}"),
        ] {
            assert_eq!(parse_client_key(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hash_depends_on_key_record_and_secret() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        let h = keyed_hash(&k1, "id", "s");
        assert_eq!(h, keyed_hash(&k1, "id", "s"));
        assert_ne!(h, keyed_hash(&k2, "id", "s"));
        assert_ne!(h, keyed_hash(&k1, "id2", "s"));
        assert_ne!(h, keyed_hash(&k1, "id", "t"));
        // The separator keeps (record, secret) splits apart.
        assert_ne!(keyed_hash(&k1, "ab", "c"), keyed_hash(&k1, "a", "bc"));
    }

    #[test]
    fn a_record_name_in_parts_hashes_as_the_whole() {
        let key = [7u8; 32];
        let whole = keyed_hash(&key, "client:abc", "s");
        assert_eq!(keyed_hash_of(&key, &["client:", "abc"], "s"), whole);
        assert_ne!(keyed_hash_of(&key, &["client:", "abd"], "s"), whole);
    }
}
