//! Git-mode fixtures: a bare "remote" repository and a developer's clone that pushes to it,
//! both inside the test root, plus a root whose `berth serve` follows that remote.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::api::{add_user, Api};
use super::{Serve, TestRoot};

/// Runs git in `dir`; panics with its output on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The remote (bare) and a developer's clone of it.
pub struct Remote {
    pub bare: PathBuf,
    pub dev: PathBuf,
}

impl Remote {
    /// A bare repository with one commit on `main`, and a clone to work in.
    pub fn new(root: &Path) -> Remote {
        let bare = root.join("remote.git");
        let dev = root.join("dev");
        git(
            root,
            &[
                "init",
                "--quiet",
                "--bare",
                "-b",
                "main",
                bare.to_str().unwrap(),
            ],
        );
        git(
            root,
            &[
                "clone",
                "--quiet",
                bare.to_str().unwrap(),
                dev.to_str().unwrap(),
            ],
        );
        git(&dev, &["config", "user.name", "Dev"]);
        git(&dev, &["config", "user.email", "dev@example.com"]);
        git(&dev, &["checkout", "--quiet", "-b", "main"]);
        std::fs::write(dev.join("README.md"), "the state repository\n").unwrap();
        git(&dev, &["add", "-A"]);
        git(&dev, &["commit", "--quiet", "-m", "start"]);
        git(&dev, &["push", "--quiet", "origin", "main"]);
        Remote { bare, dev }
    }

    /// Writes `apps/<user>/<app>.toml` in the developer's clone.
    pub fn write(&self, user: &str, app: &str, text: &str) {
        let p = self.dev.join(format!("apps/{user}/{app}.toml"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Deletes `apps/<user>/<app>.toml` in the developer's clone.
    pub fn remove(&self, user: &str, app: &str) {
        std::fs::remove_file(self.dev.join(format!("apps/{user}/{app}.toml"))).unwrap();
    }

    /// Commits everything and pushes; returns the commit.
    pub fn push(&self, message: &str) -> String {
        git(&self.dev, &["add", "-A"]);
        git(&self.dev, &["commit", "--quiet", "-m", message]);
        git(&self.dev, &["push", "--quiet", "origin", "main"]);
        git(&self.dev, &["rev-parse", "HEAD"])
    }

    /// `author|subject` of the remote's newest commits.
    pub fn log(&self) -> String {
        git(&self.bare, &["log", "--format=%an|%s", "main"])
    }
}

/// A root in git mode with `berth serve` running and users `root` (admin) and `alice`.
pub struct GitRoot {
    pub remote: Remote,
    pub serve: Serve,
    pub api: Api,
    pub admin: String,
    pub alice: String,
    /// Declared last: dropped after serve, so its containers are cleaned up after serve stops.
    pub root: TestRoot,
}

/// The webhook secret every git-mode test root uses.
pub const SECRET: &str = "s3cret-for-tests";

impl GitRoot {
    /// Remote first (with `prepare` run on it), then serve with `[git] interval`.
    pub async fn start(prefix: &str, interval: &str, prepare: impl FnOnce(&Remote)) -> GitRoot {
        GitRoot::start_with(prefix, interval, "", prepare).await
    }

    /// [`start`](Self::start) with `extra` tables (such as `[http]`) in berth.toml.
    pub async fn start_with(
        prefix: &str,
        interval: &str,
        extra: &str,
        prepare: impl FnOnce(&Remote),
    ) -> GitRoot {
        let root = TestRoot::new(prefix).await;
        let remote = Remote::new(root.path());
        prepare(&remote);
        std::fs::remove_dir_all(root.path().join("state")).unwrap();
        root.config(
            &[],
            &format!(
                "[git]\nremote = \"{}\"\nbranch = \"main\"\ninterval = \"{interval}\"\nwebhook_secret = \"{SECRET}\"\n\n{extra}",
                remote.bare.display()
            ),
        );
        let admin = add_user(&root, "root", true).await;
        let alice = add_user(&root, "alice", false).await;
        let mut serve = Serve::start(&root);
        let api = Api::new(serve.api_base());
        GitRoot {
            remote,
            serve,
            api,
            admin,
            alice,
            root,
        }
    }

    /// A signed `POST /hooks/git`; returns the status.
    pub async fn webhook(&self) -> u16 {
        use hmac::{Hmac, KeyInit, Mac};
        let body = br#"{"ref":"refs/heads/main"}"#;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        self.api
            .send(
                reqwest::Method::POST,
                "/hooks/git",
                &[("x-hub-signature-256", &sig)],
                Some(("application/json", body.to_vec())),
            )
            .await
            .status
    }

    /// `GET /git` as the admin.
    pub async fn git_status(&self) -> serde_json::Value {
        self.api.get("/git", &self.admin).await.json()
    }
}
