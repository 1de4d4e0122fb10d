use std::path::{Path, PathBuf};

use super::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_committed_schemas_are_what_the_types_generate() {
    for (which, schema) in [("manifest", manifest()), ("template", template())] {
        let path = repo().join(format!("templates/{which}.schema.json"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == to_text(&schema),
            "{} is not what the types generate; regenerate it with \
             `cargo run -q -- schema {which} > templates/{which}.schema.json`",
            path.display()
        );
    }
}

/// TOML as an editor's language server sees it: JSON, date-times as strings.
fn to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(n) => n.into(),
        toml::Value::Float(f) => f.into(),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.into_iter().map(to_json).collect(),
        toml::Value::Table(t) => t.into_iter().map(|(k, v)| (k, to_json(v))).collect(),
    }
}

fn validator(schema: Schema) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema.as_value())
        .expect("a valid schema")
}

/// The schema's complaints about `text`, one line each; empty when it is valid.
fn complaints(v: &jsonschema::Validator, text: &str) -> Vec<String> {
    let doc = to_json(toml::from_str::<toml::Value>(text).expect("TOML"));
    v.iter_errors(&doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// `dir/<a>/<b>` for every `<a>` and `<b>` (`b` may be a fixed name).
fn two_deep(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let entries = |d: &Path| -> Vec<PathBuf> {
        let list = std::fs::read_dir(d).into_iter().flatten().flatten();
        list.map(|e| e.path()).collect()
    };
    let files = entries(dir).into_iter().flat_map(|d| entries(&d));
    files.filter(|p| p.is_file() && keep(p)).collect()
}

#[test]
fn every_shipped_manifest_and_template_is_valid() {
    let examples = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .flatten();
    let roots: Vec<PathBuf> = std::iter::once(repo())
        .chain(examples.map(|e| e.path()))
        .collect();
    let is_toml = |p: &Path| p.extension().is_some_and(|e| e == "toml");
    let is_template = |p: &Path| p.file_name().is_some_and(|n| n == "template.toml");
    let (m, t) = (validator(manifest()), validator(template()));
    let mut checked = (0, 0);
    for root in &roots {
        for path in two_deep(&root.join("state/apps"), is_toml) {
            let text = std::fs::read_to_string(&path).unwrap();
            Manifest::parse(&path, &text).unwrap();
            assert_eq!(complaints(&m, &text), [] as [String; 0], "{path:?}");
            checked.0 += 1;
        }
        for path in two_deep(&root.join("templates"), is_template) {
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(complaints(&t, &text), [] as [String; 0], "{path:?}");
            checked.1 += 1;
        }
    }
    assert!(
        checked.0 >= 4 && checked.1 >= 2,
        "found too few: {checked:?}"
    );
}

#[test]
fn the_manifest_schema_agrees_with_the_parser() {
    let m = validator(manifest());
    let t = "template = \"web-v1\"\n";
    let cases = [
        (t.to_string(), true),
        (format!("{t}state = \"stopped\"\nport = 3000\nhost_port = 8101\nhost_ip = \"::1\"\ndomain = \"a.example.com\"\nrestart = 2026-11-23T07:00:00Z"), true),
        (format!("{t}[env]\nA_1 = \"x\"\n[secrets]\nTOKEN = \"age:YWJj\"\n[values]\nsize = 3\non = true\n"), true),
        (format!("{t}[resources]\nmemory = \"256m\"\ncpus = 1\n[health]\ntimeout = \"1m 30s\"\ninterval = \"500ms\"\npath = \"/up\"\n"), true),
        (format!("{t}[resources]\nmemory = 268435456\n"), true),
        ("port = 80\n".to_string(), false),
        (format!("{t}image = \"evil\""), false),
        (format!("{t}host_port = 70000"), false),
        (format!("{t}port = 0"), false),
        (format!("{t}state = \"paused\""), false),
        ("template = \"../etc\"".to_string(), false),
        (format!("{t}domain = \"Evil.COM\""), false),
        (format!("{t}host_ip = \"localhost\""), false),
        (format!("{t}restart = [1]"), false),
        (format!("{t}[env]\nPORT = \"1\""), false),
        (format!("{t}[env]\n\"A-B\" = \"1\""), false),
        (format!("{t}[env]\nA = 1"), false),
        (format!("{t}[secrets]\nTOKEN = \"plain\""), false),
        (format!("{t}[resources]\nmemory = \"1t\""), false),
        (format!("{t}[resources]\nmemory = 1024"), false),
        (format!("{t}[resources]\ncpus = 0"), false),
        (format!("{t}[resources]\ndisk = \"1g\""), false),
        (format!("{t}[health]\npath = \"up\""), false),
        (format!("{t}[health]\ntimeout = \"soon\""), false),
        (format!("{t}[health]\nretries = 3"), false),
    ];
    for (text, ok) in cases {
        let parsed = Manifest::parse(Path::new("a.toml"), &text);
        assert_eq!(parsed.is_ok(), ok, "berth on {text:?}: {parsed:?}");
        let why = complaints(&m, &text);
        assert_eq!(why.is_empty(), ok, "schema on {text:?}: {why:?}");
    }
}

#[test]
fn the_template_schema_refuses_what_berth_refuses() {
    let t = validator(template());
    let base = "image = \"i\"\nport = 80\n";
    assert_eq!(complaints(&t, base), [] as [String; 0]);
    for bad in [
        "port = 80\n",
        "image = \" \"\nport = 80\n",
        "image = \"i\"\nport = 80\nprivileged = true\n",
        "image = \"i\"\nport = 65536\n",
        "[[mounts]]\nsource = \"relative\"\ntarget = \"/x\"\n",
        "[[mounts]]\nsource = \"{app_dir}/..\"\ntarget = \"/x\"\n",
        "[[mounts]]\nsource = \"{home}\"\ntarget = \"/x\"\n",
        "[[mounts]]\nsource = \"/a\"\ntarget = \"x\"\n",
        "spec_files = [\"../x\"]\n",
        "[env]\nPORT = \"1\"\n",
        "[[volumes]]\nname = \"Data\"\ntarget = \"/data\"\n",
        "[install]\ncommand = []\ninputs = [\"a\"]\noutput = \"o\"\n",
        "[install]\ncommand = [\"x\"]\ninputs = [\"a\"]\noutput = \"a/b\"\n",
        "[values.Size]\ntype = \"int\"\n",
        "[values.x]\ntype = \"float\"\n",
        "[values.x]\ntype = \"enum\"\n",
        "[values.x]\ntype = \"string\"\nchoices = [\"a\"]\n",
        "[values.x]\ntype = \"string\"\nmin = 1\n",
        "[values.x]\ntype = \"int\"\ndefault = \"1\"\n",
        "[values.x]\ntype = \"int\"\npattern = \"a\"\n",
        "[values.x]\ntype = \"string\"\ngenerate = true\n",
        "[values.x]\ntype = \"secret\"\ndefault = \"s\"\n",
    ] {
        let text = match bad.starts_with("port") || bad.starts_with("image") {
            true => bad.to_string(),
            false => format!("{base}{bad}"),
        };
        assert!(!complaints(&t, &text).is_empty(), "{text:?}");
    }
}
