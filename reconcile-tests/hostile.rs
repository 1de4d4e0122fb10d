//! Hostile input at the binary level: bad names in a manifest's path, a symlinked manifest and
//! a non-UTF-8 file are rejected by `validate` (and `apply`) naming the file, without creating
//! anything for them; editor leftovers and non-manifest files under `state/` are ignored.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use crate::support::{TestRoot, MINIMAL};

/// Writes `rel` (under the root) with `bytes`, creating parents.
fn write_raw(root: &TestRoot, rel: &str, bytes: &[u8]) {
    let path = root.path().join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// `berth --root R validate <R/rel>`: must fail and name the file.
async fn validate_rejects(root: &TestRoot, rel: &str, name_in_output: &str) {
    let path = root.path().join(rel);
    let args: Vec<OsString> = vec![
        "--root".into(),
        root.path().into(),
        "validate".into(),
        path.into(),
    ];
    let run = crate::support::run_berth(args).await;
    assert!(
        run.code.is_some_and(|c| c != 0),
        "validate {rel} must fail\n{run}"
    );
    assert!(
        run.contains(name_in_output),
        "validate names {name_in_output}\n{run}"
    );
}

#[tokio::test]
async fn validate_rejects_bad_names_in_the_path() {
    let root = TestRoot::new("badname").await;
    // (file, how validate of that file names it, how a whole-tree scan names it: a bad
    // user directory may be reported as the directory).
    let cases = [
        (
            "state/apps/Alice/x.toml",
            "Alice/x.toml",
            "state/apps/Alice",
        ),
        (
            "state/apps/alice/Web.toml",
            "alice/Web.toml",
            "alice/Web.toml",
        ),
        (
            "state/apps/alice/we.b.toml",
            "alice/we.b.toml",
            "alice/we.b.toml",
        ),
        (
            "state/apps/al-ice/web.toml",
            "al-ice/web.toml",
            "state/apps/al-ice",
        ),
        (
            "state/apps/alice/-web.toml",
            "alice/-web.toml",
            "alice/-web.toml",
        ),
    ];
    for (rel, shown, _) in cases {
        write_raw(&root, rel, MINIMAL.as_bytes());
        validate_rejects(&root, rel, shown).await;
    }
    // The same files in the state dir: a whole-tree validate and apply name every one of
    // them and create nothing for them.
    let run = root.berth(&["validate"]).await;
    assert!(run.code.is_some_and(|c| c != 0), "validate fails\n{run}");
    let apply = root.berth(&["apply"]).await;
    apply.expect_code(1);
    for (_, _, shown) in cases {
        assert!(run.contains(shown), "validate names {shown}\n{run}");
        assert!(apply.contains(shown), "apply names {shown}\n{apply}");
    }
    assert!(
        root.instance_containers().await.is_empty(),
        "nothing created"
    );
}

#[tokio::test]
async fn validate_rejects_a_symlinked_manifest() {
    let root = TestRoot::new("symlink").await;
    write_raw(&root, "elsewhere/real.toml", MINIMAL.as_bytes());
    let link = root.manifest_path("alice", "link");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(root.path().join("elsewhere/real.toml"), &link).unwrap();

    validate_rejects(&root, "state/apps/alice/link.toml", "alice/link.toml").await;
    let run = root.berth(&["validate"]).await;
    assert!(run.code.is_some_and(|c| c != 0), "validate fails\n{run}");
    assert!(run.contains("alice/link.toml"), "names the symlink\n{run}");
    let apply = root.berth(&["apply"]).await;
    apply.expect_code(1).expect_contains("alice/link.toml");
    assert!(
        root.container("alice", "link").await.is_none(),
        "nothing created"
    );
}

#[tokio::test]
async fn validate_rejects_a_non_utf8_manifest() {
    let root = TestRoot::new("nonutf8").await;
    let mut bytes = b"template = \"bb-v1\"\n# caf".to_vec();
    bytes.extend_from_slice(&[0xe9, 0xff, 0xfe, b'\n']);
    write_raw(&root, "state/apps/alice/bin.toml", &bytes);

    validate_rejects(&root, "state/apps/alice/bin.toml", "alice/bin.toml").await;
    let apply = root.berth(&["apply"]).await;
    apply.expect_code(1).expect_contains("alice/bin.toml");
    assert!(
        root.container("alice", "bin").await.is_none(),
        "nothing created"
    );
}

#[tokio::test]
async fn editor_leftovers_and_non_manifests_under_state_are_ignored() {
    let root = TestRoot::new("ignored").await;
    root.write_manifest("alice", "web", MINIMAL);
    // Broken content everywhere: if any of these were read, validation would fail.
    let junk = b"this is = = not toml [[[";
    for rel in [
        "state/apps/alice/.web.toml.swp",
        "state/apps/alice/web.toml~",
        "state/apps/alice/notes.txt",
        "state/apps/alice/.hidden.toml",
        "state/README.md",
        "state/.git/config",
        "state/apps/README.md",
    ] {
        write_raw(&root, rel, junk);
    }
    root.berth(&["validate"]).await.expect_code(0);
    root.berth(&["apply"]).await.expect_code(0);
    assert!(root.running("alice", "web").await);
    assert_eq!(root.instance_containers().await.len(), 1, "only alice/web");
}

#[tokio::test]
async fn non_utf8_file_name_not_ending_in_toml_is_ignored() {
    let root = TestRoot::new("oddname").await;
    root.write_manifest("alice", "web", MINIMAL);
    // A backup file whose name is not valid UTF-8: it does not end in `.toml`, so it is not a
    // manifest (docs/reference/manifest.md) and must not fail validation.
    let odd = root
        .path()
        .join("state/apps/alice")
        .join(std::ffi::OsStr::from_bytes(b"web\xff\xfe.bak"));
    std::fs::write(odd, b"not toml [[[").unwrap();
    root.berth(&["validate"]).await.expect_code(0);
    root.berth(&["apply"]).await.expect_code(0);
    assert!(root.running("alice", "web").await);
}
