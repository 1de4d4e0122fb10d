//! Template loading: placeholders, mounts, hooks, spec files, overrides.
use super::*;

fn setup(text: &str) -> (tempfile::TempDir, Config) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("templates/web-v1");
    std::fs::create_dir_all(dir.join("hooks")).unwrap();
    std::fs::write(dir.join("template.toml"), text).unwrap();
    let config = Config::load(None, Some(root.path())).unwrap();
    (root, config)
}

const GOOD: &str = r#"
image = "node:22-alpine"
command = ["node", "server.js"]
workdir = "/app"
port = 3000
[defaults]
memory = "128m"
[[mounts]]
source = "{app_dir}"
target = "/app"
[[mounts]]
source = "{shared_dir}/node_modules"
target = "/app/node_modules"
read_only = true
"#;

#[test]
fn loads_template_and_finds_executable_hooks() {
    let (root, config) = setup(GOOD);
    let hook = root.path().join("templates/web-v1/hooks/pre-create");
    std::fs::write(&hook, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let t = Template::load(&config, "web-v1").unwrap();
    assert_eq!(t.port, 3000);
    assert_eq!(t.command, ["node", "server.js"]);
    assert_eq!(
        t.hooks.keys().copied().collect::<Vec<_>>(),
        [HookKind::PreCreate]
    );
    let dirs = MountDirs {
        app_dir: Path::new("/r/apps/a/b"),
        shared_dir: Path::new("/r/shared/web-v1"),
    };
    assert_eq!(
        t.fill_mount_source(&t.mounts[1].source, &dirs),
        "/r/shared/web-v1/node_modules"
    );
}

#[test]
fn image_override_from_config_wins() {
    let (root, _) = setup(GOOD);
    std::fs::write(
        root.path().join("berth.toml"),
        "[templates.web-v1]\nimage = \"local/n:1\"\n",
    )
    .unwrap();
    let config = Config::load(None, Some(root.path())).unwrap();
    assert_eq!(
        Template::load(&config, "web-v1").unwrap().image,
        "local/n:1"
    );
}

#[test]
fn spec_files_are_hashed_and_checked() {
    let (root, _) = setup(&format!("spec_files = [\"files/lock.json\"]\n{GOOD}"));
    let config = Config::load(None, Some(root.path())).unwrap();
    let e = Template::load(&config, "web-v1").unwrap_err().to_string();
    assert!(
        e.contains("files/lock.json") && e.contains("cannot read"),
        "{e}"
    );
    let files = root.path().join("templates/web-v1/files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("lock.json"), "v1").unwrap();
    let h1 = Template::load(&config, "web-v1").unwrap().spec_files["files/lock.json"].clone();
    std::fs::write(files.join("lock.json"), "v2").unwrap();
    let h2 = Template::load(&config, "web-v1").unwrap().spec_files["files/lock.json"].clone();
    assert_ne!(h1, h2);
    assert_eq!(h2, blake3::hash(b"v2").to_hex().to_string());
    for bad in ["../x", "/etc/passwd", "a//b", ""] {
        let (root, _) = setup(&format!("spec_files = [{bad:?}]\n{GOOD}"));
        let config = Config::load(None, Some(root.path())).unwrap();
        assert!(Template::load(&config, "web-v1").is_err(), "{bad:?}");
    }
}

#[test]
fn non_executable_hook_is_an_error() {
    let (root, config) = setup(GOOD);
    std::fs::write(root.path().join("templates/web-v1/hooks/pre-delete"), "x").unwrap();
    let e = Template::load(&config, "web-v1").unwrap_err().to_string();
    assert!(
        e.contains("pre-delete") && e.contains("not an executable"),
        "{e}"
    );
}

#[test]
fn hostile_templates_are_rejected() {
    let base = "image = \"i\"\nport = 80\n";
    let cases = [
        ("port = 80\n", "missing field `image`"),
        ("image = \"i\"\nport = 80\nprivileged = true\n", "unknown field `privileged`"),
        (&*format!("{base}[[mounts]]\nsource = \"relative\"\ntarget = \"/x\"\n"), "must start with '/'"),
        (&*format!("{base}[[mounts]]\nsource = \"{{app_dir}}/../..\"\ntarget = \"/x\"\n"), "'..'"),
        (&*format!("{base}[[mounts]]\nsource = \"{{home}}\"\ntarget = \"/x\"\n"), "unknown placeholder"),
        (&*format!("{base}[[mounts]]\nsource = \"/a\"\ntarget = \"x\"\n"), "absolute path"),
        (&*format!("{base}command = [\"sh\", \"-c\", \"echo {{values.x}}\"]\n[values.x]\ntype = \"string\"\n"), "only int, bool and enum"),
        (&*format!("{base}[[mounts]]\nsource = \"/a\"\ntarget = \"/x\"\n[[mounts]]\nsource = \"/b\"\ntarget = \"/x\"\n"), "twice"),
        (&*format!("{base}[[mounts]]\nsource = \"{{shared_dir}}/{{values.d}}\"\ntarget = \"/x\"\n[values.d]\ntype = \"string\"\n"), "only int, bool and enum values may be used in a mount"),
        (&*format!("{base}[[mounts]]\nsource = \"{{shared_dir}}/{{values.d}}\"\ntarget = \"/x\"\n[values.d]\ntype = \"enum\"\nchoices = [\"a\", \"..\"]\n"), "every choice must be a plain name"),
        (&*format!("{base}[[mounts]]\nsource = \"{{values.d}}/x\"\ntarget = \"/x\"\n[values.d]\ntype = \"int\"\n"), "must start with '/' or a placeholder"),
        (&*format!("{base}[[mounts]]\nsource = \"/a\"\ntarget = \"/x/{{values.nope}}\"\n"), "not declared"),
    ];
    for (text, want) in cases {
        let (_root, config) = setup(text);
        let e = Template::load(&config, "web-v1").unwrap_err().to_string();
        assert!(e.contains(want), "{text:?} -> {e}");
    }
    let (_root, config) = setup(GOOD);
    let e = Template::load(&config, "nope").unwrap_err().to_string();
    assert!(e.contains("not found"), "{e}");
    assert!(Template::load(&config, "../etc").is_err());
}

#[test]
fn values_fill_mount_sources_and_targets() {
    let text = "image = \"i\"\nport = 80\n[[mounts]]\nsource = \"{shared_dir}/v{values.major}\"\ntarget = \"/opt/{values.major}\"\nread_only = true\n[values.major]\ntype = \"enum\"\nchoices = [\"1\", \"2\"]\ndefault = \"1\"\n";
    let (_root, config) = setup(text);
    let t = Template::load(&config, "web-v1").unwrap();
    let key = crate::model::names::AppKey::new("alice", "a").unwrap();
    let m = crate::model::manifest::Manifest::parse(
        Path::new("m.toml"),
        "template = \"web-v1\"\n[values]\nmajor = \"2\"\n",
    )
    .unwrap();
    let keys = Err("none".to_string());
    let file = ("state/apps/alice/a.toml", &key, None);
    let values = crate::model::values::resolve(file, &t.id, &t.values, &m.values, &keys).unwrap();
    let mut spec = crate::model::spec::ContainerSpec::derive(&key, &m, &t, &config);
    crate::model::values::apply(&mut spec, &t, &values, &keys).unwrap();
    assert!(
        spec.mounts[0].source.ends_with("shared/web-v1/v2"),
        "{:?}",
        spec.mounts
    );
    assert_eq!(spec.mounts[0].target, "/opt/2");
}

#[test]
fn contradictory_value_bounds_name_the_template_the_value_and_the_fields() {
    let base = "image = \"i\"\nport = 80\n";
    let cases = [
        (
            format!("{base}[values.workers]\ntype = \"int\"\nmin = 10\nmax = 5\n"),
            "[values.workers]: min = 10 is greater than max = 5",
        ),
        (
            format!("{base}[values.site]\ntype = \"string\"\nrequired = true\ndefault = \"x\"\n"),
            "[values.site]: required = true with a default",
        ),
    ];
    for (text, want) in cases {
        let (_root, config) = setup(&text);
        let e = Template::load(&config, "web-v1").unwrap_err().to_string();
        assert!(e.contains("templates/web-v1/template.toml"), "{e}");
        assert!(e.contains(want), "{text:?} -> {e}");
    }
}

#[test]
fn a_secret_value_filling_an_env_entry_shows_the_fingerprint_a_rotation_carried() {
    use crate::model::secrets::{seal, seal_carrying, Keyring, Scope, SecretValue};
    let text = "image = \"i\"\nport = 80\n[env]\nPW = \"{values.password}\"\nURL = \"redis://:{values.password}@db\"\n[values.password]\ntype = \"secret\"\n";
    let (_root, config) = setup(text);
    let t = Template::load(&config, "web-v1").unwrap();
    let key = crate::model::names::AppKey::new("alice", "a").unwrap();
    let keys = Ok(Keyring::generate());
    let keyring = keys.as_ref().unwrap();
    let scope = Scope::value(&key, "password");
    let pw = SecretValue::new("pw".into());
    let spec_of = |sealed: String| {
        let manifest = format!("template = \"web-v1\"\n[values]\npassword = \"{sealed}\"\n");
        let m = crate::model::manifest::Manifest::parse(Path::new("m.toml"), &manifest).unwrap();
        let file = ("state/apps/alice/a.toml", &key, None);
        let values =
            crate::model::values::resolve(file, &t.id, &t.values, &m.values, &keys).unwrap();
        let mut spec = crate::model::spec::ContainerSpec::derive(&key, &m, &t, &config);
        crate::model::values::apply(&mut spec, &t, &values, &keys).unwrap();
        spec.secrets
    };
    let anew = spec_of(seal(&keyring.recipient(), &scope, &pw));
    assert_eq!(anew["PW"], keyring.fingerprint("PW", &pw));
    let carried = spec_of(seal_carrying(
        &keyring.recipient(),
        &scope,
        &pw,
        Some("k3:carried"),
    ));
    assert_eq!(carried["PW"], "k3:carried");
    assert_eq!(
        carried["URL"], anew["URL"],
        "a longer text is fingerprinted as ever"
    );
}
