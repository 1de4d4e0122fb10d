//! The CLI's own surface: `berth --version` names the commit the binary was built from.

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
