//! The `Serve` guard: runs `berth --root <root> serve` in the background with its stdout and
//! stderr in `<root>/serve.log`, and stops it (SIGTERM, then SIGKILL after 10 s) on Drop,
//! printing the log when the test is failing.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{TestRoot, BERTH};

/// A running `berth serve`.
pub struct Serve {
    child: Option<Child>,
    log: PathBuf,
}

impl Serve {
    /// Starts `berth --root <root> serve`.
    pub fn start(root: &TestRoot) -> Serve {
        Serve::start_env(root, &[])
    }

    /// [`start`](Self::start) with extra environment variables.
    pub fn start_env(root: &TestRoot, env: &[(&str, &str)]) -> Serve {
        let mut command = Command::new(BERTH);
        command.arg("--root").arg(root.path()).arg("serve");
        Serve::spawn(root, command, env)
    }

    /// [`start`](Self::start) in a mount namespace of its own where `dir` is an empty tmpfs,
    /// as systemd's `PrivateTmp=yes` gives the packaged unit its own /tmp: a file serve
    /// writes there is not where the caller looks (the tests run as root).
    pub fn start_with_private_dir(root: &TestRoot, dir: &std::path::Path) -> Serve {
        std::fs::create_dir_all(dir).unwrap();
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o mode=1777 tmpfs "$1" && exec "$2" --root "$3" serve"#)
            .arg("sh")
            .arg(dir)
            .arg(BERTH)
            .arg(root.path());
        Serve::spawn(root, command, &[])
    }

    fn spawn(root: &TestRoot, mut command: Command, env: &[(&str, &str)]) -> Serve {
        let log = root.path().join("serve.log");
        let file = File::create(&log).expect("create serve.log");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BERTH} serve: {e}"));
        Serve {
            child: Some(child),
            log,
        }
    }

    /// The serve process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("serve runs").id()
    }

    /// What serve wrote so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The API's base URL (`http://127.0.0.1:<port>`), read from serve's startup line
    /// (`listen` is port 0 in tests). Waits up to 30 s for it.
    pub fn api_base(&mut self) -> String {
        let start = Instant::now();
        loop {
            if let Some(addr) = self
                .log()
                .split_whitespace()
                .find_map(|w| w.strip_prefix("api="))
            {
                return format!("http://{addr}");
            }
            self.assert_alive();
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "serve did not report its API address\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for serve to exit on its own; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().expect("serve already stopped");
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("serve still runs after {timeout:?}\n{}", self.log());
    }

    /// Panics (with the log) when serve has already exited.
    #[track_caller]
    pub fn assert_alive(&mut self) {
        let child = self.child.as_mut().expect("serve already stopped");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("berth serve exited early ({status})\n{}", self.log());
        }
    }

    /// SIGKILLs serve at once (a crash, a power cut): nothing of it runs any more.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("serve already stopped");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Waits up to `timeout` for serve's log to hold `needle`; panics with the log if not.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) {
        self.wait_new_log(needle, 0, timeout);
    }

    /// Waits up to `timeout` for serve's log to hold `needle` more than `seen` times (a line
    /// logged again by a later step); panics with the log if not.
    pub fn wait_new_log(&mut self, needle: &str, seen: usize, timeout: Duration) {
        let start = Instant::now();
        while self.log().matches(needle).count() <= seen {
            self.assert_alive();
            assert!(
                start.elapsed() < timeout,
                "serve did not log {needle:?} within {timeout:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM and waits up to `grace` for the exit; SIGKILLs after that. Returns the
    /// exit status and whether it exited within the grace period.
    pub fn stop(&mut self, grace: Duration) -> (ExitStatus, bool) {
        let mut child = self.child.take().expect("serve already stopped");
        if child.try_wait().unwrap().is_none() {
            // SAFETY: kill(2) on our own child's pid; it has not been reaped yet.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, true);
            }
            if start.elapsed() > grace {
                let _ = child.kill();
                return (child.wait().unwrap(), false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.is_some() {
            let (status, in_time) = self.stop(Duration::from_secs(10));
            if !in_time {
                eprintln!("berth serve ignored SIGTERM for 10 s and was killed ({status})");
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- berth serve log ({})\n{}",
                self.log.display(),
                self.log()
            );
        }
    }
}
