//! The CLI's own surface: `berth --version` names the commit the binary was built from, and
//! `berth init` makes a root whose first app plans, and never overwrites one.

use crate::support::run_berth;

#[tokio::test]
async fn version_names_the_commit_it_was_built_from() {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git rev-parse");
    let head = String::from_utf8(head.stdout).unwrap();
    let run = run_berth(vec!["--version".into()]).await;
    run.expect_code(0);
    let shown = run.stdout.trim();
    let commit = shown
        .strip_prefix(concat!("berth ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {shown}"));
    assert!(
        commit.len() >= 12 && head.starts_with(commit),
        "--version names {commit}, HEAD is {head}"
    );
}

#[tokio::test]
async fn init_makes_a_root_whose_first_app_plans_and_refuses_a_second_init() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let made = run_berth(vec!["init".into(), root.clone().into()]).await;
    made.expect_code(0).expect_contains("next: berth --root");
    let at = |args: &[&str]| {
        let mut all: Vec<std::ffi::OsString> = vec!["--root".into(), root.clone().into()];
        all.extend(args.iter().map(Into::into));
        run_berth(all)
    };
    at(&["validate"]).await.expect_code(0);
    let plan = at(&["plan", "--exit-code"]).await;
    plan.expect_code(2).expect_contains("demo/hello");
    let again = run_berth(vec!["init".into(), root.clone().into()]).await;
    again.expect_code(1).expect_contains("berth.toml exists");
}
