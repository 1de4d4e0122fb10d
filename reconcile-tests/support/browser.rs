//! A real headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`):
//! one `chromedriver` per test on a free loopback port, in its own process group with its own
//! profile directory, killed with everything it started when the test ends. The client is the
//! few W3C WebDriver commands the portal tests need, over reqwest.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Browser {
        use std::os::unix::process::CommandExt;
        let port = super::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) must be installed: scripts/ensure-tools.sh");
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _profile: profile,
        };
        b.wait_ready().await;
        b.new_session().await;
        b
    }

    async fn wait_ready(&self) {
        let url = format!("{}/status", self.base);
        super::wait_until(
            Duration::from_secs(20),
            "chromedriver to listen",
            || async {
                let r = self.http.get(&url).send().await;
                match r {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .is_ok_and(|v| v["value"]["ready"] == true),
                    Err(_) => false,
                }
            },
        )
        .await;
    }

    async fn new_session(&mut self) {
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", self._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let v = self.raw("POST", "/session", Some(caps)).await;
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"));
        self.base = format!("{}/session/{id}", self.base);
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body.unwrap_or(json!({}))),
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
        resp.json().await.unwrap_or(Value::Null)
    }

    /// A command that must succeed; its `value`.
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self.raw(method, path, body).await;
        if v["value"]["error"].is_string() {
            panic!("webdriver {method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The page's HTML as the browser holds it.
    pub async fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Waits until the page holds `needle` (a click's navigation may still be under way).
    pub async fn wait_for(&self, needle: &str) {
        let what = format!("the page to show {needle:?}");
        super::wait_until(Duration::from_secs(20), &what, || async {
            self.source().await.contains(needle)
        })
        .await;
    }

    /// Waits until the browser is at a URL ending with `suffix`.
    pub async fn wait_for_url(&self, suffix: &str) {
        let what = format!("the browser to reach {suffix}");
        super::wait_until(Duration::from_secs(20), &what, || async {
            self.url().await.ends_with(suffix)
        })
        .await;
    }

    /// The first element matching `css`, if any.
    pub async fn try_find(&self, css: &str) -> Option<String> {
        let body = json!({"using": "css selector", "value": css});
        let v = self.raw("POST", "/element", Some(body)).await;
        v["value"][ELEMENT].as_str().map(str::to_string)
    }

    /// The first element matching `css` (panics when there is none).
    pub async fn find(&self, css: &str) -> String {
        // A click's navigation may still be under way: look again for up to 10 s.
        for _ in 0..100 {
            if let Some(e) = self.try_find(css).await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no element {css} on {}:\n{}",
            self.url().await,
            self.source().await
        )
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), None).await;
    }

    /// Replaces the text of the input or textarea matching `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/clear"), None).await;
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        let v = self.cmd("GET", &format!("/element/{e}/text"), None).await;
        v.as_str().unwrap_or("").to_string()
    }

    /// The `value` property of the input or textarea matching `css`.
    pub async fn value(&self, css: &str) -> String {
        let e = self.find(css).await;
        let v = self
            .cmd("GET", &format!("/element/{e}/property/value"), None)
            .await;
        v.as_str().unwrap_or("").to_string()
    }

    /// The value of cookie `name`, if the browser holds it.
    pub async fn cookie(&self, name: &str) -> Option<Value> {
        let v = self.raw("GET", &format!("/cookie/{name}"), None).await;
        v["value"]["value"].is_string().then(|| v["value"].clone())
    }

    /// Whether a JavaScript dialog (an `alert`) is open: what an executed script would show.
    pub async fn alert_open(&self) -> bool {
        let v = self.raw("GET", "/alert/text", None).await;
        !v["value"]["error"].is_string()
    }

    /// Waits until the page has loaded and its scripts have had their first turn (the load
    /// event, a frame, then a task). `Err` holds the driver's complaint when a dialog opened
    /// before or meanwhile: the driver dismisses it and reports "unexpected alert open".
    pub async fn settled(&self) -> Result<(), String> {
        let script = "const done = arguments[arguments.length - 1];
            const turn = () => requestAnimationFrame(() => setTimeout(() => done(true), 0));
            if (document.readyState === 'complete') turn();
            else window.addEventListener('load', turn);";
        let body = json!({"script": script, "args": []});
        let v = self.raw("POST", "/execute/async", Some(body)).await;
        match v["value"]["error"].as_str() {
            None => Ok(()),
            Some(e) => Err(format!("{e}: {}", v["value"]["message"])),
        }
    }

    /// Runs `script` in the page (synchronously), ignoring what it returns.
    pub async fn run_script(&self, script: &str) {
        let body = json!({"script": script, "args": []});
        self.raw("POST", "/execute/sync", Some(body)).await;
    }

    /// Saves a PNG of the viewport to `dir/name.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or(""))
            .expect("a base64 screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

/// Where screenshots go: `$BERTH_SCREENSHOTS`, else `target/portal-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("BERTH_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/portal-screenshots"))
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and every Chromium process it started share its process group.
        let pgid = self.driver.id() as i32;
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}
