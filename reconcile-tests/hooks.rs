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
