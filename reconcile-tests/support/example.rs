//! Running an example script the way a person would: a fresh copy of the repository's
//! files, the example's images, a process group with a time limit, and a guard that removes
//! the instance's containers whatever happens. Used by `examples.rs`.

use crate::support::docker::remove_instance_containers;
use crate::support::{free_port, BERTH};
use std::fmt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Every script under examples/ and every example root `run.sh` takes; a new one fails
/// `every_example_is_run_by_a_test` until it has a test here.
pub const SCRIPTS: &[&str] = &[
    "examples/deploy-rollback.sh",
    "examples/domains.sh",
    "examples/gitops.sh",
    "examples/portal.sh",
    "examples/python-redis.sh",
    "examples/run.sh",
    "examples/secrets.sh",
];
pub const RUN_SH_EXAMPLES: &[&str] = &["hello", "node-lite"];

/// Generous: a run takes a few seconds once the images exist (node-lite runs `npm ci`).
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's files as a fresh clone with the uncommitted work would have them:
/// tracked files plus untracked ones that are not ignored (paths relative to the repo).
pub fn repo_files() -> Vec<PathBuf> {
    let out = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(repo())
        .output()
        .expect("run git ls-files (the example tests need git and the repository's checkout)");
    assert!(
        out.status.success(),
        "git ls-files failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<PathBuf> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Copies `repo_files()` into `to`, keeping modes (the scripts' exec bits) and symlinks.
/// Files deleted in the work tree but still in the index are skipped, as a commit would.
pub fn copy_repo(to: &Path) {
    let from = repo();
    for rel in repo_files() {
        let src = from.join(&rel);
        let Ok(meta) = std::fs::symlink_metadata(&src) else {
            continue;
        };
        let dst = to.join(&rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if meta.is_file() {
            std::fs::copy(&src, &dst)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dst.display()));
        }
    }
}

pub fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes `tag` (the image an example's berth.toml names) from the image `scripts/test.sh`
/// builds with `script` (`base`), unless `tag` exists: the same content the example script
/// would build itself, without a second build or a registry pull inside the test.
pub fn ensure_example_image(script: &str, base: &str, tag: &str) {
    if image_exists(tag) {
        return;
    }
    let status = Command::new(repo().join(script))
        .arg(base)
        .env("BERTH_TEST_IMAGE", base)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(status.success(), "{script} {base} failed");
    let out = Command::new("docker")
        .args(["tag", base, tag])
        .output()
        .unwrap();
    assert!(
        out.status.success() || image_exists(tag),
        "docker tag {base} {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn ensure_busybox_image() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        ensure_example_image(
            "scripts/build-test-image.sh",
            "berth-test-busybox:1",
            "berth-local/busybox:1",
        )
    });
}

pub fn ensure_node_image() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        ensure_example_image(
            "scripts/build-node-image.sh",
            "berth-test-node:2",
            "berth-local/node:22",
        )
    });
}

/// The python-lite-v1 and redis-v1 images `examples/python-redis.sh` names.
pub fn ensure_python_redis_images() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        ensure_example_image(
            "scripts/build-python-image.sh",
            "berth-test-python:1",
            "berth-local/python:1",
        );
        ensure_example_image(
            "scripts/build-redis-image.sh",
            "berth-test-redis:1",
            "berth-local/redis:1",
        );
    });
}

/// The scripts start `dockerd` when no engine answers; inside a test that daemon would land
/// in the script's process group, which is killed at a timeout. So an engine must answer first.
pub fn assert_engine_answers() {
    let ok = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "no Docker engine answers (scripts/ensure-docker.sh starts one)"
    );
}

/// A fresh instance name for one example run (a-z0-9, short).
pub fn instance(kind: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "tex{kind}{:x}{:x}",
        std::process::id() % 0xfffff,
        nanos % 0xfffff
    )
}

/// One example's fresh copy of the repository and its instance. Dropping it removes every
/// container of that instance (the copy itself goes with the temp dir).
pub struct Example {
    dir: tempfile::TempDir,
    pub instance: String,
    runs: u32,
}

impl Example {
    pub fn new(kind: &str) -> Example {
        assert_engine_answers();
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-example-{kind}-"))
            .tempdir()
            .unwrap();
        copy_repo(&dir.path().join("repo"));
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        let example = Example {
            dir,
            instance: instance(kind),
            runs: 0,
        };
        remove_instance_containers(&example.instance);
        example
    }

    /// The copy of the repository: the scripts' working directory.
    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Runs `command` (as typed at a shell, in the copy's top directory) with `env` added,
    /// berth from this build, and TMPDIR inside the test's temp dir. The script's process
    /// group is killed when it outlives `SCRIPT_TIMEOUT`, and anything the script leaves
    /// running in its group is killed and reported.
    pub fn run(&mut self, command: &str, env: &[(&str, String)]) -> Outcome {
        self.runs += 1;
        let out_path = self.dir.path().join(format!("run{}.stdout", self.runs));
        let err_path = self.dir.path().join(format!("run{}.stderr", self.runs));
        let mut cmd = Command::new("bash");
        cmd.args(["-c", command])
            .current_dir(self.repo())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .env("BERTH_BIN", BERTH)
            .env("TMPDIR", self.dir.path().join("tmp"))
            .env("NO_COLOR", "1")
            .env_remove("BERTH_EXAMPLE_INSTANCE")
            .env_remove("BERTH_EXAMPLE_PORTS")
            .env_remove("BERTH_EXAMPLE_API_PORT")
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let start = Instant::now();
        let mut group = Group(Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot run {command}: {e}")),
        ));
        let mut timed_out = false;
        while !group.exited() {
            if start.elapsed() > SCRIPT_TIMEOUT {
                timed_out = true;
                // SIGTERM first, so the scripts' traps clean up; SIGKILL after 10 s.
                group.signal(libc::SIGTERM);
                let grace = Instant::now();
                while !group.exited() && grace.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                group.signal(libc::SIGKILL);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The leader has exited but is not reaped yet, so the group id is still ours: what
        // else is in the group was left running by the script (after a timeout: killed).
        let left_running = if timed_out {
            Vec::new()
        } else {
            group.kill_stragglers()
        };
        let status = group.0.take().unwrap().wait().unwrap();
        let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
        Outcome {
            command: command.to_string(),
            code: status.code(),
            timed_out,
            left_running,
            elapsed: start.elapsed(),
            stdout: read(&out_path),
            stderr: read(&err_path),
        }
    }

    /// How many containers carry this example's instance label.
    pub fn containers(&self) -> usize {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=paas.instance={}", self.instance),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "docker ps failed");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .count()
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        remove_instance_containers(&self.instance);
        if std::thread::panicking() {
            eprintln!(
                "example copy {} (instance {}) is removed with the test",
                self.repo().display(),
                self.instance
            );
        }
    }
}

/// A script's process group (the script is its leader); killed if still there on Drop.
pub struct Group(Option<Child>);

impl Group {
    pub fn pid(&self) -> i32 {
        self.0.as_ref().unwrap().id() as i32
    }

    /// Whether the leader has exited; it is left unreaped so its group id stays ours.
    pub fn exited(&self) -> bool {
        // SAFETY: waitid(2) on our own unreaped child, with a zeroed siginfo to fill.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                self.pid() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            r == 0 && info.si_pid() != 0
        }
    }

    /// The group's live members other than the leader (`pid command`), from /proc.
    pub fn others(&self) -> Vec<String> {
        let pgid = self.pid();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue; // gone meanwhile
            };
            // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let (Some(state), Some(pgrp)) = (fields.first(), fields.get(2)) else {
                continue;
            };
            if pid != pgid && *state != "Z" && pgrp.parse() == Ok(pgid) {
                let comm = head.split_once('(').map_or("", |(_, c)| c);
                found.push(format!("{pid} {comm}"));
            }
        }
        found
    }

    /// Waits up to 2 s for the group's other members to end, then kills them; the ones
    /// that were still there (`pid command`).
    pub fn kill_stragglers(&self) -> Vec<String> {
        let start = Instant::now();
        loop {
            let others = self.others();
            if others.is_empty() {
                return others;
            }
            if start.elapsed() > Duration::from_secs(2) {
                self.signal(libc::SIGKILL);
                return others;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: the leader is our unreaped child, so the group id cannot have been reused.
        unsafe {
            libc::kill(-self.pid(), sig);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // SAFETY: as in `signal`: our unreaped child leads the group.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }
}

/// What one script run did.
pub struct Outcome {
    command: String,
    code: Option<i32>,
    timed_out: bool,
    /// `pid command` of each process the script left running in its group.
    left_running: Vec<String>,
    elapsed: Duration,
    pub stdout: String,
    stderr: String,
}

impl Outcome {
    /// Asserts the script finished in time, exited 0 and left no process running.
    #[track_caller]
    pub fn expect_success(&self) -> &Outcome {
        assert!(
            !self.timed_out,
            "{} did not finish within {SCRIPT_TIMEOUT:?} and was killed\n{self}",
            self.command
        );
        assert_eq!(self.code, Some(0), "{} failed\n{self}", self.command);
        assert!(
            self.left_running.is_empty(),
            "{} left processes running after it exited (killed now): {:?}\n{self}",
            self.command,
            self.left_running
        );
        self
    }

    #[track_caller]
    pub fn expect_stdout(&self, needle: &str) -> &Outcome {
        assert!(
            self.stdout.contains(needle),
            "stdout of {} lacks {needle:?}\n{self}",
            self.command
        );
        self
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ {}\nexit: {:?} after {:?}{}\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            self.code,
            self.elapsed,
            if self.timed_out { " (timed out)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

/// `N` different free loopback ports.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let mut ports = [0; N];
    for i in 0..N {
        ports[i] = loop {
            let p = free_port();
            if !ports[..i].contains(&p) {
                break p;
            }
        };
    }
    ports
}

/// The command must be in the README as written, or the test would run something no
/// person is told to run.
#[track_caller]
pub fn assert_readme_says(command: &str) {
    assert_doc_says("README.md", command);
}

/// The command must be in `doc` (a path in the repository) as written: where a reader meets it.
#[track_caller]
pub fn assert_doc_says(doc: &str, command: &str) {
    let text = std::fs::read_to_string(repo().join(doc)).unwrap();
    assert!(
        text.contains(command),
        "{doc} no longer tells a person to run `{command}`"
    );
}
