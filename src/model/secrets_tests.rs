//! Tests of the sealed-value format and the keyring (`secrets.rs`).

use super::*;

fn sc() -> Scope {
    Scope::secret(&AppKey::new("alice", "web").unwrap(), "P")
}

#[test]
fn a_value_round_trips_and_its_fingerprint_ignores_the_encryption() {
    let k = Keyring::generate();
    let v = SecretValue::new("hunter2".into());
    let (a, b) = (
        seal(&k.recipient(), &sc(), &v),
        seal(&k.recipient(), &sc(), &v),
    );
    assert_ne!(a, b, "age encryption is randomized");
    assert_eq!(k.open(&a, &sc()).unwrap().value, v);
    assert_eq!(
        k.fingerprint("P", &k.open(&a, &sc()).unwrap().value),
        k.fingerprint("P", &k.open(&b, &sc()).unwrap().value)
    );
    let other = SecretValue::new("hunter3".into());
    assert_ne!(k.fingerprint("P", &v), k.fingerprint("P", &other));
    assert_ne!(
        k.fingerprint("P", &v),
        Keyring::generate().fingerprint("P", &v)
    );
}

#[test]
fn wrong_key_garbage_and_truncation_are_refused_without_the_value() {
    let k = Keyring::generate();
    let sealed = seal(&k.recipient(), &sc(), &SecretValue::new("hunter2".into()));
    let other = Keyring::generate();
    assert!(other
        .open(&sealed, &sc())
        .unwrap_err()
        .contains("another key"));
    assert!(k.open("age:!!!", &sc()).unwrap_err().contains("base64"));
    let cut = &sealed[..sealed.len() - 12];
    let e = k.open(cut, &sc()).unwrap_err();
    assert!(!e.contains("hunter2"), "{e}");
    assert_eq!(
        format!("{:?}", k.open(&sealed, &sc()).unwrap().value),
        "<redacted>"
    );
    let bob = Scope::secret(&AppKey::new("bob", "web").unwrap(), "P");
    let e = k.open(&sealed, &bob).unwrap_err();
    assert!(
        e.contains("sealed for alice/web/P, not for bob/web/P"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn the_key_file_text_parses_back_to_the_same_identity() {
    let k = Keyring::generate();
    let back = Keyring::parse(&k.to_file_text()).unwrap();
    assert_eq!(back.recipient().to_string(), k.recipient().to_string());
    assert!(Keyring::parse("# nothing\n").is_err());
    assert!(Keyring::parse("AGE-SECRET-KEY-1NOPE\n").is_err());
    let no_fingerprint_key = k.to_file_text().replace(FINGERPRINT_LINE, "# ");
    assert!(Keyring::parse(&no_fingerprint_key).is_err());
}

#[test]
fn a_rotation_opens_old_values_seals_to_the_new_key_and_carries_fingerprints() {
    let old = Keyring::generate();
    let v = SecretValue::new("hunter2".into());
    let sealed_old = seal(&old.recipient(), &sc(), &v);
    let fp = old.fingerprint("P", &v);
    let next = old.successor();
    let next_alone = Keyring::parse(&next.to_file_text()).unwrap();
    let both = Keyring::parse(&old.to_file_text())
        .unwrap()
        .rotating_to(next);
    let opened = both.open(&sealed_old, &sc()).unwrap();
    assert_eq!(opened.value, v);
    assert_eq!(both.fingerprint_of("P", &opened), fp);
    assert_eq!(
        both.recipient().to_string(),
        next_alone.recipient().to_string()
    );
    // The rotation's re-seal carries the fingerprint the spec holds.
    let resealed = seal_carrying(&both.recipient(), &sc(), &v, Some(&fp));
    let opened = next_alone.open(&resealed, &sc()).unwrap();
    assert_eq!(
        next_alone.fingerprint_of("P", &opened),
        fp,
        "a spec changed"
    );
    assert!(
        next_alone.open(&sealed_old, &sc()).is_err(),
        "the new key alone opens an old value"
    );
    // The fingerprint key was rotated: the same value sealed anew is fingerprinted anew.
    assert_ne!(next_alone.fingerprint("P", &v), fp);
    let anew = next_alone
        .open(&seal(&both.recipient(), &sc(), &v), &sc())
        .unwrap();
    assert_ne!(next_alone.fingerprint_of("P", &anew), fp);
}

#[test]
fn redaction_hides_every_value_whole() {
    let vals = [
        SecretValue::new("abc".into()),
        SecretValue::new("xxabcxx".into()),
        SecretValue::new(String::new()),
    ];
    let out = redact("A=xxabcxx B=abc C=ab", &vals);
    assert_eq!(out, "A=<redacted> B=<redacted> C=ab");
}

#[test]
fn sealed_values_are_checked_for_shape() {
    assert!(check_sealed("DB_PASSWORD", "age:YWJj").is_ok());
    assert!(check_sealed("DB_PASSWORD", "hunter2")
        .unwrap_err()
        .contains("[env]"));
    assert!(check_sealed("1X", "age:YWJj")
        .unwrap_err()
        .contains("secret"));
    assert!(check_sealed("PORT", "age:YWJj").is_err());
    assert!(check_sealed("X", "age:***").is_err());
}

/// A value as berth sealed it before scopes: the bare plaintext, no envelope.
fn sealed_unscoped(recipient: &age::x25519::Recipient, value: &str) -> String {
    let bytes = age::encrypt(recipient, value.as_bytes()).unwrap();
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[test]
fn a_retired_key_opens_bound_values_only() {
    let old = Keyring::generate();
    let legacy = sealed_unscoped(&old.recipient(), "hunter2");
    let bound = seal(&old.recipient(), &sc(), &SecretValue::new("bound".into()));
    assert!(old.open(&legacy, &sc()).is_ok(), "before any rotation");
    // Mid-rotation the old key opens everything, so the rotation can re-seal it bound.
    let next = old.successor();
    let next_text = next.to_file_text();
    let rotating = Keyring::parse(&old.to_file_text())
        .unwrap()
        .rotating_to(next);
    assert_eq!(
        rotating.open(&legacy, &sc()).unwrap().value.expose(),
        "hunter2"
    );
    // Finished with --keep-old: the retired key opens the bound value, not the unbound one.
    let kept = Keyring::parse(&next_text)
        .unwrap()
        .also_opening(&old.identity_line())
        .unwrap();
    assert_eq!(kept.open(&bound, &sc()).unwrap().value.expose(), "bound");
    let bob = Scope::secret(&AppKey::new("bob", "web").unwrap(), "P");
    for scope in [sc(), bob] {
        let e = kept.open(&legacy, &scope).unwrap_err();
        assert!(e.contains("sealed before values were bound"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
    assert!(kept.unseal(&legacy).is_err(), "a re-seal would open it");
}
