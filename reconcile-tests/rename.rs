//! Renames without loss (docs/guides/volumes-and-rename.md, `renamed_from`) on the real engine: through the API with
//! serve running, and through `berth mv` + `berth apply` without a daemon. The app keeps its
//! workspace, its volume's data (owners, modes, dot files), its client keys, its revisions and
//! its domain; the old name keeps nothing. And serve SIGKILLed at each step of the takeover
//! converges, after a restart, to exactly one of the two names with the data whole.

use std::time::Duration;

use reqwest::Method;

use crate::support::api::{Api, ApiRoot};
use crate::support::docker::docker_cli;
use crate::support::{wait_until, Serve, TestRoot};

const T: Duration = Duration::from_secs(40);

/// A template with a workspace mount (served on 8080, so a domain app's new container passes
/// its check) and a data volume; each boot appends to `/data/boots`.
const KEEP: &str = r#"image = "berth-test-busybox:1"
command = ["sh", "-c", "echo boot >> /data/boots; exec httpd -f -p 8080 -h /work"]
workdir = "/"
port = 8080

[[mounts]]
source = "{app_dir}"
target = "/work"

[[volumes]]
name = "data"
target = "/data"

[defaults]
memory = "32m"
cpus = 0.25
"#;

const MANIFEST: &str =
    "# alice's notes app\ntemplate = \"keep-v1\"\ndomain = \"notes.example.test\"\n";

fn volume(root: &TestRoot, app: &str) -> String {
    format!("berth-{}-alice-{app}.data", root.instance)
}

fn volume_exists(name: &str) -> bool {
    std::process::Command::new("docker")
        .args(["volume", "inspect", name])
        .output()
        .unwrap()
        .status
        .success()
}

/// Runs `script` in a throwaway container (default capabilities) with `volume` at /d.
fn in_volume(volume: &str, script: &str) -> String {
    let mount = format!("{volume}:/d");
    docker_cli(&[
        "run",
        "--rm",
        "-v",
        &mount,
        "berth-test-busybox:1",
        "sh",
        "-c",
        script,
    ])
}

/// The app `old` as the tests start it: running, with a workspace file and data in its
/// volume that only a copy keeping owners and modes (and dot files) carries over.
async fn start_app(root: &TestRoot, app: &str) {
    root.write_template("keep-v1", KEEP);
    let dir = root.app_dir("alice", app);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    root.write_manifest("alice", app, MANIFEST);
}

fn fill_volume(root: &TestRoot, app: &str) {
    in_volume(
        &volume(root, app),
        "echo precious > /d/v && echo hidden > /d/.dot && mkdir -p /d/sub && echo deep > /d/sub/f \
         && echo s > /d/secret && chown 1234:1234 /d/secret && chmod 600 /d/secret",
    );
}

/// What the volume of `app` holds, as one line per fact.
fn volume_facts(root: &TestRoot, app: &str) -> String {
    in_volume(
        &volume(root, app),
        "cat /d/v /d/.dot /d/sub/f /d/secret; stat -c '%u %a' /d/secret",
    )
}

const FACTS: &str = "precious\nhidden\ndeep\ns\n1234 600\n";

fn manifest(root: &TestRoot, app: &str) -> Option<String> {
    std::fs::read_to_string(root.manifest_path("alice", app)).ok()
}

/// Waits until `app` runs under its own name, `renamed_from` is gone from its manifest and
/// nothing of `old` is left (manifest, container, volume, workspace).
async fn wait_renamed(root: &TestRoot, old: &str, app: &str) {
    root.wait_running("alice", app, T).await;
    root.wait_gone("alice", old, T).await;
    wait_until(T, "renamed_from to be dropped", || async {
        manifest(root, app).is_some_and(|m| !m.contains("renamed_from"))
    })
    .await;
    assert!(manifest(root, old).is_none());
    assert!(!volume_exists(&volume(root, old)), "the old volume is gone");
    assert!(
        !root.app_dir("alice", old).exists(),
        "the old workspace moved"
    );
}

#[tokio::test]
async fn a_rename_through_the_api_keeps_workspace_data_secrets_keys_revisions_and_domain() {
    let r = ApiRoot::start("rename", &[]).await;
    start_app(&r.root, "notes").await;
    r.root.wait_running("alice", "notes", T).await;
    fill_volume(&r.root, "notes");
    let key = r.api.issue_key(&r.alice, "alice", "notes").await;
    let sealed = crate::secrets::encrypt(&r.root, ("alice/notes", "TOKEN"), "kept-across", None);
    let edited = format!("{MANIFEST}[env]\nEDITION = \"2\"\n[secrets]\n{sealed}\n");
    r.root.write_manifest("alice", "notes", &edited);
    wait_until(T, "the edited version to run", || async {
        let c = r.root.container("alice", "notes").await;
        let env = c.and_then(|c| c.config?.env).unwrap_or_default();
        env.iter().any(|e| e == "EDITION=2") && r.root.running("alice", "notes").await
    })
    .await;

    let body = serde_json::json!({"appname": "journal"});
    let renamed = r
        .api
        .post("/apps/alice/notes/rename", &r.alice, Some(body))
        .await;
    renamed.expect(202);
    assert_eq!(renamed.json()["renamed_from"], "notes");
    wait_renamed(&r.root, "notes", "journal").await;
    let resealed = manifest(&r.root, "journal").unwrap();
    assert!(
        !resealed.contains(&sealed),
        "the value sealed for alice/notes was not sealed again for alice/journal: {resealed}"
    );

    assert_eq!(volume_facts(&r.root, "journal"), FACTS);
    let boots = docker_cli(&[
        "exec",
        &r.root.container_name("alice", "journal"),
        "cat",
        "/data/boots",
    ]);
    assert_eq!(
        boots, "boot\nboot\nboot\n",
        "three boots, one volume: {boots}"
    );
    let notes = r.root.app_dir("alice", "journal").join("notes.txt");
    assert_eq!(std::fs::read_to_string(notes).unwrap(), "mine");
    let text = manifest(&r.root, "journal").unwrap();
    assert!(
        text.starts_with("# alice's notes app\n"),
        "the author's text stays: {text}"
    );
    let c = r.root.container("alice", "journal").await.unwrap();
    let env = c
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    assert!(
        env.iter().any(|e| e == "TOKEN=kept-across"),
        "the secret reaches the renamed app"
    );
    let labels = c.config.unwrap().labels.unwrap();
    assert_eq!(labels["paas.domain"], "notes.example.test");

    let bridge = r
        .api
        .bridge(Method::GET, "/bridge/apps/alice/journal", Some(&key))
        .await;
    bridge.expect(200);
    let old = r
        .api
        .bridge(Method::GET, "/bridge/apps/alice/notes", Some(&key))
        .await;
    assert_ne!(old.status, 200, "the key is scoped to the new name only");
    let revs = r.api.get("/apps/alice/journal/revisions", &r.alice).await;
    let texts: Vec<String> = revs.json()["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(texts.len() >= 3, "{texts:?}");
    assert_eq!(
        texts[0], MANIFEST,
        "the history starts with the old name's first version"
    );
}

#[tokio::test]
async fn a_rename_is_refused_with_a_reason_and_nothing_moves() {
    let r = ApiRoot::start("renameno", &[]).await;
    start_app(&r.root, "notes").await;
    r.root.wait_running("alice", "notes", T).await;
    r.root
        .write_manifest("alice", "taken", "template = \"bb-v1\"\n");
    let cases = [
        (
            "/apps/alice/notes/rename",
            serde_json::json!({"appname": "taken"}),
            409,
        ),
        (
            "/apps/alice/notes/rename",
            serde_json::json!({"appname": "Bad/Name"}),
            400,
        ),
        (
            "/apps/alice/notes/rename",
            serde_json::json!({"appname": "notes"}),
            422,
        ),
        (
            "/apps/alice/notes/rename",
            serde_json::json!({"name": "x"}),
            422,
        ),
        (
            "/apps/alice/ghost/rename",
            serde_json::json!({"appname": "x"}),
            404,
        ),
    ];
    for (path, body, status) in cases {
        let resp = r.api.post(path, &r.alice, Some(body.clone())).await;
        assert_eq!(resp.status, status, "{path} {body}: {}", resp.text);
        assert!(resp.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let bobs = r
        .api
        .post(
            "/apps/alice/notes/rename",
            &r.bob,
            Some(serde_json::json!({"appname": "x"})),
        )
        .await;
    bobs.expect(403);
    // A leftover workspace of an earlier app of that name is never mixed in.
    std::fs::create_dir_all(r.root.app_dir("alice", "old-one")).unwrap();
    let body = serde_json::json!({"appname": "old-one"});
    let resp = r
        .api
        .post("/apps/alice/notes/rename", &r.alice, Some(body))
        .await;
    resp.expect(409);
    assert!(
        resp.text.contains("apps/alice/old-one exists"),
        "{}",
        resp.text
    );
    assert_eq!(manifest(&r.root, "notes").as_deref(), Some(MANIFEST));
    assert!(r.root.running("alice", "notes").await);
}

#[tokio::test]
async fn berth_mv_without_a_daemon_renames_on_the_next_apply() {
    let root = TestRoot::new("renamemv").await;
    start_app(&root, "notes").await;
    root.berth(&["apply"]).await.expect_code(0);
    fill_volume(&root, "notes");
    root.berth(&["mv", "alice/notes", "journal"])
        .await
        .expect_code(0)
        .expect_contains("renamed alice/notes to alice/journal");
    let text = manifest(&root, "journal").unwrap();
    assert!(text.starts_with("renamed_from = \"notes\"\n"), "{text}");
    let plan = root.berth(&["plan"]).await;
    plan.expect_contains("rename from notes");
    root.berth(&["apply"]).await.expect_code(0);
    root.berth(&["apply"]).await.expect_code(0);
    wait_renamed(&root, "notes", "journal").await;
    assert_eq!(volume_facts(&root, "journal"), FACTS);
    root.berth(&["mv", "alice/journal", "journal"])
        .await
        .expect_code(1);
    root.berth(&["mv", "alice/ghost", "x"])
        .await
        .expect_code(1)
        .expect_contains("does not exist");
}

/// Renames `from` to `to` with serve running, SIGKILLs serve once `step` says so, starts it
/// again, and checks the rename finished whole.
async fn killed_at(r: &mut ApiRoot, from: &str, to: &str, step: &str) {
    let body = serde_json::json!({"appname": to});
    r.api
        .post(&format!("/apps/alice/{from}/rename"), &r.alice, Some(body))
        .await
        .expect(202);
    let job = format!("berth-{}-rename-alice-{to}-data", r.root.instance);
    match step {
        "at-once" => {}
        "during-copy" => {
            wait_until(T, "the copy job", || async {
                docker_cli(&["ps", "-a", "-q", "--filter", &format!("name={job}")]).trim() != ""
            })
            .await;
        }
        "old-gone" => {
            r.root.wait_gone("alice", from, T).await;
        }
        other => panic!("no step {other}"),
    }
    r.serve.kill();
    r.serve = Serve::start(&r.root);
    r.api = Api::new(r.serve.api_base());
    wait_renamed(&r.root, from, to).await;
    assert_eq!(volume_facts(&r.root, to), FACTS, "killed {step}");
    let big = in_volume(&volume(&r.root, to), "stat -c %s /d/big");
    assert_eq!(
        big.trim(),
        (64 << 20).to_string(),
        "the big file whole (killed {step})"
    );
    let notes = r.root.app_dir("alice", to).join("notes.txt");
    assert_eq!(
        std::fs::read_to_string(notes).unwrap(),
        "mine",
        "killed {step}"
    );
    let apps: Vec<String> = r
        .root
        .instance_containers()
        .await
        .iter()
        .filter_map(|c| c.labels.as_ref()?.get("paas.appname").cloned())
        .collect();
    assert_eq!(
        apps,
        [to.to_string()],
        "exactly one container, the new name's (killed {step})"
    );
}

#[tokio::test]
async fn serve_killed_at_each_step_of_a_rename_converges_to_one_name_with_the_data() {
    let mut r = ApiRoot::start("renamekill", &[]).await;
    start_app(&r.root, "a").await;
    r.root.wait_running("alice", "a", T).await;
    fill_volume(&r.root, "a");
    // Enough bytes that the copy is still running when the test sees its container.
    in_volume(
        &volume(&r.root, "a"),
        "dd if=/dev/zero of=/d/big bs=1M count=64 2>/dev/null",
    );
    killed_at(&mut r, "a", "b", "during-copy").await;
    killed_at(&mut r, "b", "c", "at-once").await;
    killed_at(&mut r, "c", "d", "old-gone").await;
}

#[tokio::test]
async fn in_git_mode_a_rename_is_one_commit_and_its_finish_another() {
    let g = crate::support::git::GitRoot::start("renamegit", "1h", |_| {}).await;
    g.api.create_app(&g.alice, "web", "bb-v1").await.expect(201);
    g.root.wait_running("alice", "web", T).await;
    let body = serde_json::json!({"appname": "site"});
    g.api
        .post("/apps/alice/web/rename", &g.alice, Some(body))
        .await
        .expect(202);
    g.root.wait_running("alice", "site", T).await;
    g.root.wait_gone("alice", "web", T).await;
    wait_until(T, "both commits on the remote", || async {
        g.remote.log().starts_with(
            "berth|berth: finish the rename of alice/web to site\nalice|berth api: rename alice/web to site (by alice)",
        )
    })
    .await;
    let clone = g.root.path().join("state");
    let git = |args: &[&str]| crate::support::git::git(&clone, args);
    assert_eq!(git(&["status", "--porcelain"]), "", "the clone is clean");
    let tree = git(&["ls-tree", "-r", "--name-only", "HEAD", "apps/alice"]);
    assert_eq!(tree.trim(), "apps/alice/site.toml", "{tree}");
    let text = git(&["show", "HEAD:apps/alice/site.toml"]);
    assert!(!text.contains("renamed_from"), "{text}");
    let renamed = git(&["show", "HEAD~1:apps/alice/site.toml"]);
    assert!(renamed.starts_with("renamed_from = \"web\"\n"), "{renamed}");
}
