//! Workspace files: the path rules, etag-checked atomic writes, and links planted anywhere on
//! a path (to a directory outside, to another user's workspace) that are never followed.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    files: WorkspaceFiles,
}

impl Fixture {
    /// `apps/alice/web` and `apps/bob/api` exist, with `outside/secret` beside `apps`.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for ws in ["apps/alice/web", "apps/bob/api", "outside"] {
            std::fs::create_dir_all(dir.path().join(ws)).unwrap();
        }
        std::fs::write(dir.path().join("outside/secret"), "root:x:0:0").unwrap();
        std::fs::write(dir.path().join("apps/bob/api/server.js"), "bob's").unwrap();
        let files = WorkspaceFiles::new(dir.path().join("apps"));
        Fixture { dir, files }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    fn ws(&self) -> std::path::PathBuf {
        self.path("apps/alice/web")
    }

    /// Every file under the fixture with its bytes.
    fn snapshot(&self, under: &str) -> Vec<(String, Vec<u8>)> {
        fn walk(p: &Path, out: &mut Vec<(String, Vec<u8>)>) {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                let ft = e.file_type().unwrap();
                if ft.is_dir() {
                    walk(&e.path(), out);
                } else if ft.is_file() {
                    out.push((
                        e.path().display().to_string(),
                        std::fs::read(e.path()).unwrap(),
                    ));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.path(under), &mut out);
        out.sort();
        out
    }
}

fn alice() -> AppKey {
    AppKey::new("alice", "web").unwrap()
}

fn p(raw: &str) -> FilePath {
    FilePath::parse(raw).unwrap()
}

#[test]
fn path_rules_name_the_rule() {
    let long = "a".repeat(256);
    let deep = vec!["d"; MAX_DEPTH + 1].join("/");
    let huge = "a/".repeat(600);
    for (raw, rule) in [
        ("", "empty path"),
        ("../x", "'..' is not allowed"),
        ("a/../../x", "'..' is not allowed"),
        ("./x", "'.' is not allowed"),
        ("/etc/passwd", "absolute"),
        ("a//b", "empty components"),
        ("a/", "empty components"),
        ("a\0b", "NUL"),
        ("..\\x", "'\\'"),
        ("a\nb", "control"),
        (long.as_str(), "255 bytes"),
        (deep.as_str(), "levels deep"),
        (huge.as_str(), "1024 bytes"),
        ("node_modules/ms/index.js", "node_modules"),
        ("a/.berth-tmp-1", ".berth-"),
    ] {
        match FilePath::parse(raw) {
            Err(e @ FileError::InvalidPath { .. }) => {
                let text = e.to_string();
                assert!(text.contains(rule), "{raw:?}: {text}");
                assert!(text.starts_with("files/"), "{raw:?}: {text}");
            }
            other => panic!("{raw:?}: {other:?}"),
        }
    }
    assert_eq!(
        FilePath::parse("../x").unwrap_err().to_string(),
        "files/../x: '..' is not allowed"
    );
    for ok in [
        "server.js",
        ".env",
        "src/a b/ü.js",
        "a..b",
        "...",
        "x/y/z.txt",
    ] {
        assert_eq!(p(ok).as_str(), ok);
    }
}

#[test]
fn create_read_replace_with_etags() {
    let f = Fixture::new();
    let k = alice();
    let w = f
        .files
        .write(&k, &p("server.js"), b"v1", &Precondition::Absent)
        .unwrap();
    assert!(w.created);
    assert_eq!(w.etag, etag(b"v1"));
    let c = f.files.read(&k, &p("server.js")).unwrap();
    assert_eq!(
        (c.bytes.as_slice(), c.etag.as_str()),
        (&b"v1"[..], w.etag.as_str())
    );

    let again = f
        .files
        .write(&k, &p("server.js"), b"x", &Precondition::Absent);
    assert!(matches!(again, Err(FileError::Exists { ref current, .. }) if *current == w.etag));
    let stale = Precondition::Matches(etag(b"old"));
    let refused = f.files.write(&k, &p("server.js"), b"x", &stale);
    assert!(
        matches!(
            refused,
            Err(FileError::Stale {
                current: Some(_),
                ..
            })
        ),
        "{refused:?}"
    );
    let w2 = f
        .files
        .write(&k, &p("server.js"), b"v2", &Precondition::Matches(w.etag))
        .unwrap();
    assert!(!w2.created);
    assert_eq!(std::fs::read(f.ws().join("server.js")).unwrap(), b"v2");
    let missing = f.files.write(
        &k,
        &p("nope.js"),
        b"x",
        &Precondition::Matches(w2.etag.clone()),
    );
    assert!(
        matches!(missing, Err(FileError::Stale { current: None, .. })),
        "{missing:?}"
    );
    let names: Vec<_> = std::fs::read_dir(f.ws())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["server.js"], "no temp file is left");
}

#[test]
fn new_directories_and_files_get_workspace_modes_and_refusals_leave_nothing() {
    let f = Fixture::new();
    let k = alice();
    let pre = Precondition::Matches("x".into());
    assert!(f.files.write(&k, &p("a/b/c.js"), b"x", &pre).is_err());
    assert!(
        !f.ws().join("a").exists(),
        "a refused write makes no directory"
    );
    f.files
        .write(&k, &p("a/b/c.js"), b"x", &Precondition::Absent)
        .unwrap();
    let mode = |rel: &str| {
        std::fs::metadata(f.ws().join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(
        (mode("a"), mode("a/b"), mode("a/b/c.js")),
        (0o755, 0o755, 0o644)
    );

    std::fs::write(f.ws().join("run.sh"), "#!/bin/sh").unwrap();
    std::fs::set_permissions(
        f.ws().join("run.sh"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let e = etag(b"#!/bin/sh");
    f.files
        .write(&k, &p("run.sh"), b"#!/bin/sh\n", &Precondition::Matches(e))
        .unwrap();
    assert_eq!(
        mode("run.sh"),
        0o755,
        "exec bits kept, group/other write dropped"
    );
}

#[test]
fn a_link_to_a_file_outside_is_neither_read_nor_written_through() {
    let f = Fixture::new();
    let k = alice();
    symlink(f.path("outside/secret"), f.ws().join("passwd")).unwrap();
    let before = f.snapshot("outside");
    let read = f.files.read(&k, &p("passwd"));
    assert!(
        matches!(read, Err(FileError::Symlink { ref link, .. }) if link == "passwd"),
        "{read:?}"
    );
    for pre in [
        Precondition::Absent,
        Precondition::Matches(etag(b"root:x:0:0")),
    ] {
        let w = f.files.write(&k, &p("passwd"), b"pwned", &pre);
        assert!(matches!(w, Err(FileError::Symlink { .. })), "{w:?}");
    }
    let d = f.files.delete(&k, &p("passwd"), &etag(b"root:x:0:0"));
    assert!(matches!(d, Err(FileError::Symlink { .. })), "{d:?}");
    assert_eq!(f.snapshot("outside"), before);
    assert!(f
        .ws()
        .join("passwd")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_link_to_a_directory_anywhere_on_the_path_is_not_walked() {
    let f = Fixture::new();
    let k = alice();
    std::fs::create_dir(f.ws().join("src")).unwrap();
    symlink(f.path("outside"), f.ws().join("etc")).unwrap();
    symlink(f.path("outside"), f.ws().join("src/deeper")).unwrap();
    let before = f.snapshot("outside");
    for raw in ["etc/secret", "src/deeper/secret", "etc/new/file.js"] {
        let read = f.files.read(&k, &p(raw));
        assert!(
            matches!(
                read,
                Err(FileError::Symlink { .. }) | Err(FileError::NotFound { .. })
            ),
            "{raw}: {read:?}"
        );
        let w = f.files.write(&k, &p(raw), b"pwned", &Precondition::Absent);
        assert!(matches!(w, Err(FileError::Symlink { .. })), "{raw}: {w:?}");
    }
    assert!(
        matches!(f.files.read(&k, &p("etc/secret")), Err(FileError::Symlink { ref link, .. }) if link == "etc")
    );
    assert_eq!(f.snapshot("outside"), before);
    assert!(!f.path("outside/new").exists());
}

#[test]
fn a_workspace_or_user_directory_that_is_a_link_is_refused() {
    let f = Fixture::new();
    let k = alice();
    std::fs::remove_dir(f.ws()).unwrap();
    symlink(f.path("apps/bob/api"), f.ws()).unwrap();
    let before = f.snapshot("apps/bob");
    assert!(matches!(
        f.files.read(&k, &p("server.js")),
        Err(FileError::Symlink { .. })
    ));
    assert!(matches!(f.files.list(&k), Err(FileError::Symlink { .. })));
    let w = f.files.write(
        &k,
        &p("server.js"),
        b"x",
        &Precondition::Matches(etag(b"bob's")),
    );
    assert!(matches!(w, Err(FileError::Symlink { .. })), "{w:?}");

    std::fs::remove_file(f.ws()).unwrap();
    std::fs::remove_dir(f.path("apps/alice")).unwrap();
    symlink(f.path("apps/bob"), f.path("apps/alice")).unwrap();
    let k2 = AppKey::new("alice", "api").unwrap();
    assert!(
        matches!(f.files.read(&k2, &p("server.js")), Err(FileError::Symlink { ref link, .. }) if link == "alice")
    );
    let w = f.files.write(&k2, &p("x.js"), b"x", &Precondition::Absent);
    assert!(matches!(w, Err(FileError::Symlink { .. })), "{w:?}");
    assert_eq!(f.snapshot("apps/bob"), before);
}

#[test]
fn fifos_directories_and_big_files_are_not_served() {
    let f = Fixture::new();
    let k = alice();
    let fifo = std::ffi::CString::new(f.ws().join("pipe").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::create_dir(f.ws().join("dir")).unwrap();
    std::fs::write(f.ws().join("big.bin"), vec![0u8; MAX_FILE_BYTES + 1]).unwrap();
    let read = f.files.read(&k, &p("pipe")); // must not block
    assert!(matches!(read, Err(FileError::NotAFile { .. })), "{read:?}");
    assert!(matches!(
        f.files.read(&k, &p("dir")),
        Err(FileError::NotAFile {
            what: "a directory",
            ..
        })
    ));
    assert!(matches!(
        f.files.read(&k, &p("big.bin")),
        Err(FileError::FileTooLarge { .. })
    ));
    let w = f
        .files
        .write(&k, &p("dir/x/y"), b"x", &Precondition::Absent);
    assert!(w.is_ok(), "{w:?}");
    let w = f.files.write(&k, &p("pipe/x"), b"x", &Precondition::Absent);
    assert!(matches!(w, Err(FileError::NotAFile { .. })), "{w:?}");
    let big = vec![b'x'; MAX_FILE_BYTES + 1];
    assert!(matches!(
        f.files
            .write(&k, &p("new.bin"), &big, &Precondition::Absent),
        Err(FileError::TooLarge { .. })
    ));
    assert!(f
        .files
        .write(&k, &p("max.bin"), &big[1..], &Precondition::Absent)
        .is_ok());
}

#[test]
fn no_workspace_yet() {
    let f = Fixture::new();
    let k = AppKey::new("carol", "new").unwrap();
    assert!(matches!(f.files.list(&k), Err(FileError::NoWorkspace(_))));
    assert!(matches!(
        f.files.read(&k, &p("a")),
        Err(FileError::NotFound { .. })
    ));
    let w = f.files.write(&k, &p("a"), b"x", &Precondition::Absent);
    assert!(matches!(w, Err(FileError::NoWorkspace(_))), "{w:?}");
    assert!(!f.path("apps/carol").exists(), "a write makes no workspace");
}

#[test]
fn listing_shows_files_and_links_and_skips_node_modules_and_temp_files() {
    let f = Fixture::new();
    let ws = f.ws();
    std::fs::create_dir_all(ws.join("node_modules/ms")).unwrap();
    std::fs::write(ws.join("node_modules/ms/index.js"), "x").unwrap();
    std::fs::create_dir_all(ws.join("src/lib")).unwrap();
    std::fs::write(ws.join("src/lib/a.js"), "a").unwrap();
    std::fs::write(ws.join("server.js"), "s").unwrap();
    std::fs::write(ws.join(".berth-tmp-00"), "cut").unwrap();
    std::fs::write(ws.join("big.bin"), vec![0u8; MAX_FILE_BYTES + 1]).unwrap();
    symlink("/etc", ws.join("etc")).unwrap();
    let l = f.files.list(&alice()).unwrap();
    let got: Vec<_> = l
        .files
        .iter()
        .map(|e| (e.path.as_str(), e.kind, e.size, e.etag.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("big.bin", "file", Some(MAX_FILE_BYTES as u64 + 1), None),
            ("etc", "symlink", None, None),
            ("server.js", "file", Some(1), Some(etag(b"s"))),
            ("src/lib/a.js", "file", Some(1), Some(etag(b"a"))),
        ]
    );
    assert!(!l.truncated);
}

#[test]
fn listing_is_capped_in_entries_and_depth() {
    let f = Fixture::new();
    for i in 0..MAX_LIST_ENTRIES + 5 {
        std::fs::write(f.ws().join(format!("f{i:04}")), "").unwrap();
    }
    let l = f.files.list(&alice()).unwrap();
    assert_eq!(l.files.len(), MAX_LIST_ENTRIES);
    assert!(l.truncated);

    let g = Fixture::new();
    let deep = vec!["d"; MAX_DEPTH].join("/");
    std::fs::create_dir_all(g.ws().join(&deep)).unwrap();
    std::fs::write(g.ws().join(&deep).join("too-deep"), "").unwrap();
    let shallow = vec!["d"; MAX_DEPTH - 1].join("/");
    std::fs::write(g.ws().join(&shallow).join("ok"), "").unwrap();
    let l = g.files.list(&alice()).unwrap();
    let paths: Vec<_> = l.files.iter().map(|e| e.path.clone()).collect();
    assert_eq!(paths, [format!("{shallow}/ok")]);
}

#[test]
fn delete_checks_the_etag() {
    let f = Fixture::new();
    let k = alice();
    let w = f
        .files
        .write(&k, &p("a/x.js"), b"x", &Precondition::Absent)
        .unwrap();
    assert!(matches!(
        f.files.delete(&k, &p("a/x.js"), "stale"),
        Err(FileError::Stale { .. })
    ));
    f.files.delete(&k, &p("a/x.js"), &w.etag).unwrap();
    assert!(!f.ws().join("a/x.js").exists());
    assert!(matches!(
        f.files.delete(&k, &p("a/x.js"), &w.etag),
        Err(FileError::Stale { current: None, .. })
    ));
}

#[test]
fn a_step_that_meets_a_swapped_path_is_a_conflict_not_an_io_error() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.ws().join("src/inner")).unwrap();
    let ws = Dir::open(&f.ws()).unwrap();
    // The walk met a link (ELOOP) and by the time it looked, the name was gone.
    let gone = std::io::Error::from_raw_os_error(libc::ELOOP);
    let e = classify(&ws, "gone", "gone/x.js", gone);
    assert!(matches!(e, FileError::Changed { .. }), "{e:?}");
    // A directory swapped in where the file was about to be renamed to.
    let renamed = replace(&ws, "src", b"x", 0o644).unwrap_err();
    let e = changed_or_io("src", "src", renamed);
    assert!(matches!(e, FileError::Changed { .. }), "{e:?}");
    // A full disk is still berth's to report.
    let full = changed_or_io("x", "x", std::io::Error::from_raw_os_error(libc::ENOSPC));
    assert!(full.is_full());
}

#[test]
fn a_container_swapping_a_directory_for_a_link_during_requests_gets_conflicts_only() {
    let f = Fixture::new();
    let (k, d) = (alice(), f.ws().join("d"));
    let outside = f.path("outside");
    let before = f.snapshot("outside");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (d, outside, stop) = (d.clone(), outside.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_dir_all(&d);
                let _ = std::fs::remove_file(&d);
                let _ = symlink(&outside, &d);
                let _ = std::fs::remove_file(&d);
                let _ = std::fs::create_dir(&d);
                swaps += 1;
            }
            swaps
        })
    };
    let mut io_errors = Vec::new();
    let mut refused = 0;
    for i in 0..1500 {
        let path = p(&format!("d/f{}.txt", i % 3));
        let wrote = f.files.write(&k, &path, b"x", &Precondition::Absent);
        let read = f.files.read(&k, &path).map(|c| c.etag);
        let deleted = f.files.delete(&k, &path, &etag(b"x"));
        for r in [wrote.map(drop), read.map(drop), deleted] {
            match r {
                Err(e @ FileError::Io { .. }) => io_errors.push(e.to_string()),
                Err(_) => refused += 1,
                Ok(()) => {}
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 0, "the swapper never ran");
    eprintln!("{swaps} swaps, {refused} requests refused");
    assert!(
        io_errors.is_empty(),
        "{} I/O errors: {:?}",
        io_errors.len(),
        &io_errors[..io_errors.len().min(5)]
    );
    assert_eq!(
        f.snapshot("outside"),
        before,
        "nothing escaped the workspace"
    );
}
