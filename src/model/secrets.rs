//! Secrets (docs/guides/secrets.md): `[secrets]` values in a manifest are age ciphertexts
//! (`age:<base64>`) encrypted to the server's X25519 identity, the [`Keyring`]. This module is
//! the format and the crypto, with no I/O: the key file is read by `state::secrets_key`.
//!
//! **Invariant: a plaintext value exists only inside a [`SecretValue`]**, whose `Debug` and
//! `Display` print `<redacted>`, so no log line, error or `plan` can carry one. What the spec
//! (and so the `paas.spec` label and the spec hash) carries is a keyed [`Keyring::fingerprint`]:
//! it changes with the value, not with its encryption, and cannot be brute-forced without
//! the server's key.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use base64::Engine as _;
use serde::{Deserialize, Deserializer};

use crate::model::manifest::check_env_name;
use crate::model::names::AppKey;
use crate::model::secret_scope;
pub use crate::model::secret_scope::{Envelope, Scope};

/// The prefix of a sealed value in a manifest.
pub const PREFIX: &str = "age:";
/// Most secrets one manifest may hold.
const MAX_SECRETS: usize = 64;
/// Largest sealed value (an age header is ~200 bytes; values are at most 32 KiB).
const MAX_SEALED: usize = 48 * 1024;

/// A decrypted value. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a plaintext value (from the API or stdin).
    pub fn new(value: String) -> SecretValue {
        SecretValue(value)
    }

    /// The plaintext, for the container's environment only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[secrets]` as written: name -> `age:<base64>`, checked for shape (not decrypted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealedSecrets(pub BTreeMap<String, String>);

/// Checks a secret's name: a variable name, not one berth sets.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    check_env_name(name).map_err(|e| e.replacen("env", "secret", 1))
}

/// Checks a plaintext value: what Docker's environment can carry.
pub fn check_secret_value(value: &SecretValue) -> Result<(), String> {
    if value.0.contains('\0') || value.0.len() > 32 * 1024 {
        return Err("a secret is at most 32 KiB with no NUL character".into());
    }
    Ok(())
}

/// Checks one `[secrets]` entry's name and shape.
pub fn check_sealed(name: &str, sealed: &str) -> Result<(), String> {
    check_secret_name(name)?;
    let Some(body) = sealed.strip_prefix(PREFIX) else {
        return Err(format!(
            "secret {name}: a value must be `age:<base64>` as `berth secrets encrypt` or the API writes it; plain values belong in [env]"
        ));
    };
    if sealed.len() > MAX_SEALED
        || base64::engine::general_purpose::STANDARD
            .decode(body)
            .is_err()
    {
        return Err(format!(
            "secret {name}: not valid base64 after `age:`, or too long"
        ));
    }
    Ok(())
}

impl<'de> Deserialize<'de> for SealedSecrets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        if map.len() > MAX_SECRETS {
            let msg = format!("at most {MAX_SECRETS} secrets");
            return Err(serde::de::Error::custom(msg));
        }
        for (k, v) in &map {
            check_sealed(k, v).map_err(serde::de::Error::custom)?;
        }
        Ok(SealedSecrets(map))
    }
}

/// The server's identity: decrypts `[secrets]`, and keys their fingerprints. During a
/// rotation it holds the new identity (which seals) and the old one (which still opens what
/// is not re-encrypted yet). The fingerprint key is rotated too; a re-sealed value carries
/// its old fingerprint inside its envelope, so rotating changes no spec hash.
///
/// Keys a finished rotation retired (`--keep-old`) open only values bound to a scope: a
/// value sealed before scopes opens in any manifest it is copied into, so once a rotation
/// has had its chance to re-seal it bound, the retired key no longer opens it.
pub struct Keyring {
    current: age::x25519::Identity,
    /// The key a rotation under way replaces: opens everything, so the rotation can re-seal.
    rotating_from: Vec<age::x25519::Identity>,
    /// Keys finished rotations retired: open bound values only.
    retired: Vec<age::x25519::Identity>,
    fingerprint_key: [u8; 32],
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({})", self.recipient())
    }
}

/// The key file's line that carries the fingerprint key.
const FINGERPRINT_LINE: &str = "BERTH-FINGERPRINT-KEY-";

impl Keyring {
    /// A new random identity and fingerprint key.
    pub fn generate() -> Keyring {
        let mut fingerprint_key = [0u8; 32];
        getrandom::fill(&mut fingerprint_key).expect("the OS random source");
        Keyring {
            current: age::x25519::Identity::generate(),
            rotating_from: Vec::new(),
            retired: Vec::new(),
            fingerprint_key,
        }
    }

    /// A rotation's next key: a new identity and a new fingerprint key. Values re-sealed by
    /// the rotation carry the fingerprint they had, so no spec changes; a value sealed anew
    /// is fingerprinted with the new key.
    pub fn successor(&self) -> Keyring {
        Keyring::generate()
    }

    /// This keyring also opening (never sealing to) every `AGE-SECRET-KEY-` line of `text`:
    /// the keys earlier rotations retired, for bound values a rotation could not reach.
    pub fn also_opening(mut self, text: &str) -> Result<Keyring, String> {
        let lines = text.lines().map(str::trim);
        for line in lines.filter(|l| l.starts_with("AGE-SECRET-KEY-")) {
            let identity = age::x25519::Identity::from_str(line)
                .map_err(|_| "a line is not an age X25519 identity (AGE-SECRET-KEY-1...)")?;
            self.retired.push(identity);
        }
        Ok(self)
    }

    /// The current identity's `AGE-SECRET-KEY-1...` line, for the retired keys' file.
    pub fn identity_line(&self) -> String {
        self.current.to_string().expose_secret().to_string()
    }

    /// This keyring sealing with `next`'s identity and still opening with its own, during a
    /// rotation. It keeps fingerprinting with its own fingerprint key: what the rotation
    /// re-seals carries the fingerprint the spec holds now.
    pub fn rotating_to(self, next: Keyring) -> Keyring {
        let mut rotating_from = vec![self.current];
        rotating_from.extend(self.rotating_from);
        Keyring {
            current: next.current,
            rotating_from,
            retired: self.retired,
            fingerprint_key: self.fingerprint_key,
        }
    }

    /// Reads a key file's text: an `AGE-SECRET-KEY-1...` line, a `BERTH-FINGERPRINT-KEY-`
    /// line, `#` comments.
    pub fn parse(text: &str) -> Result<Keyring, String> {
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let identity = lines
            .iter()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .ok_or("no AGE-SECRET-KEY-1... line")?;
        let current = age::x25519::Identity::from_str(identity)
            .map_err(|_| "not an age X25519 identity (AGE-SECRET-KEY-1...)".to_string())?;
        let hex = lines
            .iter()
            .find_map(|l| l.strip_prefix(FINGERPRINT_LINE))
            .ok_or("no BERTH-FINGERPRINT-KEY- line")?;
        let fingerprint_key = *blake3::Hash::from_hex(hex)
            .map_err(|_| "the fingerprint key is not 64 hex digits")?
            .as_bytes();
        Ok(Keyring {
            current,
            rotating_from: Vec::new(),
            retired: Vec::new(),
            fingerprint_key,
        })
    }

    /// The key file's text: comments, the identity, the fingerprint key.
    pub fn to_file_text(&self) -> String {
        let secret = self.current.to_string();
        format!(
            "# berth secrets key: keep it private (0600) and backed up\n# public key: {}\n{}\n{FINGERPRINT_LINE}{}\n",
            self.recipient(),
            secret.expose_secret(),
            blake3::Hash::from_bytes(self.fingerprint_key).to_hex()
        )
    }

    /// The public key (`age1...`) new values are sealed to.
    pub fn recipient(&self) -> age::x25519::Recipient {
        self.current.to_public()
    }

    /// Decrypts `sealed` (`age:<base64>`) without looking at its scope: a rotation's and a
    /// rename's re-seal, which check the scope themselves. A retired key opens only a bound
    /// value. The error says why, never with the value.
    pub fn unseal(&self, sealed: &str) -> Result<Envelope, String> {
        let body = sealed.strip_prefix(PREFIX).ok_or("not `age:<base64>`")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| "not valid base64")?;
        let live = std::iter::once(&self.current).chain(&self.rotating_from);
        match decrypt(&bytes, live) {
            Err(Decrypted::NoKey) => {}
            other => return other.map_err(Decrypted::why),
        }
        let opened = decrypt(&bytes, &self.retired).map_err(Decrypted::why)?;
        if opened.scope.is_none() {
            return Err("sealed before values were bound to an app, to a key a rotation retired: it opens no more; seal it again for its app (`berth secrets encrypt NAME --app USER/APP`, or PUT .../secrets)".into());
        }
        Ok(opened)
    }

    /// Decrypts `sealed` for `scope`: a value sealed for another app or name is refused,
    /// naming the scope it belongs to.
    pub fn open(&self, sealed: &str, scope: &Scope) -> Result<Envelope, String> {
        let opened = self.unseal(sealed)?;
        scope.check(opened.scope.as_deref())?;
        Ok(opened)
    }

    /// What the spec carries for an opened `[secrets]` entry `name`: the fingerprint a
    /// rotation carried over, else [`fingerprint`](Self::fingerprint) with the current key.
    pub fn fingerprint_of(&self, name: &str, opened: &Envelope) -> String {
        opened
            .fingerprint
            .clone()
            .unwrap_or_else(|| self.fingerprint(name, &opened.value))
    }

    /// What the spec carries for secret `name` holding `value`: `k3:` and 16 hex digits of
    /// a blake3 hash keyed by this server's fingerprint key.
    pub fn fingerprint(&self, name: &str, value: &SecretValue) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.fingerprint_key);
        h.update(name.as_bytes())
            .update(&[0])
            .update(value.0.as_bytes());
        format!("k3:{}", &h.finalize().to_hex()[..16])
    }
}

/// Why a ciphertext did not open with some keys.
enum Decrypted {
    /// None of them is the one it was sealed to.
    NoKey,
    /// It is damaged, or not text.
    Bad(&'static str),
}

impl Decrypted {
    fn why(self) -> String {
        match self {
            Decrypted::NoKey => "encrypted to another key, not this server's".into(),
            Decrypted::Bad(why) => why.into(),
        }
    }
}

/// Decrypts the age ciphertext `bytes` with any of `identities`.
fn decrypt<'a>(
    bytes: &[u8],
    identities: impl IntoIterator<Item = &'a age::x25519::Identity>,
) -> Result<Envelope, Decrypted> {
    const DAMAGED: Decrypted = Decrypted::Bad("damaged or truncated ciphertext");
    let identities = identities.into_iter().map(|i| i as &dyn age::Identity);
    let decryptor = age::Decryptor::new_buffered(bytes).map_err(|_| DAMAGED)?;
    let mut reader = decryptor.decrypt(identities).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => Decrypted::NoKey,
        _ => DAMAGED,
    })?;
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut plain).map_err(|_| DAMAGED)?;
    String::from_utf8(plain)
        .map(secret_scope::decode)
        .map_err(|_| Decrypted::Bad("the value is not UTF-8"))
}

/// A manifest's secrets, decrypted, with the fingerprints its spec carries.
#[derive(Debug, Clone, Default)]
pub struct Opened {
    /// Name -> plaintext, for the container's environment.
    pub values: BTreeMap<String, SecretValue>,
    /// Name -> [`Keyring::fingerprint`], for the spec.
    pub fingerprints: BTreeMap<String, String>,
}

/// Decrypts every `[secrets]` entry of the manifest `file` (of `app`, which may be taking
/// `renamed_from` over) with `keys` (the key, or why there is none). An error names the file
/// and the secret, never a value.
pub fn open_all(
    (file, app, renamed_from): (&str, &AppKey, Option<AppKey>),
    sealed: &SealedSecrets,
    env: &BTreeMap<String, String>,
    keys: &Result<Keyring, String>,
) -> Result<Opened, String> {
    let mut out = Opened::default();
    for (name, text) in &sealed.0 {
        if env.contains_key(name) {
            return Err(format!(
                "{file}: {name} is set in both [env] and [secrets]; keep one"
            ));
        }
        let keyring = keys
            .as_ref()
            .map_err(|why| format!("{file}: [secrets] {name} cannot be decrypted: {why}"))?;
        let scope = Scope::secret(app, name).taking_over(renamed_from.clone());
        let opened = keyring
            .open(text, &scope)
            .map_err(|why| format!("{file}: [secrets] {name} does not decrypt: {why}"))?;
        out.fingerprints
            .insert(name.clone(), keyring.fingerprint_of(name, &opened));
        out.values.insert(name.clone(), opened.value);
    }
    Ok(out)
}

/// Encrypts `value` to `recipient` as a manifest value (`age:<base64>`), bound to `scope`.
pub fn seal(recipient: &age::x25519::Recipient, scope: &Scope, value: &SecretValue) -> String {
    seal_carrying(recipient, scope, value, None)
}

/// [`seal`], carrying the fingerprint the spec keeps showing for the value (a rotation's or
/// a rename's re-seal of a value that did not change).
pub fn seal_carrying(
    recipient: &age::x25519::Recipient,
    scope: &Scope,
    value: &SecretValue,
    fingerprint: Option<&str>,
) -> String {
    let payload = secret_scope::encode(scope, fingerprint, value);
    let bytes = age::encrypt(recipient, &payload).expect("x25519 encryption cannot fail");
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// `text` with every one of `values` in it replaced by `<redacted>`: what berth shows or
/// keeps of an app's output (a rollback's last log lines, an error) when the app printed its
/// own environment. Longer values first, so one that contains another is hidden whole.
pub fn redact<'a>(text: &str, values: impl IntoIterator<Item = &'a SecretValue>) -> String {
    let mut values: Vec<&str> = values
        .into_iter()
        .map(|v| v.0.as_str())
        .filter(|v| !v.is_empty())
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values
        .into_iter()
        .fold(text.to_string(), |t, v| t.replace(v, "<redacted>"))
}

/// Parses a public key (`age1...`).
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient, String> {
    age::x25519::Recipient::from_str(text.trim())
        .map_err(|e| format!("not an age X25519 public key (age1...): {e}"))
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
