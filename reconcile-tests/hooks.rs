//! Template hooks: the environment and working directory they get (and that a workspace a
//! pre-create hook makes can be mounted), which hook runs for create / recreate / delete, and
//! a failing hook failing only its own app.

use std::path::{Path, PathBuf};

use crate::support::{mentions_exit_code, TestRoot, BB_TEMPLATE, MINIMAL};

/// Records the hook's environment and cwd into the workspace it creates.
const RECORD_ENV: &str = r#"#!/bin/sh
set -e
mkdir -p "$BERTH_APP_DIR"
{
  echo "userid=$BERTH_USERID"
  echo "appname=$BERTH_APPNAME"
  echo "template_dir=$BERTH_TEMPLATE_DIR"
  echo "app_dir=$BERTH_APP_DIR"
  echo "shared_dir=$BERTH_SHARED_DIR"
  echo "cwd=$(pwd -P)"
} > "$BERTH_APP_DIR/hook-env"
echo hello-from-hook > "$BERTH_APP_DIR/marker"
"#;

fn canonical(p: &str) -> PathBuf {
    Path::new(p)
        .canonicalize()
        .unwrap_or_else(|e| panic!("hook saw path {p:?} that does not exist: {e}"))
}

#[tokio::test]
async fn pre_create_hook_gets_app_env_and_template_cwd_and_its_workspace_is_mounted() {
    let root = TestRoot::new("hookenv").await;
    let template =
        format!("{BB_TEMPLATE}\n[[mounts]]\nsource = \"{{app_dir}}\"\ntarget = \"/app\"\n");
    root.write_template("bb-hook", &template);
    root.write_hook("bb-hook", "pre-create", RECORD_ENV);
    root.write_manifest("alice", "web", "template = \"bb-hook\"\n");

    root.berth(&["apply"]).await.expect_code(0);
    let app_dir = root.app_dir("alice", "web");
    let recorded = std::fs::read_to_string(app_dir.join("hook-env"))
        .expect("pre-create ran and wrote apps/alice/web/hook-env");
    let get = |k: &str| -> String {
        recorded
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in {recorded}"))
            .to_string()
    };
    assert_eq!(get("userid"), "alice");
    assert_eq!(get("appname"), "web");
    let tdir = root.template_dir("bb-hook").canonicalize().unwrap();
    assert_eq!(canonical(&get("template_dir")), tdir);
    assert_eq!(
        canonical(&get("cwd")),
        tdir,
        "hooks run in the template dir"
    );
    assert_eq!(canonical(&get("app_dir")), app_dir.canonicalize().unwrap());
    let shared = root.path().join("shared").canonicalize().unwrap();
    let seen_shared = Path::new(&get("shared_dir")).to_path_buf();
    let seen_shared = seen_shared.canonicalize().unwrap_or(seen_shared);
    assert!(
        seen_shared.starts_with(&shared),
        "BERTH_SHARED_DIR {seen_shared:?} is under {shared:?}"
    );

    let c = root.container("alice", "web").await.expect("created");
    let mounts = c.mounts.unwrap_or_default();
    let m = mounts
        .iter()
        .find(|m| m.destination.as_deref() == Some("/app"))
        .unwrap_or_else(|| panic!("no /app mount: {mounts:?}"));
    assert_eq!(
        m.source.as_deref().map(canonical),
        Some(app_dir.canonicalize().unwrap())
    );
    let out = crate::support::docker::docker_cli(&[
        "exec",
        &root.container_name("alice", "web"),
        "cat",
        "/app/marker",
    ]);
    assert_eq!(out.trim(), "hello-from-hook");
}

#[tokio::test]
async fn pre_deploy_runs_on_recreate_and_pre_delete_on_removal() {
    let root = TestRoot::new("hookseq").await;
    root.write_template("bb-seq", BB_TEMPLATE);
    for hook in ["pre-create", "pre-deploy", "pre-delete"] {
        root.write_hook(
            "bb-seq",
            hook,
            &format!(
                "#!/bin/sh\necho \"{hook} $BERTH_USERID/$BERTH_APPNAME\" >> \"$BERTH_TEMPLATE_DIR/calls.log\"\n"
            ),
        );
    }
    let calls = || {
        std::fs::read_to_string(root.template_dir("bb-seq").join("calls.log")).unwrap_or_default()
    };

    root.write_manifest("alice", "web", "template = \"bb-seq\"\n");
    root.berth(&["apply"]).await.expect_code(0);
    assert_eq!(calls(), "pre-create alice/web\n");

    root.berth(&["apply"]).await.expect_code(0);
    assert_eq!(
        calls(),
        "pre-create alice/web\n",
        "a converged app runs no hook"
    );

    root.write_manifest("alice", "web", "template = \"bb-seq\"\n[env]\nX = \"1\"\n");
    root.berth(&["apply"]).await.expect_code(0);
    assert_eq!(calls(), "pre-create alice/web\npre-deploy alice/web\n");

    root.remove_manifest("alice", "web");
    root.berth(&["apply"]).await.expect_code(0);
    assert_eq!(
        calls(),
        "pre-create alice/web\npre-deploy alice/web\npre-delete alice/web\n"
    );
    assert!(root.container("alice", "web").await.is_none());
}

#[tokio::test]
async fn failing_pre_create_hook_fails_only_its_app() {
    let root = TestRoot::new("hookfail").await;
    root.write_template("bb-fail", BB_TEMPLATE);
    root.write_hook(
        "bb-fail",
        "pre-create",
        "#!/bin/sh\necho 'refusing on purpose' >&2\nexit 3\n",
    );
    root.write_manifest("alice", "good", MINIMAL);
    root.write_manifest("alice", "doomed", "template = \"bb-fail\"\n");

    let run = root.berth(&["apply"]).await;
    run.expect_code(1);
    assert!(run.contains("doomed"), "the failing app is named\n{run}");
    assert!(
        mentions_exit_code(&run.text(), 3),
        "exit code 3 is reported\n{run}"
    );
    assert!(
        root.running("alice", "good").await,
        "alice/good converged\n{run}"
    );
    assert!(
        root.container("alice", "doomed").await.is_none(),
        "no container after a failed pre-create"
    );
}

/// A hook that double-forks: a `setsid` child (a session and process group of its own) starts
/// a long `sleep` and exits, orphaning it; the orphan's pid goes to `<orphan>`, the hook's own
/// to `<hook>` (both written whole, by rename). Then the hook sleeps for good.
fn double_forking_hook(orphan: &Path, hook: &Path) -> String {
    format!(
        r#"#!/bin/sh
setsid sh -c 'sleep 3000 & echo $! > "$0.tmp" && mv "$0.tmp" "$0"' '{o}' &
while [ ! -e '{o}' ]; do sleep 0.01; done
echo $$ > '{h}.tmp' && mv '{h}.tmp' '{h}'
exec sleep 3000
"#,
        o = orphan.display(),
        h = hook.display()
    )
}

fn read_pid(file: &Path) -> i32 {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .parse()
        .unwrap()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists (a zombie counts as alive).
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Kills what a failing test left (so a red run does not leave sleeps on the machine).
struct KillOnDrop(Vec<PathBuf>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for f in &self.0 {
            if let Some(pid) = std::fs::read_to_string(f)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
            {
                // SAFETY: a process this test's hook started, if it still runs.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// A root whose app alice/web has a `pre-create` hook that double-forks an orphan; the files
/// the hook and the orphan write their pids to; and a guard killing both when the test ends.
async fn forking_root(prefix: &str) -> (TestRoot, PathBuf, PathBuf, KillOnDrop) {
    let root = TestRoot::new(prefix).await;
    let (orphan, hook) = (root.path().join("orphan.pid"), root.path().join("hook.pid"));
    let cleanup = KillOnDrop(vec![orphan.clone(), hook.clone()]);
    root.write_template("bb-fork", BB_TEMPLATE);
    let script = double_forking_hook(&orphan, &hook);
    root.write_hook("bb-fork", "pre-create", &script);
    root.write_manifest("alice", "web", "template = \"bb-fork\"\n");
    (root, orphan, hook, cleanup)
}

#[tokio::test]
async fn nothing_a_double_forking_hook_started_outlives_its_timeout() {
    let (root, orphan, hook, _cleanup) = forking_root("hookfork").await;
    root.config(&[("hook_timeout", "\"2s\"")], "");

    // `berth apply` with no serve: it returns only after the hook's run is over.
    let run = root.berth(&["apply"]).await;
    run.expect_code(1);
    assert!(run.contains("timed out"), "the hook timed out\n{run}");
    let (orphan_pid, hook_pid) = (read_pid(&orphan), read_pid(&hook));
    assert!(!alive(hook_pid), "the timed-out hook {hook_pid} still runs");
    assert!(
        !alive(orphan_pid),
        "the hook's double-forked child {orphan_pid} outlived the hook's timeout"
    );
}

/// serve SIGKILLed in the middle of a hook: the hook's shim sees berth go and kills the tree.
/// serve SIGTERMed: it waits for the changes in flight (the hook, until its timeout), and
/// nothing the hook started is left once it has exited.
#[tokio::test]
async fn nothing_a_double_forking_hook_started_outlives_serve() {
    let (root, orphan, hook, _cleanup) = forking_root("hookdie").await;
    let t = std::time::Duration::from_secs(30);

    for (how, hook_timeout) in [("SIGKILL", "600s"), ("SIGTERM", "3s")] {
        root.config(&[("hook_timeout", &format!("\"{hook_timeout}\""))], "");
        let _ = std::fs::remove_file(&orphan);
        let _ = std::fs::remove_file(&hook);
        let mut serve = crate::support::Serve::start(&root);
        crate::support::wait_until(t, "the hook to start its orphan", || async {
            hook.exists()
        })
        .await;
        let (orphan_pid, hook_pid) = (read_pid(&orphan), read_pid(&hook));
        if how == "SIGKILL" {
            serve.kill();
            crate::support::wait_until(t, "the hook's tree to die with serve", || async {
                !alive(orphan_pid) && !alive(hook_pid)
            })
            .await;
        } else {
            let (status, in_time) = serve.stop(t);
            assert!(in_time, "serve exits on SIGTERM after its hook: {status}");
            assert!(!alive(hook_pid), "the hook {hook_pid} outlived serve");
            assert!(
                !alive(orphan_pid),
                "the hook's double-forked child {orphan_pid} outlived serve"
            );
        }
    }
}

/// The parent of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A SIGTERM to the hook's shim alone (as an operator or a service manager might send it):
/// the shim kills the hook's whole tree before it exits, so once serve has reaped it nothing
/// the hook started is left.
#[tokio::test]
async fn a_sigterm_to_a_hooks_shim_leaves_no_process_of_the_hook() {
    let (root, orphan, hook, _cleanup) = forking_root("hookterm").await;
    let t = std::time::Duration::from_secs(30);
    root.config(&[("hook_timeout", "\"600s\"")], "");
    let mut serve = crate::support::Serve::start(&root);
    crate::support::wait_until(t, "the hook to start its orphan", || async {
        hook.exists()
    })
    .await;
    let (orphan_pid, hook_pid) = (read_pid(&orphan), read_pid(&hook));
    let shim = parent_of(hook_pid);
    let comm = std::fs::read_to_string(format!("/proc/{shim}/cmdline")).unwrap();
    assert!(
        comm.contains("__hook-shim"),
        "the hook's parent is its shim: {comm:?}"
    );
    // SAFETY: the shim serve started for this test's hook.
    assert_eq!(unsafe { libc::kill(shim, libc::SIGTERM) }, 0);
    crate::support::wait_until(t, "serve to reap the shim", || async { !alive(shim) }).await;
    assert!(!alive(hook_pid), "the hook {hook_pid} outlived its shim");
    assert!(
        !alive(orphan_pid),
        "the hook's double-forked child {orphan_pid} outlived its shim"
    );
    serve.assert_alive();
}

/// A running app whose mounted workspace was moved away: a deploy changes nothing (the running
/// container keeps serving), says which directory is missing, and goes ahead once it is back.
/// The pre-create hook (which made the workspace) is not run again over the user's files.
#[tokio::test]
async fn a_deploy_over_a_missing_workspace_changes_nothing_and_names_it() {
    let root = TestRoot::new("wsgone").await;
    let template =
        format!("{BB_TEMPLATE}\n[[mounts]]\nsource = \"{{app_dir}}\"\ntarget = \"/app\"\n");
    root.write_template("bb-ws", &template);
    root.write_hook("bb-ws", "pre-create", RECORD_ENV);
    root.write_manifest("alice", "web", "template = \"bb-ws\"\n");
    root.berth(&["apply"]).await.expect_code(0);
    let before = root.container("alice", "web").await.expect("created");

    let ws = root.app_dir("alice", "web");
    let moved = ws.with_file_name("web.moved");
    std::fs::rename(&ws, &moved).unwrap();
    root.write_manifest("alice", "web", "template = \"bb-ws\"\n[env]\nX = \"1\"\n");
    let run = root.berth(&["apply"]).await;
    run.expect_code(1);
    assert!(
        run.contains(&format!("workspace {} is missing", ws.display())),
        "the missing workspace is named\n{run}"
    );
    let still = root.container("alice", "web").await.expect("kept");
    assert_eq!(still.id, before.id, "the running container was replaced");
    assert!(
        root.running("alice", "web").await,
        "the old container stopped\n{run}"
    );
    assert!(
        !ws.exists(),
        "a fresh workspace was made over the moved one"
    );

    std::fs::rename(&moved, &ws).unwrap();
    root.berth(&["apply"]).await.expect_code(0);
    let after = root.container("alice", "web").await.expect("recreated");
    assert_ne!(after.id, before.id, "deployed once the workspace is back");
    let out = crate::support::docker::docker_cli(&[
        "exec",
        &root.container_name("alice", "web"),
        "cat",
        "/app/marker",
    ]);
    assert_eq!(
        out.trim(),
        "hello-from-hook",
        "the user's files are mounted"
    );
}
