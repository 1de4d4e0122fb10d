//! A real Caddy per test (Debian's `caddy`, installed by `scripts/ensure-tools.sh`): its admin
//! API and listeners on free loopback ports, its data (and its local CA) in a temp directory,
//! and never installing that CA into the system's trust store. Stopped on Drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// One running Caddy.
pub struct Caddy {
    child: Option<Child>,
    /// Admin API on a unix socket (in the temp directory) instead of TCP.
    unix: bool,
    dir: tempfile::TempDir,
    /// Admin API port.
    pub admin: u16,
    /// Where berth's HTTPS server listens.
    pub https: u16,
    /// Where berth's HTTP server listens.
    pub http: u16,
}

impl Caddy {
    /// Starts Caddy with an otherwise empty config.
    pub fn start() -> Caddy {
        Caddy::start_with(false)
    }

    /// [`start`](Self::start) with the admin API on a unix socket.
    pub fn start_unix() -> Caddy {
        Caddy::start_with(true)
    }

    fn start_with(unix: bool) -> Caddy {
        let dir = tempfile::Builder::new()
            .prefix("berth-caddy-")
            .tempdir()
            .unwrap();
        let mut caddy = Caddy {
            child: None,
            unix,
            dir,
            admin: free_port(),
            https: free_port(),
            http: free_port(),
        };
        caddy.run();
        caddy
    }

    fn run(&mut self) {
        let data = self.dir.path().join("data");
        let config = serde_json::json!({
            "admin": {"listen": self.admin_listen()},
            "storage": {"module": "file_system", "root": data},
            "apps": {"pki": {"certificate_authorities": {"local": {"install_trust": false}}}},
        });
        let file = self.dir.path().join("caddy.json");
        std::fs::write(&file, config.to_string()).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new("caddy")
            .args(["run", "--config"])
            .arg(&file)
            .env("HOME", self.dir.path())
            .env("XDG_DATA_HOME", self.dir.path().join("xdg-data"))
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg-config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("caddy is missing: run scripts/ensure-tools.sh");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.admin_answers() {
            assert!(
                Instant::now() < deadline,
                "caddy did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// Caddy's notation for the admin address (`unix/<path>` for a socket).
    fn admin_listen(&self) -> String {
        match self.unix {
            true => format!("unix/{}", self.socket().display()),
            false => format!("127.0.0.1:{}", self.admin),
        }
    }

    fn admin_answers(&self) -> bool {
        match self.unix {
            true => std::os::unix::net::UnixStream::connect(self.socket()).is_ok(),
            false => std::net::TcpStream::connect(("127.0.0.1", self.admin)).is_ok(),
        }
    }

    /// Kills Caddy and starts it again with its empty config (berth's routes gone).
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("caddy.log")
    }

    /// Everything Caddy logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// One admin API call by `curl` (`body`: JSON, or empty): its HTTP status and body.
    pub fn admin(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut curl = Command::new("curl");
        curl.args(["-s", "-w", "\n%{http_code}", "-X", method]);
        curl.args(["-H", "Content-Type: application/json", "--data-raw", body]);
        let url = match self.unix {
            true => {
                curl.arg("--unix-socket").arg(self.socket());
                format!("http://localhost{path}")
            }
            false => format!("http://127.0.0.1:{}{path}", self.admin),
        };
        let out = curl.arg(url).output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Admin API calls that change the config (POST, PUT, PATCH, DELETE) so far.
    pub fn admin_writes(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("\"logger\":\"admin.api\""))
            .filter(|l| {
                ["POST", "PUT", "PATCH", "DELETE"]
                    .iter()
                    .any(|m| l.contains(&format!("\"method\":\"{m}\"")))
            })
            .count()
    }

    /// `curl` of `https://<domain>:<https>/` resolved to this Caddy and trusting its local CA:
    /// the status and body, or status 0 when it cannot connect.
    pub fn get(&self, domain: &str) -> (u16, String) {
        self.client().get(domain)
    }

    /// What [`get`](Self::get) needs, to send requests from another thread.
    pub fn client(&self) -> CaddyClient {
        CaddyClient {
            http: self.http,
            https: self.https,
            root: self.dir.path().join("data/pki/authorities/local/root.crt"),
        }
    }

    /// `[proxy]` for this Caddy with plain HTTP (`tls = "off"`) and `drain`: for tests that
    /// send many requests from Rust.
    pub fn plain_proxy_table(&self, drain: &str) -> String {
        self.proxy_table().replace(
            "tls = \"internal\"",
            &format!("tls = \"off\"\ndrain = \"{drain}\""),
        )
    }

    /// berth.toml's `[proxy]` table for this Caddy (`tls = "internal"`).
    pub fn proxy_table(&self) -> String {
        let admin = match self.unix {
            true => self.admin_listen(),
            false => format!("http://127.0.0.1:{}", self.admin),
        };
        format!(
            "[proxy]\ncaddy_admin = \"{admin}\"\nhttp_port = {}\nhttps_port = {}\ntls = \"internal\"\n",
            self.http, self.https
        )
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends HTTPS requests to one Caddy (see [`Caddy::get`]).
#[derive(Clone)]
pub struct CaddyClient {
    http: u16,
    https: u16,
    root: std::path::PathBuf,
}

impl CaddyClient {
    /// `curl` of `https://<domain>:<https>/` resolved to the Caddy and trusting its local CA:
    /// the status and body, or status 0 and curl's error when nothing answered.
    pub fn get(&self, domain: &str) -> (u16, String) {
        let url = format!("https://{domain}:{}/", self.https);
        let resolve = format!("{domain}:{}:127.0.0.1", self.https);
        curl(&[
            "--resolve",
            &resolve,
            "--cacert",
            &self.root.to_string_lossy(),
            &url,
        ])
    }

    /// [`get`](Self::get) over plain HTTP (`tls = "off"`), on a new connection.
    pub fn get_plain(&self, domain: &str) -> (u16, String) {
        let url = format!("http://{domain}:{}/", self.http);
        curl(&[
            "--resolve",
            &format!("{domain}:{}:127.0.0.1", self.http),
            &url,
        ])
    }
}

fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-m", "5", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    match code.trim().parse().unwrap_or(0) {
        // No answer: curl's own error says why.
        0 => (0, String::from_utf8_lossy(&out.stderr).trim().to_string()),
        status => (status, body.trim().to_string()),
    }
}
