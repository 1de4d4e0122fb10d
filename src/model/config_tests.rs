//! Tests of berth.toml's loading: defaults, paths, every refused key and value.
use super::*;

fn load_text(text: &str) -> Result<Config, SourceError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("berth.toml");
    std::fs::write(&p, text).unwrap();
    Config::load(Some(&p), None)
}

#[test]
fn git_local_remotes_are_resolved_against_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "../remote.git",
            format!("{}/remote.git", dir.path().parent().unwrap().display()),
        ),
        ("/srv/state.git", "/srv/state.git".to_string()),
        (
            "ssh://git@host/state.git",
            "ssh://git@host/state.git".to_string(),
        ),
        ("git@host:state.git", "git@host:state.git".to_string()),
    ];
    for (given, want) in cases {
        std::fs::write(
            dir.path().join("berth.toml"),
            format!("[git]\nremote = \"{given}\"\n"),
        )
        .unwrap();
        let c = Config::load(None, Some(dir.path())).unwrap();
        assert_eq!(c.git.unwrap().remote, want, "{given}");
    }
    std::fs::write(dir.path().join("berth.toml"), "[git]\nremote = \"-x\"\n").unwrap();
    assert!(Config::load(None, Some(dir.path())).is_err());
}

#[test]
fn empty_file_gives_spec_defaults() {
    let c = load_text("").unwrap();
    assert_eq!(c.instance, "main");
    assert_eq!(c.resync, Duration::from_secs(30));
    assert_eq!(c.relist, Duration::from_secs(300));
    assert_eq!(c.hook_timeout, Duration::from_secs(300));
    assert_eq!(c.stop_timeout, Duration::from_secs(10));
    assert_eq!(
        (c.max_parallel, c.max_apps_per_user, c.max_total_apps),
        (4, 5, 20)
    );
    assert!(c.state_dir.ends_with("state") && c.state_dir.is_absolute());
}

#[test]
fn reads_humantime_and_overrides() {
    let c = load_text(
        "resync = \"1m 30s\"\nrelist = \"2h\"\ninstance = \"t1\"\n[defaults]\nmemory = \"128m\"\n\
         [templates.node-lite-v1]\nimage = \"local/node:1\"\n",
    )
    .unwrap();
    assert_eq!(c.resync, Duration::from_secs(90));
    assert_eq!(c.relist, Duration::from_secs(7200));
    assert_eq!(c.defaults.memory.unwrap().0, 128 << 20);
    assert_eq!(
        c.templates["node-lite-v1"].image.as_deref(),
        Some("local/node:1")
    );
}

#[test]
fn hostile_config_is_rejected_with_location() {
    let cases = [
        ("bogus = 1\n", "berth.toml:1:1"),
        ("resync = \"soon\"\n", "berth.toml:1:10"),
        ("max_parallel = -1\n", "berth.toml:1:16"),
        ("[defaults]\nmemory = \"lots\"\n", "berth.toml:2:10"),
        ("[templates.x]\nimage = 3\n", "berth.toml:2:9"),
        ("listen = \"nowhere\"\n", "berth.toml:1:10"),
        ("[http]\nheader_timeout = \"never\"\n", "berth.toml:2:18"),
        ("[http]\nidle = \"1s\"\n", "berth.toml:2:1"),
    ];
    for (text, at) in cases {
        let e = load_text(text).unwrap_err().to_string();
        assert!(e.contains(at), "{text:?} -> {e}");
    }
    for text in [
        "instance = \"Main\"\n",
        "instance = \"a-b\"\n",
        "max_parallel = 0\n",
        "relist = \"0s\"\n",
        "[http]\nmax_connections = 0\n",
        "[http]\nbody_timeout = \"1ms\"\n",
        "[http]\nwrite_timeout = \"1ms\"\n",
        "[http]\nmax_connections_per_address = 0\n",
        "[http]\nreserved_connections = 0\n",
    ] {
        let e = load_text(text).expect_err(text).to_string();
        assert!(!text.starts_with("[http]") || e.contains("[http]"), "{e}");
        // The error names the key it refuses.
        let key = text
            .trim_start_matches("[http]\n")
            .split(' ')
            .next()
            .unwrap();
        assert!(!text.starts_with("[http]") || e.contains(key), "{e}");
    }
}

#[test]
fn root_flag_wins_and_missing_default_file_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config::load(None, Some(dir.path())).unwrap();
    assert_eq!(c.state_dir, dir.path().join("state"));
    let missing = dir.path().join("nope.toml");
    assert!(Config::load(Some(&missing), None).is_err());
}
