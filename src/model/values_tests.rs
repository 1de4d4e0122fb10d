use super::*;
use crate::model::names::AppKey;
use crate::model::secrets::{seal, Scope};

fn decls(text: &str) -> BTreeMap<String, ValueDecl> {
    #[derive(Deserialize)]
    struct T {
        values: BTreeMap<String, ValueDecl>,
    }
    toml::from_str::<T>(text).unwrap().values
}

const DECLS: &str = r#"
[values.version]
type = "enum"
choices = ["7", "8"]
default = "7"
[values.maxmem]
type = "int"
min = 16
max = 1024
default = 64
[values.name]
type = "string"
pattern = "[a-z]+"
required = true
[values.aof]
type = "bool"
default = true
[values.password]
type = "secret"
generate = true
"#;

fn set(text: &str) -> BTreeMap<String, toml::Value> {
    toml::from_str(text).unwrap()
}

#[test]
fn every_rule_is_refused_with_the_file_the_value_and_the_rule() {
    let d = decls(DECLS);
    check_decls(&d).unwrap();
    let keys = Ok(Keyring::generate());
    let app = AppKey::new("alice", "db").unwrap();
    let sealed = seal(
        &keys.as_ref().unwrap().recipient(),
        &Scope::value(&app, "password"),
        &SecretValue::new("pw".into()),
    );
    let at = || ("f.toml", &app, None);
    let ok = format!("name = \"db\"\npassword = \"{sealed}\"\n");
    let r = resolve(at(), "redis-v1", &d, &set(&ok), &keys).unwrap();
    assert_eq!(r.plain["version"], "7");
    assert_eq!(r.plain["maxmem"], "64");
    assert_eq!(r.secret["password"].expose(), "pw");
    let cases = [
        ("version = \"9\"", "not one of"),
        ("version = 7", "expected a string, found integer"),
        ("maxmem = 8", "outside 16..=1024"),
        ("maxmem = \"64\"", "expected an integer"),
        ("name = \"DB\"", "does not match the pattern"),
        ("aof = \"yes\"", "expected true or false"),
        ("colour = \"red\"", "has no such value"),
        ("password = \"plain\"", "must be encrypted"),
        ("password = \"age:AAAA\"", "does not decrypt"),
    ];
    for (line, want) in cases {
        let mut text = ok.clone();
        let key = line.split(' ').next().unwrap();
        text = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} ")))
            .chain([line])
            .collect::<Vec<_>>()
            .join("\n");
        let e = resolve(at(), "redis-v1", &d, &set(&text), &keys).unwrap_err();
        assert!(e.starts_with("f.toml: [values] "), "{line}: {e}");
        assert!(e.contains(want) && e.contains(key), "{line}: {e}");
    }
    let e = resolve(at(), "t", &d, &set("name = \"db\""), &keys).unwrap_err();
    assert!(
        e.contains("password: missing") && e.contains("generated"),
        "{e}"
    );
    let e = resolve(
        at(),
        "t",
        &d,
        &set(&format!("password = \"{sealed}\"")),
        &keys,
    );
    assert!(e.unwrap_err().contains("name: missing, and required"));
    let no_key = Err("no key".to_string());
    let e = resolve(at(), "t", &d, &set(&ok), &no_key).unwrap_err();
    assert!(e.contains("cannot decrypt: no key"), "{e}");
    // Sealed for alice/db: another app's manifest does not open it.
    let bobs = AppKey::new("bob", "db").unwrap();
    let e = resolve(("f.toml", &bobs, None), "t", &d, &set(&ok), &keys).unwrap_err();
    assert!(
        e.contains("[values] password") && e.contains("sealed for alice/db/values.password"),
        "{e}"
    );
}

#[test]
fn declarations_that_contradict_themselves_are_refused() {
    let cases = [
        ("[values.v]\ntype = \"enum\"", "needs choices"),
        (
            "[values.v]\ntype = \"string\"\nchoices = [\"a\"]",
            "choices are for",
        ),
        ("[values.v]\ntype = \"string\"\nmin = 1", "min and max"),
        (
            "[values.v]\ntype = \"int\"\ngenerate = true",
            "generate is for",
        ),
        (
            "[values.v]\ntype = \"secret\"\ndefault = \"x\"",
            "no default",
        ),
        (
            "[values.v]\ntype = \"int\"\npattern = \"x\"",
            "pattern is for",
        ),
        ("[values.v]\ntype = \"string\"\npattern = \"(\"", "pattern"),
        (
            "[values.v]\ntype = \"enum\"\nchoices = [\"a\"]\ndefault = \"b\"",
            "default",
        ),
        ("[values.Bad]\ntype = \"string\"", "lower-case"),
        (
            "[values.v]\ntype = \"int\"\nmin = 10\nmax = 5",
            "[values.v]: min = 10 is greater than max = 5",
        ),
        (
            "[values.v]\ntype = \"string\"\nrequired = true\ndefault = \"x\"",
            "[values.v]: required = true with a default",
        ),
    ];
    for (text, want) in cases {
        let e = check_decls(&decls(text)).unwrap_err();
        assert!(e.contains(want), "{text}: {e}");
    }
}

#[test]
fn placeholders_are_filled_and_secrets_are_marked() {
    let mut r = Resolved::default();
    r.plain.insert("version".into(), "7".into());
    r.secret
        .insert("password".into(), SecretValue::new("s3".into()));
    assert_eq!(
        render("redis:{values.version}-alpine", &r).unwrap(),
        ("redis:7-alpine".into(), false)
    );
    assert_eq!(
        render("redis://:{values.password}@db", &r).unwrap(),
        ("redis://:s3@db".into(), true)
    );
    assert_eq!(
        render("no placeholder", &r).unwrap(),
        ("no placeholder".into(), false)
    );
    assert!(render("{values.nope}", &r)
        .unwrap_err()
        .contains("has no value"));
    assert!(render("{values.version", &r)
        .unwrap_err()
        .contains("unclosed"));
    let a = generate_secret();
    assert_eq!(a.expose().len(), 43);
    assert_ne!(a.expose(), generate_secret().expose());
}
