//! Secrets (issue 13, docs/guides/secrets.md) against the real engine: a value set through the API and one
//! encrypted by hand with only the public key reach the container's environment, and are
//! searched for on every other surface (docker inspect outside the environment, berth's log at
//! trace, every API answer, the audit log, the database file, the state directory, `plan`).
//! Re-encrypting keeps the container, a new value recreates it, garbage freezes the app and
//! keeps its container; a key readable by others stops serve; a missing key freezes and is
//! not silently replaced.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::api::add_user;
use crate::support::{wait_until, Api, Serve, TestRoot, BERTH, MINIMAL};

const T: Duration = Duration::from_secs(30);
const PLAIN: &str = "s3cr3t-Plain-Value-42";
const PLAIN2: &str = "hand-Encrypted-Token-77";

/// `berth secrets encrypt NAME --app APP [--recipient R]` with `value` on stdin; the TOML
/// line.
pub(crate) fn encrypt(
    root: &TestRoot,
    (app, name): (&str, &str),
    value: &str,
    recipient: Option<&str>,
) -> String {
    let mut cmd = Command::new(BERTH);
    cmd.arg("--root")
        .arg(root.path())
        .args(["secrets", "encrypt", name, "--app", app]);
    if let Some(r) = recipient {
        cmd.args(["--recipient", r]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{value}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Every file under `dir`, as bytes, with its path.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p.display().to_string(), bytes));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The container's environment, and everything else `docker inspect` shows of it.
async fn env_and_rest(root: &TestRoot, app: &str) -> (Vec<String>, String) {
    let c = root.container("alice", app).await.expect("container");
    let env = c
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    let mut rest = serde_json::to_value(&c).unwrap();
    rest["Config"]["Env"] = json!(null);
    (env, rest.to_string())
}

#[tokio::test]
async fn a_secret_reaches_only_the_containers_environment() {
    let root = TestRoot::new("secrets").await;
    let admin = add_user(&root, "root", true).await;
    let alice = add_user(&root, "alice", false).await;
    let mut serve = Serve::start_env(&root, &[("RUST_LOG", "trace")]);
    let api = Api::new(serve.api_base());
    api.create_app(&alice, "web", "bb-v1").await.expect(201);
    let set = json!({ "value": PLAIN });
    api.call(
        reqwest::Method::PUT,
        "/apps/alice/web/secrets/DB_PASSWORD",
        &alice,
        Some(set),
    )
    .await
    .expect(200);
    // By hand, with only the public key.
    let recipient = root
        .berth(&["secrets", "recipient"])
        .await
        .stdout
        .trim()
        .to_string();
    assert!(recipient.starts_with("age1"), "{recipient}");
    let line = encrypt(&root, ("alice/api", "API_TOKEN"), PLAIN2, Some(&recipient));
    root.write_manifest("alice", "api", &format!("{MINIMAL}[secrets]\n{line}\n"));
    root.wait_running("alice", "api", T).await;
    // web's first container may predate its secret: wait for the one made with it.
    wait_until(T, "web to run with its secret", || async {
        let running = root.running("alice", "web").await;
        running
            && env_and_rest(&root, "web")
                .await
                .0
                .contains(&format!("DB_PASSWORD={PLAIN}"))
    })
    .await;

    let (env, rest) = env_and_rest(&root, "web").await;
    assert!(env.contains(&format!("DB_PASSWORD={PLAIN}")), "{env:?}");
    assert!(
        !rest.contains(PLAIN),
        "docker inspect shows it outside the environment"
    );
    let (env, rest) = env_and_rest(&root, "api").await;
    assert!(env.contains(&format!("API_TOKEN={PLAIN2}")), "{env:?}");
    assert!(!rest.contains(PLAIN2));

    let listed = api.get("/apps/alice/web/secrets", &alice).await.json();
    assert_eq!(listed["secrets"][0]["name"], "DB_PASSWORD", "{listed}");
    assert!(listed["secrets"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("k3:"));
    for path in [
        "/apps",
        "/apps/alice/web",
        "/apps/alice/web/revisions",
        "/audit?tail=100",
    ] {
        api.get(path, &admin).await.expect(200);
    }
    let plan = root.berth(&["plan"]).await.text();
    let answers = api.seen.lock().unwrap().join("\n");
    let log = serve.log();
    serve.stop(Duration::from_secs(10));
    for secret in [PLAIN, PLAIN2] {
        assert!(!answers.contains(secret), "an API answer carries it");
        assert!(!log.contains(secret), "berth's trace log carries it");
        assert!(!plan.contains(secret), "plan shows it");
        for (file, bytes) in files_under(&root.path().join("state")) {
            assert!(!contains(&bytes, secret), "{file} holds it");
        }
        let db = std::fs::read(root.path().join("berth.redb")).unwrap();
        assert!(!contains(&db, secret), "the database holds it");
    }
}

/// `app`'s phase once it is frozen or running, and its last error.
async fn settled(api: &Api, token: &str, app: &str) -> (String, String) {
    let path = format!("/apps/{app}");
    wait_until(T, "the app to freeze or run", || async {
        let v = api.get(&path, token).await.json();
        v["phase"] == "frozen" || v["phase"] == "running"
    })
    .await;
    let v = api.get(&path, token).await.json();
    let error = v["last_error"].as_str().unwrap_or_default().to_string();
    (v["phase"].as_str().unwrap_or_default().to_string(), error)
}

#[tokio::test]
async fn a_value_sealed_for_one_app_opens_in_no_other_and_names_its_scope() {
    let root = TestRoot::new("secretscope").await;
    let alice = add_user(&root, "alice", false).await;
    let bob = add_user(&root, "bob", false).await;
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    api.create_app(&alice, "web", "bb-v1").await.expect(201);
    let set = json!({ "value": PLAIN });
    let path = "/apps/alice/web/secrets/DB_PASSWORD";
    api.call(reqwest::Method::PUT, path, &alice, Some(set))
        .await
        .expect(200);
    let text = std::fs::read_to_string(root.manifest_path("alice", "web")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("DB_PASSWORD = "))
        .unwrap()
        .to_string();
    // Replayed into another user's manifest, and into another app of alice's.
    root.write_manifest("bob", "web", &format!("{MINIMAL}[secrets]\n{line}\n"));
    root.write_manifest("alice", "copy", &format!("{MINIMAL}[secrets]\n{line}\n"));
    for (token, app) in [(&bob, "bob/web"), (&alice, "alice/copy")] {
        let (phase, error) = settled(&api, token, app).await;
        assert_eq!(phase, "frozen", "{app} opened alice/web's value: {error}");
        assert!(
            error.contains("sealed for alice/web/DB_PASSWORD, not for")
                && error.contains(&format!("{app}.toml")),
            "{error}"
        );
        assert!(!error.contains(PLAIN), "{error}");
    }
    assert!(root.container("bob", "web").await.is_none());
    root.wait_running("alice", "web", T).await;

    // Shared on purpose: copied by the server, sealed again for the app it goes to.
    let copy = json!({ "copy_from": "alice/web/DB_PASSWORD" });
    let to_copy = "/apps/alice/copy/secrets/DB_PASSWORD";
    api.call(reqwest::Method::PUT, to_copy, &alice, Some(copy.clone()))
        .await
        .expect(200);
    let to_bob = "/apps/bob/web/secrets/DB_PASSWORD";
    let refused = api
        .call(reqwest::Method::PUT, to_bob, &bob, Some(copy))
        .await;
    assert_eq!(
        refused.status, 403,
        "bob copied alice's value: {}",
        refused.text
    );
    wait_until(T, "the copy to run with the value", || async {
        root.running("alice", "copy").await
            && env_and_rest(&root, "copy")
                .await
                .0
                .contains(&format!("DB_PASSWORD={PLAIN}"))
    })
    .await;
    serve.assert_alive();
}

#[tokio::test]
async fn re_encrypting_keeps_the_container_a_new_value_recreates_garbage_freezes() {
    let root = TestRoot::new("secretroll").await;
    let alice = add_user(&root, "alice", false).await;
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    api.create_app(&alice, "web", "bb-v1").await.expect(201);
    let put = |value: &str| {
        let body = json!({ "value": value });
        api.call(
            reqwest::Method::PUT,
            "/apps/alice/web/secrets/TOKEN",
            &alice,
            Some(body),
        )
    };
    put("one").await.expect(200);
    root.berth(&["apply"]).await.expect_code(0);
    let first = root.id("alice", "web").await;
    let before = std::fs::read_to_string(root.manifest_path("alice", "web")).unwrap();
    put("one").await.expect(200);
    let after = std::fs::read_to_string(root.manifest_path("alice", "web")).unwrap();
    assert_ne!(before, after, "a new encryption of the same value");
    root.berth(&["apply"]).await.expect_code(0);
    assert_eq!(
        root.id("alice", "web").await,
        first,
        "re-encrypting recreated the container"
    );

    put("two").await.expect(200);
    root.berth(&["apply"]).await.expect_code(0);
    let second = root.id("alice", "web").await;
    assert_ne!(second, first, "a new value must recreate");
    let (env, _) = env_and_rest(&root, "web").await;
    assert!(env.contains(&"TOKEN=two".to_string()), "{env:?}");
    wait_until(T, "the revision that set it", || async {
        let v = api.get("/apps/alice/web/secrets", &alice).await.json();
        v["secrets"][0]["set_at"].is_u64()
    })
    .await;

    // Garbage: frozen with the file and the secret named; the container stays.
    let garbage = format!("{MINIMAL}[secrets]\nTOKEN = \"age:AAAA\"\n");
    root.write_manifest("alice", "web", &garbage);
    wait_until(T, "the app to freeze", || async {
        let v = api.get("/apps/alice/web", &alice).await.json();
        v["phase"] == "frozen"
    })
    .await;
    let v = api.get("/apps/alice/web", &alice).await.json();
    let error = v["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("state/apps/alice/web.toml") && error.contains("TOKEN"),
        "{error}"
    );
    assert_eq!(root.id("alice", "web").await, second);
    assert!(root.running("alice", "web").await);
    serve.assert_alive();
}

#[tokio::test]
async fn a_key_readable_by_others_stops_serve_and_a_missing_one_freezes_without_a_new_key() {
    use std::os::unix::fs::PermissionsExt;
    let root = TestRoot::new("secretkey").await;
    let recipient = root
        .berth(&["secrets", "recipient"])
        .await
        .stdout
        .trim()
        .to_string();
    let key = root.path().join("berth.key");
    let line = encrypt(&root, ("alice/web", "TOKEN"), "v", Some(&recipient));
    root.write_manifest("alice", "web", &format!("{MINIMAL}[secrets]\n{line}\n"));
    root.berth(&["apply"]).await.expect_code(0);
    let id = root.id("alice", "web").await;

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut serve = Serve::start(&root);
    assert_ne!(serve.wait_exit(T), Some(0));
    assert!(serve.log().contains("chmod 600"), "{}", serve.log());

    std::fs::remove_file(&key).unwrap();
    let run = root.berth(&["apply"]).await;
    assert_ne!(run.code, Some(0));
    assert!(
        run.text().contains("berth.key is missing"),
        "{}",
        run.text()
    );
    let mut serve = Serve::start(&root);
    serve.api_base();
    assert!(!key.exists(), "a new key was made over encrypted manifests");
    assert_eq!(root.id("alice", "web").await, id, "nothing is removed");
    assert!(root.running("alice", "web").await);
    serve.assert_alive();
}

#[tokio::test]
async fn rotation_recreates_nothing_and_removes_the_old_key_once_every_value_is_resealed() {
    let root = TestRoot::new("secretrot").await;
    let alice = add_user(&root, "alice", false).await;
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    for app in ["web", "api", "typo"] {
        api.create_app(&alice, app, "bb-v1").await.expect(201);
        let body = json!({ "value": format!("{app}-{PLAIN}") });
        let path = format!("/apps/alice/{app}/secrets/TOKEN");
        api.call(reqwest::Method::PUT, &path, &alice, Some(body))
            .await
            .expect(200);
    }
    // One manifest holding a secret does not read when the rotation runs.
    let typo_text = std::fs::read_to_string(root.manifest_path("alice", "typo")).unwrap();
    root.write_manifest("alice", "typo", &format!("memroy = \"64m\"\n{typo_text}"));
    root.berth(&["apply"]).await;
    let ids = (root.id("alice", "web").await, root.id("alice", "api").await);
    let key = root.path().join("berth.key");
    let old_key = std::fs::read_to_string(&key).unwrap();
    let old_text = std::fs::read_to_string(root.manifest_path("alice", "web")).unwrap();

    // A value left behind: the rotation does not finish, and the old key stays.
    let run = root.berth(&["secrets", "rotate"]).await;
    run.expect_code(1).expect_contains("2 manifests, 2 values");
    run.expect_contains("not re-encrypted: alice/typo: the manifest does not read");
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        old_key,
        "the old key was replaced while a value still needs it"
    );
    assert!(root.path().join("berth.key.next").exists());
    run.expect_contains("old key: still in");

    // Fixed, and run again: every value re-sealed, the old key gone.
    root.write_manifest("alice", "typo", &typo_text);
    let run = root.berth(&["secrets", "rotate"]).await;
    run.expect_code(0).expect_contains("old key: removed");
    let new_key = std::fs::read_to_string(&key).unwrap();
    assert_ne!(new_key, old_key);
    let fingerprint_line = |k: &str| {
        k.lines()
            .find(|l| l.starts_with("BERTH-FINGERPRINT-KEY-"))
            .unwrap()
            .to_string()
    };
    assert_ne!(
        fingerprint_line(&new_key),
        fingerprint_line(&old_key),
        "the fingerprint key was not rotated"
    );
    assert!(!root.path().join("berth.key.next").exists());
    assert!(!root.path().join("berth.key.old").exists());
    root.berth(&["apply"]).await.expect_code(0);
    assert_eq!(
        (root.id("alice", "web").await, root.id("alice", "api").await),
        ids,
        "rotation recreated a container"
    );
    let (env, _) = env_and_rest(&root, "web").await;
    assert!(env.contains(&format!("TOKEN=web-{PLAIN}")), "{env:?}");
    wait_until(T, "the fixed app to run with its secret", || async {
        root.running("alice", "typo").await
            && env_and_rest(&root, "typo")
                .await
                .0
                .contains(&format!("TOKEN=typo-{PLAIN}"))
    })
    .await;

    // A ciphertext from before the rotation (a rollback, a commit not pulled) no longer opens.
    root.write_manifest("alice", "web", &old_text);
    wait_until(T, "the old ciphertext to freeze its app", || async {
        let v = api.get("/apps/alice/web", &alice).await.json();
        v["phase"] == "frozen"
            && v["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("another key")
    })
    .await;
    assert_eq!(root.id("alice", "web").await, ids.0, "the container stays");
    serve.assert_alive();
}

#[tokio::test]
async fn git_mode_history_holds_only_ciphertexts_and_a_rotation_is_one_commit() {
    use crate::support::git::{git, GitRoot};
    let g = GitRoot::start("secretgit", "1h", |r| {
        r.write("alice", "web", MINIMAL);
        r.push("web");
    })
    .await;
    g.root.wait_running("alice", "web", T).await;
    let body = json!({ "value": PLAIN });
    let path = "/apps/alice/web/secrets/DB_PASSWORD";
    g.api
        .call(reqwest::Method::PUT, path, &g.alice, Some(body))
        .await
        .expect(200);
    let state = g.root.path().join("state");
    let before = git(&state, &["rev-list", "--count", "HEAD"]);
    let run = g.root.berth(&["secrets", "rotate"]).await;
    run.expect_code(0).expect_contains("1 manifests");
    let after = git(&state, &["rev-list", "--count", "HEAD"]);
    assert_eq!(
        after.trim().parse::<u32>().unwrap(),
        before.trim().parse::<u32>().unwrap() + 1
    );
    let subject = git(&state, &["log", "-1", "--format=%s"]);
    assert!(subject.contains("rotate the secrets key"), "{subject}");
    let history = git(&state, &["log", "-p", "--all"]);
    assert!(
        history.contains("age:"),
        "the secret is in the history, encrypted"
    );
    assert!(!history.contains(PLAIN), "git history holds the plaintext");
    g.root.wait_running("alice", "web", T).await;
}

#[tokio::test]
async fn hostile_secret_calls_are_refused_and_change_nothing() {
    let root = TestRoot::new("secrethostile").await;
    let alice = add_user(&root, "alice", false).await;
    let bob = add_user(&root, "bob", false).await;
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    api.create_app(&alice, "web", "bb-v1").await.expect(201);
    root.write_manifest(
        "alice",
        "env",
        &format!("{MINIMAL}[env]\nTOKEN = \"plain\"\n"),
    );
    let ok = json!({ "value": "v" });
    let cases = [
        ("/apps/alice/web/secrets/1BAD", &alice, ok.clone(), 400),
        ("/apps/alice/web/secrets/PORT", &alice, ok.clone(), 400),
        (
            "/apps/alice/web/secrets/X",
            &alice,
            json!({"value": "v", "extra": 1}),
            422,
        ),
        (
            "/apps/alice/web/secrets/X",
            &alice,
            json!({"value": "a\u{0}b"}),
            400,
        ),
        (
            "/apps/alice/web/secrets/X",
            &alice,
            json!({"value": "x".repeat(40_000)}),
            400,
        ),
        ("/apps/alice/web/secrets/X", &bob, ok.clone(), 403),
        ("/apps/alice/none/secrets/X", &alice, ok.clone(), 404),
        ("/apps/alice/env/secrets/TOKEN", &alice, ok.clone(), 409),
    ];
    let before = std::fs::read_to_string(root.manifest_path("alice", "web")).unwrap();
    for (path, token, body, status) in cases {
        let r = api
            .call(reqwest::Method::PUT, path, token, Some(body))
            .await;
        assert_eq!(r.status, status, "{path}: {}", r.text);
    }
    assert_eq!(
        api.delete("/apps/alice/web/secrets/NOPE", &alice)
            .await
            .status,
        404
    );
    assert_eq!(api.get("/apps/alice/web/secrets", &bob).await.status, 403);
    let after = std::fs::read_to_string(root.manifest_path("alice", "web")).unwrap();
    assert_eq!(before, after, "a refused call wrote the manifest");
    // A hand-written plain value under [secrets] is refused with its location.
    root.write_manifest(
        "alice",
        "web",
        &format!("{MINIMAL}[secrets]\nTOKEN = \"plain\"\n"),
    );
    let run = root.berth(&["validate"]).await;
    assert!(
        run.text().contains("state/apps/alice/web.toml:") && run.text().contains("[env]"),
        "{}",
        run.text()
    );
    serve.assert_alive();
}

/// A template whose container prints its environment and exits when `MODE = "exit"`.
const DUMP_TEMPLATE: &str = r#"image = "berth-test-busybox:1"
command = ["sh", "-c", "if [ \"$MODE\" = exit ]; then env; echo env-dumped; exit 3; fi; exec sleep 3600"]
workdir = "/"
port = 8080

[defaults]
memory = "32m"
cpus = 0.25
"#;

#[tokio::test]
async fn a_failed_rollout_keeps_its_log_tail_in_status_redacted_and_out_of_berths_log() {
    let root = TestRoot::new("secretlog").await;
    root.write_template("dump-v1", DUMP_TEMPLATE);
    let alice = add_user(&root, "alice", false).await;
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    root.write_manifest("alice", "dump", "template = \"dump-v1\"\n");
    root.wait_running("alice", "dump", T).await;
    let set = json!({ "value": PLAIN });
    let path = "/apps/alice/dump/secrets/TOKEN";
    api.call(reqwest::Method::PUT, path, &alice, Some(set))
        .await
        .expect(200);
    wait_until(T, "dump to run with its secret", || async {
        root.running("alice", "dump").await
            && env_and_rest(&root, "dump")
                .await
                .0
                .contains(&format!("TOKEN={PLAIN}"))
    })
    .await;
    // The next version prints its environment (the secret with it) and exits.
    let text = std::fs::read_to_string(root.manifest_path("alice", "dump")).unwrap();
    root.write_manifest("alice", "dump", &format!("{text}[env]\nMODE = \"exit\"\n"));
    wait_until(T, "the rollout to fail", || async {
        let v = api.get("/apps/alice/dump", &alice).await.json();
        v["phase"] == "rollout-failed"
    })
    .await;
    let v = api.get("/apps/alice/dump", &alice).await.json();
    let error = v["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("env-dumped") && error.contains("MODE=exit"),
        "the user's status keeps the tail: {error}"
    );
    assert!(
        !error.contains(PLAIN),
        "the status holds the secret: {error}"
    );
    assert!(error.contains("TOKEN=<redacted>"), "{error}");
    let log = serve.log();
    assert!(
        log.contains("rollout: rolled back"),
        "the rollback is logged: {log}"
    );
    assert!(!log.contains(PLAIN), "berth's log holds the secret:\n{log}");
    assert!(
        !log.contains("env-dumped"),
        "berth's log holds the container's output:\n{log}"
    );
    let status = root.berth(&["status"]).await.text();
    assert!(!status.contains(PLAIN), "{status}");
    serve.assert_alive();
}

#[tokio::test]
async fn a_rotation_does_not_finish_past_a_user_directory_it_cannot_read() {
    let root = TestRoot::new("secretfrozen").await;
    root.write_manifest("alice", "web", MINIMAL);
    root.berth(&["secrets", "recipient"]).await.expect_code(0);
    // Values in a directory the scan does not follow may be sealed to the old key too.
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.path().join("state/apps/mallory")).unwrap();
    let key = root.path().join("berth.key");
    let old_key = std::fs::read_to_string(&key).unwrap();

    let run = root.berth(&["secrets", "rotate"]).await;
    run.expect_code(1)
        .expect_contains("not re-encrypted: user mallory");
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        old_key,
        "the old key was replaced past a directory that was not read"
    );

    // Beside a `serve` whose socket is gone, an offline rotation is refused.
    std::fs::remove_file(root.path().join("state/apps/mallory")).unwrap();
    let mut serve = Serve::start(&root);
    serve.api_base();
    std::fs::remove_file(root.path().join("berth.redb.sock")).unwrap();
    let beside = root.berth(&["secrets", "rotate"]).await;
    beside
        .expect_contains("berth.lock")
        .expect_contains("berth serve");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), old_key);
    serve.assert_alive();
}

/// Values set through the API while rotations run beside them: each is sealed under the lock
/// the rotation holds, so none is sealed to a key a rotation then deletes. Each value gets a
/// name of its own (an overwritten one would hide a broken one), and every one opens with the
/// key left at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_set_during_rotations_all_open_with_the_key_left() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const WRITERS: usize = 4;
    const EACH: usize = 15; // 60 names: a manifest holds at most 64 secrets
    let root = TestRoot::new("secretrace").await;
    let admin = add_user(&root, "root", true).await;
    let alice = add_user(&root, "alice", false).await;
    let mut serve = Serve::start(&root);
    let api = Api::new(serve.api_base());
    api.create_app(&alice, "web", "bb-v1").await.expect(201);
    // Stopped: the values change often, and no container needs recreating for the race.
    api.post("/apps/alice/web/stop", &alice, None)
        .await
        .expect(200);
    let set = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (api, alice, set) = (Api::new(serve.api_base()), alice.clone(), set.clone());
            tokio::spawn(async move {
                for n in 0..EACH {
                    let path = format!("/apps/alice/web/secrets/TOKEN_{w}_{n}");
                    let body = json!({ "value": format!("{w}-{n}") });
                    let r = api
                        .call(reqwest::Method::PUT, &path, &alice, Some(body))
                        .await;
                    assert_eq!(r.status, 200, "{}", r.text);
                    set.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut rotations = 0;
    while set.load(Ordering::Relaxed) < WRITERS * EACH {
        // Each rotation starts while the writers are setting values.
        let before = set.load(Ordering::Relaxed);
        wait_until(T, "a value set since the last rotation", || async {
            let now = set.load(Ordering::Relaxed);
            now > before || now == WRITERS * EACH
        })
        .await;
        let r = api.post("/secrets/rotate", &admin, None).await;
        r.expect(200);
        assert_eq!(r.json()["finished"], true, "{}", r.text);
        rotations += 1;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        rotations >= 3,
        "only {rotations} rotations ran beside the writes"
    );
    let listed = api.get("/apps/alice/web/secrets", &alice).await.json();
    let secrets = listed["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), WRITERS * EACH, "{listed}");
    let broken: Vec<_> = secrets
        .iter()
        .filter(|s| !s["fingerprint"].is_string())
        .collect();
    assert!(
        broken.is_empty(),
        "values set during {rotations} rotations no longer open: {broken:?}"
    );
    println!("{} values set during {rotations} rotations", WRITERS * EACH);
    serve.assert_alive();
}
