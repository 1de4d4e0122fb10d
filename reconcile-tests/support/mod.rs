//! Test support: `TestRoot` (a temp berth root with its own unique `instance`, a busybox
//! template, and a Drop guard that force-removes exactly that instance's containers), running
//! the `berth` binary (`Run`), file helpers for manifests, templates and hooks, and
//! `wait_until`. Docker-side helpers live in `docker.rs`, the `berth serve` guard in `serve.rs`.

#![allow(dead_code)]

pub mod api;
pub mod browser;
pub mod caddy;
pub mod docker;
pub mod example;
pub mod git;
pub mod relay;
pub mod serve;
pub mod swarm;
pub mod tmpfs;
pub mod verdict;

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use api::Api;
pub use docker::EventLog;
pub use serve::Serve;

/// The image every test template runs (built by `scripts/build-test-image.sh`).
pub const IMAGE: &str = "berth-test-busybox:1";
/// The binary under test.
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");
/// A hung `berth` command fails its test instead of hanging the run.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// The default test template `bb-v1`: a container that sleeps, 64 MiB, a quarter CPU.
pub const BB_TEMPLATE: &str = r#"image = "berth-test-busybox:1"
command = ["sleep", "3600"]
workdir = "/"
port = 8080

[defaults]
memory = "64m"
cpus = 0.25
"#;

/// A template `www-v1` whose container serves `hello-$NAME` on port 8080 (busybox httpd).
pub const WWW_TEMPLATE: &str = r#"image = "berth-test-busybox:1"
command = ["sh", "-c", "mkdir -p /tmp/w && echo hello-$NAME > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"]
workdir = "/"
port = 8080

[defaults]
memory = "32m"
cpus = 0.25
"#;

/// The smallest valid manifest on `bb-v1`.
pub const MINIMAL: &str = "template = \"bb-v1\"\n";

/// Builds the test image once per process; every test calls this through `TestRoot::new`.
/// Panics (failing the test loudly) when no Docker engine answers.
fn ensure_image() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-test-image.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .output()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{script} failed ({}); is a Docker engine running? \
                 (scripts/ensure-docker.sh starts one)\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A unique instance name: `t` + prefix + time + pid + counter, lowercase alnum, <= 30 chars.
fn unique_instance(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let p: String = prefix
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(10)
        .collect();
    let name = format!(
        "t{p}{}{}{}",
        base36(micros % 36u64.pow(5), 5),
        base36(std::process::id() as u64 % 36u64.pow(3), 3),
        base36(n as u64, 1)
    );
    assert!(name.len() <= 30, "instance name too long: {name}");
    name
}

fn base36(mut v: u64, min_width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    while v > 0 || out.len() < min_width {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

/// Base keys of every test root's berth.toml; `TestRoot::config` overrides or adds to them.
const BASE_CONFIG: &[(&str, &str)] = &[
    ("resync", "\"1h\""),
    ("stop_timeout", "\"2s\""),
    ("hook_timeout", "\"5s\""),
    ("max_parallel", "4"),
    // Port 0: parallel `serve` tests must not fight over the default API port.
    ("listen", "\"127.0.0.1:0\""),
];

/// The `[policy]` every test root adds (unless a test writes its own `[policy]`): the tests'
/// manifests claim domains under these names, and their bursts of API writes are far past
/// what one person makes in a minute.
const BASE_POLICY: &str =
    "[policy]\ndomains = [\"*.example.test\", \"*.example.com\"]\napi_writes_per_minute = 10000\n";

/// One test's berth root. Dropping it removes every container labelled with its instance.
pub struct TestRoot {
    dir: tempfile::TempDir,
    /// This root's `instance` (label `paas.instance`), unique per test.
    pub instance: String,
    /// A client bound to the calling test's runtime.
    pub docker: bollard::Docker,
}

impl TestRoot {
    /// A fresh root with berth.toml (unique instance, resync 1h, stop_timeout 2s) and the
    /// `bb-v1` template. `prefix` names the temp dir and starts the instance name.
    pub async fn new(prefix: &str) -> TestRoot {
        ensure_image();
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-{prefix}-"))
            .tempdir()
            .expect("create temp root");
        let root = TestRoot {
            dir,
            instance: unique_instance(prefix),
            docker: docker::connect().await,
        };
        docker::remove_instance_containers(&root.instance);
        for d in ["state/apps", "templates", "apps", "shared"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        root.config(&[], "");
        root.write_template("bb-v1", BB_TEMPLATE);
        root
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Rewrites berth.toml: the base keys with `overrides` (TOML values) applied, then `extra`
    /// (tables such as `[templates.x]`) appended.
    pub fn config(&self, overrides: &[(&str, &str)], extra: &str) {
        let mut text = format!("instance = \"{}\"\n", self.instance);
        for (k, v) in BASE_CONFIG {
            if !overrides.iter().any(|(o, _)| o == k) {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        for (k, v) in overrides {
            text.push_str(&format!("{k} = {v}\n"));
        }
        text.push('\n');
        text.push_str(extra);
        if !extra.contains("[policy") {
            text.push('\n');
            text.push_str(BASE_POLICY);
        }
        std::fs::write(self.path().join("berth.toml"), text).unwrap();
    }

    /// `state/apps/<user>/<app>.toml`.
    pub fn manifest_path(&self, user: &str, app: &str) -> PathBuf {
        self.path()
            .join("state/apps")
            .join(user)
            .join(format!("{app}.toml"))
    }

    /// Writes a manifest (creating the user directory).
    pub fn write_manifest(&self, user: &str, app: &str, text: &str) {
        let path = self.manifest_path(user, app);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Deletes a manifest.
    pub fn remove_manifest(&self, user: &str, app: &str) {
        std::fs::remove_file(self.manifest_path(user, app)).unwrap();
    }

    /// Deletes a manifest if there is one.
    pub fn remove_manifest_if_present(&self, user: &str, app: &str) {
        let _ = std::fs::remove_file(self.manifest_path(user, app));
    }

    /// `apps/<user>/<app>`: the app's workspace (berth does not create it).
    pub fn app_dir(&self, user: &str, app: &str) -> PathBuf {
        self.path().join("apps").join(user).join(app)
    }

    /// `templates/<id>`.
    pub fn template_dir(&self, id: &str) -> PathBuf {
        self.path().join("templates").join(id)
    }

    /// Writes `templates/<id>/template.toml`.
    pub fn write_template(&self, id: &str, text: &str) {
        let dir = self.template_dir(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("template.toml"), text).unwrap();
    }

    /// Writes an executable hook `templates/<id>/hooks/<name>`.
    pub fn write_hook(&self, id: &str, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.template_dir(id).join("hooks");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Runs `berth --root <root> <args...>`.
    pub async fn berth(&self, args: &[&str]) -> Run {
        let mut all: Vec<OsString> = vec!["--root".into(), self.path().into()];
        all.extend(args.iter().map(OsString::from));
        run_berth(all).await
    }

    /// `berth --root <root> <args...>` with extra environment variables.
    pub async fn berth_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut all: Vec<OsString> = vec!["--root".into(), self.path().into()];
        all.extend(args.iter().map(OsString::from));
        run_berth_env(all, env).await
    }

    /// `paas-app-<instance>-<user>-<app>`.
    pub fn container_name(&self, user: &str, app: &str) -> String {
        format!("paas-app-{}-{user}-{app}", self.instance)
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        docker::remove_instance_containers(&self.instance);
        if std::thread::panicking() {
            eprintln!(
                "test root {} (instance {}) is removed with the test",
                self.path().display(),
                self.instance
            );
        }
    }
}

/// The outcome of one `berth` run.
pub struct Run {
    /// The arguments, for messages.
    pub args: Vec<OsString>,
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout and stderr together.
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Whether stdout or stderr contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.stdout.contains(needle) || self.stderr.contains(needle)
    }

    /// Asserts the exit code, showing the whole output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "unexpected exit code\n{self}");
        self
    }

    /// Asserts stdout or stderr contains `needle`.
    #[track_caller]
    pub fn expect_contains(&self, needle: &str) -> &Run {
        assert!(self.contains(needle), "output lacks {needle:?}\n{self}");
        self
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ berth {}\nexit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs the binary with exactly `args`, with a timeout.
pub async fn run_berth(args: Vec<OsString>) -> Run {
    run_berth_env(args, &[]).await
}

/// Runs the binary with exactly `args` and extra environment variables, with a timeout.
pub async fn run_berth_env(args: Vec<OsString>, env: &[(&str, &str)]) -> Run {
    let child = tokio::process::Command::new(BERTH)
        .args(&args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(RUN_TIMEOUT, child).await {
        Ok(out) => out.unwrap_or_else(|e| panic!("cannot run {BERTH}: {e}")),
        Err(_) => panic!("berth {args:?} did not finish within {RUN_TIMEOUT:?}"),
    };
    Run {
        args,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One metric series' value in a `/metrics` text (0 when absent).
pub fn metric_value(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A port nothing listens on right now (bound once, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 50 ms until it is true; returns how long that took. Panics with
/// `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `text` reports exit code `code`: the number, standing alone, shortly after
/// "exit", "code" or "status" (e.g. "exit code 3", "exit status: 3", "exited with 3").
pub fn mentions_exit_code(text: &str, code: i32) -> bool {
    let lower = text.to_lowercase();
    let needle = code.to_string();
    lower.match_indices(&needle).any(|(i, m)| {
        let before = lower[..i].chars().next_back();
        let after = lower[i + m.len()..].chars().next();
        let alone = !before.is_some_and(|c| c.is_ascii_digit())
            && !after.is_some_and(|c| c.is_ascii_digit());
        let start = lower[..i]
            .char_indices()
            .rev()
            .nth(23)
            .map_or(0, |(j, _)| j);
        let window = &lower[start..i];
        alone
            && ["exit", "code", "status"]
                .iter()
                .any(|w| window.contains(w))
    })
}

/// Every `<file_suffix>:<line>:<col>` reference in `text`, as (line, col).
pub fn line_cols(text: &str, file_suffix: &str) -> Vec<(usize, usize)> {
    let digits = |s: &str| -> Option<(usize, usize)> {
        let n = s.bytes().take_while(|b| b.is_ascii_digit()).count();
        Some((s.get(..n)?.parse().ok()?, n))
    };
    let mut found = Vec::new();
    for (i, m) in text.match_indices(file_suffix) {
        let rest = &text[i + m.len()..];
        let Some(rest) = rest.strip_prefix(':') else {
            continue;
        };
        let Some((line, n)) = digits(rest) else {
            continue;
        };
        let Some(rest) = rest[n..].strip_prefix(':') else {
            continue;
        };
        let Some((col, _)) = digits(rest) else {
            continue;
        };
        found.push((line, col));
    }
    found
}

/// The body of `GET /` on a local port, if something answers.
pub fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// libfaketime's multi-threaded preload library (Debian's `faketime`, installed by
/// `scripts/ensure-tools.sh`).
pub fn libfaketime() -> String {
    let found = std::fs::read_dir("/usr/lib")
        .unwrap()
        .flatten()
        .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists());
    found
        .expect("libfaketime is missing: run scripts/ensure-tools.sh")
        .display()
        .to_string()
}
