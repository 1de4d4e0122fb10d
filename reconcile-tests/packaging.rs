//! The Debian package (`scripts/build-deb.sh`), built from the binary under test and inspected
//! as a distribution would: its contents and control fields, lintian (errors and warnings fail;
//! the overrides it ships say why each remaining tag stands), the unit through
//! `systemd-analyze verify`, and its default config read by the packaged binary.

use std::path::Path;
use std::process::Command;

use crate::support::BERTH;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}:\n{text}");
    text
}

/// Lines `systemd-analyze verify` may print about the packaged unit that say nothing is
/// wrong with it. None today: any line fails the test until someone lists it here, with why.
const HARMLESS: &[&str] = &[];

/// What `systemd-analyze verify` says about `unit` (it exits 0 on warnings, so the text is
/// what matters).
fn verify(unit: &Path) -> String {
    run(Command::new("systemd-analyze").arg("verify").arg(unit))
}

#[test]
fn the_deb_installs_a_hardened_unit_a_default_config_and_passes_lintian() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = dir.path().join("deb");
    let built = run(Command::new(repo.join("scripts/build-deb.sh"))
        .arg(&out)
        .env("BERTH_BIN", BERTH));
    let deb = built
        .lines()
        .rfind(|l| l.ends_with(".deb") && l.starts_with('/'));
    let deb = deb
        .unwrap_or_else(|| panic!("no .deb path in {built}"))
        .to_string();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "{built}");

    let contents = run(Command::new("dpkg-deb").args(["--contents", &deb]));
    for path in [
        "./usr/bin/berth",
        "./lib/systemd/system/berth.service",
        "./etc/berth/berth.toml",
        "./usr/share/berth/templates/node-lite-v1/template.toml",
        "./usr/share/doc/berth/copyright",
        "./usr/share/doc/berth/CHANGELOG.md",
        "./usr/share/doc/berth/docs/reference/berth-toml.md",
        "./usr/share/man/man1/berth.1.gz",
    ] {
        assert!(contents.contains(path), "{path} missing:\n{contents}");
    }
    let depends = run(Command::new("dpkg-deb").args(["-f", &deb, "Depends", "Recommends"]));
    assert!(
        depends.contains("docker.io") && depends.contains("caddy") && depends.contains("git"),
        "{depends}"
    );
    let conffiles = run(Command::new("dpkg-deb").args(["-I", &deb, "conffiles"]));
    assert_eq!(conffiles.trim(), "/etc/berth/berth.toml");

    run(Command::new("lintian").args(["--fail-on", "error,warning", &deb]));

    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/berth.service")).unwrap();
    for setting in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "StateDirectory=berth",
        "ExecStart=/usr/bin/berth --config /etc/berth/berth.toml serve",
    ] {
        assert!(unit.contains(setting), "{setting} missing");
    }
    // The unit as installed, but for where this test extracted the binary: systemd checks
    // that ExecStart exists.
    let bin = root.join("usr/bin/berth");
    let checked = dir.path().join("berth.service");
    std::fs::write(
        &checked,
        unit.replace("/usr/bin/berth", bin.to_str().unwrap()),
    )
    .unwrap();
    let said = verify(&checked);
    let unknown: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty() && !HARMLESS.iter().any(|h| l.contains(h)))
        .collect();
    assert!(unknown.is_empty(), "systemd-analyze verify:\n{said}");
    // The check can fail: systemd only warns (exit 0) about a key it does not know.
    let broken_dir = dir.path().join("broken");
    std::fs::create_dir_all(&broken_dir).unwrap();
    let broken = broken_dir.join("berth.service");
    let text = std::fs::read_to_string(&checked).unwrap();
    std::fs::write(
        &broken,
        text.replace("[Service]", "[Service]\nProtectSytem=strict"),
    )
    .unwrap();
    let said = verify(&broken);
    assert!(
        said.contains("ProtectSytem"),
        "a misspelt key went unseen: {said:?}"
    );
    // The packaged binary reads the packaged config.
    let version = run(Command::new(&bin).arg("--version"));
    assert!(version.starts_with("berth "), "{version}");
    run(Command::new(&bin)
        .arg("--config")
        .arg(root.join("etc/berth/berth.toml"))
        .arg("validate"));
}
