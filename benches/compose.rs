//! berth beside Debian's `docker-compose`, on the same 50 apps, on the same engine, in one run:
//! the cold start (nothing exists yet), a no-op (everything is as asked) and one change (one
//! app's environment edited). Both are driven as a person would: `berth apply` and
//! `docker-compose up -d` as processes, each timed from spawn to exit.
//!
//! Run: `cargo bench --bench compose` (needs the engine, `berth-test-busybox:1` and
//! `docker-compose`: `scripts/ensure-docker.sh && scripts/build-test-image.sh &&
//! scripts/ensure-tools.sh`).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const APPS: usize = 50;
const IMAGE: &str = "berth-test-busybox:1";

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Runs `cmd` to its end (it must succeed) and returns how long it took.
fn timed(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let out = cmd.output().expect("spawn");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// The compose file for the same apps: the same image, command, limits and hardening berth
/// gives a container (init, no-new-privileges, every capability dropped, no restart).
fn compose_file(changed: Option<usize>) -> String {
    let mut out = String::from("services:\n");
    for i in 0..APPS {
        let greeting = if changed == Some(i) {
            "changed"
        } else {
            "hello"
        };
        out.push_str(&format!(
            "  app{i}:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    init: true\n    mem_limit: 16m\n    cpus: 0.1\n    security_opt: [\"no-new-privileges\"]\n    cap_drop: [\"ALL\"]\n    restart: \"no\"\n    environment:\n      GREETING: {greeting}\n"
        ));
    }
    out
}

fn manifest(greeting: &str) -> String {
    format!("template = \"bb-v1\"\n[env]\nGREETING = \"{greeting}\"\n")
}

struct Cleanup {
    instance: String,
    project: String,
    dir: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .args(["-p", &self.project, "down", "-t", "1"])
            .current_dir(&self.dir)
            .output();
        support::remove_instance(&self.instance);
    }
}

fn main() {
    let id = std::process::id();
    let dir = tempfile::tempdir().unwrap();
    let (root, compose_dir) = (dir.path().join("berth"), dir.path().join("compose"));
    let _cleanup = Cleanup {
        instance: format!("benchcmp{id}"),
        project: format!("benchcmp{id}"),
        dir: compose_dir.clone(),
    };
    write(&root.join("berth.toml"), &format!("instance = \"benchcmp{id}\"\nstop_timeout = \"1s\"\nmax_apps_per_user = {APPS}\nmax_total_apps = {APPS}\nmax_parallel = 8\n"));
    write(&root.join("templates/bb-v1/template.toml"), &format!("image = \"{IMAGE}\"\ncommand = [\"sleep\", \"3600\"]\nport = 8080\n[defaults]\nmemory = \"16m\"\ncpus = 0.1\n"));
    for i in 0..APPS {
        write(
            &root.join(format!("state/apps/bench/app{i}.toml")),
            &manifest("hello"),
        );
    }
    write(&compose_dir.join("docker-compose.yml"), &compose_file(None));
    let berth = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.arg("--root").arg(&root).arg("apply");
        c
    };
    let compose = || {
        let mut c = Command::new("docker-compose");
        c.args(["-p", &format!("benchcmp{id}"), "up", "-d"])
            .current_dir(&compose_dir);
        c
    };
    let cold = (timed(&mut berth()), timed(&mut compose()));
    let noop = (
        median((0..5).map(|_| timed(&mut berth())).collect()),
        median((0..5).map(|_| timed(&mut compose())).collect()),
    );
    write(
        &root.join("state/apps/bench/app7.toml"),
        &manifest("changed"),
    );
    write(
        &compose_dir.join("docker-compose.yml"),
        &compose_file(Some(7)),
    );
    let change = (timed(&mut berth()), timed(&mut compose()));
    println!("{APPS} apps, berth apply vs docker-compose up -d (one run, same engine):");
    for (label, (b, c)) in [
        ("cold start", cold),
        ("no-op (median of 5)", noop),
        ("one app changed", change),
    ] {
        println!(
            "  {label}: berth {} vs compose {} = {:.2}x",
            ms(b),
            ms(c),
            b.as_secs_f64() / c.as_secs_f64()
        );
    }
}
